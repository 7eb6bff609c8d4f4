//! The filter's AWS credential chain in the real engine (nginx + ngx_wasm_module): IMDSv2
//! credentials that expire during the run are renewed ahead of expiry by the node's lease holder,
//! and the export goes on without a failed upload (docs/credentials.md).
//!
//! The issue asks for 5 minutes with 60-second credentials; this runs 50 s with 20-second
//! credentials (renewed every 10 s: five renewals, the same code path) to stay within CI's time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use config_bridge_tests::payload_bytes;
use config_bridge_tests::real_engine::{
    assert_no_secrets_in_logs, engine_filter_config, known_secrets, wait_for_object,
    with_url_source, ConfigUrl, EngineNode, EngineSpec, LiveS3, LogMark,
};
use host_harness::mocks::aws_credentials::{MockAwsCredentials, Provider};
use host_harness::mocks::serve;
use serde_json::{json, Value};

const RUN: Duration = Duration::from_secs(50);
const LIFETIME: Duration = Duration::from_secs(20);
const CHANGE_EVERY: Duration = Duration::from_secs(6);

fn doc(n: u32) -> Value {
    json!({"_format_version": "3.0", "services": [{"name": format!("svc-{n}"), "url": "http://u.internal"}]})
}

#[test]
fn imds_credentials_expiring_mid_run_keep_the_export_going() {
    let s3 = LiveS3::start();
    let creds = MockAwsCredentials::new()
        .issue_for(s3.mock())
        .lifetime(LIFETIME);
    let imds = serve::spawn(Arc::new(creds.clone()), "127.0.0.1:0").expect("IMDS mock serves");
    let source = ConfigUrl::start(&doc(0));
    let mut config = with_url_source(engine_filter_config(&s3.endpoint(), &doc(0)), &source.url());
    let m = config.as_object_mut().expect("object");
    m.remove("aws_access_key_id");
    m.remove("aws_secret_access_key");
    config["aws_imds_endpoint"] = json!(imds.url());
    config["cluster_fallback_config_export_delay"] = json!(0);
    let Some(node) = EngineNode::start(EngineSpec::new("imds_credentials", &config).workers(2))
    else {
        return;
    };
    wait_for_object(&node, &s3, &payload_bytes(&doc(0)), Duration::from_secs(20));
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < RUN {
        n += 1;
        source.set(&doc(n));
        wait_for_object(&node, &s3, &payload_bytes(&doc(n)), Duration::from_secs(10));
        std::thread::sleep(CHANGE_EVERY);
    }
    let puts = s3.puts();
    let failed: Vec<_> = puts.iter().filter(|p| p.status != Some(200)).collect();
    assert!(
        failed.is_empty(),
        "failed uploads: {failed:#?}\nlog:\n{}",
        node.log_since_for_humans(LogMark(0))
    );
    assert!(
        puts.len() > n as usize,
        "{} uploads for {n} changes",
        puts.len()
    );
    let issued = creds.issued();
    assert!(issued.iter().all(|i| i.provider == Provider::Imds));
    // Renewed every ~10 s over ~60 s: one fetch per refresh for the node's two workers.
    let expected = (started.elapsed().as_secs() + 20) / 10;
    assert!(
        issued.len() as u64 >= expected / 2 && issued.len() as u64 <= expected + 3,
        "{} fetches, about {expected} expected",
        issued.len()
    );
    for pair in issued.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at).unwrap_or_default();
        assert!(
            gap >= Duration::from_secs(5),
            "two fetches {gap:?} apart: {issued:#?}"
        );
        assert!(
            pair[1].at < pair[0].expires,
            "renewed after expiry: {issued:#?}"
        );
    }
    let mut secrets = known_secrets(&s3);
    secrets.extend([
        "mock-temporary-secret".to_string(),
        "mock-session-token".to_string(),
        "imds-session-".to_string(),
    ]);
    assert_no_secrets_in_logs(&node, &secrets);
    assert!(
        node.problems().is_empty(),
        "traps: {:?}",
        node.problems().first().map(ToString::to_string)
    );
}
