//! The filter's AWS credential chain in the harness (docs/credentials.md), under the
//! ngx_wasm_module and Envoy profiles: temporary credentials from the instance metadata service
//! and the container endpoint (strict mocks: IMDSv2 session tokens, expiry), renewed ahead of
//! expiry by the node's lease holder only; `ExpiredToken` forcing a refresh; a node clock off by
//! ±20 minutes; SSE-C objects read back with their key.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use config_bridge_tests::*;
use host_harness::http::SharedHandler;
use host_harness::mocks::aws_credentials::{MockAwsCredentials, Provider};
use host_harness::mocks::s3::MockS3;
use host_harness::{HostProfile, World};
use serde_json::{json, Value};

fn profiles() -> [HostProfile; 2] {
    [HostProfile::ngx_wasm_module(), HostProfile::envoy()]
}

/// A mock S3 that knows no permanent key: only what the credential endpoints issue.
fn s3_without_keys() -> MockS3 {
    MockS3::builder().region(REGION).bucket(BUCKET).build()
}

/// The filter configuration without keys, pointing the provider at the mock (`host:port` for
/// ngx, a cluster name for Envoy).
fn chain_config(profile: &HostProfile, doc: &Value, provider: &str) -> (Value, String) {
    let mut cfg = filter_config(profile, doc);
    let o = cfg.as_object_mut().unwrap();
    o.remove("aws_access_key_id");
    o.remove("aws_secret_access_key");
    o.insert("cluster_fallback_config_export_delay".into(), json!(0));
    o.insert("host_tick_ms".into(), json!(1000));
    let upstream = if profile.upstream_is_host_port {
        "169.254.169.254:80".to_string()
    } else {
        "aws_credentials".to_string()
    };
    match provider {
        "imds" => {
            o.insert("aws_imds_upstream".into(), json!(upstream));
        }
        "container" => {
            o.insert(
                "aws_container_credentials_uri".into(),
                json!("http://169.254.170.23/v1/credentials"),
            );
            o.insert("aws_container_authorization_token".into(), json!(POD_TOKEN));
            o.insert("aws_container_credentials_upstream".into(), json!(upstream));
        }
        _ => unreachable!(),
    }
    (cfg, upstream)
}

const POD_TOKEN: &str = "eks-pod-identity-token-NEVER-LOG-ME-4711";

fn world(profile: &HostProfile, s3: &MockS3, creds: &MockAwsCredentials, upstream: &str) -> World {
    let mut world = world_with_storage(profile, s3.clone());
    let handler: SharedHandler = Arc::new(creds.clone());
    world.route(upstream, handler);
    world
}

/// Log lines must hold none of the issued secrets or tokens.
fn assert_no_issued_secrets(world: &World) {
    for line in world.logs() {
        for needle in [
            "mock-temporary-secret",
            "mock-session-token",
            "imds-session-",
            POD_TOKEN,
        ] {
            assert!(
                !line.message.contains(needle),
                "a credential leaked into a log line: {}",
                line.message
            );
        }
    }
    assert_no_secrets(world, &[POD_TOKEN]);
}

