//! What a gateway operator must never see from a backup filter, in the harness profiles that
//! reproduce the real hosts (docs/host-behaviours.md): traffic through the filter's chain, invalid
//! settings, reloads and named `shm_kv` zones. The same scenarios run in the real engine in
//! `engine_*.rs`.

use config_bridge_tests::*;
use host_harness::{Action, HostProfile, HttpExchange};
use serde_json::json;

/// Every host creates an HTTP context per request through a chain carrying the filter (Kong: any
/// request through the chain's service or route). The filter passes each one through untouched,
/// never traps, and its root contexts keep one tick timer each.
#[test]
fn requests_through_the_filter_pass_through_without_a_trap() {
    for profile in all_profiles() {
        let s3 = mock_s3();
        let mut world = world_with_storage(&profile, s3.clone());
        let node = start_exporter(&mut world, 2, &declarative(1));
        world.advance(secs(5));
        for i in 0..1000 {
            let worker = i % 2;
            let out = world.http(node, worker, 0, HttpExchange::get(&format!("/r/{i}")));
            assert!(!out.failed, "{}: request {i} failed", profile.name);
            assert!(!out.stuck, "{}: request {i} stuck", profile.name);
            assert!(out.local_response().is_none(), "{}", profile.name);
            assert!(
                out.actions.iter().all(|(_, a)| *a == Action::Continue),
                "{}: {:?}",
                profile.name,
                out.actions
            );
            // The upstream's answer is what the client gets.
            assert!(
                out.data
                    .response_headers
                    .iter()
                    .any(|(k, v)| k == ":status" && v == "200"),
                "{}",
                profile.name
            );
        }
        world.advance(secs(120));
        assert!(
            world.traps().is_empty(),
            "{}: {:?}",
            profile.name,
            world.traps()
        );
        assert_eq!(world.recoveries(), 0, "{}", profile.name);
        // Configured once per worker: no trap recovery re-ran on_configure.
        assert_eq!(
            log_messages(&world, "configured (root context").len(),
            2,
            "{}",
            profile.name
        );
        assert_eq!(puts(&s3).len(), 1, "{}", profile.name);
        assert_exported(&s3, &declarative(1));
    }
}

/// An invalid setting never takes a worker down: one error line naming the field, the filter
/// inert (no request at all), a gauge, a reminder every 5 minutes; fixing it resumes exports.
#[test]
fn an_invalid_setting_leaves_the_filter_inert_and_every_worker_alive() {
    for profile in all_profiles() {
        let s3 = mock_s3();
        let mut world = world_with_storage(&profile, s3.clone());
        let mut cfg = filter_config(&profile, &declarative(1));
        cfg["cluster_fallback_config_exprot"] = json!("on");
        let node = start_node(&mut world, 2, &cfg);
        for w in 0..2 {
            assert!(world.worker_alive(node, w), "{}", profile.name);
            assert_eq!(world.configured(node, w, 0), Some(true), "{}", profile.name);
        }
        let errors = log_messages(&world, "invalid configuration");
        assert_eq!(
            errors.len(),
            2,
            "{}: one line per worker: {errors:?}",
            profile.name
        );
        assert!(
            errors[0].contains("cluster_fallback_config_exprot: unknown setting")
                && errors[0].contains("inert (no export, no import)"),
            "{}: {}",
            profile.name,
            errors[0]
        );
        if profile.metrics {
            assert_eq!(world.metric(node, "config_bridge_config_invalid"), Some(1));
        }
        // Requests still pass.
        let out = world.http(node, 0, 0, HttpExchange::get("/"));
        assert!(!out.failed, "{}", profile.name);
        world.advance(secs(301));
        assert!(
            world.calls().is_empty(),
            "{}: an inert filter sent a request",
            profile.name
        );
        let reminders = log_messages(&world, "still inert");
        assert_eq!(reminders.len(), 2, "{}: {reminders:?}", profile.name);

        // Fixed by a new configuration: exports resume, the gauge drops.
        apply_doc(&mut world, node, &declarative(2));
        world.advance(secs(10));
        assert_exported(&s3, &declarative(2));
        if profile.metrics {
            assert_eq!(world.metric(node, "config_bridge_config_invalid"), Some(0));
        }
        assert!(world.traps().is_empty() && world.fatal_errors().is_empty());
        assert_no_secrets(&world, &[]);
    }
}

