//! The harness against a purpose-built proxy-wasm 0.2.5 guest (`tests/guests/probe`): every
//! hostcall and callback, in both host profiles.

use std::sync::Arc;
use std::time::Duration;

use host_harness::http::{CallContext, CallFailure, HttpRequest, HttpResponse, Reply};
use host_harness::{CallOutcome, HostProfile, HttpExchange, NodeSpec, PluginModule, World};
use serde_json::json;

mod common;
use common::probe;

fn echo_handler() -> Arc<dyn host_harness::http::Handler> {
    Arc::new(|req: &HttpRequest, ctx: &CallContext| Reply::Response {
        response: HttpResponse::new(200)
            .with_header("x-upstream", &ctx.upstream)
            .with_body(format!("{} {} from {}", req.method, req.path, ctx.node)),
        latency: Duration::from_millis(30),
    })
}

fn logs(world: &World, needle: &str) -> Vec<String> {
    world
        .logs_containing(needle)
        .into_iter()
        .map(|l| l.message)
        .collect()
}

fn node(world: &mut World, workers: usize, config: serde_json::Value) -> host_harness::NodeId {
    world
        .add_node(
            NodeSpec::new("n1", &probe())
                .workers(workers)
                .filter(config.to_string()),
        )
        .expect("add node")
}

#[test]
fn every_import_of_an_sdk_0_2_5_module_is_provided() {
    let module = probe();
    let imports = module.imports();
    let proxy: Vec<_> = imports
        .iter()
        .filter(|i| i.starts_with("env::proxy_"))
        .collect();
    // The SDK references every hostcall through its trait vtables (~33 in proxy-wasm 0.2.x).
    assert!(
        proxy.len() >= 33,
        "only {} proxy imports: {proxy:?}",
        proxy.len()
    );
    for name in [
        "env::proxy_http_call",
        "env::proxy_get_shared_data",
        "env::proxy_define_metric",
        "wasi_snapshot_preview1::fd_write",
        "wasi_snapshot_preview1::environ_get",
    ] {
        assert!(
            imports.iter().any(|i| i == name),
            "{name} not imported: {imports:?}"
        );
    }
    assert_eq!(module.abi, host_harness::AbiVersion::V0_2_1);
}

#[test]
fn a_module_importing_something_unknown_is_refused_with_the_names() {
    let wat = r#"(module
        (import "env" "proxy_teleport" (func (param i32) (result i32)))
        (import "env" "proxy_log" (func (param i32 i32 i32) (result i32)))
        (import "env" "proxy_frobnicate" (func))
        (memory (export "memory") 1)
        (func (export "proxy_abi_version_0_2_1"))
        (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 0))"#;
    let err = PluginModule::from_bytes(wat.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("env::proxy_teleport") && err.contains("env::proxy_frobnicate"),
        "{err}"
    );
    assert!(!err.contains("env::proxy_log"), "{err}");
}

#[test]
fn lifecycle_runs_vm_start_then_configure_per_root_as_each_host_does() {
    for (profile, vm_starts) in [
        (HostProfile::ngx_wasm_module(), 2),
        (HostProfile::envoy(), 1),
    ] {
        let mut world = World::new(profile);
        let spec = NodeSpec::new("n1", &probe())
            .filter(json!({}).to_string())
            .filter(json!({}).to_string());
        world.add_node(spec).unwrap();
        let events: Vec<String> = world
            .logs()
            .into_iter()
            .filter(|l| {
                l.message.starts_with("probe vm_start") || l.message.starts_with("probe configure")
            })
            .map(|l| l.message.split(" proxy_time").next().unwrap().to_string())
            .collect();
        assert_eq!(
            logs(&world, "probe vm_start").len(),
            vm_starts,
            "{events:?}"
        );
        // Envoy counts contexts from 1; ngx_wasm_module's root ids are filter ids (hashes).
        let (first, second) = match world.profile().http {
            host_harness::HttpModel::Envoy => ("1".to_string(), "2".to_string()),
            host_harness::HttpModel::Ngx => {
                let id = |l: &str| l.rsplit('=').next().unwrap_or_default().to_string();
                let configures = logs(&world, "probe configure");
                let ids: Vec<String> = configures
                    .iter()
                    .map(|l| id(l.split(" proxy_time").next().unwrap()))
                    .collect();
                assert_ne!(ids[0], ids[1]);
                assert!(ids.iter().all(|i| i.parse::<u32>().unwrap() >= 0x1000_0000));
                (ids[0].clone(), ids[1].clone())
            }
        };
        assert_eq!(
            events.last().unwrap(),
            &format!("probe configure root={second}"),
            "{events:?}"
        );
        assert!(
            events[0].starts_with(&format!("probe vm_start root={first}")),
            "{events:?}"
        );
    }
}

