//! The release `config_bridge.wasm` in the REAL engine (nginx 1.27.4 + ngx_wasm_module 0.6.0 +
//! Wasmtime 26, `../shared/ngx-wasm`), exporting to the mock S3 over real TCP. Each test asserts
//! on the engine's error log and on the requests S3 saw. Fixture: `config_bridge_tests::real_engine`.
//!
//! `cargo test -p config-bridge-tests --test engine_export` (at most 2 engines at once). Without
//! the engine the tests print `SKIP real engine ...` and pass, unless `CI` is set (then they fail).
//! `CONFIG_BRIDGE_WASM=/path/config_bridge.wasm` tests a prebuilt module instead of building one.

use std::time::{Duration, SystemTime};

use config_bridge_tests::real_engine::{
    assert_no_secrets_in_logs, engine_filter_config, free_port, known_secrets, settle, tricky_doc,
    wait_for_object, with_url_source, ConfigUrl, EngineNode, EngineSpec, LiveS3, LogMark,
    ALREADY_HOLDS, CONFIGURED, ENGINE_NODE_ID, EXPORTED, INVALID_CONFIGURATION, WAIT,
};
use config_bridge_tests::{
    mock_s3_with_session_token, payload_bytes, ACCESS_KEY, SECRET_KEY, SESSION_TOKEN,
};
use host_harness::mocks::faults::Fault;
use serde_json::{json, Value};

/// After the last expected request: several ticks (200 ms), the export delay (1 s) and a retry.
const SETTLE: Duration = Duration::from_millis(2500);

/// Collects failed checks so one run reports all of them.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }
    /// The checks every test ends with: no trap or crash, no secret in the log, then `finish`.
    fn finish_clean(mut self, node: &EngineNode, s3: &LiveS3) {
        self.check(node.problems().is_empty(), || {
            format!(
                "traps/crashes: {:?}",
                node.problems().first().map(ToString::to_string)
            )
        });
        assert_no_secrets_in_logs(node, &known_secrets(s3));
        self.finish(node);
    }

    fn finish(self, node: &EngineNode) {
        assert!(
            self.0.is_empty(),
            "{}: {} check(s) failed:\n- {}\n\nengine log:\n{}",
            node.name(),
            self.0.len(),
            self.0.join("\n- "),
            node.log_since_for_humans(LogMark(0))
        );
    }
}

fn cfg(s3: &LiveS3, doc: &Value) -> Value {
    engine_filter_config(&s3.endpoint(), doc)
}

/// Filter lines at warn/error saying something failed.
fn failure_lines(node: &EngineNode) -> Vec<String> {
    node.entries()
        .into_iter()
        .filter(|e| e.is_filter() && (e.level == "warn" || e.level == "error"))
        .filter(|e| e.contains("failed"))
        .map(|e| e.text)
        .collect()
}

/// Waits until the filter logged `n` failure lines.
fn wait_for_failures(node: &EngineNode, n: usize) {
    let ok = node.wait_until(WAIT, |node| failure_lines(node).len() >= n);
    assert!(
        ok,
        "{}: fewer than {n} failure lines in {WAIT:?}; log:\n{}",
        node.name(),
        node.log_since_for_humans(LogMark(0))
    );
}

fn check_failure_lines_name_endpoint(c: &mut Checks, node: &EngineNode, s3: &LiveS3) {
    let lines = failure_lines(node);
    c.check(!lines.is_empty(), || "no failure line was logged".into());
    let host_port = s3.host_port();
    let without: Vec<&String> = lines.iter().filter(|l| !l.contains(&host_port)).collect();
    c.check(without.is_empty(), || {
        format!(
            "{} of {} failure line(s) do not name the endpoint {host_port}, e.g. {:?}",
            without.len(),
            lines.len(),
            without.first()
        )
    });
}

// ---- 1. start ------------------------------------------------------------------------------------

