//! The longest guest callback of each kind in the scenarios of issue 25 other than the export of
//! an object configuration (that one is `--bench export`): a Kong Admin API dump of about 10,000
//! entities, the import of a 50 MB object, election rounds, the GCS token's RS256 signature, and
//! the export of a Kong 3.4 string configuration (the filter configuration as a JSON string). The
//! real `config-bridge` .wasm (shipping profile, or `CONFIG_BRIDGE_WASM`) in the host harness,
//! ngx_wasm_module profile; wall and CPU time of each guest callback with the host's bulk copies
//! (buffers in, requests out) apart.
//!
//! Run: `cargo bench -p config-bridge-tests --bench callbacks` (release).
//! `CALLBACK_BENCH=kong,import,election,gcs,string` picks scenarios; `CALLBACK_BENCH_IMPORT_MB=50`,
//! `CALLBACK_BENCH_STRING_MB=50` and `CALLBACK_BENCH_ENTITIES=10000` set the sizes.
//! `CALLBACK_BENCH_TRACE=<ms>` also prints each 50 ms step of virtual time (about one tick) whose
//! longest callback took more guest CPU than that, with the guest's last log line: which tick
//! of a scenario is the long one.

#[path = "../tests/gcs_support/mod.rs"]
mod gcs_support;
#[path = "support/kinds.rs"]
mod kinds;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use config_bridge_tests::kong_setup::*;
use config_bridge_tests::*;
use host_harness::mocks::kong::generate::{generate_with, GenerateOptions};
use host_harness::mocks::kong::MockKongAdmin;
use host_harness::record::CallbackTimes;
use host_harness::{HostProfile, NodeSpec, World};
use serde_json::{json, Value};

/// One scenario's outcome: what it did, whether it got there, and its callbacks by kind.
struct Outcome {
    name: String,
    done: Result<String, String>,
    kinds: BTreeMap<String, CallbackTimes>,
    wall: Duration,
}

fn outcome(name: String, world: &World, done: Result<String, String>, t0: Instant) -> Outcome {
    if !world.traps().is_empty() {
        eprintln!("{name}: traps {:?}", world.traps());
    }
    let mut kinds = TRACED.with(|t| std::mem::take(&mut *t.borrow_mut()));
    merge(&mut kinds, world.callback_times());
    Outcome {
        name,
        done,
        kinds,
        wall: t0.elapsed(),
    }
}

thread_local! {
    /// The callback times of the steps already traced (the world's are reset after each).
    static TRACED: RefCell<BTreeMap<String, CallbackTimes>> = RefCell::default();
}

/// `from`'s callback times added to `into` (counts and totals summed, the longest kept).
fn merge(into: &mut BTreeMap<String, CallbackTimes>, from: BTreeMap<String, CallbackTimes>) {
    for (kind, f) in from {
        let t = into.entry(kind).or_default();
        t.count += f.count;
        t.total_guest += f.total_guest;
        t.longest_guest = t.longest_guest.max(f.longest_guest);
        t.total_copy += f.total_copy;
        t.longest_copy = t.longest_copy.max(f.longest_copy);
        t.total_cpu += f.total_cpu;
        t.longest_cpu = t.longest_cpu.max(f.longest_cpu);
        t.total_guest_cpu += f.total_guest_cpu;
        t.longest_guest_cpu = t.longest_guest_cpu.max(f.longest_guest_cpu);
        t.longest_copy_cpu = t.longest_copy_cpu.max(f.longest_copy_cpu);
    }
}

/// `World::advance_until` in 50 ms steps; with `CALLBACK_BENCH_TRACE=<ms>`, each step whose
/// longest callback took more guest CPU than that is printed with the guest's last log line.
fn advance_traced(world: &mut World, limit: Duration, done: impl Fn(&World) -> bool) -> bool {
    let Some(over) = std::env::var("CALLBACK_BENCH_TRACE")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
    else {
        return world.advance_until(limit, ms(50), done);
    };
    let deadline = world.elapsed() + limit;
    while world.elapsed() < deadline && !done(world) {
        world.advance(ms(50));
        let step = world.callback_times();
        world.reset_callback_times();
        for (kind, t) in &step {
            if t.longest_guest_cpu.as_secs_f64() * 1e3 > over {
                let last = world.with_recorder(|r| {
                    r.logs
                        .last()
                        .map(|l| l.message.chars().take(140).collect::<String>())
                });
                eprintln!(
                    "[trace {:>8.2} s] {kind} x{}: guest CPU {}, copy CPU {}; last log: {}",
                    world.elapsed().as_secs_f64(),
                    t.count,
                    kinds::fmt_ms(t.longest_guest_cpu),
                    kinds::fmt_ms(t.longest_copy_cpu),
                    last.unwrap_or_default()
                );
            }
        }
        TRACED.with(|t| merge(&mut t.borrow_mut(), step));
    }
    done(world)
}

