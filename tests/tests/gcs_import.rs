//! Import from GCS (issues 11 and 12): a CP-like node exports a Kong configuration to the mock
//! GCS; an empty fallback node whose source of truth is down downloads it (`alt=media`) with a
//! read-only token and `POST`s it to its Admin API. ngx_wasm_module and Envoy, 2 workers each.

use std::sync::OnceLock;

use config_bridge_tests::kong_setup::*;
use config_bridge_tests::*;
use host_harness::mocks::gcs::{MockGcs, ServiceAccountKey, SCOPE_READ_ONLY};
use host_harness::mocks::kong::MockKongAdmin;
use host_harness::{HostProfile, World};
use serde_json::{json, Value};

const STORAGE_HOST: &str = "storage.gcs.test:4443";
const OAUTH_HOST: &str = "oauth2.gcs.test:4444";

fn key() -> &'static ServiceAccountKey {
    static KEY: OnceLock<ServiceAccountKey> = OnceLock::new();
    KEY.get_or_init(|| ServiceAccountKey::generate("dr@kong-dr.iam.gserviceaccount.com"))
}

/// `cfg` turned to `gs://` on the mock (the key comes from the environment).
fn on_gcs(profile: &HostProfile, mut cfg: Value) -> Value {
    let o = cfg.as_object_mut().unwrap();
    for k in [
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_region",
        "storage_endpoint",
    ] {
        o.remove(k);
    }
    cfg["cluster_fallback_config_storage"] = json!(format!("gs://{BUCKET}/{PREFIX}"));
    cfg["gcs_endpoint"] = json!(format!("http://{STORAGE_HOST}"));
    cfg["storage_upstream"] = json!(upstream_for(profile, STORAGE_HOST));
    if !profile.upstream_is_host_port {
        cfg["gcs_token_upstream"] = json!(upstream_for(profile, OAUTH_HOST));
    }
    cfg
}

#[test]
fn an_empty_node_imports_the_export_from_gcs_with_a_read_only_token() {
    for profile in two_profiles() {
        let mock = MockGcs::new()
            .with_base_url(&format!("http://{OAUTH_HOST}"))
            .with_bucket(BUCKET);
        let key_json = mock.register_key(key()).to_string();
        let mut world = World::new(profile.clone());
        route_host(&mut world, STORAGE_HOST, mock.clone());
        route_host(&mut world, OAUTH_HOST, mock.clone());
        let probe = Probe::default();
        probe.set(ProbeMode::Refused);
        route_host(&mut world, PROBE, probe.clone());
        let admin = MockKongAdmin::dbless(KONG_VERSION);
        route_host(&mut world, NODE_ADMIN, admin.clone());

        // The exporter ("cp") exports a Kong configuration given as its own `config`.
        let doc = kong_config(1);
        let mut cp_cfg = on_gcs(&profile, filter_config(&profile, &doc));
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
        let fb_cfg = on_gcs(&profile, importer_config(&profile));
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
            let text = String::from_utf8(config_bridge_b64url_decode(&claims)).unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
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

fn config_bridge_b64url_decode(s: &str) -> Vec<u8> {
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (mut acc, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in s.chars() {
        acc = (acc << 6) | alphabet.find(c).unwrap() as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
