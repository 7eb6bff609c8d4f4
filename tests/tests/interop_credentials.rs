//! The credential chain against moto's own instance metadata and STS (`moto_server`, started
//! here without IAM auth: CI's shared moto has auth on, and STS `AssumeRoleWithWebIdentity` is an
//! unsigned call moto then refuses). The real `.wasm` in a real-time harness world fetches IMDSv2
//! credentials (token PUT, role, credentials) and STS web-identity credentials from moto and
//! exports to moto's S3 with them. moto without auth does not check signatures: this proves the
//! protocols (requests moto accepts, answers the filter parses), the mock S3 tests the signing.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use config_bridge_tests::{payload_bytes, plugin_module};
use host_harness::tcp_upstream::TcpUpstream;
use host_harness::{HostProfile, NodeSpec, World};
use serde_json::json;

struct Moto {
    child: Child,
    host_port: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto(test: &str) -> Option<Moto> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let child = match Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("{test}: moto_server cannot start ({e}) and CI is set")
        }
        Err(e) => {
            eprintln!("SKIP {test}: moto_server cannot start ({e})");
            return None;
        }
    };
    let moto = Moto {
        child,
        host_port: format!("127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&moto.host_port).is_err() {
        assert!(
            Instant::now() < deadline,
            "{test}: moto_server did not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The bucket (moto without auth takes an unsigned CreateBucket).
    let upstream = TcpUpstream::new(&moto.host_port).expect("tcp upstream");
    let req = host_harness::http::HttpRequest::new("PUT", "/interop-creds")
        .with_header("host", &moto.host_port);
    let ctx =
        host_harness::http::CallContext::new(std::time::SystemTime::now(), "t", &moto.host_port);
    use host_harness::http::Handler as _;
    let reply = upstream.handle(&req, &ctx);
    let status = reply.response().map(|r| r.status);
    assert!(
        matches!(status, Some(200 | 409)),
        "{test}: CreateBucket: {reply:?}"
    );
    Some(moto)
}

fn export_with(test: &str, credentials: serde_json::Value) {
    let Some(moto) = start_moto(test) else { return };
    let mut world = World::new_realtime(HostProfile::ngx_wasm_module());
    let upstream = TcpUpstream::new(&moto.host_port)
        .expect("tcp upstream")
        .with_timeout(Duration::from_secs(10));
    world.route(&moto.host_port, Arc::new(upstream));
    let doc = json!({"_format_version": "3.0", "services": [{"name": "interop-creds", "url": "http://u.internal"}]});
    let mut cfg = json!({
        "cluster_fallback_config_export": "on",
        "cluster_fallback_config_storage": "s3://interop-creds/p",
        "cluster_fallback_config_export_delay": 0,
        "gateway_version": "3.9.1",
        "node_id": "interop-node",
        "election": false,
        "aws_region": "us-east-1",
        "storage_endpoint": format!("http://{}", moto.host_port),
        "tick_period_ms": 200,
        "config": doc,
    });
    for (k, v) in credentials.as_object().expect("object") {
        let v = match v.as_str() {
            Some(s) => json!(s.replace("MOTO", &moto.host_port)),
            None => v.clone(),
        };
        cfg[k] = v;
    }
    let node = world
        .add_node(NodeSpec::new("n1", &plugin_module()).filter(cfg.to_string()))
        .expect("node");
    let deadline = Instant::now() + Duration::from_secs(30);
    let want = payload_bytes(&doc);
    loop {
        world.advance(Duration::from_millis(200));
        let put_ok = world.calls().iter().any(|c| {
            c.request.method == "PUT"
                && c.request.body == want
                && matches!(&c.outcome, host_harness::CallOutcome::Response(r) if r.status == 200)
        });
        if put_ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{test}: no export; log: {:#?}",
            world
                .logs()
                .iter()
                .map(|l| l.message.clone())
                .collect::<Vec<_>>()
        );
    }
    let _ = node;
    // moto's IMDS hands out `test-key`, its STS `ASIA…` keys.
    let signed = world.calls().iter().any(|c| {
        c.request.method == "PUT"
            && c.request.header("authorization").is_some_and(|a| {
                a.contains("Credential=test-key/") || a.contains("Credential=ASIA")
            })
    });
    assert!(signed, "{test}: not signed with moto's credentials");
    for line in world.logs() {
        assert!(
            !line.message.contains("test-secret-key")
                && !line.message.contains("test-session-token"),
            "{test}: a secret in the log: {}",
            line.message
        );
    }
}

#[test]
fn imdsv2_credentials_from_moto() {
    export_with(
        "imdsv2_credentials_from_moto",
        json!({"aws_imds_endpoint": "http://MOTO"}),
    );
}

#[test]
fn web_identity_credentials_from_motos_sts() {
    export_with(
        "web_identity_credentials_from_motos_sts",
        json!({
            "aws_web_identity_token": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJrb25nIn0.",
            "aws_role_arn": "arn:aws:iam::123456789012:role/config-bridge",
            "aws_sts_endpoint": "http://MOTO",
        }),
    );
}