/// Entities of a flat document (every array of a non-`_` key).
fn entity_count(doc: &Value) -> usize {
    doc.as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| !k.starts_with('_'))
                .filter_map(|(_, v)| v.as_array().map(Vec::len))
                .sum()
        })
        .unwrap_or(0)
}

/// A generated flat document whose `measure` is about `target` (services scaled; the consumers,
/// credentials and the rest of `GenerateOptions::new` as they are).
fn document_of(target: usize, measure: impl Fn(&Value) -> usize) -> Value {
    let fixed = measure(&generate_with(&GenerateOptions::new(0), 1));
    let per_100 = measure(&generate_with(&GenerateOptions::new(100), 1)).saturating_sub(fixed);
    let services = (target.saturating_sub(fixed) * 100 / per_100.max(1)).max(1);
    generate_with(&GenerateOptions::new(services), 7)
}

fn json_len(doc: &Value) -> usize {
    serde_json::to_vec(doc).map(|v| v.len()).unwrap_or(0)
}

/// A DB-less node's Admin API serving `entities` entities, read page by page and exported.
fn kong_dump(entities: usize) -> Outcome {
    let t0 = Instant::now();
    let profile = HostProfile::ngx_wasm_module();
    let doc = document_of(entities, entity_count);
    let n = entity_count(&doc);
    let admin = MockKongAdmin::dbless(KONG_VERSION);
    admin.set_config(doc);
    let s3 = mock_s3();
    let mut world = world_with_storage(&profile, s3.clone());
    world.measure_cpu_time(true);
    route_host(&mut world, CP_ADMIN, admin.clone());
    add_node(
        &mut world,
        "n1",
        1,
        &admin_source_config(&profile, CP_ADMIN),
        &[],
    );
    let done = run_to_export(&mut world, &s3);
    outcome(format!("Kong Admin dump, {n} entities"), &world, done, t0)
}

/// Runs the world until the config object is stored (at most 10 virtual minutes).
fn run_to_export(
    world: &mut World,
    s3: &host_harness::mocks::s3::MockS3,
) -> Result<String, String> {
    let stored = || s3.object(BUCKET, CONFIG_KEY);
    let ok = advance_traced(world, secs(600), |_| stored().is_some());
    match stored() {
        Some(o) if ok => Ok(format!(
            "exported {} bytes at {:.1} s virtual",
            o.body.len(),
            world.elapsed().as_secs_f64()
        )),
        _ => Err(format!("not exported; {:?}", last_logs(world))),
    }
}

/// A fallback node downloads a `mb` MB object, checks it a slice per tick, rewrites it and
/// POSTs it to its Admin API.
fn import(mb: usize) -> Outcome {
    let t0 = Instant::now();
    let profile = HostProfile::ngx_wasm_module();
    let mut f = Fallback::new(&profile);
    f.world.measure_cpu_time(true);
    let doc = document_of(mb * 1024 * 1024, json_len);
    let body = serde_json::to_vec(&doc).expect("serialise");
    assert_eq!(
        put_object_signed(&f.world, &f.s3, &body, &body),
        200,
        "stored"
    );
    f.probe.set(ProbeMode::Refused);
    f.start_fallback(&importer_config(&profile), true);
    let posted = |w: &World| {
        calls_to(w, NODE_ADMIN)
            .iter()
            .any(|c| c.request.method == "POST")
    };
    let ok = advance_traced(&mut f.world, secs(300), posted);
    let applied = log_messages(&f.world, APPLIED).len();
    let done = if ok {
        Ok(format!(
            "{} bytes downloaded, checked and POSTed at {:.1} s virtual; applied: {}",
            body.len(),
            f.world.elapsed().as_secs_f64(),
            applied > 0
        ))
    } else {
        Err(format!("not POSTed; {:?}", last_logs(&f.world)))
    };
    let name = format!("import of a {:.1} MB object", body.len() as f64 / 1e6);
    outcome(name, &f.world, done, t0)
}

/// A Kong 3.4 node: the filter configuration is a JSON string holding the object, whose `config`
/// is a `mb` MB document; unescaped, validated and cut a slice per tick, then exported.
fn string_config(mb: usize) -> Outcome {
    let t0 = Instant::now();
    let profile = HostProfile::ngx_wasm_module();
    let doc = document_of(mb * 1024 * 1024, json_len);
    let cfg = Value::String(filter_config(&profile, &doc).to_string());
    let s3 = mock_s3();
    let mut world = world_with_storage(&profile, s3.clone());
    world.measure_cpu_time(true);
    add_node(&mut world, "n1", 1, &cfg, &[]);
    let done = run_to_export(&mut world, &s3);
    let name = format!(
        "export of a {:.1} MB string configuration (Kong 3.4)",
        cfg.to_string().len() as f64 / 1e6
    );
    outcome(name, &world, done, t0)
}

