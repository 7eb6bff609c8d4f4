//! `host-harness run --request`: HTTP exchanges through a filter from the command line, printed
//! with their phases, actions, headers, bodies and local responses (issue 15, point 8).

use std::process::{Command, Output};

/// The differential suite's script guest (`tests/guests/script`): its configuration says which
/// hostcalls to make in which callback.
fn script_wasm() -> std::path::PathBuf {
    host_harness::wasm_build::build("script-guest", "script_guest", "wasm-release")
        .expect("build the script guest")
}

fn run(config: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host-harness"))
        .arg("run")
        .arg("--wasm")
        .arg(script_wasm())
        .args(["--config", config, "--seconds", "0"])
        .args(extra)
        .output()
        .expect("running host-harness")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn requests_run_end_to_end_and_print_each_exchange() {
    let config = r#"{"case":"cli","do":{
        "request_headers":[["header","request","x-b"],["set_header","request","X-Added","yes"]],
        "response_headers":[["set_header","response","X-Resp","from filter"]]}}"#;
    let o = run(
        config,
        &[
            "--request",
            "GET /a?q=1 -H X-B:2",
            "--request",
            "@5 POST /b -d hello",
            "--response",
            "201 -H X-Up:1 -d upstream",
            "--strict",
        ],
    );
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for needle in [
        "=== request 1 at 0.000s: GET /a?q=1",
        "=== request 2 at 5.000s: POST /b",
        "phases: request_headers=Continue",
        "callback on_request_headers#",
        "callback on_done#",
        "response_headers=Continue",
        "X-Added: yes",
        "X-B: 2",
        "request body: \"hello\"",
        "X-Resp: from filter",
        ":status: 201",
        "response body: \"upstream\"",
        "--- 2 request(s), 0 failed or stuck",
    ] {
        assert!(out.contains(needle), "{needle:?} missing in:\n{out}");
    }
    // The guest's trace is echoed: the filter really saw the header it read.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Ok(Some(\"2\"))") || out.contains("Ok(Some(\"2\"))"),
        "{err}"
    );
}

#[test]
fn a_local_response_is_printed_with_its_headers_and_body() {
    let config =
        r#"{"case":"cli","do":{"request_headers":[["local","403","denied","X-Why:policy"]]}}"#;
    let o = run(config, &["--request", "/private"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    for needle in ["local response 403", "X-Why: policy", "denied"] {
        assert!(out.contains(needle), "{needle:?} missing in:\n{out}");
    }
}

#[test]
fn a_trapping_filter_fails_the_exchange_and_strict_exits_1() {
    let config = r#"{"case":"cli","do":{"request_headers":[["panic","no way"]]}}"#;
    let o = run(config, &["--request", "GET /x", "--strict"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("FAILED"), "{out}");
    assert!(out.contains("1 failed or stuck"), "{out}");
}

#[test]
fn a_malformed_request_is_refused_with_the_reason() {
    let o = run("{}", &["--request", "GET /a -H no-colon"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("NAME:VALUE"), "{err}");
}

#[test]
fn quoted_values_and_at_file_bodies_reach_the_filter_as_written() {
    let dir = std::env::temp_dir().join(format!("hh-cli-body-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("upstream body.txt");
    std::fs::write(&file, "from a file\n").unwrap();
    let config = r#"{"case":"cli","do":{
        "request_headers":[["header","request","x-note"]],
        "request_body":[["body","request","0","100"]],
        "response_body":[["body","response","0","100"]]}}"#;
    let response = format!("200 -H 'X-Up: a b' -d @'{}'", file.display());
    let o = run(
        config,
        &[
            "--request",
            "POST /q -H 'X-Note: two  words' -d 'line one\nline two\n'",
            "--response",
            &response,
            "--strict",
        ],
    );
    let (out, err) = (stdout(&o), String::from_utf8_lossy(&o.stderr).into_owned());
    assert!(o.status.success(), "{out}\n{err}");
    let both = format!("{out}\n{err}");
    for needle in [
        // What the filter read, as the guest traced it.
        r#"Ok(Some("two  words"))"#,
        r#"Ok("line one\nline two\n")"#,
        r#"Ok("from a file\n")"#,
        // What the run printed.
        "X-Up: a b",
        r#"request body: "line one\nline two\n""#,
    ] {
        assert!(both.contains(needle), "{needle:?} missing in:\n{both}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
