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
//! Also, for the warm export: the longest guest callback of each kind (issue 25), the guest's time
//! by phase (configure, scan + cut, redact + hash, request build + sign, answers, host copies)
//! against the same steps natively with the filter's own code, and the native baseline a second
//! time with a SHA-256 without CPU extensions (wasm has none).
//!
//! Run: `cargo bench -p config-bridge-tests --bench export` (release). `EXPORT_BENCH_SIZES_MB=1,10`
//! limits the sizes; `EXPORT_BENCH_TRACE=1` prints every warm-export callback over 3 ms of guest
//! CPU with its phase; `HARNESS_PERF_MAP=1` under `perf record` names the guest's functions.

#[path = "support/kinds.rs"]
mod kinds;
#[path = "support/soft_sha256.rs"]
mod soft_sha256;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use config_bridge_tests::native_sigv4::Signer;
use config_bridge_tests::{
    filter_config, mock_s3, payload_bytes, plugin_module, route_storage, ACCESS_KEY, BUCKET,
    CONFIG_KEY, REGION, SECRET_KEY,
};
use host_harness::http::{CallContext, Handler, HttpRequest, Reply};
use host_harness::record::CallbackTimes;
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
    sign_hashed(
        &config_bridge_tests::native_sigv4::sha256_hex(body),
        body.len(),
    )
}

