//! Set-ups shared by the Kong Admin API source, import and round-trip tests: the real filter
//! reading a mock Kong Admin API (`MockKongAdmin`) and exporting to, or importing from, the mock
//! S3, in both host profiles.
//!
//! Upstreams: the ngx_wasm_module profile dispatches to the `host:port` of a URL (the filter's
//! default); the Envoy profile to a cluster name, which the filter is given explicitly
//! (`kong_admin_upstream`, `import_probe_upstream`, `storage_upstream`). [`upstream_for`] names
//! both and [`route_host`] routes them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use host_harness::http::{
    CallContext, CallFailure, Handler, HttpRequest, HttpResponse, Reply, SharedHandler,
};
use host_harness::mocks::faults::Faulty;
use host_harness::mocks::kong::MockKongAdmin;
use host_harness::mocks::s3::{MockS3, S3Credential};
use host_harness::{HostProfile, NodeId, NodeSpec, World};
use serde_json::{json, Map, Value};

use crate::native_sigv4::{sha256_hex, Signer};
use crate::{
    filter_config, plugin_module, route_storage, storage_upstream, ACCESS_KEY, BUCKET, CONFIG_KEY,
    ENDPOINT, GATEWAY_VERSION, PREFIX, REGION, SECRET_KEY,
};

/// The Kong version the mocks report.
pub const KONG_VERSION: &str = "3.9.1";
/// The Admin API an exporting node reads (a CP, or the node's own).
pub const CP_ADMIN: &str = "cp-admin.test:8001";
/// The Admin API of a fallback node (the importer's own).
pub const NODE_ADMIN: &str = "kong-admin.test:8001";
/// The source of truth a fallback node probes (`import_probe_url`).
pub const PROBE: &str = "kong-cp.test:8005";
/// A read-only credential of the mock S3 (an importer needs no more).
pub const RO_ACCESS_KEY: &str = "AKIAIMPORTREADONLY01";
pub const RO_SECRET_KEY: &str = "r3ad-0nly/Import+Key-NEVER-LOG-ME-987654";
/// An RBAC token (Kong Enterprise `Kong-Admin-Token`), distinctive so a leak is unmistakable.
pub const ADMIN_TOKEN: &str = "tok-SECRET-rbac-0123456789abcdef-NEVER-LOG";
/// What a successful import logs.
pub const APPLIED: &str = "fallback config applied";
/// What an export logs.
pub const EXPORTED: &str = "exported config to";

/// The two hosts the Kong tests run in.
pub fn two_profiles() -> [HostProfile; 2] {
    [HostProfile::ngx_wasm_module(), HostProfile::envoy()]
}

/// The `dispatch_http_call` upstream for `host_port` under `profile`: itself on ngx, a cluster
/// name on Envoy.
pub fn upstream_for(profile: &HostProfile, host_port: &str) -> String {
    if profile.upstream_is_host_port {
        host_port.to_string()
    } else {
        let name: String = host_port
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("cluster_{name}")
    }
}

/// Routes the upstream of `host_port` (for the world's profile) to `handler`.
pub fn route_host(world: &mut World, host_port: &str, handler: impl Handler + 'static) {
    let upstream = upstream_for(world.profile(), host_port);
    let handler: SharedHandler = Arc::new(handler);
    world.route(&upstream, handler);
}

/// Sets `field` (the URL) and, on Envoy, `upstream_field` (the cluster) for `host_port`.
fn set_url(cfg: &mut Value, profile: &HostProfile, field: &str, upstream_field: &str, url: String) {
    let host_port = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_string();
    cfg[field] = json!(url);
    if !profile.upstream_is_host_port {
        cfg[upstream_field] = json!(upstream_for(profile, &host_port));
    }
}

