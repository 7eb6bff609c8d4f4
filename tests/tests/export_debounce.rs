//! Kong's debounce semantics with the real .wasm, in virtual time, under both host profiles.

use std::sync::Arc;

use config_bridge_tests::*;
use host_harness::mocks::faults::{Fault, Faulty};
use host_harness::{HostProfile, NodeSpec, World};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn profiles() -> [HostProfile; 2] {
    [HostProfile::ngx_wasm_module(), HostProfile::envoy()]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every PUT the filter sent carried exactly the bytes of the expected document as sent, and
/// the stored object is `doc` with the metadata every export writes.
fn assert_stored(
    s3: &host_harness::mocks::s3::MockS3,
    doc: &Value,
    node_id: &str,
    applied_at_ms: u64,
    ctx: &str,
) {
    let obj = s3
        .object(BUCKET, CONFIG_KEY)
        .unwrap_or_else(|| panic!("{ctx}: no object"));
    let body = payload_bytes(doc);
    assert_eq!(
        String::from_utf8_lossy(&obj.body),
        String::from_utf8_lossy(&body),
        "{ctx}"
    );
    let meta = |k: &str| {
        obj.metadata
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        meta("uploader").as_deref(),
        Some(node_id),
        "{ctx}: {:?}",
        obj.metadata
    );
    assert_eq!(
        meta("config-sha256"),
        Some(hex(&Sha256::digest(&body))),
        "{ctx}"
    );
    assert_eq!(
        meta("config-applied-at"),
        Some(applied_at_ms.to_string()),
        "{ctx}"
    );
    assert_eq!(
        obj.header("content-type"),
        Some("application/json"),
        "{ctx}"
    );
}

fn reconfigure_all(world: &mut World, node: host_harness::NodeId, filters: usize, cfg: &Value) {
    for f in 0..filters {
        let r = world.reconfigure(node, f, cfg.to_string());
        assert!(
            r.iter().all(|x| *x == Some(true)),
            "reconfigure filter {f}: {r:?}"
        );
    }
}

#[test]
fn a_exported_then_b_c_d_within_the_delay_exports_d_alone_when_the_delay_ends() {
    for profile in profiles() {
        let s3 = mock_s3();
        let mut world = world_with_storage(&profile, s3.clone());
        let epoch = epoch_ms(&world);
        let cfg = |n| filter_config(&profile, &declarative(n));
        let node = world
            .add_node(
                NodeSpec::new("n1", &plugin_module())
                    .workers(2)
                    .filter(cfg(1).to_string()),
            )
            .unwrap();
        // The node asks first (HEAD at 1 s), then uploads A on the next tick.
        advance_to(&mut world, secs(2));
        assert_stored(&s3, &declarative(1), "node-a", epoch, profile.name);
        for (t, n) in [(10, 2), (20, 3), (30, 4)] {
            advance_to(&mut world, secs(t));
            reconfigure_all(&mut world, node, 1, &cfg(n));
        }
        advance_to(&mut world, secs(60));
        assert_eq!(
            puts(&s3).len(),
            1,
            "{}: nothing before the window ends",
            profile.name
        );
        advance_to(&mut world, secs(180));
        // A's export starts at the first tick (its HEAD), its PUT on the next; D when the 60 s
        // window (counted from A's start) ends; B, C skipped.
        assert_eq!(
            send_times(&world, "HEAD"),
            vec![secs(1)],
            "{}",
            profile.name
        );
        assert_eq!(
            send_times(&world, "PUT"),
            vec![secs(2), secs(61)],
            "{}",
            profile.name
        );
        let bodies: Vec<Vec<u8>> = storage_calls(&world, "PUT")
            .into_iter()
            .map(|c| c.request.body)
            .collect();
        assert_eq!(
            bodies,
            vec![
                payload_bytes(&declarative(1)),
                payload_bytes(&declarative(4))
            ]
        );
        assert_stored(&s3, &declarative(4), "node-a", epoch + 30_000, profile.name);
        assert!(
            puts(&s3).iter().all(|r| r.status == 200),
            "{:?}",
            s3.requests()
        );
        assert_eq!(
            s3.requests().len(),
            3,
            "{}: {:?}",
            profile.name,
            s3.requests()
        );
        assert_eq!(world.metric(node, "config_bridge_exports_total"), Some(2));
        assert_eq!(
            world.metric(node, "config_bridge_export_failures_total"),
            None
        );
        assert_no_secrets(&world, &[]);
    }
}

#[test]
fn a_change_after_a_quiet_period_goes_out_on_the_next_tick() {
    for profile in profiles() {
        let s3 = mock_s3();
        let mut world = world_with_storage(&profile, s3.clone());
        let node = start_exporter(&mut world, 1, &declarative(1));
        advance_to(&mut world, secs(100));
        apply_doc(&mut world, node, &declarative(2));
        advance_to(&mut world, ms(100_500));
        advance_to(&mut world, secs(300));
        assert_eq!(
            send_times(&world, "PUT"),
            vec![secs(2), secs(101)],
            "{}",
            profile.name
        );
        assert_exported(&s3, &declarative(2));
        assert_no_secrets(&world, &[]);
    }
}

#[test]
fn byte_identical_content_is_never_uploaded_twice_and_a_reordered_document_once() {
    for profile in profiles() {
        let s3 = mock_s3();
        let mut world = world_with_storage(&profile, s3.clone());
        let node = start_exporter(&mut world, 2, &declarative(1));
        advance_to(&mut world, secs(5));
        // The same bytes again: the same filter configuration, and the document as a JSON string
        // (Kong 3.4 style) holding exactly the same text, long after the window.
        let mut cfg = filter_config(&profile, &declarative(1));
        advance_to(&mut world, secs(100));
        reconfigure_all(&mut world, node, 1, &cfg);
        cfg["config"] = json!(String::from_utf8(payload_bytes(&declarative(1))).unwrap());
        advance_to(&mut world, secs(200));
        reconfigure_all(&mut world, node, 1, &cfg);
        // A change and back within the window: what is current when it ends is what is stored.
        advance_to(&mut world, secs(300));
        reconfigure_all(
            &mut world,
            node,
            1,
            &filter_config(&profile, &declarative(2)),
        );
        advance_to(&mut world, ms(300_200));
        reconfigure_all(
            &mut world,
            node,
            1,
            &filter_config(&profile, &declarative(1)),
        );
        advance_to(&mut world, secs(390));
        assert_eq!(
            send_times(&world, "PUT"),
            vec![secs(2)],
            "{}: {:?}",
            profile.name,
            s3.requests()
        );
        assert_exported(&s3, &declarative(1));
        // The same document with its keys in another order and other whitespace is other bytes:
        // the filter exports payloads as given, so it is uploaded, exactly as written, once.
        let reordered = format!(
            "{{\n  \"services\": {},\n  \"_format_version\": \"3.0\"\n}}",
            declarative(1)["services"]
        );
        let mut cfg = filter_config(&profile, &declarative(1));
        cfg["config"] = json!(reordered);
        advance_to(&mut world, secs(400));
        reconfigure_all(&mut world, node, 1, &cfg);
        advance_to(&mut world, secs(500));
        reconfigure_all(&mut world, node, 1, &cfg);
        advance_to(&mut world, secs(700));
        let times = send_times(&world, "PUT");
        assert_eq!(times.len(), 2, "{}: {:?}", profile.name, s3.requests());
        assert!(times[1] > secs(400) && times[1] < secs(500), "{times:?}");
        // One HEAD (the node's first export) and the two uploads.
        assert_eq!(s3.requests().len(), 3, "{:?}", s3.requests());
        assert_eq!(
            String::from_utf8_lossy(&s3.object(BUCKET, CONFIG_KEY).unwrap().body),
            reordered
        );
        assert_no_secrets(&world, &[]);
    }
}

#[test]
fn a_change_during_an_upload_is_exported_after_it() {
    for profile in profiles() {
        let s3 = mock_s3();
        let faulty = Faulty::new(Arc::new(s3.clone()));
        faulty.push_matching_n(|r, _| r.method == "PUT", Fault::Latency(secs(4)), 1);
        let mut world = world_with_storage(&profile, faulty.clone());
        let mut cfg = filter_config(&profile, &declarative(1));
        cfg["cluster_fallback_config_export_delay"] = json!(2);
        let node = start_node(&mut world, 2, &cfg);
        advance_to(&mut world, secs(3));
        let first = storage_calls(&world, "PUT");
        assert_eq!(first.len(), 1);
        assert_eq!(
            first[0].answered_at, None,
            "{}: still in flight",
            profile.name
        );
        cfg["config"] = declarative(2);
        reconfigure_all(&mut world, node, 1, &cfg);
        advance_to(&mut world, secs(30));
        let calls = storage_calls(&world, "PUT");
        assert_eq!(calls.len(), 2, "{}: {:?}", profile.name, s3.requests());
        // HEAD at 1 s, A's PUT at 2 s answered at 6 s.
        assert_eq!(calls[0].sent_at, secs(2));
        assert_eq!(calls[0].answered_at, Some(secs(6)));
        assert_eq!(calls[0].request.body, payload_bytes(&declarative(1)));
        // Not before the first upload is answered: B goes on the tick that follows its answer.
        assert_eq!(calls[1].sent_at, secs(6), "{}", profile.name);
        assert_eq!(calls[1].request.body, payload_bytes(&declarative(2)));
        // The second write is conditional on the first one's ETag.
        let etag_a = calls[0].outcome.clone();
        let host_harness::CallOutcome::Response(resp) = etag_a else {
            panic!("{etag_a:?}")
        };
        assert_eq!(calls[1].request.header("if-match"), resp.header("etag"));
        assert_eq!(calls[0].request.header("if-none-match"), Some("*"));
        assert_exported(&s3, &declarative(2));
        assert_no_secrets(&world, &[]);
    }
}

#[test]
fn two_workers_with_two_filter_instances_upload_exactly_once_per_change() {
    for profile in profiles() {
        let s3 = mock_s3();
        let mut world = world_with_storage(&profile, s3.clone());
        let cfg = |n| filter_config(&profile, &declarative(n)).to_string();
        let node = world
            .add_node(
                NodeSpec::new("n1", &plugin_module())
                    .workers(2)
                    .filter(cfg(1))
                    .filter(cfg(1)),
            )
            .unwrap();
        for w in 0..2 {
            for f in 0..2 {
                assert_eq!(world.configured(node, w, f), Some(true));
            }
        }
        for (t, n) in [(100, 2), (200, 3), (300, 4)] {
            advance_to(&mut world, secs(t));
            reconfigure_all(
                &mut world,
                node,
                2,
                &filter_config(&profile, &declarative(n)),
            );
        }
        advance_to(&mut world, secs(400));
        assert_eq!(
            send_times(&world, "PUT"),
            vec![secs(2), secs(101), secs(201), secs(301)],
            "{}",
            profile.name
        );
        let bodies: Vec<Vec<u8>> = storage_calls(&world, "PUT")
            .into_iter()
            .map(|c| c.request.body)
            .collect();
        assert_eq!(
            bodies,
            (1..=4)
                .map(|n| payload_bytes(&declarative(n)))
                .collect::<Vec<_>>()
        );
        // One HEAD (404: nothing stored yet) when the node starts, then only uploads.
        let requests = s3.requests();
        assert_eq!(requests.len(), 5, "{requests:?}");
        assert_eq!(
            (requests[0].method.as_str(), requests[0].status),
            ("HEAD", 404)
        );
        assert!(requests[1..]
            .iter()
            .all(|r| r.method == "PUT" && r.status == 200));
        assert_eq!(world.metric(node, "config_bridge_exports_total"), Some(4));
        // One holder node-wide: a single "now exports" line.
        assert_eq!(
            log_messages(&world, "now exports").len(),
            1,
            "{:?}",
            log_messages(&world, "exports")
        );
        assert_no_secrets(&world, &[]);
    }
}

#[test]
fn a_change_applied_to_only_one_of_two_filter_instances_is_exported() {
    for profile in profiles() {
        for changed in [0, 1] {
            let s3 = mock_s3();
            let mut world = world_with_storage(&profile, s3.clone());
            let cfg = |n| filter_config(&profile, &declarative(n)).to_string();
            let node = world
                .add_node(
                    NodeSpec::new("n1", &plugin_module())
                        .workers(2)
                        .filter(cfg(1))
                        .filter(cfg(1)),
                )
                .unwrap();
            advance_to(&mut world, secs(100));
            world.reconfigure(node, changed, cfg(2));
            advance_to(&mut world, secs(300));
            assert_eq!(
                send_times(&world, "PUT"),
                vec![secs(2), secs(101)],
                "{} filter {changed}",
                profile.name
            );
            assert_exported(&s3, &declarative(2));
            assert_no_secrets(&world, &[]);
        }
    }
}
