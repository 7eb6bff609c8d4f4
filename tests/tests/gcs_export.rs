//! GCS as the store (issue 12): the real .wasm against the mock GCS, which verifies the RS256
//! service-account JWT against the key's public half, issues expiring tokens and checks them and
//! their scope on every JSON API request. ngx_wasm_module and Envoy profiles.

mod gcs_support;

use std::time::{Duration, Instant};

use config_bridge_tests::kong_setup::{two_profiles, upstream_for};
use config_bridge_tests::*;
use gcs_support::*;
use host_harness::mocks::faults::Fault;
use host_harness::mocks::gcs::SCOPE_READ_WRITE;
use host_harness::HostProfile;
use serde_json::json;

/// The export reaches GCS through the JWT grant: the JWT is RS256 with the key's `kid`, `iss`,
/// `aud` = token_uri, the read-write scope and a one-hour lifetime; the upload carries the
/// content and the metadata; `ifGenerationMatch=0` for the first write. No secret in any log.
#[test]
fn exports_to_gcs_with_a_service_account_jwt() {
    for profile in two_profiles() {
        let mut g = gcs_world(&profile);
        let doc = declarative(1);
        let cfg = gcs_config(&profile, &doc, Some(&g.key_json));
        start_node(&mut g.world, 2, &cfg);
        assert!(until_exported(&mut g, &doc, secs(30)), "{}", profile.name);

        let obj = exported(&g.mock).unwrap();
        assert_eq!(obj.content_type, "application/json");
        assert_eq!(obj.metadata["uploader"], "node-a");
        assert_eq!(
            obj.metadata["config-sha256"],
            config_bridge::document::sha256_hex(&payload_bytes(&doc))
        );
        let applied: u64 = obj.metadata["config-applied-at"].parse().unwrap();
        assert!(applied >= epoch_ms(&g.world), "{applied}");
        assert_eq!(
            obj.uploader, EMAIL,
            "written with the service account's token"
        );

        // One token per worker: the engine asks the store for its token before it knows which
        // worker holds the node's export (docs/gcs.md).
        let tokens = token_calls(&g.mock);
        assert!(
            (1..=2).contains(&tokens.len()),
            "{}: {} token requests",
            profile.name,
            tokens.len()
        );
        assert_eq!(tokens[0].status, 200);
        assert_eq!(
            tokens[0].request.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let (header, claims) = jwt_of(&tokens[0]);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], json!(key().private_key_id));
        assert_eq!(claims["iss"], EMAIL);
        assert_eq!(claims["aud"], json!(format!("http://{OAUTH_HOST}/token")));
        assert_eq!(claims["scope"], SCOPE_READ_WRITE);
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            3600
        );

        let ups = uploads(&g.mock);
        assert_eq!(ups.len(), 1, "{}", profile.name);
        assert!(ups[0].request.path.contains("uploadType=multipart"));
        assert_eq!(
            ups[0].request.query_param("ifGenerationMatch").as_deref(),
            Some("0")
        );
        assert!(g.world.traps().is_empty(), "{:?}", g.world.traps());
        assert_eq!(log_messages(&g.world, "exported config to").len(), 1);
        assert_no_gcs_secrets(&g);
    }
}

/// Several exports within the token's hour use one token; shortly before it expires a new one
/// is fetched (one token request per hour, not per export), and later exports use it.
#[test]
fn one_token_serves_many_exports_and_is_renewed_before_it_expires() {
    for profile in two_profiles() {
        let mut g = gcs_world(&profile);
        let cfg = gcs_config(&profile, &declarative(1), Some(&g.key_json));
        let node = start_node(&mut g.world, 1, &cfg);
        assert!(until_exported(&mut g, &declarative(1), secs(30)));
        for n in 2..=5 {
            export_next(&mut g, &profile, node, n, secs(u64::from(n) * 120));
        }
        assert_eq!(uploads(&g.mock).len(), 5);
        assert_eq!(token_calls(&g.mock).len(), 1, "{}", profile.name);
        let first_token = uploads(&g.mock)[0]
            .request
            .header("authorization")
            .map(str::to_string);
        assert!(uploads(&g.mock).iter().all(|u| u
            .request
            .header("authorization")
            .map(str::to_string)
            == first_token));

        // The mock's tokens live 3599 s: renewed before that, without waiting for a 401.
        advance_to(&mut g.world, secs(3590));
        let tokens = token_calls(&g.mock);
        assert_eq!(tokens.len(), 2, "{}", profile.name);
        assert!(tokens[1].status == 200);
        let renewed_at = tokens[1].at;
        assert!(renewed_at < tokens[0].at + secs(3599));
        let cfg = gcs_config(&profile, &declarative(9), Some(&g.key_json));
        g.world.reconfigure(node, 0, cfg.to_string());
        assert!(until_exported(&mut g, &declarative(9), secs(90)));
        let last = uploads(&g.mock).pop().unwrap();
        assert_eq!(last.status, 200);
        assert_ne!(
            last.request.header("authorization").map(str::to_string),
            first_token
        );
        assert!(g
            .mock
            .requests()
            .iter()
            .all(|c| c.status != 401 && c.status != 400));
        assert_no_gcs_secrets(&g);
    }
}