/// An exporter reading the Kong Admin API at `admin` (`config_source: "kong_admin"`): poll every
/// second, export delay 5 s, the rest as [`filter_config`].
pub fn admin_source_config(profile: &HostProfile, admin: &str) -> Value {
    let mut cfg = filter_config(profile, &Value::Null);
    if let Some(o) = cfg.as_object_mut() {
        o.remove("config");
    }
    cfg["config_source"] = json!("kong_admin");
    cfg["config_poll_interval"] = json!(1);
    cfg["cluster_fallback_config_export_delay"] = json!(5);
    set_url(
        &mut cfg,
        profile,
        "kong_admin_url",
        "kong_admin_upstream",
        format!("http://{admin}"),
    );
    cfg
}

/// An import-only configuration for a fallback node whose Admin API is [`NODE_ADMIN`], probing
/// [`PROBE`], grace period 10 s, checks every second. Credentials come from the environment
/// ([`importer_env`]), as on a real fallback node (`nginx_main_env`).
pub fn importer_config(profile: &HostProfile) -> Value {
    let mut cfg = json!({
        "cluster_fallback_config_import": "on",
        "cluster_fallback_config_storage": format!("s3://{BUCKET}/{PREFIX}"),
        "gateway_version": GATEWAY_VERSION,
        "aws_region": REGION,
        "storage_endpoint": ENDPOINT,
        "storage_upstream": storage_upstream(profile),
        "import_grace_period": 10,
        "import_check_interval": 1,
        "tick_period_ms": 1000,
        "call_timeout_ms": 5000,
    });
    set_url(
        &mut cfg,
        profile,
        "kong_admin_url",
        "kong_admin_upstream",
        format!("http://{NODE_ADMIN}"),
    );
    set_url(
        &mut cfg,
        profile,
        "import_probe_url",
        "import_probe_upstream",
        format!("http://{PROBE}/"),
    );
    cfg
}

/// The importer's credentials as environment variables (read-write by default).
pub fn importer_env(read_only: bool) -> Vec<(&'static str, &'static str)> {
    if read_only {
        vec![
            ("AWS_ACCESS_KEY_ID", RO_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", RO_SECRET_KEY),
        ]
    } else {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ]
    }
}

/// Adds node `name` with `workers` workers, one filter configured with `cfg`, and `env`.
pub fn add_node(
    world: &mut World,
    name: &str,
    workers: usize,
    cfg: &Value,
    env: &[(&str, &str)],
) -> NodeId {
    let mut spec = NodeSpec::new(name, &plugin_module())
        .workers(workers)
        .filter(cfg.to_string());
    for (k, v) in env {
        spec = spec.env(k, v);
    }
    world
        .add_node(spec)
        .unwrap_or_else(|e| panic!("starting node {name}: {e:#}"))
}

/// The mock S3 of [`crate::mock_s3`] plus the read-only credential [`RO_ACCESS_KEY`].
pub fn mock_s3_with_reader() -> MockS3 {
    MockS3::builder()
        .region(REGION)
        .bucket(BUCKET)
        .credential(S3Credential::new(ACCESS_KEY, SECRET_KEY))
        .credential(S3Credential::new(RO_ACCESS_KEY, RO_SECRET_KEY).read_only())
        .build()
}

/// A UUID made of two numbers (valid for Kong: version 4, variant 10).
pub fn uuid(a: u32, b: u64) -> String {
    format!("{a:08x}-0000-4000-8000-{b:012x}")
}

