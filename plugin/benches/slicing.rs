//! How long the work `on_configure` does on a large filter configuration takes, in one piece and
//! sliced: for generated Kong-like declarative configurations of 1, 10 and 50 MB embedded in a
//! filter configuration (`{"...settings...", "config": {...}}`):
//!
//! * serde_json validation of the whole filter configuration (`from_slice::<IgnoredAny>`),
//! * `json::scan::Scanner` over the same text in one step (validation, top-level members and the
//!   `config` member's members),
//! * SHA-256 of the `config` payload in one piece,
//! * the longest single step of the scanner and of `digest::Digester` at budgets of 256 KiB,
//!   1 MiB and 4 MiB (what one host callback would cost), with the number of steps,
//! * the export's redaction (`redact::Rewriter`, the engine's slice) of the payload with a
//!   config-bridge chain at its end (so the whole document is scanned, then copied),
//! * the import's check of a downloaded object (`document_check::DocumentCheck`: JSON syntax,
//!   `_format_version`, SHA-256 against `config-sha256`) whole and in its slices.
//!
//! Native numbers only (release profile); the filter runs them in wasm, slower by a factor the
//! real-engine bench measures. Run: `cargo bench -p config-bridge --bench slicing`
//! (`SLICING_MB=50` for one size).

// Test code may panic; the crate's no-panic lints (plugin/Cargo.toml) are for the filter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unreachable
)]
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use config_bridge::digest::Digester;
use config_bridge::document_check::{CheckStep, DocumentCheck};
use config_bridge::json::scan::{Progress, Scanner};
use config_bridge::redact::{Redaction, Rewriter, Step};
use serde::de::IgnoredAny;
use sha2::{Digest, Sha256};

const RUNS: usize = 5;
const BUDGETS: [usize; 3] = [256 << 10, 1 << 20, 4 << 20];

/// SplitMix64.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }
}

