//! Export benchmark: the real `config-bridge` .wasm (shipping `wasm-release` profile) in the host
//! harness, exporting 1 MB, 10 MB and 50 MB Kong declarative configs carried in the filter
//! configuration's `config` field (how Kong 3.4 hands the filter its config), against a native
//! baseline measured in the same run.
//!
//! For each size:
//! * **cold**: wall time from `add_node` (worker start: instantiate, `on_vm_start`, `on_configure`
//!   = "config applied") to the PUT reaching the storage handler;
//! * **warm**: wall time from `reconfigure` with a different config of the same size to its PUT
//!   reaching the handler, split into `on_configure` itself and the rest (ticks until the
//!   export, hashing, signing, copying the request out of the guest);
//! * the guest's linear memory afterwards (wasm memory never shrinks: this is the peak);
//! * **native**: SHA-256 of the same payload + `aws-sigv4` signing of the same PUT in-process
//!   (median of several runs), and the ratio warm-wasm / native.
//!
//! Settings: 1 worker, ngx_wasm_module profile, export delay 0, tick 10 ms. The handler records an
//! `Instant` the moment the PUT arrives, then passes it to the mock S3 (which verifies the
//! signature and checksum: that part is excluded from the times).
//!
//! Run: `cargo bench -p config-bridge-tests --bench export` (release). `EXPORT_BENCH_SIZES_MB=1,10`
//! limits the sizes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use config_bridge_tests::native_sigv4::Signer;
use config_bridge_tests::{
    filter_config, mock_s3, payload_bytes, plugin_module, route_storage, ACCESS_KEY, BUCKET,
    CONFIG_KEY, REGION, SECRET_KEY,
};
use host_harness::http::{CallContext, Handler, HttpRequest, Reply};
use host_harness::{HostProfile, NodeSpec, World};
use serde_json::{json, Value};

const MB: usize = 1024 * 1024;

/// A valid Kong 3.x declarative config of about `target` bytes (serialised): many services, each
/// with routes and a plugin. `variant` changes every service so two configs differ everywhere.
fn declarative_of_size(target: usize, variant: u32) -> Value {
    let service = |i: usize| {
        json!({
            "name": format!("svc-{variant}-{i:07}"),
            "protocol": "http",
            "host": format!("upstream-{i}.backend.internal"),
            "port": 8080,
            "path": format!("/api/v{variant}/{i}"),
            "retries": 5,
            "connect_timeout": 60000,
            "read_timeout": 60000,
            "write_timeout": 60000,
            "tags": ["bench", format!("team-{}", i % 97)],
            "routes": [
                {"name": format!("route-{variant}-{i:07}-a"), "paths": [format!("/s{i}/a")],
                 "methods": ["GET", "POST"], "strip_path": true, "preserve_host": false,
                 "protocols": ["http", "https"], "hosts": [format!("h{i}.example.com")]},
                {"name": format!("route-{variant}-{i:07}-b"), "paths": [format!("/s{i}/b")],
                 "methods": ["PUT", "DELETE"], "strip_path": false, "protocols": ["https"]}
            ],
            "plugins": [
                {"name": "rate-limiting", "config": {"minute": 100 + (i % 50), "policy": "local"}}
            ]
        })
    };
    let one = serde_json::to_vec(&service(0))
        .map(|v| v.len())
        .unwrap_or(600)
        + 1;
    let n = target.div_ceil(one).max(1);
    json!({
        "_format_version": "3.0",
        "_transform": true,
        "services": (0..n).map(service).collect::<Vec<_>>(),
    })
}

/// What a native exporter does per upload, minus the network: hash the payload, sign the PUT.
fn native_sign(body: &[u8]) -> usize {
    let headers = [
        ("content-type".to_string(), "application/json".to_string()),
        ("content-length".to_string(), body.len().to_string()),
        ("host".to_string(), "s3.test:9000".to_string()),
        ("x-amz-meta-uploader".to_string(), "node-a".to_string()),
    ];
    let signer = Signer {
        access_key: ACCESS_KEY,
        secret_key: SECRET_KEY,
        region: REGION,
    };
    let url = format!("http://s3.test:9000/{BUCKET}/{CONFIG_KEY}");
    signer
        .sign("PUT", &url, &headers, body, SystemTime::now())
        .len()
}

fn native_time(body: &[u8]) -> Duration {
    median_of_7(|| {
        std::hint::black_box(native_sign(std::hint::black_box(body)));
    })
}

fn median_of_7(mut f: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..7)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

/// Wraps the mock S3: remembers when each PUT of the config object arrived, and its size.
#[derive(Clone, Default)]
struct PutClock(Arc<Mutex<Vec<(Instant, usize)>>>);

