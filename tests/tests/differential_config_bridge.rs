//! The config-bridge filter's own scenario run differentially (issue 17): the shipped `.wasm`
//! exports a declarative config to a mock S3, serves traffic, is reloaded with a new config and
//! exports again — in the real engine (one worker, tests/src/real_engine.rs) and in the harness's
//! `ngx_wasm_module` profile, each against its own mock S3 built the same way. Compared: the stored
//! objects (bytes and `x-amz-meta-*`), the answers to the requests, and the filter's log lines
//! (digits replaced by `#`: timings and sizes come from each host's clock, docs/differential.md).

use std::sync::Arc;
use std::time::Duration;

use config_bridge_tests::real_engine::{
    engine_filter_config, tricky_doc, wait_for_object, EngineNode, EngineSpec, LiveS3, LogMark,
    WAIT,
};
use config_bridge_tests::{mock_s3, payload_bytes, plugin_module, BUCKET, CONFIG_KEY};
use host_harness::{HostProfile, HttpExchange, LogLevel, NodeSpec, World};

/// A filter log line without its numbers (virtual vs wall-clock timings, byte counts of lines
/// the two runs both print).
fn template(line: &str) -> String {
    let mut out = String::new();
    let mut in_digits = false;
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out
}

/// Consecutive repeats folded (ticks log the same line a different number of times per clock).
fn fold(lines: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in lines {
        if out.last() != Some(&l) {
            out.push(l);
        }
    }
    out
}

fn object(o: host_harness::mocks::s3::StoredObject) -> (String, Vec<(String, String)>) {
    (
        String::from_utf8_lossy(&o.body).into_owned(),
        o.metadata
            .into_iter()
            .map(|(k, v)| (k, template(&v)))
            .collect(),
    )
}

struct Run {
    /// Body as text, `x-amz-meta-*` with numbers as `#` (times of export differ by clock).
    objects: Vec<(String, Vec<(String, String)>)>,
    statuses: Vec<u32>,
    log: Vec<String>,
}

#[test]
fn export_traffic_and_reload_agree_with_the_engine() {
    let (doc1, doc2) = (tricky_doc(1), tricky_doc(2));
    let s3 = LiveS3::start();
    let (cfg1, cfg2) = (
        engine_filter_config(&s3.endpoint(), &doc1),
        engine_filter_config(&s3.endpoint(), &doc2),
    );

    // ---- the engine
    let Some(mut node) = EngineNode::start(EngineSpec::new("diff_config_bridge", &cfg1).workers(1))
    else {
        return;
    };
    let mut engine = Run {
        objects: Vec::new(),
        statuses: Vec::new(),
        log: Vec::new(),
    };
    wait_for_object(&node, &s3, &payload_bytes(&doc1), WAIT);
    // The object is stored before the filter reads S3's answer and logs the export: wait for
    // that line too, or the log is compared a moment too early.
    node.wait_for_logs_since(LogMark(0), "exported config to", 1, WAIT);
    let o = s3.object().expect("exported");
    engine.objects.push(object(o));
    for i in 0..3 {
        let r = node.get(&format!("/req/{i}")).expect("engine answers");
        engine.statuses.push(u32::from(r.status));
    }
    node.reload_with(&cfg2);
    wait_for_object(&node, &s3, &payload_bytes(&doc2), WAIT);
    node.wait_for_logs_since(LogMark(0), "exported config to", 2, WAIT);
    let o = s3.object().expect("exported again");
    engine.objects.push(object(o));
    node.assert_no_traps();
    engine.log = fold(
        node.entries()
            .iter()
            .filter(|e| e.is_filter())
            .filter_map(|e| e.text.split("[config-bridge] ").nth(1))
            .map(|m| template(m.split(", client: ").next().unwrap_or(m)))
            .collect(),
    );
    drop(node);

    // ---- the harness, same config, its own mock S3 on the same upstream name
    let mock = mock_s3();
    let mut world = World::new(HostProfile::ngx_wasm_module());
    world.route(&s3.host_port(), Arc::new(mock.clone()));
    let n = world
        .add_node(NodeSpec::new("dp1", &plugin_module()).filter(cfg1.to_string()))
        .expect("node");
    let mut harness = Run {
        objects: Vec::new(),
        statuses: Vec::new(),
        log: Vec::new(),
    };
    let wait = |world: &mut World, doc: &serde_json::Value| {
        let want = payload_bytes(doc);
        world.advance_until(Duration::from_secs(30), Duration::from_millis(100), |_| {
            mock.object(BUCKET, CONFIG_KEY)
                .is_some_and(|o| o.body == want)
        })
    };
    assert!(
        wait(&mut world, &doc1),
        "the harness did not export the first config"
    );
    let o = mock.object(BUCKET, CONFIG_KEY).expect("exported");
    harness.objects.push(object(o));
    for i in 0..3 {
        let out = world.http(n, 0, 0, HttpExchange::get(&format!("/req/{i}")));
        harness.statuses.push(out.status());
    }
    world
        .reload_node_with(n, 0, cfg2.to_string())
        .expect("reload");
    assert!(
        wait(&mut world, &doc2),
        "the harness did not export the second config"
    );
    let o = mock.object(BUCKET, CONFIG_KEY).expect("exported again");
    harness.objects.push(object(o));
    assert!(world.traps().is_empty(), "{:?}", world.traps());
    harness.log = fold(
        world
            .logs()
            .iter()
            // The engine's error_log is at info: lines below it never reach its log.
            .filter(|l| !matches!(l.level, LogLevel::Trace | LogLevel::Debug))
            .filter_map(|l| l.message.strip_prefix("[config-bridge] "))
            .map(template)
            .collect(),
    );

    // ---- compared
    assert_eq!(engine.objects, harness.objects, "stored objects differ");
    assert_eq!(engine.statuses, harness.statuses, "answers differ");
    assert_eq!(
        engine.log,
        harness.log,
        "the filter's log lines differ\nengine:\n  {}\nharness:\n  {}",
        engine.log.join("\n  "),
        harness.log.join("\n  ")
    );
}
