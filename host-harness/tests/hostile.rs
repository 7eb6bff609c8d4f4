//! The `hostile` host profile: unusual-but-legal answers and unasked-for callbacks, seeded and
//! recorded.
//!
//! * A tolerant guest (hand-written WAT that ignores every status and accepts any token or
//!   context) never traps under it, and every kind and variant of hostility fires over a long run:
//!   the injections are legal, and they happen.
//! * The probe guest (proxy-wasm 0.2.5 SDK wrappers, which panic on unexpected statuses) traps
//!   under it; each trap is recorded as a trap, caused by an injection, never a harness crash.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use host_harness::http::{CallContext, HttpRequest, HttpResponse, Reply};
use host_harness::{
    CallOutcome, HostProfile, Injection, InjectionRecord, NodeSpec, PluginModule, World,
};
use serde_json::json;

mod common;
use common::probe;

/// The header map of the tolerant guest's calls, in the ABI's wire format.
fn call_headers() -> Vec<u8> {
    let pairs = [(":method", "GET"), (":path", "/"), (":authority", "up")];
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend((k.len() as u32).to_le_bytes());
        out.extend((v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend(k.bytes().chain([0]).chain(v.bytes()).chain([0]));
    }
    out
}

/// A guest that calls the hostcalls a hostile host answers oddly (log, time, tick period, buffers,
/// shared data, dispatch, metrics on every tick; header map and body on every answer) and
/// ignores every status: it can never trap.
fn tolerant_guest() -> PluginModule {
    static MODULE: OnceLock<PluginModule> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let headers = call_headers();
            let escaped: String = headers.iter().map(|b| format!("\\{b:02x}")).collect();
            let wat = TOLERANT_WAT
                .replace("HEADERS_DATA", &escaped)
                .replace("HEADERS_LEN", &headers.len().to_string());
            PluginModule::from_bytes(wat.as_bytes()).expect("compile the tolerant guest")
        })
        .clone()
}

const TOLERANT_WAT: &str = r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_current_time_nanoseconds" (func $time (param i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs" (func $pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call"
    (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment (param i32 i64) (result i32)))
  (import "env" "proxy_record_metric" (func $record (param i32 i64) (result i32)))
  (import "env" "proxy_get_metric" (func $metric (param i32 i32) (result i32)))
  (memory (export "memory") 4)
  (data (i32.const 16) "tick")
  (data (i32.const 32) "resp")
  (data (i32.const 64) "up:80")
  (data (i32.const 128) "k")
  (data (i32.const 256) "HEADERS_DATA")
  (data (i32.const 512) "m")
  (global $heap (mut i32) (i32.const 65536))
  (func (export "proxy_abi_version_0_2_1"))
  ;; A bump allocator that starts over when it reaches the end (nothing is kept across calls).
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (if (i32.gt_u (i32.add (global.get $heap) (local.get $size)) (i32.const 262144))
      (then (global.set $heap (i32.const 65536))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $tick (i32.const 1000)))
    (i32.const 1))
  (func (export "proxy_on_tick") (param $ctx i32)
    (drop (call $log (i32.const 2) (i32.const 16) (i32.const 4)))
    (drop (call $time (i32.const 1040)))
    (drop (call $tick (i32.const 1000)))
    (drop (call $buffer (i32.const 7) (i32.const 0) (i32.const -1) (i32.const 1024) (i32.const 1028)))
    (drop (call $get (i32.const 128) (i32.const 1) (i32.const 1024) (i32.const 1028) (i32.const 1032)))
    (drop (call $set (i32.const 128) (i32.const 1) (i32.const 16) (i32.const 4) (i32.load (i32.const 1032))))
    (drop (call $call (i32.const 64) (i32.const 5) (i32.const 256) (i32.const HEADERS_LEN)
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 1036)))
    (drop (call $define (i32.const 0) (i32.const 512) (i32.const 1) (i32.const 1048)))
    (drop (call $increment (i32.load (i32.const 1048)) (i64.const 1)))
    (drop (call $record (i32.load (i32.const 1048)) (i64.const 7)))
    (drop (call $metric (i32.load (i32.const 1048)) (i32.const 1056))))
  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
    (drop (call $log (i32.const 2) (i32.const 32) (i32.const 4)))
    (drop (call $pairs (i32.const 6) (i32.const 1024) (i32.const 1028)))
    (drop (call $buffer (i32.const 4) (i32.const 0) (i32.const -1) (i32.const 1024) (i32.const 1028))))
  (func (export "proxy_on_queue_ready") (param i32 i32)))"#;

