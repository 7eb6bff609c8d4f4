//! Import from GCS (issues 11 and 12): a CP-like node exports a Kong configuration to the mock
//! GCS; an empty fallback node whose source of truth is down downloads it (`alt=media`) with a
//! read-only token and `POST`s it to its Admin API. ngx_wasm_module and Envoy, 2 workers each.

mod gcs_support;

use config_bridge_tests::kong_setup::*;
use config_bridge_tests::*;
use gcs_support::*;
use host_harness::mocks::gcs::SCOPE_READ_ONLY;
use host_harness::mocks::kong::MockKongAdmin;
use serde_json::{json, Value};

#[test]
fn an_empty_node_imports_the_export_from_gcs_with_a_read_only_token() {
    for profile in two_profiles() {
        let Gcs {
            mut world,
            mock,
            key_json,
            ..
        } = gcs_world(&profile);
        let key_json = key_json.to_string();
        let probe = Probe::default();
        probe.set(ProbeMode::Refused);
        route_host(&mut world, PROBE, probe.clone());
        let admin = MockKongAdmin::dbless(KONG_VERSION);
        route_host(&mut world, NODE_ADMIN, admin.clone());

        // The exporter ("cp") exports a Kong configuration given as its own `config`.
        let doc = kong_config(1);
        let mut cp_cfg = to_gcs(&profile, filter_config(&profile, &doc), KeyVia::Env);
        cp_cfg["node_id"] = json!("cp-exporter");
        let cp = add_node(
            &mut world,
            "cp",
            2,
            &cp_cfg,
            &[("GCP_SERVICE_ACCOUNT", &key_json)],
        );
        let m = mock.clone();
        assert!(world.advance_until(secs(30), secs(1), |_| m
            .object(BUCKET, CONFIG_KEY)
            .is_some()));
        for w in 0..world.worker_count(cp) {
            world.kill_worker(cp, w);
        }

        // The fallback node: empty, CP unreachable, import-only.
        let fb_cfg = to_gcs(&profile, importer_config(&profile), KeyVia::Env);
        add_node(
            &mut world,
            "fallback",
            2,
            &fb_cfg,
            &[("GCP_SERVICE_ACCOUNT", &key_json)],
        );
        let a = admin.clone();
        assert!(
            world.advance_until(secs(120), secs(1), |_| a.applied_count() > 0),
            "{}: no import; logs {:#?}",
            profile.name,
            world
                .logs()
                .iter()
                .map(|l| l.message.clone())
                .collect::<Vec<_>>()
        );
        world.advance(secs(60));
        let posts = admin.posts();
        assert_eq!(posts.len(), 1, "{}", profile.name);
        assert_eq!(posts[0].status, 201);
        assert_eq!(
            admin.entities("services").len(),
            doc["services"].as_array().unwrap().len()
        );
        let applied = log_messages(&world, APPLIED);
        assert_eq!(applied.len(), 1, "{applied:?}");
        assert!(
            applied[0].contains("uploaded by cp-exporter"),
            "{}",
            applied[0]
        );

        // The fallback's token asked for read-only access; its download was `alt=media`.
        let fallback_tokens: Vec<_> = world
            .calls()
            .into_iter()
            .filter(|c| c.origin.node == "fallback" && c.request.path == "/token")
            .collect();
        assert!(!fallback_tokens.is_empty());
        for t in &fallback_tokens {
            let body = String::from_utf8_lossy(&t.request.body).to_string();
            let claims = body
                .split("assertion=")
                .nth(1)
                .and_then(|a| a.split('.').nth(1))
                .unwrap()
                .to_string();
            let v: Value = decode_segment(&claims);
            assert_eq!(v["scope"], SCOPE_READ_ONLY);
        }
        let downloads: Vec<_> = world
            .calls()
            .into_iter()
            .filter(|c| c.origin.node == "fallback" && c.request.path.contains("alt=media"))
            .collect();
        assert!(!downloads.is_empty());
        assert!(world.traps().is_empty());
        let pem = serde_json::from_str::<Value>(&key_json).unwrap()["private_key"]
            .as_str()
            .unwrap()
            .lines()
            .nth(2)
            .unwrap()
            .to_string();
        let tokens: Vec<String> = world
            .calls()
            .iter()
            .filter_map(|c| c.request.header("authorization").map(str::to_string))
            .collect();
        let mut secrets: Vec<&str> = tokens.iter().map(String::as_str).collect();
        secrets.push(&pem);
        assert_no_secrets(&world, &secrets);
    }
}
