//! No secret setting of a config-bridge filter reaches the store (docs/security.md): the real
//! .wasm exports documents whose config-bridge filters (top-level and nested chains, object and
//! Kong 3.4 string configurations) carry every secret setting — the AWS keys and session token,
//! the GCS service-account key, the SSE-C key, the Admin API token, and a setting the filter does
//! not know (default deny) — through each source (the filter's own `config`, a URL, a Kong Admin
//! API) to each store (mock S3, mock GCS). The stored object never holds any of them; the
//! non-secret settings stay.

mod gcs_support;

use config_bridge_tests::kong_setup::*;
use config_bridge_tests::*;
use gcs_support::*;
use host_harness::http::{CallContext, HttpRequest, HttpResponse, Reply};
use host_harness::mocks::kong::MockKongAdmin;
use host_harness::{HostProfile, World};
use serde_json::{json, Value};

/// Every secret setting (by name; `.` is a member of an object setting) and a value a leak of it
/// would show.
const SECRETS: &[(&str, &str)] = &[
    ("aws_access_key_id", "AKIAREDACTTEST000001"),
    (
        "aws_secret_access_key",
        "SECRET-aws-secret-access-key-redact-test",
    ),
    ("aws_session_token", "SECRET-aws-session-token-redact-test"),
    ("gcp_service_account", "SECRET-gcp-private-key-redact-test"),
    (
        "cluster_fallback_export_s3_config.SSECustomerKey",
        "SECRET-sse-c-key-redact-test",
    ),
    ("kong_admin_token", "SECRET-kong-admin-token-redact-test"),
    (
        "config_bridge_setting_added_later",
        "SECRET-unknown-setting-redact-test",
    ),
];

/// The URL serving the document (`config_source: "url"`).
const DOC_HOST: &str = "config-source.test:8080";

/// A config-bridge configuration carrying one secret setting, as another node's filter would.
fn carrying(setting: &str, secret: &str) -> Value {
    let mut c = json!({
        "cluster_fallback_config_export": "on",
        "cluster_fallback_config_storage": "s3://other-bucket/other",
        "aws_region": "eu-west-1",
    });
    match setting.split_once('.') {
        Some((object, member)) => {
            c[object] = json!({"SSECustomerAlgorithm": "AES256", member: secret});
        }
        None if setting == "gcp_service_account" => {
            let key = json!({"type": "service_account", "private_key": format!("-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n")});
            c[setting] = json!(key.to_string());
        }
        None => c[setting] = json!(secret),
    }
    c
}

/// One filter per secret, alternately as an object and as a Kong 3.4 string configuration.
fn filters() -> Vec<Value> {
    SECRETS
        .iter()
        .enumerate()
        .map(|(i, (setting, secret))| {
            let config = carrying(setting, secret);
            let config = if i % 2 == 0 {
                config
            } else {
                json!(config.to_string())
            };
            json!({"name": "config_bridge", "config": config, "enabled": true})
        })
        .collect()
}

/// Kong's nested form: the chains under a service and under one of its routes.
fn nested_doc() -> Value {
    json!({
        "_format_version": "3.0",
        "services": [{
            "name": "svc-redact",
            "url": "http://backend.internal:8080",
            "filter_chains": [{"name": "on-service", "filters": filters()}],
            "routes": [{
                "name": "route-redact",
                "paths": ["/r"],
                "filter_chains": [{"name": "on-route", "filters": filters()}]
            }]
        }]
    })
}

/// `nested_doc` grown past the size the filter validates across ticks (1 MiB) in slices of
/// 512 KiB, with a chain in a service in its middle and one in its last: the filter's own large
/// `config`, whose redaction works from the validation scan's notes (BENCHMARKS.md, "Issue 25,
/// speed7").
fn large_nested_doc() -> Value {
    let mut doc = nested_doc();
    let services = doc["services"].as_array_mut().unwrap();
    for i in 0..6000u32 {
        let mut s = json!({
            "name": format!("pad-{i:05}"),
            "url": "http://pad.internal:8080",
            "tags": ["padding", "x".repeat(200)],
            "updated_at": 1_700_000_000 + i,
        });
        if i == 3000 || i == 5999 {
            s["filter_chains"] = json!([{"name": format!("chain-{i}"), "filters": filters()}]);
        }
        services.push(s);
    }
    doc
}