/// A token that dies early (revoked): the store answers 401, the filter drops the token, fetches
/// a new one and the export's retry succeeds.
#[test]
fn a_401_drops_the_token_and_the_retry_uses_a_new_one() {
    for profile in two_profiles() {
        let mut g = gcs_world(&profile);
        let cfg = gcs_config(&profile, &declarative(1), Some(&g.key_json));
        let node = start_node(&mut g.world, 1, &cfg);
        assert!(until_exported(&mut g, &declarative(1), secs(30)));
        g.mock.revoke_tokens();
        export_next(&mut g, &profile, node, 2, secs(120));
        let ups = uploads(&g.mock);
        let statuses: Vec<u16> = ups.iter().map(|c| c.status).collect();
        assert_eq!(statuses, [200, 401, 200], "{}", profile.name);
        assert_eq!(token_calls(&g.mock).len(), 2);
        let failed = log_messages(&g.world, "HTTP 401");
        assert!(failed.iter().any(|l| l.contains("authError")), "{failed:?}");
        assert_no_gcs_secrets(&g);
    }
}

/// The token endpoint fails (503, then a broken connection): no store request leaves without a
/// token, the token request is retried with backoff, and the export goes out once it answers.
#[test]
fn a_failing_token_endpoint_is_retried_with_backoff() {
    for profile in two_profiles() {
        let mut g = gcs_world(&profile);
        g.oauth
            .push_n(Fault::status(503, "unavailable", "try later"), 3);
        g.oauth.push_n(Fault::reset(), 1);
        let cfg = gcs_config(&profile, &declarative(1), Some(&g.key_json));
        start_node(&mut g.world, 1, &cfg);
        assert!(
            until_exported(&mut g, &declarative(1), secs(120)),
            "{}",
            profile.name
        );
        let attempts: Vec<Duration> = g
            .world
            .calls()
            .into_iter()
            .filter(|c| c.upstream == upstream_for(&profile, OAUTH_HOST))
            .map(|c| c.sent_at)
            .collect();
        assert_eq!(attempts.len(), 5, "{}: {attempts:?}", profile.name);
        // Backoff: 1, 2, 4, 8 s (whole ticks).
        let gaps: Vec<u64> = attempts
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs())
            .collect();
        assert!(gaps.windows(2).all(|w| w[1] >= w[0]), "{gaps:?}");
        assert!(gaps.last().copied().unwrap_or(0) >= 4, "{gaps:?}");
        // No upload went out without a token.
        assert!(uploads(&g.mock)
            .iter()
            .all(|u| u.request.header("authorization").is_some() && u.status == 200));
        let lines = log_messages(&g.world, "GCS token request");
        assert!(
            lines.iter().any(|l| l.contains("HTTP 503")),
            "{}: {lines:?}",
            profile.name
        );
        assert_no_gcs_secrets(&g);
    }
}

