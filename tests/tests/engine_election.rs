//! The election in the REAL engine (`../shared/ngx-wasm`): two nginx instances of two workers each
//! are two backup nodes sharing the mock S3 over TCP (3 s interval). Exactly one uploads; when it
//! stops, the other leads within interval + 5 s of the stopped leader's last refresh and uploads
//! the next change. A lone node with the default settings (election on, interval 600 s) exports
//! within the export delay and the first round's spread of a start or a reload, and a refused
//! listing (no `s3:ListBucket`) is loud but does not silence it. Fixture:
//! `config_bridge_tests::real_engine`.

use std::time::{Duration, SystemTime};

use config_bridge_tests::real_engine::{
    assert_no_secrets_in_logs, engine_filter_config, known_secrets, settle, EngineNode, EngineSpec,
    LiveS3, LogMark, CONFIGURED, EXPORTED, WAIT,
};
use config_bridge_tests::{declarative, payload_bytes, CONFIG_KEY, PREFIX};
use host_harness::mocks::faults::Fault;
use serde_json::{json, Value};

const INTERVAL_S: u64 = 3;
const LEADS: &str = "election: this node now leads the export";

fn elector(s3: &LiveS3, doc: &Value, node_id: &str) -> Value {
    let mut cfg = engine_filter_config(&s3.endpoint(), doc);
    cfg["election"] = json!(true);
    cfg["cluster_fallback_election_interval"] = json!(INTERVAL_S);
    cfg["node_id"] = json!(node_id);
    cfg
}

fn uploader(s3: &LiveS3) -> Option<String> {
    let obj = s3.object()?;
    obj.metadata
        .iter()
        .find(|(k, _)| k == "uploader")
        .map(|(_, v)| v.clone())
}

fn config_puts_by(s3: &LiveS3, node_id: &str) -> usize {
    s3.puts()
        .iter()
        .filter(|p| p.path.ends_with(CONFIG_KEY) && p.status == Some(200))
        .filter(|p| p.header("x-amz-meta-uploader") == Some(node_id))
        .count()
}

#[test]
fn two_engines_elect_one_uploader_and_the_other_takes_over_when_it_stops() {
    let s3 = LiveS3::start();
    let doc = declarative(1);
    let Some(a) =
        EngineNode::start(EngineSpec::new("election_a", elector(&s3, &doc, "engine-a")).workers(2))
    else {
        return;
    };
    let Some(b) =
        EngineNode::start(EngineSpec::new("election_b", elector(&s3, &doc, "engine-b")).workers(2))
    else {
        return;
    };
    // One of them leads (after its settle round) and uploads; the other never does.
    let led = a.wait_until(WAIT, |a| {
        !a.entries_containing(LEADS).is_empty() || !b.entries_containing(LEADS).is_empty()
    });
    assert!(
        led,
        "nobody leads:\nA:\n{}\nB:\n{}",
        a.log_since_for_humans(LogMark(0)),
        b.log_since_for_humans(LogMark(0))
    );
    let exported = a.wait_until(WAIT, |_| {
        s3.object().is_some_and(|o| o.body == payload_bytes(&doc))
    });
    assert!(exported, "S3: {:#?}", s3.summary());
    settle(Duration::from_secs(2 * INTERVAL_S));
    let leader = uploader(&s3).expect("an uploader");
    let (mut leader_node, follower_node, follower_id) = if leader == "engine-a" {
        (a, b, "engine-b")
    } else {
        (b, a, "engine-a")
    };
    assert_eq!(
        config_puts_by(&s3, follower_id),
        0,
        "the follower uploaded: {:#?}",
        s3.summary()
    );
    assert!(leader_node.entries_containing(EXPORTED).len() == 1);
    assert!(follower_node.entries_containing(LEADS).is_empty());
    // Kong's object names: `<seconds>-<node id>` under `<prefix>/<version>/election/`.
    let regs: Vec<String> = s3
        .mock()
        .list_keys(config_bridge_tests::BUCKET)
        .into_iter()
        .filter(|k| k.starts_with(&format!("{PREFIX}/3.9.1/election/")))
        .collect();
    assert_eq!(regs.len(), 2, "{regs:?}");
    assert!(
        regs.iter().any(|k| k.ends_with("-engine-a"))
            && regs.iter().any(|k| k.ends_with("-engine-b"))
    );

    // The leader stops (nginx fast shutdown).
    let last_refresh = s3
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "PUT"
                && r.path.contains("/election/")
                && r.path.ends_with(&format!("-{leader}"))
        })
        .map(|r| r.at)
        .max()
        .expect("the leader registered");
    leader_node.stop();
    let stopped = SystemTime::now();
    let mark = follower_node.mark();
    let took_over = follower_node.wait_until(Duration::from_secs(4 * INTERVAL_S + 10), |f| {
        !f.entries_since_containing(mark, LEADS).is_empty()
    });
    assert!(
        took_over,
        "the follower did not take over:\n{}",
        follower_node.log_since_for_humans(mark)
    );
    let at = SystemTime::now();
    // Kong's bound from the last refresh, plus the follower's check margin (1 s), its tick
    // (200 ms) and the time the fixture's log polling takes.
    let bound = last_refresh + Duration::from_secs(INTERVAL_S + 5 + 2);
    assert!(
        at <= bound,
        "took over {:?} after the leader's last refresh ({:?} after it stopped)",
        at.duration_since(last_refresh).unwrap_or_default(),
        at.duration_since(stopped).unwrap_or_default()
    );
    let withdrawn = s3
        .requests()
        .iter()
        .any(|r| r.method == "DELETE" && r.path.ends_with(&format!("-{leader}")));
    eprintln!(
        "engine election: took over {:?} after the leader's last refresh, {:?} after it stopped \
         (registration withdrawn on shutdown: {withdrawn})",
        at.duration_since(last_refresh).unwrap_or_default(),
        at.duration_since(stopped).unwrap_or_default()
    );
    // The new leader uploads the next change.
    let mut follower_node = follower_node;
    follower_node.reload_with(elector(&s3, &declarative(2), follower_id));
    let ok = follower_node.wait_until(WAIT, |_| {
        s3.object()
            .is_some_and(|o| o.body == payload_bytes(&declarative(2)))
    });
    assert!(
        ok,
        "S3: {:#?}\nlog:\n{}",
        s3.summary(),
        follower_node.log_since_for_humans(LogMark(0))
    );
    assert_eq!(uploader(&s3).as_deref(), Some(follower_id));
    follower_node.assert_no_traps();
    assert_no_secrets_in_logs(&follower_node, &known_secrets(&s3));
}