/// Three virtual hours with 15-minute credentials and a configuration change every 5 minutes:
/// every change is exported, no upload fails, and credentials are fetched once per refresh for
/// the whole node (two workers share them), ahead of expiry.
#[test]
fn three_hours_of_15_minute_credentials_export_every_change() {
    for provider in ["imds", "container"] {
        for profile in profiles() {
            let ctx = format!("{} / {provider}", profile.name);
            let s3 = s3_without_keys();
            let creds = MockAwsCredentials::new()
                .issue_for(&s3)
                .lifetime(Duration::from_secs(15 * 60))
                .container("/v1/credentials", Some(POD_TOKEN));
            let (cfg, upstream) = chain_config(&profile, &declarative(0), provider);
            let mut world = world(&profile, &s3, &creds, &upstream);
            let node = start_node(&mut world, 2, &cfg);
            let changes = 36;
            for n in 1..=changes {
                advance_to(&mut world, secs(n * 300 - 150));
                let (cfg, _) = chain_config(&profile, &declarative(n as u32), provider);
                for r in world.reconfigure(node, 0, cfg.to_string()) {
                    assert_eq!(r, Some(true), "{ctx}");
                }
            }
            advance_to(&mut world, secs(3 * 3600));
            let puts = puts(&s3);
            let failed: Vec<_> = puts.iter().filter(|p| p.status != 200).collect();
            assert!(failed.is_empty(), "{ctx}: failed uploads {failed:#?}");
            // Every change (and the first document) was uploaded, in order.
            let bodies: Vec<Vec<u8>> = storage_calls(&world, "PUT")
                .into_iter()
                .map(|c| c.request.body)
                .collect();
            let expected: Vec<Vec<u8>> = (0..=changes as u32)
                .map(|n| payload_bytes(&declarative(n)))
                .collect();
            assert_eq!(bodies.len(), expected.len(), "{ctx}");
            assert!(bodies == expected, "{ctx}: every change, in order");
            assert_exported(&s3, &declarative(changes as u32));
            // Fetches: one per refresh for the node (renewed 5 min before expiry: every 10 min),
            // never two close together (the second worker never fetched its own).
            let issued = creds.issued();
            let want = match provider {
                "imds" => Provider::Imds,
                _ => Provider::Container,
            };
            assert!(issued.iter().all(|i| i.provider == want), "{ctx}");
            let times: Vec<u64> = issued
                .iter()
                .map(|i| i.at.duration_since(issued[0].at).unwrap().as_secs())
                .collect();
            assert!(
                (16..=19).contains(&issued.len()),
                "{ctx}: {} fetches in 3 h at {times:?} s",
                issued.len()
            );
            for pair in issued.windows(2) {
                let gap = pair[1].at.duration_since(pair[0].at).unwrap();
                assert!(
                    gap >= Duration::from_secs(9 * 60) && gap <= Duration::from_secs(12 * 60),
                    "{ctx}: fetches {gap:?} apart ({times:?} s)"
                );
                assert!(pair[1].at < pair[0].expires, "{ctx}: renewed before expiry");
            }
            if provider == "imds" {
                // The session token (6 h) is fetched once: each refresh is one credentials GET.
                assert_eq!(creds.imds_requests(), issued.len() as u64 + 2, "{ctx}");
            }
            assert_no_issued_secrets(&world);
        }
    }
}

/// S3 revokes the credentials before their announced expiry: the `ExpiredToken` answer makes the
/// lease holder fetch new ones at once, and the export goes through on its retry.
#[test]
fn expired_token_forces_a_refresh() {
    for profile in profiles() {
        let s3 = s3_without_keys();
        let creds = MockAwsCredentials::new().issue_for(&s3);
        let (cfg, upstream) = chain_config(&profile, &declarative(1), "imds");
        let mut world = world(&profile, &s3, &creds, &upstream);
        let node = start_node(&mut world, 1, &cfg);
        advance_to(&mut world, secs(10));
        assert_exported(&s3, &declarative(1));
        assert_eq!(creds.issued().len(), 1);
        s3.expire_temporary_credentials(SystemTime::UNIX_EPOCH);
        let (cfg, _) = chain_config(&profile, &declarative(2), "imds");
        world.reconfigure(node, 0, cfg.to_string());
        advance_to(&mut world, secs(30));
        assert_exported(&s3, &declarative(2));
        let codes: Vec<Option<String>> = puts(&s3).into_iter().map(|p| p.error_code).collect();
        assert_eq!(
            codes,
            [None, Some("ExpiredToken".to_string()), None],
            "{}",
            profile.name
        );
        assert_eq!(creds.issued().len(), 2, "{}: one new fetch", profile.name);
        assert_no_issued_secrets(&world);
    }
}

/// A container more hops away than the instance's metadata hop limit never gets an IMDSv2
/// session token: the filter says what to change, and exports nothing with no credentials.
#[test]
fn imds_hop_limit_too_low_for_a_container_is_explained() {
    let profile = HostProfile::ngx_wasm_module();
    let s3 = s3_without_keys();
    let creds = MockAwsCredentials::new().issue_for(&s3).hops(1, 2);
    let (cfg, upstream) = chain_config(&profile, &declarative(1), "imds");
    let mut world = world(&profile, &s3, &creds, &upstream);
    start_node(&mut world, 1, &cfg);
    advance_to(&mut world, secs(60));
    assert!(creds.issued().is_empty());
    assert!(s3.requests().is_empty(), "nothing unsigned reaches S3");
    let lines = log_messages(&world, "the instance metadata service");
    assert!(
        lines.iter().any(|l| l.contains("failed")),
        "the failure is logged: {lines:#?}"
    );
}