/// Without a key the metadata server's token is used (`Metadata-Flavor: Google`, the scope asked
/// for), and the upload is made with it.
#[test]
fn without_a_key_the_metadata_server_token_is_used() {
    for profile in two_profiles() {
        let mut g = gcs_world(&profile);
        let doc = declarative(1);
        let cfg = gcs_config(&profile, &doc, None);
        start_node(&mut g.world, 1, &cfg);
        assert!(until_exported(&mut g, &doc, secs(30)), "{}", profile.name);
        let tokens = token_calls(&g.mock);
        assert_eq!(tokens.len(), 1, "{}", profile.name);
        let t = &tokens[0].request;
        assert_eq!(t.method, "GET");
        assert_eq!(t.header("metadata-flavor"), Some("Google"));
        assert_eq!(
            t.path_only(),
            "/computeMetadata/v1/instance/service-accounts/default/token"
        );
        assert_eq!(t.query_param("scopes").as_deref(), Some(SCOPE_READ_WRITE));
        assert_eq!(
            exported(&g.mock).unwrap().uploader,
            "default@mock-project.iam.gserviceaccount.com"
        );
        assert_no_gcs_secrets(&g);
    }
}

/// `ifGenerationMatch`: a newer config written by another node is never overwritten (its
/// metadata is read first and kept); a write that races with ours fails its precondition (412),
/// the object is read again and, being older, replaced at exactly the generation read.
#[test]
fn generation_preconditions_never_overwrite_a_newer_config() {
    for profile in two_profiles() {
        // Another node wrote a config "later" than ours (applied-at an hour ahead).
        let mut g = gcs_world(&profile);
        let other = br#"{"_format_version":"3.0","services":[]}"#;
        let newer = epoch_ms(&g.world) + 3_600_000;
        put_with_metadata(&g, other, "node-b", newer);
        let cfg = gcs_config(&profile, &declarative(1), Some(&g.key_json));
        start_node(&mut g.world, 1, &cfg);
        g.world.advance(secs(30));
        assert_eq!(
            exported(&g.mock).unwrap().data,
            other.to_vec(),
            "{}",
            profile.name
        );
        assert_eq!(uploads(&g.mock).len(), 1, "only the other node's upload");
        assert_eq!(log_messages(&g.world, "holds a newer config").len(), 1);

        // A first export (must not exist: ifGenerationMatch=0), then another writer replaces
        // it with an older config: our next export's precondition fails, the object is read
        // again and replaced at its new generation.
        let mut g = gcs_world(&profile);
        let node = start_node(&mut g.world, 1, &cfg);
        assert!(until_exported(&mut g, &declarative(1), secs(30)));
        put_with_metadata(&g, other, "node-b", 1);
        let theirs = exported(&g.mock).unwrap().generation;
        advance_to(&mut g.world, secs(120));
        let cfg2 = gcs_config(&profile, &declarative(2), Some(&g.key_json));
        g.world.reconfigure(node, 0, cfg2.to_string());
        assert!(
            until_exported(&mut g, &declarative(2), secs(120)),
            "{}",
            profile.name
        );
        let ours: Vec<(u16, Option<String>)> = uploads(&g.mock)
            .into_iter()
            .filter(|c| c.node != "other")
            .map(|c| (c.status, c.request.query_param("ifGenerationMatch")))
            .collect();
        assert_eq!(ours.len(), 3, "{}: {ours:?}", profile.name);
        assert_eq!(ours[0], (200, Some("0".into())));
        assert_eq!(ours[1].0, 412, "{ours:?}");
        assert_eq!(ours[2], (200, Some(theirs.to_string())));
        assert_no_gcs_secrets(&g);
    }
}

/// A direct multipart upload into the mock (another writer), with our metadata keys.
fn put_with_metadata(g: &Gcs, body: &[u8], uploader: &str, applied_at: u64) {
    use host_harness::http::{CallContext, Handler, HttpRequest};
    let token = g
        .mock
        .issue_token(EMAIL, &[SCOPE_READ_WRITE], g.world.clock().now());
    let meta = json!({"name": CONFIG_KEY, "contentType": "application/json",
        "metadata": {"uploader": uploader, "config-applied-at": applied_at.to_string(),
                     "config-sha256": config_bridge::document::sha256_hex(body)}});
    let mut multipart = format!(
        "--b\r\ncontent-type: application/json\r\n\r\n{meta}\r\n--b\r\ncontent-type: application/json\r\n\r\n"
    )
    .into_bytes();
    multipart.extend_from_slice(body);
    multipart.extend_from_slice(b"\r\n--b--\r\n");
    let mut req = HttpRequest::new(
        "POST",
        &format!("/upload/storage/v1/b/{BUCKET}/o?uploadType=multipart"),
    );
    req.headers = vec![
        ("authorization".into(), format!("Bearer {token}")),
        (
            "content-type".into(),
            "multipart/related; boundary=b".into(),
        ),
    ];
    req.body = multipart;
    let ctx = CallContext::new(g.world.clock().now(), "other", "storage");
    let reply = g.mock.handle(&req, &ctx);
    assert_eq!(reply.response().map(|r| r.status), Some(200));
}

