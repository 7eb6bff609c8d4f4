//! The election in the REAL engine (`../shared/ngx-wasm`): two nginx instances of two workers each
//! are two backup nodes sharing the mock S3 over TCP (3 s interval). Exactly one uploads; when it
//! stops, the other leads within interval + 5 s of the stopped leader's last refresh and uploads
//! the next change. Fixture: `config_bridge_tests::real_engine`.

use std::time::{Duration, SystemTime};

use config_bridge_tests::real_engine::{
    assert_no_secrets_in_logs, engine_filter_config, known_secrets, settle, EngineNode, EngineSpec,
    LiveS3, LogMark, EXPORTED, WAIT,
};
use config_bridge_tests::{declarative, payload_bytes, CONFIG_KEY, PREFIX};
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
