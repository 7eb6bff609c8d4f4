//! The release filter in the REAL engine (nginx 1.27.4 + ngx_wasm_module 0.6.0 + Wasmtime 26):
//!
//! 1. **module load time per worker** — ngx_wasm_module's own `successfully loaded
//!    "config_bridge" module in N ms` line, over a start and `ENGINE_BENCH_RELOADS` (default 6)
//!    reloads of a 2-worker node (every worker compiles the module on start and on each reload);
//!    also the reload wall time (SIGHUP until the new workers are configured and the old ones gone);
//! 2. **worker memory** — `VmRSS` of both workers after the start's first export, and after 100
//!    more exports of 100 distinct configs (`ENGINE_BENCH_EXPORTS`). The configs come from a URL
//!    source (`config_source: "url"`, polled every 100 ms, export delay 0), so the same two workers
//!    live through all of them (a reload would replace the workers and hide a leak).
//!
//! `cargo bench -p config-bridge-tests --bench engine` (or, without a release build of the harness,
//! `cargo test -p config-bridge-tests --bench engine`). The engine is found as in the tests
//! (`NGX_WASM_ENGINE`, default `../shared/ngx-wasm`); `CONFIG_BRIDGE_WASM` loads a prebuilt module.
//! `ENGINE_BENCH_SERVICES` (default 100) sets the size of each config.

use std::time::{Duration, Instant};

use config_bridge_tests::payload_bytes;
use config_bridge_tests::real_engine::{
    engine_filter_config, module_path, with_url_source, ConfigUrl, EngineNode, EngineSpec, LiveS3,
    EXPORTED, MODULE_LOADED, WAIT,
};
use serde_json::{json, Value};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A declarative config with `services` services, distinct per `n`.
fn doc(n: usize, services: usize) -> Value {
    let services: Vec<Value> = (0..services)
        .map(|i| {
            json!({
                "name": format!("svc-{n}-{i}"),
                "url": format!("http://upstream-{i}.internal:8080/api/v{n}"),
                "routes": [{"name": format!("route-{n}-{i}"), "paths": [format!("/s{i}/v{n}")]}],
                "plugins": [{"name": "rate-limiting", "config": {"minute": 60 + i, "policy": "local"}}],
            })
        })
        .collect();
    json!({"_format_version": "3.0", "services": services})
}

fn stats(v: &[u64]) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let median = if s.len() % 2 == 1 {
        s[s.len() / 2] as f64
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) as f64 / 2.0
    };
    format!(
        "median {median:.0}, min {}, max {} (n = {})",
        s[0],
        s[s.len() - 1],
        s.len()
    )
}

fn loaded_ms(node: &EngineNode) -> Vec<u64> {
    node.entries_containing(MODULE_LOADED)
        .iter()
        .filter_map(|e| {
            let rest = e.text.split(MODULE_LOADED).nth(1)?;
            rest.split("ms").next()?.trim().parse().ok()
        })
        .collect()
}

fn rss(node: &EngineNode) -> Vec<(u32, u64)> {
    node.generation()
        .into_iter()
        .map(|p| (p, node.worker_rss_kib(p)))
        .collect()
}

fn wait_object(node: &EngineNode, s3: &LiveS3, body: &[u8]) {
    let ok = node.wait_until(WAIT, |_| s3.object().is_some_and(|o| o.body == body));
    assert!(
        ok,
        "the export did not land; log:\n{}",
        node.log_since_for_humans(config_bridge_tests::real_engine::LogMark(0))
    );
}

fn main() {
    let reloads = env_usize("ENGINE_BENCH_RELOADS", 6);
    let exports = env_usize("ENGINE_BENCH_EXPORTS", 100);
    let services = env_usize("ENGINE_BENCH_SERVICES", 100);
    let module = module_path();
    let module_kb = std::fs::metadata(&module)
        .map(|m| m.len() / 1024)
        .unwrap_or(0);

    let s3 = LiveS3::start();
    let first = doc(0, services);
    let url = ConfigUrl::start(&first);
    let mut cfg = with_url_source(engine_filter_config(&s3.endpoint(), &first), &url.url());
    cfg["cluster_fallback_config_export_delay"] = json!(0);
    cfg["config_poll_interval"] = json!(0.1);
    cfg["tick_period_ms"] = json!(100);
    let t = Instant::now();
    let Some(mut node) = EngineNode::start(EngineSpec::new("bench_engine", &cfg)) else {
        return;
    };
    let start_wall = t.elapsed();
    wait_object(&node, &s3, &payload_bytes(&first));

    let mut reload_walls = Vec::new();
    for _ in 0..reloads {
        let t = Instant::now();
        node.reload();
        reload_walls.push(t.elapsed().as_millis() as u64);
    }
    let loads = loaded_ms(&node);

    // The last reload's workers: export the current config, then 100 new ones.
    std::thread::sleep(Duration::from_millis(500));
    let before = rss(&node);
    let t = Instant::now();
    for n in 1..=exports {
        let d = doc(n, services);
        url.set(&d);
        wait_object(&node, &s3, &payload_bytes(&d));
    }
    let export_wall = t.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let after = rss(&node);
    let exported_ms: Vec<u64> = node
        .entries_containing(EXPORTED)
        .iter()
        .filter_map(|e| {
            e.text
                .rsplit(" in ")
                .next()?
                .trim_end_matches(" ms")
                .parse()
                .ok()
        })
        .collect();
    let problems = node.problems();

    println!("real engine: nginx 1.27.4 + ngx_wasm_module 0.6.0 + Wasmtime 26, 2 workers");
    println!("module: {} ({module_kb} KiB)", module.display());
    println!(
        "module load per worker (ms, ngx_wasm_module's `successfully loaded` line; start + {reloads} \
         reloads): {}",
        stats(&loads)
    );
    println!(
        "start until both workers configured: {} ms; reload wall time (ms): {}",
        start_wall.as_millis(),
        stats(&reload_walls)
    );
    println!(
        "config size: {} bytes ({services} services)",
        payload_bytes(&first).len()
    );
    println!("worker VmRSS after start + first export (KiB): {before:?}");
    println!("worker VmRSS after {exports} more exports (KiB): {after:?}");
    for ((p, b), (q, a)) in before.iter().zip(&after) {
        if p == q {
            println!("  worker {p}: {:+} KiB", *a as i64 - *b as i64);
        }
    }
    println!(
        "{exports} exports in {:.1} s ({:.0} ms each, poll + PUT); filter-reported export \
         latency (ms): {}",
        export_wall.as_secs_f64(),
        export_wall.as_millis() as f64 / exports.max(1) as f64,
        stats(&exported_ms)
    );
    println!(
        "PUTs seen by S3: {}; traps/crashes in the log: {}",
        s3.puts().len(),
        problems.len()
    );
}
