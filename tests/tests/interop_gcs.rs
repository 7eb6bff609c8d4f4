//! Interoperability with a real GCS implementation: the `config-bridge` .wasm, in the host
//! harness, exports over real TCP to **fake-gcs-server** (the JSON API), with our mock's token
//! endpoint in front (fake-gcs-server checks no auth, so the JWT grant is verified by the mock
//! GCS over TCP); then **google-cloud-storage** reads the object back
//! (`tests/interop/gcs_readback.py`): identical bytes, the same metadata, the content type. A
//! second export replaces the object at its generation (`ifGenerationMatch`, which
//! fake-gcs-server honours on multipart uploads).
//!
//! Servers: `eval "$(bash .ci/servers/gcs.sh)"` exports `MOCK_GCS_ENDPOINT` and
//! `FAKE_GCS_ENDPOINT`; then `cargo test -p config-bridge-tests --test interop_gcs`. A missing
//! variable fails the test when `CI` is set and skips it (with a line on stderr) otherwise.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use config_bridge_tests::plugin_module;
use host_harness::http::{CallContext, Handler, HttpRequest};
use host_harness::mocks::gcs::ServiceAccountKey;
use host_harness::tcp_upstream::TcpUpstream;
use host_harness::{HostProfile, NodeSpec, World};
use serde_json::{json, Value};

const GATEWAY_VERSION: &str = "3.9.1";
const NODE_ID: &str = "interop-gcs-node";
const EMAIL: &str = "interop-exporter@kong-dr.iam.gserviceaccount.com";

fn endpoint(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v.trim_end_matches('/').to_string()),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set (start the servers with .ci/servers/gcs.sh)")
        }
        _ => {
            eprintln!(
                "SKIP interop_gcs: {var} not set (start the servers with .ci/servers/gcs.sh)"
            );
            None
        }
    }
}

fn host_port(url: &str) -> String {
    url.split("://")
        .nth(1)
        .unwrap_or(url)
        .trim_end_matches('/')
        .to_string()
}

/// One HTTP exchange over TCP (setup requests to the servers).
fn send(host_port: &str, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let up = TcpUpstream::new(host_port).expect("tokio runtime");
    let mut req = HttpRequest::new(method, path);
    req.authority = host_port.to_string();
    req.scheme = "http".into();
    req.headers = vec![
        ("content-type".into(), "application/json".into()),
        ("content-length".into(), body.len().to_string()),
    ];
    req.body = body;
    let ctx = CallContext::new(SystemTime::now(), "setup", host_port);
    let reply = up.handle(&req, &ctx);
    let resp = reply
        .response()
        .cloned()
        .unwrap_or_else(|| panic!("{method} {path} on {host_port}: no answer"));
    (resp.status, resp.body)
}

fn unique(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}-{test}", std::process::id())
}

fn doc(n: u32) -> Value {
    json!({
        "_format_version": "3.0",
        "services": [{"name": format!("gcs-interop-svc-{n}"),
                      "url": format!("http://upstream-{n}.internal:8080/api"),
                      "routes": [{"name": format!("gcs-route-{n}"), "paths": ["/ü/ñ"]}]}],
        "consumers": [{"username": format!("user-{n}"), "tags": ["ünïcode ✓"]}],
    })
}

