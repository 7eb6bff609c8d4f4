//! Mock Kong Admin API: RBAC, configuration changes in the middle of a read, and the Kong
//! Enterprise export fixture (`tests/fixtures/kong/enterprise-export.json`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use harness_mocks::kong::declarative::{generate, generate_with, GenerateOptions};
use harness_mocks::kong::load::basicauth_hash;
use harness_mocks::kong::MockKongAdmin;
use harness_mocks::{CallContext, Handler, HttpRequest, HttpResponse};
use serde_json::{json, Value};

fn call(k: &MockKongAdmin, req: HttpRequest) -> HttpResponse {
    let ctx = CallContext::new(
        UNIX_EPOCH + Duration::from_secs(1_750_000_000),
        "node-1",
        "127.0.0.1:8001",
    );
    k.handle(&req, &ctx).response().unwrap().clone()
}

fn get(k: &MockKongAdmin, path: &str) -> HttpResponse {
    call(k, HttpRequest::new("GET", path))
}

fn json_of(r: &HttpResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", r.text()))
}

fn fixture() -> (String, Value) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/kong/enterprise-export.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let v = serde_json::from_str(&text).unwrap();
    (text, v)
}

#[test]
fn rbac_needs_the_token_on_every_request_and_never_records_it() {
    let k = MockKongAdmin::database("3.9.1").with_admin_token("s3cr3t-t0ken");
    for path in ["/", "/status", "/services", "/nothing"] {
        let r = get(&k, path);
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(json_of(&r), json!({"message": "Invalid RBAC credentials"}));
    }
    let wrong = HttpRequest::new("GET", "/services").with_header("Kong-Admin-Token", "nope");
    assert_eq!(call(&k, wrong).status, 401);
    let right =
        HttpRequest::new("GET", "/services").with_header("kong-admin-token", "s3cr3t-t0ken");
    assert_eq!(call(&k, right).status, 200);
    let log = k.requests();
    assert_eq!(log.len(), 6);
    let dump = format!("{:?} {:?}", log, k);
    assert!(!dump.contains("s3cr3t-t0ken"), "the token leaked: {dump}");
    assert_eq!(
        log[5].request.header("kong-admin-token"),
        Some("[redacted]")
    );

    let custom = MockKongAdmin::dbless("3.9.1")
        .with_admin_token_header("X-Admin-Key", "k")
        .with_rbac_message("Invalid RBAC credentials. Token provided: False");
    assert_eq!(
        json_of(&get(&custom, "/status"))["message"],
        "Invalid RBAC credentials. Token provided: False"
    );
    let ok = HttpRequest::new("GET", "/status").with_header("x-admin-key", "k");
    assert_eq!(call(&custom, ok).status, 200);
    // POST /config is guarded too.
    let post = HttpRequest::new("POST", "/config")
        .with_header("content-type", "application/json")
        .with_body(json!({"_format_version": "3.0"}).to_string());
    assert_eq!(call(&custom, post).status, 401);
    assert!(custom.posts().is_empty());
}