#[test]
fn start_exports_once_with_the_full_body() {
    let s3 = LiveS3::start();
    // Quotes, backslashes, `$`, `;`, braces and non-ASCII: nginx's quoting and JSON escaping must
    // both survive the trip through nginx.conf byte for byte.
    let doc = tricky_doc(1);
    let Some(node) = EngineNode::start(EngineSpec::new("start_exports_once", cfg(&s3, &doc)))
    else {
        return;
    };
    node.wait_for_log(EXPORTED, WAIT);
    settle(SETTLE);
    let mut c = Checks::default();
    let puts = s3.puts();
    c.check(puts.len() == 1, || {
        format!(
            "{} full-body PUTs at start, want 1: {:#?}",
            puts.len(),
            s3.summary()
        )
    });
    c.check(puts.first().and_then(|p| p.status) == Some(200), || {
        format!("the PUT was not answered 200: {:#?}", s3.summary())
    });
    c.check(
        puts.first().and_then(|p| p.header("x-amz-meta-uploader")) == Some(ENGINE_NODE_ID),
        || "the PUT has no x-amz-meta-uploader: engine-node-1".into(),
    );
    let obj = s3.object();
    c.check(
        obj.as_ref().map(|o| &o.body) == Some(&payload_bytes(&doc)),
        || {
            format!(
                "the object is not the config payload byte for byte: {:?}",
                obj.as_ref()
                    .map(|o| String::from_utf8_lossy(&o.body).into_owned())
            )
        },
    );
    c.check(
        obj.as_ref().is_some_and(|o| {
            o.metadata
                .iter()
                .any(|(k, v)| k == "uploader" && v == ENGINE_NODE_ID)
        }),
        || "the stored object has no uploader metadata".into(),
    );
    let exported = node.entries_containing(EXPORTED);
    c.check(exported.len() == 1, || {
        format!("{} `exported config` lines, want 1", exported.len())
    });
    c.finish_clean(&node, &s3);
}

// ---- 2. HTTP traffic through the filter's location -------------------------------------------

#[test]
fn a_thousand_requests_through_the_filter_location() {
    let s3 = LiveS3::start();
    let doc = tricky_doc(2);
    let spec = EngineSpec::new("thousand_requests", cfg(&s3, &doc)).debug_log();
    let Some(node) = EngineNode::start(spec) else {
        return;
    };
    node.wait_for_log(EXPORTED, WAIT);
    let workers = node.generation();
    // The tick rate, measured from ngx_wasm_module's own debug line for every tick of every root
    // context (a trap recovery adds a tick timer: 3 ticks per 3 s became ~250: docs/host-behaviours.md, "Trap recovery adds a timer").
    const TICK: &str = "resuming \"on_tick\"";
    let window = Duration::from_secs(2);
    let from = node.debug_log_len();
    settle(window);
    let before = node.debug_counts_since(from, TICK);

    let started = std::time::Instant::now();
    let (ok, bad) = node.hammer(1000);
    let took = started.elapsed();

    let from = node.debug_log_len();
    settle(window);
    let after = node.debug_counts_since(from, TICK);
    eprintln!(
        "thousand_requests: {ok}/1000 answered 200 in {took:?}; ticks per worker in {window:?}: \
         before {before:?}, after {after:?}"
    );

    let mut c = Checks::default();
    c.check(ok == 1000, || {
        format!("{ok} of 1000 requests answered `200 ok`; first others: {bad:?}")
    });
    let traps = node.count_traps();
    c.check(traps == 0, || format!("{traps} traps/panics in the log"));
    c.check(node.problems().is_empty(), || {
        format!(
            "{} problem entries, first: {:?}",
            node.problems().len(),
            node.problems()
                .first()
                .map(|e| e.text.lines().take(3).collect::<Vec<_>>())
        )
    });
    // A trap recovery re-runs on_configure: one configure per worker means no recovery happened.
    let configured = node.filter_line_counts(CONFIGURED);
    for w in &workers {
        let n = configured.get(w).copied().unwrap_or(0);
        c.check(n == 1, || {
            format!("worker {w} logged `{CONFIGURED}` {n} times, want exactly 1 ({configured:?})")
        });
    }
    c.check(configured.len() == workers.len(), || {
        format!("configure lines from {configured:?}, workers {workers:?}")
    });
    for w in &workers {
        let (b, a) = (
            before.get(w).copied().unwrap_or(0),
            after.get(w).copied().unwrap_or(0),
        );
        // 200 ms ticks: ~10 per 2 s window. Unchanged within noise.
        c.check(b >= 3 && a <= b * 3 / 2 + 3, || {
            format!("worker {w}: {b} ticks in {window:?} before the requests, {a} after")
        });
    }
    c.check(
        node.generation().len() == 2 && node.worker_pids().len() == 2,
        || format!("workers now {:?}, were {workers:?}", node.worker_pids()),
    );
    assert_no_secrets_in_logs(&node, &known_secrets(&s3));
    c.finish(&node);
}