/// A flat Kong configuration, distinct per `n`, with fixed ids and nine entity types: services,
/// routes (one on each service), an upstream with two targets, consumers with key-auth, a
/// basic-auth credential (hashed: `_transform: false`), acls, a global and a service plugin.
pub fn kong_config(n: u32) -> Value {
    let id = |kind: u64, i: u64| uuid(n, kind * 1000 + i);
    let services: Vec<Value> = (0..2)
        .map(|i| {
            json!({"id": id(1, i), "name": format!("svc-{n}-{i}"),
                   "host": format!("backend-{n}-{i}.internal"), "port": 8080, "protocol": "http"})
        })
        .collect();
    let routes: Vec<Value> = (0..2)
        .map(|i| {
            json!({"id": id(2, i), "name": format!("route-{n}-{i}"),
                   "paths": [format!("/r{n}/{i}")], "service": id(1, i)})
        })
        .collect();
    let consumers: Vec<Value> = (0..3)
        .map(|i| json!({"id": id(3, i), "username": format!("user-{n}-{i}")}))
        .collect();
    let keys: Vec<Value> = (0..3)
        .map(|i| json!({"id": id(4, i), "consumer": id(3, i), "key": format!("key-{n}-{i}")}))
        .collect();
    json!({
        "_format_version": "3.0",
        "_transform": false,
        "services": services,
        "routes": routes,
        "upstreams": [{"id": id(5, 0), "name": format!("upstream-{n}.internal")}],
        "targets": [
            {"id": id(6, 0), "upstream": id(5, 0), "target": "10.0.0.1:8080"},
            {"id": id(6, 1), "upstream": id(5, 0), "target": "10.0.0.2:8080"}
        ],
        "consumers": consumers,
        "keyauth_credentials": keys,
        "basicauth_credentials": [{"id": id(7, 0), "consumer": id(3, 0), "username": format!("basic-{n}"),
                                   "password": "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8"}],
        "acls": [{"id": id(8, 0), "consumer": id(3, 1), "group": "gold"}],
        "plugins": [
            {"id": id(9, 0), "name": "correlation-id", "config": {"header_name": "Kong-Request-ID"}},
            {"id": id(9, 1), "name": "rate-limiting", "service": id(1, 0), "config": {"minute": 10 + n}}
        ],
    })
}

/// [`kong_config`] with a filter chain on its first service holding an exporting config-bridge
/// filter configured with `exporter` (what a CP exporting its own configuration holds).
pub fn kong_config_with_exporter(n: u32, exporter: &Value) -> Value {
    let mut doc = kong_config(n);
    doc["filter_chains"] = json!([{
        "id": uuid(n, 10_000),
        "name": "config-bridge",
        "service": uuid(n, 1000),
        "filters": [{"name": "config_bridge", "config": exporter, "enabled": true}],
    }]);
    doc
}

/// `v` without `null` members at any depth (the filter drops null fields, Kong keeps them).
pub fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| (k.clone(), without_nulls(x)))
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// The entities of a flat document by collection and id, nulls removed: two documents with the
/// same entities compare equal whatever the order of their arrays. `_*` keys and `workspaces`
/// (which `export_config()` has and the Admin API does not list) are left out.
pub fn entities_by_id(doc: &Value) -> BTreeMap<String, BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for (name, list) in doc.as_object().into_iter().flatten() {
        if name.starts_with('_') || name == "workspaces" {
            continue;
        }
        let by_id: BTreeMap<String, Value> = list
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let id = e["id"].as_str().unwrap_or_default().to_string();
                (id, without_nulls(e))
            })
            .collect();
        if !by_id.is_empty() {
            out.insert(name.clone(), by_id);
        }
    }
    out
}

/// Every entity that differs between two [`entities_by_id`] maps, one description each.
pub fn differences(
    got: &BTreeMap<String, BTreeMap<String, Value>>,
    want: &BTreeMap<String, BTreeMap<String, Value>>,
) -> Vec<String> {
    let shown = |e: Option<&Value>| e.map(Value::to_string).unwrap_or("(missing)".into());
    let mut out = Vec::new();
    let names: std::collections::BTreeSet<&String> = got.keys().chain(want.keys()).collect();
    for name in names {
        let (g, w) = (got.get(name), want.get(name));
        if g == w {
            continue;
        }
        let (g, w) = (
            g.cloned().unwrap_or_default(),
            w.cloned().unwrap_or_default(),
        );
        let ids: std::collections::BTreeSet<&String> = g.keys().chain(w.keys()).collect();
        for id in ids.into_iter().filter(|id| g.get(*id) != w.get(*id)) {
            out.push(format!(
                "{name} {id}:\n  got  {}\n  want {}",
                shown(g.get(id)),
                shown(w.get(id))
            ));
        }
    }
    out
}

