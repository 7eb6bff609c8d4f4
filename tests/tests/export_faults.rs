//! Faults between the filter and S3: throttling, timeouts, lost callbacks, dying workers, wrong
//! credentials, and other writers of the same object. The real .wasm, in virtual time.

use std::sync::Arc;

use config_bridge_tests::*;
use host_harness::mocks::faults::{Fault, Faulty};
use host_harness::mocks::s3::MockS3;
use host_harness::{CallOutcome, HostProfile, NodeSpec, World};
use serde_json::json;

fn two_profiles() -> [HostProfile; 2] {
    [HostProfile::ngx_wasm_module(), HostProfile::envoy()]
}

fn faulty(s3: &MockS3) -> Faulty {
    Faulty::new(Arc::new(s3.clone()))
}

fn bodies(world: &World) -> Vec<Vec<u8>> {
    storage_calls(world, "PUT")
        .into_iter()
        .map(|c| c.request.body)
        .collect()
}

fn stored_body(s3: &MockS3) -> Vec<u8> {
    s3.object(BUCKET, CONFIG_KEY)
        .map(|o| o.body)
        .unwrap_or_default()
}

/// Scripted faults for uploads only (the HEAD that asks first is answered normally).
fn on_puts(f: &Faulty, fault: Fault, n: usize) {
    f.push_matching_n(|r, _| r.method == "PUT", fault, n);
}

fn no_traps(world: &World) {
    assert!(world.traps().is_empty(), "{:?}", world.traps());
    assert!(
        world.fatal_errors().is_empty(),
        "{:?}",
        world.fatal_errors()
    );
}

