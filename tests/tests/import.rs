//! Import on a fallback node (issue 11): the real filter on an empty DB-less node (a mock Kong
//! Admin API) whose source of truth is down downloads what another simulated node exported to
//! the mock S3 and `POST`s it to its Admin API — in the ngx_wasm_module and Envoy profiles, 2
//! workers each.

use std::time::Duration;

use config_bridge_tests::kong_setup::*;
use config_bridge_tests::*;
use host_harness::mocks::faults::Fault;
use host_harness::HostProfile;
use serde_json::{json, Value};

/// The fallback's entities, collection by collection, without `updated_at` (a DB-less load sets
/// it to the load time).
fn held(admin: &host_harness::mocks::kong::MockKongAdmin, collection: &str) -> Vec<Value> {
    admin
        .entities(collection)
        .into_iter()
        .map(|mut e| {
            if let Some(o) = e.as_object_mut() {
                o.remove("updated_at");
            }
            e
        })
        .collect()
}

/// The fallback node's log lines containing `needle`.
fn fallback_lines(f: &Fallback, needle: &str) -> Vec<String> {
    f.world
        .logs()
        .into_iter()
        .filter(|l| l.origin.node == "fallback" && l.message.contains(needle))
        .map(|l| l.message)
        .collect()
}

/// Runs the world until the fallback node's Admin API has applied a configuration (or `limit`).
fn until_imported(f: &mut Fallback, limit: Duration) -> bool {
    let admin = f.admin.clone();
    f.world
        .advance_until(limit, secs(1), |_| admin.applied_count() > 0)
}

/// The exported document (as the CP's exporter wrote it) and the time the CP went down.
fn exported_then_cp_down(f: &mut Fallback, n: u32) -> (Value, Duration) {
    let doc = kong_config_with_exporter(n, &f.exporter_cfg);
    let body = f.export(&doc);
    f.cp_down();
    (serde_json::from_slice(&body).unwrap(), f.world.elapsed())
}

/// An empty node (no configuration at all, or only the bootstrap one) whose CP is down imports
/// the last export once — one `POST /config` over both workers, after the grace period — and
/// then holds the exported entities.
#[test]
fn an_empty_node_imports_the_last_export_once() {
    for (profile, with_bootstrap) in two_profiles()
        .into_iter()
        .flat_map(|p| [(p.clone(), false), (p, true)])
    {
        let mut f = Fallback::new(&profile);
        let (exported, down_at) = exported_then_cp_down(&mut f, 1);
        let own = importer_config(&profile);
        if with_bootstrap {
            f.admin
                .set_config(host_harness::cli::demo::fallback::bootstrap(&own));
        }
        f.start_fallback(&own, false);
        assert!(
            until_imported(&mut f, secs(120)),
            "{}: no import",
            profile.name
        );
        f.world.advance(secs(120));

        let posts = f.admin.posts();
        assert_eq!(
            posts.len(),
            1,
            "{} (bootstrap {with_bootstrap}): {posts:?}",
            profile.name
        );
        assert_eq!(posts[0].status, 201);
        assert!(posts[0].flatten_errors);
        let post_calls: Vec<_> = calls_to(&f.world, NODE_ADMIN)
            .into_iter()
            .filter(|c| c.request.method == "POST")
            .collect();
        assert_eq!(post_calls.len(), 1, "{}", profile.name);
        // Not before the probe had failed for the grace period (10 s).
        assert!(
            post_calls[0].sent_at >= down_at + secs(10),
            "{}: imported at {:?}, CP down at {down_at:?}",
            profile.name,
            post_calls[0].sent_at
        );
        // The node holds every exported entity, as the CP held it.
        for (name, list) in exported.as_object().unwrap() {
            if name.starts_with('_') || name == "filter_chains" {
                continue;
            }
            assert_eq!(
                held(&f.admin, name),
                held(&f.cp_admin, name),
                "{}: {name}",
                profile.name
            );
            assert_eq!(held(&f.admin, name).len(), list.as_array().unwrap().len());
        }
        let applied = log_messages(&f.world, APPLIED);
        assert_eq!(applied.len(), 1, "{}: {applied:?}", profile.name);
        assert!(
            applied[0].contains("uploaded by cp-exporter") && applied[0].contains("s old"),
            "{}",
            applied[0]
        );
        assert_no_secrets(&f.world, &[RO_SECRET_KEY]);
    }
}