#[test]
fn ticks_and_every_clock_follow_virtual_time() {
    let mut world = World::new(HostProfile::ngx_wasm_module());
    let n = node(&mut world, 2, json!({"tick_ms": 1000}));
    let start_ms = world.clock().guest_wall_nanos() / 1_000_000;
    let configure = logs(&world, "probe configure");
    assert!(
        configure[0].contains(&format!("proxy_time_ms={start_ms} wasi_time_ms={start_ms}")),
        "{configure:?}"
    );
    world.advance(Duration::from_millis(10_500));
    // Each worker ticks on its own timer.
    let ticks = logs(&world, "probe tick");
    assert_eq!(ticks.len(), 20, "{ticks:?}");
    assert!(ticks
        .last()
        .unwrap()
        .contains(&format!("time_ms={}", start_ms + 10_000)));
    assert_eq!(world.metric(n, "probe_ticks"), None);
}

#[test]
fn calls_are_answered_after_the_dispatching_callback_returns_with_unique_tokens() {
    for profile in [HostProfile::ngx_wasm_module(), HostProfile::envoy()] {
        let mut world = World::new(profile.clone());
        world.route("api.test:8080", echo_handler());
        node(
            &mut world,
            2,
            json!({"tick_ms": 1000, "dispatch_in": ["tick"], "upstream": "api.test:8080", "authority": "api.test"}),
        );
        world.advance(Duration::from_millis(1020));
        assert!(
            logs(&world, "probe call_response").is_empty(),
            "answer before its latency"
        );
        world.advance(Duration::from_millis(20));
        let answers = logs(&world, "probe call_response in=root");
        assert_eq!(answers.len(), 2, "{} {answers:?}", profile.name);
        // ngx_wasm_module adds `:dispatch_status: ok` and counts only the upstream's headers.
        let expected = match profile.name {
            "envoy" => "headers=2 status=200 dispatch_status= body=GET /probe from n1",
            _ => "headers=4 status=200 dispatch_status=ok body=GET /probe from n1",
        };
        assert!(answers[0].contains(expected), "{answers:?}");
        let calls = world.calls();
        assert_eq!(calls[0].request.authority, "api.test");
        assert_eq!(calls[0].request.header("x-probe-from"), Some("tick"));
        assert_eq!(calls[0].answered_at, Some(Duration::from_millis(1030)));
        // Envoy's tokens are unique in the world; ngx_wasm_module counts per worker from 0.
        let mut tokens: Vec<(String, u32)> = calls
            .iter()
            .map(|c| (c.origin.to_string(), c.token))
            .collect();
        tokens.dedup();
        assert_eq!(tokens.len(), 2);
        if profile.name != "envoy" {
            assert!(tokens.iter().all(|(_, t)| *t == 0), "{tokens:?}");
        }
    }
}