fn readback(fake: &str, bucket: &str, key: &str, expect: &[u8]) -> Value {
    let dir = std::env::temp_dir().join(unique("gcs-expect"));
    std::fs::write(&dir, expect).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/gcs_readback.py");
    let out = Command::new("python3")
        .arg(script)
        .args([
            "--endpoint",
            fake,
            "--bucket",
            bucket,
            "--key",
            key,
            "--expect",
        ])
        .arg(&dir)
        .output()
        .expect("run python3 tests/interop/gcs_readback.py");
    let _ = std::fs::remove_file(&dir);
    assert!(
        out.status.success(),
        "gcs_readback.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("gcs_readback.py output {:?}: {e}", out.stdout))
}

#[test]
fn exports_to_fake_gcs_server_and_google_cloud_storage_reads_it_back() {
    let (Some(mock), Some(fake)) = (endpoint("MOCK_GCS_ENDPOINT"), endpoint("FAKE_GCS_ENDPOINT"))
    else {
        return;
    };
    let (mock_hp, fake_hp) = (host_port(&mock), host_port(&fake));
    // A fresh key registered with the mock's token endpoint (its test-only control endpoint).
    let key = ServiceAccountKey::generate(EMAIL);
    let pem = key.public_key_pem();
    let reg =
        json!({"client_email": EMAIL, "private_key_id": key.private_key_id, "public_key_pem": pem});
    let (status, _) = send(
        &mock_hp,
        "POST",
        "/_mock/service-accounts",
        reg.to_string().into_bytes(),
    );
    assert_eq!(status, 201);
    let key_json = key.to_json(&format!("{mock}/token"));
    // A bucket of our own in fake-gcs-server.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let bucket = format!("cb-interop-{}", nanos % 1_000_000_000_000);
    let (status, body) = send(
        &fake_hp,
        "POST",
        "/storage/v1/b?project=interop-project",
        json!({"name": bucket}).to_string().into_bytes(),
    );
    assert!(
        status == 200,
        "create bucket: {status} {}",
        String::from_utf8_lossy(&body)
    );

    let prefix = format!("interop/{}", unique("export"));
    let key_name = format!("{prefix}/{GATEWAY_VERSION}/config.json");
    let mut world = World::new_realtime(HostProfile::ngx_wasm_module());
    for hp in [&fake_hp, &mock_hp] {
        let up = TcpUpstream::new(hp)
            .unwrap()
            .with_timeout(Duration::from_secs(10));
        world.route(hp, Arc::new(up));
    }
    let cfg = |n: u32| {
        json!({
            "cluster_fallback_config_export": "on",
            "cluster_fallback_config_storage": format!("gs://{bucket}/{prefix}"),
            "cluster_fallback_config_export_delay": 1,
            "gateway_version": GATEWAY_VERSION,
            "node_id": NODE_ID,
            // One node's export (the election has its own GCS test: gcs_election.rs).
            "election": false,
            "gcs_endpoint": fake,
            "gcp_service_account": key_json.to_string(),
            "tick_period_ms": 100,
            "call_timeout_ms": 10000,
            "config": doc(n),
        })
    };
    let node = world
        .add_node(NodeSpec::new(NODE_ID, &plugin_module()).filter(cfg(1).to_string()))
        .unwrap();
    let exported = |w: &World, n: usize| w.logs_containing("exported config to").len() >= n;
    assert!(
        world.advance_until(Duration::from_secs(30), Duration::from_millis(100), |w| {
            exported(w, 1)
        }),
        "no export: {:#?}",
        world
            .logs()
            .iter()
            .map(|l| l.message.clone())
            .collect::<Vec<_>>()
    );
    let body1 = serde_json::to_vec(&doc(1)).unwrap();
    let seen = readback(&fake, &bucket, &key_name, &body1);
    assert_eq!(seen["ok"], true, "{seen}");
    assert_eq!(seen["bytes_equal"], true, "{seen}");
    assert_eq!(seen["content_type"], "application/json");
    assert_eq!(seen["metadata"]["uploader"], NODE_ID);
    assert_eq!(
        seen["metadata"]["config-sha256"],
        config_bridge::document::sha256_hex(&body1)
    );
    assert!(seen["metadata"]["config-applied-at"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .is_ok());

    // The second export replaces the object at the generation it wrote.
    world.advance(Duration::from_secs(2));
    world.reconfigure(node, 0, cfg(2).to_string());
    assert!(
        world.advance_until(Duration::from_secs(30), Duration::from_millis(100), |w| {
            exported(w, 2)
        })
    );
    let body2 = serde_json::to_vec(&doc(2)).unwrap();
    let seen2 = readback(&fake, &bucket, &key_name, &body2);
    assert_eq!(seen2["bytes_equal"], true, "{seen2}");
    // config.json's uploads, and the history copies next to it (docs/history.md), each written
    // right after its config.json.
    let history_uploads = |w: &World| {
        w.calls()
            .into_iter()
            .filter(|c| {
                c.request.method == "POST"
                    && c.request.path.contains("%2Fhistory%2F")
                    && c.answered_at.is_some()
            })
            .count()
    };
    assert!(
        world.advance_until(Duration::from_secs(30), Duration::from_millis(100), |w| {
            history_uploads(w) >= 2
        })
    );
    let (history, uploads): (Vec<String>, Vec<String>) = world
        .calls()
        .into_iter()
        .filter(|c| c.upstream == fake_hp && c.request.method == "POST")
        .map(|c| c.request.path)
        .partition(|p| p.contains("%2Fhistory%2F"));
    assert_eq!(uploads.len(), 2, "{uploads:?}");
    assert_eq!(history.len(), 2, "{history:?}");
    assert!(
        history.iter().all(|p| p.ends_with("&ifGenerationMatch=0")),
        "history objects are create-only: {history:?}"
    );
    // The newest history object holds the second export, as google-cloud-storage reads it.
    let history_name = history[1]
        .split("&name=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .unwrap()
        .replace("%2F", "/");
    let seen_history = readback(&fake, &bucket, &history_name, &body2);
    assert_eq!(seen_history["bytes_equal"], true, "{seen_history}");
    assert_eq!(
        seen_history["metadata"]["config-sha256"],
        seen2["metadata"]["config-sha256"]
    );
    assert!(uploads[0].ends_with("&ifGenerationMatch=0"), "{uploads:?}");
    assert!(
        uploads[1].ends_with(&format!(
            "&ifGenerationMatch={}",
            seen["generation"].as_str().unwrap()
        )),
        "{uploads:?} vs {seen}"
    );
    // The token came from the mock over TCP, once.
    let tokens = world
        .calls()
        .into_iter()
        .filter(|c| c.upstream == mock_hp)
        .count();
    assert_eq!(tokens, 1);
    assert!(world.traps().is_empty());
    let pem_line = key_json["private_key"]
        .as_str()
        .unwrap()
        .lines()
        .nth(3)
        .unwrap()
        .to_string();
    for l in world.logs() {
        assert!(!l.message.contains(&pem_line), "{}", l.message);
        assert!(!l.message.contains("ya29."), "{}", l.message);
    }
}
