//! The history sub-machine inside a whole engine (export on, election off) against a small S3
//! bucket simulation: create-only PUTs, ListObjectsV2 pages, DELETE, injected failures.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::engine::{Effect, Engine, Event, Level, Metric, Owner};
use crate::history::{parse_history_key, HistoryEntry};
use crate::http::{HttpResponse, OutboundRequest};
use crate::node_lock::fake::{CasRules, FakeStore};
use crate::settings::Config;

/// 2026-12-06T14:00:00Z.
const T0: u64 = 1_796_565_600_000;
const CONFIG: &str = "kong/3.9.1/config.json";
const HISTORY: &str = "kong/3.9.1/history/";
const MIN: u64 = 60_000;

fn config(extra: serde_json::Value) -> Config {
    let mut v = serde_json::json!({
        "cluster_fallback_config_export": true,
        "cluster_fallback_config_storage": "s3://bucket-1/kong",
        "cluster_fallback_config_export_delay": 0,
        "gateway_version": "3.9.1",
        "aws_access_key_id": "AKID",
        "aws_secret_access_key": "SECRETKEY",
        "aws_region": "us-east-1",
        "storage_endpoint": "http://127.0.0.1:9000",
        "node_id": "node-a",
        "election": false,
        "retry_base_ms": 1000,
        "retry_max_ms": 8000,
        "config": {"_format_version": "3.0"},
    });
    if let serde_json::Value::Object(m) = extra {
        for (k, val) in m {
            v[k] = val;
        }
    }
    Config::parse(v.to_string().as_bytes(), &|_| None).unwrap()
}