fn echo() -> Arc<dyn host_harness::http::Handler> {
    Arc::new(|req: &HttpRequest, _: &CallContext| Reply::Response {
        response: HttpResponse::new(200)
            .with_header("x-echo", &req.path)
            .with_body("echoed body"),
        latency: Duration::from_millis(10),
    })
}

/// `nodes` × 2 workers of the tolerant guest under `profile`, for `seconds` of virtual time.
fn tolerant_run(profile: HostProfile, nodes: usize, seconds: u64) -> World {
    let mut world = World::new(profile);
    world.route("up:80", echo());
    for i in 0..nodes {
        let spec = NodeSpec::new(&format!("n{i}"), &tolerant_guest())
            .workers(2)
            .filter("{\"any\": \"config\"}");
        world.add_node(spec).expect("add node");
    }
    world.advance(Duration::from_secs(seconds));
    world
}

fn fired(injections: &[InjectionRecord]) -> BTreeSet<(Injection, &'static str)> {
    injections.iter().map(|i| (i.kind, i.variant)).collect()
}

#[test]
fn every_kind_and_variant_of_hostility_fires_over_a_long_seeded_run_and_a_tolerant_guest_never_traps(
) {
    let world = tolerant_run(HostProfile::hostile().seed(42).hostile_rate(0.1), 2, 900);
    // The drop check would fail the test on any trap; say it here too.
    assert!(world.traps().is_empty(), "{:?}", world.traps());
    assert!(
        world.fatal_errors().is_empty(),
        "{:?}",
        world.fatal_errors()
    );
    let injections = world.injections();
    let fired = fired(&injections);
    for kind in Injection::ALL {
        assert!(world.injected(kind) > 0, "{kind:?} never fired");
        for variant in kind.variants() {
            assert!(
                fired.contains(&(kind, *variant)),
                "{kind:?} / {variant} never fired"
            );
        }
    }
    // Lost callbacks are the calls recorded as lost, and nothing else is.
    let lost = world
        .calls()
        .iter()
        .filter(|c| c.outcome == CallOutcome::Lost)
        .count();
    assert_eq!(lost, world.injected(Injection::LostCallback));
    // A dropped log line is not in the log.
    let ticks = world.logs_containing("tick").len();
    let refused = injections
        .iter()
        .filter(|i| i.kind == Injection::Log && i.detail == "dropped: tick")
        .count();
    assert!(refused > 0 && ticks > 0);
    // Injections are recorded in time order, with where they happened.
    assert!(injections.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(injections.iter().all(|i| i.origin.node.starts_with('n')));
}

#[test]
fn the_same_seed_injects_the_same_way_and_another_seed_does_not() {
    let run = |seed| tolerant_run(HostProfile::hostile().seed(seed), 1, 120).injections();
    let a = run(7);
    assert!(a.len() > 20, "{}", a.len());
    assert_eq!(a, run(7));
    assert_ne!(a, run(8));
}

#[test]
fn hostility_is_only_what_the_profile_allows() {
    // Rate 0: the ngx_wasm_module host, no injection at all.
    let world = tolerant_run(HostProfile::hostile().hostile_rate(0.0), 1, 60);
    assert!(world.injections().is_empty());
    // Other profiles are never hostile.
    for profile in [
        HostProfile::envoy(),
        HostProfile::ngx_wasm_module(),
        HostProfile::kong_legacy(),
    ] {
        assert!(profile.hostility.is_none());
        // The tolerant guest sets its tick period more than once, which ngx traps on.
        let profile = HostProfile {
            tick_period_once: false,
            ..profile
        };
        assert!(tolerant_run(profile, 1, 60).injections().is_empty());
    }
    // Only the kinds asked for.
    let only = [Injection::Time, Injection::DuplicateDelivery];
    let world = tolerant_run(
        HostProfile::hostile()
            .seed(3)
            .hostile_rate(0.5)
            .hostile_only(&only),
        1,
        60,
    );
    let kinds: BTreeSet<Injection> = world.injections().iter().map(|i| i.kind).collect();
    assert_eq!(kinds, only.into_iter().collect());
    let world = tolerant_run(
        HostProfile::hostile()
            .hostile_rate(0.5)
            .hostile_without(&[Injection::Log]),
        1,
        60,
    );
    assert_eq!(world.injected(Injection::Log), 0);
    assert!(world.injections().len() > 50);
    // Any profile can be made hostile; `by_name` knows the hostile one.
    assert!(HostProfile::envoy().seed(1).hostility.is_some());
    let hostile = HostProfile::by_name("hostile").unwrap();
    assert_eq!(hostile.name, "hostile");
    assert_eq!(hostile.hostility, HostProfile::hostile().hostility);
}

#[test]
fn the_sdk_probe_traps_under_a_hostile_host_and_each_trap_is_recorded_as_one_caused_by_an_injection(
) {
    let mut world = World::new(HostProfile::hostile().seed(5).hostile_rate(0.02));
    world.expect_traps();
    world.route("api:80", echo());
    let config = json!({
        "tick_ms": 1000, "dispatch_in": ["tick"], "upstream": "api:80", "authority": "api",
        "shared_counter": true, "metrics": true, "queue": "q",
    });
    let mut nodes = Vec::new();
    for i in 0..4 {
        let spec = NodeSpec::new(&format!("p{i}"), &probe())
            .workers(2)
            .filter(config.to_string());
        nodes.push(world.add_node(spec).expect("add node"));
    }
    world.advance(Duration::from_secs(300));

    let injections = world.injections();
    assert!(!injections.is_empty());
    let traps = world.traps();
    assert!(!traps.is_empty(), "the SDK wrappers panic on odd statuses");
    assert!(
        world.recoveries() > 0,
        "ngx_wasm_module recovers trapped workers"
    );
    // Every trap and host-side death follows an injection on the same worker (at once, or 1 ms
    // later for a duplicated answer): the harness never traps a guest by itself.
    let caused = |t: &host_harness::TrapRecord| {
        injections.iter().any(|i| {
            i.origin == t.origin && t.at >= i.at && t.at <= i.at + Duration::from_millis(1)
        })
    };
    for t in traps.iter().chain(world.fatal_errors().iter()) {
        assert!(!t.callback.is_empty() && !t.message.is_empty(), "{t:?}");
        assert!(caused(t), "a trap no injection explains: {t:?}");
    }
    // A trap is the guest's: wasmtime's trap report with the guest's backtrace.
    for t in &traps {
        assert!(t.message.contains("wasm trap"), "{}", t.message);
    }
    // The world ran to the end; every worker that is gone says why.
    assert_eq!(world.elapsed(), Duration::from_secs(300));
    for n in &nodes {
        for w in 0..2 {
            assert_eq!(
                world.worker_alive(*n, w),
                world.worker_death(*n, w).is_none()
            );
        }
    }
}

#[test]
fn an_answer_for_an_unknown_token_that_traps_the_worker_orphans_the_real_answer() {
    // Every answer is preceded by one for a token the probe never got: the SDK panics
    // ("invalid token_id"), ngx recovers the worker, and the real answer, meant for the instance
    // that trapped, must not reach the new one (that would be a second trap).
    let profile = HostProfile::hostile()
        .hostile_rate(1.0)
        .hostile_only(&[Injection::UnknownToken]);
    let mut world = World::new(profile);
    world.expect_traps();
    world.route("api:80", echo());
    let config =
        json!({"tick_ms": 1000, "dispatch_in": ["tick"], "upstream": "api:80", "authority": "api"});
    world
        .add_node(NodeSpec::new("p", &probe()).filter(config.to_string()))
        .expect("add node");
    world.advance(Duration::from_secs(4));
    let injected = world.injected(Injection::UnknownToken);
    assert!(injected >= 3, "{injected}");
    let traps = world.traps();
    let when: Vec<_> = traps.iter().map(|t| (t.at, t.callback.as_str())).collect();
    assert_eq!(traps.len(), injected, "{when:?}");
    assert!(traps.iter().all(|t| t.callback == "on_http_call_response"));
    let calls = world.calls();
    let answered: Vec<_> = calls.iter().filter(|c| c.answered_at.is_some()).collect();
    // (Calls of an instance that had already trapped are orphaned without an injection.)
    assert!(answered.len() >= injected);
    assert!(answered.iter().all(|c| c.outcome == CallOutcome::Orphaned));
}