#[test]
fn dispatch_from_on_configure_kills_an_ngx_worker_for_good_but_not_an_envoy_one() {
    let mut world = World::new(HostProfile::ngx_wasm_module());
    world.expect_traps();
    world.route("api.test:80", echo_handler());
    let config = json!({"tick_ms": 1000, "dispatch_in": ["configure"], "upstream": "api.test:80", "authority": "api.test"});
    let n = world
        .add_node(NodeSpec::new("n1", &probe()).filter(config.to_string()))
        .unwrap();
    assert!(!world.worker_alive(n, 0));
    assert!(world.worker_death(n, 0).unwrap().contains("on_configure"));
    assert_eq!(world.traps().len(), 1);
    assert_eq!(world.recoveries(), 0);
    world.advance(Duration::from_secs(5));
    assert!(logs(&world, "probe tick").is_empty());
    assert!(world.calls().is_empty());
}

#[test]
fn envoy_allows_dispatch_in_configure_through_its_cluster_names() {
    let mut world = World::new(HostProfile::envoy());
    world.route("api_cluster", echo_handler());
    // ngx-style host:port names are unknown clusters to Envoy: refused synchronously.
    let config =
        json!({"dispatch_in": ["configure"], "upstream": "api_cluster", "authority": "api.test"});
    node(&mut world, 1, config);
    world.advance(Duration::from_secs(1));
    assert_eq!(logs(&world, "probe call_response in=root").len(), 1);
    let mut world = World::new(HostProfile::envoy());
    node(
        &mut world,
        1,
        json!({"dispatch_in": ["configure"], "upstream": "nowhere:80", "authority": "x"}),
    );
    assert_eq!(
        logs(
            &world,
            "probe dispatch_failed from=configure status=BadArgument"
        )
        .len(),
        1
    );
}

#[test]
fn a_dispatch_from_a_root_call_response_crashes_ngx_and_is_fine_on_envoy() {
    let config = json!({"tick_ms": 10_000, "dispatch_in": ["tick", "root_response"], "upstream": "api", "authority": "api.test"});
    let mut world = World::new(HostProfile::ngx_wasm_module());
    world.expect_traps();
    world.route("api", echo_handler());
    let n = node(&mut world, 1, config.clone());
    world.advance(Duration::from_secs(11));
    assert_eq!(world.fatal_errors().len(), 1, "{:?}", world.traps());
    assert!(!world.worker_alive(n, 0));
    assert_eq!(
        world.recoveries(),
        0,
        "a host crash is not a recoverable trap"
    );

    let mut world = World::new(HostProfile::envoy());
    world.route("api", echo_handler());
    node(&mut world, 1, config);
    world.advance(Duration::from_secs(11));
    // Every answer dispatches again from the callback (30 ms latency each): a chain, no crash.
    let chained = logs(&world, "probe dispatched from=root_response").len();
    assert!(chained > 10, "{chained}");
    assert!(world.fatal_errors().is_empty());
}

#[test]
fn failed_calls_call_back_with_zero_headers_as_each_host_does() {
    let failing = Arc::new(|_: &HttpRequest, _: &CallContext| Reply::Fail {
        failure: CallFailure::BrokenConnection,
        after: Duration::from_millis(5),
    });
    for (profile, dispatch_status) in [
        (HostProfile::ngx_wasm_module(), "broken connection"),
        (HostProfile::envoy(), ""),
    ] {
        let mut world = World::new(profile);
        world.route("down", failing.clone());
        node(
            &mut world,
            1,
            json!({"tick_ms": 1000, "dispatch_in": ["tick"], "upstream": "down", "authority": "d"}),
        );
        world.advance(Duration::from_millis(1100));
        let answers = logs(&world, "probe call_response");
        assert_eq!(answers.len(), 1);
        assert!(
            answers[0].contains(&format!(
                "headers=0 status= dispatch_status={dispatch_status} body="
            )),
            "{answers:?}"
        );
    }
}