/// Kong's flat form, as a Kong Admin API holds it.
fn flat_doc() -> Value {
    let mut doc = kong_config(31);
    doc["filter_chains"] = json!([{
        "id": uuid(31, 10_000),
        "name": "config-bridge",
        "service": uuid(31, 1000),
        "filters": filters(),
    }]);
    doc
}

#[derive(Clone, Copy, Debug)]
enum Source {
    Filter,
    /// The filter's own `config`, large (`large_nested_doc`).
    LargeFilter,
    Url,
    KongAdmin,
}

#[derive(Clone, Copy, Debug)]
enum Store {
    S3,
    Gcs,
}

/// Exports through `source` to `store`; the stored object's bytes and the world.
fn export(profile: &HostProfile, source: Source, store: Store) -> (Vec<u8>, World) {
    let doc = match source {
        Source::KongAdmin => flat_doc(),
        Source::Filter | Source::Url => nested_doc(),
        Source::LargeFilter => large_nested_doc(),
    };
    let s3 = mock_s3();
    let (mut world, mut cfg, gcs) = match store {
        Store::S3 => (
            world_with_storage(profile, s3.clone()),
            filter_config(profile, &doc),
            None,
        ),
        Store::Gcs => {
            let g = gcs_world(profile);
            let cfg = to_gcs(
                profile,
                filter_config(profile, &doc),
                KeyVia::Field(&g.key_json),
            );
            (g.world, cfg, Some(g.mock))
        }
    };
    cfg["cluster_fallback_config_export_delay"] = json!(1);
    let envoy = !profile.upstream_is_host_port;
    match source {
        Source::Filter | Source::LargeFilter => {}
        Source::Url => {
            cfg.as_object_mut().unwrap().remove("config");
            cfg["config_source"] = json!("url");
            cfg["config_poll_interval"] = json!(1);
            cfg["config_url"] = json!(format!("http://{DOC_HOST}/config.json?sig=abc"));
            if envoy {
                cfg["config_url_upstream"] = json!(upstream_for(profile, DOC_HOST));
            }
            let body = serde_json::to_vec(&doc).unwrap();
            route_host(
                &mut world,
                DOC_HOST,
                move |_: &HttpRequest, _: &CallContext| {
                    Reply::now(
                        HttpResponse::new(200)
                            .with_header("content-type", "application/json")
                            .with_body(body.clone()),
                    )
                },
            );
        }
        Source::KongAdmin => {
            cfg.as_object_mut().unwrap().remove("config");
            cfg["config_source"] = json!("kong_admin");
            cfg["config_poll_interval"] = json!(1);
            cfg["kong_admin_url"] = json!(format!("http://{CP_ADMIN}"));
            if envoy {
                cfg["kong_admin_upstream"] = json!(upstream_for(profile, CP_ADMIN));
            }
            let admin = MockKongAdmin::dbless(KONG_VERSION);
            admin.set_config(doc);
            route_host(&mut world, CP_ADMIN, admin);
        }
    }
    start_node(&mut world, 2, &cfg);
    let stored = || -> Option<Vec<u8>> {
        match &gcs {
            Some(mock) => exported(mock).map(|o| o.data),
            None => s3.object(BUCKET, CONFIG_KEY).map(|o| o.body),
        }
    };
    let done = world.advance_until(secs(120), secs(1), |_| stored().is_some());
    assert!(
        done,
        "{} {source:?} → {store:?}: nothing exported: {:?}",
        profile.name,
        log_messages(&world, "")
    );
    (stored().unwrap_or_default(), world)
}