/// A node whose clock is 20 minutes off (either way) still exports: the store's `Date` corrects
/// `x-amz-date` (the mock refuses more than 15 minutes of skew, like S3).
#[test]
fn a_node_clock_off_by_20_minutes_still_exports_to_s3() {
    for offset_min in [20i64, -20] {
        for profile in profiles() {
            let ctx = format!("{} / store clock {offset_min:+} min", profile.name);
            let s3 = mock_s3();
            s3.set_clock_offset_ms(offset_min * 60_000);
            let mut world = world_with_storage(&profile, s3.clone());
            let node = start_exporter(&mut world, 1, &declarative(1));
            advance_to(&mut world, secs(30));
            assert_exported(&s3, &declarative(1));
            apply_doc(&mut world, node, &declarative(2));
            advance_to(&mut world, secs(200));
            assert_exported(&s3, &declarative(2));
            let skewed = s3
                .requests()
                .iter()
                .filter(|r| {
                    r.error_code.as_deref() == Some("RequestTimeTooSkewed") || r.status == 403
                })
                .count();
            let seen: Vec<String> = s3
                .requests()
                .iter()
                .map(|r| format!("{} {} {:?}", r.method, r.status, r.error_code))
                .collect();
            assert!(
                skewed <= 1,
                "{ctx}: at most the first request refused: {seen:#?}"
            );
        }
    }
}

/// The mock itself refuses a request signed 16 minutes off, like S3.
#[test]
fn the_mock_s3_refuses_more_than_15_minutes_of_skew() {
    let profile = HostProfile::ngx_wasm_module();
    let s3 = mock_s3();
    // Corrections are what the filter does; without a Date to learn from it would fail: shift
    // the store clock after the first export so the filter's skew is stale.
    let mut world = world_with_storage(&profile, s3.clone());
    let node = start_exporter(&mut world, 1, &declarative(1));
    advance_to(&mut world, secs(5));
    assert_exported(&s3, &declarative(1));
    s3.set_clock_offset_ms(16 * 60_000);
    apply_doc(&mut world, node, &declarative(2));
    advance_to(&mut world, secs(200));
    let codes: Vec<Option<String>> = puts(&s3).into_iter().map(|p| p.error_code).collect();
    assert_eq!(
        codes.get(1).cloned().flatten().as_deref(),
        Some("RequestTimeTooSkewed"),
        "{codes:?}"
    );
    assert_exported(&s3, &declarative(2));
}

/// SSE-C: the export's HEAD and the conflict round's HEAD carry the customer key, so a second
/// export (and an import) can read the object S3 only shows to holders of the key.
#[test]
fn sse_c_objects_are_read_back_with_their_key() {
    use base64::Engine as _;
    use md5::Digest as _;
    let key = [7u8; 32];
    let b64 = base64::engine::general_purpose::STANDARD;
    let sse = json!({
        "SSECustomerAlgorithm": "AES256",
        "SSECustomerKey": b64.encode(key),
        "SSECustomerKeyMD5": b64.encode(md5::Md5::digest(key)),
    });
    for profile in profiles() {
        let s3 = mock_s3();
        let mut world = world_with_storage(&profile, s3.clone());
        let mut cfg = filter_config(&profile, &declarative(1));
        cfg["cluster_fallback_export_s3_config"] = sse.clone();
        let node = start_node(&mut world, 1, &cfg);
        advance_to(&mut world, secs(5));
        assert_exported(&s3, &declarative(1));
        // Another writer replaces the object: the next export's conditional PUT fails, and the
        // conflict round HEADs the SSE-C object (400 without the key).
        s3.put_object_direct(
            BUCKET,
            CONFIG_KEY,
            &payload_bytes(&declarative(99)),
            SystemTime::UNIX_EPOCH,
        );
        let mut cfg2 = filter_config(&profile, &declarative(2));
        cfg2["cluster_fallback_export_s3_config"] = sse.clone();
        world.reconfigure(node, 0, cfg2.to_string());
        advance_to(&mut world, secs(200));
        let heads: Vec<_> = s3
            .requests()
            .into_iter()
            .filter(|r| r.method == "HEAD")
            .collect();
        assert!(!heads.is_empty(), "{}", profile.name);
        assert!(
            heads.iter().all(|h| h.status != 400),
            "{}: every HEAD carried the key: {heads:#?}",
            profile.name
        );
        assert_no_secrets(&world, &[&b64.encode(key)]);
    }
}
