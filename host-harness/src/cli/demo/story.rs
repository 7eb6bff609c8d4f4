//! `host-harness demo`: the README's story, end to end in virtual time, with the real `.wasm`.
//!
//! 1. `kong-1`, a database-backed Kong node (the source of truth; a mock Kong Admin API), runs the
//!    config-bridge chain with `config_source: kong_admin`: the filter reads the node's own Admin
//!    API into Kong's flat form, wins the leader election (on, as by default) and exports to a mock
//!    S3 that verifies every SigV4 signature.
//! 2. An operator makes three changes within the 10 s debounce window: one upload carries the last.
//! 3. Another change; its first PUT gets `503 SlowDown` and is retried.
//! 4. `kong-1` dies. A new DB-less node starts with only the bootstrap configuration
//!    (`examples/kong/fallback-node/`), sees its source of truth unreachable for the grace period,
//!    downloads the backup with read-only credentials and `POST`s it to its own Admin API: it
//!    serves `kong-1`'s configuration, its config-bridge chain import-only.
//!
//! The last line is a one-line summary; the exit status is 0 only when every step happened.

use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use super::fallback::{
    bridge_config, entity_total, upstream, Stage, BUCKET, CP_ADMIN_HOST, GATEWAY,
};
use crate::http::{CallContext, HttpRequest};
use crate::mocks::faults::Fault;
use crate::mocks::s3::MockS3;
use crate::{HostProfile, PluginModule};

const DELAY_SECONDS: u64 = 10;
/// The node holding the source of truth. Not a hybrid control plane: a CP's chains would be
/// pushed to its data planes (examples/kong/hybrid-dp/README.md).
const SOURCE: &str = "kong-1";

/// What the story did (for the exit status and for tests).
#[derive(Clone, Debug, Default)]
pub struct StoryOutcome {
    /// The source node's filter won the election (its log says so).
    pub led: bool,
    /// Full-body PUTs of the configuration object that the store accepted.
    pub uploads: usize,
    /// The operator's changes made inside one debounce window, and the uploads they cost.
    pub window_changes: usize,
    /// The uploads those changes cost (1 when the debounce works).
    pub window_uploads: usize,
    /// A PUT answered by the injected 503 was followed by a successful PUT of the same content.
    pub retried_503: bool,
    /// The services of the exported object at the end.
    pub exported_services: Vec<String>,
    /// The fallback node's Admin API applied the export exactly once.
    pub imported: bool,
    /// Every config-bridge filter the fallback node holds afterwards is import-only.
    pub chain_import_only: bool,
    /// Entities the fallback node serves afterwards (workspaces aside).
    pub entities: usize,
    /// Virtual seconds from "kong-1 down" to the import.
    pub import_after_down: Option<f64>,
    /// Traps during the story (0 when the filter behaves).
    pub traps: usize,
    /// The printed lines: virtual time, node, what happened.
    pub lines: Vec<String>,
}

impl StoryOutcome {
    /// Whether every step happened as the README tells it.
    pub fn ok(&self) -> bool {
        self.led
            && self.window_changes == 3
            && self.window_uploads == 1
            && self.retried_503
            && self.imported
            && self.chain_import_only
            && self.traps == 0
    }
}

/// The source node's exporting filter: its own Admin API (database-backed: read every 2 s, a change counts
/// when two reads agree), the election on with a short interval so the demo stays short.
fn exporter_config(profile: &HostProfile) -> Value {
    bridge_config(
        profile,
        json!({
            "cluster_fallback_config_export": "on",
            "cluster_fallback_config_export_delay": DELAY_SECONDS,
            "cluster_fallback_election_interval": 10,
            "node_id": SOURCE,
            "config_source": "kong_admin",
            "kong_admin_url": format!("http://{CP_ADMIN_HOST}"),
            "kong_admin_upstream": upstream(profile, CP_ADMIN_HOST),
            "kong_admin_dump_interval": 2,
            "retry_base_ms": 2000,
        }),
    )
}

/// A fixed entity id, so that the demo's output (sizes, hashes) is the same on every run.
fn id(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// The source node's configuration: `services` with a route each, consumers with key-auth, a plugin, and
/// its own config-bridge chain on a route-less service. Fixed ids: the same `services` give
/// the same document.
fn cp_config(services: &[&str], exporter: &Value) -> Value {
    let mut all: Vec<Value> = services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"id": id(100 + i), "name": s, "url": format!("http://{s}.internal:8080"),
                   "routes": [{"id": id(200 + i), "name": format!("{s}-route"),
                               "paths": [format!("/{s}")]}]})
        })
        .collect();
    all.push(json!({"id": id(99), "name": "config-bridge", "url": "http://127.0.0.1:9"}));
    json!({
        "_format_version": "3.0",
        "services": all,
        "consumers": [
            {"id": id(301), "username": "app-1",
             "keyauth_credentials": [{"id": id(401), "key": "demo-key-1"}]},
            {"id": id(302), "username": "app-2",
             "keyauth_credentials": [{"id": id(402), "key": "demo-key-2"}]}],
        "plugins": [{"id": id(500), "name": "key-auth", "service": "payments"}],
        "filter_chains": [{"id": id(600), "name": "config-bridge", "service": "config-bridge",
                           "filters": [{"name": "config_bridge", "config": exporter}]}],
    })
}

