//! The engine driven by a small simulation: several root contexts of one node sharing a fake
//! shared-data store (either CAS rule), a fake S3 that honours conditional writes, a virtual clock.

use std::collections::HashMap;
use std::rc::Rc;

use super::*;
use crate::node_lock::fake::{CasRules, FakeStore};

fn config(doc: &str, extra: serde_json::Value) -> Config {
    let mut v = serde_json::json!({
        "cluster_fallback_config_export": true,
        "cluster_fallback_config_storage": "s3://bucket-1/kong",
        "gateway_version": "3.9.1",
        "aws_access_key_id": "AKID",
        "aws_secret_access_key": "SECRETKEY",
        "aws_region": "us-east-1",
        "storage_endpoint": "http://127.0.0.1:9000",
        "node_id": "node-a",
        // One node per simulation: the election has its own tests (election_tests.rs).
        "election": false,
        // These tests count the export's requests: history has its own (history_tests.rs).
        "cluster_fallback_history": false,
        "config": serde_json::from_str::<serde_json::Value>(doc).unwrap(),
    });
    if let serde_json::Value::Object(m) = extra {
        for (k, val) in m {
            v[k] = val;
        }
    }
    Config::parse(v.to_string().as_bytes(), &|_| None).unwrap()
}

fn doc(name: &str) -> String {
    format!(r#"{{"_format_version":"3.0","services":[{{"name":"{name}"}}]}}"#)
}

#[derive(Clone, Debug)]
struct Object {
    body: Vec<u8>,
    etag: String,
    meta: Vec<(String, String)>,
}

#[derive(Default)]
struct FakeS3 {
    objects: HashMap<String, Object>,
    puts: Vec<(u64, Vec<u8>)>,
    next_etag: u32,
    /// Status codes to answer the next PUTs with (front first).
    fail_next: Vec<u16>,
    /// Status codes to answer the next HEADs with (front first).
    fail_heads: Vec<u16>,
    /// Answer nothing at all (a host that never calls back).
    blackhole: bool,
}

impl FakeS3 {
    fn handle(&mut self, req: &OutboundRequest, now: u64) -> HttpResponse {
        let key = req.path.clone();
        let cur = self.objects.get(&key).cloned();
        let resp = |status: u16, headers: Vec<(String, String)>, body: &str| HttpResponse {
            status,
            headers,
            body: body.as_bytes().to_vec(),
        };
        match req.method.as_str() {
            "HEAD" if !self.fail_heads.is_empty() => resp(self.fail_heads.remove(0), vec![], ""),
            "HEAD" => match cur {
                None => resp(404, vec![], ""),
                Some(o) => {
                    let mut h = o.meta.clone();
                    h.push(("etag".into(), o.etag.clone()));
                    resp(200, h, "")
                }
            },
            "GET" => match cur {
                None => resp(404, vec![], "<Error><Code>NoSuchKey</Code></Error>"),
                Some(o) if req.header("if-none-match") == Some(o.etag.as_str()) => {
                    resp(304, vec![], "")
                }
                Some(o) => {
                    let mut h = o.meta.clone();
                    h.push(("etag".into(), o.etag.clone()));
                    HttpResponse {
                        status: 200,
                        headers: h,
                        body: o.body.clone(),
                    }
                }
            },
            "PUT" => {
                if !self.fail_next.is_empty() {
                    let s = self.fail_next.remove(0);
                    return resp(s, vec![], "<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>");
                }
                let ok = match (req.header("if-match"), req.header("if-none-match"), &cur) {
                    (Some(m), _, Some(o)) => m == o.etag,
                    (Some(_), _, None) => false,
                    (None, Some("*"), Some(_)) => false,
                    _ => true,
                };
                if !ok {
                    return resp(412, vec![], "<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>");
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
                        etag: etag.clone(),
                        meta,
                    },
                );
                self.puts.push((now, req.body.to_vec()));
                resp(200, vec![("etag".into(), etag)], "")
            }
            _ => resp(405, vec![], ""),
        }
    }

    fn put_bodies(&self) -> Vec<(u64, String)> {
        self.puts
            .iter()
            .map(|(t, b)| (*t, String::from_utf8_lossy(b).to_string()))
            .collect()
    }
}

struct Sim {
    now: u64,
    shared: FakeStore,
    engines: Vec<Option<Engine>>,
    s3: FakeS3,
    latency_ms: u64,
    in_flight: Vec<(u64, usize, CallId, HttpResponse)>,
    effects: Vec<(usize, Effect)>,
    dispatches: Vec<(u64, usize, Dispatch)>,
}

impl Sim {
    fn new(rules: CasRules, n: usize, cfg: &Config) -> Sim {
        let engines = (0..n)
            .map(|i| Some(Engine::new(cfg.clone(), 0x1000 + i as u64)))
            .collect();
        Sim {
            now: 0,
            shared: FakeStore::new(rules),
            engines,
            s3: FakeS3::default(),
            latency_ms: 200,
            in_flight: Vec::new(),
            effects: Vec::new(),
            dispatches: Vec::new(),
        }
    }

    /// Every live root context receives the configuration (each worker's `on_configure`).
    fn apply_all(&mut self, body: &str) {
        for i in 0..self.engines.len() {
            let now = self.now;
            if let Some(e) = self.engines[i].as_mut() {
                let fx = e.on_event(
                    Event::ConfigApplied(Rc::new(body.as_bytes().to_vec())),
                    now,
                    &mut self.shared,
                );
                self.effects.extend(fx.into_iter().map(|f| (i, f)));
            }
        }
    }

    /// Advances in 100 ms steps; every root context ticks each full second.
    fn run_until(&mut self, until: u64) {
        while self.now < until {
            self.now += 100;
            let now = self.now;
            let due: Vec<_> = self
                .in_flight
                .iter()
                .filter(|(t, ..)| *t <= now)
                .cloned()
                .collect();
            self.in_flight.retain(|(t, ..)| *t > now);
            for (_, i, id, response) in due {
                if let Some(e) = self.engines[i].as_mut() {
                    let fx =
                        e.on_event(Event::CallAnswered { id, response }, now, &mut self.shared);
                    self.effects.extend(fx.into_iter().map(|f| (i, f)));
                }
            }
            if !now.is_multiple_of(1000) {
                continue;
            }
            for i in 0..self.engines.len() {
                let Some(e) = self.engines[i].as_mut() else {
                    continue;
                };
                let out = e.tick(now, &mut self.shared);
                self.effects.extend(out.effects.into_iter().map(|f| (i, f)));
                for d in out.dispatches {
                    self.dispatches.push((now, i, d.clone()));
                    if !self.s3.blackhole {
                        let resp = self.s3.handle(&d.request, now);
                        self.in_flight.push((now + self.latency_ms, i, d.id, resp));
                    }
                }
            }
        }
    }

    /// The methods of every request sent so far.
    fn methods(&self) -> Vec<String> {
        self.dispatches
            .iter()
            .map(|(_, _, d)| d.request.method.clone())
            .collect()
    }

    fn logs(&self, level: Level) -> Vec<String> {
        self.effects
            .iter()
            .filter_map(|(_, e)| match e {
                Effect::Log(l, m) if *l == level => Some(m.clone()),
                _ => None,
            })
            .collect()
    }
}

