//! The release filter in the REAL engine (nginx + ngx_wasm_module, `engine_export.rs`) with a Kong
//! Admin API: our mock over TCP standing in for the node's own. As a source (three config changes
//! → three exports, traffic unaffected) and as an importer (an empty node gets the last export in
//! one `POST /config`).

use std::time::{Duration, UNIX_EPOCH};

use config_bridge_tests::real_engine::{
    engine_filter_config, EngineNode, EngineSpec, LiveS3, EXPORTED, WAIT,
};
use config_bridge_tests::{BUCKET, CONFIG_KEY};
use host_harness::http::SharedHandler;
use host_harness::mocks::kong::MockKongAdmin;
use host_harness::mocks::serve::{spawn, ServerHandle};
use serde_json::{json, Value};
use std::sync::Arc;

fn serve_admin(admin: &MockKongAdmin) -> ServerHandle {
    let handler: SharedHandler = Arc::new(admin.clone());
    spawn(handler, "127.0.0.1:0").expect("serving the mock Admin API")
}

fn kong_config(n: u32) -> Value {
    json!({
        "_format_version": "3.0",
        "services": [{"id": format!("00000000-0000-4000-8000-00000000000{n}"), "name": format!("svc-{n}"), "url": "http://upstream.test:8080"}],
        "routes": [{"id": format!("00000000-0000-4000-9000-00000000000{n}"), "name": format!("route-{n}"), "paths": [format!("/r{n}")], "service": format!("00000000-0000-4000-8000-00000000000{n}")}],
        "consumers": [{"id": format!("00000000-0000-4000-a000-00000000000{n}"), "username": format!("user-{n}")}]
    })
}

/// The services named in the object the filter exported.
fn exported_services(s3: &LiveS3) -> Vec<String> {
    let Some(object) = s3.object() else {
        return Vec::new();
    };
    let doc: Value = serde_json::from_slice(&object.body).unwrap_or(Value::Null);
    doc["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_node_admin_api_as_source_three_changes_three_exports() {
    let s3 = LiveS3::start();
    let admin = MockKongAdmin::dbless("3.9.1");
    admin.set_config(kong_config(1));
    let server = serve_admin(&admin);
    let mut cfg = engine_filter_config(&s3.endpoint(), &json!(null));
    let obj = cfg.as_object_mut().expect("an object");
    obj.remove("config");
    obj.insert("config_source".into(), json!("kong_admin"));
    obj.insert("kong_admin_url".into(), json!(server.url()));
    obj.insert("config_poll_interval".into(), json!(0.5));
    let Some(node) = EngineNode::start(EngineSpec::new("kong_admin_source", cfg)) else {
        return;
    };
    for n in 1..=3u32 {
        if n > 1 {
            admin.set_config(kong_config(n));
        }
        let want = vec![format!("svc-{n}")];
        let ok = node.wait_until(WAIT, |_| exported_services(&s3) == want);
        assert!(
            ok,
            "config {n} not exported: {:?}\n{}",
            exported_services(&s3),
            node.error_log()
        );
        let doc: Value = serde_json::from_slice(&s3.object().unwrap().body).unwrap();
        assert_eq!(doc["_transform"], json!(false));
        assert_eq!(
            doc["routes"][0]["service"],
            json!(format!("00000000-0000-4000-8000-00000000000{n}"))
        );
    }
    // The store has the object before the filter reads the PUT's answer and logs it.
    node.wait_until(WAIT, |n| n.entries_containing(EXPORTED).len() >= 3);
    assert_eq!(
        node.entries_containing(EXPORTED).len(),
        3,
        "{}",
        node.error_log()
    );
    let (ok, bad) = node.hammer(200);
    assert_eq!(ok, 200, "{bad:?}");
    node.assert_no_traps();
    server.stop();
}

#[test]
fn an_empty_node_imports_the_last_export_through_its_admin_api() {
    let s3 = LiveS3::start();
    let exported = kong_config(7);
    let body = serde_json::to_vec(&exported).unwrap();
    s3.mock().put_object_direct(
        BUCKET,
        CONFIG_KEY,
        &body,
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    let admin = MockKongAdmin::dbless("3.9.1");
    let server = serve_admin(&admin);
    let mut cfg = engine_filter_config(&s3.endpoint(), &json!(null));
    let obj = cfg.as_object_mut().expect("an object");
    obj.remove("config");
    obj.insert("cluster_fallback_config_export".into(), json!("off"));
    obj.insert("cluster_fallback_config_import".into(), json!("on"));
    obj.insert("kong_admin_url".into(), json!(server.url()));
    obj.insert("import_grace_period".into(), json!(0));
    obj.insert("import_check_interval".into(), json!(0.2));
    let Some(node) = EngineNode::start(EngineSpec::new("import", cfg)) else {
        return;
    };
    node.wait_for_log("fallback config applied", WAIT);
    // Once, by one worker of the two; the node now holds the exported entities.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(node.entries_containing("fallback config applied").len(), 1);
    assert_eq!(admin.applied_count(), 1);
    let held = admin.config().expect("a configuration");
    assert_eq!(held["services"][0]["name"], json!("svc-7"), "{held}");
    let (ok, bad) = node.hammer(100);
    assert_eq!(ok, 100, "{bad:?}");
    node.assert_no_traps();
    server.stop();
}