/// `strict_config: true` hands the decision to the host: ngx_wasm_module kills the worker for
/// good (as it does for any filter whose on_configure fails); Envoy refuses the filter.
#[test]
fn strict_config_lets_the_host_refuse_an_invalid_configuration() {
    for profile in all_profiles() {
        let mut world = world_with_storage(&profile, mock_s3());
        world.expect_traps();
        let mut cfg = filter_config(&profile, &declarative(1));
        cfg["strict_config"] = json!(true);
        cfg["aws_region"] = json!(42);
        let node = start_node(&mut world, 1, &cfg);
        assert_eq!(
            log_messages(&world, "invalid configuration: aws_region").len(),
            1
        );
        if profile.configure_false_is_fatal {
            assert!(!world.worker_alive(node, 0), "{}", profile.name);
            assert_eq!(world.fatal_errors().len(), 1, "{}", profile.name);
        } else {
            assert!(world.worker_alive(node, 0), "{}", profile.name);
            assert_eq!(
                world.configured(node, 0, 0),
                Some(false),
                "{}",
                profile.name
            );
        }
    }
}

/// An nginx reload wipes shared data: the node forgets the object's ETag. The same config is
/// not uploaded again (a HEAD finds it); a new one is uploaded exactly once, with its full body.
#[test]
fn reloads_upload_a_new_config_once_and_the_same_config_never() {
    for profile in [HostProfile::ngx_wasm_module(), HostProfile::kong_legacy()] {
        let s3 = mock_s3();
        let mut world = world_with_storage(&profile, s3.clone());
        let cfg = filter_config(&profile, &declarative(1));
        let node = start_node(&mut world, 2, &cfg);
        world.advance(secs(10));
        assert_eq!(puts(&s3).len(), 1, "{}", profile.name);

        world.reload_node(node).expect("reload");
        world.advance(secs(120));
        assert_eq!(
            puts(&s3).len(),
            1,
            "{}: same config uploaded again",
            profile.name
        );
        assert_eq!(log_messages(&world, "already holds this config").len(), 1);

        let new_cfg = filter_config(&profile, &declarative(2));
        world
            .reload_node_with(node, 0, new_cfg.to_string())
            .expect("reload");
        world.advance(secs(120));
        let all = puts(&s3);
        assert_eq!(all.len(), 2, "{}: {} PUTs", profile.name, all.len());
        assert_eq!(all[1].status, 200, "{}", profile.name);
        assert_exported(&s3, &declarative(2));

        // Twenty reloads of the same config: no upload, no trap, every worker alive.
        for _ in 0..20 {
            world.reload_node(node).expect("reload");
            world.advance(secs(5));
        }
        assert_eq!(puts(&s3).len(), 2, "{}", profile.name);
        assert!(world.worker_alive(node, 0) && world.worker_alive(node, 1));
        assert!(world.traps().is_empty(), "{}", profile.name);
    }
}

/// Kong 3.4/3.5 declare a named zone only (`shm_kv kv 1m;`): keys outside it trap in
/// ngx_wasm_module. `shared_data_namespace` puts every key in that zone.
#[test]
fn a_named_shm_zone_works_with_the_namespace_setting() {
    let profile = HostProfile::ngx_wasm_module().with_shm_zones(&["kv"]);
    let s3 = mock_s3();
    let mut world = world_with_storage(&profile, s3.clone());
    let mut cfg = filter_config(&profile, &declarative(1));
    cfg["shared_data_namespace"] = json!("kv");
    start_node(&mut world, 2, &cfg);
    world.advance(secs(10));
    assert_exported(&s3, &declarative(1));
    assert!(world.traps().is_empty(), "{:?}", world.traps());

    // Without the setting the keys resolve to the missing default zone: the host traps.
    let mut world = world_with_storage(&profile, mock_s3());
    world.expect_traps();
    start_exporter(&mut world, 1, &declarative(1));
    world.advance(secs(5));
    let traps = world.traps();
    assert!(!traps.is_empty());
    assert!(
        traps[0].message.contains("could not resolve namespace"),
        "{}",
        traps[0].message
    );
}
