#![warn(unreachable_pub)]
//! Shared helpers for the end-to-end tests: the real `config-bridge` .wasm in the host harness,
//! talking to the mock S3.
//!
//! Stable names (other test files rely on them): [`plugin_module`], [`mock_s3`], [`filter_config`],
//! [`route_storage`], [`storage_upstream`], [`declarative`], [`payload_bytes`], [`canonical_json`],
//! [`assert_no_secrets`], [`puts`], [`storage_calls`], and the constants below.

#[path = "src/differential.rs"]
pub mod differential;
#[path = "src/kong_ee.rs"]
pub mod kong_ee;
#[path = "src/kong_setup.rs"]
pub mod kong_setup;
#[path = "native_sigv4.rs"]
pub mod native_sigv4;
#[path = "src/real_engine.rs"]
pub mod real_engine;
#[path = "src/s3_servers.rs"]
pub mod s3_servers;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use host_harness::http::{Handler, SharedHandler};
use host_harness::mocks::s3::{LoggedRequest, MockS3, S3Credential};
use host_harness::{CallRecord, HostProfile, NodeId, NodeSpec, PluginModule, World};
use serde_json::{json, Value};

pub use host_harness;

pub const REGION: &str = "us-east-1";
pub const BUCKET: &str = "kong-backups";
pub const PREFIX: &str = "dp/cluster-a";
pub const GATEWAY_VERSION: &str = "3.9.1";
/// `<prefix>/<gateway version>/config.json`.
pub const CONFIG_KEY: &str = "dp/cluster-a/3.9.1/config.json";
pub const ACCESS_KEY: &str = "AKIAEXPORTTEST0001";
/// Distinctive so that a leak is unmistakable in any log line.
pub const SECRET_KEY: &str = "s3cr3t-Export+Key/NEVER-LOG-ME-0123456789";
pub const SESSION_TOKEN: &str = "FwoGZXIvYXdzSESSION-TOKEN-NEVER-LOG-ME";
/// The S3-compatible endpoint the filter is configured with (path-style).
pub const ENDPOINT: &str = "http://s3.test:9000";
/// The ngx upstream (`host:port` of the endpoint).
pub const NGX_UPSTREAM: &str = "s3.test:9000";
/// The Envoy cluster name.
pub const ENVOY_CLUSTER: &str = "s3_storage";

/// The filter as it ships (`wasm-release`), built and compiled once per test binary.
pub fn plugin_module() -> PluginModule {
    static MODULE: OnceLock<PluginModule> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            // A prebuilt module (e.g. an older build, to show a test fails without a change), as
            // the real-engine fixture takes it.
            let path = match std::env::var_os("CONFIG_BRIDGE_WASM").filter(|v| !v.is_empty()) {
                Some(p) => std::path::PathBuf::from(p),
                None => host_harness::wasm_build::config_bridge()
                    .unwrap_or_else(|e| panic!("building config-bridge for wasm32-wasip1: {e:#}")),
            };
            PluginModule::load(&path)
                .unwrap_or_else(|e| panic!("loading {}: {e:#}", path.display()))
        })
        .clone()
}

/// A mock S3 in [`REGION`] with [`BUCKET`] and the [`ACCESS_KEY`]/[`SECRET_KEY`] credential.
pub fn mock_s3() -> MockS3 {
    MockS3::builder()
        .region(REGION)
        .bucket(BUCKET)
        .credential(S3Credential::new(ACCESS_KEY, SECRET_KEY))
        .build()
}

/// A mock S3 that accepts only a session credential (key + secret + [`SESSION_TOKEN`]).
pub fn mock_s3_with_session_token() -> MockS3 {
    MockS3::builder()
        .region(REGION)
        .bucket(BUCKET)
        .credential(S3Credential::new(ACCESS_KEY, SECRET_KEY).session_token(SESSION_TOKEN))
        .build()
}