fn doc(n: u32) -> Vec<u8> {
    format!(r#"{{"_format_version":"3.0","services":[{{"name":"svc-{n}"}}]}}"#).into_bytes()
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Object {
    body: Vec<u8>,
    meta: Vec<(String, String)>,
    etag: String,
}

/// Whether to answer a request (method, key or list prefix) with 503.
type FailWhen = Box<dyn FnMut(&str, &str) -> bool>;
/// Method, headers, body.
type Request = (String, Vec<(String, String)>, Vec<u8>);

/// A bucket: objects by key (no leading slash), requests seen, scripted failures.
#[derive(Default)]
struct Bucket {
    objects: BTreeMap<String, Object>,
    next_etag: u32,
    page_size: usize,
    /// (method, key or list prefix) of every request.
    seen: Vec<(u64, String, String)>,
    /// Answer a request with 503 when this returns true (method, key).
    fail: Option<FailWhen>,
    /// (keep, max age): every DELETE is checked against retention as the bucket is then.
    retention: Option<(usize, u64)>,
    /// DELETEs of history objects within retention (or of the newest, or of anything else).
    violations: Vec<String>,
    /// config.json requests: method, headers but the signature and `If-Match`, body.
    config_requests: Vec<Request>,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            page_size: 1000,
            ..Bucket::default()
        }
    }

    fn handle(&mut self, req: &OutboundRequest, now: u64) -> HttpResponse {
        let resp = |status: u16, headers: Vec<(String, String)>, body: String| HttpResponse {
            status,
            headers,
            body: body.into_bytes(),
        };
        let path = req.path.strip_prefix("/bucket-1").unwrap();
        let (key, query) = match path.split_once('?') {
            Some((k, q)) => (k.trim_start_matches('/').to_string(), Some(q.to_string())),
            None => (path.trim_start_matches('/').to_string(), None),
        };
        let param = |name: &str| {
            query.as_deref().and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                    .map(|v| v.replace("%2F", "/"))
            })
        };
        let shown = param("prefix").unwrap_or_else(|| key.clone());
        self.seen.push((now, req.method.clone(), shown.clone()));
        if key == CONFIG {
            let headers = req
                .headers
                .iter()
                .filter(|(k, _)| k != "authorization" && k != "if-match")
                .cloned()
                .collect();
            self.config_requests
                .push((req.method.clone(), headers, req.body.to_vec()));
        }
        if req.method == "DELETE" {
            self.check_delete(&key, now);
        }
        if let Some(fail) = self.fail.as_mut() {
            if fail(&req.method, &shown) {
                return resp(
                    503,
                    vec![],
                    "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>".into(),
                );
            }
        }
        let cur = self.objects.get(&key).cloned();
        match req.method.as_str() {
            "HEAD" => match cur {
                None => resp(404, vec![], String::new()),
                Some(o) => {
                    let mut h = o.meta.clone();
                    h.push(("etag".into(), o.etag.clone()));
                    resp(200, h, String::new())
                }
            },
            "GET" if query.is_some() => {
                let prefix = param("prefix").unwrap();
                let after = param("continuation-token");
                let keys: Vec<&String> = self
                    .objects
                    .keys()
                    .filter(|k| k.starts_with(&prefix))
                    .filter(|k| after.as_ref().is_none_or(|a| k.as_str() > a.as_str()))
                    .take(self.page_size + 1)
                    .collect();
                let truncated = keys.len() > self.page_size;
                let page = &keys[..keys.len().min(self.page_size)];
                let mut xml = String::from("<ListBucketResult>");
                for k in page {
                    xml.push_str(&format!(
                        "<Contents><Key>{k}</Key><LastModified>2026-12-06T14:00:00.000Z</LastModified><Size>1</Size></Contents>"
                    ));
                }
                if truncated {
                    xml.push_str(&format!(
                        "<IsTruncated>true</IsTruncated><NextContinuationToken>{}</NextContinuationToken>",
                        page.last().unwrap()
                    ));
                } else {
                    xml.push_str("<IsTruncated>false</IsTruncated>");
                }
                xml.push_str("</ListBucketResult>");
                resp(200, vec![], xml)
            }
            "PUT" => {
                let ok = match (req.header("if-match"), req.header("if-none-match"), &cur) {
                    (Some(m), _, Some(o)) => m == o.etag,
                    (Some(_), _, None) => false,
                    (None, Some("*"), Some(_)) => false,
                    _ => true,
                };
                if !ok {
                    return resp(412, vec![], "<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>".into());
                }
                self.next_etag += 1;
                let etag = format!("\"etag-{}\"", self.next_etag);
                let meta = req
                    .headers
                    .iter()
                    .filter(|(k, _)| k.starts_with("x-amz-meta-"))
                    .cloned()
                    .collect();
                self.objects.insert(
                    key,
                    Object {
                        body: req.body.to_vec(),
                        meta,
                        etag: etag.clone(),
                    },
                );
                resp(200, vec![("etag".into(), etag)], String::new())
            }
            "DELETE" => {
                self.objects.remove(&key);
                resp(204, vec![], String::new())
            }
            _ => resp(405, vec![], String::new()),
        }
    }

    fn check_delete(&mut self, key: &str, now: u64) {
        let Some((keep, max_age)) = self.retention else {
            return;
        };
        if !key.starts_with(HISTORY) {
            return self.violations.push(format!("{key}: not a history object"));
        }
        let mut ranked = self.history();
        ranked.sort_by(|a, b| (b.uploaded_at_ms, &b.key).cmp(&(a.uploaded_at_ms, &a.key)));
        if let Some(rank) = ranked.iter().position(|e| e.key == key) {
            let age = now.saturating_sub(ranked[rank].uploaded_at_ms);
            if rank == 0 || (rank < keep && age <= max_age) {
                self.violations
                    .push(format!("{key}: rank {rank}, age {age} ms, at {}", now - T0));
            }
        }
    }

    fn history(&self) -> Vec<HistoryEntry> {
        self.objects
            .keys()
            .filter(|k| k.starts_with(HISTORY))
            .filter_map(|k| parse_history_key(k))
            .collect()
    }

    fn count(&self, method: &str, what: &str) -> usize {
        self.seen
            .iter()
            .filter(|(_, m, k)| m == method && k.starts_with(what))
            .count()
    }
}