impl PutClock {
    fn count(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
    fn last(&self) -> Option<(Instant, usize)> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .copied()
    }
}

struct Measured {
    size_mb: usize,
    payload_bytes: usize,
    filter_config_bytes: usize,
    cold: Result<Duration, String>,
    warm: Result<Duration, String>,
    warm_configure: Duration,
    memory: Option<usize>,
    native: Duration,
    /// Native validation of the same filter configuration (json_scan, the filter's own scanner).
    native_scan: Duration,
    /// Guest callbacks during the warm export: (longest callback, its guest time), the longest
    /// host copy inside one callback, and the totals.
    longest: (String, Duration),
    longest_copy: Duration,
    guest_total: Duration,
    copy_total: Duration,
    stored_ok: bool,
}

/// Advances in tick steps until the handler has seen `count` PUTs (or `limit` of virtual time).
fn until_put(world: &mut World, clock: &PutClock, count: usize, limit: Duration) -> bool {
    world.advance_until(limit, Duration::from_millis(10), |_| clock.count() >= count)
}

fn run_size(size_mb: usize) -> Measured {
    let profile = HostProfile::ngx_wasm_module();
    let s3 = mock_s3();
    let clock = PutClock::default();
    let (inner, seen) = (s3.clone(), clock.clone());
    let handler = move |req: &HttpRequest, ctx: &CallContext| -> Reply {
        if req.method == "PUT" && req.path.ends_with("/config.json") {
            seen.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((Instant::now(), req.body.len()));
        }
        inner.handle(req, ctx)
    };
    let mut world = World::new(profile.clone());
    route_storage(&mut world, handler);

    let config_for = |doc: &Value| {
        let mut cfg = filter_config(&profile, doc);
        cfg["cluster_fallback_config_export_delay"] = json!(0);
        cfg["tick_period_ms"] = json!(10);
        cfg["call_timeout_ms"] = json!(600_000);
        serde_json::to_vec(&cfg).expect("serialise the filter config")
    };
    let doc_a = declarative_of_size(size_mb * MB, 1);
    let doc_b = declarative_of_size(size_mb * MB, 2);
    let payload_b = payload_bytes(&doc_b);
    let cfg_a = config_for(&doc_a);
    let cfg_b = config_for(&doc_b);
    drop(doc_a);
    let native = native_time(&payload_b);
    let native_scan = median_of_7(|| {
        std::hint::black_box(
            config_bridge::json::scan::Scanner::new(Some("config"))
                .step(std::hint::black_box(&cfg_b), usize::MAX),
        );
    });
    let limit = Duration::from_secs(600);

    // Cold: node start with the config.
    let t0 = Instant::now();
    let node = world.add_node(NodeSpec::new("node-a", &plugin_module()).filter(cfg_a.clone()));
    let cold = match node {
        Err(ref e) => Err(format!("add_node: {e:#}")),
        Ok(node) if world.configured(node, 0, 0) != Some(true) => Err(format!(
            "on_configure returned {:?}",
            world.configured(node, 0, 0)
        )),
        Ok(_) if !until_put(&mut world, &clock, 1, limit) => Err(format!(
            "no PUT within {limit:?} virtual; last logs: {:?}",
            tail_logs(&world)
        )),
        Ok(_) => Ok(clock.last().map(|(t, _)| t - t0).unwrap_or_default()),
    };
    // Let the first upload finish before the next config arrives.
    world.advance(Duration::from_millis(50));

    // Warm: a new config of the same size through on_configure.
    let mut warm_configure = Duration::ZERO;
    let warm = match &node {
        Ok(node) if cold.is_ok() => {
            world.reset_callback_times();
            let t0 = Instant::now();
            let results = world.reconfigure(*node, 0, cfg_b.clone());
            warm_configure = t0.elapsed();
            if results != vec![Some(true)] {
                Err(format!("reconfigure returned {results:?}"))
            } else if !until_put(&mut world, &clock, 2, limit) {
                Err(format!(
                    "no PUT within {limit:?} virtual; last logs: {:?}",
                    tail_logs(&world)
                ))
            } else {
                Ok(clock.last().map(|(t, _)| t - t0).unwrap_or_default())
            }
        }
        _ => Err("skipped (cold run failed)".into()),
    };
    world.advance(Duration::from_millis(50));
    let times = world.callback_times();
    let longest = times
        .iter()
        .map(|(name, t)| (name.clone(), t.longest_guest))
        .max_by_key(|(_, d)| *d)
        .unwrap_or_default();
    let longest_copy = times
        .values()
        .map(|t| t.longest_copy)
        .max()
        .unwrap_or_default();
    let guest_total = times.values().map(|t| t.total_guest).sum();
    let copy_total = times.values().map(|t| t.total_copy).sum();
    let memory = node
        .as_ref()
        .ok()
        .and_then(|n| world.guest_memory_bytes(*n, 0));
    let stored_ok = s3
        .object(BUCKET, CONFIG_KEY)
        .is_some_and(|o| o.body == payload_b);
    if !world.traps().is_empty() || !world.fatal_errors().is_empty() {
        eprintln!(
            "{size_mb} MB: traps {:?} {:?}",
            world.traps(),
            world.fatal_errors()
        );
        world.expect_traps();
    }
    Measured {
        size_mb,
        payload_bytes: payload_b.len(),
        filter_config_bytes: cfg_b.len(),
        cold,
        warm,
        warm_configure,
        memory,
        native,
        native_scan,
        longest,
        longest_copy,
        guest_total,
        copy_total,
        stored_ok,
    }
}