const RULES: [CasRules; 2] = [CasRules::Ngx, CasRules::Envoy];

#[test]
fn four_root_contexts_export_once_per_change_with_kong_debounce() {
    for rules in RULES {
        let cfg = config(&doc("A"), serde_json::json!({}));
        // 2 workers × 2 filter instances.
        let mut sim = Sim::new(rules, 4, &cfg);
        sim.apply_all(&doc("A"));
        sim.run_until(10_000);
        sim.apply_all(&doc("B"));
        sim.run_until(20_000);
        sim.apply_all(&doc("C"));
        sim.run_until(30_000);
        sim.apply_all(&doc("D"));
        sim.run_until(200_000);
        // A: HEAD at 1 s (the node does not know the object yet), PUT on the next tick. The
        // debounce counts from the export's start, so D still goes at 61 s.
        assert_eq!(
            sim.s3.put_bodies(),
            vec![(2000, doc("A")), (61_000, doc("D"))],
            "{rules:?}"
        );
        let exported = sim
            .logs(Level::Info)
            .into_iter()
            .filter(|l| l.starts_with("exported config"))
            .collect::<Vec<_>>();
        assert_eq!(exported.len(), 2);
        assert!(
            exported[0].contains("s3://bucket-1/kong/3.9.1/config.json"),
            "{}",
            exported[0]
        );
        assert!(
            exported[0].contains(&format!("({} bytes", doc("A").len())),
            "{}",
            exported[0]
        );
        // HEAD at 1 s, its answer at 1.2 s, the PUT at 2 s answered at 2.2 s.
        assert!(exported[0].contains("in 1200 ms"), "{}", exported[0]);
        // Asked first, then the first write was create-only, the second replaced exactly what
        // we wrote.
        assert_eq!(sim.dispatches[0].2.request.method, "HEAD");
        assert_eq!(
            sim.dispatches[1].2.request.header("if-none-match"),
            Some("*")
        );
        assert_eq!(
            sim.dispatches[2].2.request.header("if-match"),
            Some("\"etag-1\"")
        );
        assert_eq!(
            sim.dispatches[1].2.request.header("x-amz-meta-uploader"),
            Some("node-a")
        );
    }
}

#[test]
fn a_change_seen_by_only_some_root_contexts_is_exported_by_one_of_them() {
    for rules in RULES {
        let cfg = config(&doc("A"), serde_json::json!({}));
        // Engines 0, 2: filter instance 1 on workers 0, 1; engines 1, 3: filter instance 2.
        let mut sim = Sim::new(rules, 4, &cfg);
        sim.apply_all(&doc("A"));
        sim.run_until(100_000);
        // Only filter instance 2 gets B (its own config changed); the holder (engine 0) has A.
        for i in [1, 3] {
            let now = sim.now;
            let e = sim.engines[i].as_mut().unwrap();
            let fx = e.on_event(
                Event::ConfigApplied(Rc::new(doc("B").into_bytes())),
                now,
                &mut sim.shared,
            );
            sim.effects.extend(fx.into_iter().map(|f| (i, f)));
        }
        sim.run_until(300_000);
        assert_eq!(
            sim.s3.put_bodies(),
            vec![(2000, doc("A")), (101_000, doc("B"))],
            "{rules:?}"
        );
        assert!(matches!(sim.dispatches[2].1, 1 | 3), "{rules:?}");
        // Back to A on instance 1 later: newest again, exported by an instance-1 root context.
        sim.apply_all(&doc("A"));
        sim.run_until(400_000);
        assert_eq!(
            sim.s3.put_bodies().last(),
            Some(&(300_000 + 1000, doc("A")))
        );
    }
}

#[test]
fn identical_content_and_reconfigures_do_not_upload_again() {
    for rules in RULES {
        let cfg = config(
            &doc("A"),
            serde_json::json!({"cluster_fallback_config_export_delay": 5}),
        );
        let mut sim = Sim::new(rules, 2, &cfg);
        sim.apply_all(&doc("A"));
        sim.run_until(30_000);
        sim.apply_all(&doc("A"));
        sim.run_until(60_000);
        assert_eq!(sim.s3.puts.len(), 1, "{rules:?}");
    }
}

#[test]
fn change_during_upload_is_exported_after_it() {
    let cfg = config(
        &doc("A"),
        serde_json::json!({"cluster_fallback_config_export_delay": 10}),
    );
    let mut sim = Sim::new(CasRules::Ngx, 2, &cfg);
    sim.latency_ms = 3000;
    sim.apply_all(&doc("A"));
    // HEAD at 1 s answered at 4 s; A's PUT dispatched at 4 s, answered at 7 s.
    sim.run_until(5000);
    sim.apply_all(&doc("B"));
    sim.run_until(40_000);
    assert_eq!(
        sim.s3.put_bodies(),
        vec![(4000, doc("A")), (11_000, doc("B"))]
    );
}

#[test]
fn failures_retry_with_backoff_and_a_newer_config_replaces_the_pending_retry() {
    let cfg = config(
        &doc("A"),
        serde_json::json!({"retry_base_ms": 4000, "retry_max_ms": 8000, "cluster_fallback_config_export_delay": 1}),
    );
    let mut sim = Sim::new(CasRules::Envoy, 2, &cfg);
    sim.s3.fail_next = vec![500];
    sim.apply_all(&doc("A"));
    // HEAD at 1 s; A's PUT at 2 s fails at 2.2 s.
    sim.run_until(2500);
    sim.apply_all(&doc("B"));
    sim.run_until(30_000);
    let warns = sim.logs(Level::Warn);
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert!(
        warns[0].contains("HTTP 500 InternalError: We encountered an internal error"),
        "{}",
        warns[0]
    );
    assert!(warns[0].contains("retry 1 in "), "{}", warns[0]);
    // The retry (2–4 s after the failure at 2.2 s) carries B, not A; A is never stored.
    let puts = sim.s3.put_bodies();
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].1, doc("B"));
    assert!((4000..=7000).contains(&puts[0].0), "retry at {}", puts[0].0);
    // The object's state was learnt once: the retry goes straight to the PUT.
    let methods: Vec<_> = sim
        .dispatches
        .iter()
        .map(|(_, _, d)| d.request.method.as_str())
        .collect();
    assert_eq!(methods, ["HEAD", "PUT", "PUT"]);
    assert!(!sim
        .effects
        .iter()
        .any(|(_, e)| matches!(e, Effect::Log(_, m) if m.contains("SECRETKEY"))));
}