/// One engine (one worker), a tick a second, answers 200 ms after the request.
struct Sim {
    now: u64,
    engine: Engine,
    shared: FakeStore,
    bucket: Bucket,
    answers: Vec<(u64, u64, HttpResponse)>,
    effects: Vec<Effect>,
    /// The shell's tick period.
    tick_ms: u64,
    /// History requests sent per tick at most.
    max_history_per_tick: usize,
    /// Cycles that ended (an objects gauge), and the history objects then, at most.
    settled: usize,
    most_after_settling: usize,
}

impl Sim {
    fn new(cfg: Config) -> Sim {
        Sim {
            now: T0,
            engine: Engine::new(cfg, 0x77),
            shared: FakeStore::new(CasRules::Ngx),
            bucket: Bucket::new(),
            answers: Vec::new(),
            effects: Vec::new(),
            tick_ms: 1000,
            max_history_per_tick: 0,
            settled: 0,
            most_after_settling: 0,
        }
    }

    fn apply(&mut self, body: Vec<u8>) {
        let fx = self.engine.on_event(
            Event::ConfigApplied(Rc::new(body)),
            self.now,
            &mut self.shared,
        );
        self.effects.extend(fx);
    }

    /// Runs event by event (an answer due, the next tick) until `ms` from now.
    fn run_for(&mut self, ms: u64) {
        let until = self.now + ms;
        while self.now < until {
            let next_tick = (self.now - T0) / self.tick_ms * self.tick_ms + self.tick_ms + T0;
            let next_answer = self.answers.iter().map(|a| a.0).min().unwrap_or(u64::MAX);
            self.now = next_tick.min(next_answer).min(until);
            let now = self.now;
            let due: Vec<_> = self
                .answers
                .iter()
                .filter(|a| a.0 <= now)
                .cloned()
                .collect();
            self.answers.retain(|a| a.0 > now);
            for (_, id, response) in due {
                let fx = self.engine.on_event(
                    Event::CallAnswered { id, response },
                    now,
                    &mut self.shared,
                );
                self.settling(&fx);
                self.effects.extend(fx);
            }
            if !(now - T0).is_multiple_of(self.tick_ms) {
                continue;
            }
            let out = self.engine.tick(now, &mut self.shared);
            self.settling(&out.effects);
            self.effects.extend(out.effects);
            let history = out
                .dispatches
                .iter()
                .filter(|d| d.owner == Owner::History)
                .count();
            self.max_history_per_tick = self.max_history_per_tick.max(history);
            for d in out.dispatches {
                let resp = self.bucket.handle(&d.request, now);
                self.answers.push((now + 200, d.id, resp));
            }
        }
    }

    /// A cycle ended: how many history objects the bucket holds now.
    fn settling(&mut self, fx: &[Effect]) {
        if fx
            .iter()
            .any(|e| matches!(e, Effect::Metric(Metric::HistoryObjects, _)))
        {
            self.settled += 1;
            self.most_after_settling = self.most_after_settling.max(self.bucket.history().len());
        }
    }

    fn logs(&self, level: Level) -> Vec<String> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Log(l, m) if *l == level => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    fn metric(&self, metric: Metric) -> Option<u64> {
        self.effects.iter().rev().find_map(|e| match e {
            Effect::Metric(m, v) if *m == metric => Some(*v),
            _ => None,
        })
    }
}

