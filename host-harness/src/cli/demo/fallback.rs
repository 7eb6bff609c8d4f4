//! `host-harness demo fallback`: import on a fallback node, end to end in virtual time.
//!
//! A CP-like node (database-backed mock Kong Admin API, its own config-bridge chain exporting)
//! exports configuration X to a mock S3. The CP goes down: its workers die and the probe of the
//! source of truth is refused. A new, empty DB-less fallback node starts with only the bootstrap
//! configuration (one route-less service tagged `config-bridge-bootstrap` and the import-only
//! chain, `examples/kong/fallback-node/`): it waits out the grace period, downloads X with
//! read-only credentials, replaces the exporting filter in it by its own import-only
//! configuration and `POST`s it to its Admin API. The timeline is printed as it happens; the exit
//! status is 0 only when the import happened, the imported chain is import-only and nothing
//! trapped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use crate::http::{CallContext, CallFailure, HttpRequest, Reply};
use crate::mocks::faults::Faulty;
use crate::mocks::kong::MockKongAdmin;
use crate::mocks::s3::{MockS3, S3Credential};
use crate::{HostProfile, NodeId, NodeSpec, PluginModule, World};

pub(crate) const BUCKET: &str = "kong-backups";
pub(crate) const GATEWAY: &str = "3.9.1";
const S3_HOST: &str = "s3.demo.internal:9000";
pub(crate) const CP_ADMIN_HOST: &str = "kong-1.demo.internal:8001";
const CP_PROBE_HOST: &str = "kong-1.demo.internal:8005";
const NODE_ADMIN_HOST: &str = "127.0.0.1:8001";
pub(crate) const GRACE_SECONDS: u64 = 15;
/// `x-amz-meta-uploader` of the CP's exports.
const CP_NODE_ID: &str = "kong-cp-1";

/// What the scenario did (for the CLI's exit status and for tests).
#[derive(Clone, Debug, Default)]
pub struct FallbackOutcome {
    /// The fallback node's Admin API applied the export (exactly one successful POST /config).
    pub imported: bool,
    /// Every config-bridge filter the fallback node holds afterwards is import-only.
    pub chain_import_only: bool,
    /// Entities the fallback node holds afterwards (workspaces aside).
    pub entities: usize,
    /// Virtual seconds from "CP down" to the import.
    pub import_after_down: Option<f64>,
    /// Traps during the run (0 when the filter behaves).
    pub traps: usize,
    /// The printed lines: virtual time, node, what happened.
    pub timeline: Vec<String>,
}

/// The upstream of `host_port`: itself where the host dispatches to `host:port` (Kong), a
/// cluster name on Envoy.
pub(crate) fn upstream(profile: &HostProfile, host_port: &str) -> String {
    match profile.upstream_is_host_port {
        true => host_port.to_string(),
        false => host_port.replace(['.', ':'], "_"),
    }
}

/// A config-bridge filter configuration: the storage settings every node shares, plus `extra`.
pub(crate) fn bridge_config(profile: &HostProfile, extra: Value) -> Value {
    let mut cfg = json!({
        "cluster_fallback_config_storage": format!("s3://{BUCKET}/fallback"),
        "gateway_version": GATEWAY,
        "aws_region": "us-east-1",
        "storage_endpoint": format!("http://{S3_HOST}"),
        "storage_upstream": upstream(profile, S3_HOST),
    });
    if let (Some(c), Value::Object(e)) = (cfg.as_object_mut(), extra) {
        c.extend(e);
    }
    cfg
}

/// The CP's exporting filter: reads its own (database-backed) Admin API.
fn exporter_config(profile: &HostProfile) -> Value {
    bridge_config(
        profile,
        json!({
            "cluster_fallback_config_export": "on",
            "cluster_fallback_config_export_delay": 10,
            "node_id": CP_NODE_ID,
            "config_source": "kong_admin",
            "kong_admin_url": format!("http://{CP_ADMIN_HOST}"),
            "kong_admin_upstream": upstream(profile, CP_ADMIN_HOST),
            "kong_admin_dump_interval": 5,
        }),
    )
}

/// The fallback node's import-only filter (what its bootstrap chain holds).
pub(crate) fn importer_config(profile: &HostProfile) -> Value {
    bridge_config(
        profile,
        json!({
            "cluster_fallback_config_import": "on",
            "kong_admin_url": format!("http://{NODE_ADMIN_HOST}"),
            "kong_admin_upstream": upstream(profile, NODE_ADMIN_HOST),
            "import_probe_url": format!("http://{CP_PROBE_HOST}/"),
            "import_probe_upstream": upstream(profile, CP_PROBE_HOST),
            "import_grace_period": GRACE_SECONDS,
            "import_check_interval": 2,
        }),
    )
}