#[test]
fn no_callback_times_out_and_a_late_answer_is_ignored() {
    let cfg = config(
        &doc("A"),
        serde_json::json!({"call_timeout_ms": 5000, "retry_base_ms": 1000, "retry_max_ms": 1000}),
    );
    let mut e = Engine::new(cfg, 7);
    let mut shared = FakeStore::new(CasRules::Ngx);
    e.on_event(
        Event::ConfigApplied(Rc::new(doc("A").into_bytes())),
        0,
        &mut shared,
    );
    let d = e
        .tick(1000, &mut shared)
        .dispatches
        .into_iter()
        .next()
        .expect("upload dispatched");
    assert!(e.tick(2000, &mut shared).dispatches.is_empty());
    assert!(
        e.tick(5999, &mut shared).effects.is_empty(),
        "not yet timed out"
    );
    let out = e.tick(6000, &mut shared);
    // The shell forgets the host token of a call given up.
    assert_eq!(out.expired, vec![d.id]);
    assert!(
        out.effects.iter().any(
            |f| matches!(f, Effect::Log(Level::Warn, m) if m.contains("no answer within 5000 ms"))
        ),
        "{:?}",
        out.effects
    );
    assert!(out
        .effects
        .contains(&Effect::Metric(Metric::ExportFailuresTotal, 1)));
    // The late answer of the abandoned call changes nothing.
    let ok = HttpResponse {
        status: 200,
        headers: vec![("etag".into(), "\"x\"".into())],
        body: vec![],
    };
    let fx = e.on_event(
        Event::CallAnswered {
            id: d.id,
            response: ok,
        },
        6500,
        &mut shared,
    );
    assert!(
        fx.iter().all(|f| matches!(f, Effect::Log(Level::Debug, _))),
        "{fx:?}"
    );
    // The retry comes 0.5–1 s after the timeout.
    let retry = (6100..=7000).step_by(100).find_map(|t| {
        e.tick(t, &mut shared)
            .dispatches
            .into_iter()
            .next()
            .map(|d| (t, d))
    });
    let (t, d2) = retry.expect("retried");
    assert!(t >= 6500, "retry at {t}");
    assert_ne!(d2.id, d.id);
}

#[test]
fn a_dead_holder_is_replaced_after_its_lease_and_call_expire() {
    for rules in RULES {
        let cfg = config(
            &doc("A"),
            serde_json::json!({"call_timeout_ms": 4000, "lease_ttl_ms": 3000}),
        );
        let mut sim = Sim::new(rules, 3, &cfg);
        sim.s3.blackhole = true;
        sim.apply_all(&doc("A"));
        sim.run_until(1000);
        assert_eq!(sim.dispatches.len(), 1);
        let holder = sim.dispatches[0].1;
        sim.engines[holder] = None; // the worker dies mid-upload
        sim.s3.blackhole = false;
        sim.run_until(30_000);
        let puts = sim.s3.put_bodies();
        assert_eq!(puts.len(), 1, "{rules:?}: {puts:?}");
        // Lease held until the call deadline (5 s); taken over on the first tick after it (a
        // HEAD at 6 s, the PUT at 7 s).
        assert_eq!(puts[0].0, 7000, "{rules:?}");
        assert_ne!(sim.dispatches[1].1, holder);
    }
}

#[test]
fn a_newer_config_from_another_node_is_not_overwritten() {
    let cfg = config(&doc("A"), serde_json::json!({}));
    let mut sim = Sim::new(CasRules::Ngx, 1, &cfg);
    // Another node wrote its config at t = 500 s (after ours was seen at t = 0).
    sim.s3.objects.insert(
        "/bucket-1/kong/3.9.1/config.json".into(),
        Object {
            body: doc("OTHER").into_bytes(),
            etag: "\"other\"".into(),
            meta: vec![
                ("x-amz-meta-config-applied-at".into(), "500000".into()),
                ("x-amz-meta-uploader".into(), "node-b".into()),
            ],
        },
    );
    sim.apply_all(&doc("A"));
    sim.run_until(10_000);
    let methods = sim.methods();
    // Asked first: the newer object is seen before any body is sent.
    assert_eq!(methods, ["HEAD"]);
    assert!(sim.s3.puts.is_empty());
    assert_eq!(
        sim.s3.objects["/bucket-1/kong/3.9.1/config.json"].body,
        doc("OTHER").into_bytes()
    );
    assert!(sim
        .logs(Level::Info)
        .iter()
        .any(|l| l.contains("holds a newer config (uploaded by node-b")));
    // Our next change is newer: it replaces the object, conditioned on the ETag just read.
    sim.now = 600_000;
    sim.apply_all(&doc("B"));
    sim.run_until(610_000);
    assert_eq!(sim.s3.put_bodies(), vec![(601_000, doc("B"))]);
    assert_eq!(
        sim.dispatches.last().unwrap().2.request.header("if-match"),
        Some("\"other\"")
    );
}

/// An object written by Kong itself (no config-bridge metadata) is replaced, with `If-Match` on
/// its ETag, carrying the next `config-sequence`.
#[test]
fn an_older_foreign_object_is_replaced_with_if_match() {
    let cfg = config(&doc("A"), serde_json::json!({}));
    let mut sim = Sim::new(CasRules::Envoy, 2, &cfg);
    sim.now = 100_000;
    // Written by Kong itself (no config-bridge metadata).
    sim.s3.objects.insert(
        "/bucket-1/kong/3.9.1/config.json".into(),
        Object {
            body: doc("OLD").into_bytes(),
            etag: "\"old\"".into(),
            meta: vec![],
        },
    );
    sim.apply_all(&doc("A"));
    sim.run_until(110_000);
    assert_eq!(sim.methods(), ["HEAD", "PUT"]);
    let put = &sim.dispatches[1].2.request;
    assert_eq!(put.header("if-match"), Some("\"old\""));
    assert_eq!(put.header("x-amz-meta-config-sequence"), Some("1"));
    assert_eq!(sim.s3.put_bodies(), vec![(102_000, doc("A"))]);
}

/// The issue's stale node: another node exported C5 a minute ago; this node restarts from a
/// cache holding C2 (seen "now" by its clock, later than the export's `config-applied-at`). Kong's
/// logical time (the entities' newest `updated_at`) says C5 is newer: it is kept (before, the later
/// first-seen time let C2 overwrite it). Its next change is exported, with the next sequence.
#[test]
fn a_node_restarted_from_a_stale_config_does_not_overwrite_the_newer_export() {
    let c = |v: u32| {
        format!(
            r#"{{"_format_version":"3.0","services":[{{"name":"svc-{v}","updated_at":{}}}]}}"#,
            1_700_000_000 + v
        )
    };
    // A host clock in 2023, as Kong's timestamps (a logical time far past the clock is not
    // believed).
    const T0: u64 = 1_700_000_000_000;
    {
        let cfg = config(&c(2), serde_json::json!({}));
        let mut sim = Sim::new(CasRules::Ngx, 2, &cfg);
        sim.now = T0 + 600_000;
        let mut meta = vec![
            (
                "x-amz-meta-config-applied-at".to_string(),
                (T0 + 540_000).to_string(),
            ),
            ("x-amz-meta-uploader".to_string(), "node-b".to_string()),
            ("x-amz-meta-config-sequence".to_string(), "5".to_string()),
        ];
        meta.push((
            "x-amz-meta-config-updated-at".to_string(),
            "1700000005000".to_string(),
        ));
        sim.s3.objects.insert(
            "/bucket-1/kong/3.9.1/config.json".into(),
            Object {
                body: c(5).into_bytes(),
                etag: "\"c5\"".into(),
                meta,
            },
        );
        sim.apply_all(&c(2));
        sim.run_until(T0 + 700_000);
        assert!(sim.s3.puts.is_empty(), "{:?}", sim.s3.put_bodies());
        let kept: Vec<String> = sim
            .logs(Level::Info)
            .into_iter()
            .filter(|l| l.contains("holds a newer config (uploaded by node-b"))
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!(kept[0].contains("entities were updated later"), "{kept:?}");
        // A change seen while running: exported over C5, conditioned on its ETag, sequence 6.
        sim.apply_all(&c(6));
        sim.run_until(T0 + 710_000);
        assert_eq!(sim.s3.put_bodies(), vec![(T0 + 701_000, c(6))]);
        let put = &sim.dispatches.last().unwrap().2.request;
        assert_eq!(put.header("if-match"), Some("\"c5\""));
        assert_eq!(put.header("x-amz-meta-config-sequence"), Some("6"));
        assert_eq!(
            put.header("x-amz-meta-config-updated-at"),
            Some("1700000006000")
        );
        // And the next one carries 7.
        sim.apply_all(&c(7));
        sim.run_until(T0 + 800_000);
        assert_eq!(sim.s3.put_bodies().last().map(|p| p.1.clone()), Some(c(7)));
        let put = &sim.dispatches.last().unwrap().2.request;
        assert_eq!(put.header("x-amz-meta-config-sequence"), Some("7"));
    }
}