// ---- 3./4. reloads ----------------------------------------------------------------------------

#[test]
fn reload_with_a_new_config_uploads_it_once() {
    let s3 = LiveS3::start();
    let (a, b) = (tricky_doc(31), tricky_doc(32));
    let Some(mut node) = EngineNode::start(EngineSpec::new("reload_new_config", cfg(&s3, &a)))
    else {
        return;
    };
    wait_for_object(&node, &s3, &payload_bytes(&a), WAIT);
    settle(SETTLE);
    let since = SystemTime::now();
    let mark = node.mark();
    node.reload_with(cfg(&s3, &b));
    node.wait_for_log_since(mark, EXPORTED, WAIT);
    settle(SETTLE);
    let mut c = Checks::default();
    let puts: Vec<_> = s3
        .requests_since("PUT", since)
        .into_iter()
        .filter(|r| r.body_len > 0)
        .collect();
    c.check(puts.len() == 1, || {
        format!(
            "{} full-body PUTs after the reload, want 1 (HEADs are fine): {:#?}",
            puts.len(),
            s3.summary()
        )
    });
    c.check(puts.iter().all(|p| p.status == Some(200)), || {
        format!(
            "a PUT after the reload was not answered 200: {:#?}",
            s3.summary()
        )
    });
    c.check(
        s3.object().map(|o| o.body) == Some(payload_bytes(&b)),
        || "the object is not the new config".into(),
    );
    c.finish_clean(&node, &s3);
}

#[test]
fn reload_with_the_same_config_uploads_nothing() {
    let s3 = LiveS3::start();
    let a = tricky_doc(41);
    let Some(mut node) = EngineNode::start(EngineSpec::new("reload_same_config", cfg(&s3, &a)))
    else {
        return;
    };
    wait_for_object(&node, &s3, &payload_bytes(&a), WAIT);
    settle(SETTLE);
    let etag = s3.object().map(|o| o.etag);
    let since = SystemTime::now();
    let mark = node.mark();
    node.reload_with(cfg(&s3, &a));
    node.wait_for_log_since(mark, ALREADY_HOLDS, WAIT);
    settle(SETTLE);
    let mut c = Checks::default();
    let puts = s3.requests_since("PUT", since);
    c.check(puts.is_empty(), || {
        format!(
            "{} PUT(s) after a reload with the same config, want none (a HEAD is fine): {:#?}",
            puts.len(),
            s3.summary()
        )
    });
    c.check(s3.object().map(|o| o.etag) == etag, || {
        "the object changed".into()
    });
    c.check(
        node.entries_since_containing(mark, EXPORTED).is_empty(),
        || "an `exported config` line after the reload".into(),
    );
    c.finish_clean(&node, &s3);
}

// ---- 5. invalid settings -----------------------------------------------------------------------

