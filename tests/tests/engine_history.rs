//! History (docs/history.md) in the REAL engine (nginx + ngx_wasm_module, `../shared/ngx-wasm`):
//! after an export, a history object with the same bytes and metadata appears next to
//! `config.json` in the mock S3 served over real TCP. Fixture: `config_bridge_tests::real_engine`.
//!
//! `cargo test -p config-bridge-tests --test engine_history`. Without the engine the test prints
//! `SKIP real engine ...` and passes, unless `CI` is set (then it fails).

use std::time::Duration;

use config_bridge::history::parse_history_key;
use config_bridge_tests::real_engine::{
    assert_no_secrets_in_logs, engine_filter_config, known_secrets, settle, tricky_doc,
    wait_for_object, EngineNode, EngineSpec, LiveS3, LogMark, EXPORTED, WAIT,
};
use config_bridge_tests::{payload_bytes, BUCKET, CONFIG_KEY};
use serde_json::json;

const HISTORY_PREFIX: &str = "dp/cluster-a/3.9.1/history/";

#[test]
fn a_history_object_appears_next_to_config_json() {
    let s3 = LiveS3::start();
    let doc = tricky_doc(23);
    let mut cfg = engine_filter_config(&s3.endpoint(), &doc);
    cfg["cluster_fallback_history"] = json!(true);
    let Some(node) = EngineNode::start(EngineSpec::new("history_next_to_config", cfg)) else {
        return;
    };
    node.wait_for_log(EXPORTED, WAIT);
    wait_for_object(&node, &s3, &payload_bytes(&doc), WAIT);
    let history = |s3: &LiveS3| -> Vec<String> {
        s3.mock()
            .list_keys(BUCKET)
            .into_iter()
            .filter(|k| k.starts_with(HISTORY_PREFIX))
            .collect()
    };
    let recorded = node.wait_until(WAIT, |_| !history(&s3).is_empty());
    // Several more ticks: nothing else is recorded for the same content.
    settle(Duration::from_millis(2000));
    let log = || node.log_since_for_humans(LogMark(0));
    assert!(recorded, "no history object; log:\n{}", log());
    let keys = history(&s3);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let entry =
        parse_history_key(&keys[0]).unwrap_or_else(|| panic!("{} is no history key", keys[0]));
    let latest = s3.mock().object(BUCKET, CONFIG_KEY).expect("config.json");
    let kept = s3
        .mock()
        .object(BUCKET, &keys[0])
        .expect("the history object");
    assert_eq!(kept.body, latest.body, "the same bytes");
    assert_eq!(kept.metadata, latest.metadata, "the same metadata");
    let sha = config_bridge::document::sha256_hex(&payload_bytes(&doc));
    assert_eq!(entry.sha_prefix, sha[..16]);
    assert_eq!(
        node.entries_containing("history: recorded").len(),
        1,
        "{}",
        log()
    );
    // config.json's single PUT, then the history object's (create-only).
    let puts = s3.puts();
    assert_eq!(puts.len(), 2, "{:#?}", s3.summary());
    assert!(puts[1].path.contains(HISTORY_PREFIX), "{:#?}", s3.summary());
    assert_eq!(puts[1].header("if-none-match"), Some("*"));
    assert!(
        node.problems().is_empty(),
        "{:?}",
        node.problems().first().map(ToString::to_string)
    );
    assert_no_secrets_in_logs(&node, &known_secrets(&s3));
}