/// Three backup nodes electing a leader every 10 s, for 60 s of virtual time.
fn election() -> Outcome {
    let t0 = Instant::now();
    let profile = HostProfile::ngx_wasm_module();
    let s3 = mock_s3();
    let mut world = world_with_storage(&profile, s3.clone());
    world.measure_cpu_time(true);
    for i in 1..=3 {
        let mut cfg = filter_config(&profile, &declarative(i));
        cfg["election"] = json!(true);
        cfg["cluster_fallback_election_interval"] = json!(10);
        cfg["node_id"] = json!(format!("node-{i}"));
        world
            .add_node(
                NodeSpec::new(&format!("n{i}"), &plugin_module())
                    .seed(u64::from(i))
                    .filter(cfg.to_string()),
            )
            .expect("start node");
    }
    world.advance(secs(60));
    let rounds = storage_calls(&world, "GET")
        .iter()
        .filter(|c| c.request.path.contains("list-type=2"))
        .count();
    let leaders = log_messages(&world, "leader").len();
    let done = Ok(format!(
        "{rounds} registration listings, {leaders} log lines on leadership"
    ));
    outcome("election, 3 nodes, 60 s".into(), &world, done, t0)
}

/// The GCS exporter's first token: the service-account JWT signed (RS256, a slice per tick).
fn gcs_token() -> Outcome {
    let t0 = Instant::now();
    let profile = HostProfile::ngx_wasm_module();
    let mut g = gcs_support::gcs_world(&profile);
    g.world.measure_cpu_time(true);
    let cfg = gcs_support::gcs_config(&profile, &declarative(1), Some(&g.key_json));
    start_node(&mut g.world, 1, &cfg);
    let mock = g.mock.clone();
    let ok = g
        .world
        .advance_until(secs(30), ms(50), |_| gcs_support::exported(&mock).is_some());
    let tokens = gcs_support::token_calls(&g.mock).len();
    let done = if ok {
        Ok(format!("{tokens} token request(s), exported"))
    } else {
        Err(format!("not exported; {:?}", last_logs(&g.world)))
    };
    outcome("GCS token (RS256) and export".into(), &g.world, done, t0)
}

fn last_logs(world: &World) -> Vec<String> {
    let logs = world.logs();
    let n = logs.len().saturating_sub(3);
    logs.iter()
        .skip(n)
        .map(|l| l.message.chars().take(200).collect())
        .collect()
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn main() {
    let picked = std::env::var("CALLBACK_BENCH")
        .unwrap_or_else(|_| "kong,import,election,gcs,string".into());
    let wanted = |s: &str| picked.split(',').any(|p| p.trim() == s);
    let wasm = config_bridge_tests::real_engine::module_path();
    let _ = plugin_module();
    let mut rows = Vec::new();
    if wanted("kong") {
        eprintln!("callbacks bench: Kong Admin dump ...");
        rows.push(kong_dump(env_number("CALLBACK_BENCH_ENTITIES", 10_000)));
    }
    if wanted("import") {
        eprintln!("callbacks bench: import ...");
        rows.push(import(env_number("CALLBACK_BENCH_IMPORT_MB", 50)));
    }
    if wanted("election") {
        eprintln!("callbacks bench: election ...");
        rows.push(election());
    }
    if wanted("gcs") {
        eprintln!("callbacks bench: GCS token ...");
        rows.push(gcs_token());
    }
    if wanted("string") {
        eprintln!("callbacks bench: Kong 3.4 string configuration ...");
        rows.push(string_config(env_number("CALLBACK_BENCH_STRING_MB", 50)));
    }
    println!();
    println!(
        "config-bridge callbacks by kind — {} ({} bytes); ngx_wasm_module profile; guest wall and CPU time, the host's copies apart",
        wasm.display(),
        std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0)
    );
    for r in &rows {
        println!();
        match &r.done {
            Ok(what) => println!(
                "{}: {what} (bench wall {:.1} s)",
                r.name,
                r.wall.as_secs_f64()
            ),
            Err(e) => println!("{}: FAILED: {e}", r.name),
        }
        println!("{}", kinds::header("", 1));
        for (kind, t) in &r.kinds {
            println!("{}", kinds::row("", 1, kind, t));
        }
    }
}