/// The store fails (503 SlowDown, then calls that time out, then calls the host never calls
/// back); the node keeps trying and imports once the store recovers.
#[test]
fn a_failing_store_delays_the_import_until_it_recovers() {
    for profile in two_profiles() {
        let mut f = Fallback::new(&profile);
        exported_then_cp_down(&mut f, 2);
        let is_get = |r: &host_harness::http::HttpRequest, _: &host_harness::http::CallContext| {
            r.method == "GET"
        };
        let mut rule = f.store.always(is_get, Fault::slow_down());
        f.start_fallback(&importer_config(&profile), false);
        for next in [Fault::Hang, Fault::NoCallback] {
            f.world.advance(secs(60));
            assert_eq!(f.admin.applied_count(), 0, "{}", profile.name);
            f.store.remove(rule);
            rule = f.store.always(is_get, next);
        }
        f.world.advance(secs(60));
        assert_eq!(f.admin.applied_count(), 0, "{}", profile.name);
        let failures = log_messages(&f.world, "downloading s3://");
        assert!(
            failures.iter().any(|l| l.contains("503"))
                && failures.iter().any(|l| l.contains("no answer within")),
            "{}: {failures:?}",
            profile.name
        );
        let recovered_at = f.world.elapsed();
        f.store.remove(rule);
        assert!(
            until_imported(&mut f, secs(120)),
            "{}: no import after the store recovered",
            profile.name
        );
        println!(
            "{}: imported {:.0} s after the store recovered; {} failure lines",
            profile.name,
            (f.world.elapsed() - recovered_at).as_secs_f64(),
            failures.len()
        );
        f.world.advance(secs(30));
        assert_eq!(f.admin.posts().len(), 1, "{}", profile.name);
        assert_eq!(log_messages(&f.world, APPLIED).len(), 1);
    }
}

/// The Admin API answers 429 (Retry-After: 7) then 503, then 201: three POSTs, the second no
/// sooner than the Retry-After, and exactly one successful import.
#[test]
fn a_busy_admin_api_is_retried_until_one_import_succeeds() {
    for profile in two_profiles() {
        let mut f = Fallback::new(&profile);
        exported_then_cp_down(&mut f, 3);
        f.admin.set_retry_after(7);
        f.admin.next_post_responses([429, 503]);
        f.start_fallback(&importer_config(&profile), false);
        assert!(until_imported(&mut f, secs(180)), "{}", profile.name);
        f.world.advance(secs(60));
        let statuses: Vec<u16> = f.admin.posts().iter().map(|p| p.status).collect();
        assert_eq!(statuses, [429, 503, 201], "{}", profile.name);
        let times: Vec<Duration> = calls_to(&f.world, NODE_ADMIN)
            .into_iter()
            .filter(|c| c.request.method == "POST")
            .map(|c| c.sent_at)
            .collect();
        assert!(
            times[1] >= times[0] + secs(7),
            "{}: Retry-After not honoured: {times:?}",
            profile.name
        );
        assert_eq!(log_messages(&f.world, APPLIED).len(), 1);
        for status in ["429", "503"] {
            assert_eq!(
                log_messages(
                    &f.world,
                    &format!("POST /config answered HTTP {status}; retrying")
                )
                .len(),
                1,
                "{}",
                profile.name
            );
        }
    }
}

/// A node that has a configuration never imports — not even a storage request — whether it had
/// it at start or got it (from its CP) during the grace period.
#[test]
fn a_node_with_a_configuration_never_imports() {
    for profile in two_profiles() {
        for late in [false, true] {
            let mut f = Fallback::new(&profile);
            exported_then_cp_down(&mut f, 4);
            if !late {
                f.admin.set_config(kong_config(40));
            }
            f.start_fallback(&importer_config(&profile), false);
            if late {
                f.world.advance(secs(5));
                f.admin.set_config(kong_config(40));
            }
            f.world.advance(secs(180));
            let context = format!("{} (config arrives late: {late})", profile.name);
            assert!(f.admin.posts().is_empty(), "{context}");
            assert!(
                f.fallback_storage_calls("GET").is_empty()
                    && f.fallback_storage_calls("HEAD").is_empty(),
                "{context}: the store was asked"
            );
            assert_eq!(
                log_messages(&f.world, "the node has a configuration; nothing to import").len(),
                1,
                "{context}"
            );
            // The import is over for good: no more Admin API requests either.
            let last = calls_to(&f.world, NODE_ADMIN)
                .iter()
                .map(|c| c.sent_at)
                .max()
                .unwrap();
            assert!(
                last < f.world.elapsed() - secs(120),
                "{context}: still polling"
            );
        }
    }
}

