//! Interoperability: the real `config-bridge` .wasm, in the host harness, exports over real TCP
//! (`host_harness::tcp_upstream::TcpUpstream`) to **s3s-fs** and to **moto with IAM auth on**;
//! then a real client reads the object back: boto3 (`tests/interop/readback.py`, run with
//! `python3`) and a SigV4-signed GET from Rust. Checked: byte-identical JSON, the
//! `x-amz-meta-*` metadata, SSE and storage class where the server keeps them (moto echoes
//! them; s3s-fs refuses storage classes, so it gets neither), conditional writes
//! (`If-None-Match: *`, `If-Match`), and a wrong secret (a clear log line with the server's
//! error code, no trap, retries).
//!
//! Servers: `eval "$(bash .ci/servers/s3.sh)"` starts the mock S3, s3s-fs and moto and exports
//! `S3S_ENDPOINT`, `S3S_ACCESS_KEY`, `S3S_SECRET_KEY`, `S3S_BUCKET`, `MOTO_ENDPOINT`,
//! `MOTO_ACCESS_KEY`, `MOTO_SECRET_KEY`, `MOTO_BUCKET` (and `*_PID`s). Then
//! `cargo test -p config-bridge-tests --test interop_s3`, and stop the servers with
//! `kill $MOCK_S3_PID $S3S_PID $MOTO_PID`.
//!
//! **When a variable is missing**: if `CI` is set the test FAILS (CI must never skip silently);
//! otherwise it prints `SKIP interop ...: <VAR> not set ...` on stderr and returns (passes), so a
//! plain `cargo test` on a laptop without the servers stays green.
//!
//! Every run writes under a fresh prefix (`interop/<pid>-<nanos>-<test>/`), so runs and tests do
//! not see each other's objects. The world's clock starts at the real time
//! (`World::new_realtime`): the servers check the request date against their own clock. Most
//! tests then advance virtual time (ahead of the servers by at most the 30 s a test waits, well
//! inside the signing window); the election tests run on the wall clock
//! (`World::run_realtime_until`), since the election judges freshness on the store's clock.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use config_bridge_tests::native_sigv4::{sha256_hex, Signer};
use config_bridge_tests::s3_servers::S3Server;
use config_bridge_tests::{canonical_json, plugin_module};
use host_harness::http::{CallContext, Handler, HttpRequest, HttpResponse, Reply};
use host_harness::tcp_upstream::TcpUpstream;
use host_harness::{CallOutcome, CallRecord, HostProfile, LogLevel, NodeId, NodeSpec, World};
use serde_json::{json, Value};

const REGION: &str = "us-east-1";
const GATEWAY_VERSION: &str = "3.9.1";
const NODE_ID: &str = "interop-node-1";

/// One real S3 server, from the environment `.ci/servers/s3.sh` prints.
#[derive(Clone)]
struct Server {
    name: &'static str,
    endpoint: String,
    /// `host:port`, the `dispatch_http_call` upstream.
    host_port: String,
    access_key: String,
    secret_key: String,
    bucket: String,
    /// s3s-fs answers `InvalidStorageClass` to any `x-amz-storage-class`.
    storage_class: bool,
}

/// The server behind `prefix` (`S3S`, `MOTO`), or `None` (skip); see `S3Server::from_env`.
fn server(name: &'static str, prefix: &str, test: &str) -> Option<Server> {
    let S3Server {
        name,
        endpoint,
        host_port,
        access_key,
        secret_key,
        bucket,
    } = S3Server::from_env(name, prefix, &format!("interop {test}"))?;
    Some(Server {
        name,
        endpoint,
        host_port,
        access_key,
        secret_key,
        bucket,
        storage_class: name != "s3s-fs",
    })
}

fn s3s(test: &str) -> Option<Server> {
    server("s3s-fs", "S3S", test)
}

fn moto(test: &str) -> Option<Server> {
    server("moto", "MOTO", test)
}

/// A prefix no other run or test uses.
fn fresh_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("interop/{}-{nanos}-{test}", std::process::id())
}

fn config_key(prefix: &str) -> String {
    format!("{prefix}/{GATEWAY_VERSION}/config.json")
}

