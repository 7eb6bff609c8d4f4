//! `host-harness demo`: the README's main job. The real config-bridge `.wasm` runs in a simulated
//! Kong node (ngx_wasm_module profile, 2 workers) and exports to an in-process mock S3 that verifies
//! every SigV4 signature: configs A, B, C, D applied within the debounce window (only A and D are
//! uploaded), then E hit by a 503 SlowDown and retried. `demo fallback`: import on a fallback
//! node ([`fallback`]).

pub mod fallback;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::mocks::faults::{Fault, Faulty};
use crate::mocks::s3::{MockS3, S3Credential};
use crate::{HostProfile, NodeSpec, PluginModule, World};

/// Which demo to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// A CP exports, goes down; an empty fallback node imports the export.
    Fallback,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Without one: debounced exports to mock S3. `fallback`: import on a fallback node.
    #[arg(value_enum)]
    pub scenario: Option<Scenario>,
    /// Use this .wasm instead of building the filter.
    #[arg(long)]
    pub wasm: Option<PathBuf>,
    /// Host profile: ngx_wasm_module (Kong), kong_legacy, envoy, hostile.
    #[arg(long, default_value = "ngx_wasm_module")]
    pub profile: String,
}

const BUCKET: &str = "kong-backups";
const UPSTREAM: &str = "s3.demo.internal:9000";
const KEY: &str = "fallback/3.9.1/config.json";

fn declarative(services: &[&str]) -> serde_json::Value {
    json!({
        "_format_version": "3.0",
        "services": services.iter().map(|s| json!({
            "name": s,
            "url": format!("http://{s}.internal:8080"),
            "routes": [{"name": format!("{s}-route"), "paths": [format!("/{s}")]}],
        })).collect::<Vec<_>>(),
    })
}

fn filter_config(services: &[&str]) -> String {
    json!({
        "cluster_fallback_config_export": "on",
        "cluster_fallback_config_storage": format!("s3://{BUCKET}/fallback"),
        "cluster_fallback_config_export_delay": 10,
        "gateway_version": "3.9.1",
        "node_id": "dp-backup-1",
        "storage_endpoint": format!("http://{UPSTREAM}"),
        "storage_upstream": UPSTREAM,
        "aws_region": "us-east-1",
        "retry_base_ms": 2000,
        "config": declarative(services),
    })
    .to_string()
}

struct Printer {
    shown: usize,
}

impl Printer {
    fn flush(&mut self, world: &World) {
        let logs = world.logs();
        for l in logs.iter().skip(self.shown) {
            if l.message.contains("[config-bridge]") || l.message.starts_with("[host]") {
                println!("  {:>6.1}s {} {}", l.at.as_secs_f64(), l.origin, l.message);
            }
        }
        self.shown = logs.len();
    }
}

pub fn run(args: DemoArgs) -> Result<i32> {
    let Some(profile) = HostProfile::by_name(&args.profile) else {
        bail!("unknown profile {:?}", args.profile);
    };
    let wasm = match args.wasm {
        Some(p) => p,
        None => {
            println!("building the filter (cargo build --target wasm32-wasip1 --profile wasm-release)...");
            crate::wasm_build::config_bridge()?
        }
    };
    let module = PluginModule::load(&wasm)?;
    if args.scenario == Some(Scenario::Fallback) {
        return fallback::run(&wasm, &module, profile);
    }
    println!(
        "config-bridge demo: {} ({} KB) on a simulated {} node, 2 workers, mock S3 with SigV4 checks",
        wasm.display(),
        module.size_bytes / 1024,
        profile.name
    );
    let s3 = MockS3::builder()
        .region("us-east-1")
        .bucket(BUCKET)
        .credential(S3Credential::new("AKIADEMO", "demo-secret-key"))
        .build();
    let faulty = Faulty::new(Arc::new(s3.clone()));
    let mut world = World::new(profile);
    world.route(UPSTREAM, Arc::new(faulty.clone()));
    timeline(&mut world, &module, &faulty)?;
    report(&world, &s3, &faulty)
}

/// Config A at start, B, C, D within the debounce window, then E whose first PUT gets a 503.
fn timeline(world: &mut World, module: &PluginModule, faulty: &Faulty) -> Result<()> {
    let mut out = Printer { shown: 0 };
    println!("\n[t=0s] node starts with config A (export delay 10 s)");
    let node = world.add_node(
        NodeSpec::new("dp1", module)
            .workers(2)
            .filter(filter_config(&["A"]))
            .env("AWS_ACCESS_KEY_ID", "AKIADEMO")
            .env("AWS_SECRET_ACCESS_KEY", "demo-secret-key"),
    )?;
    world.advance(Duration::from_secs(3));
    out.flush(world);
    for (t, name, services) in [
        (3, "B", vec!["A", "B"]),
        (5, "C", vec!["A", "B", "C"]),
        (7, "D", vec!["A", "B", "C", "D"]),
    ] {
        println!("\n[t={t}s] config {name} applied (within the debounce window)");
        world.reconfigure(node, 0, filter_config(&services));
        world.advance(Duration::from_secs(2));
        out.flush(world);
    }
    world.advance(Duration::from_secs(21));
    out.flush(world);
    println!("\n[t=30s] config E applied; the next PUT gets 503 SlowDown");
    faulty.push(Fault::slow_down());
    world.reconfigure(node, 0, filter_config(&["A", "B", "C", "D", "E"]));
    world.advance(Duration::from_secs(30));
    out.flush(world);
    Ok(())
}

/// What mock S3 saw and the object it holds; the exit status (0: 5 services, no trap).
fn report(world: &World, s3: &MockS3, faulty: &Faulty) -> Result<i32> {
    println!("\nwhat mock S3 saw (faults injected in front of it marked):");
    let mut puts = 0;
    let mut answered = s3.requests().into_iter();
    for e in faulty.events() {
        let verdict = match &e.fault {
            Some(Fault::Status { status, code, .. }) => format!("{status} {code} (injected)"),
            _ => match answered.next() {
                Some(r) => r.status.to_string(),
                None => "?".to_string(),
            },
        };
        if e.method == "PUT" {
            puts += 1;
        }
        println!(
            "  {:>6.1}s {} {} -> {}",
            world_time(&e.time),
            e.method,
            e.path,
            verdict
        );
    }
    let Some(object) = s3.object(BUCKET, KEY) else {
        bail!("the demo ended without {KEY} in the bucket");
    };
    let body: serde_json::Value = serde_json::from_slice(&object.body)?;
    let names: Vec<&str> = body["services"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    println!(
        "\ns3://{BUCKET}/{KEY}: {} bytes, services {:?}, uploader {:?}",
        object.body.len(),
        names,
        object
            .metadata
            .iter()
            .find(|(k, _)| k == "uploader")
            .map(|(_, v)| v.as_str())
    );
    let traps = world.traps().len() + world.fatal_errors().len();
    println!("{puts} PUT(s) for 5 configs, {traps} trap(s)");
    Ok(if traps == 0 && names.len() == 5 { 0 } else { 1 })
}

fn world_time(t: &std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH + Duration::from_secs(crate::clock::DEFAULT_EPOCH_SECS))
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