/// The `dispatch_http_call` upstream name for storage under a profile.
pub fn storage_upstream(profile: &HostProfile) -> &'static str {
    if profile.upstream_is_host_port {
        NGX_UPSTREAM
    } else {
        ENVOY_CLUSTER
    }
}

/// Routes the storage upstream of the world's profile to `handler`.
pub fn route_storage(world: &mut World, handler: impl Handler + 'static) {
    let upstream = storage_upstream(world.profile());
    let handler: SharedHandler = Arc::new(handler);
    world.route(upstream, handler);
}

/// A Kong declarative configuration with one service named `svc-<n>` (distinct `n`, distinct
/// content).
pub fn declarative(n: u32) -> Value {
    json!({
        "_format_version": "3.0",
        "services": [{
            "name": format!("svc-{n}"),
            "url": format!("http://upstream-{n}.internal:8080"),
            "routes": [{"name": format!("route-{n}"), "paths": [format!("/r{n}")]}],
        }],
    })
}

/// A complete, valid filter configuration exporting `doc` to the mock S3, for `profile`
/// (explicit `storage_upstream`, tick 1 s, export delay 60 s, election and history off: these
/// tests are about one node's export of `config.json`; the election's and history's own tests
/// turn them on). Change fields with
/// `cfg["field"] = json!(..)` or remove them with `cfg.as_object_mut().unwrap().remove(..)`.
pub fn filter_config(profile: &HostProfile, doc: &Value) -> Value {
    json!({
        "cluster_fallback_config_export": "on",
        "cluster_fallback_config_storage": format!("s3://{BUCKET}/{PREFIX}"),
        "cluster_fallback_config_export_delay": 60,
        "gateway_version": GATEWAY_VERSION,
        "node_id": "node-a",
        "election": false,
        "cluster_fallback_history": false,
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
        "aws_region": REGION,
        "storage_endpoint": ENDPOINT,
        "storage_upstream": storage_upstream(profile),
        "tick_period_ms": 1000,
        "call_timeout_ms": 5000,
        "config": doc,
    })
}

/// The exact bytes the filter exports for `doc` given as `config` by [`filter_config`]: the
/// payload's JSON text as it appears in the filter configuration (the filter uploads the raw text,
/// it does not re-serialise it). serde_json writes a nested value exactly as it writes that value
/// alone, so this is the `config` slice of `filter_config(..).to_string()`.
pub fn payload_bytes(doc: &Value) -> Vec<u8> {
    serde_json::to_vec(doc).unwrap_or_else(|e| panic!("serialising the document: {e}"))
}