/// Starts valid, reloads with `bad` (a valid config with one setting broken): the gateway keeps
/// serving with both workers, and each new worker logs one error line naming `field`.
fn invalid_reload_keeps_serving(name: &str, field: &str, bad: impl FnOnce(&mut Value)) {
    let s3 = LiveS3::start();
    let doc = tricky_doc(51);
    let good = cfg(&s3, &doc);
    let Some(mut node) = EngineNode::start(EngineSpec::new(name, &good)) else {
        return;
    };
    wait_for_object(&node, &s3, &payload_bytes(&doc), WAIT);
    let mut broken = good.clone();
    bad(&mut broken);
    let mark = node.mark();
    let workers = node.reload_with(&broken);
    settle(Duration::from_millis(1500));
    let (ok, bad_answers) = node.hammer(20);
    let since = node.entries_since(mark);
    let mut c = Checks::default();
    c.check(workers.len() == 2 && node.worker_pids().len() == 2, || {
        format!(
            "after the reload {} new worker(s) alive, children {:?}",
            workers.len(),
            node.worker_pids()
        )
    });
    c.check(ok == 20, || {
        format!("{ok} of 20 requests answered `200 ok` after the reload: {bad_answers:?}")
    });
    let fatal: Vec<_> = since
        .iter()
        .filter(|e| e.contains("exited with fatal code") || e.contains("failed initializing"))
        .collect();
    c.check(fatal.is_empty(), || {
        format!(
            "the host killed workers: {:?}",
            fatal.first().map(ToString::to_string)
        )
    });
    let errors: Vec<_> = since
        .iter()
        .filter(|e| e.is_filter() && e.level == "error" && e.contains(INVALID_CONFIGURATION))
        .collect();
    let naming: Vec<_> = errors.iter().filter(|e| e.contains(field)).collect();
    c.check(!naming.is_empty(), || {
        format!("no `{INVALID_CONFIGURATION}` error line naming {field}; error lines: {errors:?}")
    });
    for w in &workers {
        let n = errors.iter().filter(|e| e.pid == *w).count();
        c.check(n <= 1, || {
            format!("worker {w} logged {n} invalid-configuration lines, want one")
        });
    }
    c.finish_clean(&node, &s3);
}

#[test]
fn reload_with_an_unknown_setting_keeps_the_gateway_serving() {
    invalid_reload_keeps_serving(
        "invalid_unknown_key",
        "cluster_fallback_config_exprot",
        |cfg| cfg["cluster_fallback_config_exprot"] = json!("on"),
    );
}

#[test]
fn reload_with_a_bucket_name_s3_rejects_keeps_the_gateway_serving() {
    invalid_reload_keeps_serving("invalid_bucket", "cluster_fallback_config_storage", |cfg| {
        cfg["cluster_fallback_config_storage"] = json!("s3://Kong_Backups/prefix")
    });
}

/// `strict_config: true`: the operator asked the host to refuse a bad configuration, and
/// ngx_wasm_module does it the only way it can — the worker exits with fatal code 2 and is never
/// respawned; after the reload no worker is left and the port stops answering.
#[test]
fn strict_config_makes_nginx_refuse_an_invalid_configuration() {
    let s3 = LiveS3::start();
    let doc = tricky_doc(53);
    let good = cfg(&s3, &doc);
    let Some(mut node) = EngineNode::start(EngineSpec::new("invalid_strict", &good)) else {
        return;
    };
    wait_for_object(&node, &s3, &payload_bytes(&doc), WAIT);
    let mut broken = good.clone();
    broken["cluster_fallback_config_exprot"] = json!("on");
    broken["strict_config"] = json!(true);
    let mark = node.mark();
    let workers = node.reload_with(&broken);
    let mut c = Checks::default();
    c.check(workers.is_empty() && node.worker_pids().is_empty(), || {
        format!(
            "workers alive after a strict invalid reload: generation {workers:?}, children {:?}",
            node.worker_pids()
        )
    });
    let since = node.entries_since(mark);
    let refused = since
        .iter()
        .filter(|e| {
            e.contains("failed initializing \"config_bridge\" filter (on_configure failure)")
        })
        .count();
    let fatal = since
        .iter()
        .filter(|e| e.contains("exited with fatal code 2 and cannot be respawned"))
        .count();
    c.check(refused == 2 && fatal == 2, || {
        format!(
            "{refused} `on_configure failure` and {fatal} `cannot be respawned` lines, want 2 each"
        )
    });
    c.check(
        since.iter().any(|e| {
            e.is_filter()
                && e.contains(INVALID_CONFIGURATION)
                && e.contains("cluster_fallback_config_exprot")
        }),
        || "no invalid-configuration line naming the field".into(),
    );
    let answer = node.get_with_timeout("/", Duration::from_secs(2));
    c.check(answer.is_err(), || {
        format!("the port still answers: {answer:?}")
    });
    c.finish(&node);
}