fn tail_logs(world: &World) -> Vec<String> {
    let logs = world.logs();
    logs.iter()
        .rev()
        .take(3)
        .rev()
        .map(|l| l.message.chars().take(200).collect())
        .collect()
}

fn fmt_ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let sizes: Vec<usize> = std::env::var("EXPORT_BENCH_SIZES_MB")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 10, 50]);
    let wasm = host_harness::wasm_build::config_bridge().expect("build config-bridge");
    let wasm_size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
    let t = Instant::now();
    let _ = plugin_module();
    let compile = t.elapsed();

    let mut rows = Vec::new();
    for &mb in &sizes {
        eprintln!("export bench: {mb} MB ...");
        rows.push(run_size(mb));
    }

    println!();
    println!(
        "config-bridge export benchmark — {} ({} bytes = {:.1} KB), compile {}",
        wasm.display(),
        wasm_size,
        wasm_size as f64 / 1024.0,
        fmt_ms(compile)
    );
    println!("1 worker, ngx_wasm_module profile, export_delay 0, tick 10 ms; times are wall clock");
    println!(
        "{:>5} {:>11} {:>11} {:>13} {:>13} {:>13} {:>11} {:>10} {:>8} {:>7}",
        "size",
        "payload B",
        "filter cfg",
        "cold→PUT",
        "warm→PUT",
        "on_configure",
        "guest mem",
        "native",
        "ratio",
        "stored"
    );
    for r in &rows {
        let show = |x: &Result<Duration, String>| match x {
            Ok(d) => fmt_ms(*d),
            Err(_) => "FAILED".into(),
        };
        let ratio = match &r.warm {
            Ok(d) => format!("{:.0}x", d.as_secs_f64() / r.native.as_secs_f64().max(1e-9)),
            Err(_) => "-".into(),
        };
        println!(
            "{:>4}M {:>11} {:>11} {:>13} {:>13} {:>13} {:>11} {:>10} {:>8} {:>7}",
            r.size_mb,
            r.payload_bytes,
            r.filter_config_bytes,
            show(&r.cold),
            show(&r.warm),
            fmt_ms(r.warm_configure),
            r.memory
                .map(|m| format!("{:.1} MB", m as f64 / MB as f64))
                .unwrap_or_else(|| "-".into()),
            fmt_ms(r.native),
            ratio,
            if r.stored_ok { "yes" } else { "NO" },
        );
    }
    for r in &rows {
        for (what, x) in [("cold", &r.cold), ("warm", &r.warm)] {
            if let Err(e) = x {
                println!("{} MB {what}: {e}", r.size_mb);
            }
        }
    }
    println!(
        "ratio = warm→PUT / native (SHA-256 + aws-sigv4 sign of the same payload, median of 7)"
    );
    println!();
    println!("guest callbacks during the warm export (wall time, the host's bulk copies apart):");
    println!(
        "{:>5} {:>26} {:>13} {:>12} {:>12} {:>14} {:>9}",
        "size",
        "longest callback (guest)",
        "longest copy",
        "guest total",
        "copy total",
        "native total",
        "ratio"
    );
    for r in &rows {
        let native_total = r.native + r.native_scan;
        println!(
            "{:>4}M {:>26} {:>13} {:>12} {:>12} {:>14} {:>8.1}x",
            r.size_mb,
            format!("{} {}", r.longest.0, fmt_ms(r.longest.1)),
            fmt_ms(r.longest_copy),
            fmt_ms(r.guest_total),
            fmt_ms(r.copy_total),
            fmt_ms(native_total),
            (r.guest_total + r.copy_total).as_secs_f64() / native_total.as_secs_f64().max(1e-9)
        );
    }
    println!(
        "native total = json_scan validation of the filter config + SHA-256 + SigV4 signing (breakdown: scan, hash+sign columns above)"
    );
}