fn doc(n: u32) -> Value {
    json!({
        "_format_version": "3.0",
        "services": [{
            "name": format!("interop-svc-{n}"),
            "url": format!("http://upstream-{n}.internal:8080/api"),
            "routes": [{"name": format!("interop-route-{n}"), "paths": [format!("/i{n}"), "/ü/ñ"]}],
            "plugins": [{"name": "rate-limiting", "config": {"minute": 60 + n}}],
        }],
        "consumers": [{"username": format!("user-{n}"), "tags": ["interop", "ünïcode ✓"]}],
    })
}

/// How the filter gets its keys.
#[derive(Clone, Copy, PartialEq)]
enum Keys {
    FilterConfig,
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` through WASI, as Kong's workers would see them.
    Environment,
}

struct Export {
    server: Server,
    prefix: String,
    world: World,
    node: NodeId,
}

fn filter_config(srv: &Server, prefix: &str, doc: &Value, secret: &str, keys: Keys) -> Value {
    let mut s3_config = json!({
        "ServerSideEncryption": "AES256",
        "Metadata": {"environment": "interop"},
    });
    if srv.storage_class {
        s3_config["StorageClass"] = json!("STANDARD_IA");
    }
    let mut cfg = json!({
        "cluster_fallback_config_export": "on",
        "cluster_fallback_config_storage": format!("s3://{}/{prefix}", srv.bucket),
        "cluster_fallback_config_export_delay": 0,
        "cluster_fallback_export_s3_config": s3_config,
        "gateway_version": GATEWAY_VERSION,
        "node_id": NODE_ID,
        "election": false,
        "aws_region": REGION,
        "storage_endpoint": srv.endpoint,
        "storage_upstream": srv.host_port,
        "tick_period_ms": 100,
        "call_timeout_ms": 10_000,
        "retry_base_ms": 200,
        "retry_max_ms": 1_000,
        "config": doc,
    });
    if keys == Keys::FilterConfig {
        cfg["aws_access_key_id"] = json!(srv.access_key);
        cfg["aws_secret_access_key"] = json!(secret);
    }
    cfg
}

/// A real-time world whose storage upstream is the server over TCP, with one node exporting
/// `doc` (keys as `keys` says; `secret` may be a wrong one).
fn start_export(srv: &Server, test: &str, doc: &Value, secret: &str, keys: Keys) -> Export {
    let prefix = fresh_prefix(test);
    let mut world = World::new_realtime(HostProfile::ngx_wasm_module());
    let upstream = TcpUpstream::new(&srv.host_port)
        .expect("tokio runtime for the TCP upstream")
        .with_timeout(Duration::from_secs(10));
    world.route(&srv.host_port, Arc::new(upstream));
    let cfg = filter_config(srv, &prefix, doc, secret, keys);
    let mut spec = NodeSpec::new(NODE_ID, &plugin_module()).filter(cfg.to_string());
    if keys == Keys::Environment {
        spec = spec
            .env("AWS_ACCESS_KEY_ID", &srv.access_key)
            .env("AWS_SECRET_ACCESS_KEY", secret);
    }
    let node = world.add_node(spec).expect("start the node");
    assert_eq!(
        world.configured(node, 0, 0),
        Some(true),
        "{}: on_configure failed: {:?}",
        srv.name,
        messages(&world, "")
    );
    Export {
        server: srv.clone(),
        prefix,
        world,
        node,
    }
}

fn messages(world: &World, needle: &str) -> Vec<String> {
    world
        .logs_containing(needle)
        .into_iter()
        .map(|l| l.message)
        .collect()
}

/// Runs until the filter logged its `n`-th successful export (at most 30 s of virtual time).
fn until_exported(e: &mut Export, n: usize) {
    let ok = e
        .world
        .advance_until(Duration::from_secs(30), Duration::from_millis(100), |w| {
            w.logs_containing("exported config to").len() >= n
        });
    assert!(
        ok,
        "{}: export #{n} did not happen; storage calls: {:?}; logs: {:#?}",
        e.server.name,
        call_summary(&e.world, &e.server),
        messages(&e.world, "[config-bridge]")
    );
}

fn storage_calls(world: &World, srv: &Server) -> Vec<CallRecord> {
    world
        .calls()
        .into_iter()
        .filter(|c| c.upstream == srv.host_port)
        .collect()
}

fn status(c: &CallRecord) -> Option<u16> {
    match &c.outcome {
        CallOutcome::Response(r) => Some(r.status),
        _ => None,
    }
}

/// `METHOD status [if-none-match|if-match]` per storage call, for messages.
fn call_summary(world: &World, srv: &Server) -> Vec<String> {
    storage_calls(world, srv)
        .iter()
        .map(|c| {
            let cond = match (
                c.request.header("if-none-match"),
                c.request.header("if-match"),
            ) {
                (Some(v), _) => format!(" If-None-Match:{v}"),
                (_, Some(_)) => " If-Match".to_string(),
                _ => String::new(),
            };
            let st = match &c.outcome {
                CallOutcome::Response(r) => r.status.to_string(),
                other => format!("{other:?}"),
            };
            format!("{} {st}{cond}", c.request.method)
        })
        .collect()
}

/// No log line carries a secret (nor the server's secret, nor a signature).
fn assert_no_secret_in_logs(world: &World, secrets: &[&str]) {
    let sigs: Vec<String> = world
        .calls()
        .iter()
        .filter_map(|c| c.request.header("authorization"))
        .filter_map(|a| a.split("Signature=").nth(1).map(str::to_string))
        .collect();
    for line in world.logs() {
        for s in secrets
            .iter()
            .copied()
            .chain(sigs.iter().map(String::as_str))
        {
            assert!(
                s.len() < 8 || !line.message.contains(s),
                "a secret leaked into a log line: {}",
                line.message
            );
        }
    }
}

// ---- real clients ------------------------------------------------------------------------------

fn readback_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/readback.py")
}

/// boto3's view of the object (see `tests/interop/readback.py`), compared with `expect`.
fn boto3_readback(srv: &Server, key: &str, expect: &[u8]) -> Value {
    let expect_file = std::env::temp_dir().join(format!(
        "config-bridge-interop-{}-{}.json",
        std::process::id(),
        key.replace('/', "_")
    ));
    std::fs::write(&expect_file, expect).expect("write the expected bytes");
    let out = Command::new("python3")
        .arg(readback_script())
        .args([
            "--endpoint",
            &srv.endpoint,
            "--bucket",
            &srv.bucket,
            "--key",
            key,
        ])
        .arg("--expect")
        .arg(&expect_file)
        .env("READBACK_ACCESS_KEY", &srv.access_key)
        .env("READBACK_SECRET_KEY", &srv.secret_key)
        .output()
        .expect("run python3 tests/interop/readback.py");
    let _ = std::fs::remove_file(&expect_file);
    assert!(
        out.status.success(),
        "readback.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("readback.py output {stdout:?}: {e}"))
}

/// A request signed with SigV4 (path-style), sent to the server over TCP from Rust.
fn signed(
    srv: &Server,
    method: &str,
    key: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> HttpResponse {
    let path = format!("/{}/{key}", srv.bucket);
    let mut headers: Vec<(String, String)> = vec![("host".into(), srv.host_port.clone())];
    if !body.is_empty() {
        headers.push(("content-length".into(), body.len().to_string()));
        headers.push(("content-type".into(), "application/json".into()));
    }
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let signer = Signer {
        access_key: &srv.access_key,
        secret_key: &srv.secret_key,
        region: REGION,
    };
    let url = format!("{}{path}", srv.endpoint.trim_end_matches('/'));
    let added = signer.sign(method, &url, &headers, body, SystemTime::now());
    let mut req = HttpRequest::new(method, &path);
    req.authority = srv.host_port.clone();
    req.body = body.to_vec();
    for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
        req = req.with_header(k, v);
    }
    for (k, v) in &added {
        req = req.with_header(k, v);
    }
    let upstream = TcpUpstream::new(&srv.host_port).expect("tokio runtime");
    let ctx = CallContext::new(SystemTime::now(), "interop-test", &srv.host_port);
    match upstream.handle(&req, &ctx) {
        Reply::Response { response, .. } => response,
        other => panic!("{} {method} {path}: no response: {other:?}", srv.name),
    }
}

// ---- the checks ----------------------------------------------------------------------------------

fn export_reads_back_byte_identical(srv: Server, test: &str, keys: Keys) {
    let d = doc(1);
    let expected = canonical_json(&d);
    let mut e = start_export(&srv, test, &d, &srv.secret_key.clone(), keys);
    until_exported(&mut e, 1);
    let key = config_key(&e.prefix);

    // The PUT the filter sent, as the server answered it.
    let puts: Vec<CallRecord> = storage_calls(&e.world, &srv)
        .into_iter()
        .filter(|c| c.request.method == "PUT")
        .collect();
    assert_eq!(
        puts.len(),
        1,
        "{}: {:?}",
        srv.name,
        call_summary(&e.world, &srv)
    );
    assert_eq!(status(&puts[0]), Some(200), "{}", srv.name);
    assert_eq!(
        puts[0].request.header("if-none-match"),
        Some("*"),
        "first write is If-None-Match: *"
    );

    // boto3.
    let rb = boto3_readback(&srv, &key, &expected);
    assert_eq!(
        rb["ok"],
        json!(true),
        "{}: boto3 could not read {key}: {rb}",
        srv.name
    );
    assert_eq!(
        rb["bytes_equal"],
        json!(true),
        "{}: boto3 read different bytes: {rb}",
        srv.name
    );
    assert_eq!(rb["length"], json!(expected.len()));
    assert_eq!(rb["sha256"], json!(sha256_hex(&expected)));
    assert_eq!(
        rb["metadata"]["uploader"],
        json!(NODE_ID),
        "{}: {rb}",
        srv.name
    );
    assert_eq!(
        rb["metadata"]["config-sha256"],
        json!(sha256_hex(&expected)),
        "{rb}"
    );
    assert!(
        rb["metadata"]["config-applied-at"]
            .as_str()
            .is_some_and(|s| s.parse::<u64>().is_ok()),
        "{rb}"
    );
    assert_eq!(rb["metadata"]["environment"], json!("interop"), "{rb}");
    assert_eq!(
        rb["head_metadata"]["uploader"],
        json!(NODE_ID),
        "HEAD: {rb}"
    );
    assert_eq!(rb["content_type"], json!("application/json"), "{rb}");
    match srv.name {
        "moto" => {
            assert_eq!(rb["server_side_encryption"], json!("AES256"), "{rb}");
            assert_eq!(rb["head_server_side_encryption"], json!("AES256"), "{rb}");
            assert_eq!(rb["storage_class"], json!("STANDARD_IA"), "{rb}");
        }
        _ => eprintln!(
            "{}: SSE as read back: {} (storage class not sent: the server refuses them)",
            srv.name, rb["server_side_encryption"]
        ),
    }

    // A signed GET from Rust.
    let got = signed(&srv, "GET", &key, b"", &[]);
    assert_eq!(got.status, 200, "{}: signed GET: {}", srv.name, got.text());
    assert!(
        got.body == expected,
        "{}: signed GET returned different bytes",
        srv.name
    );
    assert_eq!(got.header("x-amz-meta-uploader"), Some(NODE_ID));

    assert!(e.world.traps().is_empty());
    assert_no_secret_in_logs(&e.world, &[&srv.secret_key]);
    let _ = e.node;
}

fn wrong_secret_is_a_clear_error_and_retried(srv: Server, test: &str, expected_code: &str) {
    let wrong = "definitely-not-the-secret-0123456789/abcdefgh";
    let mut e = start_export(&srv, test, &doc(2), wrong, Keys::FilterConfig);
    e.world
        .advance_until(Duration::from_secs(30), Duration::from_millis(100), |w| {
            // The HEAD that asks first, then conditional PUTs.
            w.logs_containing("export to").len() >= 4
        });
    let puts: Vec<CallRecord> = storage_calls(&e.world, &srv)
        .into_iter()
        .filter(|c| c.request.method == "PUT")
        .collect();
    assert!(
        puts.len() >= 3,
        "{}: retried: {:?}",
        srv.name,
        call_summary(&e.world, &srv)
    );
    assert!(
        puts.iter().all(|c| status(c) == Some(403)),
        "{}: {:?}",
        srv.name,
        call_summary(&e.world, &srv)
    );
    let failures = messages(&e.world, "failed");
    let line = failures
        .iter()
        // The export's own line (the election's registration fails first, with its own line).
        .find(|l| l.contains(expected_code) && l.contains("export to"))
        .unwrap_or_else(|| {
            panic!(
                "{}: no log line names {expected_code}: {failures:#?}",
                srv.name
            )
        });
    eprintln!("{}: {line}", srv.name);
    assert!(line.contains("403"), "{line}");
    // Said once with the fix, then retried after the longest backoff (here 1 s).
    assert!(line.contains("no retry can fix this"), "{line}");
    assert!(e.world.traps().is_empty() && e.world.fatal_errors().is_empty());
    assert!(e.world.worker_alive(e.node, 0));
    assert!(messages(&e.world, "exported config to").is_empty());
    assert_no_secret_in_logs(&e.world, &[wrong, &srv.secret_key]);
}

/// `If-None-Match: *` on the first write, `If-Match: <etag>` after; a foreign overwrite between
/// two exports makes the server answer 412 (when it honours `If-Match`), the filter HEADs and
/// writes again. Returns the storage-call summary.
fn conditional_writes(srv: Server, test: &str) -> Vec<String> {
    let mut e = start_export(
        &srv,
        test,
        &doc(3),
        &srv.secret_key.clone(),
        Keys::FilterConfig,
    );
    until_exported(&mut e, 1);
    let key = config_key(&e.prefix);

    // Another writer (without our metadata, as Kong would write) replaces the object.
    let foreign = br#"{"_format_version":"3.0","services":[]}"#;
    let put = signed(&srv, "PUT", &key, foreign, &[]);
    assert_eq!(put.status, 200, "{}: foreign PUT: {}", srv.name, put.text());

    // A new config: the filter's If-Match carries the ETag of its own first write.
    let d4 = doc(4);
    let results = e.world.reconfigure(
        e.node,
        0,
        filter_config(&srv, &e.prefix, &d4, &srv.secret_key, Keys::FilterConfig).to_string(),
    );
    assert_eq!(results, vec![Some(true)]);
    until_exported(&mut e, 2);
    let summary = call_summary(&e.world, &srv);
    eprintln!("{}: conditional writes: {summary:?}", srv.name);
    let puts: Vec<CallRecord> = storage_calls(&e.world, &srv)
        .into_iter()
        .filter(|c| c.request.method == "PUT")
        .collect();
    assert_eq!(puts[0].request.header("if-none-match"), Some("*"));
    assert_eq!(
        status(&puts[0]),
        Some(200),
        "If-None-Match: * accepted: {summary:?}"
    );
    assert!(puts[1].request.header("if-match").is_some(), "{summary:?}");
    assert_eq!(status(puts.last().unwrap()), Some(200), "{summary:?}");
    let rb = boto3_readback(&srv, &key, &canonical_json(&d4));
    assert_eq!(
        rb["bytes_equal"],
        json!(true),
        "{}: the newest config is stored: {rb}",
        srv.name
    );
    summary
}

// ---- s3s-fs ----------------------------------------------------------------------------------------

#[test]
fn s3s_fs_export_is_read_back_byte_identical_by_boto3_and_a_signed_get() {
    let Some(srv) = s3s("s3s_fs_export") else {
        return;
    };
    export_reads_back_byte_identical(srv, "s3s-export", Keys::FilterConfig);
}

#[test]
fn s3s_fs_wrong_secret_is_logged_with_the_server_code_retried_and_never_traps() {
    let Some(srv) = s3s("s3s_fs_wrong_secret") else {
        return;
    };
    wrong_secret_is_a_clear_error_and_retried(srv, "s3s-wrong-secret", "SignatureDoesNotMatch");
}

#[test]
fn s3s_fs_conditional_writes() {
    let Some(srv) = s3s("s3s_fs_conditional") else {
        return;
    };
    let summary = conditional_writes(srv, "s3s-conditional");
    // s3s-fs honours If-Match (not atomically: its check and its write are separate steps): the stale ETag is refused.
    assert!(
        summary.iter().any(|s| s.starts_with("PUT 412")),
        "{summary:?}"
    );
}

// ---- moto (IAM auth on) -------------------------------------------------------------------------

#[test]
fn moto_export_with_keys_from_the_environment_is_read_back_with_sse_and_storage_class() {
    let Some(srv) = moto("moto_export") else {
        return;
    };
    export_reads_back_byte_identical(srv, "moto-export", Keys::Environment);
}

#[test]
fn moto_wrong_secret_is_logged_with_the_server_code_retried_and_never_traps() {
    let Some(srv) = moto("moto_wrong_secret") else {
        return;
    };
    wrong_secret_is_a_clear_error_and_retried(srv, "moto-wrong-secret", "SignatureDoesNotMatch");
}

#[test]
fn moto_conditional_writes() {
    let Some(srv) = moto("moto_conditional") else {
        return;
    };
    let summary = conditional_writes(srv, "moto-conditional");
    assert!(
        summary.iter().any(|s| s.starts_with("PUT 412")),
        "{summary:?}"
    );
}

/// The export read back by the import over real TCP: a fallback node in the same world, with the
/// node's Admin API a mock, imports what the exporter wrote to the real server (moto: with its
/// read-only user, `s3:GetObject` + `s3:ListBucket` only).
fn import_reads_the_export_back(srv: Server, test: &str, read_only: Option<(String, String)>) {
    let exported = doc(77);
    let mut e = start_export(
        &srv,
        test,
        &exported,
        &srv.secret_key.clone(),
        Keys::FilterConfig,
    );
    until_exported(&mut e, 1);
    let admin = host_harness::mocks::kong::MockKongAdmin::dbless(GATEWAY_VERSION);
    e.world
        .route("kong-admin.test:8001", Arc::new(admin.clone()));
    let (ak, sk) = read_only.unwrap_or((srv.access_key.clone(), srv.secret_key.clone()));
    let cfg = json!({
        "cluster_fallback_config_import": "on",
        "cluster_fallback_config_storage": format!("s3://{}/{}", srv.bucket, e.prefix),
        "gateway_version": GATEWAY_VERSION,
        "node_id": "fallback-node",
        "aws_region": REGION,
        "aws_access_key_id": ak,
        "aws_secret_access_key": sk,
        "storage_endpoint": srv.endpoint,
        "storage_upstream": srv.host_port,
        "kong_admin_url": "http://kong-admin.test:8001",
        "import_grace_period": 0,
        "import_check_interval": 0.1,
        "tick_period_ms": 100,
        "call_timeout_ms": 10_000,
    });
    e.world
        .add_node(NodeSpec::new("fallback", &plugin_module()).filter(cfg.to_string()))
        .expect("start the fallback node");
    let ok = e
        .world
        .advance_until(Duration::from_secs(30), Duration::from_millis(100), |w| {
            !w.logs_containing("fallback config applied").is_empty()
        });
    assert!(
        ok,
        "{}: no import; logs: {:#?}",
        srv.name,
        messages(&e.world, "[config-bridge]")
    );
    let held = admin.config().expect("the node holds a configuration");
    assert_eq!(
        held["services"][0]["name"], exported["services"][0]["name"],
        "{held}"
    );
    assert_eq!(admin.applied_count(), 1);
    assert!(e.world.traps().is_empty());
    assert_no_secret_in_logs(&e.world, &[&srv.secret_key, &sk]);
}

#[test]
fn s3s_fs_export_is_imported_by_a_fallback_node() {
    let Some(srv) = s3s("s3s_fs_import") else {
        return;
    };
    import_reads_the_export_back(srv, "s3s-import", None);
}

#[test]
fn moto_export_is_imported_with_read_only_credentials() {
    let Some(srv) = moto("moto_import") else {
        return;
    };
    let ro = match (
        std::env::var("MOTO_RO_ACCESS_KEY"),
        std::env::var("MOTO_RO_SECRET_KEY"),
    ) {
        (Ok(a), Ok(s)) if !a.is_empty() => Some((a, s)),
        _ if std::env::var_os("CI").is_some() => panic!("MOTO_RO_ACCESS_KEY is not set and CI is"),
        _ => None,
    };
    import_reads_the_export_back(srv, "moto-import", ro);
}

// ---- the election's objects on real servers --------------------------------------------------------

/// boto3's listing under `prefix` (see `tests/interop/readback.py --list`); `client_filter`: list
/// the bucket and filter locally.
fn boto3_list(srv: &Server, prefix: &str, client_filter: bool) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(readback_script())
        .args([
            "--endpoint",
            &srv.endpoint,
            "--bucket",
            &srv.bucket,
            "--list",
            prefix,
        ])
        .env("READBACK_ACCESS_KEY", &srv.access_key)
        .env("READBACK_SECRET_KEY", &srv.secret_key);
    if client_filter {
        cmd.arg("--client-filter");
    }
    let out = cmd
        .output()
        .expect("run python3 tests/interop/readback.py --list");
    assert!(
        out.status.success(),
        "readback.py --list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("readback.py output {stdout:?}: {e}"))
}

/// Two nodes of two workers electing over `srv` (2 s interval), for `run`; returns the world, the
/// export prefix, the election prefix and the nodes ("node-1", "node-2").
fn start_electors(srv: &Server, test: &str, d: &Value) -> (World, String, String, Vec<NodeId>) {
    let prefix = fresh_prefix(test);
    let mut world = World::new_realtime(HostProfile::ngx_wasm_module());
    let upstream = TcpUpstream::new(&srv.host_port)
        .expect("tokio runtime for the TCP upstream")
        .with_timeout(Duration::from_secs(10));
    world.route(&srv.host_port, Arc::new(upstream));
    let mut nodes = Vec::new();
    for id in ["node-1", "node-2"] {
        let mut cfg = filter_config(srv, &prefix, d, &srv.secret_key.clone(), Keys::FilterConfig);
        cfg["node_id"] = json!(id);
        cfg["election"] = json!(true);
        cfg["cluster_fallback_election_interval"] = json!(2);
        let node = world
            .add_node(
                NodeSpec::new(id, &plugin_module())
                    .workers(2)
                    .filter(cfg.to_string()),
            )
            .expect("start the node");
        nodes.push(node);
    }
    let election_prefix = format!("{prefix}/{GATEWAY_VERSION}/election/");
    (world, prefix, election_prefix, nodes)
}

/// The registrations boto3 lists are Kong Enterprise's: `<seconds, up to 3 decimals>-<node id>`,
/// empty, `text/plain`, refreshed recently.
fn assert_kongs_registrations(srv: &Server, listed: &Value, election_prefix: &str) {
    assert_eq!(listed["ok"], json!(true), "{listed}");
    let objects = listed["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 2, "{}: {listed}", srv.name);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for o in objects {
        let key = o["key"].as_str().unwrap();
        let name = key.strip_prefix(election_prefix).unwrap();
        // Kong's pattern `^(\d+\.?\d*)-(.+)$`, with Lua's formatting of ngx.now().
        let (time, node) = name.split_once('-').unwrap();
        let secs: f64 = time.parse().unwrap_or_else(|_| panic!("{name}"));
        assert!(
            time.split('.')
                .nth(1)
                .is_none_or(|f| f.len() <= 3 && !f.ends_with('0')),
            "{name}"
        );
        assert!(
            (now - secs).abs() < 60.0,
            "{name}: register time {secs} vs now {now}"
        );
        assert!(node == "node-1" || node == "node-2", "{name}");
        assert_eq!(o["size"], json!(0), "{o}");
        assert_eq!(o["content_type"], json!("text/plain"), "{o}");
        let modified = o["last_modified"].as_f64().unwrap();
        assert!(
            now - modified < 10.0,
            "{name} refreshed {} s ago",
            now - modified
        );
    }
}

fn log_messages_of(world: &World, node: &str, needle: &str) -> Vec<String> {
    world
        .logs_containing(needle)
        .into_iter()
        .filter(|l| l.origin.node == node)
        .map(|l| l.message)
        .collect()
}

/// s3s-fs: the nodes elect one leader, which alone uploads; boto3 lists both registrations.
#[test]
fn s3s_fs_two_nodes_elect_one_uploader_with_kongs_registrations_listed_by_boto3() {
    let Some(srv) = s3s("election") else { return };
    let d = doc(1);
    let (mut world, prefix, election_prefix, _) = start_electors(&srv, "election", &d);
    // On the wall clock: s3s-fs stamps registrations with its own clock, and virtual time run
    // faster than it made the nodes' clocks race ahead of the store's without bound (the skew
    // each round measured was stale by the next), so an election could fail to settle.
    let ok = world.run_realtime_until(Duration::from_secs(60), Duration::from_millis(100), |w| {
        !w.logs_containing("exported config to").is_empty()
    });
    assert!(
        ok,
        "nobody exported: {:#?}",
        messages(&world, "[config-bridge]")
    );
    // A few more rounds: refreshes, no second upload.
    world.run_realtime(Duration::from_secs(4));
    let exports = world.logs_containing("exported config to");
    assert_eq!(exports.len(), 1, "{exports:?}");
    assert_kongs_registrations(
        &srv,
        &boto3_list(&srv, &election_prefix, false),
        &election_prefix,
    );
    let rb = boto3_readback(&srv, &config_key(&prefix), &canonical_json(&d));
    assert_eq!(rb["bytes_equal"], json!(true), "{rb}");
    let uploader = rb["metadata"]["uploader"].as_str().unwrap().to_string();
    assert!(
        !log_messages_of(&world, &uploader, "election: this node now leads").is_empty(),
        "the uploader {uploader} is the leader"
    );
    assert!(world.traps().is_empty());
    assert_no_secret_in_logs(&world, &[&srv.secret_key]);
}

/// moto: the registrations are Kong's too, but moto 5.2 rejects the signature of any
/// ListObjectsV2 whose prefix holds a '/' — boto3's as well as ours (the election prefix always
/// holds one). A node whose listing is refused leads blind (docs/election.md, "An election that
/// cannot complete"): it says so in an error line naming `s3:ListBucket`, sets the gauge
/// `config_bridge_election_blind`, and exports; the export is in moto, byte for byte.
#[test]
fn moto_registrations_are_kongs_and_its_list_bug_makes_the_nodes_lead_blind_and_export() {
    let Some(srv) = moto("election") else { return };
    let d = doc(1);
    let (mut world, prefix, election_prefix, nodes) = start_electors(&srv, "election", &d);
    let ok = world.run_realtime_until(Duration::from_secs(60), Duration::from_millis(100), |w| {
        !w.logs_containing("exported config to").is_empty()
            && w.logs_containing("listing the candidates was refused")
                .len()
                >= 2
    });
    assert!(ok, "{:#?}", messages(&world, "[config-bridge]"));
    world.run_realtime(Duration::from_secs(3));
    assert_kongs_registrations(
        &srv,
        &boto3_list(&srv, &election_prefix, true),
        &election_prefix,
    );
    // boto3's own listing of the prefix fails the same way: moto's bug, not our signing.
    let theirs = boto3_list(&srv, &election_prefix, false);
    assert_eq!(
        theirs["error_code"],
        json!("SignatureDoesNotMatch"),
        "{theirs}"
    );
    let refused = world.logs_containing("listing the candidates was refused");
    for l in &refused {
        assert_eq!(l.level, LogLevel::Error, "{l:?}");
        assert!(
            l.message.contains("SignatureDoesNotMatch") && l.message.contains("s3:ListBucket"),
            "{l:?}"
        );
    }
    for (node, id) in ["node-1", "node-2"].into_iter().zip(nodes) {
        assert!(
            refused.iter().any(|l| l.origin.node == node),
            "{node} logged no refusal: {refused:?}"
        );
        assert_eq!(
            world.metric(id, "config_bridge_election_blind"),
            Some(1),
            "{node}"
        );
        assert_eq!(
            world.metric(id, "config_bridge_election_leader"),
            Some(1),
            "{node}"
        );
    }
    let rb = boto3_readback(&srv, &config_key(&prefix), &canonical_json(&d));
    assert_eq!(rb["bytes_equal"], json!(true), "{rb}");
    assert!(world.traps().is_empty());
    assert_no_secret_in_logs(&world, &[&srv.secret_key]);
}