/// Configuration errors name `gcp_service_account` and never echo the key: not JSON, no
/// private key, a private key that is not RSA. The filter stays inert.
#[test]
fn a_bad_service_account_key_is_a_configuration_error_naming_the_field() {
    // A P-256 key in PKCS#8 (RFC 5915 test material, never used anywhere): not RS256-capable.
    const EC_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgevZzL1gdAFr88hb2\nOF/2NxApJCzGCEDdfSp6VQO30hyhRANCAAQRWz+jn65BtOMvdyHKcvjBeBSDZH2r\n1RTwjmYSi9R/zpBnuQ4EiMnCqfMPWiZqB4QdbAd0E7oH50VpuZ1P087G\n-----END PRIVATE KEY-----\n";
    for profile in two_profiles() {
        let g = gcs_world(&profile);
        let good = g.key_json.clone();
        let mut no_key = good.clone();
        no_key.as_object_mut().unwrap().remove("private_key");
        let mut ec = good.clone();
        ec["private_key"] = json!(EC_KEY);
        let mut garbled = good.clone();
        let pem = good["private_key"].as_str().unwrap().replace('A', "*");
        garbled["private_key"] = json!(pem);
        let cases = [
            ("not JSON", json!("{\"type\": \"service_account\", ")),
            ("no private_key", json!(no_key.to_string())),
            ("EC key", json!(ec.to_string())),
            ("garbled PEM", json!(garbled.to_string())),
        ];
        for (what, value) in cases {
            let mut g = gcs_world(&profile);
            let mut cfg = gcs_config(&profile, &declarative(1), Some(&good));
            cfg["gcp_service_account"] = value.clone();
            start_node(&mut g.world, 1, &cfg);
            g.world.advance(secs(5));
            let lines = log_messages(&g.world, "invalid configuration");
            assert_eq!(lines.len(), 1, "{what}: {lines:?}");
            assert!(
                lines[0].contains("invalid configuration: gcp_service_account: "),
                "{what}: {}",
                lines[0]
            );
            if what == "EC key" {
                assert!(lines[0].contains("not an RSA key"), "{}", lines[0]);
            }
            assert!(g.mock.requests().is_empty(), "{what}");
            let mut s = secrets(&g.mock, &good);
            s.push(EC_KEY.lines().nth(1).unwrap().to_string());
            let refs: Vec<&str> = s.iter().map(String::as_str).collect();
            assert_no_secrets(&g.world, &refs);
        }
    }
}

/// The key from the environment (`GCP_SERVICE_ACCOUNT`, as Kong reads it) works as well.
#[test]
fn the_key_from_the_environment_works() {
    let profile = HostProfile::ngx_wasm_module();
    let mut g = gcs_world(&profile);
    let doc = declarative(1);
    let mut cfg = gcs_config(&profile, &doc, None);
    cfg.as_object_mut().unwrap().remove("gcs_metadata_upstream");
    let spec = host_harness::NodeSpec::new("n1", &plugin_module())
        .workers(1)
        .env("GCP_SERVICE_ACCOUNT", &g.key_json.to_string())
        .filter(cfg.to_string());
    g.world.add_node(spec).unwrap();
    assert!(until_exported(&mut g, &doc, secs(30)));
    assert_eq!(
        jwt_of(&token_calls(&g.mock)[0]).1["scope"],
        SCOPE_READ_WRITE
    );
    assert_no_gcs_secrets(&g);
}