#[test]
fn every_export_lands_in_history_with_the_same_bytes_and_metadata() {
    let mut sim = Sim::new(config(serde_json::json!({})));
    sim.apply(doc(1));
    sim.run_for(10_000);
    let latest = sim.bucket.objects[CONFIG].clone();
    let history = sim.bucket.history();
    assert_eq!(history.len(), 1, "{:?}", sim.bucket.objects.keys());
    let h = &sim.bucket.objects[&history[0].key];
    assert_eq!(h.body, latest.body);
    assert_eq!(h.meta, latest.meta, "the same metadata");
    let sha = latest
        .meta
        .iter()
        .find(|(k, _)| k == "x-amz-meta-config-sha256")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(sha.starts_with(&history[0].sha_prefix));
    // Written a tick after config.json (HEAD at +1 s, PUT at +2 s, history LIST at +3 s, its PUT
    // at +4 s): the key's time is when config.json was stored.
    assert_eq!(history[0].uploaded_at_ms, T0 + 2_000);
    assert!(history[0].key.starts_with(HISTORY));
    assert!(sim
        .logs(Level::Info)
        .iter()
        .any(|l| l
            .starts_with("history: recorded s3://bucket-1/kong/3.9.1/history/20261206T140002Z-")));
    // The history PUT was create-only.
    assert_eq!(sim.metric(Metric::HistoryObjects), Some(1));

    // The same content again (a reconfigure, a restart's HEAD): nothing new anywhere.
    sim.apply(doc(1));
    sim.run_for(10_000);
    assert_eq!(sim.bucket.history().len(), 1);
    assert_eq!(sim.bucket.count("PUT", HISTORY), 1);

    // A change, then back: three history objects, newest last, config.json the last one.
    sim.apply(doc(2));
    sim.run_for(10_000);
    sim.apply(doc(1));
    sim.run_for(10_000);
    let history = sim.bucket.history();
    assert_eq!(history.len(), 3);
    assert_eq!(sim.bucket.objects[&history[2].key].body, doc(1));
    assert_eq!(sim.bucket.objects[&history[1].key].body, doc(2));
    assert_eq!(sim.bucket.objects[CONFIG].body, doc(1));
    assert!(
        sim.logs(Level::Warn).is_empty(),
        "{:?}",
        sim.logs(Level::Warn)
    );
}

/// Kong Enterprise compatibility: with history on, config.json gets exactly the bytes,
/// metadata and requests (times, headers but the signature and the ETag it names, bodies) it
/// gets with history off.
#[test]
fn config_json_is_unchanged_by_history() {
    let run = |history: bool| {
        let mut sim = Sim::new(config(
            serde_json::json!({ "cluster_fallback_history": history }),
        ));
        for n in [1, 2, 3] {
            sim.apply(doc(n));
            sim.run_for(20_000);
        }
        let times: Vec<(u64, String)> = sim
            .bucket
            .seen
            .iter()
            .filter(|(_, _, k)| k == CONFIG)
            .map(|(t, m, _)| (*t, m.clone()))
            .collect();
        let latest = sim.bucket.objects[CONFIG].clone();
        (
            (latest.body, latest.meta),
            times,
            sim.bucket.config_requests.clone(),
            sim.bucket.history().len(),
        )
    };
    let with = run(true);
    let without = run(false);
    assert_eq!(with.0, without.0);
    assert_eq!(with.1, without.1);
    assert_eq!(with.2, without.2);
    assert_eq!(with.2.len(), 4, "HEAD, then three PUTs");
    assert_eq!((with.3, without.3), (3, 0));
}

#[test]
fn an_export_found_already_stored_is_recorded_once() {
    // The previous leader stored config.json and stopped before its history object.
    let mut first = Sim::new(config(
        serde_json::json!({ "cluster_fallback_history": false }),
    ));
    first.apply(doc(1));
    first.run_for(10_000);
    assert!(first.bucket.history().is_empty());
    let mut sim = Sim::new(config(serde_json::json!({})));
    sim.bucket.objects = first.bucket.objects.clone();
    sim.now = first.now + 60_000;
    sim.apply(doc(1));
    sim.run_for(10_000);
    assert_eq!(
        sim.bucket.count("PUT", CONFIG),
        0,
        "config.json is not uploaded again"
    );
    let history = sim.bucket.history();
    assert_eq!(history.len(), 1);
    assert_eq!(sim.bucket.objects[&history[0].key].body, doc(1));
    // A restart of the same node: the HEAD finds it, the listing shows it recorded.
    let mut again = Sim::new(config(serde_json::json!({})));
    again.bucket.objects = sim.bucket.objects.clone();
    again.now = sim.now + 60_000;
    again.apply(doc(1));
    again.run_for(10_000);
    assert_eq!(again.bucket.count("PUT", HISTORY), 0);
    assert!(again
        .logs(Level::Info)
        .iter()
        .any(|l| l.contains("already records this config")));
}