/// The first difference between two [`entities_by_id`] maps, for assertion messages.
pub fn first_difference(
    got: &BTreeMap<String, BTreeMap<String, Value>>,
    want: &BTreeMap<String, BTreeMap<String, Value>>,
) -> String {
    differences(got, want)
        .into_iter()
        .next()
        .unwrap_or_else(|| "no difference".into())
}

/// The stored object parsed as JSON.
pub fn stored_json(s3: &MockS3) -> Option<Value> {
    let object = s3.object(BUCKET, CONFIG_KEY)?;
    Some(
        serde_json::from_slice(&object.body)
            .unwrap_or_else(|e| panic!("the stored object is not JSON: {e}")),
    )
}

/// The bodies of every PUT of the object the filter sent (from the world's call records).
pub fn put_bodies(world: &World) -> Vec<Vec<u8>> {
    crate::storage_calls(world, "PUT")
        .into_iter()
        .map(|c| c.request.body)
        .collect()
}

/// The calls a world sent to `host_port`'s upstream, with their method and path.
pub fn calls_to(world: &World, host_port: &str) -> Vec<host_harness::CallRecord> {
    let upstream = upstream_for(world.profile(), host_port);
    world
        .calls()
        .into_iter()
        .filter(|c| c.upstream == upstream)
        .collect()
}

/// How the source of truth answers the probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeMode {
    /// 200: the CP is up.
    Up = 0,
    /// Connection refused.
    Refused = 1,
    /// 503.
    Unavailable = 2,
}

/// The source of truth behind `import_probe_url`; its answer can be switched at any time.
#[derive(Clone, Default)]
pub struct Probe(Arc<AtomicU8>);

impl Probe {
    pub fn set(&self, mode: ProbeMode) {
        self.0.store(mode as u8, Ordering::SeqCst);
    }
}

impl Handler for Probe {
    fn handle(&self, _: &HttpRequest, _: &CallContext) -> Reply {
        match self.0.load(Ordering::SeqCst) {
            0 => Reply::now(HttpResponse::json(200, &json!({"message": "ok"}))),
            1 => Reply::Fail {
                failure: CallFailure::BrokenConnection,
                after: Duration::ZERO,
            },
            _ => Reply::now(HttpResponse::new(503).with_body("upstream unavailable")),
        }
    }
}

/// A fallback scenario in one world: a CP-like node ("cp") exporting its Admin API's
/// configuration to the mock S3 (behind a fault injector), the source of truth's probe, and a
/// fallback node's own (DB-less, empty) Admin API.
pub struct Fallback {
    pub world: World,
    pub s3: MockS3,
    /// In front of `s3` for every node.
    pub store: Faulty,
    pub cp_admin: MockKongAdmin,
    pub cp: Option<NodeId>,
    pub probe: Probe,
    /// The fallback node's own Admin API.
    pub admin: MockKongAdmin,
    /// The exporter's filter configuration (inside the exported document's filter chain).
    pub exporter_cfg: Value,
}

impl Fallback {
    pub fn new(profile: &HostProfile) -> Fallback {
        let s3 = mock_s3_with_reader();
        let store = Faulty::new(Arc::new(s3.clone()));
        let mut world = World::new(profile.clone());
        route_storage(&mut world, store.clone());
        let cp_admin = MockKongAdmin::dbless(KONG_VERSION);
        route_host(&mut world, CP_ADMIN, cp_admin.clone());
        let probe = Probe::default();
        route_host(&mut world, PROBE, probe.clone());
        let admin = MockKongAdmin::dbless(KONG_VERSION);
        route_host(&mut world, NODE_ADMIN, admin.clone());
        let mut exporter_cfg = admin_source_config(profile, CP_ADMIN);
        exporter_cfg["node_id"] = json!("cp-exporter");
        Fallback {
            world,
            s3,
            store,
            cp_admin,
            cp: None,
            probe,
            admin,
            exporter_cfg,
        }
    }