#[test]
fn throttling_is_retried_with_backoff_and_the_newest_config_lands() {
    for profile in two_profiles() {
        let s3 = mock_s3();
        let f = faulty(&s3);
        on_puts(&f, Fault::slow_down(), 4);
        let mut world = world_with_storage(&profile, f.clone());
        let node = start_exporter(&mut world, 2, &declarative(1));
        // HEAD at 1 s (404), A's PUT at 2 s and its first retry at 3 s.
        advance_to(&mut world, ms(3_500));
        // B arrives while A's retries are pending: B takes the retry's slot.
        apply_doc(&mut world, node, &declarative(2));
        advance_to(&mut world, secs(120));
        let calls = storage_calls(&world, "PUT");
        let statuses: Vec<u16> = calls
            .iter()
            .map(|c| match &c.outcome {
                CallOutcome::Response(r) => r.status,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(statuses, vec![503, 503, 503, 503, 200], "{}", profile.name);
        // Capped exponential backoff with equal jitter (base 1 s): retry n waits at least
        // 2^(n-1)/2 s and at most 2^(n-1) s, rounded up to the 1 s tick.
        let t: Vec<u64> = calls.iter().map(|c| c.sent_at.as_millis() as u64).collect();
        assert_eq!(t[0], 2000);
        assert_eq!(t[1], 3000, "{t:?}");
        // B's first attempt resets the count: its retries restart from the base delay.
        for (i, (lo, hi)) in [(500, 1000), (1000, 2000), (2000, 4000)].iter().enumerate() {
            let gap = t[i + 2] - t[i + 1];
            assert!(
                gap >= *lo && gap <= hi + 1000,
                "{}: retry gaps {t:?}",
                profile.name
            );
        }
        assert_eq!(
            bodies(&world)[..2],
            [
                payload_bytes(&declarative(1)),
                payload_bytes(&declarative(1))
            ]
        );
        assert!(bodies(&world)[2..]
            .iter()
            .all(|b| *b == payload_bytes(&declarative(2))));
        assert_eq!(stored_body(&s3), payload_bytes(&declarative(2)));
        assert_eq!(
            world.metric(node, "config_bridge_export_failures_total"),
            Some(4)
        );
        assert_eq!(world.metric(node, "config_bridge_exports_total"), Some(1));
        let warnings = log_messages(&world, "SlowDown");
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(warnings[0].contains("503"), "{warnings:?}");
        no_traps(&world);
        assert_no_secrets(&world, &[]);
    }
}

#[test]
fn timeouts_resets_and_hangs_are_retried_under_every_host() {
    for profile in all_profiles() {
        let s3 = mock_s3();
        let f = faulty(&s3);
        on_puts(&f, Fault::timeout(secs(2)), 1);
        on_puts(&f, Fault::reset(), 1);
        on_puts(&f, Fault::Hang, 1);
        let mut world = world_with_storage(&profile, f.clone());
        let node = start_exporter(&mut world, 2, &declarative(1));
        advance_to(&mut world, secs(120));
        let calls = storage_calls(&world, "PUT");
        assert_eq!(calls.len(), 4, "{}: {calls:#?}", profile.name);
        assert!(matches!(&calls[3].outcome, CallOutcome::Response(r) if r.status == 200));
        // The first PUT goes at 2 s (after the HEAD at 1 s). Where the host calls back on
        // failures, the timeout is noticed when it fires (4 s); Kong < 3.9 never calls back: the
        // filter's own 5 s call timeout notices it (7 s). Then a 0.5–1 s retry.
        assert_eq!(calls[0].sent_at, secs(2), "{}", profile.name);
        let t1 = calls[1].sent_at;
        if profile.callback_on_failure {
            assert!(t1 >= secs(5) && t1 <= secs(6), "{}: {t1:?}", profile.name);
        } else {
            assert!(t1 >= secs(8) && t1 <= secs(9), "{}: {t1:?}", profile.name);
        }
        assert_eq!(stored_body(&s3), payload_bytes(&declarative(1)));
        assert_eq!(
            world.metric(node, "config_bridge_export_failures_total"),
            Some(3)
        );
        assert_eq!(
            log_messages(&world, "export to").len(),
            3,
            "{:?}",
            log_messages(&world, "failed")
        );
        no_traps(&world);
        assert_no_secrets(&world, &[]);
    }
}

#[test]
fn a_host_that_never_calls_back_does_not_stall_exports() {
    for profile in all_profiles() {
        let s3 = mock_s3();
        let f = faulty(&s3);
        on_puts(&f, Fault::NoCallback, 2);
        let mut world = world_with_storage(&profile, f.clone());
        let node = start_exporter(&mut world, 1, &declarative(1));
        advance_to(&mut world, secs(4));
        apply_doc(&mut world, node, &declarative(2));
        advance_to(&mut world, secs(60));
        let calls = storage_calls(&world, "PUT");
        assert_eq!(calls.len(), 3, "{}", profile.name);
        assert!(matches!(calls[0].outcome, CallOutcome::Lost));
        assert!(matches!(calls[1].outcome, CallOutcome::Lost));
        // HEAD at 1 s, PUT at 2 s; 5 s call timeout, checked on ticks; then a 0.5–1 s first
        // retry: the tick at 8 s.
        assert_eq!(calls[0].sent_at, secs(2));
        assert_eq!(calls[1].sent_at, secs(8), "{}", profile.name);
        // Second retry waits 1–2 s after the timeout noticed at 13 s.
        assert!(
            calls[2].sent_at == secs(14) || calls[2].sent_at == secs(15),
            "{:?}",
            calls[2].sent_at
        );
        assert_eq!(calls[1].request.body, payload_bytes(&declarative(2)));
        assert_eq!(stored_body(&s3), payload_bytes(&declarative(2)));
        assert_eq!(log_messages(&world, "no answer within 5000 ms").len(), 2);
        no_traps(&world);
        assert_no_secrets(&world, &[]);
    }
}

#[test]
fn a_worker_killed_mid_upload_is_replaced_by_another_after_the_lease_ttl() {
    for profile in two_profiles() {
        let s3 = mock_s3();
        let f = faulty(&s3);
        // The upload never reaches S3 and its worker dies while waiting.
        on_puts(&f, Fault::Hang, 1);
        let mut world = world_with_storage(&profile, f.clone());
        let node = start_exporter(&mut world, 2, &declarative(1));
        advance_to(&mut world, ms(3_500));
        let first = storage_calls(&world, "PUT");
        assert_eq!(first.len(), 1);
        let holder = first[0].origin.worker;
        world.kill_worker(node, holder);
        advance_to(&mut world, secs(60));
        let calls = storage_calls(&world, "PUT");
        assert_eq!(calls.len(), 2, "{}", profile.name);
        assert_eq!(calls[0].outcome, CallOutcome::Orphaned);
        // The holder renews its 15 s lease (default lease_ttl_ms) on every tick, its upload in
        // flight or not; its last tick was at 3 s, so the lease runs to 18 s and the other
        // worker's tick at 19 s takes over. It knows the object is absent (the HEAD at 1 s said
        // so): straight to the conditional PUT.
        assert_eq!(calls[1].sent_at, secs(19), "{}", profile.name);
        assert_ne!(calls[1].origin.worker, holder);
        assert_eq!(calls[1].request.header("if-none-match"), Some("*"));
        assert_eq!(stored_body(&s3), payload_bytes(&declarative(1)));
        // The dead worker comes back: no second upload of the same content.
        world.start_worker(node, holder).unwrap();
        advance_to(&mut world, secs(200));
        assert_eq!(storage_calls(&world, "PUT").len(), 2);
        no_traps(&world);
        assert_no_secrets(&world, &[]);
    }
}

#[test]
fn a_worker_killed_after_its_upload_landed_lets_the_next_holder_find_it_stored() {
    for profile in two_profiles() {
        let s3 = mock_s3();
        let f = faulty(&s3);
        // S3 stores the object, the answer comes after 4 s; the worker dies before it.
        on_puts(&f, Fault::Latency(secs(4)), 1);
        let mut world = world_with_storage(&profile, f.clone());
        let node = start_exporter(&mut world, 2, &declarative(1));
        advance_to(&mut world, ms(2_500));
        let holder = storage_calls(&world, "PUT")[0].origin.worker;
        world.kill_worker(node, holder);
        advance_to(&mut world, secs(60));
        let methods: Vec<(String, u64, u16)> = world
            .calls()
            .into_iter()
            .filter(|c| c.sent_at > secs(2))
            .map(|c| {
                let status = match &c.outcome {
                    CallOutcome::Response(r) => r.status,
                    _ => 0,
                };
                (c.request.method.clone(), c.sent_at.as_secs(), status)
            })
            .collect();
        // If-None-Match: * fails (the dead worker's PUT landed), the HEAD shows our own content.
        assert_eq!(
            methods,
            vec![("PUT".into(), 18, 412), ("HEAD".into(), 19, 200)],
            "{}",
            profile.name
        );
        assert_eq!(log_messages(&world, "already holds this config").len(), 1);
        assert_eq!(stored_body(&s3), payload_bytes(&declarative(1)));
        // The settled state holds: a later change is written conditionally on the ETag just read.
        apply_doc(&mut world, node, &declarative(2));
        advance_to(&mut world, secs(120));
        // The HEAD after the 412 (the first one, at 1 s, found nothing).
        let head = world
            .calls()
            .into_iter()
            .rfind(|c| c.request.method == "HEAD")
            .unwrap();
        let CallOutcome::Response(head) = head.outcome else {
            panic!()
        };
        let last = storage_calls(&world, "PUT").pop().unwrap();
        assert_eq!(last.sent_at, secs(61), "{}", profile.name);
        assert_eq!(last.request.header("if-match"), head.header("etag"));
        assert!(matches!(&last.outcome, CallOutcome::Response(r) if r.status == 200));
        assert_eq!(stored_body(&s3), payload_bytes(&declarative(2)));
        no_traps(&world);
        assert_no_secrets(&world, &[]);
    }
}

#[test]
fn a_wrong_secret_is_logged_with_the_s3_code_retried_and_recovers_when_fixed() {
    const WRONG: &str = "wrong-secret-key-value-NEVER-LOG-0000";
    for profile in two_profiles() {
        let s3 = mock_s3();
        let mut world = world_with_storage(&profile, s3.clone());
        let mut cfg = filter_config(&profile, &declarative(1));
        cfg["aws_secret_access_key"] = json!(WRONG);
        let node = start_node(&mut world, 2, &cfg);
        advance_to(&mut world, secs(30));
        // No retry can fix a wrong secret (docs/credentials.md): one PUT, then the longest
        // backoff (`retry_max_ms`, 60 s: at least 30 s with jitter) instead of tight retries.
        let failed = puts(&s3);
        assert_eq!(
            failed.len(),
            1,
            "{}: not retried fast: {failed:?}",
            profile.name
        );
        assert!(failed
            .iter()
            .all(|r| r.status == 403 && r.error_code.as_deref() == Some("SignatureDoesNotMatch")));
        let errors = log_messages(&world, "SignatureDoesNotMatch");
        assert_eq!(errors.len(), 1, "one clear line: {errors:?}");
        assert!(
            errors[0].contains("403")
                && errors[0].contains("no retry can fix this")
                && errors[0].contains("aws_secret_access_key / AWS_SECRET_ACCESS_KEY"),
            "the line names the fix: {errors:?}"
        );
        let at_error: Vec<_> = world
            .logs()
            .into_iter()
            .filter(|l| l.message.contains("SignatureDoesNotMatch"))
            .map(|l| l.level)
            .collect();
        assert!(
            at_error
                .iter()
                .all(|l| format!("{l:?}").to_lowercase().contains("err")),
            "logged at error level: {at_error:?}"
        );
        // The HEAD that asks first failed too (403; HEAD answers carry no error code, so it is
        // not judged), then the conditional PUT names the code.
        let head_failure = log_messages(&world, "retry 1 in");
        assert!(
            head_failure.len() == 1 && head_failure[0].contains("HTTP 403"),
            "{head_failure:?}"
        );
        assert!(s3.object(BUCKET, CONFIG_KEY).is_none());
        // The operator fixes the secret: the next retry lands.
        cfg["aws_secret_access_key"] = json!(SECRET_KEY);
        world.reconfigure(node, 0, cfg.to_string());
        advance_to(&mut world, secs(200));
        assert_eq!(stored_body(&s3), payload_bytes(&declarative(1)));
        assert_eq!(puts(&s3).last().map(|r| r.status), Some(200));
        no_traps(&world);
        assert_no_secrets(&world, &[WRONG]);
    }
}

#[test]
fn a_newer_config_written_by_another_node_is_not_overwritten() {
    for profile in two_profiles() {
        let s3 = mock_s3();
        let f = faulty(&s3);
        // Node a cannot write at first; node b (started 2 s later with a newer config) can.
        f.push_matching_n(|_, ctx| ctx.node == "a", Fault::slow_down(), 3);
        let mut world = world_with_storage(&profile, f.clone());
        let epoch = epoch_ms(&world);
        let a = world
            .add_node(
                NodeSpec::new("a", &plugin_module())
                    .filter(filter_config(&profile, &declarative(1)).to_string()),
            )
            .unwrap();
        advance_to(&mut world, secs(2));
        let mut cfg_b = filter_config(&profile, &declarative(2));
        cfg_b["node_id"] = json!("node-b");
        world
            .add_node(NodeSpec::new("b", &plugin_module()).filter(cfg_b.to_string()))
            .unwrap();
        advance_to(&mut world, secs(60));
        let obj = s3.object(BUCKET, CONFIG_KEY).unwrap();
        assert_eq!(obj.body, payload_bytes(&declarative(2)), "{}", profile.name);
        let meta = |k: &str| {
            obj.metadata
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(meta("uploader").as_deref(), Some("node-b"));
        assert_eq!(meta("config-applied-at"), Some((epoch + 2000).to_string()));
        // Node a's If-None-Match: * got 412, its HEAD saw the newer config: it kept it.
        let from_a: Vec<(String, u16)> = s3
            .requests()
            .iter()
            .filter(|r| r.node == "a")
            .map(|r| (r.method.clone(), r.status))
            .collect();
        assert_eq!(
            from_a.last(),
            Some(&("HEAD".to_string(), 200)),
            "{from_a:?}"
        );
        assert_eq!(
            from_a
                .iter()
                .filter(|(m, s)| m == "PUT" && *s == 412)
                .count(),
            1,
            "{from_a:?}"
        );
        assert!(
            !from_a.iter().any(|(m, s)| m == "PUT" && *s == 200),
            "{from_a:?}"
        );
        assert_eq!(
            log_messages(&world, "holds a newer config (uploaded by node-b").len(),
            1
        );
        // A later change on node a is newer still: it replaces b's, conditional on b's ETag.
        advance_to(&mut world, secs(100));
        let etag_b = obj.etag.clone();
        world.reconfigure(a, 0, filter_config(&profile, &declarative(3)).to_string());
        advance_to(&mut world, secs(200));
        let last = storage_calls(&world, "PUT")
            .into_iter()
            .rfind(|c| c.origin.node == "a")
            .unwrap();
        assert_eq!(last.request.header("if-match"), Some(etag_b.as_str()));
        assert_eq!(stored_body(&s3), payload_bytes(&declarative(3)));
        no_traps(&world);
        assert_no_secrets(&world, &[]);
    }
}

#[test]
fn an_object_written_without_our_metadata_is_replaced_conditionally() {
    for profile in two_profiles() {
        let s3 = mock_s3();
        // E.g. written by Kong Enterprise itself, before this filter was deployed.
        let etag = s3.put_object_direct(
            BUCKET,
            CONFIG_KEY,
            b"{\"_format_version\":\"3.0\"}",
            std::time::SystemTime::UNIX_EPOCH,
        );
        let mut world = world_with_storage(&profile, s3.clone());
        start_exporter(&mut world, 1, &declarative(1));
        advance_to(&mut world, secs(30));
        let seen: Vec<(String, u64, Option<String>, Option<String>)> = world
            .calls()
            .into_iter()
            .map(|c| {
                (
                    c.request.method.clone(),
                    c.sent_at.as_secs(),
                    c.request.header("if-none-match").map(str::to_string),
                    c.request.header("if-match").map(str::to_string),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("HEAD".into(), 1, None, None),
                ("PUT".into(), 2, None, Some(etag.clone())),
            ],
            "{}",
            profile.name
        );
        assert_eq!(stored_body(&s3), payload_bytes(&declarative(1)));
        no_traps(&world);
        assert_no_secrets(&world, &[]);
    }
}

/// The store loses the object (wiped, restarted empty, deleted by hand): the node's `If-Match`
/// gets 404 NoSuchKey (AWS, moto, our mock) or 412 (s3s-fs). Either way it asks again and writes
/// with `If-None-Match: *`; the newest config lands.
#[test]
fn a_store_that_lost_the_object_gets_the_newest_config_again() {
    for profile in two_profiles() {
        let s3 = mock_s3();
        let mut world = world_with_storage(&profile, s3.clone());
        let node = start_exporter(&mut world, 2, &declarative(1));
        advance_to(&mut world, secs(5));
        assert_exported(&s3, &declarative(1));
        assert!(s3.delete_object_direct(BUCKET, CONFIG_KEY));
        apply_doc(&mut world, node, &declarative(2));
        advance_to(&mut world, secs(120));
        assert_exported(&s3, &declarative(2));
        let tail: Vec<(String, u16)> = s3
            .requests()
            .iter()
            .skip(2)
            .map(|r| (r.method.clone(), r.status))
            .collect();
        assert_eq!(
            tail,
            vec![
                ("PUT".to_string(), 404),
                ("HEAD".to_string(), 404),
                ("PUT".to_string(), 200)
            ],
            "{}",
            profile.name
        );
        assert_eq!(
            storage_calls(&world, "PUT")
                .last()
                .and_then(|c| c.request.header("if-none-match").map(str::to_string)),
            Some("*".to_string())
        );
        no_traps(&world);
    }
}
