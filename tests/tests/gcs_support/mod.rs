//! What the GCS harness tests share: the mock GCS routed as the storage, token and metadata
//! upstreams (the token endpoint behind a fault injector), the filter configuration turned to
//! `gs://`, one service-account key per test binary, and checks on the token flow.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use config_bridge_tests::kong_setup::{route_host, upstream_for};
use config_bridge_tests::*;
use host_harness::mocks::faults::Faulty;
use host_harness::mocks::gcs::{MockGcs, RecordedCall, ServiceAccountKey};
use host_harness::{HostProfile, NodeId, World};
use serde_json::{json, Value};

pub const STORAGE_HOST: &str = "storage.gcs.test:4443";
pub const OAUTH_HOST: &str = "oauth2.gcs.test:4444";
pub const METADATA_HOST: &str = "metadata.google.internal:80";
pub const EMAIL: &str = "exporter@kong-dr.iam.gserviceaccount.com";

/// One 2048-bit key per test binary (generation is slow).
pub fn key() -> &'static ServiceAccountKey {
    static KEY: OnceLock<ServiceAccountKey> = OnceLock::new();
    KEY.get_or_init(|| ServiceAccountKey::generate(EMAIL))
}

pub struct Gcs {
    pub world: World,
    pub mock: MockGcs,
    /// In front of the token endpoint.
    pub oauth: Faulty,
    /// The JSON key file the filter gets.
    pub key_json: Value,
}

pub fn gcs_world(profile: &HostProfile) -> Gcs {
    let mock = MockGcs::new()
        .with_base_url(&format!("http://{OAUTH_HOST}"))
        .with_bucket(BUCKET);
    let key_json = mock.register_key(key());
    let mut world = World::new(profile.clone());
    route_host(&mut world, STORAGE_HOST, mock.clone());
    let oauth = Faulty::new(Arc::new(mock.clone()));
    route_host(&mut world, OAUTH_HOST, oauth.clone());
    route_host(&mut world, METADATA_HOST, mock.clone());
    Gcs {
        world,
        mock,
        oauth,
        key_json,
    }
}

/// [`filter_config`] turned to `gs://`: the key as a filter field (None: the metadata server).
pub fn gcs_config(profile: &HostProfile, doc: &Value, key_json: Option<&Value>) -> Value {
    let key = match key_json {
        Some(k) => KeyVia::Field(k),
        None => KeyVia::Metadata,
    };
    to_gcs(profile, filter_config(profile, doc), key)
}

pub fn token_calls(mock: &MockGcs) -> Vec<RecordedCall> {
    mock.requests()
        .into_iter()
        .filter(|c| c.request.path_only() == "/token" || c.request.path.contains("/token?"))
        .collect()
}

pub fn uploads(mock: &MockGcs) -> Vec<RecordedCall> {
    mock.requests()
        .into_iter()
        .filter(|c| c.request.path.starts_with("/upload/storage/v1/b/"))
        .collect()
}

/// Every secret of the flow: the private key (PEM body lines), the JWTs and tokens sent.
pub fn secrets(mock: &MockGcs, key_json: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(pem) = key_json["private_key"].as_str() {
        out.extend(
            pem.lines()
                .filter(|l| !l.starts_with("-----") && l.len() > 20)
                .map(str::to_string),
        );
    }
    for c in mock.requests() {
        let body = String::from_utf8_lossy(&c.request.body).to_string();
        if let Some(a) = body.split("assertion=").nth(1) {
            out.extend(a.split('.').map(str::to_string));
        }
        if let Some(t) = c
            .request
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
        {
            out.push(t.to_string());
        }
    }
    out
}

pub fn assert_no_gcs_secrets(g: &Gcs) {
    let s = secrets(&g.mock, &g.key_json);
    assert!(!s.is_empty());
    let refs: Vec<&str> = s.iter().map(String::as_str).collect();
    assert_no_secrets(&g.world, &refs);
}

pub fn decode_segment(s: &str) -> Value {
    use std::collections::HashMap;
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let map: HashMap<char, u32> = alphabet.chars().zip(0..).collect();
    let (mut acc, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in s.chars() {
        acc = (acc << 6) | map[&c];
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    serde_json::from_slice(&out).unwrap()
}

/// The (header, claims) of the JWT in a token request.
pub fn jwt_of(call: &RecordedCall) -> (Value, Value) {
    let body = String::from_utf8_lossy(&call.request.body).to_string();
    let assertion = body
        .split('&')
        .find_map(|p| p.strip_prefix("assertion="))
        .unwrap();
    let mut parts = assertion.split('.');
    (
        decode_segment(parts.next().unwrap()),
        decode_segment(parts.next().unwrap()),
    )
}

pub fn exported(mock: &MockGcs) -> Option<host_harness::mocks::gcs::StoredObject> {
    mock.object(BUCKET, CONFIG_KEY)
}

pub fn until_exported(g: &mut Gcs, doc: &Value, limit: Duration) -> bool {
    let want = payload_bytes(doc);
    let mock = g.mock.clone();
    g.world.advance_until(limit, secs(1), |_| {
        exported(&mock).is_some_and(|o| o.data == want)
    })
}

/// How the filter gets its service-account key.
pub enum KeyVia<'a> {
    /// `gcp_service_account` in the filter configuration.
    Field(&'a Value),
    /// `GCP_SERVICE_ACCOUNT` in the environment (the test sets it).
    Env,
    /// No key: the metadata server.
    Metadata,
}

/// `cfg` (a [`filter_config`] or an importer's) turned to `gs://` on the mock.
pub fn to_gcs(profile: &HostProfile, mut cfg: Value, key: KeyVia<'_>) -> Value {
    let o = cfg.as_object_mut().unwrap();
    for k in [
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_region",
        "storage_endpoint",
    ] {
        o.remove(k);
    }
    cfg["cluster_fallback_config_storage"] = json!(format!("gs://{BUCKET}/{PREFIX}"));
    cfg["gcs_endpoint"] = json!(format!("http://{STORAGE_HOST}"));
    cfg["storage_upstream"] = json!(upstream_for(profile, STORAGE_HOST));
    let envoy = !profile.upstream_is_host_port;
    match key {
        KeyVia::Field(k) => cfg["gcp_service_account"] = json!(k.to_string()),
        KeyVia::Env | KeyVia::Metadata => {}
    }
    match key {
        KeyVia::Field(_) | KeyVia::Env if envoy => {
            cfg["gcs_token_upstream"] = json!(upstream_for(profile, OAUTH_HOST))
        }
        KeyVia::Metadata if envoy => {
            cfg["gcs_metadata_upstream"] = json!(upstream_for(profile, METADATA_HOST))
        }
        _ => {}
    }
    cfg
}

/// The filter applies `declarative(n)` at `at` (a reconfiguration, as Kong does) and exports it.
pub fn export_next(g: &mut Gcs, profile: &HostProfile, node: NodeId, n: u32, at: Duration) {
    advance_to(&mut g.world, at);
    let cfg = gcs_config(profile, &declarative(n), Some(&g.key_json));
    g.world.reconfigure(node, 0, cfg.to_string());
    assert!(
        until_exported(g, &declarative(n), Duration::from_secs(120)),
        "{}: export {n}",
        profile.name
    );
}
