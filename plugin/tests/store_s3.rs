//! The S3 store's requests (put, head, get, list with paging, delete) sent to the harness's mock S3,
//! which verifies every SigV4 signature with the real secret (query strings included), and its
//! answers parsed back. The engine drives these through the same trait.

// Test code may panic; the crate's no-panic lints (plugin/Cargo.toml) are for the filter.
// `cfg(test)` (always set here) is what brings the whole file, helpers included, under
// clippy.toml's `allow-*-in-tests`: clippy does not see an integration test as test code without it.
#![cfg(test)]
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use config_bridge::document::{sha256, sha256_hex};
use config_bridge::http::{HttpResponse, OutboundRequest};
use config_bridge::settings::Config;
use config_bridge::store::{
    self, DeleteOutcome, ExportMeta, GetOutcome, HeadOutcome, ListOutcome, ObjectStore,
    Precondition, PutOutcome,
};
use harness_mocks::http::{CallContext, Handler, HttpRequest, Reply};
use harness_mocks::s3::{MockS3, S3Credential};

const NOW_MS: u64 = 1_796_113_536_000;

fn setup() -> (MockS3, Box<dyn ObjectStore>) {
    let s3 = MockS3::builder()
        .region("us-east-1")
        .bucket("kong-backups")
        .credential(S3Credential::new("AKIDSTORE", "store-secret-key"))
        .build();
    let cfg = serde_json::json!({
        "cluster_fallback_config_export": "on",
        "cluster_fallback_config_storage": "s3://kong-backups/fallback",
        "gateway_version": "3.9.1",
        "aws_access_key_id": "AKIDSTORE",
        "aws_secret_access_key": "store-secret-key",
        "aws_region": "us-east-1",
        "storage_endpoint": "http://127.0.0.1:9000",
        "config": {"_format_version": "3.0"}
    });
    let cfg = Config::parse(cfg.to_string().as_bytes(), &|_| None).expect("valid settings");
    (s3, store::for_settings(&cfg.storage))
}

/// Sends a request to the mock as a host would.
fn send(s3: &MockS3, r: OutboundRequest) -> HttpResponse {
    let mut req = HttpRequest::new(&r.method, &r.path);
    req.authority = r.authority.clone();
    req.scheme = r.scheme.clone();
    req.headers = r.headers.clone();
    req.headers.push(("host".into(), r.authority.clone()));
    // The host adds Content-Length unless the filter set it (the store signs it for PUTs).
    if r.header("content-length").is_none() {
        req.headers
            .push(("content-length".into(), r.body.len().to_string()));
    }
    req.body = r.body.to_vec();
    let ctx = CallContext {
        now: UNIX_EPOCH + Duration::from_millis(NOW_MS),
        node: "n1".into(),
        upstream: r.upstream.clone(),
    };
    match s3.handle(&req, &ctx) {
        Reply::Response { response, .. } => HttpResponse {
            status: response.status,
            headers: response.headers,
            body: response.body,
        },
        other => panic!("no response: {other:?}"),
    }
}

fn put(s3: &MockS3, store: &dyn ObjectStore, key: &str, body: &[u8]) -> PutOutcome {
    let meta = ExportMeta {
        uploader: "n1".into(),
        applied_at: NOW_MS,
        sha256_hex: sha256_hex(body),
        sha256: sha256(body),
        sequence: 1,
        updated_at_ms: None,
        supersedes: Vec::new(),
        seal: Vec::new(),
    };
    let body = Rc::new(body.to_vec());
    let req = store
        .put(key, &body, &Precondition::IfAbsent, &meta, NOW_MS)
        .expect("signed");
    store.parse_put(&send(s3, req))
}

