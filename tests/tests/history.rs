//! History (issue 23, docs/history.md): the real .wasm under the ngx_wasm_module and Envoy
//! profiles, against the mock S3 and the mock GCS. Every export also lands next to
//! `config.json` as a history object with the same bytes and metadata, never twice in a row, and
//! `config.json` is what it is without history; retention holds over 10,000 virtual minutes with
//! failures injected on every kind of request; the import can be pinned to a history object.

mod gcs_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use config_bridge::history::{newest, parse_history_key, HistoryEntry};
use config_bridge_tests::kong_setup::{route_host, two_profiles, Fallback};
use config_bridge_tests::*;
use gcs_support::*;
use host_harness::http::{CallContext, Handler, HttpRequest, Reply, SharedHandler};
use host_harness::mocks::faults::{Fault, Faulty};
use host_harness::mocks::gcs::MockGcs;
use host_harness::mocks::s3::MockS3;
use host_harness::{HostProfile, NodeId, World};
use serde_json::{json, Value};

const HISTORY_PREFIX: &str = "dp/cluster-a/3.9.1/history/";

/// The store under test, seen from the test: keys, bodies, metadata.
#[derive(Clone)]
enum Mock {
    S3(MockS3),
    Gcs(MockGcs),
}

impl Mock {
    fn name(&self) -> &'static str {
        match self {
            Mock::S3(_) => "S3",
            Mock::Gcs(_) => "GCS",
        }
    }

    fn keys(&self) -> Vec<String> {
        match self {
            Mock::S3(s3) => s3.list_keys(BUCKET),
            Mock::Gcs(g) => g.objects(BUCKET).into_iter().map(|o| o.name).collect(),
        }
    }

    fn body(&self, key: &str) -> Option<Vec<u8>> {
        match self {
            Mock::S3(s3) => s3.object(BUCKET, key).map(|o| o.body),
            Mock::Gcs(g) => g.object(BUCKET, key).map(|o| o.data),
        }
    }

    /// The object's custom metadata, sorted.
    fn meta(&self, key: &str) -> Option<Vec<(String, String)>> {
        let mut m: Vec<(String, String)> = match self {
            Mock::S3(s3) => s3.object(BUCKET, key)?.metadata,
            Mock::Gcs(g) => g.object(BUCKET, key)?.metadata.into_iter().collect(),
        };
        m.sort();
        Some(m)
    }

    /// Token requests (GCS), which the store's other requests wait for.
    fn token_requests(&self) -> usize {
        match self {
            Mock::S3(_) => 0,
            Mock::Gcs(g) => token_calls(g).len(),
        }
    }

    fn history(&self) -> Vec<HistoryEntry> {
        self.keys()
            .iter()
            .filter(|k| k.starts_with(HISTORY_PREFIX))
            .filter_map(|k| parse_history_key(k))
            .collect()
    }
}

