//! Robustness: nothing a host or a server returns, and no filter configuration, may panic (a panic
//! is a wasm trap with `panic = "abort"`). Deterministic pseudo-random cases from a hand-written
//! PRNG; every case runs under `catch_unwind` so a failure names its exact input.

// Test code may panic; the crate's no-panic lints (plugin/Cargo.toml) are for the filter.
// `cfg(test)` (always set here) is what brings the whole file, helpers included, under
// clippy.toml's `allow-*-in-tests`: clippy does not see an integration test as test code without it.
#![cfg(test)]
use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use config_bridge::debounce::Schedule;
use config_bridge::document::{sha256, sha256_hex, validate_declarative_json};
use config_bridge::engine::source::{Source, UrlPoller};
use config_bridge::engine::{Effect, Engine, Event, Owner};
use config_bridge::http::HttpResponse;
use config_bridge::http_url::{percent_encode, HttpUrl};
use config_bridge::node_lock::{self, NodeRecord, SharedStore};
use config_bridge::settings::storage::{validate_gateway_version, StorageUrl};
use config_bridge::settings::{Config, SETTINGS};
use config_bridge::store::s3::{error_from, S3Store};
use config_bridge::store::{ObjectStore, Precondition};
use serde_json::{json, Value};

const SECRET: &str = "wJalrXUtnFEMIK7MDENGbPxRfiCYzzFUZZSECRET";
const TOKEN: &str = "FwoGZXIvYXdzEFUZZTOKENdGhpcyBpcyBhIHRva2Vu";

/// The last millisecond aws-sigv4 can format (9999-12-31T23:59:59.999Z); see
/// `signing_after_year_9999_does_not_panic`. The fuzzers stay at or below it so that they keep
/// covering everything else.
const MAX_SIGNABLE_MS: u64 = 253_402_300_799_999;

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
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let n = self.below(max_len + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Runs `f`; a panic fails the test with the input that caused it.
fn guarded<T>(what: impl FnOnce() -> String, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("PANIC ({msg}) on input: {}", what())
        }
    }
}

fn show(bytes: &[u8]) -> String {
    if bytes.len() > 2000 {
        format!(
            "{} bytes starting {:?}",
            bytes.len(),
            String::from_utf8_lossy(&bytes[..200])
        )
    } else {
        format!("{:?}", String::from_utf8_lossy(bytes))
    }
}

// ---------------------------------------------------------------------------------------------
// Config::parse
// ---------------------------------------------------------------------------------------------

type Env = HashMap<String, String>;

