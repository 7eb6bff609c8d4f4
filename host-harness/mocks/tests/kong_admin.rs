//! Mock Kong Admin API: node info, status hash, DB-less /config, database-mode collections.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness_mocks::kong::declarative::parse_text;
use harness_mocks::kong::{KongMode, MockKongAdmin};
use harness_mocks::{CallContext, Handler, HttpRequest, HttpResponse};
use serde_json::{json, Value};

const ZERO_HASH: &str = "00000000000000000000000000000000";

fn call(k: &MockKongAdmin, req: HttpRequest) -> HttpResponse {
    let ctx = CallContext::new(
        UNIX_EPOCH + Duration::from_secs(1_750_000_000),
        "dp-1",
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

fn post_config(k: &MockKongAdmin, query: &str, body: &Value) -> HttpResponse {
    call(
        k,
        HttpRequest::new("POST", &format!("/config{query}"))
            .with_header("content-type", "application/json")
            .with_body(body.to_string()),
    )
}

fn sample() -> Value {
    json!({
        "_format_version": "3.0",
        "services": [{"name": "echo", "url": "http://echo:8080",
                      "routes": [{"name": "r1", "paths": ["/echo"]}]}],
        "consumers": [{"username": "alice"}],
    })
}

fn hash(k: &MockKongAdmin) -> String {
    json_of(&get(k, "/status"))["configuration_hash"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn root_reports_version_node_and_database_mode() {
    let k = MockKongAdmin::dbless("3.9.1").with_node_id("6f1b1f7e-0000-4000-8000-000000000001");
    let v = json_of(&get(&k, "/"));
    assert_eq!(v["version"], "3.9.1");
    assert_eq!(v["node_id"], "6f1b1f7e-0000-4000-8000-000000000001");
    assert_eq!(v["configuration"]["database"], "off");
    let db = MockKongAdmin::database("3.4.2");
    assert_eq!(
        json_of(&get(&db, "/"))["configuration"]["database"],
        "postgres"
    );
    assert_eq!(db.mode(), KongMode::Database);
}

#[test]
fn status_hash_is_zero_until_a_config_is_applied_and_tracks_changes() {
    let k = MockKongAdmin::dbless("3.9.1");
    let st = json_of(&get(&k, "/status"));
    assert_eq!(st["configuration_hash"], ZERO_HASH);
    assert!(st.get("database").is_none());

    let h1 = k.set_config(sample());
    assert_eq!(hash(&k), h1);
    assert_eq!(h1.len(), 32);
    assert!(h1.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(h1, ZERO_HASH);

    // The same config with other key order hashes the same; a change changes it.
    let reordered: Value = serde_json::from_str(
        r#"{"consumers":[{"username":"alice"}],"services":[{"routes":[{"paths":["/echo"],"name":"r1"}],"url":"http://echo:8080","name":"echo"}],"_format_version":"3.0"}"#,
    )
    .unwrap();
    assert_eq!(k.set_config(reordered), h1);
    let mut changed = sample();
    changed["consumers"][0]["username"] = json!("bob");
    assert_ne!(k.set_config(changed), h1);
    k.clear_config();
    assert_eq!(hash(&k), ZERO_HASH);

    let db = json_of(&get(&MockKongAdmin::database("3.9.1"), "/status"));
    assert!(db.get("configuration_hash").is_none());
    assert_eq!(db["database"]["reachable"], true);
}

#[test]
fn get_config_returns_the_current_config_as_yaml() {
    let k = MockKongAdmin::dbless("3.9.1");
    let empty = json_of(&get(&k, "/config"));
    let parsed = parse_text(empty["config"].as_str().unwrap()).unwrap();
    assert_eq!(parsed["_format_version"], "3.0");
    assert!(parsed.get("services").is_none());

    k.set_config(sample());
    let r = get(&k, "/config");
    assert_eq!(r.status, 200);
    let yaml = json_of(&r)["config"].as_str().unwrap().to_string();
    assert!(yaml.contains("_format_version:"), "not YAML: {yaml}");
    let back = parse_text(&yaml).unwrap();
    // The flat form: nested routes hoisted, the url expanded, defaults filled, plain-id keys.
    assert_eq!(back["_transform"], false);
    assert_eq!(back["_format_version"], "3.0");
    let svc = &back["services"][0];
    assert_eq!(
        (svc["name"].as_str(), svc["host"].as_str()),
        (Some("echo"), Some("echo"))
    );
    assert_eq!(
        (svc["port"].as_u64(), svc["retries"].as_u64()),
        (Some(8080), Some(5))
    );
    assert!(svc.get("routes").is_none());
    assert_eq!(back["routes"][0]["service"], svc["id"]);
    assert_eq!(back, k.export_from_db());
    assert!(back.get("workspaces").is_none());
}

#[test]
fn post_config_loads_valid_configs_with_201() {
    let k = MockKongAdmin::dbless("3.9.1");
    let r = post_config(&k, "", &sample());
    assert_eq!(r.status, 201, "{}", r.text());
    let body = json_of(&r);
    assert_eq!(body["services"].as_object().unwrap().len(), 1);
    assert_eq!(body["routes"].as_object().unwrap().len(), 1);
    assert_eq!(k.config(), Some(sample()));
    assert_eq!(k.applied_count(), 1);

    // `{"config": "<yaml>"}` and a form body work too.
    let yaml = "_format_version: \"3.0\"\nservices:\n- name: other\n  host: example.com\n";
    assert_eq!(post_config(&k, "", &json!({ "config": yaml })).status, 201);
    assert_eq!(k.config().unwrap()["services"][0]["name"], "other");
    let form = HttpRequest::new("POST", "/config")
        .with_header("content-type", "application/x-www-form-urlencoded")
        .with_body(format!("config={}", url_encode(&sample().to_string())));
    assert_eq!(call(&k, form).status, 201);
    assert_eq!(k.config(), Some(sample()));
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[test]
fn check_hash_answers_304_for_an_unchanged_config() {
    // Kong hashes a document sent as text (here the `config` string field).
    let k = MockKongAdmin::dbless("3.9.1");
    let text = json!({ "config": sample().to_string() });
    assert_eq!(post_config(&k, "?check_hash=1", &text).status, 201);
    assert_eq!(post_config(&k, "?check_hash=1", &text).status, 304);
    assert_eq!(k.applied_count(), 1);
    // Without the flag Kong reloads anyway.
    assert_eq!(post_config(&k, "", &text).status, 201);
    assert_eq!(k.applied_count(), 2);
    // A document sent as a JSON object has no hash before parsing: never 304.
    assert_eq!(post_config(&k, "?check_hash=1", &sample()).status, 201);
    assert_eq!(post_config(&k, "?check_hash=1", &sample()).status, 201);
}

#[test]
fn invalid_configs_get_400_with_kongs_error_body() {
    let k = MockKongAdmin::dbless("3.9.1");
    k.set_config(sample());
    let before = k.configuration_hash();

    let no_version = post_config(&k, "", &json!({"services": []}));
    assert_eq!(no_version.status, 400);
    let v = json_of(&no_version);
    assert_eq!(v["code"], 14);
    assert_eq!(v["name"], "invalid declarative configuration");
    assert_eq!(v["fields"]["_format_version"], "required field missing");
    assert!(v.get("flattened_errors").is_none());

    let bad = json!({"_format_version": "3.0",
        "services": [{"name": "ok", "host": "a"}, {"name": "nohost"}],
        "routes": [{"name": "nowhere"}],
        "widgets": []});
    let nested = json_of(&post_config(&k, "", &bad));
    assert_eq!(nested["fields"]["services"][0], Value::Null);
    assert_eq!(
        nested["fields"]["services"][1]["host"],
        "required field missing"
    );
    assert_eq!(nested["fields"]["widgets"], "unknown field");
    assert!(nested.get("flattened_errors").is_none());

    // Kong 3.4-3.9's flatten_errors drains the entity sections out of `fields`.
    let r = post_config(&k, "?flatten_errors=1", &bad);
    assert_eq!(r.status, 400);
    let v = json_of(&r);
    assert_eq!(v["fields"], json!({"widgets": "unknown field"}));
    assert_eq!(
        v["message"],
        "declarative config is invalid: {widgets=\"unknown field\"}"
    );
    let flat = v["flattened_errors"].as_array().unwrap();
    let types: Vec<&str> = flat
        .iter()
        .map(|e| e["entity_type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"service") && types.contains(&"route"),
        "{types:?}"
    );
    let svc = flat.iter().find(|e| e["entity_type"] == "service").unwrap();
    assert_eq!(svc["entity_name"], "nohost");
    assert_eq!(
        svc["errors"][0],
        json!({"type": "field", "field": "host", "message": "required field missing"})
    );

    let empty = call(&k, HttpRequest::new("POST", "/config"));
    assert_eq!(empty.status, 400);
    assert_eq!(
        json_of(&empty)["message"],
        "expected a declarative configuration"
    );
    let garbage = call(
        &k,
        HttpRequest::new("POST", "/config").with_body("{not: [valid"),
    );
    assert_eq!(garbage.status, 400);
    assert_eq!(json_of(&garbage)["code"], 14);

    assert_eq!(
        k.configuration_hash(),
        before,
        "a refused config changes nothing"
    );
}

#[test]
fn database_mode_refuses_config_and_pages_collections() {
    let k = MockKongAdmin::database("3.9.1");
    assert_eq!(get(&k, "/config").status, 400);
    assert_eq!(post_config(&k, "", &sample()).status, 400);

    let services: Vec<Value> = (0..250)
        .map(|i| json!({"name": format!("s{i:03}"), "host": "h"}))
        .collect();
    k.set_config(json!({"_format_version": "3.0", "services": services,
        "routes": [{"name": "r", "paths": ["/"], "service": {"name": "s000"}}]}));
    let mut seen = Vec::new();
    let mut next = Some("/services?size=100".to_string());
    let mut last_id = String::new();
    let mut pages = 0;
    while let Some(path) = next {
        let v = json_of(&get(&k, &path));
        pages += 1;
        for s in v["data"].as_array().unwrap() {
            // Kong lists in primary-key order.
            let id = s["id"].as_str().unwrap().to_string();
            assert!(id > last_id);
            last_id = id;
            seen.push(s["name"].as_str().unwrap().to_string());
        }
        next = v["next"].as_str().map(str::to_string);
        assert_eq!(v.get("offset").is_some(), next.is_some());
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 250);
    seen.sort();
    seen.dedup();
    assert_eq!((seen.len(), seen[249].as_str()), (250, "s249"));

    assert_eq!(
        json_of(&get(&k, "/services"))["data"]
            .as_array()
            .unwrap()
            .len(),
        100
    );
    assert_eq!(get(&k, "/services?size=0").status, 400);
    assert_eq!(get(&k, "/services?offset=%21%21").status, 400);
    assert_eq!(json_of(&get(&k, "/services/s007"))["name"], "s007");
    assert_eq!(get(&k, "/services/none").status, 404);
    assert_eq!(json_of(&get(&k, "/plugins"))["data"], json!([]));
    assert_eq!(get(&k, "/nothing").status, 404);
}

#[test]
fn nested_entities_are_listed_with_their_parent() {
    let k = MockKongAdmin::dbless("3.9.1");
    k.set_config(sample());
    let svc = &json_of(&get(&k, "/services"))["data"][0];
    let routes = json_of(&get(&k, "/routes"));
    assert_eq!(routes["data"][0]["service"]["id"], svc["id"]);
    assert!(svc.get("routes").is_none());
    assert_eq!(
        call(&k, HttpRequest::new("POST", "/services").with_body("{}")).status,
        405
    );
}

#[test]
fn the_request_log_records_calls() {
    let k = MockKongAdmin::dbless("3.9.1");
    get(&k, "/status");
    post_config(&k, "", &sample());
    let log = k.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].request.path.as_str(), log[0].status),
        ("/status", 200)
    );
    assert_eq!(
        (
            log[1].request.method.as_str(),
            log[1].status,
            log[1].node.as_str()
        ),
        ("POST", 201, "dp-1")
    );
    assert!(log[1].at > SystemTime::UNIX_EPOCH);
}