/// Every write names the configs it superseded (`config-supersedes`, newest first). A node
/// restarted from a cache holding one of them keeps the stored config, without Kong's logical time
/// and although its clock saw its config later; a restart or reload with a config never exported
/// replaces it and extends the list.
#[test]
fn a_config_exported_and_replaced_since_does_not_come_back_with_a_restart() {
    let short = |d: &str| crate::document::sha256_hex(d.as_bytes())[..12].to_string();
    let sim = exported_a_b_c();
    let bodies: Vec<String> = sim.s3.put_bodies().into_iter().map(|p| p.1).collect();
    assert_eq!(bodies, [doc("A"), doc("B"), doc("C")]);
    let supersedes: Vec<Option<String>> = sim
        .dispatches
        .iter()
        .filter(|d| d.2.request.method == "PUT")
        .map(|d| {
            d.2.request
                .header("x-amz-meta-config-supersedes")
                .map(str::to_string)
        })
        .collect();
    let (a, b) = (short(&doc("A")), short(&doc("B")));
    assert_eq!(
        supersedes,
        [None, Some(a.clone()), Some(format!("{b},{a}"))]
    );

    // Restarts (fresh shared data), the stored C carried over.
    let restart = |body: &str| {
        let mut node = Sim::new(CasRules::Ngx, 2, &config(body, serde_json::json!({})));
        node.s3.objects = sim.s3.objects.clone();
        node.now = 400_000;
        node.apply_all(body);
        node.run_until(500_000);
        node
    };
    let stale = restart(&doc("A"));
    assert_eq!(stale.methods(), ["HEAD"]);
    assert!(
        stale
            .logs(Level::Info)
            .iter()
            .any(|l| l.contains("holds a newer config") && l.contains("superseded this config")),
        "{:?}",
        stale.logs(Level::Info)
    );
    let fresh = restart(&doc("D"));
    assert_eq!(fresh.methods(), ["HEAD", "PUT"]);
    let put = &fresh.dispatches[1].2.request;
    let c = short(&doc("C"));
    assert_eq!(
        put.header("x-amz-meta-config-supersedes"),
        Some(format!("{c},{b},{a}").as_str())
    );
    assert_eq!(put.header("x-amz-meta-config-sequence"), Some("4"));
}

/// A node that exported A, then B, then C (each replacing the one before).
fn exported_a_b_c() -> Sim {
    let cfg = config(&doc("A"), serde_json::json!({}));
    let mut sim = Sim::new(CasRules::Ngx, 2, &cfg);
    for (i, v) in ["A", "B", "C"].into_iter().enumerate() {
        sim.apply_all(&doc(v));
        sim.run_until((i as u64 + 1) * 100_000);
    }
    sim
}

/// A node restarted from a cache holding A (stored: C, which superseded B and A) whose first HEAD
/// is answered 500 asks again before any upload, and keeps C. Without conditional writes the retry
/// was an unconditional PUT of A over C, the object never read (the chaos test without conditional
/// writes, `CHAOS_SEED=2`: a node restarted from its bootstrap config v1 stored it over v439).
/// With them the retry is `If-None-Match: *`, whose 412 brings the HEAD back.
#[test]
fn a_failed_head_is_never_followed_by_a_write_over_the_object_unread() {
    let stored = exported_a_b_c().s3.objects;
    for (conditional, methods) in [
        (false, ["HEAD", "HEAD"].as_slice()),
        (true, &["HEAD", "PUT", "HEAD"]),
    ] {
        let cfg = config(
            &doc("A"),
            serde_json::json!({ "s3_conditional_writes": conditional }),
        );
        let mut node = Sim::new(CasRules::Ngx, 2, &cfg);
        node.s3.objects = stored.clone();
        node.s3.fail_heads = vec![500];
        node.now = 400_000;
        node.apply_all(&doc("A"));
        node.run_until(500_000);
        assert_eq!(node.methods(), methods, "conditional writes {conditional}");
        assert!(node.s3.puts.is_empty(), "{:?}", node.s3.put_bodies());
        assert!(
            node.logs(Level::Info)
                .iter()
                .any(|l| l.contains("holds a newer config") && l.contains("superseded this config")),
            "{:?}",
            node.logs(Level::Info)
        );
    }
}

/// The effects of the host failing the engine's first request with `reason`.
fn first_request_fails(reason: &str) -> Vec<Effect> {
    let cfg = config(&doc("A"), serde_json::json!({}));
    let mut e = Engine::new(cfg, 9);
    let mut shared = FakeStore::new(CasRules::Ngx);
    e.on_event(
        Event::ConfigApplied(Rc::new(doc("A").into_bytes())),
        0,
        &mut shared,
    );
    let d = e
        .tick(1000, &mut shared)
        .dispatches
        .into_iter()
        .next()
        .expect("a request");
    e.on_event(
        Event::CallFailed {
            id: d.id,
            reason: reason.into(),
        },
        1500,
        &mut shared,
    )
}

#[test]
fn dispatch_failure_from_the_host_is_a_failed_export() {
    let fx = first_request_fails("broken connection");
    assert!(fx.iter().any(|f| matches!(f, Effect::Log(Level::Warn, m) if m.contains("request to 127.0.0.1:9000 failed: broken connection"))), "{fx:?}");
}

fn import_config(extra: serde_json::Value) -> Config {
    let mut v: serde_json::Value = serde_json::json!({
        "cluster_fallback_config_import": "on",
        "cluster_fallback_config_storage": "s3://bucket-1/kong",
        "gateway_version": "3.9.1",
        "aws_access_key_id": "AKID",
        "aws_secret_access_key": "S",
        "aws_region": "us-east-1",
        "storage_endpoint": "http://127.0.0.1:9000",
        "kong_admin_url": "http://127.0.0.1:8001",
        "import_grace_period": 2,
        "import_check_interval": 1,
        "node_id": "n"
    });
    if let serde_json::Value::Object(m) = extra {
        for (k, val) in m {
            v[k] = val;
        }
    }
    Config::parse(v.to_string().as_bytes(), &|_| None).unwrap()
}