fn env_with_credentials() -> Env {
    [
        ("AWS_ACCESS_KEY_ID", "AKIDENV"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_SESSION_TOKEN", TOKEN),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A problem with an error line: more than one line, or a secret in it.
fn error_line_problem(line: &str) -> Option<&'static str> {
    if line.chars().any(|c| c.is_control()) {
        return Some("not one line (control character)");
    }
    if line.contains(SECRET) || line.contains(TOKEN) {
        return Some("leaks a secret");
    }
    None
}

#[derive(Default)]
struct ConfigRun {
    /// Also check that `Debug` of an accepted config hides the secrets (off when a test puts a
    /// secret value into a setting that is not secret).
    skip_debug_check: bool,
    cases: usize,
    oks: usize,
    problems: Vec<(String, String, &'static str)>,
}

impl ConfigRun {
    /// Parses (alternating `parse` and `parse_owned`); a panic fails at once, error-line
    /// problems are collected.
    fn case(&mut self, bytes: &[u8], env: &Env) {
        let lookup = |k: &str| env.get(k).cloned();
        let owned = self.cases % 2 == 1;
        let r = guarded(
            || format!("Config::parse(owned={owned}) {}", show(bytes)),
            || {
                if owned {
                    Config::parse_owned(bytes.to_vec(), &lookup)
                } else {
                    Config::parse(bytes, &lookup)
                }
            },
        );
        self.cases += 1;
        match r {
            Ok(cfg) => {
                self.oks += 1;
                let dbg = format!("{cfg:?}");
                if !self.skip_debug_check && (dbg.contains(SECRET) || dbg.contains(TOKEN)) {
                    self.problems
                        .push((show(bytes), "Debug of Config".into(), "leaks a secret"));
                }
            }
            Err(e) => {
                let line = e.to_string();
                if let Some(p) = error_line_problem(&line) {
                    self.problems.push((show(bytes), line, p));
                }
            }
        }
    }

    fn report(&self, name: &str) {
        eprintln!(
            "{name}: {} cases, {} accepted, {} error-line problems",
            self.cases,
            self.oks,
            self.problems.len()
        );
        for (input, line, p) in self.problems.iter().take(5) {
            eprintln!("  {p}: {line:?}\n    input: {input}");
        }
    }
}

/// Every setting set (filter source), with the secrets inline.
fn full_filter_config() -> Value {
    json!({
        "cluster_fallback_config_export": "on",
        "cluster_fallback_config_import": false,
        "cluster_fallback_config_storage": "s3://my-bucket/kong/",
        "cluster_fallback_config_export_delay": 1.5,
        "cluster_fallback_export_s3_config": {
            "StorageClass": "STANDARD_IA",
            "Metadata": {"env": "prod"},
            "Tagging": {"team": "gw"},
            "BucketKeyEnabled": true
        },
        "config_source": "filter",
        "config": {"_format_version": "3.0", "services": [{"name": "a,b}\"]"}]},
        "gateway_version": "3.9.1",
        "node_id": "node-1",
        "aws_access_key_id": "AKIDFUZZ",
        "aws_secret_access_key": SECRET,
        "aws_session_token": TOKEN,
        "aws_region": "eu-west-1",
        "storage_endpoint": "http://127.0.0.1:9000/",
        "storage_upstream": "minio:9000",
        "s3_force_path_style": true,
        "s3_conditional_writes": true,
        "tick_period_ms": 1000,
        "call_timeout_ms": 5000,
        "lease_ttl_ms": 15000,
        "retry_base_ms": 100,
        "retry_max_ms": 1000
    })
}

fn full_url_config() -> Value {
    let mut v = full_filter_config();
    let m = v.as_object_mut().unwrap();
    m.remove("config");
    m.insert("config_source".into(), json!("url"));
    m.insert(
        "config_url".into(),
        json!("http://127.0.0.1:8001/config?x=1"),
    );
    m.insert("config_url_upstream".into(), json!("127.0.0.1:8001"));
    m.insert("config_poll_interval".into(), json!(2.5));
    v
}

/// The shipped examples as text, plus the same with the secrets inline.
fn config_seeds() -> Vec<Vec<u8>> {
    let examples = [
        include_str!("../examples/s3-own-config.json"),
        include_str!("../examples/minio-url-source.json"),
        include_str!("../examples/envoy-cluster-upstream.json"),
    ];
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for text in examples {
        seeds.push(text.as_bytes().to_vec());
        let mut v: Value = serde_json::from_str(text).unwrap();
        v["aws_access_key_id"] = json!("AKIDFUZZ");
        v["aws_secret_access_key"] = json!(SECRET);
        v["aws_session_token"] = json!(TOKEN);
        seeds.push(serde_json::to_vec_pretty(&v).unwrap());
    }
    seeds.push(full_filter_config().to_string().into_bytes());
    seeds.push(full_url_config().to_string().into_bytes());
    seeds
}

const INSERTS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"[",
    b",",
    b"}",
    b"]",
    b":",
    b"0",
    b"7",
    b"1e400",
    b"-1e400",
    b"-0",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"1.0e-400",
    b"null",
    b"true",
    b"\\u0000",
    b"\\ud800",
    b"\\n",
    b"\n",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    "\u{e9}\u{2028}".as_bytes(),
    b"\"\":\"\",",
];

fn mutate(rng: &mut Prng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(3) {
        let pos = rng.below(v.len() + 1);
        match rng.below(5) {
            0 if !v.is_empty() => {
                let p = pos.min(v.len() - 1);
                v[p] = rng.next() as u8;
            }
            1 if !v.is_empty() => {
                let p = pos.min(v.len() - 1);
                v[p] ^= 1 << rng.below(8);
            }
            2 => {
                let end = (pos + 1 + rng.below(8)).min(v.len());
                v.drain(pos..end.max(pos));
            }
            3 if !v.is_empty() => {
                // Duplicate a slice elsewhere.
                let a = rng.below(v.len());
                let b = (a + 1 + rng.below(16)).min(v.len());
                let piece = v[a..b].to_vec();
                v.splice(pos..pos, piece);
            }
            _ => {
                let ins = rng.pick(INSERTS).to_vec();
                v.splice(pos..pos, ins);
            }
        }
    }
    v
}

/// The JSON-string-wrapped form (Kong 3.4), for valid UTF-8 inputs.
fn wrapped(bytes: &[u8]) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(bytes).ok()?;
    Some(serde_json::to_vec(&Value::String(s.to_string())).unwrap())
}

fn run_config_mutations() -> ConfigRun {
    let mut rng = Prng(0xC0F1_6000);
    let mut run = ConfigRun::default();
    let envs = [Env::new(), env_with_credentials()];
    for (si, seed) in config_seeds().iter().enumerate() {
        let env = &envs[si % 2];
        // Truncation at every position (raw and wrapped).
        for cut in 0..=seed.len() {
            run.case(&seed[..cut], env);
            if cut % 7 == 0 {
                if let Some(w) = wrapped(&seed[..cut]) {
                    run.case(&w, env);
                }
            }
        }
        for _ in 0..700 {
            let m = mutate(&mut rng, seed);
            run.case(&m, env);
            if rng.chance(15) {
                if let Some(w) = wrapped(&m) {
                    run.case(&w, env);
                }
            }
        }
    }
    run
}

#[test]
fn config_parse_never_panics_on_mutated_examples() {
    let run = run_config_mutations();
    run.report("mutations");
    assert!(run.cases > 5000, "{} cases", run.cases);
    assert!(run.oks > 0, "some mutations must still be accepted");
}

/// The error line must stay one line and secret-free on mutated inputs, too.
#[test]
fn config_errors_on_mutated_examples_are_one_line_and_secret_free() {
    let run = run_config_mutations();
    run.report("mutations (error lines)");
    assert!(
        run.problems.is_empty(),
        "{} error lines with problems; first: {:?}",
        run.problems.len(),
        run.problems.first()
    );
}

fn json_values_of_every_type() -> Vec<Value> {
    let mut deep = json!(1);
    for _ in 0..60 {
        deep = json!([deep]);
    }
    vec![
        Value::Null,
        json!(true),
        json!(false),
        json!(0),
        json!(-1),
        json!(-0.0),
        json!(1.5),
        json!(0.0001),
        json!(1e308),
        json!(-1e308),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(""),
        json!("   "),
        json!("on"),
        json!("off"),
        json!("0"),
        json!("-1"),
        json!("1e400"),
        json!("NaN"),
        json!("inf"),
        json!("18446744073709551616"),
        json!("3.9.1"),
        json!("s3://b-1/p"),
        json!("gs://b-1/p"),
        json!("http://h:0/"),
        json!("http://[::1"),
        json!("http://["),
        json!("https://h:65535?x"),
        json!("\u{0}\u{7f}\u{e9}\u{10FFFF}"),
        json!("{\"_format_version\":\"3.0\"}"),
        json!("{\"StorageClass\":\"GLACIER\"}"),
        json!("[1]"),
        json!("{"),
        json!(SECRET),
        json!("x".repeat(100_000)),
        json!([]),
        json!([1, "a", null]),
        json!({}),
        json!({"a": null}),
        json!({"_format_version": ""}),
        json!({"_format_version": "3.0"}),
        json!({"Metadata": {"k": SECRET}, "SSECustomerKey": SECRET}),
        json!({"Metadata": {"uploader": "x"}}),
        json!({"Tagging": {"k": 1}}),
        json!({"ACL": SECRET}),
        deep,
    ]
}

#[test]
fn config_every_setting_with_every_json_type() {
    let mut run = ConfigRun::default();
    let values = json_values_of_every_type();
    for base in [full_filter_config(), full_url_config()] {
        for key in SETTINGS {
            for (i, value) in values.iter().enumerate() {
                let mut v = base.clone();
                v[*key] = value.clone();
                let text = v.to_string().into_bytes();
                run.skip_debug_check = value.to_string().contains(SECRET);
                run.case(&text, &Env::new());
                if i % 3 == 0 {
                    run.case(&wrapped(&text).unwrap(), &Env::new());
                }
                // Removed from the filter configuration, given through the environment instead.
                if let Value::String(s) = value {
                    let mut v = base.clone();
                    v.as_object_mut().unwrap().remove(*key);
                    let mut env = env_with_credentials();
                    for name in [
                        "KONG_CLUSTER_FALLBACK_CONFIG_EXPORT",
                        "KONG_CLUSTER_FALLBACK_CONFIG_IMPORT",
                        "KONG_CLUSTER_FALLBACK_CONFIG_STORAGE",
                        "KONG_CLUSTER_FALLBACK_CONFIG_EXPORT_DELAY",
                        "KONG_CLUSTER_FALLBACK_EXPORT_S3_CONFIG",
                        "CONFIG_BRIDGE_GATEWAY_VERSION",
                        "CONFIG_BRIDGE_NODE_ID",
                        "HOSTNAME",
                        "AWS_REGION",
                        "AWS_CONFIG_STORAGE_ENDPOINT",
                    ] {
                        env.insert(name.to_string(), s.clone());
                    }
                    run.case(&v.to_string().into_bytes(), &env);
                }
            }
        }
    }
    run.report("every setting × every type");
    assert!(run.cases > 2000);
    assert!(
        run.problems.is_empty(),
        "{} error lines with problems; first: {:?}",
        run.problems.len(),
        run.problems.first()
    );
}

#[test]
fn config_deep_nesting_is_an_error_not_a_crash() {
    let n = 10_000;
    let arrays = format!("{}{}", "[".repeat(n), "]".repeat(n));
    let objects = format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
    let unclosed = "[".repeat(n);
    let mut inputs: Vec<Vec<u8>> = vec![
        arrays.clone().into_bytes(),
        objects.clone().into_bytes(),
        unclosed.clone().into_bytes(),
    ];
    for payload in [&arrays, &objects, &unclosed] {
        for key in ["config", "cluster_fallback_export_s3_config", "node_id"] {
            let mut base = full_filter_config();
            base.as_object_mut().unwrap().remove(key);
            // Raw payload as the setting's value, and as a JSON string holding it.
            let raw = base
                .to_string()
                .replacen('{', &format!("{{\"{key}\":{payload},"), 1);
            inputs.push(raw.into_bytes());
            let mut v = full_filter_config();
            v[key] = Value::String(format!("{{\"_format_version\":\"3.0\",\"x\":{payload}}}"));
            inputs.push(v.to_string().into_bytes());
            v[key] = Value::String(payload.clone());
            inputs.push(v.to_string().into_bytes());
        }
        let wrapped_doc = wrapped(payload.as_bytes()).unwrap();
        inputs.push(wrapped_doc.clone());
        inputs.push(wrapped(&wrapped_doc).unwrap());
    }
    let mut run = ConfigRun::default();
    for input in &inputs {
        run.case(input, &env_with_credentials());
    }
    // A deep document inside a valid `config` is opaque and may be accepted; the deep values
    // themselves (top level, settings, wrapped) are errors.
    assert!(run.oks <= 2, "{} accepted", run.oks);
    assert!(run.problems.is_empty(), "{:?}", run.problems.first());
    for input in &inputs[..3] {
        let r = guarded(|| show(input), || Config::parse(input, &|_| None));
        assert!(r.is_err());
    }
    for payload in [&arrays, &objects, &unclosed] {
        let r = guarded(
            || "validate_declarative_json(deep)".into(),
            || validate_declarative_json(payload.as_bytes()),
        );
        assert!(r.is_err());
    }
}

/// The shipped examples stay valid (so the mutations start from accepted inputs).
#[test]
fn config_seeds_are_valid() {
    let env = env_with_credentials();
    for seed in config_seeds() {
        let r = Config::parse(&seed, &|k| env.get(k).cloned());
        assert!(r.is_ok(), "{}: {:?}", show(&seed), r.err());
    }
}

// ---------------------------------------------------------------------------------------------
// URL and storage parsers, small validators
// ---------------------------------------------------------------------------------------------

const URL_PIECES: &[&str] = &[
    "http",
    "https",
    "HTTP",
    "s3",
    "gs",
    "://",
    ":",
    "/",
    "//",
    "?",
    "#",
    "@",
    "[",
    "]",
    "::1",
    "%",
    "%zz",
    ".",
    "..",
    "-",
    "_",
    "a",
    "bucket",
    "my-bucket",
    "h",
    "127.0.0.1",
    "0",
    "80",
    "443",
    "65535",
    "65536",
    "99999999999999999999",
    "-1",
    " ",
    "\t",
    "\n",
    "\u{0}",
    "\u{7f}",
    "\u{e9}",
    "\u{20ac}",
    "\u{1F600}",
    "\u{2028}",
    "x",
    "config.json",
    "\\",
];

fn random_url(rng: &mut Prng) -> String {
    let mut s = String::new();
    for _ in 0..rng.below(12) {
        let piece: &str = rng.pick::<&str>(URL_PIECES);
        s.push_str(piece);
    }
    if rng.chance(5) {
        s.push_str(&"a".repeat(rng.below(100_000)));
    }
    s
}

#[test]
fn url_storage_and_version_parsers_never_panic() {
    let mut rng = Prng(0x0123_4567);
    let mut accepted = (0, 0);
    for case in 0..6000 {
        let s = random_url(&mut rng);
        let s = match case % 3 {
            0 => format!("http://{s}"),
            1 => format!("s3://{s}"),
            _ => s,
        };
        guarded(
            || format!("HttpUrl::parse({s:?})"),
            || {
                if let Ok(u) = HttpUrl::parse(&s) {
                    accepted.0 += 1;
                    let _ = (
                        u.authority(),
                        u.upstream(),
                        u.path(),
                        u.to_string(),
                        u.port(),
                    );
                    assert!(u.path_and_query.starts_with('/'));
                }
            },
        );
        guarded(
            || format!("StorageUrl::parse({s:?})"),
            || {
                if let Ok(u) = StorageUrl::parse(&s) {
                    accepted.1 += 1;
                    let _ = (u.config_key("3.9"), u.election_prefix("3.9"));
                    assert!(!u.prefix.starts_with('/') && !u.prefix.ends_with('/'));
                }
            },
        );
        guarded(
            || format!("validate_gateway_version / percent_encode({s:?})"),
            || {
                let _ = validate_gateway_version(&s);
                let e = percent_encode(&s, case % 2 == 0);
                assert!(e.is_ascii());
            },
        );
    }
    assert!(accepted.0 > 50 && accepted.1 > 50, "{accepted:?}");
}

// ---------------------------------------------------------------------------------------------
// Server answers: S3 errors, HEAD/PUT answers, URL source answers
// ---------------------------------------------------------------------------------------------

const XML_PIECES: &[&str] = &[
    "<?xml version=\"1.0\"?>",
    "<Error>",
    "</Error>",
    "<Code>",
    "</Code>",
    "<Message>",
    "</Message>",
    "<Code/>",
    "<Code",
    "</Code",
    "&amp;",
    "&lt;",
    "&",
    "&amp;lt;",
    "SignatureDoesNotMatch",
    "text",
    "\r\n",
    "\u{0}",
    "\u{e9}",
    "\u{1F600}",
    "\u{2028}",
    "\u{85}",
];

fn random_xml(rng: &mut Prng) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..rng.below(14) {
        v.extend_from_slice(rng.pick(XML_PIECES).as_bytes());
        if rng.chance(10) {
            v.push(0x80 | rng.next() as u8); // stray non-UTF-8 byte
        }
        if rng.chance(3) {
            v.extend(std::iter::repeat_n(b'y', rng.below(5000)));
        }
    }
    v
}