    /// The CP applies `doc`; its exporter (started on first use, 2 workers) exports it. Returns
    /// the stored object's body once it holds `doc`'s entities (by id).
    pub fn export(&mut self, doc: &Value) -> Vec<u8> {
        self.cp_admin.set_now(self.world.clock().now());
        self.cp_admin.set_config(doc.clone());
        if self.cp.is_none() {
            let cfg = self.exporter_cfg.clone();
            self.cp = Some(add_node(&mut self.world, "cp", 2, &cfg, &[]));
        }
        let ids = |doc: &Value| -> Vec<(String, Vec<String>)> {
            entities_by_id(doc)
                .into_iter()
                .map(|(name, by_id)| (name, by_id.into_keys().collect()))
                .collect()
        };
        let want = ids(&self.cp_admin.export_config());
        let s3 = self.s3.clone();
        let done = self
            .world
            .advance_until(Duration::from_secs(120), secs1(), |_| {
                stored_json(&s3).is_some_and(|d| ids(&d) == want)
            });
        assert!(done, "the CP's exporter did not export the configuration");
        self.s3
            .object(BUCKET, CONFIG_KEY)
            .map(|o| o.body)
            .unwrap_or_default()
    }

    /// The CP goes down: its exporter's workers die and the probe is refused.
    pub fn cp_down(&mut self) {
        self.probe.set(ProbeMode::Refused);
        if let Some(cp) = self.cp {
            for w in 0..self.world.worker_count(cp) {
                self.world.kill_worker(cp, w);
            }
        }
    }

    /// Starts the fallback node ("fallback", 2 workers) with `cfg` and the importer's credentials.
    pub fn start_fallback(&mut self, cfg: &Value, read_only: bool) -> NodeId {
        let env = importer_env(read_only);
        add_node(&mut self.world, "fallback", 2, cfg, &env)
    }

    /// The calls the fallback node sent to the storage upstream with `method`.
    pub fn fallback_storage_calls(&self, method: &str) -> Vec<host_harness::CallRecord> {
        crate::storage_calls(&self.world, method)
            .into_iter()
            .filter(|c| c.origin.node == "fallback")
            .collect()
    }
}

fn secs1() -> Duration {
    Duration::from_secs(1)
}

/// Stores `body` as the exported object with a signed PUT straight into the mock S3 handler,
/// with `x-amz-meta-config-sha256: sha_of` (the filter's metadata, here possibly not matching
/// `body`), at the world's time. Returns the status.
pub fn put_object_signed(world: &World, s3: &MockS3, body: &[u8], sha_of: &[u8]) -> u16 {
    let sha = sha256_hex(sha_of);
    put_object_with_metadata(
        world,
        s3,
        body,
        &[("config-sha256", &sha), ("uploader", "test-writer")],
    )
}

/// Stores `body` as the exported object (a signed PUT straight into the mock S3 handler) with
/// `metadata` as `x-amz-meta-<name>: <value>`, at the world's time. Returns the status.
pub fn put_object_with_metadata(
    world: &World,
    s3: &MockS3,
    body: &[u8],
    metadata: &[(&str, &str)],
) -> u16 {
    let path = format!("/{BUCKET}/{CONFIG_KEY}");
    let host = crate::NGX_UPSTREAM;
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), host.into()),
        ("content-length".into(), body.len().to_string()),
        ("content-type".into(), "application/json".into()),
    ];
    for (k, v) in metadata {
        headers.push((format!("x-amz-meta-{k}"), v.to_string()));
    }
    let now: SystemTime = world.clock().now();
    let signer = Signer {
        access_key: ACCESS_KEY,
        secret_key: SECRET_KEY,
        region: REGION,
    };
    let added = signer.sign("PUT", &format!("{ENDPOINT}{path}"), &headers, body, now);
    let mut req = HttpRequest::new("PUT", &path);
    req.authority = host.to_string();
    req.body = body.to_vec();
    for (k, v) in headers
        .iter()
        .filter(|(k, _)| k != "host")
        .chain(added.iter())
    {
        req = req.with_header(k, v);
    }
    let ctx = CallContext::new(now, "test", host);
    match s3.handle(&req, &ctx) {
        Reply::Response { response, .. } => response.status,
        other => panic!("PUT {path}: no response: {other:?}"),
    }
}
