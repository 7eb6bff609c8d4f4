//! The differential suite (issue 17): each case runs the script guest (`tests/guests/script`) in
//! the real engine (nginx + ngx_wasm_module) and in the harness's `ngx_wasm_module` profile, and
//! compares response, trace (callbacks with arguments, hostcall results, log lines) and traps.
//! Deliberate differences and normalisations: `docs/differential.md`. Cases marked `known(..)`
//! still differ until the harness is fixed; the suite fails when one of them starts to agree (so
//! the list stays true) or when any other case differs.

use std::time::Instant;

use config_bridge_tests::differential::{run_cases, Case, Request, CALL, UPSTREAM};
use serde_json::{json, Value};

fn on(callback: &str, actions: Value) -> Value {
    json!({ "do": { callback: actions } })
}

/// Actions in several callbacks: `[("request_headers", [...]), ...]`.
fn script(parts: &[(&str, Value)]) -> Value {
    let mut s = json!({"do": {}});
    for (cb, a) in parts {
        s["do"][*cb] = a.clone();
    }
    s
}

fn get(path: &str) -> Request {
    Request::get(path)
}

fn cases() -> Vec<Case> {
    let call = CALL;
    let mut many = get("/many");
    for i in 0..110 {
        many = many.header(&format!("X-H{i}"), "v");
    }
    vec![
        // ---- phases ----
        Case::new("phases_get", json!({})).request(get("/x")),
        Case::new("phases_post", json!({})).request(Request::post("/x", "hello body")),
        Case::new("phases_post_empty", json!({}))
            .request(Request::post("/x", "").header("Content-Length", "0")),
        Case::new("phases_query", on("request_headers", json!([["header", "request", ":path"]])))
            .request(get("/x?a=1&b=%20")),
        // ---- logging ----
        Case::new(
            "log_levels",
            on("request_headers", json!([["log", "2", "m2"], ["log", "3", "m3"], ["log", "4", "m4"], ["log", "5", "m5"]])),
        )
        .request(get("/")),
        Case::new("log_below_info", on("request_headers", json!([["log", "0", "m0"], ["log", "1", "m1"]])))
            .request(get("/")),
        Case::new("log_bad_level", on("request_headers", json!([["log", "9", "bad"]]))).request(get("/")),
        Case::new(
            "log_every_phase",
            script(&[
                ("request_headers", json!([["log", "2", "rq"]])),
                ("response_headers", json!([["log", "2", "rs"]])),
                ("response_body", json!([["log", "2", "rb"]])),
                ("log", json!([["log", "2", "lg"]])),
                ("done", json!([["log", "2", "dn"]])),
            ]),
        )
        .request(get("/")),
        Case::new("log_configure", on("configure", json!([["log", "2", "configured"]]))),
        Case::new("log_multiline", on("request_headers", json!([["log", "2", "a\nb"]]))).request(get("/")),
        // ---- request headers ----
        Case::new("req_headers_dump", on("request_headers", json!([["headers", "request"]])))
            .request(get("/x").header("Hello", "World").header("X-Multi", "1").header("X-Multi", "2")),
        Case::new(
            "req_header_get",
            on("request_headers", json!([["header", "request", "hello"], ["header", "request", ":method"], ["header", "request", ":authority"], ["header", "request", "missing"]])),
        )
        .request(get("/x").header("Hello", "World")),
        Case::new(
            "req_header_set",
            on("request_headers", json!([["set_header", "request", "X-New", "1"], ["set_header", "request", "Hello", "again"], ["headers", "request"]])),
        )
        .request(get("/x").header("Hello", "World")),
        Case::new(
            "req_header_add",
            on("request_headers", json!([["add_header", "request", "Hello", "second"], ["headers", "request"]])),
        )
        .request(get("/x").header("Hello", "World")),
        Case::new(
            "req_header_remove",
            on("request_headers", json!([["remove_header", "request", "hello"], ["headers", "request"]])),
        )
        .request(get("/x").header("Hello", "World")),
        Case::new(
            "req_set_headers",
            on("request_headers", json!([["set_headers", "request", ":path:/replaced", ":method:GET", "A:1"], ["headers", "request"]])),
        )
        .request(get("/x")),
        Case::new("req_headers_many", on("request_headers", json!([["header", "request", "X-H105"]]))).request(many),
        // ---- response headers ----
        Case::new("resp_headers_dump", on("response_headers", json!([["headers", "response"]]))).request(get("/")),
        Case::new(
            "resp_header_set",
            on("response_headers", json!([["set_header", "response", "X-Resp", "yes"], ["header", "response", "x-resp"]])),
        )
        .request(get("/")),
        Case::new("resp_header_remove", on("response_headers", json!([["remove_header", "response", "X-Up"]]))).request(get("/")),
        Case::new("resp_header_status", on("response_headers", json!([["header", "response", ":status"]]))).request(get("/")),
        Case::new(
            "resp_header_bad_name",
            on("response_headers", json!([["set_header", "response", "Escape-Colon:", "v"]])),
        )
        .request(get("/")),
        // ---- bodies ----
        Case::new("req_body_read", on("request_body", json!([["body", "request", "0", "100"]])))
            .request(Request::post("/x", "hello body")),
        Case::new(
            "req_body_replace",
            on("request_body", json!([["set_body", "request", "0", "100", "new"], ["body", "request", "0", "100"]])),
        )
        .request(Request::post("/x", "hello body")),
        Case::new("resp_body_read", on("response_body", json!([["body", "response", "0", "100"]]))).request(get("/")),
        Case::new("resp_body_partial", on("response_body", json!([["body", "response", "2", "3"]]))).request(get("/")),
        Case::new(
            "resp_body_replace",
            script(&[
                // The upstream's Content-Length no longer holds for the new body.
                ("response_headers", json!([["remove_header", "response", "Content-Length"]])),
                ("response_body", json!([["set_body", "response", "0", "100", "replaced\n"]])),
            ]),
        )
        .request(get("/")),
        // ---- local responses ----
        Case::new("local_403", on("request_headers", json!([["local", "403", "denied", "X-Hello:1"]]))).request(get("/")),
        // The SDK's http_auth_random example answers "Access forbidden.\n": a body already ending in LF.
        Case::new("local_body_ending_in_lf", on("request_headers", json!([["local", "403", "Access forbidden.\n"]])))
            .request(get("/")),
        Case::new("local_204_empty", on("request_headers", json!([["local", "204", ""]]))).request(get("/")),
        Case::new("local_status_1000", on("request_headers", json!([["local", "1000", "x"]]))).request(get("/")).alone(),
        Case::new("local_from_response_headers", on("response_headers", json!([["local", "500", "late"]])))
            .request(get("/")),
        Case::new("local_twice", on("request_headers", json!([["local", "401", "one"], ["local", "402", "two"]])))
            .request(get("/"))
            .alone(),
        Case::new("local_from_log", on("log", json!([["local", "403", "too late"]]))).request(get("/")).alone(),
        // ---- properties ----
        Case::new(
            "props_request",
            on("request_headers", json!([["prop", "request.path"], ["prop", "request.method"], ["prop", "request.query"], ["prop", "request.scheme"]])),
        )
        .request(get("/p?q=1")),
        Case::new(
            "props_plugin",
            script(&[
                ("request_headers", json!([["prop", "plugin_name"]])),
                ("log", json!([["prop", "plugin_name"]])),
            ]),
        )
        .request(get("/")),
        // The engine crashes (SIGSEGV) on this: alone, it shows as no response and no trace.
        Case::new("prop_plugin_name_configure", on("configure", json!([["prop", "plugin_name"]]))).alone(),
        Case::new(
            "prop_plugin_root_id",
            script(&[
                ("configure", json!([["prop", "plugin_root_id"]])),
                ("request_headers", json!([["prop", "plugin_root_id"]])),
            ]),
        )
        .request(get("/")),
        Case::new("prop_unknown", on("request_headers", json!([["prop", "no.such.prop"]]))).request(get("/")),
        Case::new(
            "prop_set_unknown",
            on("request_headers", json!([["set_prop", "my_prop", "v"], ["prop", "my_prop"]])),
        )
        .request(get("/")).alone(),
        // ---- dispatch ----
        Case::new(
            "dispatch_ok",
            json!({"do": {
                "request_headers": [["dispatch", call, "/hello", "1000"]],
                "http_call_response": [["headers", "call"], ["body", "call", "0", "100"], ["resume_request"]],
            }, "ret": {"request_headers": "pause"}}),
        )
        .request(get("/")),
        Case::new(
            "dispatch_500",
            json!({"do": {
                "request_headers": [["dispatch", call, "/status/500", "1000"]],
                "http_call_response": [["header", "call", ":status"], ["resume_request"]],
            }, "ret": {"request_headers": "pause"}}),
        )
        .request(get("/")),
        Case::new(
            "dispatch_timeout",
            json!({"do": {
                "request_headers": [["dispatch", call, "/slow", "300"]],
                "http_call_response": [["headers", "call"], ["resume_request"]],
            }, "ret": {"request_headers": "pause"}}),
        )
        .request(get("/")),
        Case::new(
            "dispatch_refused",
            json!({"do": {
                "request_headers": [["dispatch", "127.0.0.1:1", "/x", "1000"]],
                "http_call_response": [["headers", "call"], ["resume_request"]],
            }, "ret": {"request_headers": "pause"}}),
        )
        .request(get("/")),
        Case::new(
            "dispatch_then_local",
            json!({"do": {
                "request_headers": [["add_header", "response", "X-Early", "1"], ["dispatch", call, "/hello", "1000"]],
                "http_call_response": [["local", "401", "from call"]],
            }, "ret": {"request_headers": "pause"}}),
        )
        .request(get("/")),
        Case::new(
            "dispatch_from_tick",
            json!({"tick_ms": 100, "max_ticks": 2, "do": {
                "tick1": [["dispatch", call, "/tick", "1000"]],
                "call_response": [["body", "call", "0", "100"]],
            }}),
        )
        .ticks(2),
        Case::new("dispatch_empty_host", on("request_headers", json!([["dispatch", "", "/x", "1000"]])))
            .request(get("/"))
            .alone(),
        // ---- shared data ----
        Case::new(
            "shared_set_get",
            on("request_headers", json!([["shared_get", "sg_k"], ["shared_set", "sg_k", "v1", "none"], ["shared_get", "sg_k"], ["shared_set", "sg_k", "v2", "read"], ["shared_get", "sg_k"]])),
        )
        .request(get("/")),
        Case::new(
            "shared_cas_mismatch",
            on("configure", json!([["shared_set", "cm_k", "v1", "none"], ["shared_set", "cm_k", "v2", "12345"], ["shared_get", "cm_k"]])),
        ),
        Case::new(
            "shared_namespace",
            on("request_headers", json!([["shared_set", "ns/k", "in zone ns", "none"], ["shared_get", "ns/k"], ["shared_get", "k"]])),
        )
        .request(get("/")),
        Case::new("shared_unknown_namespace", on("request_headers", json!([["shared_get", "nozone/k"]])))
            .request(get("/"))
            .alone(),
        // ---- queues ----
        Case::new(
            "queue_roundtrip",
            json!({"do": {
                "request_headers": [["queue_register", "q_rt"], ["queue_enqueue", "q_rt", "item"]],
                "queue_ready": [["queue_dequeue", "q_rt"], ["queue_dequeue", "q_rt"]],
            }}),
        )
        .request(get("/")),
        Case::new(
            "queue_unknown",
            on("request_headers", json!([["queue_dequeue", "nope"], ["queue_enqueue", "nope", "x"]])),
        )
        .request(get("/"))
            .alone(),
        Case::new("queue_no_zone", on("request_headers", json!([["queue_register", "q_nozone"]])))
            .request(get("/"))
            .alone(),
        Case::new("queue_resolve", on("request_headers", json!([["queue_resolve", "main", "no_such_queue"]])))
            .request(get("/"))
            .alone(),
        // ---- ticks ----
        Case::new("tick_basic", json!({"tick_ms": 100, "max_ticks": 3})).ticks(3),
        Case::new("tick_set_twice", json!({"tick_ms": 100, "max_ticks": 2, "do": {"configure": [["tick_period", "200"]]}}))
            .ticks(2)
            .alone(),
        Case::new("tick_from_http", on("request_headers", json!([["tick_period", "100"]]))).request(get("/")).alone(),
        // ---- context rules and traps ----
        Case::new("trap_request_headers", on("request_headers", json!([["panic", "boom in request headers"]])))
            .request(get("/"))
            .alone(),
        Case::new("trap_response_body", on("response_body", json!([["panic", "boom in response body"]])))
            .request(get("/"))
            .alone(),
        Case::new("current_time", script(&[("configure", json!([["time"]])), ("request_headers", json!([["time"]]))]))
            .request(get("/")),
        Case::new(
            "metrics",
            on("configure", json!([["metric_define", "counter", "c1"], ["metric_inc", "c1", "3"], ["metric_get", "c1"], ["metric_define", "gauge", "g1"], ["metric_record", "g1", "7"], ["metric_get", "g1"]])),
        ),
        Case::new("foreign_unknown", on("request_headers", json!([["foreign", "no_such_function", "x"]]))).request(get("/")).alone(),
        Case::new(
            "chain_two",
            on("request_headers", json!([["add_header", "request", "X-F1", "1"]])),
        )
        .then(on("request_headers", json!([["header", "request", "X-F1"]])))
        .request(get("/")),
        Case::new("chain_local", on("request_headers", json!([["local", "403", "from one"]])))
            .then(on("response_headers", json!([["header", "response", ":status"]])))
            .request(get("/")),
        // ---- issue 24: the last engine differences ----
        Case::new(
            "local_bad_header_names",
            on("request_headers", json!([["local", "403", "denied", "Sp ace:v", "Semi;colon:v", "Ok-Name:v", "Br(ack)et\u{7f}:v"]])),
        )
        .then(on("response_headers", json!([["headers", "response"]])))
        .request(get("/")),
        Case::new(
            "resp_body_set_range",
            script(&[
                ("response_headers", json!([["remove_header", "response", "Content-Length"]])),
                ("response_body", json!([["set_body", "response", "2", "3", "XY"], ["body", "response", "0", "100"]])),
            ]),
        )
        .request(get("/")),
        Case::new(
            "resp_body_set_append",
            script(&[
                ("response_headers", json!([["remove_header", "response", "Content-Length"]])),
                ("response_body", json!([["set_body", "response", "100", "0", "tail"], ["body", "response", "0", "100"]])),
            ]),
        )
        .request(get("/")),
        Case::new(
            "req_body_set_range",
            on("request_body", json!([["set_body", "request", "1", "2", "XY"], ["body", "request", "0", "100"]])),
        )
        .request(Request::post("/x", "hello body")),
        Case::new(
            "props_request_more",
            script(&[
                ("request_headers", json!([["prop", "request.host"], ["prop", "request.protocol"], ["prop", "request.size"], ["prop", "request.total_size"], ["prop", "request.is_subrequest"], ["prop", "request.url_path"]])),
                ("log", json!([["prop", "request.total_size"]])),
            ]),
        )
        .request(Request::post("/p?q=1", "12345")),
        Case::new(
            "props_request_time",
            script(&[
                ("request_headers", json!([["prop_shape", "request.time"], ["prop_shape", "request.duration"]])),
                ("log", json!([["prop_shape", "request.duration"], ["prop", "request.size"], ["prop", "request.total_size"], ["prop", "response.code"]])),
            ]),
        )
        .request(get("/t")),
        Case::new(
            "dispatch_header_case",
            json!({"do": {
                "request_headers": [["dispatch", UPSTREAM, "/hello", "1000"]],
                "http_call_response": [["headers", "call"], ["resume_request"]],
            }, "ret": {"request_headers": "pause"}}),
        )
        .request(get("/")),
        Case::new(
            "trap_after_added_header",
            on("request_headers", json!([["add_header", "response", "X-Early", "1"], ["set_header", "response", "X-Set", "2"], ["panic", "boom after headers"]])),
        )
        .request(get("/"))
        .alone(),
        Case::new(
            "trap_in_call_after_added_header",
            json!({"do": {
                "request_headers": [["add_header", "response", "X-Early", "1"], ["dispatch", call, "/hello", "1000"]],
                "http_call_response": [["panic", "boom in call response"]],
            }, "ret": {"request_headers": "pause"}}),
        )
        .request(get("/"))
        .alone(),
    ]
}