/// In front of the store: every DELETE is checked against retention as the bucket is when it
/// arrives (never a history object within retention, never the newest, nothing else at all).
struct RetentionCheck {
    inner: SharedHandler,
    mock: Mock,
    keep: usize,
    max_age_ms: u64,
    violations: Arc<Mutex<Vec<String>>>,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn ms_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

impl RetentionCheck {
    /// The key a DELETE names (S3 path-style, GCS JSON API).
    fn deleted_key(&self, req: &HttpRequest) -> String {
        let path = req.path_only();
        let raw = match self.mock {
            Mock::S3(_) => path.strip_prefix(&format!("/{BUCKET}/")),
            Mock::Gcs(_) => path.strip_prefix(&format!("/storage/v1/b/{BUCKET}/o/")),
        };
        percent_decode(raw.unwrap_or(path))
    }
}

impl Handler for RetentionCheck {
    fn handle(&self, req: &HttpRequest, ctx: &CallContext) -> Reply {
        if req.method == "DELETE" {
            let key = self.deleted_key(req);
            let now = ms_since_epoch(ctx.now);
            let mut ranked = self.mock.history();
            ranked.sort_by(|a, b| (b.uploaded_at_ms, &b.key).cmp(&(a.uploaded_at_ms, &a.key)));
            let verdict = match ranked.iter().position(|e| e.key == key) {
                None if key.starts_with(HISTORY_PREFIX) && parse_history_key(&key).is_some() => {
                    None // already gone (a retried deletion)
                }
                None => Some(format!("{key}: not a history object")),
                Some(0) => Some(format!("{key}: the newest history object")),
                Some(rank) => {
                    let age = now.saturating_sub(ranked[rank].uploaded_at_ms);
                    (rank < self.keep && age <= self.max_age_ms)
                        .then(|| format!("{key}: rank {rank}, {age} ms old: within retention"))
                }
            };
            if let Some(v) = verdict {
                self.violations.lock().unwrap().push(v);
            }
        }
        self.inner.handle(req, ctx)
    }
}

/// A world with the store behind a fault injector behind the retention check.
struct Setup {
    world: World,
    mock: Mock,
    faults: Faulty,
    violations: Arc<Mutex<Vec<String>>>,
    /// The filter configuration without its document (`config` is set per export).
    cfg: Value,
}

fn setup(profile: &HostProfile, gcs: bool, history: Value, keep: usize, max_age_ms: u64) -> Setup {
    let violations = Arc::new(Mutex::new(Vec::new()));
    let (mut world, mock, cfg) = if gcs {
        let g = gcs_world(profile);
        let cfg = gcs_config(profile, &Value::Null, Some(&g.key_json));
        (g.world, Mock::Gcs(g.mock), cfg)
    } else {
        let s3 = mock_s3();
        (
            World::new(profile.clone()),
            Mock::S3(s3),
            filter_config(profile, &Value::Null),
        )
    };
    let inner: SharedHandler = match &mock {
        Mock::S3(s3) => Arc::new(s3.clone()),
        Mock::Gcs(g) => Arc::new(g.clone()),
    };
    let faults = Faulty::new(inner);
    let check = RetentionCheck {
        inner: Arc::new(faults.clone()),
        mock: mock.clone(),
        keep,
        max_age_ms,
        violations: violations.clone(),
    };
    if gcs {
        route_host(&mut world, STORAGE_HOST, check);
    } else {
        route_storage(&mut world, check);
    }
    let mut cfg = cfg;
    if let (Some(o), Some(h)) = (cfg.as_object_mut(), history.as_object()) {
        o.remove("config");
        for (k, v) in h {
            o.insert(k.clone(), v.clone());
        }
    }
    Setup {
        world,
        mock,
        faults,
        violations,
        cfg,
    }
}

impl Setup {
    fn with_doc(&self, doc: &Value) -> String {
        let mut cfg = self.cfg.clone();
        cfg["config"] = doc.clone();
        cfg.to_string()
    }

    fn start(&mut self, doc: &Value) -> NodeId {
        let cfg = self.with_doc(doc);
        self.world
            .add_node(
                host_harness::NodeSpec::new("n1", &plugin_module())
                    .workers(1)
                    .filter(cfg),
            )
            .unwrap_or_else(|e| panic!("starting the node: {e:#}"))
    }

    fn apply(&mut self, node: NodeId, doc: &Value) {
        let cfg = self.with_doc(doc);
        self.world.reconfigure(node, 0, cfg);
    }

