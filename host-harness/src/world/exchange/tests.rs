//! An exchange stepped against a worker alone: no world, no scheduler. The filter is written in
//! WebAssembly text; `REQUEST_HEADERS` is the body of its `on_request_headers`.

use std::time::Duration;

use super::rules::NGINX_500;
use super::{Exchange, Step};
use crate::profile::HostProfile;
use crate::world::worker::testing::{lone_worker, traps};
use crate::world::worker::Worker;
use crate::world::HttpExchange;

const FILTER: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 1024)
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
  (func (export "proxy_on_configure") (param i32 i32) (result i32) i32.const 1)
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) REQUEST_HEADERS)
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_done") (param i32) (result i32) i32.const 1)
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))"#;

fn worker(profile: HostProfile, request_headers: &str) -> Worker {
    lone_worker(
        profile,
        &FILTER.replace("REQUEST_HEADERS", request_headers),
        "{}",
    )
}

fn request() -> HttpExchange {
    HttpExchange::get("/x").respond(200, &[("content-type", "text/plain")], b"hello")
}

/// Steps until the exchange waits or ends.
fn run(ex: &mut Exchange, worker: &mut Worker) -> Step {
    for _ in 0..64 {
        let now = worker.elapsed();
        match ex.step(worker, now) {
            Step::Ready => continue,
            other => return other,
        }
    }
    panic!("the exchange neither waited nor ended in 64 steps");
}

#[test]
fn an_exchange_runs_its_phases_in_each_hosts_order_against_a_worker_alone() {
    for (profile, end) in [
        (HostProfile::ngx_wasm_module(), ["done", "log", "delete"]),
        (HostProfile::envoy(), ["log", "done", "delete"]),
    ] {
        let mut w = worker(profile, "i32.const 0");
        let mut ex = Exchange::open(&mut w, (0, 0), &[0], request());
        assert_eq!(run(&mut ex, &mut w), Step::Finished);
        let out = ex.outcome();
        let phases = [
            "context_create",
            "request_headers",
            "response_headers",
            "response_body",
        ];
        let want: Vec<String> = phases
            .iter()
            .chain(&end)
            .map(|n| format!("on_{n}"))
            .collect();
        assert_eq!(out.callback_names(out.context_id), want);
        assert_eq!(
            (out.status(), &out.data.response_body[..]),
            (200, &b"hello"[..])
        );
        assert!(!out.failed && !out.stuck);
        assert!(w.take_caused().is_empty(), "the filter caused no event");
    }
}

#[test]
fn a_pause_waits_with_one_timeout_and_its_timeout_closes_the_exchange() {
    let mut w = worker(HostProfile::ngx_wasm_module(), "i32.const 1");
    let mut ex = Exchange::open(&mut w, (0, 0), &[0], request());
    let due = w.elapsed() + Duration::from_secs(60);
    assert_eq!(
        run(&mut ex, &mut w),
        Step::Waiting {
            timeout: Some((due, 1))
        }
    );
    assert_eq!(
        run(&mut ex, &mut w),
        Step::Waiting { timeout: None },
        "one timeout a pause"
    );
    assert!(!ex.time_out(2), "not this pause's timeout");
    assert!(ex.time_out(1));
    assert_eq!(run(&mut ex, &mut w), Step::Finished);
    let out = ex.outcome();
    assert!(out.stuck);
    let names = out.callback_names(out.context_id);
    assert_eq!(
        names,
        [
            "on_context_create",
            "on_request_headers",
            "on_done",
            "on_log",
            "on_delete"
        ]
    );
}

#[test]
fn a_trap_in_a_request_phase_ends_in_nginxs_500_and_the_worker_recovers_lazily() {
    let mut w = worker(HostProfile::ngx_wasm_module(), "unreachable");
    let mut ex = Exchange::open(&mut w, (0, 0), &[0], request());
    assert_eq!(run(&mut ex, &mut w), Step::Finished);
    let out = ex.outcome();
    assert!(out.failed);
    assert_eq!(out.status(), 500);
    assert_eq!(out.data.response_body, NGINX_500.as_bytes());
    assert_eq!(traps(&w), 1);
    assert!(
        w.alive() && !w.is_running(),
        "trapped, waiting for its lazy recovery"
    );
    // The next exchange wakes the worker: a new instance runs it.
    let generation = w.generation();
    let mut next = Exchange::open(&mut w, (0, 0), &[0], request());
    assert_eq!(w.generation(), generation + 1);
    assert_eq!(run(&mut next, &mut w), Step::Finished);
    assert_eq!(next.outcome().status(), 500, "the same filter traps again");
}