#[test]
fn unknown_upstreams_hangs_and_lost_callbacks() {
    // ngx: an unknown host is a resolver failure delivered as a callback.
    let mut world = World::new(HostProfile::ngx_wasm_module());
    node(
        &mut world,
        1,
        json!({"tick_ms": 1000, "dispatch_in": ["tick"], "upstream": "nowhere:80", "authority": "x"}),
    );
    world.advance(Duration::from_millis(1001));
    assert!(logs(&world, "probe call_response")[0].contains("dispatch_status=resolver failure"));

    // A server that never answers: the host's timeout fires.
    let hang = Arc::new(|_: &HttpRequest, _: &CallContext| Reply::Hang);
    let mut world = World::new(HostProfile::ngx_wasm_module());
    world.route("slow", hang.clone());
    node(
        &mut world,
        1,
        json!({"tick_ms": 60_000, "dispatch_in": ["tick"], "upstream": "slow", "authority": "s", "timeout_ms": 2500}),
    );
    world.advance(Duration::from_millis(62_499));
    assert!(logs(&world, "probe call_response").is_empty());
    world.advance(Duration::from_millis(1));
    assert!(logs(&world, "probe call_response")[0].contains("dispatch_status=timeout"));

    // Kong before 3.9: the failure never calls back.
    let mut world = World::new(HostProfile::kong_legacy());
    world.route("slow", hang);
    node(
        &mut world,
        1,
        json!({"tick_ms": 1000, "dispatch_in": ["tick"], "upstream": "slow", "authority": "s", "timeout_ms": 100}),
    );
    world.advance(Duration::from_secs(3));
    assert!(logs(&world, "probe call_response").is_empty());
    assert!(world.calls().iter().all(|c| c.outcome == CallOutcome::Lost));
}

#[test]
fn cas_zero_semantics_differ_between_hosts_and_cas_loops_count_exactly() {
    for (profile, second) in [
        (HostProfile::ngx_wasm_module(), "Err(CasMismatch)"),
        (HostProfile::envoy(), "Ok(())"),
    ] {
        let mut world = World::new(profile);
        let n = node(
            &mut world,
            4,
            json!({"tick_ms": 1000, "cas_zero_key": "k", "shared_counter": true}),
        );
        world.advance(Duration::from_millis(10_000));
        let results = logs(&world, "probe cas_zero_set");
        assert_eq!(results[0], "probe cas_zero_set result=Ok(())");
        assert_eq!(results[1], format!("probe cas_zero_set result={second}"));
        let counter = world.shared_data(n, "probe/counter").unwrap();
        assert_eq!(counter.value, b"40", "4 workers x 10 ticks");
        assert_ne!(counter.cas, 0);
    }
}

#[test]
fn without_a_shm_kv_zone_shared_data_traps() {
    let mut profile = HostProfile::ngx_wasm_module();
    profile.shared_data_zone = false;
    profile.recover_after_trap = false;
    let mut world = World::new(profile);
    world.expect_traps();
    let n = node(
        &mut world,
        1,
        json!({"tick_ms": 1000, "shared_counter": true}),
    );
    world.advance(Duration::from_secs(2));
    assert_eq!(world.traps().len(), 1);
    assert!(
        world.traps()[0].message.contains("shm_kv"),
        "{:?}",
        world.traps()
    );
    assert!(!world.worker_alive(n, 0));
}

#[test]
fn root_properties_are_unusable_on_ngx() {
    let config = json!({"properties": ["plugin_root_id", "node.id"]});
    let mut world = World::new(HostProfile::ngx_wasm_module());
    world
        .add_node(
            NodeSpec::new("n1", &probe())
                .filter(config.to_string())
                .property("node.id", "dp-7"),
        )
        .unwrap();
    assert_eq!(
        logs(&world, "probe root_property"),
        vec![
            "probe root_property plugin_root_id=Some(\"0\")".to_string(),
            "probe root_property node.id=None".to_string(),
        ]
    );
    let mut world = World::new(HostProfile::envoy());
    world
        .add_node(
            NodeSpec::new("n1", &probe())
                .filter(config.to_string())
                .property("node.id", "dp-7"),
        )
        .unwrap();
    assert_eq!(
        logs(&world, "probe root_property node.id")[0],
        "probe root_property node.id=Some(\"dp-7\")"
    );

    // Reading plugin_name in on_configure segfaults an ngx worker.
    let mut world = World::new(HostProfile::ngx_wasm_module());
    world.expect_traps();
    let n = node(&mut world, 1, json!({"properties": ["plugin_name"]}));
    assert_eq!(world.fatal_errors().len(), 1);
    assert!(!world.worker_alive(n, 0));
}