    /// Runs until config.json holds `doc` and the newest history object does too.
    fn until_recorded(&mut self, doc: &Value, limit: Duration) -> bool {
        let want = payload_bytes(doc);
        let mock = self.mock.clone();
        self.world.advance_until(limit, secs(1), |_| {
            let history = mock.history();
            mock.body(CONFIG_KEY).as_ref() == Some(&want)
                && newest(&history).and_then(|n| mock.body(&n.key)) == Some(want.clone())
        })
    }
}

fn no_traps(world: &World) {
    assert!(world.traps().is_empty(), "{:?}", world.traps());
    assert!(
        world.fatal_errors().is_empty(),
        "{:?}",
        world.fatal_errors()
    );
}

/// Both stores, both profiles: each export lands next to config.json with the same bytes and
/// metadata; identical content is not recorded again; config.json is exactly what it is with
/// history off (Kong Enterprise reads it unchanged).
#[test]
fn every_export_is_kept_next_to_config_json() {
    for profile in two_profiles() {
        for gcs in [false, true] {
            let on = json!({"cluster_fallback_history": true, "cluster_fallback_config_export_delay": 0});
            let mut s = setup(&profile, gcs, on, 50, 30 * 86_400_000);
            let what = format!("{} {}", profile.name, s.mock.name());
            let node = s.start(&declarative(1));
            assert!(
                s.until_recorded(&declarative(1), secs(60)),
                "{what}: first export"
            );
            let t1 = s.world.elapsed();
            s.apply(node, &declarative(2));
            assert!(
                s.until_recorded(&declarative(2), secs(60)),
                "{what}: second export"
            );
            // The same content again (Kong re-configures the filter on every change).
            s.apply(node, &declarative(2));
            s.world.advance(secs(30));

            let history = s.mock.history();
            assert_eq!(history.len(), 2, "{what}: {:?}", s.mock.keys());
            let newest_key = newest(&history).unwrap().key.clone();
            assert_eq!(s.mock.body(&newest_key), s.mock.body(CONFIG_KEY), "{what}");
            assert_eq!(s.mock.meta(&newest_key), s.mock.meta(CONFIG_KEY), "{what}");
            let sha = config_bridge::document::sha256_hex(&payload_bytes(&declarative(2)));
            assert!(
                newest_key.ends_with(&format!("-{}.json", &sha[..16])),
                "{what}: {newest_key}"
            );
            let oldest = history.iter().find(|e| e.key != newest_key).unwrap();
            assert_eq!(
                s.mock.body(&oldest.key),
                Some(payload_bytes(&declarative(1)))
            );
            // Named after the export's time (whole seconds of the world's clock).
            let started = epoch_ms(&s.world);
            assert!(
                oldest.uploaded_at_ms >= started / 1000 * 1000
                    && oldest.uploaded_at_ms <= started + t1.as_millis() as u64,
                "{what}: {} not within the first export",
                oldest.key
            );
            assert_eq!(
                log_messages(&s.world, "history: recorded").len(),
                2,
                "{what}"
            );
            assert!(log_messages(&s.world, "history: recorded")[0].contains(HISTORY_PREFIX));

            // Kong Enterprise compatibility: the same story with history off.
            let off = json!({"cluster_fallback_history": false, "cluster_fallback_config_export_delay": 0});
            let mut plain = setup(&profile, gcs, off, 50, 0);
            let node = plain.start(&declarative(1));
            advance_to(&mut plain.world, t1);
            plain.apply(node, &declarative(2));
            plain.apply(node, &declarative(2));
            advance_to(&mut plain.world, s.world.elapsed());
            assert_eq!(
                plain.mock.body(CONFIG_KEY),
                s.mock.body(CONFIG_KEY),
                "{what}"
            );
            assert!(plain.mock.history().is_empty());
            let meta = |m: &Mock| {
                m.meta(CONFIG_KEY)
                    .unwrap()
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            k,
                            if v.chars().all(|c| c.is_ascii_digit()) {
                                "<time>".into()
                            } else {
                                v
                            },
                        )
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                meta(&plain.mock),
                meta(&s.mock),
                "{what}: the same metadata names and values"
            );
            no_traps(&s.world);
            assert!(s.violations.lock().unwrap().is_empty());
        }
    }
}

