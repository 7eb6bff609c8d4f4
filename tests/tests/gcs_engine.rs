//! The release `config_bridge.wasm` in the REAL engine (nginx + ngx_wasm_module, `../shared/ngx-wasm`)
//! exporting to the mock GCS over real TCP through the token flow: the RS256 JWT is signed on a
//! tick inside nginx, verified by the mock against the key's public half, and the upload carries
//! the token. No trap, no secret in the error log. Without the engine the test prints
//! `SKIP real engine ...` and passes, unless `CI` is set.

use std::sync::Arc;
use std::time::Duration;

use config_bridge_tests::real_engine::{
    assert_no_secrets_in_logs, EngineNode, EngineSpec, LogMark, WAIT,
};
use config_bridge_tests::{
    declarative, payload_bytes, BUCKET, CONFIG_KEY, GATEWAY_VERSION, PREFIX,
};
use host_harness::mocks::gcs::{MockGcs, ServiceAccountKey};
use host_harness::mocks::serve::spawn;
use serde_json::json;

#[test]
fn nginx_exports_to_the_mock_gcs_through_the_jwt_grant() {
    let mock = MockGcs::new().with_bucket(BUCKET);
    let server = spawn(Arc::new(mock.clone()), "127.0.0.1:0").expect("mock GCS serves");
    mock.set_base_url(&server.url());
    let key = ServiceAccountKey::generate("engine@kong-dr.iam.gserviceaccount.com");
    let key_json = mock.register_key(&key);
    let doc = declarative(7);
    let cfg = json!({
        "cluster_fallback_config_export": "on",
        "cluster_fallback_config_storage": format!("gs://{BUCKET}/{PREFIX}"),
        "cluster_fallback_config_export_delay": 1,
        "gateway_version": GATEWAY_VERSION,
        "node_id": "engine-gcs",
        "election": false,
        "gcs_endpoint": server.url(),
        "tick_period_ms": 200,
        "call_timeout_ms": 2000,
        "lease_ttl_ms": 1000,
        "retry_base_ms": 200,
        "retry_max_ms": 1000,
        "config": doc,
    });
    // The key through the environment, as Kong operators set GCP_SERVICE_ACCOUNT.
    let spec = EngineSpec::new("gcs-export", cfg).env("GCP_SERVICE_ACCOUNT", &key_json.to_string());
    let Some(node) = EngineNode::start(spec) else {
        return;
    };
    let exported = node.wait_until(WAIT, |_| {
        mock.object(BUCKET, CONFIG_KEY)
            .is_some_and(|o| o.data == payload_bytes(&doc))
    });
    assert!(
        exported,
        "no export to the mock GCS; requests {:?}; log:\n{}",
        mock.requests()
            .iter()
            .map(|c| format!(
                "{} {} {}",
                c.request.method,
                c.request.path_only(),
                c.status
            ))
            .collect::<Vec<_>>(),
        node.log_since_for_humans(LogMark(0))
    );
    std::thread::sleep(Duration::from_millis(1500));
    let obj = mock.object(BUCKET, CONFIG_KEY).unwrap();
    assert_eq!(obj.metadata["uploader"], "engine-gcs");
    let tokens = mock
        .requests()
        .iter()
        .filter(|c| c.request.path_only() == "/token")
        .map(|c| c.status)
        .collect::<Vec<_>>();
    assert!(
        !tokens.is_empty() && tokens.iter().all(|&s| s == 200),
        "{tokens:?}"
    );
    // At most one token per worker (2), however many ticks ran.
    assert!(tokens.len() <= 2, "{tokens:?}");
    assert!(node.problems().is_empty(), "{:?}", node.problems());
    let mut secrets: Vec<String> = key_json["private_key"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_string)
        .collect();
    for c in mock.requests() {
        if let Some(t) = c.request.header("authorization") {
            secrets.push(t.trim_start_matches("Bearer ").to_string());
        }
        let body = String::from_utf8_lossy(&c.request.body).to_string();
        if let Some(a) = body.split("assertion=").nth(1) {
            secrets.extend(a.split('.').map(str::to_string));
        }
    }
    assert_no_secrets_in_logs(&node, &secrets);
}