/// One way the stored object can be unusable, and the reason its line gives.
fn corrupt_objects(valid: &[u8]) -> Vec<(&'static str, Vec<u8>, Vec<u8>, &'static str)> {
    let half = valid[..valid.len() / 2].to_vec();
    let other = serde_json::to_vec(&kong_config(77)).unwrap();
    vec![
        (
            "truncated, with the full body's config-sha256",
            half,
            valid.to_vec(),
            "not valid json",
        ),
        (
            "valid JSON whose config-sha256 is another's",
            other,
            valid.to_vec(),
            "does not match its config-sha256 metadata",
        ),
        (
            "not JSON",
            b"<html>gateway timeout</html>".to_vec(),
            b"<html>gateway timeout</html>".to_vec(),
            "is not a JSON object",
        ),
    ]
}

/// A corrupt object is not applied: one clear error line, and it is not downloaded again (the
/// next GETs carry `If-None-Match` and get 304). A newer valid object is applied.
#[test]
fn a_corrupt_object_is_refused_once_and_a_newer_valid_one_applied() {
    for profile in two_profiles() {
        let valid = serde_json::to_vec(&kong_config(5)).unwrap();
        for (what, body, sha_of, reason) in corrupt_objects(&valid) {
            let mut f = Fallback::new(&profile);
            f.probe.set(ProbeMode::Unavailable);
            assert_eq!(put_object_signed(&f.world, &f.s3, &body, &sha_of), 200);
            f.start_fallback(&importer_config(&profile), false);
            f.world.advance(secs(120));
            let context = format!("{}: {what}", profile.name);
            assert_eq!(f.admin.applied_count(), 0, "{context}");
            let errors = log_messages(&f.world, "is not applied");
            assert_eq!(errors.len(), 1, "{context}: {errors:?}");
            assert!(errors[0].contains(reason), "{context}: {}", errors[0]);
            let gets: Vec<u16> =
                f.s3.requests()
                    .iter()
                    .filter(|r| r.method == "GET" && r.node == "fallback")
                    .map(|r| r.status)
                    .collect();
            assert_eq!(gets[0], 200, "{context}");
            assert!(
                gets.len() >= 3 && gets[1..].iter().all(|s| *s == 304),
                "{context}: downloaded again: {gets:?}"
            );
            // A newer, valid export.
            assert_eq!(put_object_signed(&f.world, &f.s3, &valid, &valid), 200);
            assert!(until_imported(&mut f, secs(120)), "{context}");
            assert_eq!(held(&f.admin, "services").len(), 2, "{context}");
            assert_eq!(log_messages(&f.world, "is not applied").len(), 1);
            assert_no_secrets(&f.world, &[]);
        }
    }
}