#[test]
fn after_a_trap_ngx_recreates_the_root_context_and_adds_a_tick_timer() {
    let mut world = World::new(HostProfile::ngx_wasm_module());
    world.expect_traps();
    let n = node(&mut world, 1, json!({"tick_ms": 1000, "trap_in": "tick"}));
    world.advance(Duration::from_millis(1000));
    assert_eq!(world.traps().len(), 1);
    // The instance is re-created when something needs it (here the next tick), not at once.
    assert_eq!(world.recoveries(), 0);
    assert!(world.worker_alive(n, 0));
    assert_eq!(logs(&world, "probe configure").len(), 1);
    world.advance(Duration::from_millis(1000));
    assert_eq!(world.recoveries(), 1);
    // on_configure again (before the tick that needed the instance), no on_vm_start.
    assert_eq!(logs(&world, "probe configure").len(), 2);
    assert_eq!(logs(&world, "probe vm_start").len(), 1);
    assert_eq!(logs(&world, "probe tick").len(), 2);
    // Two timers now: the next second brings two ticks (each recovers, then traps again).
    world.advance(Duration::from_millis(1000));
    assert_eq!(logs(&world, "probe tick").len(), 4);
    assert_eq!(world.recoveries(), 3);

    let mut world = World::new(HostProfile::envoy());
    world.expect_traps();
    let n = node(&mut world, 1, json!({"tick_ms": 1000, "trap_in": "tick"}));
    world.advance(Duration::from_millis(3000));
    assert_eq!(world.traps().len(), 1);
    assert!(!world.worker_alive(n, 0));
}

#[test]
fn an_unexpected_trap_fails_the_test_by_default() {
    let result = std::panic::catch_unwind(|| {
        let mut world = World::new(HostProfile::envoy());
        node(&mut world, 1, json!({"tick_ms": 1000, "trap_in": "tick"}));
        world.advance(Duration::from_secs(2));
    });
    let message = *result.unwrap_err().downcast::<String>().unwrap();
    assert!(
        message.contains("unexpected trap") && message.contains("in on_tick"),
        "{message}"
    );
}

#[test]
fn http_contexts_see_and_modify_headers_and_bodies() {
    let mut world = World::new(HostProfile::envoy());
    let n = world
        .add_node(
            NodeSpec::new("n1", &probe())
                .filter(json!({"properties": ["request.path"]}).to_string())
                .property("request.path", "/p"),
        )
        .unwrap();
    let mut ex = HttpExchange::get("/hello");
    ex.request_headers.push(("x-replaced".into(), "old".into()));
    ex.request_headers.push(("x-remove-me".into(), "1".into()));
    ex.request_body = b"original".to_vec();
    ex.response_body = b"resp".to_vec();
    let out = world.http(n, 0, 0, ex);
    assert!(!out.failed && !out.stuck);
    let h = &out.data.request_headers;
    assert!(h.contains(&("x-probe".into(), "1".into())));
    assert!(h.contains(&("x-replaced".into(), "new".into())));
    assert!(!h.iter().any(|(k, _)| k == "x-remove-me"));
    assert_eq!(out.data.request_body, b"rewritten");
    assert!(out
        .data
        .response_headers
        .contains(&("x-probe-response".into(), "yes".into())));
    assert_eq!(
        logs(&world, "probe request_headers")[0],
        "probe request_headers ctx=2 count=6 eos=false path=Some(\"/hello\")"
    );
    // Derived from the request, whatever the node-wide property says.
    assert_eq!(
        logs(&world, "probe http_property")[0],
        "probe http_property request.path=Some(\"/hello\")"
    );
    assert_eq!(
        logs(&world, "probe request_body")[0],
        "probe request_body size=8 eos=true body=original"
    );
    assert_eq!(
        logs(&world, "probe response_body")[0],
        "probe response_body body=resp"
    );
    assert_eq!(logs(&world, "probe log ctx=2").len(), 1);
    assert_eq!(logs(&world, "probe done ctx=2").len(), 1);
}