/// A fallback node's Admin API: `/status` with `hash`, `/services` with `services`, and
/// `POST /config` answered with the scripted statuses (then 201), bodies recorded.
struct FakeNode {
    hash: String,
    services: serde_json::Value,
    post_statuses: Vec<u16>,
    posted: Vec<(u16, Vec<u8>)>,
}

impl FakeNode {
    fn handle(&mut self, req: &OutboundRequest) -> HttpResponse {
        let json = |status: u16, v: serde_json::Value| HttpResponse {
            status,
            headers: vec![],
            body: v.to_string().into_bytes(),
        };
        match (
            req.method.as_str(),
            req.path.split('?').next().unwrap_or(""),
        ) {
            ("GET", "/status") => json(200, serde_json::json!({"configuration_hash": self.hash})),
            ("GET", "/services") => json(
                200,
                serde_json::json!({"data": self.services, "next": null}),
            ),
            ("POST", "/config") => {
                let status = if self.post_statuses.is_empty() {
                    201
                } else {
                    self.post_statuses.remove(0)
                };
                self.posted.push((status, req.body.to_vec()));
                if status == 201 {
                    self.hash = "1".repeat(32);
                }
                json(status, serde_json::json!({"message": "scripted"}))
            }
            _ => json(404, serde_json::json!({"message": "Not found"})),
        }
    }
}

/// Runs one engine, answering storage calls from `s3` and Admin API calls from `node`.
fn run_import(
    e: &mut Engine,
    s3: &mut FakeS3,
    node: &mut FakeNode,
    until: u64,
) -> Vec<(u64, OutboundRequest)> {
    let mut shared = FakeStore::new(CasRules::Ngx);
    let mut sent = Vec::new();
    for now in (0..until).step_by(1000) {
        for d in e.tick(now, &mut shared).dispatches {
            let resp = if d.request.upstream == "127.0.0.1:8001" {
                node.handle(&d.request)
            } else {
                s3.handle(&d.request, now)
            };
            sent.push((now, d.request.clone()));
            e.on_event(
                Event::CallAnswered {
                    id: d.id,
                    response: resp,
                },
                now + 100,
                &mut shared,
            );
        }
    }
    sent
}

#[test]
fn an_empty_node_imports_the_last_export_once_after_the_grace_period() {
    let mut e = Engine::new(import_config(serde_json::json!({})), 3);
    e.set_own_filter_config(Some(Rc::new(
        br#"{"cluster_fallback_config_import":"on"}"#.to_vec(),
    )));
    let mut s3 = FakeS3::default();
    let body = serde_json::json!({
        "_format_version": "3.0",
        "services": [{"id": "s1", "name": "a"}],
        "filter_chains": [{"id": "f", "service": "s1", "filters": [{"name": "config_bridge", "config": {"cluster_fallback_config_export": "on"}}]}]
    })
    .to_string();
    s3.objects.insert(
        "/bucket-1/kong/3.9.1/config.json".into(),
        Object {
            body: body.clone().into_bytes(),
            etag: "\"e1\"".into(),
            meta: vec![],
        },
    );
    let mut node = FakeNode {
        hash: "0".repeat(32),
        services: serde_json::json!([]),
        post_statuses: vec![503, 429],
        posted: vec![],
    };
    let sent = run_import(&mut e, &mut s3, &mut node, 120_000);
    // 503 and 429 are retried; the third POST lands; nothing after it.
    let statuses: Vec<u16> = node.posted.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [503, 429, 201]);
    let last = sent.last().unwrap();
    assert_eq!(
        (last.1.method.as_str(), last.1.path.as_str()),
        ("POST", "/config?flatten_errors=1")
    );
    // Nothing before the grace period; the storage GET is the object's key.
    let first_get = sent
        .iter()
        .find(|(_, r)| r.upstream != "127.0.0.1:8001")
        .unwrap();
    assert!(first_get.0 >= 2000, "{}", first_get.0);
    assert_eq!(first_get.1.path, "/bucket-1/kong/3.9.1/config.json");
    // The exporting filter was replaced by this node's own configuration.
    let posted: serde_json::Value = serde_json::from_slice(&node.posted[2].1).unwrap();
    assert_eq!(
        posted["filter_chains"][0]["filters"][0]["config"],
        serde_json::json!({"cluster_fallback_config_import": "on"})
    );
    assert_eq!(
        posted["services"],
        serde_json::json!([{"id": "s1", "name": "a"}])
    );
}

#[test]
fn a_node_with_a_configuration_never_imports_and_a_bootstrap_one_does() {
    for (services, imports) in [
        (serde_json::json!([{"id": "x", "name": "real"}]), false),
        (
            serde_json::json!([{"id": "b", "tags": [BOOTSTRAP_TAG]}]),
            true,
        ),
    ] {
        let mut e = Engine::new(import_config(serde_json::json!({})), 3);
        let mut s3 = FakeS3::default();
        s3.objects.insert(
            "/bucket-1/kong/3.9.1/config.json".into(),
            Object {
                body: br#"{"_format_version":"3.0"}"#.to_vec(),
                etag: "\"e\"".into(),
                meta: vec![],
            },
        );
        let mut node = FakeNode {
            hash: "f".repeat(32),
            services,
            post_statuses: vec![],
            posted: vec![],
        };
        let sent = run_import(&mut e, &mut s3, &mut node, 60_000);
        let touched_storage = sent.iter().any(|(_, r)| r.upstream != "127.0.0.1:8001");
        assert_eq!(touched_storage, imports);
        assert_eq!(node.posted.len(), usize::from(imports));
        if !imports {
            // Decided once: /status and /services, then nothing more.
            assert_eq!(sent.len(), 2, "{sent:?}");
        }
    }
}

#[test]
fn a_corrupt_export_is_reported_and_never_applied() {
    let mut e = Engine::new(import_config(serde_json::json!({})), 3);
    let mut s3 = FakeS3::default();
    let body = br#"{"_format_version":"3.0","services":[]}"#.to_vec();
    s3.objects.insert(
        "/bucket-1/kong/3.9.1/config.json".into(),
        Object {
            body: body[..20].to_vec(),
            etag: "\"e\"".into(),
            meta: vec![(
                "x-amz-meta-config-sha256".into(),
                crate::document::sha256_hex(&body),
            )],
        },
    );
    let mut node = FakeNode {
        hash: "0".repeat(32),
        services: serde_json::json!([]),
        post_statuses: vec![],
        posted: vec![],
    };
    let mut shared = FakeStore::new(CasRules::Ngx);
    let mut errors = Vec::new();
    let mut said_in_answers = 0;
    for now in (0..60_000).step_by(1000) {
        // The check runs on ticks: the answer that carries the body only takes it.
        let out = e.tick(now, &mut shared);
        for f in out.effects {
            if let Effect::Log(Level::Error, m) = f {
                errors.push(m);
            }
        }
        for d in out.dispatches {
            let resp = if d.request.upstream == "127.0.0.1:8001" {
                node.handle(&d.request)
            } else {
                s3.handle(&d.request, now)
            };
            for f in e.on_event(
                Event::CallAnswered {
                    id: d.id,
                    response: resp,
                },
                now,
                &mut shared,
            ) {
                if let Effect::Log(Level::Error, m) = f {
                    said_in_answers += 1;
                    errors.push(m);
                }
            }
        }
    }
    assert!(node.posted.is_empty());
    assert_eq!(errors.len(), 1, "said once: {errors:?}");
    assert_eq!(said_in_answers, 0, "checked in the answer's callback");
    assert!(errors[0].contains("is not applied"), "{}", errors[0]);
}