/// JSON with object keys sorted at every level and no whitespace. The filter exports the `config`
/// payload's raw text (see [`payload_bytes`]); this equals it only for a configuration serialised
/// from a `Value` with serde_json's default (sorted) map, as `interop_s3` does.
pub fn canonical_json(v: &Value) -> Vec<u8> {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sort(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    // Written by hand so the order does not depend on serde_json's `preserve_order` feature.
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String((*k).clone()).to_string());
                    out.push(':');
                    write(&m[k.as_str()], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    write(&sort(v), &mut s);
    s.into_bytes()
}

/// The PUTs the mock S3 saw (any status), in order.
pub fn puts(s3: &MockS3) -> Vec<LoggedRequest> {
    s3.requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect()
}

/// The calls dispatched to the storage upstream with `method`, in order.
pub fn storage_calls(world: &World, method: &str) -> Vec<CallRecord> {
    let upstream = storage_upstream(world.profile());
    world
        .calls()
        .into_iter()
        .filter(|c| c.upstream == upstream && c.request.method == method)
        .collect()
}

/// Every SigV4 signature the filter sent (from the `authorization` headers of all calls).
pub fn signatures(world: &World) -> Vec<String> {
    world
        .calls()
        .iter()
        .filter_map(|c| c.request.header("authorization").map(str::to_string))
        .filter_map(|a| a.split("Signature=").nth(1).map(str::to_string))
        .collect()
}

/// Fails if any log line of the world contains the secret key, the session token, a signature
/// the filter sent, or one of `extra` (other secrets a test used).
pub fn assert_no_secrets(world: &World, extra: &[&str]) {
    let sigs = signatures(world);
    let mut secrets: Vec<&str> = vec![SECRET_KEY, SESSION_TOKEN];
    secrets.extend(extra.iter().copied());
    secrets.extend(sigs.iter().map(String::as_str));
    // Parts of a secret leak too (a truncated or re-encoded prefix): check a long-enough slice.
    let fragments: Vec<&str> = secrets
        .iter()
        .flat_map(|s| {
            let mid = s.len() / 2;
            [
                *s,
                s.get(..mid.max(12).min(s.len())).unwrap_or(s),
                s.get(mid..).unwrap_or(s),
            ]
        })
        .filter(|f| f.len() >= 12)
        .collect();
    for line in world.logs() {
        for f in &fragments {
            assert!(
                !line.message.contains(f),
                "a secret leaked into a log line at {:?} on {}: {}",
                line.at,
                line.origin,
                line.message
            );
        }
    }
}

/// Log messages (text only) containing `needle`.
pub fn log_messages(world: &World, needle: &str) -> Vec<String> {
    world
        .logs_containing(needle)
        .into_iter()
        .map(|l| l.message)
        .collect()
}

/// Seconds as a Duration (readability in timelines).
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Milliseconds as a Duration.
pub fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// The three simulated hosts.
pub fn all_profiles() -> [HostProfile; 3] {
    [
        HostProfile::ngx_wasm_module(),
        HostProfile::envoy(),
        HostProfile::kong_legacy(),
    ]
}

/// Advances the world's virtual clock to `t` since its start (no-op if already past).
pub fn advance_to(world: &mut World, t: Duration) {
    let now = world.elapsed();
    if t > now {
        world.advance(t - now);
    }
}

/// A world for `profile` whose storage upstream is routed to `handler`.
pub fn world_with_storage(profile: &HostProfile, handler: impl Handler + 'static) -> World {
    let mut world = World::new(profile.clone());
    route_storage(&mut world, handler);
    world
}

/// Virtual send times of the storage calls with `method`.
pub fn send_times(world: &World, method: &str) -> Vec<Duration> {
    storage_calls(world, method)
        .iter()
        .map(|c| c.sent_at)
        .collect()
}

/// The virtual clock's start as Unix milliseconds (the guest's time at `elapsed() == 0`).
pub fn epoch_ms(world: &World) -> u64 {
    world.clock().guest_wall_nanos() / 1_000_000 - world.elapsed().as_millis() as u64
}

/// Adds node "n1" with `workers` workers and one filter instance exporting `doc` with
/// [`filter_config`] for the world's profile.
pub fn start_exporter(world: &mut World, workers: usize, doc: &Value) -> NodeId {
    let cfg = filter_config(world.profile(), doc);
    start_node(world, workers, &cfg)
}

/// Adds node "n1" with `workers` workers and one filter instance configured with `cfg` (a
/// [`filter_config`] with some fields changed).
pub fn start_node(world: &mut World, workers: usize, cfg: &Value) -> NodeId {
    world
        .add_node(
            NodeSpec::new("n1", &plugin_module())
                .workers(workers)
                .filter(cfg.to_string()),
        )
        .unwrap_or_else(|e| panic!("starting the node: {e:#}"))
}

/// Asserts that the exported object holds exactly `doc`'s payload bytes.
pub fn assert_exported(s3: &MockS3, doc: &Value) {
    let object = s3
        .object(BUCKET, CONFIG_KEY)
        .unwrap_or_else(|| panic!("{CONFIG_KEY} was not exported"));
    assert_eq!(object.body, payload_bytes(doc));
}

/// Applies `doc` to filter 0 of `node` on every worker, as Kong does when the filter's
/// configuration changes (`on_configure` again).
pub fn apply_doc(world: &mut World, node: NodeId, doc: &Value) {
    let cfg = filter_config(world.profile(), doc);
    world.reconfigure(node, 0, cfg.to_string());
}
