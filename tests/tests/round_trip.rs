//! Export → import round trips: what the filter exports from a Kong node is what a fresh DB-less
//! node loads back (same ids, same foreign keys, credentials not hashed twice), and Kong
//! Enterprise's export format (`tests/fixtures/kong/enterprise-export.json`) goes through the
//! filter's validation and import path — and has the shape of ours.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use config_bridge_tests::kong_setup::*;
use config_bridge_tests::*;
use host_harness::http::{CallContext, Handler, HttpRequest, HttpResponse, Reply};
use host_harness::mocks::kong::{generate::generate, MockKongAdmin};
use host_harness::HostProfile;
use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/kong/enterprise-export.json"
);

fn fixture() -> Vec<u8> {
    std::fs::read(FIXTURE).unwrap_or_else(|e| panic!("{FIXTURE}: {e}"))
}

/// What the filter exports from a database-backed node holding `doc` (ngx_wasm_module, 2
/// workers): the stored object's bytes.
fn export_of(doc: &Value) -> (MockKongAdmin, Vec<u8>) {
    let profile = HostProfile::ngx_wasm_module();
    let admin = MockKongAdmin::database(KONG_VERSION);
    admin.set_config(doc.clone());
    let s3 = mock_s3();
    let mut world = world_with_storage(&profile, s3.clone());
    route_host(&mut world, CP_ADMIN, admin.clone());
    let mut cfg = admin_source_config(&profile, CP_ADMIN);
    cfg["kong_admin_dump_interval"] = serde_json::json!(5);
    add_node(&mut world, "cp", 2, &cfg, &[]);
    assert!(
        world.advance_until(secs(300), secs(5), |_| stored_json(&s3).is_some()),
        "nothing exported"
    );
    (admin, s3.object(BUCKET, CONFIG_KEY).unwrap().body)
}

/// `POST /config?flatten_errors=1` of `body` straight into `node`'s handler.
fn post_config(node: &MockKongAdmin, body: &[u8]) -> HttpResponse {
    let req = HttpRequest::new("POST", "/config?flatten_errors=1")
        .with_header("content-type", "application/json")
        .with_body(body.to_vec());
    match node.handle(&req, &CallContext::new(SystemTime::now(), "test", "admin")) {
        Reply::Response { response, .. } => response,
        other => panic!("POST /config: {other:?}"),
    }
}

/// A node's entities by collection and id, `updated_at` aside (a DB-less load sets it).
fn stored(
    node: &MockKongAdmin,
    collections: &BTreeSet<String>,
) -> BTreeMap<String, BTreeMap<String, Value>> {
    collections
        .iter()
        .map(|c| {
            let by_id = node
                .entities(c)
                .into_iter()
                .map(|mut e| {
                    if let Some(o) = e.as_object_mut() {
                        o.remove("updated_at");
                    }
                    (e["id"].as_str().unwrap_or_default().to_string(), e)
                })
                .collect();
            (c.clone(), by_id)
        })
        .collect()
}

/// The collections (entity types) of a flat document, workspaces aside.
fn collections(doc: &Value) -> BTreeSet<String> {
    doc.as_object()
        .unwrap()
        .keys()
        .filter(|k| !k.starts_with('_') && *k != "workspaces")
        .cloned()
        .collect()
}