// ---- 6. many reloads ---------------------------------------------------------------------------

#[test]
fn twenty_reloads_keep_both_workers_and_their_memory() {
    let s3 = LiveS3::start();
    let Some(mut node) = EngineNode::start(EngineSpec::new(
        "twenty_reloads",
        cfg(&s3, &tricky_doc(600)),
    )) else {
        return;
    };
    node.wait_for_log(EXPORTED, WAIT);
    let mut rss = Vec::new();
    let mut c = Checks::default();
    for i in 1..=20u32 {
        let mark = node.mark();
        let doc = tricky_doc(600 + i);
        let workers = node.reload_with(cfg(&s3, &doc));
        c.check(workers.len() == 2 && node.worker_pids().len() == 2, || {
            format!(
                "reload {i}: workers {workers:?}, children {:?}",
                node.worker_pids()
            )
        });
        node.wait_for_log_since(mark, EXPORTED, WAIT);
        let sample: Vec<u64> = workers.iter().map(|p| node.worker_rss_kib(*p)).collect();
        let master = node.worker_rss_kib(node.master_pid());
        rss.push((sample.iter().copied().max().unwrap_or(0), master));
    }
    wait_for_object(&node, &s3, &payload_bytes(&tricky_doc(620)), WAIT);
    let (w1, m1) = rss[0];
    let (w20, m20) = rss[19];
    eprintln!(
        "twenty_reloads: max worker RSS after reload 1: {w1} KiB, after reload 20: {w20} KiB \
         ({:+} KiB); master {m1} -> {m20} KiB ({:+} KiB); per reload: {:?}",
        w20 as i64 - w1 as i64,
        m20 as i64 - m1 as i64,
        rss.iter().map(|(w, _)| *w).collect::<Vec<_>>()
    );
    const BOUND_KIB: u64 = 20 * 1024;
    c.check(w20 <= w1 + BOUND_KIB, || {
        format!("worker RSS grew from {w1} to {w20} KiB over 20 reloads")
    });
    c.check(m20 <= m1 + BOUND_KIB, || {
        format!("master RSS grew from {m1} to {m20} KiB over 20 reloads")
    });
    let lost = node.entries_containing("exited on signal");
    c.check(lost.is_empty(), || {
        format!("a worker crashed: {:?}", lost.first())
    });
    c.finish_clean(&node, &s3);
}

// ---- 7. S3 outages -----------------------------------------------------------------------------