const HEADER_NAMES: &[&str] = &[
    "etag",
    "ETag",
    "x-amz-meta-uploader",
    "X-Amz-Meta-Config-Applied-At",
    "x-amz-meta-config-applied-at",
    "x-amz-meta-config-sha256",
    "content-type",
    "",
    "x",
];

fn random_header_value(rng: &mut Prng, doc_hash: &str) -> String {
    match rng.below(12) {
        0 => String::new(),
        1 => "\"e\r\n1\"".into(),
        2 => "\u{e9}\u{1F600}".into(),
        3 => "x".repeat(rng.below(20_000)),
        4 => rng.next().to_string(),
        5 => format!(" {} ", rng.next() % 10_000),
        6 => rng
            .pick(&["-1", "18446744073709551616", "1e3", "+5", "0"])
            .to_string(),
        7 => doc_hash.to_string(),
        8 => String::from_utf8_lossy(&rng.bytes(40)).into_owned(),
        _ => format!("\"etag-{}\"", rng.below(5)),
    }
}

fn random_response(rng: &mut Prng, doc_hash: &str, docs: &[Vec<u8>]) -> HttpResponse {
    let status = if rng.chance(60) {
        *rng.pick(&[
            200u16, 204, 304, 404, 409, 412, 429, 500, 503, 0, 999, 100, 301, 403,
        ])
    } else {
        rng.below(1000) as u16
    };
    let headers = (0..rng.below(5))
        .map(|_| {
            (
                rng.pick(HEADER_NAMES).to_string(),
                random_header_value(rng, doc_hash),
            )
        })
        .collect();
    let body = match rng.below(6) {
        0 => Vec::new(),
        1 => random_xml(rng),
        2 => rng.bytes(300),
        3 => {
            let d = rng.pick(docs).clone();
            mutate(rng, &d)
        }
        _ => rng.pick(docs).clone(),
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn docs() -> Vec<Vec<u8>> {
    vec![
        br#"{"_format_version":"3.0"}"#.to_vec(),
        br#"{"_format_version":"3.0","services":[{"name":"a"}]}"#.to_vec(),
        br#"{"_format_version":"3.0","services":[{"name":"b"}]}"#.to_vec(),
        br#"{"_format_version":"","x":1}"#.to_vec(),
        br#"  {"_format_version":"1.1", "_format_version": 3}"#.to_vec(),
        b"".to_vec(),
        b"\xff\xfe{".to_vec(),
        b"not json".to_vec(),
        format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
    ]
}

fn parsed(v: &Value) -> Config {
    let env = env_with_credentials();
    Config::parse(v.to_string().as_bytes(), &|k| env.get(k).cloned()).unwrap()
}

fn store_of(cfg: &Config) -> S3Store {
    S3Store::new(
        cfg.s3().expect("an S3 configuration").clone(),
        cfg.storage.location.bucket.clone(),
        cfg.storage.upstream.clone(),
    )
}

#[test]
fn s3_answer_parsers_never_panic() {
    let mut rng = Prng(0x5353_0001);
    let store = store_of(&parsed(&full_filter_config()));
    let docs = docs();
    let hash = sha256_hex(&docs[0]);
    let mut huge = b"<Error><Code>".to_vec();
    huge.extend(std::iter::repeat_n(b'C', 1 << 20));
    huge.extend_from_slice(b"</Code><Message>");
    huge.extend(std::iter::repeat_n(0xE9, 1 << 20));
    for case in 0..5000 {
        let mut resp = random_response(&mut rng, &hash, &docs);
        if case == 0 {
            resp.body = huge.clone();
        } else if rng.chance(40) {
            resp.body = random_xml(&mut rng);
        }
        guarded(
            || {
                format!(
                    "S3 answer {} {:?} {}",
                    resp.status,
                    resp.headers,
                    show(&resp.body)
                )
            },
            || {
                let e = error_from(&resp);
                let line = e.to_string();
                assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
                assert!(e.code.chars().count() <= 65 && e.message.chars().count() <= 301);
                let _ = store.parse_put(&resp);
                let _ = store.parse_head(&resp);
            },
        );
    }
}

#[test]
fn url_source_answers_never_panic() {
    let mut rng = Prng(0x5005_0002);
    let cfg = parsed(&full_url_config());
    let Source::Url(poller) = Source::from_config(&cfg.source) else {
        panic!("url source expected")
    };
    let mut poller: UrlPoller = poller;
    let docs = docs();
    for _ in 0..3000 {
        let resp = random_response(&mut rng, "", &docs);
        let now = rng.next();
        guarded(
            || {
                format!(
                    "poll answer {} {:?} {}",
                    resp.status,
                    resp.headers,
                    show(&resp.body)
                )
            },
            || {
                let _ = poller.due(now);
                let _ = poller.request(now);
                let _ = poller.on_response(resp.clone());
                let _ = validate_declarative_json(&resp.body);
            },
        );
    }
}

#[test]
fn shared_data_records_never_panic() {
    let mut rng = Prng(0x5AED_0003);
    let seeds = [
        NodeRecord::default().to_json().to_string(),
        json!({"owner": 5, "lease_until": u64::MAX, "version": "\"e\"",
               "newest": {"hash": "h", "seen_at": 1},
               "schedule": {"exported": "h", "not_before": 3, "failures": 7, "failing": "h",
                            "in_flight": {"hash": "h", "started_at": 1, "deadline": 2}}})
        .to_string(),
    ];
    for _ in 0..4000 {
        let seed = rng.pick(&seeds).clone();
        let bytes = if rng.chance(80) {
            mutate(&mut rng, seed.as_bytes())
        } else {
            rng.bytes(64)
        };
        guarded(
            || format!("node record {}", show(&bytes)),
            || {
                if let Ok(v) = config_bridge::json::parse(&bytes) {
                    let r = NodeRecord::from_json(&v);
                    let _ = Schedule::from_json(&v);
                    let _ = r.to_json().to_string();
                }
                let mut s = Shared::new(Rules::Ngx, 0);
                s.set("k", &bytes, None).unwrap();
                let _ = node_lock::with_lease(&mut s, "k", 1, rng.next(), rng.next(), |r, _| {
                    r.schedule.failures = r.schedule.failures.saturating_add(1);
                });
                let _ = node_lock::peek(&s, "k");
                let _ = node_lock::node_id(&mut s, "k", "cand");
            },
        );
    }
}

/// A host clock after 9999-12-31 (a glitch, or a host returning garbage nanoseconds): signing
/// converts the time with `time::OffsetDateTime::from(SystemTime)`, which panics out of range.
#[test]
fn signing_after_year_9999_does_not_panic() {
    let store = store_of(&parsed(&full_filter_config()));
    for now in [MAX_SIGNABLE_MS, MAX_SIGNABLE_MS + 1, u64::MAX / 2, u64::MAX] {
        let r = guarded(
            || format!("S3Store::head(\"k\", now_ms = {now})"),
            || store.head("k", now),
        );
        if now <= MAX_SIGNABLE_MS {
            assert!(r.is_ok(), "{r:?}");
        }
        let body = Rc::new(b"{}".to_vec());
        let _ = guarded(
            || format!("S3Store::put(now_ms = {now})"),
            || {
                let meta = config_bridge::store::ExportMeta {
                    uploader: "n".into(),
                    applied_at: now,
                    sha256_hex: sha256_hex(&body),
                    sha256: sha256(&body),
                    sequence: now,
                    updated_at_ms: Some(now),
                    supersedes: vec!["0123456789ab".into()],
                    seal: Vec::new(),
                };
                store.put("k", &body, &Precondition::IfAbsent, &meta, now)
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rules {
    /// ngx_wasm_module: cas 0 creates a missing key and fails on an existing one.
    Ngx,
    /// Envoy: cas 0 is unconditional.
    Envoy,
}

struct SharedInner {
    map: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    /// Percent of calls that misbehave (errors, garbage, missing cas, lost writes).
    chaos: u64,
    rng: Prng,
}

/// In-memory shared data with either host's CAS rules; clones share the data (one node).
#[derive(Clone)]
struct Shared {
    rules: Rules,
    inner: Rc<RefCell<SharedInner>>,
}

impl Shared {
    fn new(rules: Rules, chaos: u64) -> Shared {
        Shared {
            rules,
            inner: Rc::new(RefCell::new(SharedInner {
                map: HashMap::new(),
                next_cas: 1,
                chaos,
                rng: Prng(chaos.wrapping_mul(31).wrapping_add(7)),
            })),
        }
    }
}

impl SharedStore for Shared {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        let mut inner = self.inner.borrow_mut();
        let chaos = inner.chaos;
        if chaos > 0 && inner.rng.chance(chaos) {
            let r = inner.rng.below(5);
            let garbage = inner.rng.bytes(30);
            let cas = inner.rng.next() as u32 % 3;
            return match r {
                0 => Err("get_shared_data: InternalFailure".into()),
                1 => Ok((Some(garbage), Some(cas))),
                2 => Ok((None, None)),
                3 => Ok((inner.map.get(key).map(|(v, _)| v.clone()), None)),
                _ => Ok((inner.map.get(key).map(|(v, _)| v.clone()), Some(0))),
            };
        }
        Ok(match inner.map.get(key) {
            Some((v, c)) => (Some(v.clone()), Some(*c)),
            None => (None, None),
        })
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        let mut inner = self.inner.borrow_mut();
        let chaos = inner.chaos;
        if chaos > 0 && inner.rng.chance(chaos) {
            return match inner.rng.below(3) {
                0 => Err("set_shared_data: status 7".into()),
                1 => Ok(false),
                _ => Ok(true), // claims success, stores nothing
            };
        }
        let cas = cas.unwrap_or(0);
        let current = inner.map.get(key).map(|(_, c)| *c);
        let ok = match (self.rules, cas, current) {
            (_, 0, None) => true,
            (Rules::Ngx, 0, Some(_)) => false,
            (Rules::Envoy, 0, Some(_)) => true,
            (_, c, Some(cur)) => c == cur,
            (Rules::Ngx, _, None) => false,
            (Rules::Envoy, _, None) => true,
        };
        if ok {
            inner.next_cas = inner.next_cas.wrapping_add(1).max(1);
            let n = inner.next_cas;
            inner.map.insert(key.to_string(), (value.to_vec(), n));
        }
        Ok(ok)
    }
}

fn engine_configs() -> Vec<Config> {
    let fast = |v: &mut Value| {
        v["tick_period_ms"] = json!(10);
        v["call_timeout_ms"] = json!(100);
        v["lease_ttl_ms"] = json!(20);
        v["retry_base_ms"] = json!(1);
        v["retry_max_ms"] = json!(50);
        v["cluster_fallback_config_export_delay"] = json!(0);
    };
    let mut out = Vec::new();
    let mut a = full_filter_config();
    fast(&mut a);
    // Uploads from the first tick (the retarget test needs them); b and c elect.
    a["election"] = json!(false);
    out.push(parsed(&a));
    let mut b = a.clone();
    b["election"] = json!(true);
    b["cluster_fallback_election_interval"] = json!(1);
    b["s3_conditional_writes"] = json!(false);
    b["cluster_fallback_config_export_delay"] = json!(0.05);
    b.as_object_mut().unwrap().remove("node_id");
    out.push(parsed(&b));
    let mut c = full_url_config();
    fast(&mut c);
    c["config_poll_interval"] = json!(0.1);
    c["cluster_fallback_election_interval"] = json!(1.5);
    out.push(parsed(&c));
    let mut d = a.clone();
    d["gateway_version"] = json!("3.10.0");
    d.as_object_mut().unwrap().remove("storage_endpoint");
    d.as_object_mut()
        .unwrap()
        .remove("cluster_fallback_export_s3_config");
    out.push(parsed(&d));
    let mut e = a.clone();
    e["cluster_fallback_config_export"] = json!(false);
    e["cluster_fallback_config_import"] = json!(true);
    out.push(parsed(&e));
    out
}

/// The lease key `Engine` derives (equal keys: `reconfigure` keeps the in-flight call).
fn target_of(cfg: &Config) -> String {
    format!("{}/{}", cfg.storage.location.bucket, cfg.config_key())
}

#[derive(Clone, Debug)]
struct Outstanding {
    worker: usize,
    /// Bumped when the worker's engine is replaced or retargeted: its calls are no longer its.
    generation: u64,
    id: u64,
    deadline: u64,
    export: bool,
    owner: Owner,
    target: String,
    /// The engine ticked at or after the deadline: it has given the call up.
    expired: bool,
}

struct Worker {
    engine: Engine,
    generation: u64,
    ids: Vec<u64>,
}

/// One simulated node: `workers` root contexts, random events; checks the invariants after
/// every dispatch. `checked_node_wide`: clean shared data and a monotonic clock, where the
/// node-wide "one upload in flight" rule is checkable.
fn run_engine_case(seed: u64, rules: Rules, chaos: u64, monotonic: bool) -> usize {
    let mut rng = Prng(seed);
    let configs = engine_configs();
    let docs = docs();
    let shared = Shared::new(rules, chaos);
    let nworkers = 1 + rng.below(3);
    let mut generation = 0u64;
    let mut workers: Vec<Worker> = (0..nworkers)
        .map(|_| {
            generation += 1;
            let r = rng.next();
            let me = *rng.pick(&[0, 1, u64::MAX, r]);
            Worker {
                engine: Engine::new(rng.pick(&configs[..3]).clone(), me),
                generation,
                ids: Vec::new(),
            }
        })
        .collect();
    let mut now: u64 = *rng.pick(&[0, 1_700_000_000_000, MAX_SIGNABLE_MS - 1_000_000]);
    let mut outstanding: Vec<Outstanding> = Vec::new();
    let mut answered: Vec<(usize, u64)> = Vec::new();
    let mut log = Vec::<String>::new();
    let mut dispatches = 0;

    for step in 0..250 {
        // The clock.
        match rng.below(10) {
            0..=5 => now = now.saturating_add(rng.below(40) as u64),
            6 => now = now.saturating_add(rng.below(2000) as u64),
            7 if !monotonic => now = now.saturating_sub(rng.below(5000) as u64),
            8 if !monotonic && rng.chance(10) => now = rng.next() % MAX_SIGNABLE_MS,
            _ => {}
        }
        now = now.min(MAX_SIGNABLE_MS);
        let w = rng.below(workers.len());
        let hash_now = workers[w]
            .engine
            .own_config_document()
            .map(|d| sha256_hex(&d))
            .unwrap_or_default();
        let action = rng.below(100);
        let mut sh = shared.clone();
        let what = format!(
            "seed {seed:#x} {rules:?} chaos {chaos} step {step} worker {w} t={now} action {action}"
        );
        log.push(what.clone());
        let ctx = || {
            format!(
                "{what}\nhistory (last 30):\n{}",
                log[log.len().saturating_sub(30)..].join("\n")
            )
        };
        match action {
            0..=39 => {
                for o in outstanding.iter_mut() {
                    if o.worker == w && now >= o.deadline {
                        o.expired = true;
                    }
                }
                let out = guarded(ctx, || workers[w].engine.tick(now, &mut sh));
                check_effects(&out.effects, &ctx);
                for d in out.dispatches {
                    dispatches += 1;
                    let wk = &mut workers[w];
                    let target = target_of(wk.engine.config());
                    // One call in flight per sub-machine: nothing of the same owner in this engine
                    // still before its deadline.
                    if let Some(o) = outstanding.iter().find(|o| {
                        o.worker == w
                            && o.generation == wk.generation
                            && !o.expired
                            && o.owner == d.owner
                    }) {
                        panic!(
                            "second call {} of the same sub-machine while call {} is in flight until {}: {}",
                            d.id,
                            o.id,
                            o.deadline,
                            ctx()
                        );
                    }
                    assert!(
                        !wk.ids.contains(&d.id),
                        "call id {} reused: {}",
                        d.id,
                        ctx()
                    );
                    wk.ids.push(d.id);
                    assert_eq!(d.timeout_ms, wk.engine.config().call_timeout_ms);
                    let export = d.owner == Owner::Export;
                    if export && monotonic && chaos == 0 {
                        if let Some(o) = outstanding
                            .iter()
                            .find(|o| o.export && o.target == target && now < o.deadline)
                        {
                            panic!(
                                "node-wide: worker {w} starts an upload while worker {}'s (call {}) is in flight until {}: {}",
                                o.worker, o.id, o.deadline, ctx()
                            );
                        }
                    }
                    outstanding.push(Outstanding {
                        worker: w,
                        generation: wk.generation,
                        id: d.id,
                        deadline: now.saturating_add(d.timeout_ms),
                        export,
                        owner: d.owner,
                        target,
                        expired: false,
                    });
                }
            }
            40..=64 => {
                // Answer one of this worker's calls (sometimes twice).
                let mine: Vec<usize> = (0..outstanding.len())
                    .filter(|&i| {
                        outstanding[i].worker == w
                            && outstanding[i].generation == workers[w].generation
                    })
                    .collect();
                let Some(&i) = mine.get(rng.below(mine.len().max(1))) else {
                    continue;
                };
                let o = outstanding.remove(i);
                let resp = random_response(&mut rng, &hash_now, &docs);
                let failed = rng.chance(15);
                for _ in 0..1 + usize::from(rng.chance(10)) {
                    let ev = if failed {
                        Event::CallFailed {
                            id: o.id,
                            reason: "dispatch_status: timeout\n".into(),
                        }
                    } else {
                        Event::CallAnswered {
                            id: o.id,
                            response: resp.clone(),
                        }
                    };
                    let fx = guarded(
                        || format!("{} answering call {} with {:?}", ctx(), o.id, ev),
                        || workers[w].engine.on_event(ev.clone(), now, &mut sh),
                    );
                    check_effects(&fx, &ctx);
                }
                answered.push((w, o.id));
            }
            65..=69 => {
                // An answer nobody asked for: unknown, or already answered.
                let id = match rng.below(3) {
                    0 => *rng.pick(&[0, u64::MAX, 1 << 40]),
                    1 => answered
                        .get(rng.below(answered.len().max(1)))
                        .map(|a| a.1)
                        .unwrap_or(7),
                    _ => workers[w]
                        .ids
                        .last()
                        .copied()
                        .unwrap_or(0)
                        .wrapping_add(1000),
                };
                let still_mine = outstanding
                    .iter()
                    .any(|o| o.worker == w && o.generation == workers[w].generation && o.id == id);
                if still_mine {
                    continue;
                }
                let resp = random_response(&mut rng, &hash_now, &docs);
                let fx = guarded(ctx, || {
                    workers[w].engine.on_event(
                        Event::CallAnswered { id, response: resp },
                        now,
                        &mut sh,
                    )
                });
                check_effects(&fx, &ctx);
            }
            70..=84 => {
                let body = if rng.chance(80) {
                    rng.pick(&docs[..3]).clone()
                } else {
                    rng.pick(&docs).clone()
                };
                let fx = guarded(ctx, || {
                    workers[w]
                        .engine
                        .on_event(Event::ConfigApplied(Rc::new(body)), now, &mut sh)
                });
                check_effects(&fx, &ctx);
            }
            85..=91 => {
                // on_configure with a new filter configuration (and its own-config document).
                let cfg = rng.pick(&configs).clone();
                let wk = &mut workers[w];
                if target_of(&cfg) != target_of(wk.engine.config()) {
                    // The engine drops its call (and restarts its ids; see
                    // `call_ids_are_not_reused_after_a_retarget`): a new call generation.
                    generation += 1;
                    wk.generation = generation;
                    wk.ids.clear();
                }
                guarded(ctx, || {
                    wk.engine.reconfigure(cfg);
                    if let Some(doc) = wk.engine.own_config_document() {
                        let fx = wk.engine.on_event(Event::ConfigApplied(doc), now, &mut sh);
                        check_effects(&fx, &ctx);
                    }
                });
            }
            92..=93 => {
                // The worker restarts: a fresh engine; its old calls stay in flight at the host.
                generation += 1;
                let cfg = rng.pick(&configs).clone();
                let me = rng.next();
                workers[w] = Worker {
                    engine: guarded(ctx, || Engine::new(cfg, me)),
                    generation,
                    ids: Vec::new(),
                };
            }
            _ => {
                // Drop timed-out calls the host never answers.
                outstanding.retain(|o| now < o.deadline || rng.chance(50));
            }
        }
    }
    dispatches
}

fn check_effects(fx: &[Effect], ctx: &dyn Fn() -> String) {
    for e in fx {
        if let Effect::Log(_, m) = e {
            assert!(
                !m.contains(SECRET) && !m.contains(TOKEN),
                "secret logged: {m:?}\n{}",
                ctx()
            );
        }
    }
}

#[test]
fn engine_random_event_sequences_never_panic() {
    let start = std::time::Instant::now();
    let mut dispatches = 0;
    let mut cases = 0;
    for seed in 0..40u64 {
        for rules in [Rules::Ngx, Rules::Envoy] {
            for (chaos, monotonic) in [(0, true), (0, false), (20, false)] {
                dispatches += run_engine_case(
                    seed.wrapping_mul(0x9E37_79B9) ^ 0xE41E,
                    rules,
                    chaos,
                    monotonic,
                );
                cases += 1;
            }
        }
    }
    eprintln!(
        "engine: {cases} sequences × 250 events, {dispatches} dispatches, {:?}",
        start.elapsed()
    );
    assert!(dispatches > 500, "the fuzzer must reach the dispatch paths");
}

/// Found by reading `Engine::reconfigure`: retargeting (another bucket or key) builds a new engine
/// whose ids restart at 1, while the shell's token → id map keeps the old call. The late answer
/// of the old call is then taken as the answer of the new call with the same id.
#[test]
fn call_ids_are_not_reused_after_a_retarget() {
    let configs = engine_configs();
    let (a, d) = (configs[0].clone(), configs[3].clone());
    assert_ne!(target_of(&a), target_of(&d));
    let mut shared = Shared::new(Rules::Ngx, 0);
    let mut e = Engine::new(a, 42);
    let doc = e.own_config_document().unwrap();
    e.on_event(Event::ConfigApplied(doc), 1000, &mut shared);
    let first = e
        .tick(1000, &mut shared)
        .dispatches
        .into_iter()
        .next()
        .expect("first upload");
    e.reconfigure(d);
    if let Some(doc) = e.own_config_document() {
        e.on_event(Event::ConfigApplied(doc), 1001, &mut shared);
    }
    let second = e
        .tick(1010, &mut shared)
        .dispatches
        .into_iter()
        .next()
        .expect("upload after retarget");
    assert_ne!(
        first.id, second.id,
        "call id {} reused for a different request while the first may still be answered",
        first.id
    );
}