#[test]
fn local_responses_and_requests_paused_for_a_call() {
    // Envoy: the probe asserts that the header count includes pseudo-headers, which
    // ngx_wasm_module leaves out (its local responses: tests/http_fidelity.rs).
    let mut world = World::new(HostProfile::envoy());
    let n = node(&mut world, 1, json!({"local_response": 403}));
    let out = world.http(n, 0, 0, HttpExchange::get("/x"));
    let local = out.local_response().unwrap();
    assert_eq!(
        (local.status, local.body.as_slice()),
        (403, &b"denied by probe"[..])
    );
    assert!(local.headers.contains(&("x-local".into(), "yes".into())));
    // The local response went through the response phases, and is the exchange's response.
    assert_eq!(
        logs(&world, "probe response_headers"),
        ["probe response_headers status=Some(\"403\")"]
    );
    assert_eq!(out.status(), 403);
    assert_eq!(out.data.response_body, b"denied by probe");

    let mut world = World::new(HostProfile::envoy());
    world.route("auth", echo_handler());
    let n = node(
        &mut world,
        1,
        json!({"pause_for_call": true, "upstream": "auth", "authority": "auth"}),
    );
    let out = world.http(n, 0, 0, HttpExchange::get("/x"));
    assert!(!out.stuck, "{:?}", world.logs());
    assert_eq!(
        out.actions[0],
        ("request_headers", host_harness::Action::Pause)
    );
    assert!(out
        .data
        .request_headers
        .contains(&("x-call-status".into(), "ok".into())));
    assert!(world.elapsed() >= Duration::from_millis(30));
    assert_eq!(logs(&world, "probe call_response in=http").len(), 1);
}

#[test]
fn shared_queues_notify_the_registering_context() {
    let mut world = World::new(HostProfile::envoy());
    node(&mut world, 1, json!({"tick_ms": 1000, "queue": "q1"}));
    world.advance(Duration::from_millis(2000));
    let ready = logs(&world, "probe queue_ready");
    assert_eq!(
        ready,
        vec![
            "probe queue_ready id=1 item=Ok(Some(\"item1\")) then=Ok(true)".to_string(),
            "probe queue_ready id=1 item=Ok(Some(\"item2\")) then=Ok(true)".to_string(),
        ]
    );
}

#[test]
fn metrics_are_per_node() {
    let mut world = World::new(HostProfile::envoy());
    let n = node(&mut world, 2, json!({"tick_ms": 1000, "metrics": true}));
    world.advance(Duration::from_millis(3000));
    assert_eq!(world.metric(n, "probe_ticks"), Some(6));
}

#[test]
fn ten_virtual_minutes_of_four_workers_ticking_every_second() {
    let mut world = World::new(HostProfile::ngx_wasm_module());
    let n = node(
        &mut world,
        4,
        json!({"tick_ms": 1000, "shared_counter": true}),
    );
    world.advance(Duration::from_secs(600));
    assert_eq!(
        world.shared_data(n, "probe/counter").unwrap().value,
        b"2400"
    );
}

#[test]
fn abi_0_2_0_modules_load_and_use_the_old_names() {
    let wat = r#"(module
        (import "env" "proxy_continue_request" (func $cont (result i32)))
        (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 16) "old abi")
        (func (export "proxy_abi_version_0_2_0"))
        (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 1024)
        (func (export "proxy_on_context_create") (param i32 i32))
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
            (drop (call $log (i32.const 2) (i32.const 16) (i32.const 7)))
            i32.const 1))"#;
    let module = PluginModule::from_bytes(wat.as_bytes()).unwrap();
    assert_eq!(module.abi, host_harness::AbiVersion::V0_2_0);
    let mut world = World::new(HostProfile::envoy());
    let n = world
        .add_node(NodeSpec::new("old", &module).filter("{}"))
        .unwrap();
    assert_eq!(world.configured(n, 0, 0), Some(true));
    assert_eq!(logs(&world, "old abi").len(), 1);
}