/// An nginx reload wipes shared data: the node forgets the object's ETag. It asks first (HEAD)
/// and uploads only when the content differs, exactly once, conditioned on the ETag it read.
#[test]
fn after_a_reload_the_node_asks_before_uploading_and_never_uploads_twice() {
    for rules in RULES {
        let cfg = config(&doc("A"), serde_json::json!({}));
        let mut sim = Sim::new(rules, 2, &cfg);
        sim.apply_all(&doc("A"));
        sim.run_until(10_000);
        assert_eq!(sim.s3.puts.len(), 1, "{rules:?}");

        // Reload with the same config: new workers, empty shared data.
        sim.shared = FakeStore::new(rules);
        sim.engines = (0..2)
            .map(|i| Some(Engine::new(cfg.clone(), 0x2000 + i)))
            .collect();
        let before = sim.dispatches.len();
        sim.apply_all(&doc("A"));
        sim.run_until(100_000);
        let methods: Vec<_> = sim.dispatches[before..]
            .iter()
            .map(|(_, _, d)| d.request.method.clone())
            .collect();
        assert_eq!(methods, ["HEAD"], "{rules:?}");
        assert_eq!(sim.s3.puts.len(), 1, "{rules:?}");
        assert!(
            sim.logs(Level::Info)
                .iter()
                .any(|l| l.contains("already holds this config")),
            "{rules:?}"
        );

        // Reload with a new config: one HEAD, then exactly one full-body PUT with If-Match.
        sim.shared = FakeStore::new(rules);
        sim.engines = (0..2)
            .map(|i| Some(Engine::new(cfg.clone(), 0x3000 + i)))
            .collect();
        let before = sim.dispatches.len();
        sim.apply_all(&doc("B"));
        sim.run_until(200_000);
        let sent: Vec<_> = sim.dispatches[before..]
            .iter()
            .map(|(_, _, d)| {
                (
                    d.request.method.clone(),
                    d.request.header("if-match").map(str::to_string),
                )
            })
            .collect();
        assert_eq!(
            sent,
            [
                ("HEAD".to_string(), None),
                ("PUT".to_string(), Some("\"etag-1\"".to_string()))
            ],
            "{rules:?}"
        );
        assert_eq!(
            sim.s3.put_bodies().last().map(|p| p.1.clone()),
            Some(doc("B"))
        );
    }
}

/// A change that arrives while the HEAD is out, and that storage already holds, is not uploaded.
#[test]
fn a_head_answer_that_matches_the_current_document_settles_it() {
    let cfg = config(&doc("A"), serde_json::json!({}));
    let mut sim = Sim::new(CasRules::Ngx, 1, &cfg);
    sim.latency_ms = 3000;
    // Storage already holds B (written by this node before a reload).
    let key = "/bucket-1/kong/3.9.1/config.json".to_string();
    let b_hash = crate::document::Document::new(Rc::new(doc("B").into_bytes()), 0).sha256_hex;
    sim.s3.objects.insert(
        key,
        Object {
            body: doc("B").into_bytes(),
            etag: "\"b\"".into(),
            meta: vec![("x-amz-meta-config-sha256".into(), b_hash)],
        },
    );
    sim.apply_all(&doc("A"));
    sim.run_until(2000); // HEAD (for A) out at 1 s, answered at 4 s
    sim.apply_all(&doc("B"));
    sim.run_until(60_000);
    assert!(sim.s3.puts.is_empty(), "{:?}", sim.s3.put_bodies());
}

/// Failure lines say where the call went (host:port), never credentials.
#[test]
fn failure_lines_name_the_endpoint() {
    let fx = first_request_fails("timeout");
    let line = fx
        .iter()
        .find_map(|f| match f {
            Effect::Log(Level::Warn, m) => Some(m.clone()),
            _ => None,
        })
        .expect("a warning");
    assert!(
        line.contains("request to 127.0.0.1:9000 failed: timeout"),
        "{line}"
    );
    assert!(
        !line.contains("SECRETKEY") && !line.contains("AKID"),
        "{line}"
    );
}

/// The orchestrator runs its sub-machines side by side: with a URL source, one tick can send the
/// source's poll and the export's request together (one call per sub-machine at most).
#[test]
fn one_tick_sends_the_sources_poll_and_the_exports_request_together() {
    let mut v = serde_json::json!({
        "cluster_fallback_config_export": true,
        "cluster_fallback_config_storage": "s3://bucket-1/kong",
        "gateway_version": "3.9.1",
        "aws_access_key_id": "AKID",
        "aws_secret_access_key": "SECRETKEY",
        "aws_region": "us-east-1",
        "storage_endpoint": "http://127.0.0.1:9000",
        "config_source": "url",
        "config_url": "http://127.0.0.1:8080/kong.json",
        "config_poll_interval": 1,
        "cluster_fallback_config_export_delay": 0
    });
    v["node_id"] = "node-a".into();
    v["election"] = false.into();
    let cfg = Config::parse(v.to_string().as_bytes(), &|_| None).unwrap();
    let mut e = Engine::new(cfg, 5);
    let mut shared = FakeStore::new(CasRules::Ngx);
    let first = e.tick(1000, &mut shared).dispatches;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].owner, Owner::Source);
    let body = doc("A").into_bytes();
    let fx = e.on_event(
        Event::CallAnswered {
            id: first[0].id,
            response: HttpResponse {
                status: 200,
                headers: vec![],
                body,
            },
        },
        1100,
        &mut shared,
    );
    assert!(
        fx.iter().all(|f| !matches!(f, Effect::Log(Level::Warn, _))),
        "{fx:?}"
    );
    let both = e.tick(2000, &mut shared).dispatches;
    let owners: Vec<(Owner, String)> = both
        .iter()
        .map(|d| (d.owner, d.request.method.clone()))
        .collect();
    assert_eq!(
        owners,
        [
            (Owner::Export, "HEAD".to_string()),
            (Owner::Source, "GET".to_string())
        ]
    );
    // While both are in flight, neither sub-machine sends another.
    assert!(e.tick(3000, &mut shared).dispatches.is_empty());
    // The source's answer frees the source only.
    e.on_event(
        Event::CallFailed {
            id: both[1].id,
            reason: "broken connection".into(),
        },
        3100,
        &mut shared,
    );
    let next = e.tick(4000, &mut shared).dispatches;
    assert_eq!(
        next.iter().map(|d| d.owner).collect::<Vec<_>>(),
        [Owner::Source]
    );
}