#[test]
fn the_newest_history_object_is_always_the_last_export_whatever_the_clocks() {
    let mut sim = Sim::new(config(serde_json::json!({})));
    // A previous leader's clock ran 10 minutes ahead.
    let ahead = crate::history::history_key(HISTORY, T0 + 10 * MIN, &"ab".repeat(32)).unwrap();
    sim.bucket.objects.insert(
        ahead.clone(),
        Object {
            body: doc(9),
            meta: vec![],
            etag: "\"x\"".into(),
        },
    );
    sim.apply(doc(1));
    sim.run_for(10_000);
    let history = sim.bucket.history();
    assert_eq!(history.len(), 2);
    let newest = crate::history::newest(&history).unwrap();
    assert_eq!(sim.bucket.objects[&newest.key].body, doc(1));
    assert_eq!(newest.uploaded_at_ms, T0 + 10 * MIN + 1000);
}

#[test]
fn foreign_objects_under_history_are_never_touched() {
    let mut sim = Sim::new(config(
        serde_json::json!({ "cluster_fallback_history_keep": 1 }),
    ));
    let old = crate::history::history_key(HISTORY, T0 - 100 * MIN, &"cd".repeat(32)).unwrap();
    let foreign = [
        format!("{HISTORY}notes.txt"),
        format!("{HISTORY}sub/20261206T130000Z-0123456789abcdef.json"),
        format!("{HISTORY}20261206T130000Z-0123456789ABCDEF.json"),
        format!("{HISTORY}20261206T130000Z-0123456789abcdef.json.bak"),
        "kong/3.9.1/election/1796565600000-node-b".to_string(),
    ];
    for k in foreign.iter().chain([&old]) {
        sim.bucket.objects.insert(
            k.clone(),
            Object {
                body: b"x".to_vec(),
                meta: vec![],
                etag: "\"f\"".into(),
            },
        );
    }
    sim.apply(doc(1));
    sim.run_for(10_000);
    for k in &foreign {
        assert!(sim.bucket.objects.contains_key(k), "{k} was deleted");
    }
    assert!(!sim.bucket.objects.contains_key(&old), "beyond keep 1");
    assert!(sim.bucket.objects.contains_key(CONFIG));
    assert_eq!(sim.bucket.history().len(), 1);
}

#[test]
fn a_long_prune_goes_twenty_deletions_a_cycle_one_request_a_tick() {
    let mut sim = Sim::new(config(
        serde_json::json!({ "cluster_fallback_history_keep": 5 }),
    ));
    sim.bucket.page_size = 10;
    for i in 0..45u64 {
        let key = crate::history::history_key(
            HISTORY,
            T0 - (i + 1) * MIN,
            &format!("{i:02x}{}", "0".repeat(62)),
        )
        .unwrap();
        sim.bucket.objects.insert(
            key,
            Object {
                body: b"{}".to_vec(),
                meta: vec![],
                etag: "\"o\"".into(),
            },
        );
    }
    sim.apply(doc(1));
    sim.run_for(120_000);
    // 46 objects, keep 5: 41 deletions in three cycles (20, 20, 1), listed in pages of 10.
    assert_eq!(sim.bucket.history().len(), 5);
    assert_eq!(sim.bucket.count("DELETE", HISTORY), 41);
    assert_eq!(sim.max_history_per_tick, 1);
    let newest = crate::history::newest(&sim.bucket.history())
        .unwrap()
        .clone();
    assert_eq!(sim.bucket.objects[&newest.key].body, doc(1));
    assert_eq!(sim.metric(Metric::HistoryObjects), Some(5));
    let pruning: Vec<String> = sim
        .logs(Level::Info)
        .into_iter()
        .filter(|l| l.starts_with("history: pruned"))
        .collect();
    assert_eq!(pruning.len(), 3, "{pruning:?}");
    assert!(
        pruning[0]
            .contains("pruned 20 object(s) beyond retention (keep 5, max age 2592000 s); 26 kept"),
        "{pruning:?}"
    );
    assert!(pruning[2].ends_with("; 5 kept"), "{pruning:?}");
}

