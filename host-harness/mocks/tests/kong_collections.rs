//! Mock Kong Admin API: entity collections as Kong 3.x serves them (paths, rendering, paging),
//! in both storage modes.

use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};

use harness_mocks::kong::declarative::generate;
use harness_mocks::kong::schema::ENTITIES;
use harness_mocks::kong::{KongMode, MockKongAdmin};
use harness_mocks::{CallContext, Handler, HttpRequest, HttpResponse};
use serde_json::{json, Value};

fn call(k: &MockKongAdmin, req: HttpRequest) -> HttpResponse {
    let ctx = CallContext::new(
        UNIX_EPOCH + Duration::from_secs(1_750_000_000),
        "cp-1",
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

/// Follows `next` from `first`; returns every entity and the number of pages.
fn dump(k: &MockKongAdmin, first: &str) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut pages = 0;
    let mut next = Some(first.to_string());
    while let Some(path) = next {
        let r = get(k, &path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let v = json_of(&r);
        pages += 1;
        out.extend(v["data"].as_array().unwrap().iter().cloned());
        next = v["next"].as_str().map(str::to_string);
        // `offset` is in the body exactly when there is a next page.
        assert_eq!(v.get("offset").is_some(), next.is_some(), "{v}");
        assert!(
            v.get("next").is_some(),
            "next must be present (null on the last page)"
        );
        assert!(pages < 10_000);
    }
    (out, pages)
}

fn modes() -> [MockKongAdmin; 2] {
    [
        MockKongAdmin::dbless("3.9.1"),
        MockKongAdmin::database("3.9.1"),
    ]
}

#[test]
fn paging_over_more_than_a_thousand_entities_returns_each_exactly_once() {
    let doc = generate(30, 42);
    for k in modes() {
        k.set_config(doc.clone());
        for (first, want_pages) in [
            ("/consumers", 12),
            ("/consumers?size=1000", 2),
            ("/key-auths?size=7", 172),
        ] {
            let (all, pages) = dump(&k, first);
            assert_eq!(pages, want_pages, "{first} ({:?})", k.mode());
            let ids: Vec<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
            let unique: BTreeSet<&str> = ids.iter().copied().collect();
            assert_eq!(unique.len(), 1200, "{first}");
            assert_eq!(ids.len(), 1200, "{first}: an entity twice");
            // Kong lists in primary-key order.
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
        }
    }
}

#[test]
fn next_carries_offset_and_size_like_kong() {
    let doc = generate(5, 1);
    for k in modes() {
        k.set_config(doc.clone());
        let v = json_of(&get(&k, "/consumers?size=500"));
        assert_eq!(v["data"].as_array().unwrap().len(), 500);
        let offset = v["offset"].as_str().unwrap();
        let next = v["next"].as_str().unwrap();
        // `next` = /<collection>?offset=<escaped offset>&size=<as given>.
        let escaped: String = offset
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        assert_eq!(next, format!("/consumers?offset={escaped}&size=500"));
        // Without `size`, `next` has none and pages stay at the default 100.
        let v = json_of(&get(&k, "/consumers"));
        assert!(!v["next"].as_str().unwrap().contains("size="));
        assert_eq!(v["data"].as_array().unwrap().len(), 100);
        // The last page: `next` null, no `offset`.
        let last = json_of(&get(&k, "/consumers?size=1000"));
        let last = json_of(&get(&k, last["next"].as_str().unwrap()));
        assert_eq!(last["next"], Value::Null);
        assert!(last.get("offset").is_none());
        assert_eq!(last["data"].as_array().unwrap().len(), 200);
        // An empty collection.
        assert_eq!(
            json_of(&get(&k, "/oauth2_tokens")),
            json!({"data": [], "next": null})
        );
    }
}

#[test]
fn bad_size_and_offset_get_kongs_errors() {
    for k in modes() {
        k.set_config(generate(3, 2));
        for size in ["0", "1001", "2.5", "-1"] {
            let r = get(&k, &format!("/services?size={size}"));
            assert_eq!(r.status, 400, "size={size}");
            assert_eq!(
                json_of(&r),
                json!({"code": 9, "name": "invalid size",
                       "message": "size must be an integer between 1 and 1000"})
            );
        }
        assert_eq!(
            json_of(&get(&k, "/services?size=abc")),
            json!({"code": 9, "name": "invalid size", "message": "size must be a number"})
        );
        assert_eq!(get(&k, "/services?size=1000").status, 200);
        let r = get(&k, "/routes?offset=x");
        assert_eq!(r.status, 400);
        assert_eq!(
            json_of(&r),
            json!({"code": 7, "name": "invalid offset",
                   "message": "'x' is not a valid offset: bad base64 encoding"})
        );
    }
}

#[test]
fn entities_render_like_the_admin_api() {
    let k = MockKongAdmin::database("3.9.1");
    k.set_config(generate(10, 3));
    let route = &json_of(&get(&k, "/routes?size=1"))["data"][0];
    let service_id = route["service"]["id"].as_str().unwrap();
    assert_eq!(route["service"].as_object().unwrap().len(), 1);
    // Null fields are present, timestamps are integers.
    assert!(route["hosts"].is_null() && route.get("headers").is_some());
    assert!(route["created_at"].is_u64() && route["updated_at"].is_u64());
    assert_eq!(route["protocols"], json!(["http", "https"]));
    let svc = json_of(&get(&k, &format!("/services/{service_id}")));
    assert_eq!(svc["id"], service_id);
    assert!(svc["tls_verify"].is_null());
    let first = json_of(&get(&k, "/services/svc-00000"));
    let cert_id = first["client_certificate"]["id"].as_str().unwrap();
    assert_eq!(get(&k, &format!("/certificates/{cert_id}")).status, 200);
    let by_name = json_of(&get(
        &k,
        &format!("/services/{}", svc["name"].as_str().unwrap()),
    ));
    assert_eq!(by_name, svc);

    let plugins = json_of(&get(&k, "/plugins?size=1000"))["data"].clone();
    let global = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "prometheus")
        .unwrap();
    assert_eq!(
        (&global["service"], &global["route"], &global["consumer"]),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    let ka = &json_of(&get(&k, "/key-auths?size=1"))["data"][0];
    assert!(ka["consumer"]["id"].is_string());
    assert!(
        ka.get("updated_at").is_none(),
        "credentials have created_at only"
    );
    assert_eq!(ka["ttl"], Value::Null, "a database node selects ttl");

    let cert = &json_of(&get(&k, "/certificates?size=1"))["data"][0];
    let names: Vec<&str> = cert["snis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.windows(2).all(|w| w[0] < w[1]));
    let sni = &json_of(&get(&k, "/snis?size=1"))["data"][0];
    assert!(sni["certificate"]["id"].is_string());
    let key = &json_of(&get(&k, "/keys?size=1"))["data"][0];
    assert!(key["set"]["id"].is_string());

    // The flat form keeps plain ids.
    let flat = k.entities("routes");
    assert!(flat.iter().all(|r| r["service"].is_string()));
}

#[test]
fn every_collection_path_serves_its_flat_form_entities() {
    let doc = generate(10, 4);
    let k = MockKongAdmin::dbless("3.9.1");
    k.set_config(doc.clone());
    let mut checked = 0;
    for def in ENTITIES {
        let Some(path) = def.admin_path else { continue };
        let (all, _) = dump(&k, &format!("{path}?size=1000"));
        let want = k.entities(def.name);
        assert_eq!(all.len(), want.len(), "{path}");
        if let Some(list) = doc.get(def.name).and_then(Value::as_array) {
            assert_eq!(all.len(), list.len(), "{path} vs {}", def.name);
            checked += 1;
        }
        for (got, flat) in all.iter().zip(&want) {
            assert_eq!(got["id"], flat["id"]);
            for f in def.foreign {
                match flat[f.field].as_str() {
                    Some(id) => assert_eq!(got[f.field], json!({"id": id}), "{path}"),
                    None => assert!(got[f.field].is_null()),
                }
            }
        }
    }
    assert!(checked >= 16, "{checked}");
    // No global targets list in Kong 3.x.
    assert_eq!(get(&k, "/targets").status, 404);
    assert_eq!(
        json_of(&get(&k, "/targets")),
        json!({"message": "Not found"})
    );
    assert_eq!(get(&k, "/workspaces").status, 404);
    assert_eq!(get(&k, "/nothing/here").status, 404);
}

#[test]
fn targets_are_listed_per_upstream_like_kong() {
    let k = MockKongAdmin::database("3.9.1");
    let targets: Vec<Value> = (0..250)
        .map(|i| {
            json!({"target": format!("10.1.{}.{}", i / 200, i % 200), "weight": 10,
                        "created_at": 1_700_000_000.0 + i as f64 / 1000.0})
        })
        .collect();
    k.set_config(json!({"_format_version": "3.0", "upstreams": [
        {"name": "up.internal", "targets": targets},
        {"name": "other.internal", "targets": [{"target": "10.9.9.9:81"}]}]}));
    let up = json_of(&get(&k, "/upstreams/up.internal"));
    let (all, pages) = dump(&k, "/upstreams/up.internal/targets?size=1000");
    assert_eq!((all.len(), pages), (250, 1));
    // Newest first, Kong's default port added, the upstream as {"id"}, ms timestamps.
    assert_eq!(all[0]["target"], "10.1.1.49:8000");
    assert_eq!(all[249]["target"], "10.1.0.0:8000");
    assert_eq!(all[0]["upstream"], json!({"id": up["id"]}));
    assert!(all[0]["created_at"].is_f64());
    // Numeric offsets, and `next` without `size`: later pages fall back to 100.
    let v = json_of(&get(&k, "/upstreams/up.internal/targets?size=30"));
    assert_eq!(v["offset"], "30");
    assert_eq!(v["next"], "/upstreams/up.internal/targets?offset=30");
    let v2 = json_of(&get(&k, v["next"].as_str().unwrap()));
    assert_eq!(v2["data"].as_array().unwrap().len(), 100);
    // By id works too; size is clamped, not refused.
    let by_id = format!(
        "/upstreams/{}/targets?size=5000",
        up["id"].as_str().unwrap()
    );
    assert_eq!(
        json_of(&get(&k, &by_id))["data"].as_array().unwrap().len(),
        250
    );
    assert_eq!(get(&k, "/upstreams/nope.internal/targets").status, 404);
    let (other, _) = dump(&k, "/upstreams/other.internal/targets");
    assert_eq!(other.len(), 1);
    // The raw list pages like any collection (keyset, id order), and single targets resolve.
    let (raw, pages) = dump(&k, "/upstreams/up.internal/targets/all?size=100");
    assert_eq!((raw.len(), pages), (250, 3));
    assert!(raw
        .windows(2)
        .all(|w| w[0]["id"].as_str() < w[1]["id"].as_str()));
    let v = json_of(&get(&k, "/upstreams/up.internal/targets/all?size=100"));
    assert!(!v["next"].as_str().unwrap().contains("size"));
    let t = json_of(&get(&k, "/upstreams/other.internal/targets/10.9.9.9:81"));
    assert_eq!(t["weight"], 100);
    let by_id = format!(
        "/upstreams/other.internal/targets/{}",
        t["id"].as_str().unwrap()
    );
    assert_eq!(json_of(&get(&k, &by_id)), t);
    assert_eq!(
        get(&k, "/upstreams/up.internal/targets/10.9.9.9:81").status,
        404
    );
    assert_eq!(get(&k, "/services/a/b/c/d").status, 404);
}

#[test]
fn nested_lists_under_a_parent() {
    let k = MockKongAdmin::dbless("3.9.1");
    k.set_config(generate(12, 5));
    let svc = &json_of(&get(&k, "/services?size=1"))["data"][0];
    let sid = svc["id"].as_str().unwrap();
    let routes = json_of(&get(&k, &format!("/services/{sid}/routes")));
    assert_eq!(routes["data"].as_array().unwrap().len(), 2);
    assert!(routes["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["service"]["id"] == sid));
    let consumer = json_of(&get(&k, "/consumers/user-00000"));
    let cid = consumer["id"].as_str().unwrap();
    let keys = json_of(&get(&k, "/consumers/user-00000/key-auth"));
    assert_eq!(keys["data"].as_array().unwrap().len(), 1);
    assert_eq!(keys["data"][0]["consumer"]["id"], cid);
    assert_eq!(
        json_of(&get(&k, "/consumers/user-00000/acls"))["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A nested `next` has no `size`.
    let v = json_of(&get(&k, "/key-sets/jwks/keys?size=1"));
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert!(v["next"]
        .as_str()
        .unwrap()
        .starts_with("/key-sets/jwks/keys?offset="));
    assert!(!v["next"].as_str().unwrap().contains("size"));
}

#[test]
fn dbless_and_database_modes_differ_like_kong() {
    let doc = generate(3, 6);
    let dbless = MockKongAdmin::dbless("3.9.1");
    let db = MockKongAdmin::database("3.9.1");
    dbless.set_config(doc.clone());
    db.set_config(doc);

    let st = json_of(&get(&dbless, "/status"));
    assert_eq!(st["configuration_hash"].as_str().unwrap().len(), 32);
    assert!(st.get("database").is_none());
    let st = json_of(&get(&db, "/status"));
    assert!(st.get("configuration_hash").is_none());
    assert_eq!(st["database"], json!({"reachable": true}));

    assert_eq!(get(&dbless, "/config").status, 200);
    let r = get(&db, "/config");
    assert_eq!(r.status, 400);
    assert_eq!(
        json_of(&r)["message"],
        "this endpoint is only available when Kong is configured to not use a database"
    );

    // DB-less refuses writes with the off strategy's error.
    let r = call(&dbless, HttpRequest::new("POST", "/routes").with_body("{}"));
    assert_eq!(
        (r.status, json_of(&r)),
        (
            405,
            json!({"code": 12, "name": "operation unsupported",
                   "message": "cannot create 'routes' entities when not using a database"})
        )
    );
    let r = call(&dbless, HttpRequest::new("DELETE", "/routes"));
    assert_eq!(json_of(&r), json!({"message": "Method not allowed"}));
    assert_eq!(
        call(&db, HttpRequest::new("POST", "/routes")).status,
        405,
        "the mock's database collections are read-only"
    );

    // Both serve the same entities; timestamps may differ (DB-less loads stamp updated_at).
    assert_eq!(
        dbless.entities("services").len(),
        db.entities("services").len()
    );
    assert_eq!(db.mode(), KongMode::Database);
    // A DB-less node does not select ttl.
    let ka = &json_of(&get(&dbless, "/key-auths?size=1"))["data"][0];
    assert!(ka.get("ttl").is_none());
}

#[test]
fn tags_filter_and_keep_the_filter_in_next() {
    let k = MockKongAdmin::database("3.9.1");
    let services: Vec<Value> = (0..30)
        .map(|i| {
            let tags = if i % 3 == 0 {
                json!(["a", "b"])
            } else {
                json!(["b"])
            };
            json!({"name": format!("s{i}"), "host": "h", "tags": tags})
        })
        .collect();
    k.set_config(json!({"_format_version": "3.0", "services": services}));
    let v = json_of(&get(&k, "/services?tags=a,b&size=4"));
    assert!(v["next"].as_str().unwrap().contains("&tags=a%2Cb&size=4"));
    let (all, _) = dump(&k, "/services?tags=a,b&size=4");
    assert_eq!(all.len(), 10);
    let (any, _) = dump(&k, "/services?tags=a/zzz");
    assert_eq!(any.len(), 10);
}