#[test]
fn s3_refusing_connections_then_back_gets_the_newest_config() {
    let mut s3 = LiveS3::stopped(free_port());
    let (a, b) = (tricky_doc(71), tricky_doc(72));
    let Some(mut node) = EngineNode::start(EngineSpec::new("s3_refused", cfg(&s3, &a))) else {
        return;
    };
    wait_for_failures(&node, 2);
    // A newer config during the outage (a reload: new workers, fresh shared data).
    let mark = node.mark();
    node.reload_with(cfg(&s3, &b));
    node.wait_until(WAIT, |n| {
        n.entries_since(mark)
            .iter()
            .any(|e| e.is_filter() && e.level == "warn" && e.contains("failed"))
    });
    s3.start_again();
    wait_for_object(&node, &s3, &payload_bytes(&b), WAIT);
    let mut c = Checks::default();
    c.check(node.problems().is_empty(), || {
        format!(
            "traps/crashes: {:?}",
            node.problems().first().map(ToString::to_string)
        )
    });
    check_failure_lines_name_endpoint(&mut c, &node, &s3);
    assert_no_secrets_in_logs(&node, &known_secrets(&s3));
    c.finish(&node);
}

#[test]
fn s3_hanging_then_back_gets_the_config() {
    let s3 = LiveS3::start();
    s3.faults().always(|_, _| true, Fault::Hang);
    let a = tricky_doc(73);
    let mut config = cfg(&s3, &a);
    config["call_timeout_ms"] = json!(1000);
    let Some(node) = EngineNode::start(EngineSpec::new("s3_hanging", &config)) else {
        return;
    };
    wait_for_failures(&node, 2);
    s3.faults().clear();
    wait_for_object(&node, &s3, &payload_bytes(&a), WAIT);
    let mut c = Checks::default();
    c.check(node.problems().is_empty(), || {
        format!(
            "traps/crashes: {:?}",
            node.problems().first().map(ToString::to_string)
        )
    });
    check_failure_lines_name_endpoint(&mut c, &node, &s3);
    assert_no_secrets_in_logs(&node, &known_secrets(&s3));
    c.finish(&node);
}

/// S3 restarts with an empty store (the node still believes its last upload is there) while the
/// config changes: the newest config must land in the new store. The config comes from a URL, so
/// it changes without a reload (a reload would wipe what the node believes).
#[test]
fn s3_restarted_empty_gets_the_newest_config() {
    let mut s3 = LiveS3::start();
    let (a, b) = (tricky_doc(74), tricky_doc(75));
    let url = ConfigUrl::start(&a);
    let config = with_url_source(cfg(&s3, &a), &url.url());
    let Some(node) = EngineNode::start(EngineSpec::new("s3_restarted_empty", &config)) else {
        return;
    };
    wait_for_object(&node, &s3, &payload_bytes(&a), WAIT);
    s3.restart_empty();
    url.set(&b);
    wait_for_object(&node, &s3, &payload_bytes(&b), WAIT);
    let mut c = Checks::default();
    c.check(node.problems().is_empty(), || {
        format!(
            "traps/crashes: {:?}",
            node.problems().first().map(ToString::to_string)
        )
    });
    // Storage failures only (a config-URL poll failure names the URL instead).
    let lines = failure_lines(&node);
    let without: Vec<&String> = lines
        .iter()
        .filter(|l| !l.contains(&s3.host_port()) && !l.contains(&url.url()))
        .collect();
    c.check(without.is_empty(), || {
        format!("failure lines without the endpoint: {without:?}")
    });
    assert_no_secrets_in_logs(&node, &known_secrets(&s3));
    c.finish(&node);
}

// ---- 8. the exporting worker dies during an outage --------------------------------------------