/// The filter's export of a generated database-backed configuration (19 entity types, 1,200
/// consumers) posted into a fresh DB-less node: accepted, and the node holds the same entities
/// with the same ids and foreign keys; basic-auth password hashes stay byte-identical
/// (`_transform: false`).
#[test]
fn an_export_posted_into_a_fresh_node_gives_the_same_entities() {
    let (source, body) = export_of(&generate(20, 3));
    let exported: Value = serde_json::from_slice(&body).unwrap();
    let fresh = MockKongAdmin::dbless(KONG_VERSION);
    let resp = post_config(&fresh, &body);
    assert_eq!(
        resp.status,
        201,
        "POST /config refused the export: {}",
        &resp.text()[..resp.text().len().min(2000)]
    );
    let names = collections(&exported);
    let mut want = stored(&source, &names);
    // What the export left out (disabled services and what hangs on them) is not expected.
    for (name, list) in want.iter_mut() {
        let ids: BTreeSet<&str> = exported[name.as_str()]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["id"].as_str())
            .collect();
        list.retain(|id, _| ids.contains(id.as_str()));
    }
    let got = stored(&fresh, &names);
    assert!(got == want, "{}", first_difference(&got, &want));
    let hashes = |node: &MockKongAdmin| -> Vec<String> {
        node.entities("basicauth_credentials")
            .iter()
            .map(|c| c["password"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!hashes(&source).is_empty());
    assert_eq!(hashes(&fresh), hashes(&source), "passwords hashed again");
}

/// OAuth2 tokens on a disabled service (and on an enabled one, and on none): Kong's export leaves
/// out every row pointing at a disabled service, not only its routes and plugins, so the filter's
/// export is Kong's `export_config()` and a fresh node accepts it. Before, the token on the
/// disabled service was kept and `POST /config` answered 400 (a dangling `service`).
#[test]
fn rows_pointing_at_a_disabled_service_are_left_out_and_the_export_is_accepted() {
    let mut doc = generate(20, 3);
    let services = doc["services"].as_array().unwrap();
    let off = services
        .iter()
        .find(|s| s["enabled"] == serde_json::json!(false));
    let on = services
        .iter()
        .find(|s| s["enabled"] != serde_json::json!(false));
    let (off, on) = (off.unwrap()["id"].clone(), on.unwrap()["id"].clone());
    let credential = doc["oauth2_credentials"][0]["id"].clone();
    assert!(
        credential.is_string(),
        "the generator made an OAuth2 credential"
    );
    let token = |n: u32, service: &Value| {
        serde_json::json!({"id": format!("7e57c0de-0000-4000-8000-00000000000{n}"),
            "service": service, "credential": credential, "expires_in": 7200,
            "access_token": format!("token-{n}"), "token_type": "bearer"})
    };
    doc["oauth2_tokens"] =
        serde_json::json!([token(1, &on), token(2, &off), token(3, &Value::Null)]);
    let (source, body) = export_of(&doc);
    let exported: Value = serde_json::from_slice(&body).unwrap();
    let tokens: Vec<&str> = exported["oauth2_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["access_token"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, ["token-1", "token-3"]);
    let ours = entities_by_id(&exported);
    let kong = entities_by_id(&source.export_config());
    let differences = differences(&ours, &kong);
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    let resp = post_config(&MockKongAdmin::dbless(KONG_VERSION), &body);
    assert_eq!(
        resp.status,
        201,
        "POST /config refused the export: {}",
        &resp.text()[..resp.text().len().min(2000)]
    );
}

/// Kong Enterprise's export (the fixture) passes the filter's own validation.
#[test]
fn the_enterprise_fixture_passes_the_filters_validation() {
    assert_eq!(
        config_bridge::document::validate_declarative_json(&fixture()),
        Ok(())
    );
}

/// Kong Enterprise's export in the bucket is imported by the filter (both profiles): the node
/// holds its entities (ids, foreign keys, the basic-auth hash as stored), and the exporting
/// config-bridge filter in it becomes the importer's own.
#[test]
fn the_enterprise_fixture_is_imported() {
    let body = fixture();
    let doc: Value = serde_json::from_slice(&body).unwrap();
    // The fixture loaded as it is, for the expected entities.
    let reference = MockKongAdmin::dbless(KONG_VERSION);
    reference.set_config(doc.clone());
    for profile in two_profiles() {
        let mut f = Fallback::new(&profile);
        f.probe.set(ProbeMode::Refused);
        assert_eq!(put_object_signed(&f.world, &f.s3, &body, &body), 200);
        let own = importer_config(&profile);
        f.start_fallback(&own, true);
        let admin = f.admin.clone();
        assert!(
            f.world
                .advance_until(secs(120), secs(1), |_| admin.applied_count() > 0),
            "{}: not imported: {:?}",
            profile.name,
            log_messages(&f.world, "import")
        );
        let mut names = collections(&doc);
        names.remove("filter_chains");
        let (got, want) = (stored(&f.admin, &names), stored(&reference, &names));
        assert!(
            got == want,
            "{}: {}",
            profile.name,
            first_difference(&got, &want)
        );
        assert_eq!(
            f.admin.entities("basicauth_credentials")[0]["password"],
            doc["basicauth_credentials"][0]["password"]
        );
        let chains = f.admin.entities("filter_chains");
        assert_eq!(chains[0]["id"], doc["filter_chains"][0]["id"]);
        assert_eq!(chains[0]["filters"][0]["config"], own, "{}", profile.name);
        assert_eq!(log_messages(&f.world, APPLIED).len(), 1);
    }
}

/// Our export has the fixture's shape: the same top-level keys, and for each entity type both
/// have no field the fixture does not have (ours leaves null fields out), foreign keys as plain
/// id strings.
#[test]
fn our_export_has_the_enterprise_shape() {
    let fixture: Value = serde_json::from_slice(&fixture()).unwrap();
    let (_, body) = export_of(&generate(10, 9));
    let ours: Value = serde_json::from_slice(&body).unwrap();
    for key in ["_format_version", "_transform"] {
        assert_eq!(ours[key], fixture[key], "{key}");
    }
    let fields = |doc: &Value, name: &str| -> BTreeSet<String> {
        doc[name]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| e.as_object().unwrap().keys().cloned())
            .collect()
    };
    let mut extra = Vec::new();
    let shared: Vec<String> = collections(&ours)
        .intersection(&collections(&fixture))
        .cloned()
        .collect();
    assert!(shared.len() >= 15, "{shared:?}");
    for name in &shared {
        let theirs = fields(&fixture, name);
        let more: Vec<String> = fields(&ours, name).difference(&theirs).cloned().collect();
        if !more.is_empty() {
            extra.push(format!("{name}: {more:?}"));
        }
        // Foreign keys: plain strings on both sides.
        for fk in [
            "service",
            "route",
            "consumer",
            "upstream",
            "certificate",
            "set",
        ] {
            for doc in [&ours, &fixture] {
                for e in doc[name.as_str()].as_array().unwrap() {
                    let v = &e[fk];
                    assert!(v.is_null() || v.is_string(), "{name}.{fk}: {v}");
                }
            }
        }
    }
    assert!(
        extra.is_empty(),
        "fields our export has and Kong Enterprise's does not: {extra:?}"
    );
}