/// The SigV4 signature of the PUT of a body of `len` bytes whose SHA-256 is known.
fn sign_hashed(sha256_hex: &str, len: usize) -> usize {
    let headers = [
        ("content-type".to_string(), "application/json".to_string()),
        ("content-length".to_string(), len.to_string()),
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
        .sign_hashed("PUT", &url, &headers, sha256_hex, SystemTime::now())
        .len()
}

fn native_time(body: &[u8]) -> Duration {
    median_of_7(|| {
        std::hint::black_box(native_sign(std::hint::black_box(body)));
    })
}

fn median_of_7(mut f: impl FnMut()) -> Duration {
    median_of_7_with(|| (), |()| f())
}

/// Median of 7 runs of `f` on a fresh input from `setup` each (not timed).
fn median_of_7_with<T>(mut setup: impl FnMut() -> T, mut f: impl FnMut(T)) -> Duration {
    let mut samples: Vec<Duration> = (0..7)
        .map(|_| {
            let input = setup();
            let t = Instant::now();
            f(input);
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

/// The filter's steps on the same bytes, natively, with its own code (`config_bridge`), median of
/// 7 each: what the guest's phases cost without wasm.
#[derive(Default)]
struct NativeSteps {
    /// `json::scan` of the filter configuration.
    scan: Duration,
    /// The payload moved to the front of the configuration text (`settings::PayloadCut`).
    cut: Duration,
    /// `redact::Rewriter` over the payload (no filter chains: nothing edited, nothing copied; it
    /// also finds the newest `updated_at`).
    redact: Duration,
    /// SHA-256 as the filter's `sha2` computes it natively (x86 SHA extensions where present).
    hash: Duration,
    /// The same hash without CPU extensions ([`soft_sha256`]).
    hash_soft: Duration,
    /// `updated_at::newest_updated_at_ms` over the payload: the separate pass the filter made
    /// before it was folded into the redaction's (shown for comparison, not in the sum).
    updated_at: Duration,
    /// SigV4 signing of the PUT, the hash given.
    sign: Duration,
}

impl NativeSteps {
    fn measure(filter_config: &[u8], payload: &[u8]) -> NativeSteps {
        use config_bridge::json::scan::{Progress, Scanner};
        let mut range = 0..0;
        let scan = median_of_7(|| {
            if let Progress::Done(s) = Scanner::new(Some("config")).step(filter_config, usize::MAX)
            {
                range = s.member("config").map(|m| m.value.clone()).unwrap_or(0..0);
            }
        });
        let cut = median_of_7_with(
            || filter_config.to_vec(),
            |mut text| {
                text.copy_within(range.clone(), 0);
                std::hint::black_box(text);
            },
        );
        let redact = median_of_7_with(
            || Rc::new(payload.to_vec()),
            |body| {
                let done =
                    config_bridge::redact::Rewriter::run(body, config_bridge::redact::Redaction);
                std::hint::black_box(done.map(|d| d.edited).ok());
            },
        );
        let hex = config_bridge_tests::native_sigv4::sha256_hex(payload);
        assert_eq!(
            soft_sha256::sha256(payload),
            config_bridge::document::sha256(payload),
            "the software SHA-256 agrees with sha2"
        );
        NativeSteps {
            scan,
            cut,
            redact,
            hash: median_of_7(|| {
                std::hint::black_box(config_bridge::document::sha256(payload));
            }),
            hash_soft: median_of_7(|| {
                std::hint::black_box(soft_sha256::sha256(payload));
            }),
            updated_at: median_of_7(|| {
                std::hint::black_box(config_bridge::updated_at::newest_updated_at_ms(payload));
            }),
            sign: median_of_7(|| {
                std::hint::black_box(sign_hashed(&hex, payload.len()));
            }),
        }
    }
}

/// Where the guest's time goes during the warm export, step by step of virtual time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// `on_configure`: the settings read, the large configuration kept for the ticks.
    Configure,
    /// Ticks validating the configuration (`json::scan`) and cutting its payload out, up to the
    /// tick that logs "configured" (it also starts the redaction).
    ScanCut,
    /// Ticks redacting, hashing and finding `updated_at` (`engine::prepare`), and the HEAD.
    Prepare,
    /// The tick that dispatches the PUT: the document's last hash slice, then the request built
    /// and signed (its copy out is the host's, below).
    BuildSign,
    /// `on_http_call_response`: the HEAD's and the PUT's answers.
    Answers,
    /// Ticks after the PUT went out (until 50 ms later).
    After,
}

const PHASES: [(Phase, &str); 6] = [
    (Phase::Configure, "on_configure"),
    (Phase::ScanCut, "scan + cut"),
    (Phase::Prepare, "redact + hash"),
    (Phase::BuildSign, "last slice + PUT"),
    (Phase::Answers, "answers"),
    (Phase::After, "ticks after"),
];

/// Attributes the guest time of each step (the callback-time deltas) to the phase under way.
struct PhaseClock {
    last: BTreeMap<String, CallbackTimes>,
    configured_lines: usize,
    puts: usize,
    /// In ticks: scanning until "configured", then preparing.
    ticks_in: Phase,
    guest: BTreeMap<Phase, Duration>,
    /// The longest callback of each phase: wall and CPU time, the host's copies apart.
    longest: BTreeMap<Phase, (Duration, Duration)>,
    copy: Duration,
}

impl PhaseClock {
    fn new(world: &World, puts: usize) -> PhaseClock {
        PhaseClock {
            last: world.callback_times(),
            configured_lines: world.logs_containing(CONFIGURED).len(),
            puts,
            ticks_in: Phase::ScanCut,
            guest: BTreeMap::new(),
            longest: BTreeMap::new(),
            copy: Duration::ZERO,
        }
    }

    fn step(&mut self, world: &World, puts: usize) {
        let now = world.callback_times();
        for (kind, t) in &now {
            let before = self.last.get(kind).cloned().unwrap_or_default();
            // CPU time (load does not inflate it), the host's copies apart.
            let guest = t.total_guest_cpu.saturating_sub(before.total_guest_cpu);
            let copy_cpu = |t: &CallbackTimes| t.total_cpu.saturating_sub(t.total_guest_cpu);
            self.copy += copy_cpu(t).saturating_sub(copy_cpu(&before));
            let phase = match kind.as_str() {
                "on_configure" => Phase::Configure,
                "on_http_call_response" => Phase::Answers,
                _ if puts > self.puts => Phase::BuildSign,
                _ => self.ticks_in,
            };
            *self.guest.entry(phase).or_default() += guest;
            if std::env::var_os("EXPORT_BENCH_TRACE").is_some() && guest > Duration::from_millis(3)
            {
                eprintln!(
                    "  {kind} ({phase:?}): guest CPU {:.1} ms",
                    guest.as_secs_f64() * 1e3
                );
            }
            // One worker, 10 ms steps, a 50 ms host tick: one callback of a kind per step.
            let wall = t.total_guest.saturating_sub(before.total_guest);
            let longest = self.longest.entry(phase).or_default();
            *longest = (longest.0.max(wall), longest.1.max(guest));
        }
        self.last = now;
        if puts > self.puts {
            self.ticks_in = Phase::After;
        }
        self.puts = puts;
        let configured = world.logs_containing(CONFIGURED).len();
        if configured > self.configured_lines && self.ticks_in == Phase::ScanCut {
            self.ticks_in = Phase::Prepare;
        }
        self.configured_lines = configured;
    }
}

/// What the shell logs when a configuration is applied.
const CONFIGURED: &str = "configured (root context";

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
    /// The filter's steps natively.
    steps: NativeSteps,
    /// Every callback kind during the warm export.
    kinds: BTreeMap<String, CallbackTimes>,
    /// The warm export's guest time by phase, and the host's copies.
    phases: BTreeMap<Phase, Duration>,
    phase_longest: BTreeMap<Phase, (Duration, Duration)>,
    phase_copy: Duration,
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
    world.measure_cpu_time(true);
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
    let steps = NativeSteps::measure(&cfg_b, &payload_b);
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
    world.reset_callback_times();
    let mut phases = PhaseClock::new(&world, clock.count());
    let warm = match &node {
        Ok(node) if cold.is_ok() => {
            let t0 = Instant::now();
            let results = world.reconfigure(*node, 0, cfg_b.clone());
            warm_configure = t0.elapsed();
            let put_seen = clock.clone();
            let arrived = world.advance_until(limit, Duration::from_millis(10), |w| {
                phases.step(w, put_seen.count());
                put_seen.count() >= 2
            });
            if results != vec![Some(true)] {
                Err(format!("reconfigure returned {results:?}"))
            } else if !arrived {
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
    phases.step(&world, clock.count());
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
        steps,
        kinds: times.clone(),
        phase_longest: phases.longest.clone(),
        phases: phases.guest,
        phase_copy: phases.copy,
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
    let wasm = config_bridge_tests::real_engine::module_path();
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
    print_kinds(&rows);
    print_cost(&rows);
}

/// The longest callback of each kind during the warm export (issue 25: none over 20 ms).
fn print_kinds(rows: &[Measured]) {
    println!();
    println!(
        "callbacks by kind during the warm export (wall and CPU time of the guest, the host's copies apart; the CPU of the longest copy and of the whole call):"
    );
    println!("{}", kinds::header("size", 5));
    for r in rows {
        for (kind, t) in &r.kinds {
            println!("{}", kinds::row(&format!("{}M", r.size_mb), 5, kind, t));
        }
    }
}

/// Guest CPU per export by phase against the filter's same steps natively, and the ratio to the
/// native baseline, also with a SHA-256 without CPU extensions.
fn print_cost(rows: &[Measured]) {
    println!();
    println!(
        "guest CPU time per warm export by phase (the host's copies apart), and the same steps natively (filter's own code):"
    );
    for r in rows {
        let s = &r.steps;
        let native_of = |p: Phase| match p {
            Phase::ScanCut => format!("scan {} + cut {}", fmt_ms(s.scan), fmt_ms(s.cut)),
            Phase::Prepare => format!(
                "redact with updated_at {} + hash {} (soft {}) [a separate updated_at pass: {}]",
                fmt_ms(s.redact),
                fmt_ms(s.hash),
                fmt_ms(s.hash_soft),
                fmt_ms(s.updated_at)
            ),
            Phase::BuildSign => format!("sign {} (and a hash slice)", fmt_ms(s.sign)),
            _ => String::new(),
        };
        for (p, name) in PHASES {
            let t = r.phases.get(&p).copied().unwrap_or_default();
            let longest = r.phase_longest.get(&p).copied().unwrap_or_default();
            println!(
                "{:>4}M {:<18} {:>11} (longest wall {:>8}, CPU {:>8})   {}",
                r.size_mb,
                name,
                fmt_ms(t),
                fmt_ms(longest.0),
                fmt_ms(longest.1),
                native_of(p)
            );
        }
        println!(
            "{:>4}M {:<18} {:>11}",
            r.size_mb,
            "host copies",
            fmt_ms(r.phase_copy)
        );
        let guest: Duration = r.phases.values().sum::<Duration>() + r.phase_copy;
        let all_steps = s.scan + s.cut + s.redact + s.hash + s.sign;
        let baseline = s.scan + r.native;
        let soft = s.scan + s.hash_soft + s.sign;
        let ratio = |d: Duration| guest.as_secs_f64() / d.as_secs_f64().max(1e-9);
        println!(
            "{:>4}M guest {} (incl. copies) | native baseline (scan + SHA-256 + SigV4) {} = {:.1}x | \
             baseline with software SHA-256 {} = {:.1}x | all the filter's steps natively {} = {:.1}x",
            r.size_mb,
            fmt_ms(guest),
            fmt_ms(baseline),
            ratio(baseline),
            fmt_ms(soft),
            ratio(soft),
            fmt_ms(all_steps),
            ratio(all_steps)
        );
        println!(
            "{:>4}M SHA-256 natively: {:.0} MB/s with the CPU's SHA extensions, {:.0} MB/s without",
            r.size_mb,
            r.payload_bytes as f64 / 1e6 / s.hash.as_secs_f64().max(1e-9),
            r.payload_bytes as f64 / 1e6 / s.hash_soft.as_secs_f64().max(1e-9)
        );
    }
}