/// Configuration X: three services with routes, an upstream with targets, consumers with
/// key-auth, plugins, and the CP's own config-bridge chain (exporting).
fn config_x(exporter: &Value) -> Value {
    let names = ["orders", "payments", "catalog"];
    let services: Vec<Value> = names
        .iter()
        .map(|s| {
            json!({"name": s, "url": format!("http://{s}.internal:8080"),
                   "routes": [{"name": format!("{s}-route"), "paths": [format!("/{s}")]}]})
        })
        .collect();
    let consumers: Vec<Value> = (1..=3)
        .map(|i| {
            json!({"username": format!("app-{i}"),
                   "keyauth_credentials": [{"key": format!("demo-key-{i}")}]})
        })
        .collect();
    json!({
        "_format_version": "3.0",
        "services": services,
        "upstreams": [{"name": "orders.internal",
                       "targets": [{"target": "10.0.0.1:8080"}, {"target": "10.0.0.2:8080"}]}],
        "consumers": consumers,
        "plugins": [{"name": "key-auth", "service": "payments"},
                    {"name": "correlation-id", "config": {"header_name": "Kong-Request-ID"}}],
        "filter_chains": [{"name": "config-bridge", "service": "catalog",
                           "filters": [{"name": "config_bridge", "config": exporter}]}],
    })
}

/// A fallback node's bootstrap configuration (`examples/kong/fallback-node/`): one route-less
/// service tagged `config-bridge-bootstrap` holding the import-only chain configured with
/// `importer`.
pub fn bootstrap(importer: &Value) -> Value {
    json!({
        "_format_version": "3.0",
        "services": [{"name": "config-bridge-bootstrap", "url": "http://127.0.0.1:9",
                      "tags": ["config-bridge-bootstrap"]}],
        "filter_chains": [{"name": "config-bridge-bootstrap", "service": "config-bridge-bootstrap",
                           "filters": [{"name": "config_bridge", "config": importer}]}],
    })
}

/// Prints and keeps the timeline: the filter's lines as they appear, and the scenario's events.
pub(crate) struct Timeline {
    pub(crate) shown: usize,
    pub(crate) lines: Vec<String>,
}

impl Timeline {
    pub(crate) fn event(&mut self, world: &World, node: &str, what: &str) {
        self.push(format!(
            "{:>7.1}s  {node:<12} {what}",
            world.elapsed().as_secs_f64()
        ));
    }

    pub(crate) fn push(&mut self, line: String) {
        println!("{line}");
        self.lines.push(line);
    }

    /// The filter's log lines since the last call.
    pub(crate) fn flush(&mut self, world: &World) {
        let logs = world.logs();
        for l in logs.iter().skip(self.shown) {
            if let Some(msg) = l.message.strip_prefix("[config-bridge] ") {
                let origin = l.origin.to_string();
                self.push(format!("{:>7.1}s  {origin:<12} {msg}", l.at.as_secs_f64()));
            }
        }
        self.shown = logs.len();
    }

    /// Says `node.1` and starts node `node.0` (2 workers, one filter configured with `cfg`,
    /// the S3 credential `key` in its environment).
    pub(crate) fn start(
        &mut self,
        world: &mut World,
        module: &PluginModule,
        node: (&str, &str),
        cfg: &Value,
        key: (&str, &str),
    ) -> Result<NodeId> {
        self.event(world, node.0, node.1);
        let id = world.add_node(
            NodeSpec::new(node.0, module)
                .workers(2)
                .filter(cfg.to_string())
                .env("AWS_ACCESS_KEY_ID", key.0)
                .env("AWS_SECRET_ACCESS_KEY", key.1),
        )?;
        self.flush(world);
        Ok(id)
    }

    /// Advances in 1 s steps, printing as it goes, until `done` or `limit`.
    pub(crate) fn run(
        &mut self,
        world: &mut World,
        limit: Duration,
        done: impl Fn() -> bool,
    ) -> bool {
        let deadline = world.elapsed() + limit;
        while world.elapsed() < deadline {
            if done() {
                return true;
            }
            world.advance(Duration::from_secs(1));
            self.flush(world);
        }
        done()
    }
}

/// The entities a node holds, workspaces aside.
pub(crate) fn entity_total(admin: &MockKongAdmin) -> usize {
    admin
        .entity_counts()
        .iter()
        .filter(|(k, _)| *k != "workspaces")
        .map(|(_, n)| n)
        .sum()
}