/// Retention over 10,000 virtual minutes of exports with failures injected on every kind of
/// request: every DELETE is checked against retention as the bucket is when it arrives
/// (nothing within retention, never the newest, nothing but history objects); every cycle
/// that ends leaves at most `keep`; the newest history object is what config.json holds.
#[test]
fn retention_holds_over_ten_thousand_minutes_with_faults() {
    let keep = 4usize;
    let max_age = 45 * MIN;
    let mut sim = Sim::new(config(serde_json::json!({
        "cluster_fallback_history_keep": keep,
        "cluster_fallback_history_max_age": max_age / 1000,
        "lease_ttl_ms": 60_000,
    })));
    // A tick every 10 s keeps the test to seconds (a debug-build tick costs ~0.1 ms).
    sim.tick_ms = 10_000;
    sim.bucket.retention = Some((keep, max_age));
    sim.bucket.page_size = 3;
    let mut rng = crate::backoff::Rng::new(42);
    let mut fail_rng = crate::backoff::Rng::new(4242);
    sim.bucket.fail = Some(Box::new(move |_, key| {
        // History requests fail one time in five, config.json ones once in twenty.
        let odds = if key.starts_with(HISTORY) { 5 } else { 20 };
        fail_rng.next_u64().is_multiple_of(odds)
    }));
    let mut n = 0;
    let end = T0 + 10_000 * MIN;
    while sim.now < end {
        // A change every 5–40 minutes.
        n += 1;
        sim.apply(doc(n));
        let wait = (rng.next_u64() % 36 + 5) * MIN;
        sim.run_for(wait.min(end - sim.now));
        // Minutes after the change, retries included: the newest history object is what
        // config.json holds.
        let latest = &sim.bucket.objects[CONFIG];
        let history = sim.bucket.history();
        let newest = crate::history::newest(&history).unwrap();
        assert_eq!(
            sim.bucket.objects[&newest.key].body,
            latest.body,
            "at {}",
            sim.now - T0
        );
    }
    assert!(
        sim.bucket.violations.is_empty(),
        "{:?}",
        sim.bucket.violations
    );
    assert!(
        sim.most_after_settling <= keep,
        "{} > {keep}",
        sim.most_after_settling
    );
    assert!(n > 400, "{n} changes");
    assert!(sim.settled > 300, "{} cycles", sim.settled);
    let failures = sim
        .effects
        .iter()
        .filter(|e| matches!(e, Effect::Metric(Metric::HistoryFailuresTotal, _)))
        .count();
    assert!(failures > 100, "{failures} history failures injected");
    assert!(sim.bucket.count("DELETE", HISTORY) > 300);
    assert!(sim.bucket.count("DELETE", CONFIG) == 0);
}

/// An import-only configuration pinned to `version`.
fn pinned(version: &str) -> Result<Config, crate::settings::ConfigError> {
    let v = serde_json::json!({
        "cluster_fallback_config_import": true,
        "cluster_fallback_config_storage": "s3://bucket-1/kong",
        "gateway_version": "3.9.1",
        "aws_access_key_id": "AKID",
        "aws_secret_access_key": "S",
        "aws_region": "us-east-1",
        "cluster_fallback_import_version": version,
    });
    Config::parse(v.to_string().as_bytes(), &|_| None)
}

#[test]
fn the_import_can_be_pinned_to_a_history_object() {
    let id = "20261206T140000Z-0123456789abcdef";
    let cfg = pinned(id).unwrap();
    assert_eq!(cfg.import_key(), format!("{HISTORY}{id}.json"));
    assert_eq!(cfg.config_key(), CONFIG);
    for bad in [
        "latest",
        "20261206T140000Z",
        "20261206T140000Z-0123456789ABCDEF",
        "20260431T140000Z-0123456789abcdef",
        "../config",
        "20261206T140000Z-0123456789abcdef.json",
    ] {
        let e = pinned(bad).unwrap_err();
        assert_eq!(e.field, "cluster_fallback_import_version", "{bad}");
    }
}