/// The shipped defaults: election on (600 s), tick 1 s, call timeout 10 s, lease 15 s, retries;
/// only the export delay is the 2 s.
fn defaults(s3: &LiveS3, doc: &Value) -> Value {
    let mut cfg = engine_filter_config(&s3.endpoint(), doc);
    if let Some(m) = cfg.as_object_mut() {
        for k in [
            "election",
            "tick_period_ms",
            "call_timeout_ms",
            "lease_ttl_ms",
            "retry_base_ms",
            "retry_max_ms",
        ] {
            m.remove(k);
        }
    }
    cfg["cluster_fallback_config_export_delay"] = json!(2);
    cfg
}

/// From the first `configured` line after `mark` to the object holding `doc`: the export delay,
/// the first round's spread (0–5 s) and the ticks; `None` if it never came within `WAIT`.
fn export_latency(node: &EngineNode, s3: &LiveS3, mark: LogMark, doc: &Value) -> Option<Duration> {
    node.wait_for_log_since(mark, CONFIGURED, WAIT);
    let configured = SystemTime::now();
    let ok = node.wait_until(WAIT, |_| {
        s3.object().is_some_and(|o| o.body == payload_bytes(doc))
    });
    ok.then(|| configured.elapsed().unwrap_or_default())
}

#[test]
fn a_lone_node_with_the_default_settings_exports_promptly_after_start_and_each_reload() {
    let s3 = LiveS3::start();
    let Some(mut node) = EngineNode::start(
        EngineSpec::new("election_default", defaults(&s3, &declarative(1))).workers(2),
    ) else {
        return;
    };
    // Delay 2 s + spread ≤ 5 s + a tick or two; the module's compilation is before `configured`.
    let bound = Duration::from_secs(2 + 5 + 3);
    let mut latencies = Vec::new();
    let first = export_latency(&node, &s3, LogMark(0), &declarative(1));
    assert!(
        first.is_some_and(|d| d <= bound),
        "start: exported after {first:?}, want <= {bound:?}\n{}\nS3: {:#?}",
        node.log_since_for_humans(LogMark(0)),
        s3.summary()
    );
    latencies.extend(first);
    for n in 2..=3 {
        let mark = node.mark();
        node.reload_with(defaults(&s3, &declarative(n)));
        let took = export_latency(&node, &s3, mark, &declarative(n));
        assert!(
            took.is_some_and(|d| d <= bound),
            "reload {n}: exported after {took:?}, want <= {bound:?}\n{}\nS3: {:#?}",
            node.log_since_for_humans(mark),
            s3.summary()
        );
        latencies.extend(took);
    }
    // One node: one candidate in every log line, and one registration left in storage.
    let counted: Vec<String> = node
        .entries_containing("fresh candidate(s)")
        .into_iter()
        .map(|e| e.text)
        .filter(|t| !t.contains("(1 fresh candidate(s))"))
        .collect();
    assert!(counted.is_empty(), "{counted:?}");
    settle(Duration::from_secs(3));
    let regs: Vec<String> = s3
        .mock()
        .list_keys(config_bridge_tests::BUCKET)
        .into_iter()
        .filter(|k| k.starts_with(&format!("{PREFIX}/3.9.1/election/")))
        .collect();
    assert_eq!(regs.len(), 1, "{regs:?}");
    eprintln!(
        "engine election (defaults): export after start/reloads {latencies:?} (bound {bound:?})"
    );
    node.assert_no_traps();
    assert_no_secrets_in_logs(&node, &known_secrets(&s3));
}

#[test]
fn a_refused_listing_is_loud_and_a_lone_node_still_exports() {
    let s3 = LiveS3::start();
    // An IAM policy without s3:ListBucket: every listing is refused.
    s3.faults().always(
        |r, _| r.path.contains("list-type=2"),
        Fault::access_denied(),
    );
    let doc = declarative(1);
    let Some(node) =
        EngineNode::start(EngineSpec::new("election_refused", defaults(&s3, &doc)).workers(2))
    else {
        return;
    };
    let latency = export_latency(&node, &s3, LogMark(0), &doc);
    assert!(
        latency.is_some_and(|d| d <= Duration::from_secs(10)),
        "exported after {latency:?}\n{}",
        node.log_since_for_humans(LogMark(0))
    );
    let errors: Vec<String> = node
        .entries()
        .into_iter()
        .filter(|e| e.is_filter() && e.level == "error")
        .map(|e| e.text)
        .collect();
    assert!(
        errors
            .iter()
            .any(|t| t.contains("election") && t.contains("s3:ListBucket") && t.contains("403")),
        "{errors:?}"
    );
    node.assert_no_traps();
}