/// A Kong-like declarative configuration (services, routes, plugins, consumers, upstreams with
/// targets), compact JSON as the Admin API returns it, of about `size` bytes; wrapped in a filter
/// configuration with a few settings before and after `config`.
fn filter_config(size: usize) -> Vec<u8> {
    let mut rng = Prng(size as u64);
    let mut doc = String::with_capacity(size + 4096);
    doc.push_str(r#"{"_format_version":"3.0","_transform":false,"services":["#);
    let mut routes = String::new();
    let mut plugins = String::new();
    let mut i = 0u64;
    while doc.len() + routes.len() + plugins.len() < size * 6 / 10 {
        let sid = rng.uuid();
        if i > 0 {
            doc.push(',');
        }
        doc.push_str(&format!(
            r#"{{"id":"{sid}","name":"service-{i}","protocol":"http","host":"backend-{h}.internal.example.com","port":{port},"path":"/api/v{v}","retries":5,"connect_timeout":60000,"write_timeout":60000,"read_timeout":60000,"enabled":true,"tags":["team-{t}","env:prod","tier\u002d{v}"],"created_at":{c},"updated_at":{c}}}"#,
            h = rng.below(500),
            port = 8000 + rng.below(1000),
            v = rng.below(4),
            t = rng.below(40),
            c = 1_700_000_000 + rng.below(10_000_000),
        ));
        for r in 0..1 + rng.below(3) {
            if !routes.is_empty() {
                routes.push(',');
            }
            routes.push_str(&format!(
                r#"{{"id":"{}","name":"route-{i}-{r}","paths":["/svc/{i}/r{r}","~/svc/{i}/items/(?<id>\\d+)$"],"methods":["GET","POST"],"hosts":["api.example.com"],"protocols":["http","https"],"strip_path":true,"preserve_host":false,"regex_priority":0,"https_redirect_status_code":426,"path_handling":"v0","request_buffering":true,"response_buffering":true,"service":{{"id":"{sid}"}},"tags":["r{r}"]}}"#,
                rng.uuid()
            ));
        }
        if rng.below(4) == 0 {
            if !plugins.is_empty() {
                plugins.push(',');
            }
            plugins.push_str(&format!(
                r#"{{"id":"{}","name":"rate-limiting","enabled":true,"protocols":["grpc","grpcs","http","https"],"service":{{"id":"{sid}"}},"config":{{"minute":{},"hour":null,"policy":"local","fault_tolerant":true,"hide_client_headers":false,"redis":{{"host":null,"port":6379,"timeout":2000,"database":0}},"error_message":"API rate limit exceeded \u2014 slow down"}}}}"#,
                rng.uuid(),
                10 + rng.below(1000)
            ));
        }
        i += 1;
    }
    doc.push_str(r#"],"routes":["#);
    doc.push_str(&routes);
    doc.push_str(r#"],"plugins":["#);
    doc.push_str(&plugins);
    doc.push_str(r#"],"consumers":["#);
    let mut first = true;
    while doc.len() < size * 9 / 10 {
        if !first {
            doc.push(',');
        }
        first = false;
        doc.push_str(&format!(
            r#"{{"id":"{}","username":"user-{}","custom_id":"c{}","tags":["imported"],"created_at":{}}}"#,
            rng.uuid(),
            rng.next() % 1_000_000,
            rng.next() % 1_000_000,
            1_700_000_000 + rng.below(10_000_000)
        ));
    }
    doc.push_str(r#"],"upstreams":["#);
    first = true;
    while doc.len() < size {
        if !first {
            doc.push(',');
        }
        first = false;
        doc.push_str(&format!(
            r#"{{"id":"{}","name":"upstream-{}.example.com","algorithm":"round-robin","slots":10000,"hash_on":"none","healthchecks":{{"threshold":0,"active":{{"type":"http","http_path":"/","timeout":1,"concurrency":10,"healthy":{{"interval":0,"successes":0,"http_statuses":[200,302]}}}}}},"targets":[{{"target":"10.0.{}.{}:8000","weight":100}}]}}"#,
            rng.uuid(),
            rng.below(100_000),
            rng.below(256),
            rng.below(256)
        ));
    }
    doc.push_str("]}");
    format!(
        r#"{{"cluster_fallback_config_export":true,"cluster_fallback_config_storage":"s3://bucket/kong","aws_region":"eu-west-1","config":{doc},"tick_period_ms":1000,"strict_config":false}}"#
    )
    .into_bytes()
}

fn best(mut f: impl FnMut() -> Duration) -> Duration {
    (0..RUNS).map(|_| f()).min().unwrap_or_default()
}

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// Scans `text` in steps of `budget` bytes: (longest step, steps).
fn scan_sliced(text: &[u8], budget: usize) -> (Duration, usize) {
    let mut s = Scanner::new(Some("config"));
    let mut longest = Duration::ZERO;
    let mut steps = 0;
    loop {
        let t = Instant::now();
        let p = s.step(text, budget);
        longest = longest.max(t.elapsed());
        steps += 1;
        match p {
            Progress::More => {}
            Progress::Done(summary) => {
                black_box(summary);
                return (longest, steps);
            }
            Progress::Invalid(e) => panic!("generated configuration refused: {e}"),
        }
    }
}

fn digest_sliced(body: &Rc<Vec<u8>>, budget: usize) -> (Duration, usize) {
    let mut d = Digester::new(body.clone());
    let mut longest = Duration::ZERO;
    let mut steps = 0;
    loop {
        let t = Instant::now();
        let r = d.step(budget);
        longest = longest.max(t.elapsed());
        steps += 1;
        if let Some(h) = r {
            black_box(h);
            return (longest, steps);
        }
    }
}

/// The longest step of redacting `body` at `budget`, the steps, and whether it edited.
fn redact_sliced(body: &Rc<Vec<u8>>, budget: usize) -> (Duration, usize, usize) {
    let mut r = Rewriter::new(body.clone(), Redaction);
    let mut longest = Duration::ZERO;
    let mut steps = 0;
    loop {
        let t = Instant::now();
        let s = r.step(budget);
        longest = longest.max(t.elapsed());
        steps += 1;
        match s {
            Step::Working => {}
            Step::Done(d) => return (longest, steps, d.edited),
            Step::Failed(why) => panic!("{why}"),
        }
    }
}

/// The import's sliced check of `body`: (longest step, steps).
fn check_sliced(body: &[u8], sha_hex: &str) -> (Duration, usize) {
    let mut c = DocumentCheck::new(Some(sha_hex.to_string()));
    let mut longest = Duration::ZERO;
    let mut steps = 0;
    loop {
        let t = Instant::now();
        let s = c.step(body);
        longest = longest.max(t.elapsed());
        steps += 1;
        match s {
            CheckStep::Working => {}
            CheckStep::Valid => return (longest, steps),
            CheckStep::Invalid(why) => panic!("{why}"),
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn rate(bytes: usize, d: Duration) -> String {
    format!("{:.0} MB/s", bytes as f64 / 1e6 / d.as_secs_f64())
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read.
    println!("native, release profile, best of {RUNS} runs");
    // SLICING_MB=10,50 picks sizes (default 1, 10 and 50 MB).
    let sizes: Vec<usize> = std::env::var("SLICING_MB")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 10, 50]);
    for mb in sizes {
        let text = filter_config(mb * 1_000_000);
        let summary = match Scanner::new(Some("config")).step(&text, usize::MAX) {
            Progress::Done(s) => s,
            other => panic!("generated configuration not scanned: {other:?}"),
        };
        let range = summary
            .member("config")
            .map(|m| m.value.clone())
            .unwrap_or_default();
        assert!(
            summary.nested_member("_format_version").is_some(),
            "no _format_version"
        );
        assert!(serde_json::from_slice::<IgnoredAny>(&text).is_ok());
        let body = Rc::new(text[range].to_vec());

        let serde = best(|| {
            time(|| {
                black_box(serde_json::from_slice::<IgnoredAny>(black_box(&text)).is_ok());
            })
        });
        let scanner = best(|| {
            time(|| {
                black_box(Scanner::new(Some("config")).step(black_box(&text), usize::MAX));
            })
        });
        let sha = best(|| {
            time(|| {
                black_box(Sha256::digest(black_box(body.as_slice())));
            })
        });
        println!(
            "\n{} bytes filter configuration ({} bytes payload, {} top-level members, {} in config)",
            text.len(),
            body.len(),
            summary.members.len(),
            summary.nested.as_ref().map_or(0, Vec::len)
        );
        println!(
            "  serde_json IgnoredAny  {:>10}  {:>10}",
            ms(serde),
            rate(text.len(), serde)
        );
        println!(
            "  json_scan one step     {:>10}  {:>10}",
            ms(scanner),
            rate(text.len(), scanner)
        );
        println!(
            "  SHA-256 one piece      {:>10}  {:>10}",
            ms(sha),
            rate(body.len(), sha)
        );
        let mut with_chain = body.to_vec();
        with_chain.pop();
        with_chain.extend_from_slice(
            br#","filter_chains":[{"filters":[{"name":"config_bridge","config":{"aws_secret_access_key":"x","aws_region":"r"}}]}]}"#,
        );
        let with_chain = Rc::new(with_chain);
        let mut redact_steps = (0, 0);
        let redact_longest = best(|| {
            let (l, n, edited) = redact_sliced(&with_chain, config_bridge::redact::SLICE_BYTES);
            redact_steps = (n, edited);
            l
        });
        println!(
            "  redaction, {} KiB slices: longest step {:>9} ({} steps, {} chain edited)",
            config_bridge::redact::SLICE_BYTES / 1024,
            ms(redact_longest),
            redact_steps.0,
            redact_steps.1
        );
        // The import's check of a downloaded object: whole (as before issue 25) and sliced.
        let sha_hex = config_bridge::document::sha256_hex(&body);
        let whole_check = best(|| {
            time(|| {
                black_box(config_bridge::document::validate_declarative_json(&body).is_ok());
                black_box(config_bridge::document::sha256_hex(&body) == sha_hex);
            })
        });
        let mut check_steps = 0;
        let check_longest = best(|| {
            let (l, n) = check_sliced(&body, &sha_hex);
            check_steps = n;
            l
        });
        println!(
            "  import check (JSON, _format_version, SHA-256): whole {:>9}; {} KiB slices: longest step {:>9} ({} steps)",
            ms(whole_check),
            config_bridge::document_check::CHECK_SLICE_BYTES / 1024,
            ms(check_longest),
            check_steps
        );
        for budget in BUDGETS {
            let mut steps = (0, 0);
            let scan_longest = best(|| {
                let (l, n) = scan_sliced(&text, budget);
                steps.0 = n;
                l
            });
            let digest_longest = best(|| {
                let (l, n) = digest_sliced(&body, budget);
                steps.1 = n;
                l
            });
            println!(
                "  budget {:>4} KiB: longest scan step {:>9} ({} steps), longest digest step {:>9} ({} steps)",
                budget >> 10,
                ms(scan_longest),
                steps.0,
                ms(digest_longest),
                steps.1
            );
        }
    }
}