/// Both stores, both profiles: 10,000 virtual minutes of changes every 30–90 minutes, with
/// failures injected on history requests (one in five) and on config.json (one in twenty).
/// Every DELETE is checked when it arrives (`RetentionCheck`); every pruning cycle that ends
/// leaves at most `keep`; the newest history object holds what config.json holds.
fn retention_holds_over_ten_thousand_minutes_with_faults(profile: HostProfile, gcs: bool) {
    const KEEP: usize = 3;
    const MAX_AGE_MS: u64 = 2 * 3_600_000;
    const MINUTE: u64 = 60;
    const TICK: u64 = 5 * MINUTE;
    let started = std::time::Instant::now();
    let mut cfg = json!({
        "cluster_fallback_history": true,
        "cluster_fallback_history_keep": KEEP,
        "cluster_fallback_history_max_age": MAX_AGE_MS / 1000,
        "cluster_fallback_config_export_delay": 0,
        // A tick every 5 minutes: 10,000 minutes stay seconds of test (a tick of the
        // harness costs about a millisecond).
        "tick_period_ms": 300_000,
        "host_tick_ms": 300_000,
        "lease_ttl_ms": 900_000,
        "retry_base_ms": 1000,
        "retry_max_ms": 30_000,
    });
    if gcs {
        // A host tick a minute (the filter's own work stays every 5 minutes): the JWT is signed
        // a slice per host tick, 13 slices for a 2048-bit key (docs/gcs.md), and at one slice
        // per 5 minutes its `iat` would be over an hour old when sent, refused as expired.
        cfg["host_tick_ms"] = serde_json::json!(60_000);
    }
    let mut s = setup(&profile, gcs, cfg, KEEP, MAX_AGE_MS);
    let what = format!("{} {}", profile.name, s.mock.name());
    s.faults.seed(23);
    if let Mock::Gcs(g) = &s.mock {
        // Day-long tokens: a renewal (its JWT signed a slice per host tick) delays the store's
        // requests, a few times in the week rather than hourly.
        g.set_token_lifetime(Duration::from_secs(86_400));
    }
    let fault = if gcs {
        Fault::status(503, "backendError", "Backend Error")
    } else {
        Fault::slow_down()
    };
    let history = |r: &HttpRequest| percent_decode(&r.path).contains(HISTORY_PREFIX);
    s.faults
        .random_matching(move |r, _| history(r), 0.2, fault.clone());
    s.faults
        .random_matching(move |r, _| !history(r), 0.05, fault);

    let node = s.start(&declarative(1));
    let mut rng = 0x2300_u64;
    let mut next = |m: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % m
    };
    let (mut n, mut checked, mut after_pruning) = (1u32, 0usize, 0usize);
    let end = Duration::from_secs(10_000 * MINUTE);
    let (mut seen_lines, mut read_logs, mut still_retrying) = (0usize, 0usize, 0usize);
    while s.world.elapsed() < end {
        let mut failed_since_change = false;
        let tokens_before = s.mock.token_requests();
        let wait = Duration::from_secs((next(61) + 30) * MINUTE);
        let until = (s.world.elapsed() + wait).min(end);
        // A tick at a time: a pruning cycle that ended after a tick is checked before the
        // next tick (one request a tick) can change the bucket.
        while s.world.elapsed() < until {
            s.world.advance(secs(TICK));
            // Only the lines logged since the last look (the log grows for hours).
            let (pruned, failed): (Vec<String>, bool) = s.world.with_recorder(|r| {
                let new = r.logs.get(read_logs..).unwrap_or_default();
                let pruned = new
                    .iter()
                    .filter(|l| l.message.contains("history: pruned"))
                    .map(|l| l.message.clone())
                    .collect();
                (pruned, new.iter().any(|l| l.message.contains(" failed: ")))
            });
            failed_since_change |= failed;
            read_logs = s.world.with_recorder(|r| r.logs.len());
            if let Some(line) = pruned.last() {
                seen_lines += pruned.len();
                let now = s.mock.history().len();
                after_pruning = after_pruning.max(now);
                assert!(now <= KEEP, "{what}: {now} history objects after `{line}`");
            }
        }
        // The newest history object holds what config.json holds, unless an injected
        // fault since the change still has the export or the history retrying (checked
        // once more at the end, without faults).
        let history = s.mock.history();
        let newest = newest(&history).unwrap_or_else(|| panic!("{what}: no history"));
        if s.mock.body(&newest.key) != s.mock.body(CONFIG_KEY) {
            // A new GCS token (its JWT signed a slice per 5-minute tick) delays them too.
            let renewed = s.mock.token_requests() > tokens_before;
            assert!(
                failed_since_change || renewed,
                "{what} at {:?}: history behind config.json without a fault or a new token",
                s.world.elapsed()
            );
            still_retrying += 1;
        }
        checked += 1;
        n += 1;
        s.apply(node, &declarative(n));
    }
    s.faults.clear();
    s.world.advance(secs(60 * MINUTE));
    let history = s.mock.history();
    let newest = newest(&history).unwrap();
    assert_eq!(
        s.mock.body(&newest.key),
        s.mock.body(CONFIG_KEY),
        "{what}: at the end"
    );
    assert!(
        history.len() <= KEEP,
        "{what}: {} at the end",
        history.len()
    );
    assert!(
        still_retrying * 10 < checked,
        "{what}: {still_retrying} of {checked} behind"
    );
    let violations = s.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{what}: {violations:?}");
    assert!(checked > 150, "{what}: {checked} exports checked");
    assert!(seen_lines > 120, "{what}: {seen_lines} pruning cycles");
    assert!(after_pruning <= KEEP);
    let injected = s.faults.injected().len();
    assert!(injected > 100, "{what}: {injected} faults injected");
    assert!(
        log_messages(&s.world, "history: ")
            .iter()
            .any(|l| l.contains("failed")),
        "{what}: the injected faults are logged"
    );
    no_traps(&s.world);
    assert_no_secrets(&s.world, &[]);
    eprintln!(
        "{what}: {checked} exports ({still_retrying} still retrying at the next change), {seen_lines} pruning cycles, {injected} faults, {:?}",
        started.elapsed()
    );
}

