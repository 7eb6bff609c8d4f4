//! The release `config_bridge.wasm` in the REAL engine (nginx + ngx_wasm_module, see
//! `engine_export.rs`) exporting to **s3s-fs** and to **moto with IAM auth on**, credentials from
//! the environment through nginx `env` directives; the object is read back with a SigV4-signed GET
//! from Rust (`native_sigv4`) and must be byte-identical. A reload with the same config must not
//! trap and must leave the object as it was.
//!
//! Servers: `eval "$(bash .ci/servers/s3.sh)"` (exports `S3S_*` and `MOTO_*`), then
//! `cargo test -p config-bridge-tests --test engine_interop_s3`. A missing variable or a missing
//! engine FAILS the test when `CI` is set and prints `SKIP ...` otherwise (like `interop_s3`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use config_bridge_tests::native_sigv4::Signer;
use config_bridge_tests::payload_bytes;
use config_bridge_tests::real_engine::{
    assert_no_secrets_in_logs, engine_filter_config, settle, tricky_doc, EngineNode, EngineSpec,
    LogMark, ALREADY_HOLDS, EXPORTED, WAIT,
};
use config_bridge_tests::s3_servers::S3Server;
use host_harness::http::{CallContext, Handler, HttpRequest, HttpResponse, Reply};
use host_harness::tcp_upstream::TcpUpstream;
use serde_json::json;

const REGION: &str = "us-east-1";
const GATEWAY_VERSION: &str = "3.9.1";

type Server = S3Server;

fn server(name: &'static str, prefix: &str, test: &str) -> Option<Server> {
    S3Server::from_env(name, prefix, &format!("real engine {test}"))
}

/// A SigV4-signed GET of `key` (path-style) over TCP.
fn signed_get(srv: &Server, key: &str) -> HttpResponse {
    let path = format!("/{}/{key}", srv.bucket);
    let headers: Vec<(String, String)> = vec![("host".into(), srv.host_port.clone())];
    let signer = Signer {
        access_key: &srv.access_key,
        secret_key: &srv.secret_key,
        region: REGION,
    };
    let url = format!("{}{path}", srv.endpoint.trim_end_matches('/'));
    let added = signer.sign("GET", &url, &headers, b"", SystemTime::now());
    let mut req = HttpRequest::new("GET", &path);
    req.authority = srv.host_port.clone();
    for (k, v) in &added {
        req = req.with_header(k, v);
    }
    let upstream = TcpUpstream::new(&srv.host_port)
        .expect("tokio runtime")
        .with_timeout(Duration::from_secs(10));
    let ctx = CallContext::new(SystemTime::now(), "engine-interop-test", &srv.host_port);
    match Arc::new(upstream).handle(&req, &ctx) {
        Reply::Response { response, .. } => response,
        other => panic!("{}: GET {path}: no response: {other:?}", srv.name),
    }
}

fn export_reload_and_read_back(srv: Option<Server>, test: &str) {
    let Some(srv) = srv else { return };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let prefix = format!("engine/{}-{nanos}-{test}", std::process::id());
    let key = format!("{prefix}/{GATEWAY_VERSION}/config.json");
    let doc = tricky_doc(111);
    let mut cfg = engine_filter_config(&srv.endpoint, &doc);
    cfg["cluster_fallback_config_storage"] = json!(format!("s3://{}/{prefix}", srv.bucket));
    cfg["call_timeout_ms"] = json!(10_000);
    let m = cfg.as_object_mut().expect("object");
    m.remove("aws_access_key_id");
    m.remove("aws_secret_access_key");
    let spec = EngineSpec::new(test, &cfg)
        .env("AWS_ACCESS_KEY_ID", &srv.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &srv.secret_key);
    let Some(mut node) = EngineNode::start(spec) else {
        return;
    };
    node.wait_for_log(EXPORTED, WAIT);
    let first = signed_get(&srv, &key);
    assert_eq!(
        first.status,
        200,
        "{}: GET {key}: {}\nlog:\n{}",
        srv.name,
        first.text(),
        node.log_since_for_humans(LogMark(0))
    );
    assert_eq!(
        first.body,
        payload_bytes(&doc),
        "{}: the object read back is not the config payload byte for byte",
        srv.name
    );

    // The same config again: the node must find it in storage (a HEAD), not trap, not change it.
    let mark = node.mark();
    node.reload_with(&cfg);
    let settled = node.wait_until(WAIT, |n| {
        !n.entries_since_containing(mark, ALREADY_HOLDS).is_empty()
            || !n.entries_since_containing(mark, EXPORTED).is_empty()
    });
    assert!(
        settled,
        "{}: after the reload the node neither found the object nor exported it:\n{}",
        srv.name,
        node.log_since_for_humans(mark)
    );
    settle(Duration::from_secs(2));
    let again = signed_get(&srv, &key);
    assert_eq!(again.status, 200, "{}: GET after the reload", srv.name);
    assert_eq!(again.body, first.body, "{}: the object changed", srv.name);
    let reuploaded = node.entries_since_containing(mark, EXPORTED).len();
    eprintln!(
        "{test}: {} after the same-config reload: {}",
        srv.name,
        if reuploaded == 0 {
            "found it in storage, no upload".to_string()
        } else {
            format!("uploaded it again ({reuploaded}x)")
        }
    );
    node.assert_no_traps();
    assert_no_secrets_in_logs(&node, std::slice::from_ref(&srv.secret_key));
}

#[test]
fn s3s_fs_receives_the_config_from_the_real_engine() {
    let test = "engine_s3s";
    export_reload_and_read_back(server("s3s-fs", "S3S", test), test);
}

#[test]
fn moto_receives_the_config_from_the_real_engine() {
    let test = "engine_moto";
    export_reload_and_read_back(server("moto", "MOTO", test), test);
}