/// Whether every config-bridge filter in `chains` is import-only.
pub(crate) fn import_only(chains: &[Value]) -> bool {
    let filters: Vec<Value> = chains
        .iter()
        .flat_map(|c| c["filters"].as_array().cloned().unwrap_or_default())
        .filter(|f| f["name"] == "config_bridge")
        .collect();
    !filters.is_empty()
        && filters.iter().all(|f| {
            let cfg = match &f["config"] {
                Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
                other => other.clone(),
            };
            cfg["cluster_fallback_config_import"] == "on"
                && cfg.get("cluster_fallback_config_export").is_none()
        })
}

/// The S3 credential of the CP's exports and the fallback node's read-only one.
const WRITER: (&str, &str) = ("AKIACPEXPORTER", "cp-demo-secret-key");
const READER: (&str, &str) = ("AKIAFALLBACKREADER", "fallback-demo-read-only-key");

/// The demos' world: a mock S3 (behind a fault injector) holding the writer's and the reader's
/// credentials, the CP's database-backed Admin API and cluster endpoint (the probe), the fallback
/// node's DB-less Admin API, and the timeline printed as it happens.
pub(crate) struct Stage {
    pub(crate) profile: HostProfile,
    pub(crate) s3: MockS3,
    pub(crate) faulty: Faulty,
    pub(crate) cp_admin: MockKongAdmin,
    pub(crate) node_admin: MockKongAdmin,
    cp_up: Arc<AtomicBool>,
    pub(crate) world: World,
    pub(crate) t: Timeline,
    pub(crate) key: String,
}

/// What the fallback node did once the CP was down.
pub(crate) struct Imported {
    /// Exactly one `POST /config` was applied.
    pub(crate) imported: bool,
    pub(crate) chain_import_only: bool,
    pub(crate) entities: usize,
    /// Virtual seconds from "CP down" to the import.
    pub(crate) after_down: f64,
}

impl Stage {
    pub(crate) fn new(profile: HostProfile) -> Stage {
        let s3 = MockS3::builder()
            .region("us-east-1")
            .bucket(BUCKET)
            .credential(S3Credential::new(WRITER.0, WRITER.1))
            .credential(S3Credential::new(READER.0, READER.1).read_only())
            .build();
        let faulty = Faulty::new(Arc::new(s3.clone()));
        let cp_admin = MockKongAdmin::database(GATEWAY);
        let node_admin = MockKongAdmin::dbless(GATEWAY);
        let cp_up = Arc::new(AtomicBool::new(true));
        let probe = {
            let up = Arc::clone(&cp_up);
            move |_: &HttpRequest, _: &CallContext| {
                if up.load(Ordering::SeqCst) {
                    Reply::now(crate::http::HttpResponse::json(
                        200,
                        &json!({"message": "ok"}),
                    ))
                } else {
                    Reply::Fail {
                        failure: CallFailure::BrokenConnection,
                        after: Duration::ZERO,
                    }
                }
            }
        };
        let mut world = World::new(profile.clone());
        world.route(&upstream(&profile, S3_HOST), Arc::new(faulty.clone()));
        world.route(
            &upstream(&profile, CP_ADMIN_HOST),
            Arc::new(cp_admin.clone()),
        );
        world.route(&upstream(&profile, CP_PROBE_HOST), Arc::new(probe));
        world.route(
            &upstream(&profile, NODE_ADMIN_HOST),
            Arc::new(node_admin.clone()),
        );
        Stage {
            profile,
            s3,
            faulty,
            cp_admin,
            node_admin,
            cp_up,
            world,
            t: Timeline {
                shown: 0,
                lines: Vec::new(),
            },
            key: format!("fallback/{GATEWAY}/config.json"),
        }
    }

    /// Starts the node holding the source of truth, `name`, with `exporter` as its filter
    /// configuration (writer credentials).
    pub(crate) fn start_source(
        &mut self,
        module: &PluginModule,
        name: &str,
        what: &str,
        exporter: &Value,
    ) -> Result<NodeId> {
        self.t
            .start(&mut self.world, module, (name, what), exporter, WRITER)
    }