#[test]
fn a_change_in_the_middle_of_a_dump_shows_in_later_pages() {
    let k = MockKongAdmin::database("3.9.1");
    let opts = |consumers| GenerateOptions {
        consumers,
        ..GenerateOptions::new(5)
    };
    k.set_config(generate_with(&opts(1200), 1));
    let before: Vec<Value> = k.entities("consumers");
    // After the first page (request 1), the whole config is replaced by another one.
    k.change_after_requests(1, generate_with(&opts(1100), 2));
    let p1 = json_of(&get(&k, "/consumers?size=1000"));
    assert_eq!(p1["data"].as_array().unwrap().len(), 1000);
    let p2 = json_of(&get(&k, p1["next"].as_str().unwrap()));
    let after = k.entities("consumers");
    assert_eq!(after.len(), 1100);
    // Keyset paging: page 2 continues after page 1's last id, in the new config.
    let last = p1["data"][999]["id"].as_str().unwrap();
    let want: Vec<&Value> = after
        .iter()
        .filter(|c| c["id"].as_str().unwrap() > last)
        .collect();
    let got: Vec<&Value> = p2["data"].as_array().unwrap().iter().collect();
    assert_eq!(got.len(), want.len());
    assert!(got.iter().zip(&want).all(|(g, w)| g["id"] == w["id"]));
    // The two pages mix two configurations: neither set matches what a client would assume.
    let seen: std::collections::BTreeSet<&str> = p1["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(got.iter().copied())
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let old: std::collections::BTreeSet<&str> =
        before.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_ne!(seen, old);
    assert_eq!(k.applied_count(), 2);
}

#[test]
fn the_status_hash_can_change_between_two_polls() {
    let k = MockKongAdmin::dbless("3.9.1");
    let h1 = k.set_config(generate(3, 1));
    k.change_after_requests(2, generate(3, 2));
    let poll = |k: &MockKongAdmin| json_of(&get(k, "/status"))["configuration_hash"].clone();
    assert_eq!(poll(&k), h1);
    assert_eq!(poll(&k), h1);
    let h2 = poll(&k);
    assert_ne!(h2, h1);
    assert_eq!(h2, k.configuration_hash());

    // A closure hook sees the mock and runs once.
    let runs = Arc::new(AtomicU64::new(0));
    let r = runs.clone();
    k.on_request(1, move |m| {
        r.fetch_add(1, Ordering::SeqCst);
        m.clear_config();
    });
    assert_eq!(poll(&k), h2);
    assert_eq!(poll(&k), "00000000000000000000000000000000");
    poll(&k);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(k.request_count(), 6);
}

#[test]
fn the_enterprise_export_fixture_is_the_flat_form() {
    let (text, v) = fixture();
    // cjson writes `/` as `\/`; the key order is arbitrary.
    assert!(text.contains("\\/"));
    assert!(!text.starts_with("{\"_format_version\""));
    assert_eq!(v["_format_version"], "3.0");
    assert_eq!(v["_transform"], false);
    let types: Vec<&String> = v
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !k.starts_with('_'))
        .collect();
    assert!(types.len() >= 10, "{types:?}");
    assert!(v["workspaces"].is_array());
    assert!(v["services"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["enabled"] == true));
    assert!(v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["service"].is_string()));
    assert!(v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["created_at"].is_f64()));
    assert!(harness_mocks::kong::declarative::validate(&v).is_ok());
}

#[test]
fn the_fixture_loads_and_is_served_back() {
    let (_, doc) = fixture();
    // A database node keeps the entities exactly; Enterprise's export of them is the fixture.
    let db = MockKongAdmin::database("3.9.1");
    db.set_config(doc.clone());
    for (c, list) in doc.as_object().unwrap() {
        if let Some(list) = list.as_array() {
            assert_eq!(&db.entities(c), list, "{c}");
        }
    }
    assert_eq!(db.export_config(), doc);
    let svc = &doc["services"][0];
    let served = json_of(&get(
        &db,
        &format!("/services/{}", svc["id"].as_str().unwrap()),
    ));
    assert_eq!(served["name"], svc["name"]);
    assert_eq!(served["created_at"], svc["created_at"]);

    // A DB-less node takes it through POST /config (as the importer will): _transform false
    // keeps the stored basic-auth hash; only updated_at is restamped.
    let k = MockKongAdmin::dbless("3.9.1");
    let r = call(
        &k,
        HttpRequest::new("POST", "/config?flatten_errors=1")
            .with_header("content-type", "application/json")
            .with_body(doc.to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let cred = &k.entities("basicauth_credentials")[0];
    assert_eq!(
        cred["password"],
        doc["basicauth_credentials"][0]["password"]
    );
    assert_eq!(
        cred["password"],
        basicauth_hash(cred["consumer"].as_str().unwrap(), "alice-password")
    );
    for (c, list) in doc.as_object().unwrap() {
        let Some(list) = list.as_array() else {
            continue;
        };
        let got = k.entities(c);
        assert_eq!(got.len(), list.len(), "{c}");
        for (g, w) in got.iter().zip(list) {
            let (mut g, mut w) = (g.clone(), w.clone());
            g.as_object_mut().unwrap().remove("updated_at");
            w.as_object_mut().unwrap().remove("updated_at");
            assert_eq!(g, w, "{c}");
        }
    }
    // GET /config serves it back (without workspaces).
    let yaml = json_of(&get(&k, "/config"))["config"]
        .as_str()
        .unwrap()
        .to_string();
    let back = harness_mocks::kong::declarative::parse_text(&yaml).unwrap();
    assert!(back.get("workspaces").is_none());
    assert_eq!(back["keys"][0]["jwk"], doc["keys"][0]["jwk"]);
    assert_eq!(
        back["certificates"][0]["cert"],
        doc["certificates"][0]["cert"]
    );
}