/// The service names of an exported document, sorted (the chain's own service aside).
fn service_names(body: &[u8]) -> Vec<String> {
    let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut names: Vec<String> = doc["services"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["name"].as_str())
                .filter(|n| *n != "config-bridge")
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Whether the exported object holds exactly the services `names`.
fn holds(s3: &MockS3, key: &str, names: &[&str]) -> impl Fn() -> bool {
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    let (s3, key) = (s3.clone(), key.to_string());
    move || {
        s3.object(BUCKET, &key)
            .is_some_and(|o| service_names(&o.body) == want)
    }
}

/// The operator's changes inside one debounce window (step 2), each adding a service.
const WINDOW: [&[&str]; 3] = [
    &["orders", "payments", "catalog", "search"],
    &["orders", "payments", "catalog", "search", "reviews"],
    &[
        "orders",
        "payments",
        "catalog",
        "search",
        "reviews",
        "inventory",
    ],
];

/// Runs the story under `profile`, printing it; see the module docs.
pub fn scenario(module: &PluginModule, profile: HostProfile) -> Result<StoryOutcome> {
    let mut stage = Stage::new(profile);
    let (s3, key) = (stage.s3.clone(), stage.key.clone());
    let exporter = exporter_config(&stage.profile);
    let (cp, first) = source_exports(&mut stage, module, &exporter)?;
    let uploads_before = config_puts(&s3, &key);
    let coalesced = first && window_changes(&mut stage, &exporter);
    let window_uploads = config_puts(&s3, &key) - uploads_before;
    let (retried, retried_503) = slowed_down_change(&mut stage, &exporter, coalesced);
    // 4. The source node dies; a new, empty fallback node imports the backup.
    let done =
        stage.source_dies_and_a_fallback_imports(module, (cp, SOURCE), Duration::from_secs(120))?;
    let holds_line = stage.fallback_holds(&done);
    let serves = holds_line.replacen(
        "fallback-1 holds",
        &format!("serves {SOURCE}'s configuration:"),
        1,
    );
    stage.t.event(&stage.world, "fallback-1", &serves);
    report_s3(&mut stage);
    let led = stage
        .world
        .logs_containing("election: this node now leads the export")
        .iter()
        .any(|l| l.origin.to_string().starts_with(SOURCE));
    let outcome = StoryOutcome {
        led,
        uploads: config_puts(&s3, &key),
        window_changes: WINDOW.len(),
        window_uploads,
        retried_503,
        exported_services: s3
            .object(BUCKET, &key)
            .map(|o| service_names(&o.body))
            .unwrap_or_default(),
        imported: retried && done.imported,
        chain_import_only: done.chain_import_only,
        entities: done.entities,
        import_after_down: done.imported.then_some(done.after_down),
        traps: stage.traps(),
        lines: Vec::new(),
    };
    stage.t.push(String::new());
    stage.t.push(summary(&outcome, done.after_down));
    Ok(StoryOutcome {
        lines: stage.t.lines,
        ..outcome
    })
}

/// Step 1: the source node starts and exports its own configuration. Returns the node and
/// whether the export holds its services.
fn source_exports(
    stage: &mut Stage,
    module: &PluginModule,
    exporter: &Value,
) -> Result<(crate::NodeId, bool)> {
    // Entity timestamps from the virtual clock's epoch, not the wall clock.
    stage
        .cp_admin
        .set_now(std::time::UNIX_EPOCH + Duration::from_secs(crate::clock::DEFAULT_EPOCH_SECS));
    let v1 = ["orders", "payments", "catalog"];
    stage.cp_admin.set_config(cp_config(&v1, exporter));
    let what = format!(
        "starts: the source of truth, a database-backed Kong node ({} entities); its config-bridge chain reads its own Admin API (config_source: kong_admin), election on",
        entity_total(&stage.cp_admin)
    );
    let cp = stage.start_source(module, SOURCE, &what, exporter)?;
    let done = holds(&stage.s3, &stage.key, &v1);
    let first = stage.t.run(&mut stage.world, Duration::from_secs(90), done);
    Ok((cp, first))
}

/// Step 2: three changes inside one debounce window; returns whether the last one was exported.
fn window_changes(stage: &mut Stage, exporter: &Value) -> bool {
    stage.world.advance(Duration::from_secs(1));
    stage.t.flush(&stage.world);
    for (i, services) in WINDOW.iter().enumerate() {
        let added = services.last().copied().unwrap_or_default();
        stage.t.event(
            &stage.world,
            "operator",
            &format!(
                "change {}/3 inside the {DELAY_SECONDS} s debounce window: service {added} added",
                i + 1
            ),
        );
        stage.cp_admin.set_config(cp_config(services, exporter));
        stage.world.advance(Duration::from_secs(1));
        stage.t.flush(&stage.world);
    }
    let done = holds(&stage.s3, &stage.key, WINDOW[2]);
    stage.t.run(&mut stage.world, Duration::from_secs(60), done)
}

/// Step 3: a change whose first PUT gets 503 SlowDown. Returns whether it was exported (after
/// the steps before went well), and whether a PUT was answered 503 on the way.
fn slowed_down_change(stage: &mut Stage, exporter: &Value, so_far: bool) -> (bool, bool) {
    let put_path = format!("/{BUCKET}/{}", stage.key);
    stage.faulty.push_matching(
        move |r: &HttpRequest, _: &CallContext| r.method == "PUT" && r.path == put_path,
        Fault::slow_down(),
    );
    let v3 = [WINDOW[2], &["pricing"]].concat();
    stage.t.event(
        &stage.world,
        "operator",
        "change: service pricing added (mock S3 will answer its first PUT 503 SlowDown)",
    );
    stage.cp_admin.set_config(cp_config(&v3, exporter));
    let done = holds(&stage.s3, &stage.key, &v3);
    let retried = so_far && stage.t.run(&mut stage.world, Duration::from_secs(60), done);
    let retried_503 = retried && stage.faulty.injected().iter().any(|e| e.method == "PUT");
    stage.world.advance(Duration::from_secs(3));
    stage.t.flush(&stage.world);
    (retried, retried_503)
}

/// What mock S3 saw for the configuration object, faults marked; the election's and history's
/// requests counted.
fn report_s3(stage: &mut Stage) {
    stage.t.push(String::new());
    stage.t.push(
        "what mock S3 saw for the configuration object (faults injected in front of it marked):"
            .into(),
    );
    let mut answered = stage
        .s3
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/config.json"));
    let (mut election, mut history) = (0, 0);
    for e in stage.faulty.events() {
        if e.path.contains(&format!("/{GATEWAY}/history/"))
            || e.path.contains(&format!("{GATEWAY}%2Fhistory%2F"))
        {
            history += 1;
            continue;
        }
        if !e.path.ends_with("/config.json") {
            election += 1;
            continue;
        }
        let verdict = match &e.fault {
            Some(Fault::Status { status, code, .. }) => format!("{status} {code} (injected)"),
            _ => answered
                .next()
                .map(|r| r.status.to_string())
                .unwrap_or_else(|| "?".into()),
        };
        stage.t.push(format!(
            "  {:>6.1}s {:<5} {:<10} {} -> {verdict}",
            world_seconds(&e.time),
            e.method,
            e.node,
            e.path
        ));
    }
    stage.t.push(format!(
        "  (and {election} leader-election requests under fallback/{GATEWAY}/election/, {history} history requests under fallback/{GATEWAY}/history/)"
    ));
}

/// The story's last line.
fn summary(o: &StoryOutcome, after_down: f64) -> String {
    format!(
        "{}: {SOURCE} {} the election and made {} uploads (3 changes in one window: {} upload; a 503 {}); fallback-1 {} {} entities {:.0} s after {SOURCE} went down; {} trap(s)",
        if o.ok() { "DEMO OK" } else { "DEMO FAILED" },
        if o.led { "won" } else { "did NOT win" },
        o.uploads,
        o.window_uploads,
        if o.retried_503 { "retried" } else { "NOT retried" },
        if o.imported { "imported" } else { "did NOT import" },
        o.entities,
        after_down,
        o.traps,
    )
}

/// PUTs of the configuration object that mock S3 accepted.
fn config_puts(s3: &MockS3, key: &str) -> usize {
    s3.requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.key == key && r.status == 200)
        .count()
}

fn world_seconds(t: &std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH + Duration::from_secs(crate::clock::DEFAULT_EPOCH_SECS))
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The CLI: runs the story and returns the exit status.
pub fn run(wasm: &std::path::Path, module: &PluginModule, profile: HostProfile) -> Result<i32> {
    println!(
        "config-bridge demo: {} ({} KB) on simulated {} nodes (2 workers each), mock Kong Admin APIs, mock S3 checking every SigV4 signature\n",
        wasm.display(),
        module.size_bytes / 1024,
        profile.name
    );
    let outcome = scenario(module, profile)?;
    Ok(if outcome.ok() { 0 } else { 1 })
}