/// A document larger than a slice is hashed a slice per tick (no callback hashes it whole); it is
/// exported once its digest is complete, with that digest; a newer document replaces it.
#[test]
fn a_large_document_is_hashed_across_ticks_then_exported() {
    let big = format!(
        r#"{{"_format_version":"3.0","services":[{{"name":"{}"}}]}}"#,
        "x".repeat(5 * 1024 * 1024)
    );
    let cfg = config(
        &doc("A"),
        serde_json::json!({"cluster_fallback_config_export_delay": 0}),
    );
    let mut sim = Sim::new(CasRules::Ngx, 1, &cfg);
    sim.apply_all(&big);
    // 5 MiB at 2 MiB a tick: hashed by the third tick (3 s), then HEAD, then the PUT.
    sim.run_until(2000);
    assert!(
        sim.dispatches.is_empty(),
        "nothing before the digest is complete"
    );
    sim.run_until(20_000);
    let puts = sim.s3.put_bodies();
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].1.len(), big.len());
    let put = sim
        .dispatches
        .iter()
        .find(|(_, _, d)| d.request.method == "PUT")
        .unwrap();
    assert_eq!(
        put.2.request.header("x-amz-content-sha256"),
        Some(crate::document::sha256_hex(big.as_bytes()).as_str())
    );

    // A newer one arriving while a large one is being hashed wins.
    let mut sim = Sim::new(CasRules::Ngx, 1, &cfg);
    sim.apply_all(&big);
    sim.run_until(1000);
    sim.apply_all(&doc("B"));
    sim.run_until(20_000);
    assert_eq!(
        sim.s3
            .put_bodies()
            .iter()
            .map(|p| p.1.clone())
            .collect::<Vec<_>>(),
        [doc("B")]
    );
}

#[test]
fn secrets_of_config_bridge_filters_never_reach_the_store_even_in_large_documents() {
    let chain = |config: serde_json::Value| serde_json::json!([{"filters": [{"name": "config_bridge", "config": config}]}]);
    let secret_config = serde_json::json!({
        "cluster_fallback_config_export": "on",
        "aws_secret_access_key": "SECRET-EXPORTED-KEY",
        "kong_admin_token": "SECRET-ADMIN-TOKEN",
        "a_setting_added_later": "SECRET-UNKNOWN"
    });
    let cfg = config(
        &doc("A"),
        serde_json::json!({"cluster_fallback_config_export_delay": 0}),
    );
    for padding in [0, 5 * 1024 * 1024] {
        let body = serde_json::json!({
            "_format_version": "3.0",
            "services": [{"name": "x".repeat(padding), "filter_chains": chain(secret_config.clone())}],
            "routes": [{"name": "r", "filter_chains": chain(serde_json::json!(secret_config.to_string()))}],
            "filter_chains": chain(secret_config.clone())
        })
        .to_string();
        let mut sim = Sim::new(CasRules::Ngx, 1, &cfg);
        sim.apply_all(&body);
        sim.run_until(30_000);
        let puts = sim.s3.put_bodies();
        assert_eq!(puts.len(), 1, "padding {padding}");
        assert!(!puts[0].1.contains("SECRET-"), "padding {padding}");
        let put: serde_json::Value = serde_json::from_str(&puts[0].1).unwrap();
        assert_eq!(
            put["filter_chains"][0]["filters"][0]["config"],
            serde_json::json!({"cluster_fallback_config_export": "on"})
        );
        // The content hash is the uploaded (redacted) bytes'.
        let req = sim
            .dispatches
            .iter()
            .find(|(_, _, d)| d.request.method == "PUT")
            .unwrap();
        assert_eq!(
            req.2.request.header("x-amz-content-sha256"),
            Some(crate::document::sha256_hex(puts[0].1.as_bytes()).as_str())
        );
    }
    // A document whose chains cannot be checked is not exported: one error line.
    let mut sim = Sim::new(CasRules::Ngx, 1, &cfg);
    sim.apply_all(r#"{"_format_version":"3.0","filter_chains":[{"filters":[1e999]}]}"#);
    sim.run_until(10_000);
    assert!(sim.s3.put_bodies().is_empty());
    let errors = sim.logs(Level::Error);
    assert!(
        errors
            .iter()
            .any(|l| l.contains("the config is not exported")),
        "{errors:?}"
    );
}

/// An import of `body` on an empty node with `extra` settings: what was posted, error lines.
fn import_of(body: &str, extra: serde_json::Value) -> (Vec<Vec<u8>>, Vec<String>, Engine) {
    let mut e = Engine::new(import_config(extra), 3);
    e.set_own_filter_config(Some(Rc::new(
        br#"{"cluster_fallback_config_import":"on"}"#.to_vec(),
    )));
    let mut s3 = FakeS3::default();
    s3.objects.insert(
        "/bucket-1/kong/3.9.1/config.json".into(),
        Object {
            body: body.as_bytes().to_vec(),
            etag: "\"e1\"".into(),
            meta: vec![],
        },
    );
    let mut node = FakeNode {
        hash: "0".repeat(32),
        services: serde_json::json!([]),
        post_statuses: vec![],
        posted: vec![],
    };
    let mut shared = FakeStore::new(CasRules::Ngx);
    let mut errors = Vec::new();
    for now in (0..60_000).step_by(1000) {
        let out = e.tick(now, &mut shared);
        let mut effects = out.effects;
        for d in out.dispatches {
            let resp = if d.request.upstream == "127.0.0.1:8001" {
                node.handle(&d.request)
            } else {
                s3.handle(&d.request, now)
            };
            let event = Event::CallAnswered {
                id: d.id,
                response: resp,
            };
            effects.extend(e.on_event(event, now + 100, &mut shared));
        }
        errors.extend(effects.into_iter().filter_map(|f| match f {
            Effect::Log(Level::Error, l) => Some(l),
            _ => None,
        }));
    }
    (node.posted.into_iter().map(|p| p.1).collect(), errors, e)
}

#[test]
fn an_import_rewrites_nested_exporters_and_refuses_what_it_cannot_rewrite_or_the_policy_forbids() {
    let exporter = serde_json::json!({"cluster_fallback_config_export": "on", "cluster_fallback_config_storage": "s3://b/p"});
    let nested = serde_json::json!({
        "_format_version": "3.0",
        "services": [{"name": "s", "routes": [{"name": "r", "filter_chains": [
            {"filters": [{"name": "config_bridge", "config": exporter.to_string()}]}
        ]}]}]
    })
    .to_string();
    let (posted, errors, _) = import_of(&nested, serde_json::json!({}));
    assert_eq!(posted.len(), 1, "{errors:?}");
    let text = String::from_utf8(posted[0].clone()).unwrap();
    assert!(!text.contains("cluster_fallback_config_export"), "{text}");
    assert!(errors.is_empty(), "{errors:?}");

    let deep = format!(
        r#"{{"_format_version":"3.0","services":[{{"name":"s","tags":{}1{}}}]}}"#,
        "[".repeat(300),
        "]".repeat(300)
    );
    let policy = serde_json::json!({"_format_version": "3.0", "services": [{"name": "s", "plugins": [{"name": "pre-function", "config": {"access": ["x"]}}]}]}).to_string();
    for (body, extra, why) in [
        (deep.as_str(), serde_json::json!({}), "nested deeper than"),
        (
            policy.as_str(),
            serde_json::json!({"import_refuse_plugins": ["pre-function"]}),
            "import_refuse_plugins",
        ),
    ] {
        let (posted, errors, _) = import_of(body, extra);
        assert!(posted.is_empty(), "{why}");
        assert_eq!(errors.len(), 1, "one line: {errors:?}");
        assert!(
            errors[0].contains(why) && errors[0].contains("is not applied"),
            "{errors:?}"
        );
    }
}

#[test]
fn the_import_limits_its_answers_to_import_max_bytes() {
    let mut e = Engine::new(
        import_config(serde_json::json!({"import_max_bytes": 4096})),
        3,
    );
    let mut shared = FakeStore::new(CasRules::Ngx);
    let d = e
        .tick(0, &mut shared)
        .dispatches
        .into_iter()
        .next()
        .unwrap();
    assert_eq!(e.answer_limit(d.id), Some(4096));
    assert_eq!(e.answer_limit(d.id + 100), None);
    let cfg = config(&doc("A"), serde_json::json!({}));
    let mut exporter = Engine::new(cfg, 4);
    let mut shared = FakeStore::new(CasRules::Ngx);
    exporter.on_event(
        Event::ConfigApplied(Rc::new(doc("A").into_bytes())),
        0,
        &mut shared,
    );
    let d = exporter
        .tick(1000, &mut shared)
        .dispatches
        .into_iter()
        .next()
        .unwrap();
    assert_eq!(exporter.answer_limit(d.id), None);
}

#[test]
fn an_answer_announced_over_import_max_bytes_is_refused_unread_and_not_fetched_again() {
    let mut e = Engine::new(
        import_config(serde_json::json!({"import_max_bytes": 4096, "import_grace_period": 0})),
        3,
    );
    let mut node = FakeNode {
        hash: "0".repeat(32),
        services: serde_json::json!([]),
        post_statuses: vec![],
        posted: vec![],
    };
    let mut shared = FakeStore::new(CasRules::Ngx);
    let mut errors = Vec::new();
    let mut gets = Vec::new();
    for now in (0..120_000).step_by(1000) {
        let out = e.tick(now, &mut shared);
        let mut effects = out.effects;
        for d in out.dispatches {
            let event = if d.request.upstream == "127.0.0.1:8001" {
                Event::CallAnswered {
                    id: d.id,
                    response: node.handle(&d.request),
                }
            } else {
                gets.push(d.request.header("if-none-match").map(str::to_string));
                let response = HttpResponse {
                    status: 200,
                    headers: vec![("etag".into(), "\"big\"".into())],
                    body: vec![],
                };
                if d.request.header("if-none-match") == Some("\"big\"") {
                    let response = HttpResponse {
                        status: 304,
                        ..response
                    };
                    Event::CallAnswered { id: d.id, response }
                } else {
                    Event::AnswerTooLarge {
                        id: d.id,
                        response,
                        announced: 10_000,
                    }
                }
            };
            effects.extend(e.on_event(event, now + 100, &mut shared));
        }
        errors.extend(effects.into_iter().filter_map(|f| match f {
            Effect::Log(Level::Error, l) => Some(l),
            _ => None,
        }));
    }
    assert!(node.posted.is_empty());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("10000 bytes is more than import_max_bytes (4096)"),
        "{errors:?}"
    );
    assert!(gets.len() >= 2, "{gets:?}");
    assert_eq!(gets[0], None);
    assert!(
        gets[1..].iter().all(|g| g.as_deref() == Some("\"big\"")),
        "{gets:?}"
    );
}