/// The exporting config-bridge filter inside the imported document (as an object, and as a Kong
/// 3.4 JSON string) is replaced by the importer's own import-only configuration: the fallback
/// node never exports, and the exporter's credentials never reach it.
#[test]
fn the_exporting_filter_is_replaced_by_the_importers_own_configuration() {
    for profile in two_profiles() {
        for as_string in [false, true] {
            let mut f = Fallback::new(&profile);
            let exporter = if as_string {
                json!(f.exporter_cfg.to_string())
            } else {
                f.exporter_cfg.clone()
            };
            let doc = kong_config_with_exporter(6, &exporter);
            let stored = f.export(&doc);
            assert!(
                String::from_utf8_lossy(&stored).contains("cluster_fallback_config_export"),
                "the export carries the exporter's filter"
            );
            f.cp_down();
            let own = importer_config(&profile);
            f.start_fallback(&own, false);
            assert!(until_imported(&mut f, secs(120)), "{}", profile.name);
            let context = format!("{} (config as string: {as_string})", profile.name);

            let post = calls_to(&f.world, NODE_ADMIN)
                .into_iter()
                .find(|c| c.request.method == "POST")
                .unwrap();
            let body = String::from_utf8(post.request.body.clone()).unwrap();
            assert!(
                !body.contains(SECRET_KEY),
                "{context}: exporter credentials"
            );
            assert!(!body.contains("cp-exporter"), "{context}");
            let chains = f.admin.entities("filter_chains");
            assert_eq!(chains.len(), 1, "{context}");
            let filter = &chains[0]["filters"][0];
            assert_eq!(filter["name"], json!("config_bridge"));
            let config: Value = match &filter["config"] {
                Value::String(s) => {
                    assert!(as_string, "{context}: the shape changed");
                    serde_json::from_str(s).unwrap()
                }
                other => {
                    assert!(!as_string, "{context}: the shape changed");
                    other.clone()
                }
            };
            assert_eq!(config, own, "{context}");
            // Everything else in the chain is as exported.
            assert_eq!(chains[0]["id"], doc["filter_chains"][0]["id"]);
            assert_eq!(chains[0]["service"], doc["filter_chains"][0]["service"]);
        }
    }
}

/// An importer needs only read access to the bucket.
#[test]
fn read_only_credentials_suffice() {
    for profile in two_profiles() {
        let mut f = Fallback::new(&profile);
        exported_then_cp_down(&mut f, 7);
        f.start_fallback(&importer_config(&profile), true);
        assert!(until_imported(&mut f, secs(120)), "{}", profile.name);
        let keys: Vec<Option<String>> =
            f.s3.requests()
                .iter()
                .filter(|r| r.node == "fallback")
                .map(|r| r.access_key.clone())
                .collect();
        assert!(!keys.is_empty());
        assert!(
            keys.iter().all(|k| k.as_deref() == Some(RO_ACCESS_KEY)),
            "{}: {keys:?}",
            profile.name
        );
        assert_no_secrets(&f.world, &[RO_SECRET_KEY]);
    }
}

/// While the source of truth answers its probe, the node never imports — no storage request at
/// all — and nothing secret reaches a log line.
#[test]
fn a_reachable_source_of_truth_means_no_import() {
    for profile in two_profiles() {
        let mut f = Fallback::new(&profile);
        let doc = kong_config_with_exporter(8, &f.exporter_cfg);
        f.export(&doc);
        // The CP's exporter keeps running; the probe answers.
        f.start_fallback(&importer_config(&profile), true);
        f.world.advance(secs(300));
        assert!(f.admin.posts().is_empty(), "{}", profile.name);
        assert!(
            f.fallback_storage_calls("GET").is_empty(),
            "{}",
            profile.name
        );
        assert_eq!(
            log_messages(&f.world, "the source of truth answers").len(),
            1,
            "{}: said once",
            profile.name
        );
        // Checked all along: /status then the probe, one request per tick, every second.
        let probes = calls_to(&f.world, PROBE);
        assert!(
            (120..=300).contains(&probes.len()),
            "{}: {} probes in 300 s",
            profile.name,
            probes.len()
        );
        assert_no_secrets(&f.world, &[RO_SECRET_KEY]);
    }
}

/// `host-harness demo fallback` end to end: the CP exports, goes down, an empty fallback node
/// imports after the grace period and holds the entities with its filter chain import-only.
#[test]
fn the_fallback_demo_imports() {
    for profile in two_profiles() {
        let outcome =
            host_harness::cli::demo::fallback::scenario(&plugin_module(), profile.clone())
                .expect("the demo runs");
        assert!(
            outcome.imported,
            "{}: {:#?}",
            profile.name, outcome.timeline
        );
        assert!(outcome.chain_import_only, "{}", profile.name);
        assert!(
            outcome
                .timeline
                .iter()
                .any(|l| l.contains("fallback config applied")),
            "{:#?}",
            outcome.timeline
        );
        assert!(outcome.entities > 0);
    }
    // The kong_legacy profile (Kong before 3.9) too: failed calls may never call back.
    let outcome =
        host_harness::cli::demo::fallback::scenario(&plugin_module(), HostProfile::kong_legacy())
            .expect("the demo runs");
    assert!(outcome.imported);
}