#[test]
fn the_sdk_wrapper_traps_when_a_host_refuses_define_metric() {
    // Why config-bridge declares its own metrics imports: the SDK panics on any non-Ok status.
    let profile = HostProfile {
        metrics: false,
        ..HostProfile::envoy()
    };
    let mut world = World::new(profile);
    world.expect_traps();
    let n = node(&mut world, 1, json!({"metrics": true}));
    assert_eq!(world.traps().len(), 1);
    assert_eq!(world.traps()[0].callback, "on_configure");
    assert!(!world.worker_alive(n, 0));
}

#[test]
fn on_configure_false_kills_an_ngx_worker_for_good_but_envoy_only_refuses_the_filter() {
    let mut world = World::new(HostProfile::ngx_wasm_module());
    world.expect_traps();
    let n = node(
        &mut world,
        2,
        json!({"reject_config": true, "tick_ms": 1000}),
    );
    for w in 0..2 {
        assert!(!world.worker_alive(n, w));
        let death = world.worker_death(n, w).unwrap_or_default();
        assert!(death.contains("cannot be respawned"), "{death}");
    }
    assert_eq!(world.fatal_errors().len(), 2);
    world.advance(Duration::from_secs(3));
    assert!(logs(&world, "probe tick").is_empty());

    let mut world = World::new(HostProfile::envoy());
    let n = node(&mut world, 1, json!({"reject_config": true}));
    assert!(world.worker_alive(n, 0));
    assert_eq!(world.configured(n, 0, 0), Some(false));
    assert!(world.fatal_errors().is_empty());
}

#[test]
fn ngx_resolves_shared_data_keys_by_namespace_to_named_zones() {
    // The probe's key is `probe/counter`: zone `probe` when declared, else the default zone.
    for zones in [&["probe"][..], &["*"][..], &["probe", "*"][..]] {
        let mut world = World::new(HostProfile::ngx_wasm_module().with_shm_zones(zones));
        node(
            &mut world,
            1,
            json!({"tick_ms": 1000, "shared_counter": true}),
        );
        world.advance(Duration::from_secs(3));
        assert!(world.traps().is_empty(), "{zones:?}: {:?}", world.traps());
    }
    let mut profile = HostProfile::ngx_wasm_module().with_shm_zones(&["kv"]);
    profile.recover_after_trap = false;
    let mut world = World::new(profile);
    world.expect_traps();
    node(
        &mut world,
        1,
        json!({"tick_ms": 1000, "shared_counter": true}),
    );
    world.advance(Duration::from_secs(2));
    let traps = world.traps();
    assert_eq!(traps.len(), 1);
    assert!(
        traps[0].message.contains("could not resolve namespace"),
        "{}",
        traps[0].message
    );
}

#[test]
fn a_second_set_tick_period_traps_on_ngx_but_not_on_envoy() {
    // The probe sets its tick period in on_configure; a reconfigure sets it again.
    let mut world = World::new(HostProfile::ngx_wasm_module());
    world.expect_traps();
    let n = node(&mut world, 1, json!({"tick_ms": 1000}));
    world.reconfigure(n, 0, json!({"tick_ms": 500}).to_string());
    let traps = world.traps();
    assert_eq!(traps.len(), 1, "{traps:?}");
    assert!(
        traps[0].message.contains("tick_period already set"),
        "{}",
        traps[0].message
    );

    let mut world = World::new(HostProfile::envoy());
    let n = node(&mut world, 1, json!({"tick_ms": 1000}));
    world.reconfigure(n, 0, json!({"tick_ms": 500}).to_string());
    assert!(world.traps().is_empty());
}