// One test per store and profile: they run in parallel.
#[test]
fn retention_holds_over_ten_thousand_minutes_with_faults_s3_ngx() {
    retention_holds_over_ten_thousand_minutes_with_faults(HostProfile::ngx_wasm_module(), false);
}

#[test]
fn retention_holds_over_ten_thousand_minutes_with_faults_s3_envoy() {
    retention_holds_over_ten_thousand_minutes_with_faults(HostProfile::envoy(), false);
}

#[test]
fn retention_holds_over_ten_thousand_minutes_with_faults_gcs_ngx() {
    retention_holds_over_ten_thousand_minutes_with_faults(HostProfile::ngx_wasm_module(), true);
}

#[test]
fn retention_holds_over_ten_thousand_minutes_with_faults_gcs_envoy() {
    retention_holds_over_ten_thousand_minutes_with_faults(HostProfile::envoy(), true);
}

/// The import pinned to a history object (`cluster_fallback_import_version`) downloads that
/// object instead of config.json and applies it.
#[test]
fn the_import_can_be_pinned_to_a_history_object() {
    for profile in two_profiles() {
        let mut f = Fallback::new(&profile);
        f.exporter_cfg["cluster_fallback_history"] = json!(true);
        let first = config_bridge_tests::kong_setup::kong_config_with_exporter(1, &f.exporter_cfg);
        f.export(&first);
        f.world.advance(secs(10));
        let second = config_bridge_tests::kong_setup::kong_config_with_exporter(2, &f.exporter_cfg);
        f.export(&second);
        f.world.advance(secs(10));
        let history = Mock::S3(f.s3.clone()).history();
        assert_eq!(
            history.len(),
            2,
            "{}: {:?}",
            profile.name,
            f.s3.list_keys(BUCKET)
        );
        let newest_key = newest(&history).unwrap().key.clone();
        let older = history
            .iter()
            .find(|e| e.key != newest_key)
            .unwrap()
            .clone();
        f.cp_down();

        let mut own = config_bridge_tests::kong_setup::importer_config(&profile);
        own["cluster_fallback_import_version"] = json!(older.version_id());
        f.start_fallback(&own, true);
        let admin = f.admin.clone();
        assert!(
            f.world
                .advance_until(secs(120), secs(1), |_| admin.applied_count() > 0),
            "{}: no import",
            profile.name
        );
        let gets: Vec<String> = f
            .fallback_storage_calls("GET")
            .into_iter()
            .map(|c| c.request.path)
            .collect();
        assert!(!gets.is_empty());
        assert!(
            gets.iter().all(|p| p.ends_with(&older.key)),
            "{}: {gets:?}",
            profile.name
        );
        // The first export's services, not the second's.
        let names: Vec<String> = f
            .admin
            .entities("services")
            .iter()
            .filter_map(|s| s["name"].as_str().map(str::to_string))
            .collect();
        let want: Vec<String> = first["services"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["name"].as_str().map(str::to_string))
            .collect();
        assert_eq!(names.len(), want.len());
        assert!(
            names.iter().all(|n| want.contains(n)),
            "{}: {names:?}",
            profile.name
        );
        assert!(
            log_messages(&f.world, "fallback config applied from s3://")
                .iter()
                .any(|l| l.contains(&older.key)),
            "{}",
            profile.name
        );
        no_traps(&f.world);
    }
}