#[test]
fn exporting_worker_killed_during_an_outage_another_exports() {
    let mut s3 = LiveS3::stopped(free_port());
    let a = tricky_doc(81);
    let Some(node) = EngineNode::start(EngineSpec::new("exporter_killed", cfg(&s3, &a))) else {
        return;
    };
    wait_for_failures(&node, 1);
    let exporter = node
        .entries()
        .into_iter()
        .find(|e| e.is_filter() && e.contains("failed"))
        .map(|e| e.pid)
        .expect("a failure line");
    let mark = node.mark();
    node.signal_worker(exporter, libc::SIGKILL);
    node.wait_for_log_since(
        mark,
        &format!("worker process {exporter} exited on signal 9"),
        WAIT,
    );
    let respawned = node.wait_for_log_since(mark, "start worker process ", WAIT);
    let new_pid: u32 = respawned
        .text
        .trim_start_matches("start worker process ")
        .trim()
        .parse()
        .expect("respawned worker pid");
    node.wait_for_log_since(mark, "successfully loaded \"config_bridge\"", WAIT);
    s3.start_again();
    wait_for_object(&node, &s3, &payload_bytes(&a), WAIT);
    let exported = node.wait_for_log(EXPORTED, WAIT);
    let mut c = Checks::default();
    c.check(exported.pid != exporter, || {
        format!("the export line came from the killed worker {exporter}?")
    });
    c.check(
        node.worker_pids().len() == 2 && node.worker_pids().contains(&new_pid),
        || format!("workers {:?}, respawned {new_pid}", node.worker_pids()),
    );
    let bad: Vec<_> = node
        .problems()
        .into_iter()
        .filter(|e| !e.contains(&format!("worker process {exporter} exited on signal 9")))
        .collect();
    c.check(bad.is_empty(), || {
        format!(
            "traps/crashes besides the kill: {:?}",
            bad.first().map(ToString::to_string)
        )
    });
    eprintln!(
        "exporter_killed: killed {exporter}, respawned {new_pid}, exported by {}",
        exported.pid
    );
    assert_no_secrets_in_logs(&node, &known_secrets(&s3));
    c.finish(&node);
}

// ---- 9. secrets --------------------------------------------------------------------------------

/// Credentials from the environment (`env` directives) with a session token, and S3 answering
/// 403, 500, a reset and a hang before it accepts: no secret, token or signature in any log line.
#[test]
fn no_secret_reaches_the_log() {
    let s3 = LiveS3::start_with(mock_s3_with_session_token);
    let f = s3.faults();
    f.push(Fault::access_denied());
    f.push(Fault::status(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match",
    ));
    f.push(Fault::internal_error());
    f.push(Fault::reset());
    f.push(Fault::Hang);
    let a = tricky_doc(91);
    let mut config = cfg(&s3, &a);
    let m = config.as_object_mut().expect("object");
    m.remove("aws_access_key_id");
    m.remove("aws_secret_access_key");
    config["call_timeout_ms"] = json!(1000);
    let spec = EngineSpec::new("no_secrets", &config)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_SESSION_TOKEN", SESSION_TOKEN);
    let Some(node) = EngineNode::start(spec) else {
        return;
    };
    wait_for_object(&node, &s3, &payload_bytes(&a), WAIT);
    let secrets = known_secrets(&s3);
    assert!(
        secrets.len() >= 5,
        "signatures were collected: {}",
        secrets.len()
    );
    assert_no_secrets_in_logs(&node, &secrets);
    let mut c = Checks::default();
    c.check(node.problems().is_empty(), || {
        format!(
            "traps/crashes: {:?}",
            node.problems().first().map(ToString::to_string)
        )
    });
    c.check(
        s3.requests()
            .iter()
            .any(|r| r.header("x-amz-security-token") == Some(SESSION_TOKEN)),
        || "the session token from the environment was not sent".into(),
    );
    c.finish(&node);
}

// ---- 10. a named shm_kv zone ------------------------------------------------------------------

#[test]
fn named_shm_kv_zone_exports_without_a_trap() {
    let s3 = LiveS3::start();
    let a = tricky_doc(101);
    let mut config = cfg(&s3, &a);
    config["shared_data_namespace"] = json!("kv");
    let spec = EngineSpec::new("named_shm_zone", &config).shm_kv(&[("kv", "1m")]);
    let Some(node) = EngineNode::start(spec) else {
        return;
    };
    node.assert_workers(2);
    wait_for_object(&node, &s3, &payload_bytes(&a), WAIT);
    node.assert_no_traps();
    assert_no_secrets_in_logs(&node, &known_secrets(&s3));
}
