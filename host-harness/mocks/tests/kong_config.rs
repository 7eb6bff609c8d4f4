//! Mock Kong Admin API: DB-less `GET /config` (YAML of the flat form) and `POST /config`
//! (201 body, Kong's error shapes, `check_hash`, scripted load failures).

use std::time::{Duration, UNIX_EPOCH};

use harness_mocks::kong::declarative::{self, generate, parse_text};
use harness_mocks::kong::load::basicauth_hash;
use harness_mocks::kong::MockKongAdmin;
use harness_mocks::{CallContext, Handler, HttpRequest, HttpResponse};
use md5::{Digest, Md5};
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

fn post(k: &MockKongAdmin, query: &str, body: &Value) -> HttpResponse {
    call(
        k,
        HttpRequest::new("POST", &format!("/config{query}"))
            .with_header("content-type", "application/json")
            .with_body(body.to_string()),
    )
}

/// Posts `text` as a raw body (Kong hashes it: md5 of the text).
fn post_text(k: &MockKongAdmin, query: &str, text: &str) -> HttpResponse {
    call(
        k,
        HttpRequest::new("POST", &format!("/config{query}"))
            .with_header("content-type", "application/yaml")
            .with_body(text),
    )
}

fn hash(k: &MockKongAdmin) -> String {
    json_of(&get(k, "/status"))["configuration_hash"]
        .as_str()
        .unwrap()
        .to_string()
}

const SVC: &str = "5b1c2a9e-8c3f-4d2a-9b1e-0c4d5e6f7a81";
const ROUTE: &str = "7f0e4c7a-31a4-4b7e-8a3e-6f1d2c3b4a59";
const ALICE: &str = "0c56353a-4ea6-4c02-8c74-336829a105b2";

fn flat() -> Value {
    json!({
        "_format_version": "3.0",
        "services": [{"id": SVC, "name": "echo", "host": "echo.internal", "enabled": false}],
        "routes": [{"id": ROUTE, "name": "echo", "paths": ["/echo"], "service": SVC}],
        "plugins": [{"name": "key-auth", "route": ROUTE}],
        "consumers": [{"id": ALICE, "username": "alice"}],
        "basicauth_credentials": [{"consumer": ALICE, "username": "alice", "password": "pw"}],
    })
}