/// Cases that still differ, with the reason (the harness fix pending, see
/// /work/team/diff-findings.md). Filled from the measured state; the suite fails when one agrees.
fn known(name: &str) -> Option<&'static str> {
    KNOWN.iter().find(|(n, _)| *n == name).map(|(_, why)| *why)
}

const KNOWN: &[(&str, &str)] = &[(
    "prop_plugin_name_configure",
    "plugin_name in on_configure: the engine's worker crashes (SIGSEGV loop); harness: a trap (deliberate, docs/differential.md)",
)];

#[test]
fn differential_suite() {
    let started = Instant::now();
    // DIFF_ONLY=a,b runs only those cases (while working on them).
    let only = std::env::var("DIFF_ONLY").ok();
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|n| n == c.name))
        })
        .map(|c| match known(&c.name) {
            Some(why) => c.known(why),
            None => c,
        })
        .collect();
    assert!(
        only.is_some() || cases.len() >= 40,
        "issue 17 asks for at least 40 cases"
    );
    let Some(verdicts) = run_cases("differential", &cases) else {
        return;
    };
    let mut failures = Vec::new();
    let (mut agree, mut known_failing) = (0, 0);
    for v in &verdicts {
        let status = match (v.differences.is_empty(), v.known) {
            (true, None) => {
                agree += 1;
                "agree"
            }
            (false, Some(_)) => {
                known_failing += 1;
                "KNOWN"
            }
            (true, Some(_)) => {
                failures.push(format!("{}: agrees now; remove it from KNOWN", v.case));
                "AGREES (remove from KNOWN)"
            }
            (false, None) => {
                failures.push(format!("{}:\n  {}", v.case, v.differences.join("\n  ")));
                "DIFFERS"
            }
        };
        println!(
            "== {} : {status}{}",
            v.case,
            v.known.map(|k| format!(" ({k})")).unwrap_or_default()
        );
        if !v.differences.is_empty() || std::env::var_os("DIFF_VERBOSE").is_some() {
            for d in &v.differences {
                println!("  - {d}");
            }
            println!(" engine:\n{}", v.engine);
            println!(" harness:\n{}", v.harness);
        }
    }
    println!(
        "differential: {} cases, {agree} agree, {known_failing} known-failing, {} unexpected; {:.1} s",
        verdicts.len(),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