#[test]
fn every_request_of_the_store_is_signed_and_answered() {
    let (s3, store) = setup();
    let key = "fallback/3.9.1/config.json";
    let body = br#"{"_format_version":"3.0","services":[]}"#;
    let first = put(&s3, store.as_ref(), key, body);
    assert!(matches!(first, PutOutcome::Stored { .. }), "{first:?}");
    assert_eq!(
        put(&s3, store.as_ref(), key, body),
        PutOutcome::PreconditionFailed,
        "If-None-Match: * on an existing object"
    );

    let head = store.parse_head(&send(&s3, store.head(key, NOW_MS).expect("signed")));
    let HeadOutcome::Found(meta) = head else {
        panic!("{head:?}")
    };
    assert_eq!(meta.sha256_hex.as_deref(), Some(sha256_hex(body).as_str()));

    let got = store.parse_get(send(&s3, store.get(key, None, NOW_MS).expect("signed")));
    let GetOutcome::Found {
        body: got,
        meta: got_meta,
    } = got
    else {
        panic!("{got:?}")
    };
    assert_eq!(got, body);
    assert_eq!(got_meta.uploader.as_deref(), Some("n1"));
    let etag = got_meta.version.expect("an etag");
    let again = send(&s3, store.get(key, Some(&etag), NOW_MS).expect("signed"));
    assert_eq!(store.parse_get(again), GetOutcome::NotModified);
    let missing = send(
        &s3,
        store
            .get("fallback/none.json", None, NOW_MS)
            .expect("signed"),
    );
    assert_eq!(store.parse_get(missing), GetOutcome::Missing);

    let del = send(&s3, store.delete(key, NOW_MS).expect("signed"));
    assert_eq!(store.parse_delete(&del), DeleteOutcome::Deleted);
    assert!(s3.object("kong-backups", key).is_none());
    assert!(s3
        .requests()
        .iter()
        .all(|r| r.error_code.as_deref() != Some("SignatureDoesNotMatch")));
}

#[test]
fn listing_pages_through_more_than_a_thousand_keys_with_awkward_names() {
    let (s3, store) = setup();
    let prefix = "fallback/3.9.1/election/";
    let mut expected = Vec::new();
    for i in 0..1203 {
        // Kong's registration names: `<register_time>-<node_id>`, node ids with odd characters.
        let key = format!("{prefix}1733012345.{i:03}-node {i}+a&b");
        s3.put_object_direct(
            "kong-backups",
            &key,
            b"",
            UNIX_EPOCH + Duration::from_secs(1_733_012_345),
        );
        expected.push(key);
    }
    s3.put_object_direct(
        "kong-backups",
        "fallback/3.9.1/config.json",
        b"{}",
        UNIX_EPOCH,
    );
    let mut seen = Vec::new();
    let mut page: Option<String> = None;
    let mut pages = 0;
    loop {
        let req = store.list(prefix, page.as_deref(), NOW_MS).expect("signed");
        let resp = send(&s3, req);
        let ListOutcome::Page { entries, next } = store.parse_list(&resp) else {
            panic!("{} {}", resp.status, String::from_utf8_lossy(&resp.body))
        };
        pages += 1;
        assert!(entries.len() <= 1000);
        for e in &entries {
            assert_eq!(e.modified_ms, Some(1_733_012_345_000), "{e:?}");
        }
        seen.extend(entries.into_iter().map(|e| e.key));
        match next {
            Some(n) => page = Some(n),
            None => break,
        }
    }
    assert_eq!(pages, 2);
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected);
}

#[test]
fn store_errors_are_parsed_without_secrets() {
    let (s3, _) = setup();
    let cfg = serde_json::json!({
        "cluster_fallback_config_export": "on",
        "cluster_fallback_config_storage": "s3://kong-backups/fallback",
        "gateway_version": "3.9.1",
        "aws_access_key_id": "AKIDSTORE",
        "aws_secret_access_key": "a-wrong-secret-NEVER-LOG",
        "aws_region": "us-east-1",
        "storage_endpoint": "http://127.0.0.1:9000",
        "config": {"_format_version": "3.0"}
    });
    let cfg = Config::parse(cfg.to_string().as_bytes(), &|_| None).expect("valid settings");
    let store = store::for_settings(&cfg.storage);
    let resp = send(&s3, store.list("fallback/", None, NOW_MS).expect("signed"));
    let ListOutcome::Failed(e) = store.parse_list(&resp) else {
        panic!("{}", resp.status)
    };
    assert_eq!((e.status, e.code.as_str()), (403, "SignatureDoesNotMatch"));
    assert!(!e.to_string().contains("a-wrong-secret"));
}