#[test]
fn get_config_is_yaml_of_the_flat_form_and_parses_back() {
    let k = MockKongAdmin::dbless("3.9.1");
    // Empty: only the two meta keys.
    let empty = parse_text(json_of(&get(&k, "/config"))["config"].as_str().unwrap()).unwrap();
    assert_eq!(
        empty,
        json!({"_format_version": "3.0", "_transform": false})
    );

    k.set_config(generate(15, 9));
    let r = get(&k, "/config");
    assert_eq!(r.status, 200);
    let body = json_of(&r);
    assert_eq!(body.as_object().unwrap().len(), 1);
    let yaml = body["config"].as_str().unwrap();
    assert!(yaml.starts_with("_format_version:") || yaml.contains("\n_format_version:"));
    let back = parse_text(yaml).unwrap();
    assert_eq!(back, k.export_from_db());
    assert_eq!(back["_transform"], false);
    // export_from_db: no workspaces, disabled services kept, plain-id foreign keys.
    assert!(back.get("workspaces").is_none());
    for (c, list) in back.as_object().unwrap() {
        if let Some(list) = list.as_array() {
            assert_eq!(list, &k.entities(c), "{c}");
        }
    }
    let disabled = back["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["enabled"] == false)
        .count();
    assert_eq!(disabled, 1);
    assert!(back["routes"][0]["service"].is_string());
    // Enterprise's export leaves the disabled service out with its routes and plugins.
    let ee = k.export_config();
    assert_eq!(ee["services"].as_array().unwrap().len(), 14);
    assert_eq!(ee["routes"].as_array().unwrap().len(), 28);
    assert_eq!(ee["workspaces"].as_array().unwrap().len(), 1);
    assert_eq!(
        ee["filter_chains"].as_array().unwrap().len(),
        1,
        "the chain on the disabled service is left out"
    );
}

#[test]
fn post_config_answers_201_with_the_entities_by_id() {
    let k = MockKongAdmin::dbless("3.9.1");
    let r = post(&k, "", &flat());
    assert_eq!(r.status, 201, "{}", r.text());
    let v = json_of(&r);
    assert!(v.get("workspaces").is_none());
    assert_eq!(v["services"][SVC]["enabled"], false);
    assert_eq!(v["routes"][ROUTE]["service"], json!({"id": SVC}));
    let plugin = v["plugins"].as_object().unwrap().values().next().unwrap();
    assert_eq!(plugin["route"], json!({"id": ROUTE}));
    assert!(plugin["service"].is_null());
    // The answer shows the credential as sent; the store holds it transformed (_transform
    // defaults to true): basic-auth's sha1(password .. consumer_id).
    let cred = v["basicauth_credentials"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    assert_eq!(cred["password"], "pw");
    let stored = &k.entities("basicauth_credentials")[0];
    assert_eq!(stored["password"], basicauth_hash(ALICE, "pw"));
    assert_eq!(stored["consumer"], ALICE);
    // Timestamps come from the request's clock; updated_at is always "now" on a DB-less load.
    assert_eq!(k.entities("services")[0]["updated_at"], 1_750_000_000);

    // _transform: false keeps credentials as given (no re-hash on import).
    let mut pre_hashed = flat();
    pre_hashed["_transform"] = json!(false);
    pre_hashed["basicauth_credentials"][0]["password"] = json!("already-hashed");
    assert_eq!(post(&k, "", &pre_hashed).status, 201);
    assert_eq!(
        k.entities("basicauth_credentials")[0]["password"],
        "already-hashed"
    );
    assert_eq!(k.posts().len(), 2);
    assert_eq!(k.posts()[1].status, 201);
    assert_eq!(k.posts()[1].body_size, pre_hashed.to_string().len());
}

#[test]
fn ids_kong_would_generate_are_deterministic() {
    let k = MockKongAdmin::dbless("3.9.1");
    let doc = json!({"_format_version": "3.0",
        "services": [{"name": "a", "url": "http://a:81/p", "routes": [{"name": "ra", "paths": ["/"]}]}],
        "consumers": [{"username": "u", "keyauth_credentials": [{"key": "k1"}]}]});
    assert_eq!(post(&k, "", &doc).status, 201);
    let first = (k.entities("services"), k.entities("routes"));
    assert_eq!(post(&k, "", &doc).status, 201);
    let second = (k.entities("services"), k.entities("routes"));
    assert_eq!(first.0[0]["id"], second.0[0]["id"]);
    assert_eq!(first.1[0]["id"], second.1[0]["id"]);
    // uuid v5 (Kong names ids after the endpoint key when there is no id).
    assert_eq!(&first.0[0]["id"].as_str().unwrap()[14..15], "5");
    assert_eq!(first.0[0]["port"], 81);
    assert_eq!(first.0[0]["path"], "/p");
    assert_eq!(first.1[0]["service"], first.0[0]["id"]);
    // key-auth's key is an `auto` field: its id is random.
    assert_eq!(k.entities("keyauth_credentials")[0]["key"], "k1");
}

#[test]
fn schema_errors_get_kongs_flattened_shape() {
    let k = MockKongAdmin::dbless("3.9.1");
    let bad = json!({"_format_version": "3.0",
        "services": [
            {"name": "ok", "host": "a"},
            {"id": SVC, "name": "broken", "port": "eighty", "tags": ["t1"],
             "routes": [{"name": "r-bad", "protocols": ["http"]}]},
        ],
        "consumers": [{"tags": ["nobody"]}]});
    let plain = json_of(&post(&k, "", &bad));
    assert_eq!(plain["code"], 14);
    assert_eq!(plain["name"], "invalid declarative configuration");
    assert_eq!(
        plain["fields"]["services"][1]["port"],
        "expected an integer"
    );
    assert_eq!(
        plain["fields"]["services"][1]["host"],
        "required field missing"
    );
    assert!(plain["fields"]["services"][1]["routes"][0]["@entity"].is_array());
    assert!(plain.get("flattened_errors").is_none());

    let v = json_of(&post(&k, "?flatten_errors=1", &bad));
    assert_eq!(v["code"], 14);
    assert_eq!(v["fields"], json!({}));
    assert_eq!(v["message"], "declarative config is invalid: {}");
    let flat = v["flattened_errors"].as_array().unwrap();
    assert_eq!(flat.len(), 3, "{flat:#?}");
    let consumer = flat
        .iter()
        .find(|e| e["entity_type"] == "consumer")
        .unwrap();
    assert_eq!(
        consumer["errors"],
        json!([{"type": "entity",
                "message": "at least one of these fields must be non-empty: 'custom_id', 'username'"}])
    );
    assert_eq!(consumer["entity_tags"], json!(["nobody"]));
    let svc = flat.iter().find(|e| e["entity_type"] == "service").unwrap();
    assert_eq!(
        (svc["entity_name"].as_str(), svc["entity_id"].as_str()),
        (Some("broken"), Some(SVC))
    );
    // Field errors sorted by field name.
    assert_eq!(
        svc["errors"],
        json!([{"type": "field", "field": "host", "message": "required field missing"},
               {"type": "field", "field": "port", "message": "expected an integer"}])
    );
    // A nested child is hoisted with its parent's id.
    let route = flat.iter().find(|e| e["entity_type"] == "route").unwrap();
    assert_eq!(route["entity"]["service"], json!({"id": SVC}));
    assert_eq!(
        route["errors"][0]["message"],
        "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"
    );
    // Unknown fields and bad top-level keys.
    let v = json_of(&post(
        &k,
        "?flatten_errors=true",
        &json!({"_format_version": "9.9",
        "services": [{"host": "h", "colour": "red"}]}),
    ));
    assert_eq!(
        v["fields"],
        json!({"_format_version": "expected one of: 1.1, 2.1, 3.0"})
    );
    assert_eq!(v["flattened_errors"][0]["errors"][0]["field"], "colour");
    assert_eq!(
        v["flattened_errors"][0]["errors"][0]["message"],
        "unknown field"
    );
    assert_eq!(k.applied_count(), 0);
}

#[test]
fn a_dangling_foreign_key_is_refused() {
    let k = MockKongAdmin::dbless("3.9.1");
    let unknown = "9a8b7c6d-0000-4000-8000-000000000000";
    let doc = json!({"_format_version": "3.0", "_transform": false,
        "services": [{"id": SVC, "name": "echo", "host": "echo"}],
        "routes": [{"id": ROUTE, "name": "lost", "paths": ["/"], "service": unknown}]});
    let msg = format!("invalid reference 'service: {unknown}' (no such entry in 'services')");

    // Without flattening, Kong files it under the route's name.
    let v = json_of(&post(&k, "", &doc));
    assert_eq!(v["fields"], json!({"routes": {"lost": [msg]}}));
    assert_eq!(v["code"], 14);

    // Kong 3.4-3.9's flatten_errors cannot map a name back to the input array: nothing is left.
    let r = post(&k, "?flatten_errors=1", &doc);
    assert_eq!(r.status, 400);
    let v = json_of(&r);
    assert_eq!(v["fields"], json!({}));
    assert_eq!(
        v["flattened_errors"],
        json!({}),
        "an empty Lua table encodes as {{}}"
    );

    // Opt-in: the entity in flattened_errors.
    let k2 = MockKongAdmin::dbless("3.9.1").with_flattened_reference_errors(true);
    let v = json_of(&post(&k2, "?flatten_errors=1", &doc));
    assert_eq!(
        v["flattened_errors"],
        json!([{"entity_type": "route", "entity_name": "lost", "entity_id": ROUTE,
                "entity": doc["routes"][0], "errors": [{"type": "entity", "message": msg}]}])
    );

    // A reference by name, or as {"id"}, resolves.
    let mut by_name = doc.clone();
    by_name["routes"][0]["service"] = json!("echo");
    assert_eq!(post(&k, "", &by_name).status, 201);
    assert_eq!(k.entities("routes")[0]["service"], SVC);
    let mut by_obj = doc.clone();
    by_obj["routes"][0]["service"] = json!({"id": SVC});
    assert_eq!(post(&k, "", &by_obj).status, 201);

    // Duplicates are filed by index: flattened.
    let dup = json!({"_format_version": "3.0", "consumers": [
        {"username": "same", "tags": ["c1"]}, {"username": "same", "tags": ["c2"]}]});
    let v = json_of(&post(&k, "?flatten_errors=1", &dup));
    assert_eq!(v["flattened_errors"][0]["entity_tags"], json!(["c2"]));
    assert_eq!(
        v["flattened_errors"][0]["errors"][0]["message"],
        "uniqueness violation: 'consumers' entity with username set to 'same' already declared"
    );
    let v = json_of(&post(&k, "", &dup));
    assert_eq!(v["fields"]["consumers"][0], Value::Null);
    assert!(v["fields"]["consumers"][1].is_string());
}

#[test]
fn check_hash_and_the_status_hash_follow_kongs_text_hash() {
    let k = MockKongAdmin::dbless("3.9.1");
    assert_eq!(hash(&k), ZERO_HASH);
    let text = "_format_version: \"3.0\"\nconsumers:\n- username: bobby\n";
    assert_eq!(post_text(&k, "?check_hash=1", text).status, 201);
    let md5 = hex::encode(Md5::digest(text.as_bytes()));
    assert_eq!(hash(&k), md5, "the hash of a text body is md5 of the text");
    let r = post_text(&k, "?check_hash=1", text);
    assert_eq!((r.status, r.body.len()), (304, 0));
    // check_hash must be exactly "1".
    assert_eq!(post_text(&k, "?check_hash=true", text).status, 201);
    // Form and {"config": "..."} bodies hash their text too.
    let form = HttpRequest::new("POST", "/config?check_hash=1")
        .with_header("content-type", "application/x-www-form-urlencoded")
        .with_body(format!(
            "config={}",
            url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>()
        ));
    assert_eq!(call(&k, form).status, 304);
    assert_eq!(
        post(&k, "?check_hash=1", &json!({ "config": text })).status,
        304
    );
    // An object under `config` is not a document Kong can parse.
    let r = post(&k, "", &json!({"config": {"_format_version": "3.0"}}));
    assert_eq!(r.status, 400);
    assert_eq!(json_of(&r)["code"], 14);
    // An empty config hashes to zeros.
    assert_eq!(post_text(&k, "", "_format_version: \"3.0\"\n").status, 201);
    assert_eq!(hash(&k), ZERO_HASH);
}

#[test]
fn scripted_load_failures_answer_one_post_each_then_kong_resumes() {
    let k = MockKongAdmin::dbless("3.9.1");
    k.next_post_responses([413, 429, 503, 504]);
    let doc = flat();
    let mut got = Vec::new();
    for _ in 0..5 {
        let r = post(&k, "?flatten_errors=1", &doc);
        got.push((
            r.status,
            json_of(&r)["message"].as_str().map(str::to_string),
            r.header("retry-after").map(str::to_string),
        ));
    }
    assert_eq!(got[0].0, 413);
    assert!(got[0].1.as_deref().unwrap().contains("lmdb_map_size"));
    assert_eq!(
        got[1],
        (
            429,
            Some("Currently loading previous configuration".into()),
            Some("2".into())
        )
    );
    assert_eq!(got[2], (503, Some("Kong currently exiting".into()), None));
    assert_eq!(
        got[3],
        (
            504,
            Some("Timed out while loading configuration".into()),
            None
        )
    );
    assert_eq!(got[4].0, 201);
    assert_eq!(k.applied_count(), 1);
    let posts = k.posts();
    let statuses: Vec<(u16, bool)> = posts.iter().map(|p| (p.status, p.scripted)).collect();
    assert_eq!(
        statuses,
        vec![
            (413, true),
            (429, true),
            (503, true),
            (504, true),
            (201, false)
        ]
    );
    assert!(posts.iter().all(|p| p.flatten_errors && !p.check_hash));
    assert_eq!(posts[0].body_size, doc.to_string().len());
    assert_eq!(posts[0].content_type.as_deref(), Some("application/json"));

    // A document Kong refuses is still refused (and keeps the script for the next load).
    k.set_retry_after(7);
    k.next_post_responses([429]);
    assert_eq!(post(&k, "", &json!({"services": []})).status, 400);
    let r = post(&k, "", &doc);
    assert_eq!((r.status, r.header("retry-after")), (429, Some("7")));
    k.push_post_response(HttpResponse::new(500).with_body("boom"));
    assert_eq!(post(&k, "", &doc).text(), "boom");
    assert_eq!(post(&k, "", &doc).status, 201);
}

#[test]
fn database_nodes_refuse_post_config() {
    let k = MockKongAdmin::database("3.9.1");
    let r = post(&k, "", &flat());
    assert_eq!(r.status, 400);
    assert_eq!(
        json_of(&r),
        json!({"message": "this endpoint is only available when Kong is configured to not use a database"})
    );
    assert_eq!(k.posts()[0].status, 400);
}

#[test]
fn a_generated_document_posts_and_round_trips() {
    let doc = generate(40, 11);
    let k = MockKongAdmin::dbless("3.9.1");
    let r = post(&k, "?flatten_errors=1&check_hash=1", &doc);
    assert_eq!(r.status, 201, "{}", &r.text()[..r.text().len().min(2000)]);
    assert!(declarative::validate(&doc).is_ok());
    for (c, list) in doc.as_object().unwrap() {
        let Some(list) = list.as_array() else {
            continue;
        };
        let mut got = k.entities(c);
        assert_eq!(got.len(), list.len(), "{c}");
        // Same entities except updated_at (a DB-less load stamps it).
        let strip = |v: &mut Vec<Value>| {
            for e in v.iter_mut() {
                e.as_object_mut().unwrap().remove("updated_at");
            }
            v.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        };
        let mut want = list.clone();
        strip(&mut got);
        strip(&mut want);
        assert_eq!(got, want, "{c}");
    }
    let counts = k.entity_counts();
    assert!(counts.len() >= 12, "{counts:?}");
    assert!(counts.values().any(|n| *n > 1000));
}