/// A CP whose configuration has a TLS certificate with SNIs (any gateway serving HTTPS): its
/// export is imported by the fallback node like any other.
#[test]
fn a_configuration_with_certificates_is_imported() {
    for profile in two_profiles() {
        let mut f = Fallback::new(&profile);
        let mut doc = kong_config_with_exporter(9, &f.exporter_cfg);
        let cert = uuid(9, 20_000);
        doc["certificates"] = json!([{
            "id": cert,
            "cert": "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n",
            "key": "-----BEGIN PRIVATE KEY-----\nMIIBfake\n-----END PRIVATE KEY-----\n",
        }]);
        doc["snis"] = json!([
            {"id": uuid(9, 20_001), "name": "api.example.test", "certificate": cert},
            {"id": uuid(9, 20_002), "name": "www.example.test", "certificate": cert},
        ]);
        f.export(&doc);
        f.cp_down();
        f.start_fallback(&importer_config(&profile), false);
        let imported = until_imported(&mut f, secs(120));
        assert!(
            imported,
            "{}: not imported: {:?}",
            profile.name,
            log_messages(&f.world, "refused")
        );
        assert_eq!(held(&f.admin, "snis"), held(&f.cp_admin, "snis"));
        assert_eq!(
            held(&f.admin, "certificates"),
            held(&f.cp_admin, "certificates")
        );
    }
}

/// Waiting for a newer export after refusing one is said once, not on every check: a node left
/// for a night with a corrupt object must not write thousands of lines.
#[test]
fn a_refused_export_is_said_once_not_on_every_check() {
    for profile in two_profiles() {
        let mut f = Fallback::new(&profile);
        f.probe.set(ProbeMode::Unavailable);
        put_object_signed(&f.world, &f.s3, b"not json", b"not json");
        f.start_fallback(&importer_config(&profile), false);
        f.world.advance(secs(600));
        let lines = fallback_lines(&f, "");
        for needle in ["importing the last export", "still the one refused before"] {
            let n = lines.iter().filter(|l| l.contains(needle)).count();
            assert!(
                n <= 1,
                "{}: {n} lines saying {needle:?} in 10 minutes",
                profile.name
            );
        }
        assert!(
            lines.len() < 20,
            "{}: {} lines in 10 minutes",
            profile.name,
            lines.len()
        );
    }
}

/// An import-only node never says it exports.
#[test]
fn an_import_only_node_never_says_it_exports() {
    for profile in two_profiles() {
        let mut f = Fallback::new(&profile);
        f.start_fallback(&importer_config(&profile), false);
        f.world.advance(secs(30));
        let exports = fallback_lines(&f, "exports");
        assert!(exports.is_empty(), "{}: {exports:?}", profile.name);
    }
}

/// A fallback node whose Admin API needs an RBAC token (Kong Enterprise): with
/// `kong_admin_token` it imports, every request to its Admin API carrying the token; without it,
/// the line names RBAC and the setting (as the source's does). The token is never logged.
#[test]
fn an_importer_behind_rbac_needs_the_token() {
    for profile in two_profiles() {
        for with_token in [true, false] {
            let mut f = Fallback::new(&profile);
            exported_then_cp_down(&mut f, 10);
            f.admin = f.admin.clone().with_admin_token(ADMIN_TOKEN);
            let mut cfg = importer_config(&profile);
            if with_token {
                cfg["kong_admin_token"] = json!(ADMIN_TOKEN);
            }
            f.start_fallback(&cfg, false);
            let imported = until_imported(&mut f, secs(90));
            let context = format!("{} (token: {with_token})", profile.name);
            assert_eq!(imported, with_token, "{context}");
            if with_token {
                assert!(calls_to(&f.world, NODE_ADMIN)
                    .iter()
                    .all(|c| c.request.header("kong-admin-token") == Some(ADMIN_TOKEN)));
            } else {
                let lines = fallback_lines(&f, "HTTP 401");
                assert!(!lines.is_empty(), "{context}");
                assert!(
                    lines[0].contains("RBAC") && lines[0].contains("kong_admin_token"),
                    "{context}: {}",
                    lines[0]
                );
            }
            assert_no_secrets(&f.world, &[ADMIN_TOKEN]);
        }
    }
}