/// The JWT's RSA signature is computed in slices, one per host tick (docs/gcs.md): the longest
/// `on_tick` while the token is fetched holds about half of the signature's time (one of the two
/// CRT exponentiations), not all of it. Also prints the times for BENCHMARKS.md: the longest and
/// the total `on_tick` in the real .wasm (Cranelift, this machine) against one whole signature
/// natively.
#[test]
fn jwt_signing_time_in_wasm_and_native() {
    let profile = HostProfile::ngx_wasm_module();
    let mut g = gcs_world(&profile);
    let cfg = gcs_config(&profile, &declarative(1), Some(&g.key_json));
    start_node(&mut g.world, 1, &cfg);
    // Up to the tick before the first engine tick, then only the ticks of the token request.
    g.world.advance(ms(900));
    g.world.reset_callback_times();
    let mock = g.mock.clone();
    g.world
        .advance_until(secs(5), ms(50), |_| !token_calls(&mock).is_empty());
    let ticks = g.world.callback_times()["on_tick"].clone();

    let key =
        config_bridge::settings::gcs::ServiceAccountKey::parse(&g.key_json.to_string()).unwrap();
    let start = Instant::now();
    let rounds = 20;
    for i in 0..rounds {
        key.assertion(
            SCOPE_READ_WRITE,
            "https://oauth2.googleapis.com/token",
            1_700_000_000 + i,
        )
        .unwrap();
    }
    let native = start.elapsed() / rounds as u32;
    let ms_of = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "JWT RS256 signing: in wasm the longest on_tick {:.2} ms of {:.2} ms over {} ticks; \
         natively {:.2} ms per signature",
        ms_of(ticks.longest_guest),
        ms_of(ticks.total_guest),
        ticks.count,
        ms_of(native)
    );
    assert!(
        ticks.total_guest > native,
        "the ticks hold the whole signature"
    );
    // Unsliced, one tick held ~all of it (≥ 0.9 of the total).
    assert!(
        ticks.longest_guest.as_secs_f64() < 0.7 * ticks.total_guest.as_secs_f64(),
        "the signature is spread over several ticks"
    );
    assert!(until_exported(&mut g, &declarative(1), secs(30)));
}

/// Short-lived tokens (2 minutes): each is renewed at half its lifetime, so exports spread over
/// ten minutes never meet an expired token (no 401) and the token requests stay one per renewal.
#[test]
fn short_lived_tokens_are_renewed_before_they_expire() {
    for profile in two_profiles() {
        let mut g = gcs_world(&profile);
        g.mock.set_token_lifetime(Duration::from_secs(120));
        let cfg = gcs_config(&profile, &declarative(1), Some(&g.key_json));
        let node = start_node(&mut g.world, 1, &cfg);
        assert!(until_exported(&mut g, &declarative(1), secs(30)));
        for n in 2..=6 {
            export_next(&mut g, &profile, node, n, secs(u64::from(n) * 100));
        }
        let bad: Vec<String> = g
            .mock
            .requests()
            .iter()
            .filter(|c| c.status == 401 || c.status >= 500)
            .map(|c| {
                format!(
                    "{} {} {}",
                    c.request.method,
                    c.request.path_only(),
                    c.status
                )
            })
            .collect();
        assert!(
            bad.is_empty(),
            "{}: no expired token used: {bad:?}",
            profile.name
        );
        let tokens = token_calls(&g.mock);
        let span = tokens
            .last()
            .unwrap()
            .at
            .duration_since(tokens[0].at)
            .unwrap();
        // One every 60 s (half of 120 s), on tick boundaries.
        assert!(
            tokens.len() as u64 <= span.as_secs() / 60 + 2,
            "{}: {} tokens over {span:?}",
            profile.name,
            tokens.len()
        );
        assert!(tokens.len() >= 8, "{}: {}", profile.name, tokens.len());
        assert_no_gcs_secrets(&g);
    }
}

/// A node whose clock is 20 minutes off (either way) still exports to GCS: the JWT's `iat`/`exp`
/// follow the store's clock, measured from the `Date` of GCS's answers (the first grant refused
/// for its time is the measurement), docs/credentials.md.
#[test]
fn a_node_clock_off_by_20_minutes_still_exports_to_gcs() {
    for offset_min in [20i64, -20] {
        for profile in two_profiles() {
            let mut g = gcs_world(&profile);
            let cfg = gcs_config(&profile, &declarative(1), Some(&g.key_json));
            let node = start_node(&mut g.world, 1, &cfg);
            g.world.set_clock_skew(node, offset_min * 60_000);
            assert!(
                until_exported(&mut g, &declarative(1), secs(120)),
                "{} / node clock {offset_min:+} min: not exported; token calls: {}",
                profile.name,
                token_calls(&g.mock).len()
            );
            assert!(
                token_calls(&g.mock).len() <= 3,
                "{} / node clock {offset_min:+} min: {} token requests",
                profile.name,
                token_calls(&g.mock).len()
            );
        }
    }
}
