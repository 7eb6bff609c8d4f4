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
    let out = w.http(
        n,
        0,
        0,
        HttpExchange::get("/").respond(200, &[], b"upstream"),
    );
    assert_eq!(out.status(), 502);
    assert_eq!(out.data.response_body, b"bad\n");
    assert_eq!(header(&out.data.response_headers, "x-ignored"), None);
    assert_eq!(
        with(&w, "local_response status"),
        ["local_response status=Ok"]
    );
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