/// The stored document's config-bridge filter configurations, as objects.
fn stored_filter_configs(doc: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut stack = vec![doc];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(o) => {
                if o.get("name") == Some(&json!("config_bridge")) {
                    if let Some(c) = o.get("config") {
                        out.push(match c {
                            Value::String(s) => serde_json::from_str(s).unwrap(),
                            other => other.clone(),
                        });
                    }
                }
                stack.extend(o.values());
            }
            Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    out
}

fn check(profile: &HostProfile, source: Source, store: Store) {
    let (stored, world) = export(profile, source, store);
    let context = format!("{} {source:?} → {store:?}", profile.name);
    if matches!(source, Source::LargeFilter) {
        let sliced = log_messages(&world, "validating it across ticks");
        assert!(!sliced.is_empty(), "{context}: not validated across ticks");
    }
    let text = String::from_utf8_lossy(&stored);
    for (setting, secret) in SECRETS {
        assert!(
            !text.contains(secret),
            "{context}: {setting} reached the store"
        );
    }
    // The filters are still there, with their non-secret settings.
    let doc: Value = serde_json::from_slice(&stored).unwrap();
    let configs = stored_filter_configs(&doc);
    let per_chain = SECRETS.len();
    let chains = match source {
        Source::KongAdmin => 1,
        Source::Filter | Source::Url => 2,
        Source::LargeFilter => 4,
    };
    assert_eq!(configs.len(), per_chain * chains, "{context}");
    for c in &configs {
        assert_eq!(
            c["cluster_fallback_config_storage"],
            json!("s3://other-bucket/other"),
            "{context}"
        );
        assert_eq!(c["aws_region"], json!("eu-west-1"), "{context}");
        let known = [
            "cluster_fallback_config_export",
            "cluster_fallback_config_storage",
            "aws_region",
            "cluster_fallback_export_s3_config",
        ];
        for key in c.as_object().unwrap().keys() {
            assert!(known.contains(&key.as_str()), "{context}: {key} kept");
        }
    }
    assert!(
        configs
            .iter()
            .any(|c| c["cluster_fallback_export_s3_config"]
                == json!({"SSECustomerAlgorithm": "AES256"})),
        "{context}: the non-secret S3 parameters stay"
    );
    assert!(world.traps().is_empty(), "{context}: {:?}", world.traps());
    let refs: Vec<&str> = SECRETS.iter().map(|(_, s)| *s).collect();
    assert_no_secrets(&world, &refs);
}

#[test]
fn no_secret_setting_reaches_s3_from_the_filters_own_large_config() {
    for profile in two_profiles() {
        check(&profile, Source::LargeFilter, Store::S3);
    }
}

#[test]
fn no_secret_setting_reaches_s3_from_the_filters_own_config() {
    for profile in two_profiles() {
        check(&profile, Source::Filter, Store::S3);
    }
}

#[test]
fn no_secret_setting_reaches_gcs_from_the_filters_own_config() {
    for profile in two_profiles() {
        check(&profile, Source::Filter, Store::Gcs);
    }
}

#[test]
fn no_secret_setting_reaches_s3_from_a_url() {
    for profile in two_profiles() {
        check(&profile, Source::Url, Store::S3);
    }
}

#[test]
fn no_secret_setting_reaches_gcs_from_a_url() {
    for profile in two_profiles() {
        check(&profile, Source::Url, Store::Gcs);
    }
}

#[test]
fn no_secret_setting_reaches_s3_from_a_kong_admin_api() {
    for profile in two_profiles() {
        check(&profile, Source::KongAdmin, Store::S3);
    }
}

#[test]
fn no_secret_setting_reaches_gcs_from_a_kong_admin_api() {
    for profile in two_profiles() {
        check(&profile, Source::KongAdmin, Store::Gcs);
    }
}
