//! HTTP fidelity of the host profiles against a purpose-built guest (`tests/guests/h-http`):
//! local responses through the response phases, callback order, end-of-stream flags and header
//! counts, body buffering, per-request properties, exchanges in flight together, ngx_wasm_module's
//! hostcall rules, trap reports, filter chains. Each behaviour and its source in the real host:
//! docs/host-behaviours.md.

use std::sync::Arc;
use std::time::Duration;

use host_harness::http::{CallContext, HttpRequest, HttpResponse, Reply};
use host_harness::{HostProfile, HttpExchange, NodeId, NodeSpec, World};
use serde_json::{json, Value};

mod common;
use common::h_http as guest;

fn world(profile: HostProfile, config: Value) -> (World, NodeId) {
    let mut world = World::new(profile);
    let node = world
        .add_node(NodeSpec::new("n1", &guest()).named_filter("h", config.to_string()))
        .expect("add node");
    (world, node)
}

/// The guest's `h ...` lines, without the prefix.
fn lines(world: &World) -> Vec<String> {
    world
        .logs()
        .into_iter()
        .filter_map(|l| l.message.strip_prefix("h ").map(str::to_string))
        .collect()
}

fn with(world: &World, needle: &str) -> Vec<String> {
    lines(world)
        .into_iter()
        .filter(|l| l.contains(needle))
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn ngx() -> HostProfile {
    HostProfile::ngx_wasm_module()
}

fn envoy() -> HostProfile {
    HostProfile::envoy()
}

// ---- 1. Local responses run the response phases ------------------------------------------

#[test]
fn ngx_a_local_response_runs_the_response_phases_with_a_trailing_lf_and_content_length() {
    let config = json!({"local_in": "request_headers", "local_status": 403,
        "local_body": "nope", "local_headers": [["X-Local", "yes"]], "pause": ["request_headers"]});
    let (mut w, n) = world(ngx(), config);
    let out = w.http(
        n,
        0,
        0,
        HttpExchange::get("/x").respond(200, &[("x-up", "1")], b"up"),
    );
    assert!(!out.failed && !out.stuck, "{out:?}");
    assert_eq!(out.status(), 403);
    let h = &out.data.response_headers;
    assert_eq!(header(h, "X-Local"), Some("yes"));
    assert_eq!(
        header(h, "x-up"),
        None,
        "the upstream's headers are not the record's"
    );
    assert_eq!(header(h, "Content-Length"), Some("5"));
    assert_eq!(header(h, "Content-Type"), Some("text/plain"));
    assert_eq!(out.data.response_body, b"nope\n");
    let ctx = out.context_id;
    assert_eq!(
        with(&w, "response_headers ctx"),
        // Content-Type, X-Local, Content-Length and nginx's Connection, Server, Date.
        [format!(
            "response_headers ctx={ctx} n=6 eos=false status=403"
        )]
    );
    assert_eq!(
        with(&w, "response_body ctx"),
        [format!(
            "response_body ctx={ctx} size=5 eos=true body=nope\n"
        )]
    );
    assert!(with(&w, "request_body").is_empty());
}

#[test]
fn envoy_a_local_response_runs_the_response_phases_without_a_trailing_lf() {
    let config = json!({"local_in": "request_headers", "local_status": 401,
        "local_body": "who", "local_headers": [["x-local", "yes"]], "pause": ["request_headers"]});
    let (mut w, n) = world(envoy(), config);
    let out = w.http(
        n,
        0,
        0,
        HttpExchange::get("/x").respond(200, &[("x-up", "1")], b"up"),
    );
    assert_eq!(out.status(), 401);
    assert_eq!(out.data.response_body, b"who");
    assert_eq!(
        header(&out.data.response_headers, "content-length"),
        Some("3")
    );
    assert_eq!(header(&out.data.response_headers, "x-up"), None);
    assert_eq!(with(&w, "response_headers ctx").len(), 1);
    assert_eq!(with(&w, "response_body ctx").len(), 1);
    assert!(with(&w, "response_body ctx")[0].ends_with("size=3 eos=true body=who"));
}

#[test]
fn ngx_a_local_response_from_response_headers_replaces_status_and_body_only() {
    let config = json!({"local_in": "response_headers", "local_status": 502,
        "local_body": "bad", "local_headers": [["x-ignored", "1"]]});
    let (mut w, n) = world(ngx(), config);
    let ex = HttpExchange::get("/").respond(200, &[("Content-Length", "8")], b"upstream");
    let out = w.http(n, 0, 0, ex);
    assert_eq!(out.status(), 502);
    assert_eq!(out.data.response_body, b"bad\n");
    // End of stream is "the chunk is Content-Length long": not any more (the engine's client
    // then waits for the rest).
    let ctx = out.context_id;
    assert_eq!(
        with(&w, "response_body ctx"),
        [format!(
            "response_body ctx={ctx} size=4 eos=false body=bad\n"
        )]
    );
    assert_eq!(header(&out.data.response_headers, "x-ignored"), None);
    assert_eq!(
        with(&w, "local_response status"),
        ["local_response status=Ok"]
    );
    // The upstream's Content-Length stays: 4 of its 8 bytes come, the client waits for the rest.
    assert_eq!(
        header(&out.data.response_headers, "Content-Length"),
        Some("8")
    );
    assert!(out.incomplete, "{out:?}");
    // A response whose body matches its length is complete.
    let ex = HttpExchange::get("/").respond(200, &[("Content-Length", "8")], b"upstream");
    let (mut w, n) = world(ngx(), json!({}));
    assert!(!w.http(n, 0, 0, ex).incomplete);
}

// ---- 2. Callback order ---------------------------------------------------------------------

#[test]
fn callback_order_ngx_done_before_log_then_delete_envoy_log_first() {
    for (profile, expected) in [
        (ngx(), ["done", "log", "delete"]),
        (envoy(), ["log", "done", "delete"]),
    ] {
        let name = profile.name;
        let (mut w, n) = world(profile, json!({}));
        let out = w.http(n, 0, 0, HttpExchange::get("/"));
        let names = out.callback_names(out.context_id);
        let tail: Vec<&str> = names[names.len() - 3..].to_vec();
        let want: Vec<String> = expected.iter().map(|c| format!("on_{c}")).collect();
        assert_eq!(tail, want, "{name}: {names:?}");
        let ctx = out.context_id;
        let guest_order: Vec<String> = lines(&w)
            .into_iter()
            .filter(|l| {
                l.starts_with(&format!("done ctx={ctx}"))
                    || l.starts_with(&format!("log ctx={ctx}"))
                    || l.starts_with(&format!("delete ctx={ctx}"))
            })
            .map(|l| l.split(' ').next().unwrap_or_default().to_string())
            .collect();
        assert_eq!(guest_order, expected, "{name}");
    }
}

// ---- 3. End of stream, header counts, context ids ------------------------------------------

#[test]
fn ngx_eof_semantics_header_counts_and_ids() {
    let (mut w, n) = world(ngx(), json!({}));
    let out = w.http(n, 0, 0, HttpExchange::get("/a").header("x-a", "1"));
    // HTTP contexts count from 1 per worker.
    assert_eq!(out.context_id, 1);
    let l = lines(&w);
    assert!(
        l.contains(&"request_headers ctx=1 n=1 eos=false".to_string()),
        "{l:?}"
    );
    // No request body, no on_request_body; an empty response body still gets one.
    assert!(with(&w, "request_body").is_empty(), "{l:?}");
    assert!(
        l.contains(&"response_headers ctx=1 n=3 eos=false status=200".to_string()),
        "{l:?}"
    );
    assert!(
        l.contains(&"response_body ctx=1 size=0 eos=true body=".to_string()),
        "{l:?}"
    );
    let out = w.http(n, 0, 0, HttpExchange::get("/b"));
    assert_eq!(out.context_id, 2);
}

#[test]
fn envoy_eof_semantics_header_counts_and_ids() {
    let (mut w, n) = world(envoy(), json!({}));
    let out = w.http(n, 0, 0, HttpExchange::get("/a").header("x-a", "1"));
    let ctx = out.context_id;
    assert_eq!(ctx, 2, "Envoy: the root context is 1");
    let l = lines(&w);
    assert!(
        l.contains(&format!("request_headers ctx={ctx} n=5 eos=true")),
        "{l:?}"
    );
    assert!(with(&w, "request_body").is_empty());
    assert!(with(&w, "response_body").is_empty());
}

#[test]
fn ngx_dispatch_tokens_count_from_zero_per_worker() {
    let mut w = World::new(ngx());
    w.route("up:80", echo());
    let n = w
        .add_node(
            NodeSpec::new("n1", &guest())
                .workers(2)
                .filter(json!({"dispatch": true, "upstream": "up:80"}).to_string()),
        )
        .unwrap();
    w.http(n, 0, 0, HttpExchange::get("/"));
    w.http(n, 1, 0, HttpExchange::get("/"));
    w.http(n, 0, 0, HttpExchange::get("/"));
    assert_eq!(
        with(&w, "dispatch ->"),
        [
            "dispatch -> Ok(0)",
            "dispatch -> Ok(0)",
            "dispatch -> Ok(1)"
        ]
    );
    let answered = with(&w, "call_response ctx");
    assert_eq!(answered.len(), 3, "{answered:?}");
    assert!(
        answered[0].contains("status=200 dispatch_status=ok"),
        "{answered:?}"
    );
}

fn echo() -> Arc<dyn host_harness::http::Handler> {
    Arc::new(|req: &HttpRequest, _ctx: &CallContext| Reply::Response {
        response: HttpResponse::new(200)
            .with_header("x-echo", &req.path)
            .with_body("answer"),
        latency: Duration::from_millis(20),
    })
}

// ---- 4. Body buffering, chunks, trailers ---------------------------------------------------

#[test]
fn envoy_body_pause_buffers_and_calls_again_with_each_chunk() {
    let (mut w, n) = world(
        envoy(),
        json!({"buffer": ["request_body", "response_body"]}),
    );
    let ex = HttpExchange::request("POST", "/", Vec::new())
        .request_body_chunks(&[b"ab", b"cd", b"ef"])
        .response_body_chunks(&[b"12", b"34"]);
    let out = w.http(n, 0, 0, ex);
    assert!(!out.stuck && !out.failed, "{out:?}");
    let ctx = out.context_id;
    assert_eq!(
        with(&w, "request_body ctx"),
        [
            format!("request_body ctx={ctx} size=2 eos=false body=ab"),
            format!("request_body ctx={ctx} size=4 eos=false body=abcd"),
            format!("request_body ctx={ctx} size=6 eos=true body=abcdef"),
        ]
    );
    assert_eq!(
        with(&w, "response_body ctx"),
        [
            format!("response_body ctx={ctx} size=2 eos=false body=12"),
            format!("response_body ctx={ctx} size=4 eos=true body=1234"),
        ]
    );
    assert_eq!(out.data.request_body, b"abcdef");
    assert_eq!(out.data.response_body, b"1234");
}

#[test]
fn envoy_unbuffered_chunks_each_get_a_callback_and_pass_on() {
    let (mut w, n) = world(envoy(), json!({}));
    let ex = HttpExchange::request("POST", "/", Vec::new()).request_body_chunks(&[b"a", b"b"]);
    let out = w.http(n, 0, 0, ex);
    let ctx = out.context_id;
    assert_eq!(
        with(&w, "request_body ctx"),
        [
            format!("request_body ctx={ctx} size=1 eos=false body=a"),
            format!("request_body ctx={ctx} size=1 eos=true body=b"),
        ]
    );
    assert_eq!(out.data.request_body, b"ab");
}

#[test]
fn ngx_request_body_comes_whole_and_a_paused_response_body_is_buffered_to_its_end() {
    let (mut w, n) = world(
        ngx(),
        json!({"buffer": ["response_body"], "rewrite_response_body": "new"}),
    );
    let ex = HttpExchange::request("POST", "/", Vec::new())
        .request_body_chunks(&[b"ab", b"cd"])
        .response_body_chunks(&[b"12", b"34", b"56"]);
    let out = w.http(n, 0, 0, ex);
    let ctx = out.context_id;
    assert_eq!(
        with(&w, "request_body ctx"),
        [format!("request_body ctx={ctx} size=4 eos=true body=abcd")]
    );
    assert_eq!(
        with(&w, "response_body ctx"),
        [
            format!("response_body ctx={ctx} size=2 eos=false body=12"),
            format!("response_body ctx={ctx} size=6 eos=true body=123456"),
        ]
    );
    assert_eq!(out.data.response_body, b"new");
}

#[test]
fn trailers_never_leave_an_exchange_stuck() {
    for profile in [envoy(), ngx()] {
        let name = profile.name;
        let (mut w, n) = world(profile, json!({"buffer": ["response_body"]}));
        let mut ex = HttpExchange::get("/").response_body_chunks(&[b"a", b"b"]);
        ex.response_trailers
            .push(("grpc-status".into(), "0".into()));
        let out = w.http(n, 0, 0, ex);
        assert!(!out.stuck, "{name}: {out:?}");
        assert_eq!(out.data.response_body, b"ab", "{name}");
        let trailer_calls = with(&w, "response_trailers ctx").len();
        // ngx_wasm_module has no trailer callbacks.
        assert_eq!(trailer_calls, usize::from(name == "envoy"), "{name}");
    }
}

#[test]
fn a_paused_request_body_waits_for_a_resume_and_times_out_as_stuck() {
    let (mut w, n) = world(envoy(), json!({"pause": ["request_body"]}));
    let mut ex = HttpExchange::request("POST", "/", b"x".to_vec());
    ex.max_pause = Duration::from_secs(2);
    let out = w.http(n, 0, 0, ex);
    assert!(out.stuck);
    assert_eq!(w.elapsed(), Duration::from_secs(2));
    // Closed anyway: on_log, on_done, on_delete ran.
    assert!(out
        .callback_names(out.context_id)
        .ends_with(&["on_log", "on_done", "on_delete"]));
}

// ---- 5. Per-request properties -------------------------------------------------------------

fn props(paths: &[&[&str]]) -> Value {
    json!(paths
        .iter()
        .map(|p| p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .collect::<Vec<_>>())
}

#[test]
fn ngx_properties_come_from_the_request_and_plugin_name_is_everywhere() {
    let config = json!({"tick_ms": 1000, "properties": props(&[
        &["plugin_name"], &["request", "path"], &["request", "query"], &["request", "method"],
        &["request", "headers", "x-a"], &["source", "port"]])});
    let (mut w, n) = world(ngx(), config);
    let ex = HttpExchange::request("POST", "/p?a=1", b"b".to_vec()).header("X-A", "hdr");
    w.http(n, 0, 0, ex);
    let at_headers = with(&w, "property at=request_headers");
    assert_eq!(
        at_headers,
        [
            "property at=request_headers plugin_name=\"h\"",
            "property at=request_headers request/path=\"/p?a=1\"",
            "property at=request_headers request/query=\"a=1\"",
            "property at=request_headers request/method=\"POST\"",
            "property at=request_headers request/headers/x-a=\"hdr\"",
            "property at=request_headers source/port=\"40000\"",
        ]
    );
    for phase in [
        "request_body",
        "response_headers",
        "response_body",
        "log",
        "done",
    ] {
        let line = format!("property at={phase} plugin_name=\"h\"");
        assert_eq!(with(&w, &line).len(), 1, "{phase}");
    }
    w.advance(Duration::from_millis(1000));
    assert_eq!(with(&w, "property at=tick plugin_name=\"h\"").len(), 1);
    // No request in a tick: request properties are not found.
    assert_eq!(with(&w, "property at=tick request/path=none").len(), 1);
}

#[test]
fn property_writes_stay_in_their_request() {
    // ngx_wasm_module sets only host properties (`wasmx.*`) and nginx variables.
    for (profile, path) in [(ngx(), ["wasmx", "k"]), (envoy(), ["my", "k"])] {
        let name = profile.name;
        let config = json!({"set_property": [path, "v"], "properties": [path]});
        let (mut w, n) = world(profile, config);
        w.http(n, 0, 0, HttpExchange::get("/1"));
        let seen = with(&w, "property at=request_headers");
        assert_eq!(
            seen,
            [format!(
                "property at=request_headers {}=none",
                path.join("/")
            )]
        );
        let after = with(&w, "property at=response_headers");
        assert_eq!(
            after,
            [format!(
                "property at=response_headers {}=\"v\"",
                path.join("/")
            )],
            "{name}"
        );
        // A second request on the same worker does not see the first one's write.
        w.http(n, 0, 0, HttpExchange::get("/2"));
        let second = with(&w, "property at=request_headers");
        assert_eq!(
            second.get(1),
            Some(&format!(
                "property at=request_headers {}=none",
                path.join("/")
            )),
            "{name}"
        );
    }
}

#[test]
fn ngx_setting_an_unknown_property_is_not_found() {
    let (mut w, n) = world(ngx(), json!({"set_property": [["my", "k"], "v"]}));
    w.expect_traps();
    let out = w.http(n, 0, 0, HttpExchange::get("/"));
    // The SDK panics on NotFound: the request answers 500.
    assert_eq!(out.status(), 500);
    let trap = &w.traps()[0];
    assert!(
        trap.panic.as_deref().unwrap_or("").contains("panicked at"),
        "{trap:?}"
    );
}

#[test]
fn property_paths_are_nul_separated_segments_that_may_contain_dots() {
    let mut w = World::new(envoy());
    let config = json!({"properties": props(&[&["metadata", "envoy.filters.http.lua", "k"]])});
    let n = w
        .add_node(
            NodeSpec::new("n1", &guest())
                .filter(config.to_string())
                .property_path(&["metadata", "envoy.filters.http.lua", "k"], "lua"),
        )
        .unwrap();
    w.http(n, 0, 0, HttpExchange::get("/"));
    assert_eq!(
        with(&w, "property at=request_headers"),
        ["property at=request_headers metadata/envoy.filters.http.lua/k=\"lua\""]
    );
}

// ---- 6. Several exchanges in flight on one worker -----------------------------------------

#[test]
fn two_requests_paused_together_on_one_worker_each_resume_on_their_own_answer() {
    for profile in [ngx(), envoy()] {
        let name = profile.name;
        let mut w = World::new(profile);
        let up = if name == "envoy" { "up" } else { "up:80" };
        w.route(up, echo());
        let n = w
            .add_node(
                NodeSpec::new("n1", &guest())
                    .filter(json!({"dispatch": true, "upstream": up}).to_string()),
            )
            .unwrap();
        let a = w.start_http(n, 0, 0, HttpExchange::get("/a"));
        let b = w.start_http(n, 0, 0, HttpExchange::get("/b"));
        assert!(!w.http_finished(a) && !w.http_finished(b), "{name}");
        assert!(with(&w, "call_response").is_empty());
        let out_b = w.finish_http(b);
        let out_a = w.http_outcome(a).unwrap();
        assert!(w.http_finished(a), "{name}: answered at the same time");
        assert_ne!(out_a.context_id, out_b.context_id);
        for out in [&out_a, &out_b] {
            assert_eq!(out.status(), 200, "{name}");
            assert!(!out.stuck && !out.failed, "{name}");
        }
        assert_eq!(w.elapsed(), Duration::from_millis(20), "{name}");
        assert_eq!(
            with(&w, "call_response ctx").len(),
            2,
            "{name}: {:?}",
            lines(&w)
        );
    }
}

// ---- 7. ngx_wasm_module's hostcall rules ----------------------------------------------------

/// Runs one request calling `calls` from on_request_headers under ngx; returns the outcome.
fn ngx_calls(calls: &[&str]) -> (World, host_harness::HttpOutcome) {
    let (mut w, n) = world(ngx(), json!({"calls": calls}));
    w.expect_traps();
    let out = w.http(n, 0, 0, HttpExchange::get("/"));
    (w, out)
}

#[test]
fn ngx_a_bad_log_level_fails_the_call_and_the_host_says_so() {
    let (w, out) = ngx_calls(&["log_bad_level"]);
    assert_eq!(
        with(&w, "call log_bad_level"),
        ["call log_bad_level -> BadArgument"]
    );
    assert_eq!(
        w.logs_containing("NYI - proxy_log bad log_level: 42").len(),
        1
    );
    assert_eq!(out.status(), 200);
    let (w, _) = {
        let (mut w, n) = world(envoy(), json!({"calls": ["log_bad_level"]}));
        let out = w.http(n, 0, 0, HttpExchange::get("/"));
        (w, out)
    };
    assert_eq!(with(&w, "call log_bad_level"), ["call log_bad_level -> Ok"]);
}

#[test]
fn ngx_traps_where_the_engine_traps() {
    for (call, kind) in [
        (
            "tick",
            "host trap (bad usage): can only set tick_period in root context",
        ),
        ("dispatch_empty_host", "dispatch failed: no host"),
        (
            "grpc",
            "host trap (function not yet implemented): proxy_grpc_call",
        ),
        (
            "get_status",
            "host trap (function not yet implemented): proxy_get_status",
        ),
        (
            "foreign",
            "host trap (internal error): unknown foreign function \"nope\"",
        ),
    ] {
        let (w, out) = ngx_calls(&[call]);
        let traps = w.traps();
        assert_eq!(traps.len(), 1, "{call}: {traps:?}");
        assert_eq!(traps[0].kind, kind, "{call}");
        assert_eq!(traps[0].callback, "on_request_headers", "{call}");
        assert_eq!(out.status(), 500, "{call}");
        assert!(out.failed);
    }
    // Envoy answers instead of trapping.
    for call in ["tick", "grpc", "get_status", "foreign"] {
        let (mut w, n) = world(envoy(), json!({"calls": [call]}));
        let out = w.http(n, 0, 0, HttpExchange::get("/"));
        assert!(w.traps().is_empty(), "{call}");
        assert_eq!(out.status(), 200);
    }
}

#[test]
fn ngx_local_response_status_range_and_too_late_from_on_log() {
    let (mut w, n) = world(
        ngx(),
        json!({"local_in": "request_headers", "local_status": 1000}),
    );
    let out = w.http(n, 0, 0, HttpExchange::get("/"));
    assert_eq!(
        with(&w, "local_response status"),
        ["local_response status=BadArgument"]
    );
    assert_eq!(out.status(), 200);

    let (mut w, n) = world(ngx(), json!({"local_in": "log", "local_status": 403}));
    w.expect_traps();
    let out = w.http(n, 0, 0, HttpExchange::get("/"));
    assert_eq!(out.status(), 200, "the response was sent already");
    assert_eq!(
        w.traps()[0].kind,
        "host trap (bad usage): response already sent"
    );
    assert_eq!(w.traps()[0].callback, "on_log");
}

#[test]
fn ngx_a_panic_in_an_http_call_response_still_answers_the_request() {
    let mut w = World::new(ngx());
    w.expect_traps();
    w.route("up:80", echo());
    let n = w
        .add_node(NodeSpec::new("n1", &guest()).filter(
            json!({"dispatch": true, "upstream": "up:80", "on_call_response": "panic"}).to_string(),
        ))
        .unwrap();
    let out = w.http(n, 0, 0, HttpExchange::get("/").respond(200, &[], b"up"));
    assert_eq!(out.status(), 200, "{out:?}");
    assert_eq!(out.data.response_body, b"up");
    assert_eq!(
        w.traps().len(),
        1,
        "one trap, no second one on a dead context"
    );
    assert_eq!(w.traps()[0].callback, "on_http_call_response");
    // No callback reached the dead context after the trap.
    let ctx = out.context_id;
    assert!(with(&w, &format!("log ctx={ctx}")).is_empty());
    // The instance is re-created when the next request needs it, and serves it.
    assert_eq!(w.recoveries(), 0);
    let next = w.http(n, 0, 0, HttpExchange::get("/"));
    assert_eq!(next.status(), 200);
    assert_eq!(w.recoveries(), 1);
}

#[test]
fn no_queue_notification_reaches_a_finished_http_context() {
    // The guest's tick resolves the queue, which ngx_wasm_module leaves unimplemented.
    let profile = ngx().implementing("proxy_resolve_shared_queue");
    let (mut w, n) = world(profile, json!({"queue": "q", "tick_ms": 1000}));
    w.http(n, 0, 0, HttpExchange::get("/"));
    assert_eq!(with(&w, "register_queue"), ["register_queue -> Ok(1)"]);
    w.advance(Duration::from_millis(2500));
    assert_eq!(with(&w, "enqueue result=Ok").len(), 2);
    assert!(w.traps().is_empty());
}

#[test]
fn ngx_header_names_keep_their_case_are_escaped_and_maps_are_cut_at_100() {
    let config = json!({"set_response_headers": [["Hello", "World"], ["Escape-Colon:", "x"]],
        "many_headers": 120});
    let (mut w, n) = world(ngx(), config.clone());
    let out = w.http(n, 0, 0, HttpExchange::get("/"));
    let h = &out.data.response_headers;
    assert!(h.contains(&("Hello".into(), "World".into())), "{h:?}");
    assert!(h.contains(&("Escape-Colon%3A".into(), "x".into())), "{h:?}");
    assert_eq!(with(&w, "pairs="), ["pairs=100"]);
    assert_eq!(
        w.logs_containing("marshalled map truncated to 100 elements")
            .len(),
        1
    );

    let (mut w, n) = world(envoy(), config);
    let out = w.http(n, 0, 0, HttpExchange::get("/"));
    assert!(out
        .data
        .response_headers
        .contains(&("hello".into(), "World".into())));
    // Four pseudo-headers and 120 added ones: Envoy does not cut.
    assert_eq!(with(&w, "pairs="), ["pairs=124"]);
}

#[test]
fn ngx_dispatches_keep_header_case_close_the_connection_and_say_ok() {
    let mut w = World::new(ngx());
    w.route("up:80", echo());
    let n = w
        .add_node(
            NodeSpec::new("n1", &guest())
                .filter(json!({"dispatch": true, "upstream": "up:80"}).to_string()),
        )
        .unwrap();
    w.record_callbacks(true);
    let out = w.http(n, 0, 0, HttpExchange::get("/"));
    let req = &w.calls()[0].request;
    // The call response is told the filter's (root context's) id, as ngx_wasm_module does.
    let root = w
        .guest_calls()
        .into_iter()
        .find(|c| c.func == "proxy_on_http_call_response")
        .map(|c| c.args);
    assert_ne!(
        root.as_ref().map(|a| a[0] as u32),
        Some(out.context_id),
        "{root:?}"
    );
    // x-echo and what an HTTP/1.1 server adds: connection, content-length, date.
    assert!(root.is_some_and(|a| a[0] as u32 >= 0x1000_0000 && a[1] == 0 && a[2] == 4));
    assert!(
        req.headers.contains(&("X-Mixed-Case".into(), "1".into())),
        "{req:?}"
    );
    assert!(
        req.headers.contains(&("Connection".into(), "close".into())),
        "{req:?}"
    );
    let answer = &with(&w, "call_response ctx")[0];
    assert!(
        answer.contains("headers=4 body=6 status=200 dispatch_status=ok"),
        "{answer}"
    );
}

#[test]
fn ngx_a_local_response_from_a_call_response_keeps_headers_added_before() {
    let mut w = World::new(ngx());
    w.route("up:80", echo());
    let config = json!({"dispatch": true, "upstream": "up:80", "on_call_response": "local",
        "early_response_header": true, "local_status": 401, "local_body": "no"});
    let n = w
        .add_node(NodeSpec::new("n1", &guest()).filter(config.to_string()))
        .unwrap();
    let out = w.http(n, 0, 0, HttpExchange::get("/"));
    assert_eq!(out.status(), 401);
    assert_eq!(header(&out.data.response_headers, "x-early"), Some("1"));
    assert_eq!(out.data.response_body, b"no\n");
}

// ---- 8. Trap reports -----------------------------------------------------------------------

#[test]
fn a_trap_report_names_the_callback_the_kind_the_panic_and_the_frames() {
    let (mut w, n) = world(ngx(), json!({"panic_in": "request_headers"}));
    w.expect_traps();
    let out = w.http(n, 0, 0, HttpExchange::get("/"));
    assert_eq!(out.status(), 500);
    // nginx's own 500 page.
    assert_eq!(
        header(&out.data.response_headers, "Content-Type"),
        Some("text/html")
    );
    assert_eq!(out.data.response_body.len(), 177);
    assert_eq!(
        header(&out.data.response_headers, "Connection"),
        Some("close")
    );
    let t = &w.traps()[0];
    assert_eq!(t.callback, "on_request_headers");
    assert_eq!(t.kind, "unreachable");
    assert!(
        t.panic
            .as_deref()
            .unwrap_or("")
            .contains("h panic in request_headers"),
        "{t:?}"
    );
    assert!(!t.frames.is_empty());
    assert!(
        t.frames
            .iter()
            .any(|f| f.contains("on_http_request_headers")),
        "{:?}",
        t.frames
    );
    let summary = t.summary();
    assert!(
        summary.starts_with("on_request_headers: unreachable -- "),
        "{summary}"
    );
    assert!(summary.contains("h panic in request_headers"), "{summary}");
}

// ---- 9. gRPC unary calls (Envoy) ----------------------------------------------------------

#[test]
fn envoy_answers_grpc_unary_calls_from_a_handler_ngx_traps() {
    use host_harness::grpc::{GrpcReply, GrpcRequest};
    for (reply, expected) in [
        (
            GrpcReply::Message {
                message: b"pong".to_vec(),
                latency: Duration::from_millis(5),
            },
            "status=0 message=pong ",
        ),
        (
            GrpcReply::Status {
                code: 14,
                message: "unavailable".into(),
                after: Duration::from_millis(5),
            },
            "status=14 message= Ok((14, Some(\"unavailable\")))",
        ),
    ] {
        let (mut w, n) = world(envoy(), json!({"grpc_call": true}));
        let seen = Arc::new(std::sync::Mutex::new(None));
        let keep = seen.clone();
        w.route_grpc(
            "grpc-up",
            Arc::new(move |req: &GrpcRequest| {
                *keep.lock().unwrap() = Some(req.clone());
                reply.clone()
            }),
        );
        let out = w.http(n, 0, 0, HttpExchange::get("/"));
        assert_eq!(out.status(), 200);
        let req = seen.lock().unwrap().clone().unwrap();
        assert_eq!((req.service.as_str(), req.method.as_str()), ("svc.S", "M"));
        assert_eq!(req.message, b"req");
        let got = with(&w, "grpc_response ctx");
        assert_eq!(got.len(), 1, "{:?}", lines(&w));
        assert!(got[0].ends_with(expected), "{got:?}");
    }
    let (mut w, n) = world(ngx(), json!({"grpc_call": true}));
    w.expect_traps();
    let out = w.http(n, 0, 0, HttpExchange::get("/"));
    assert_eq!(out.status(), 500);
}

// ---- 9. Filter chains, nodes without a filter ----------------------------------------------

fn chain(profile: HostProfile, first: Value, second: Value) -> (World, NodeId) {
    let mut w = World::new(profile);
    let n = w
        .add_node(
            NodeSpec::new("n1", &guest())
                .named_filter("a", first.to_string())
                .named_filter("b", second.to_string()),
        )
        .unwrap();
    (w, n)
}

#[test]
fn ngx_a_local_response_from_the_first_filter_passes_through_the_others() {
    let first = json!({"local_in": "request_headers", "local_status": 403, "local_body": "x",
        "pause": ["request_headers"]});
    let (mut w, n) = chain(ngx(), first, json!({}));
    let out = w.http_chain(n, 0, &[0, 1], HttpExchange::get("/"));
    let [a, b] = [out.context_ids[0], out.context_ids[1]];
    assert_eq!(out.status(), 403);
    // Filter b never sees the request, but sees the local response, after filter a.
    assert!(with(&w, &format!("request_headers ctx={b}")).is_empty());
    let order: Vec<String> = with(&w, "response_headers ctx")
        .into_iter()
        .map(|l| l.split(' ').nth(1).unwrap_or_default().to_string())
        .collect();
    assert_eq!(order, [format!("ctx={a}"), format!("ctx={b}")]);
    assert_eq!(out.callback_names(b).last(), Some(&"on_delete"));
}

#[test]
fn envoy_runs_response_phases_in_reverse_chain_order() {
    let (mut w, n) = chain(envoy(), json!({}), json!({}));
    let out = w.http_chain(n, 0, &[0, 1], HttpExchange::get("/"));
    let [a, b] = [out.context_ids[0], out.context_ids[1]];
    let ctx_of = |needle: &str| -> Vec<String> {
        with(&w, needle)
            .into_iter()
            .map(|l| l.split(' ').nth(1).unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(
        ctx_of("request_headers ctx"),
        [format!("ctx={a}"), format!("ctx={b}")]
    );
    assert_eq!(
        ctx_of("response_headers ctx"),
        [format!("ctx={b}"), format!("ctx={a}")]
    );
}

#[test]
fn a_node_without_a_filter_is_refused_with_a_reason() {
    let mut w = World::new(ngx());
    let err = w.add_node(NodeSpec::new("empty", &guest())).unwrap_err();
    assert!(err.to_string().contains("no filter"), "{err}");
}

// ---- L4 stream contexts (Envoy) ------------------------------------------------------------

#[test]
fn envoy_runs_a_tcp_connection_through_a_stream_context_ngx_refuses() {
    let config =
        json!({"stream": true, "buffer": ["downstream_data"], "rewrite_downstream": "HELLO"});
    let (mut w, n) = world(envoy(), config.clone());
    let ex = host_harness::TcpExchange {
        downstream: vec![b"he".to_vec(), b"llo".to_vec()],
        upstream: vec![b"world".to_vec()],
    };
    let out = w.tcp(n, 0, 0, ex.clone()).unwrap();
    let ctx = out.context_id;
    assert!(!out.failed);
    assert_eq!(out.to_upstream, b"HELLO");
    assert_eq!(out.to_downstream, b"world");
    assert_eq!(
        lines(&w)[1..],
        [
            format!("create_stream ctx={ctx} root=1"),
            format!("new_connection ctx={ctx}"),
            format!("downstream_data ctx={ctx} size=2 eos=false data=he"),
            format!("downstream_data ctx={ctx} size=5 eos=true data=hello"),
            format!("upstream_data ctx={ctx} size=5 eos=true data=world"),
            format!("downstream_close ctx={ctx} peer=Remote"),
            format!("upstream_close ctx={ctx} peer=Local"),
            format!("stream_log ctx={ctx}"),
        ]
    );
    let (mut w, n) = world(ngx(), config);
    let err = w.tcp(n, 0, 0, ex).unwrap_err();
    assert!(err.to_string().contains("HTTP only"), "{err}");
}

// ---- Differences the differential runner found (/work/team/diff-findings.md) ---------------

#[test]
fn ngx_orders_response_headers_as_nginx_does() {
    let (mut w, n) = world(ngx(), json!({}));
    let ex = HttpExchange::get("/").respond(
        200,
        &[
            ("Content-Type", "text/plain"),
            ("X-Up", "1"),
            ("Content-Length", "2"),
        ],
        b"ok",
    );
    let out = w.http(n, 0, 0, ex);
    let names: Vec<&str> = out
        .data
        .response_headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        names,
        [
            ":status",
            "Content-Type",
            "Content-Length",
            "Connection",
            "X-Up",
            "Server",
            "Date"
        ]
    );
}

#[test]
fn ngx_reads_a_body_from_its_start_whatever_start_says() {
    let config = json!({"partial_read": [2, 3]});
    for (profile, expected) in [(ngx(), "partial=ups"), (envoy(), "partial=str")] {
        let (mut w, n) = world(profile, config.clone());
        w.http(
            n,
            0,
            0,
            HttpExchange::get("/").respond(200, &[], b"upstream body"),
        );
        assert_eq!(with(&w, "partial="), [expected]);
    }
}

#[test]
fn ngx_a_204_local_response_has_no_body_callback() {
    let config =
        json!({"local_in": "request_headers", "local_status": 204, "pause": ["request_headers"]});
    let (mut w, n) = world(ngx(), config);
    let out = w.http(n, 0, 0, HttpExchange::get("/"));
    assert_eq!(out.status(), 204);
    let names = out.callback_names(out.context_id);
    assert!(!names.contains(&"on_response_body"), "{names:?}");
    assert!(names.contains(&"on_response_headers"), "{names:?}");
}

#[test]
fn ngx_a_second_local_response_traps_but_the_first_is_sent() {
    let config = json!({"local_in": "request_headers", "local_status": 401, "local_body": "one",
        "local_twice": true, "pause": ["request_headers"]});
    let (mut w, n) = world(ngx(), config);
    w.expect_traps();
    let out = w.http(n, 0, 0, HttpExchange::get("/"));
    assert_eq!(
        w.traps()[0].kind,
        "host trap (bad usage): local response already stashed"
    );
    assert_eq!(out.status(), 401);
    assert_eq!(out.data.response_body, b"one\n");
    // It goes through the response phases on a new instance (the root context configured
    // again, the HTTP context created again under its id), then the context ends as usual.
    assert_eq!(w.recoveries(), 1);
    assert_eq!(with(&w, "configure").len(), 2);
    let names = out.callback_names(out.context_id);
    let after_trap: Vec<&str> = names
        .iter()
        .skip_while(|n| **n != "on_request_headers")
        .skip(1)
        .copied()
        .collect();
    assert_eq!(
        after_trap,
        [
            "on_context_create",
            "on_response_headers",
            "on_response_body",
            "on_done",
            "on_log",
            "on_delete"
        ],
        "{names:?}"
    );
    assert_eq!(w.traps().len(), 1);
}

#[test]
fn ngx_a_refused_address_is_a_broken_connection_an_unknown_name_a_resolver_failure() {
    for (upstream, status) in [
        ("127.0.0.1:1", "broken connection"),
        ("nowhere:80", "resolver failure"),
    ] {
        let (mut w, n) = world(ngx(), json!({"dispatch": true, "upstream": upstream}));
        let out = w.http(n, 0, 0, HttpExchange::get("/"));
        assert_eq!(out.status(), 200);
        let answer = with(&w, "call_response ctx");
        assert!(
            answer[0].ends_with(&format!("dispatch_status={status}")),
            "{answer:?}"
        );
    }
}

#[test]
fn ngx_frames_a_response_without_a_length_as_chunked() {
    let (mut w, n) = world(ngx(), json!({}));
    let out = w.http(n, 0, 0, HttpExchange::get("/").respond(200, &[], b"x"));
    assert_eq!(
        header(&out.data.response_headers, "Transfer-Encoding"),
        Some("chunked")
    );
    let ex = HttpExchange::get("/").respond(200, &[("Content-Length", "1")], b"x");
    let out = w.http(n, 0, 0, ex);
    assert_eq!(
        header(&out.data.response_headers, "Transfer-Encoding"),
        None
    );
}

#[test]
fn ngx_strict_imports_refuse_a_module_importing_the_sdks_get_log_level() {
    // The probe guest imports proxy_get_log_level; h-http does not.
    let probe = common::probe();
    let mut w = World::new(ngx().strict_imports());
    let err = w
        .add_node(NodeSpec::new("p", &probe).filter("{}"))
        .unwrap_err();
    assert!(
        err.to_string().contains("env::proxy_get_log_level"),
        "{err}"
    );
    let n = w.add_node(NodeSpec::new("h", &guest()).filter("{}"));
    assert!(n.is_ok());
}

#[test]
fn ngx_recreates_a_trapped_instance_only_when_the_next_request_needs_it() {
    let (mut w, n) = world(ngx(), json!({"panic_in": "request_headers"}));
    w.expect_traps();
    assert_eq!(w.http(n, 0, 0, HttpExchange::get("/")).status(), 500);
    // Nothing re-creates the instance while no request (or tick) needs it.
    w.advance(Duration::from_secs(10));
    assert_eq!(w.recoveries(), 0);
    assert_eq!(with(&w, "configure").len(), 1);
    assert!(w.worker_alive(n, 0));
    assert_eq!(w.worker_death(n, 0), None);
    // The next request: a new instance, its root context configured again (no on_vm_start),
    // then the request's own context.
    assert_eq!(w.http(n, 0, 0, HttpExchange::get("/")).status(), 500);
    assert_eq!(w.recoveries(), 1);
    let order: Vec<String> = lines(&w)
        .into_iter()
        .filter(|l| l.starts_with("configure") || l.starts_with("create ctx"))
        .collect();
    assert_eq!(order.len(), 4, "{order:?}");
    assert!(order[0].starts_with("configure"), "{order:?}");
    assert!(order[1].starts_with("create ctx=1"), "{order:?}");
    assert!(order[2].starts_with("configure"), "{order:?}");
    assert!(order[3].starts_with("create ctx=2"), "{order:?}");
}

#[test]
fn ngx_queues_need_an_shm_queue_zone_and_resolving_one_traps() {
    let config = json!({"queue": "q", "tick_ms": 1000});
    // A declared `shm_queue q` zone: registering works, resolving is not implemented.
    let (mut w, n) = world(ngx().with_shm_queues(&["q"]), config.clone());
    w.expect_traps();
    assert_eq!(w.http(n, 0, 0, HttpExchange::get("/")).status(), 200);
    assert_eq!(with(&w, "register_queue"), ["register_queue -> Ok(1)"]);
    w.advance(Duration::from_millis(1000));
    assert_eq!(w.traps().len(), 1);
    assert_eq!(w.traps()[0].callback, "on_tick");
    assert_eq!(
        w.traps()[0].kind,
        "host trap (function not yet implemented): proxy_resolve_shared_queue"
    );

    // No zone of that name: the request's registration traps (500).
    let (mut w, n) = world(ngx().with_shm_queues(&["other"]), config.clone());
    w.expect_traps();
    assert_eq!(w.http(n, 0, 0, HttpExchange::get("/")).status(), 500);
    assert_eq!(
        w.traps()[0].kind,
        "host trap (bad usage): could not find queue"
    );
    assert!(with(&w, "register_queue").is_empty());

    // An shm_kv zone's name is not a queue.
    let profile = ngx().with_shm_zones(&["*", "q"]).with_shm_queues(&[]);
    let (mut w, n) = world(profile, config.clone());
    w.expect_traps();
    assert_eq!(w.http(n, 0, 0, HttpExchange::get("/")).status(), 500);
    assert_eq!(
        w.traps()[0].kind,
        "host trap (bad usage): attempt to use a key/value shm store as a queue"
    );

    // Envoy: any name registers, resolving finds it.
    let (mut w, n) = world(envoy(), config);
    w.http(n, 0, 0, HttpExchange::get("/"));
    w.advance(Duration::from_millis(1000));
    assert_eq!(with(&w, "enqueue result=Ok").len(), 1);
    assert!(w.traps().is_empty());
}

/// The proxy-wasm Rust SDK's `http_headers` example as its README shows it in Envoy: the local
/// response's `Hello`/`Powered-By` reach `on_response_headers` as `hello`/`powered-by`, after
/// Envoy's own `content-length`/`content-type`; the request's names are lower-case too. The
/// ngx_wasm_module profile keeps the case (checked against the engine by the differential suite).
#[test]
fn envoy_presents_header_names_lower_case_as_in_the_sdks_http_headers_readme() {
    let script = json!({"case": "hh", "ret": {"request_headers": "pause"}, "do": {
        "request_headers": [["headers", "request"],
            ["local", "200", "Hello, World!\n", "Hello:World", "Powered-By:proxy-wasm"]],
        "response_headers": [["headers", "response"]]}});
    let dumps = |profile: HostProfile| {
        let mut w = World::new(profile);
        let spec =
            NodeSpec::new("n1", &common::script()).named_filter("http_headers", script.to_string());
        let n = w.add_node(spec).expect("add node");
        let ex = HttpExchange::get("/hello")
            .header("User-Agent", "curl/7.81.0")
            .header("Accept", "*/*");
        let out = w.http(n, 0, 0, ex);
        // Envoy sends the body as given; ngx_wasm_module adds its LF.
        let lf = if w.profile().name == "envoy" {
            ""
        } else {
            "\n"
        };
        assert_eq!(
            out.data.response_body,
            format!("Hello, World!\n{lf}").into_bytes()
        );
        let lines: Vec<String> = w
            .logs()
            .into_iter()
            .filter(|l| l.message.contains("-> n="))
            .map(|l| l.message)
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        lines
    };
    let envoy_lines = dumps(envoy());
    assert!(
        envoy_lines[0].contains(":path: /hello, :authority: example.test, :scheme: http, user-agent: curl/7.81.0, accept: */*"),
        "{}",
        envoy_lines[0]
    );
    assert!(
        envoy_lines[1].contains("[:status: 200, hello: World, powered-by: proxy-wasm, content-length: 14, content-type: text/plain]"),
        "{}",
        envoy_lines[1]
    );
    let ngx_lines = dumps(ngx());
    assert!(
        ngx_lines[0].contains("User-Agent: curl/7.81.0, Accept: */*"),
        "{}",
        ngx_lines[0]
    );
    assert!(
        ngx_lines[1].contains("Hello: World, Powered-By: proxy-wasm"),
        "{}",
        ngx_lines[1]
    );
}