    /// The CP dies: its workers are killed and its cluster endpoint refuses connections. Then a
    /// new, empty DB-less node starts with only the bootstrap configuration and, once the grace
    /// period is over, imports the backup (within `limit`).
    pub(crate) fn source_dies_and_a_fallback_imports(
        &mut self,
        module: &PluginModule,
        (cp, name): (NodeId, &str),
        limit: Duration,
    ) -> Result<Imported> {
        self.cp_up.store(false, Ordering::SeqCst);
        for w in 0..self.world.worker_count(cp) {
            self.world.kill_worker(cp, w);
        }
        let down_at = self.world.elapsed();
        self.t.event(
            &self.world,
            name,
            "DOWN: its workers are gone, its endpoint (the fallback's import_probe_url) refuses connections",
        );
        self.world.advance(Duration::from_secs(3));
        let importer = importer_config(&self.profile);
        self.node_admin.set_config(bootstrap(&importer));
        let what = format!("new DB-less node, no configuration: only the bootstrap chain (import on, grace {GRACE_SECONDS} s, read-only S3 key)");
        let fallback = self.t.start(
            &mut self.world,
            module,
            ("fallback-1", &what),
            &importer,
            READER,
        )?;
        let node_admin = self.node_admin.clone();
        let applied = self.t.run(&mut self.world, limit, || {
            node_admin.posts().iter().any(|p| p.status == 201)
        });
        let imported_at = self.world.elapsed();
        if let Some(p) = self.node_admin.posts().last() {
            self.t.event(
                &self.world,
                "fallback-1",
                &format!(
                    "its Admin API answered POST /config {} ({} bytes)",
                    p.status, p.body_size
                ),
            );
        }
        // Kong restarts the node's (new) filter chain: the filter sees a configuration and stays
        // off.
        self.world.reconfigure(fallback, 0, importer.to_string());
        self.world.advance(Duration::from_secs(10));
        self.t.flush(&self.world);
        let successes = self
            .node_admin
            .posts()
            .iter()
            .filter(|p| p.status == 201)
            .count();
        Ok(Imported {
            imported: applied && successes == 1,
            chain_import_only: import_only(&self.node_admin.entities("filter_chains")),
            entities: entity_total(&self.node_admin),
            after_down: (imported_at - down_at).as_secs_f64(),
        })
    }

    /// What the fallback node serves: entities per type, the chain's mode.
    pub(crate) fn fallback_holds(&self, imported: &Imported) -> String {
        let listed: Vec<String> = self
            .node_admin
            .entity_counts()
            .iter()
            .filter(|(k, _)| *k != "workspaces")
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        format!(
            "fallback-1 holds {} entities ({}); its config-bridge chain is {}",
            imported.entities,
            listed.join(", "),
            if imported.chain_import_only {
                "import-only"
            } else {
                "NOT import-only"
            }
        )
    }

    pub(crate) fn traps(&self) -> usize {
        self.world.traps().len() + self.world.fatal_errors().len()
    }
}

/// Runs the scenario under `profile`, printing the timeline; see the module docs.
pub fn scenario(module: &PluginModule, profile: HostProfile) -> Result<FallbackOutcome> {
    let mut stage = Stage::new(profile);
    let exporter = exporter_config(&stage.profile);
    stage.cp_admin.set_config(config_x(&exporter));
    let cp_entities = entity_total(&stage.cp_admin);
    let what = format!("CP (database-backed) holds configuration X: {cp_entities} entities, its config-bridge chain exporting");
    let cp = stage.start_source(module, "kong-cp", &what, &exporter)?;
    let (s3, key) = (stage.s3.clone(), stage.key.clone());
    let exported = stage.t.run(&mut stage.world, Duration::from_secs(180), || {
        s3.object(BUCKET, &key).is_some()
    });
    if let Some(o) = s3.object(BUCKET, &key) {
        stage.t.event(
            &stage.world,
            "mock-s3",
            &format!("s3://{BUCKET}/{key}: {} bytes", o.body.len()),
        );
    }
    stage.world.advance(Duration::from_secs(5));
    stage.t.flush(&stage.world);

    let done = stage.source_dies_and_a_fallback_imports(
        module,
        (cp, "kong-cp"),
        Duration::from_secs(180),
    )?;
    let imported = exported && done.imported;
    let traps = stage.traps();
    stage.t.push(String::new());
    let holds = stage.fallback_holds(&done);
    stage.t.push(holds);
    let successes = stage
        .node_admin
        .posts()
        .iter()
        .filter(|p| p.status == 201)
        .count();
    stage.t.push(format!(
        "{}: {successes} import(s), {:.0} s after the CP went down (grace {GRACE_SECONDS} s), {traps} trap(s)",
        if imported { "IMPORTED" } else { "NOT IMPORTED" },
        done.after_down,
    ));
    Ok(FallbackOutcome {
        imported,
        chain_import_only: done.chain_import_only,
        entities: done.entities,
        import_after_down: imported.then_some(done.after_down),
        traps,
        timeline: stage.t.lines,
    })
}

/// The CLI: runs the scenario and returns the exit status.
pub fn run(wasm: &std::path::Path, module: &PluginModule, profile: HostProfile) -> Result<i32> {
    println!(
        "config-bridge fallback demo: {} ({} KB) on simulated {} nodes, 2 workers each\n",
        wasm.display(),
        module.size_bytes / 1024,
        profile.name
    );
    let outcome = scenario(module, profile)?;
    let ok = outcome.imported && outcome.chain_import_only && outcome.traps == 0;
    Ok(if ok { 0 } else { 1 })
}