#[test]
fn a_413_from_the_admin_api_is_not_retried_and_names_the_kong_setting() {
    let mut e = Engine::new(import_config(serde_json::json!({})), 3);
    let mut s3 = FakeS3::default();
    s3.objects.insert(
        "/bucket-1/kong/3.9.1/config.json".into(),
        Object {
            body: br#"{"_format_version":"3.0","services":[{"id":"s1","name":"a"}]}"#.to_vec(),
            etag: "\"e1\"".into(),
            meta: vec![],
        },
    );
    let mut node = FakeNode {
        hash: "0".repeat(32),
        services: serde_json::json!([]),
        post_statuses: vec![413],
        posted: vec![],
    };
    let mut shared = FakeStore::new(CasRules::Ngx);
    let mut lines = Vec::new();
    for now in (0..120_000u64).step_by(1000) {
        let out = e.tick(now, &mut shared);
        lines.extend(out.effects);
        for d in out.dispatches {
            let resp = if d.request.upstream == "127.0.0.1:8001" {
                node.handle(&d.request)
            } else {
                s3.handle(&d.request, now)
            };
            let fx = e.on_event(
                Event::CallAnswered {
                    id: d.id,
                    response: resp,
                },
                now + 100,
                &mut shared,
            );
            lines.extend(fx);
        }
    }
    let statuses: Vec<u16> = node.posted.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [413], "the same body is not posted again");
    let errors: Vec<&String> = lines
        .iter()
        .filter_map(|e| match e {
            Effect::Log(Level::Error, l) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("nginx_admin_client_max_body_size"),
        "{}",
        errors[0]
    );
}

/// `stop` withdraws the registration even while an election round is in flight, as a call of its
/// own: the round's answer still reaches the election, and the table never holds two calls of
/// one owner.
#[test]
fn the_withdrawal_on_stop_does_not_take_the_election_rounds_slot() {
    let cfg = config(&doc("A"), serde_json::json!({"election": true}));
    let mut e = Engine::new(cfg, 7);
    let mut shared = FakeStore::new(CasRules::Ngx);
    e.on_event(
        Event::ConfigApplied(Rc::new(doc("A").into_bytes())),
        0,
        &mut shared,
    );
    // Ticks until the election's first request (the registration) is out.
    let mut round = None;
    for s in 1..=10 {
        let out = e.tick(s * 1000, &mut shared).dispatches;
        if let Some(d) = out.into_iter().find(|d| d.owner == Owner::Election) {
            round = Some(d);
            break;
        }
    }
    let round = round.expect("an election round starts");
    assert_eq!(round.request.method, "PUT", "the registration");
    let withdrawal = e.stop(11_000);
    assert_eq!(
        withdrawal
            .iter()
            .map(|d| (d.owner, d.request.method.as_str()))
            .collect::<Vec<_>>(),
        [(Owner::Withdrawal, "DELETE")]
    );
    assert!(
        withdrawal[0].request.path.contains("node-a"),
        "{withdrawal:?}"
    );
    // The registration's answer is the election's (not a late answer), the withdrawal's its own.
    let ok = |status| HttpResponse {
        status,
        headers: vec![("etag".into(), "\"e1\"".into())],
        body: Vec::new(),
    };
    let fx = e.on_event(
        Event::CallAnswered {
            id: round.id,
            response: ok(200),
        },
        11_100,
        &mut shared,
    );
    assert!(
        !fx.iter()
            .any(|f| matches!(f, Effect::Log(_, m) if m.contains("late or unknown"))),
        "{fx:?}"
    );
    let fx = e.on_event(
        Event::CallAnswered {
            id: withdrawal[0].id,
            response: ok(503),
        },
        11_200,
        &mut shared,
    );
    assert!(
        fx.iter().any(
            |f| matches!(f, Effect::Log(Level::Warn, m) if m.contains("withdrawing this node's registration got HTTP 503"))
        ),
        "{fx:?}"
    );
}
