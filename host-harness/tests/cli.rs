//! The `host-harness` binary: `run` against a real TCP endpoint (virtual and real time), `inspect`.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use host_harness::http::{CallContext, HttpRequest, HttpResponse, Reply};
use host_harness::mocks::serve;

fn probe_wasm() -> std::path::PathBuf {
    host_harness::wasm_build::build("abi-probe", "abi_probe", "wasm-release").expect("build probe")
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_host-harness"))
}

/// `host-harness run` of the probe with `args`, its plugin configuration and one `--route`.
fn run_probe(args: &[&str], config: &str, route: &str) -> std::process::Output {
    cli()
        .arg("run")
        .args(args)
        .args(["--config", config, "--route", route])
        .arg("--wasm")
        .arg(probe_wasm())
        .output()
        .unwrap()
}

/// A TCP server that answers every request and remembers what it saw.
fn recording_server() -> (serve::ServerHandle, Arc<Mutex<Vec<HttpRequest>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let handler = Arc::new(move |req: &HttpRequest, _: &CallContext| {
        log.lock().unwrap().push(req.clone());
        Reply::now(HttpResponse::new(200).with_body("pong"))
    });
    (serve::spawn(handler, "127.0.0.1:0").expect("listen"), seen)
}

#[test]
fn run_routes_dispatched_calls_to_a_real_tcp_server_in_virtual_time() {
    let (server, seen) = recording_server();
    let config = r#"{"tick_ms": 1000, "dispatch_in": ["tick"], "upstream": "api:80", "authority": "api.test", "path": "/ping"}"#;
    let started = Instant::now();
    let route = format!("api:80={}", server.addr());
    let out = run_probe(
        &["--workers", "2", "--seconds", "3.5", "--strict"],
        config,
        &route,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // 2 workers x 3 ticks, each answered over TCP.
    assert_eq!(seen.lock().unwrap().len(), 6, "{stdout}");
    assert_eq!(seen.lock().unwrap()[0].authority, "api.test");
    assert!(stdout.contains("--- 6 call(s)"), "{stdout}");
    assert_eq!(
        stdout.matches("GET api:80/ping -> 200").count(),
        6,
        "{stdout}"
    );
    assert!(
        stderr.contains("probe call_response in=root") && stderr.contains("body=pong"),
        "{stderr}"
    );
    assert!(stdout.contains("0 trap(s), 0 failed call(s)"));
    // Virtual time: 3.5 s simulated far faster than real time (compile time aside).
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn run_in_real_time_follows_the_wall_clock_and_strict_reports_failures() {
    let config =
        r#"{"tick_ms": 200, "dispatch_in": ["tick"], "upstream": "down:80", "authority": "d"}"#;
    // Nothing listens on port 9 of loopback: every call fails, and --strict makes that an error.
    let started = Instant::now();
    let out = run_probe(
        &["--realtime", "--seconds", "1", "--strict"],
        config,
        "down:80=127.0.0.1:9",
    );
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(elapsed >= Duration::from_secs(1), "real time: {elapsed:?}");
    assert!(stdout.contains("-> broken connection"), "{stdout}");
}

#[test]
fn inspect_lists_imports_and_refuses_bad_modules() {
    let out = cli().arg("inspect").arg(probe_wasm()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("env::proxy_http_call"), "{stdout}");
    assert!(stdout.contains("all provided by the harness"));

    let dir = std::env::temp_dir().join(format!("hh-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.wat");
    std::fs::write(&bad, r#"(module (import "env" "proxy_nope" (func)))"#).unwrap();
    let out = cli().arg("inspect").arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("env::proxy_nope"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn run_with_the_hostile_profile_reports_injections_and_traps() {
    let config =
        r#"{"tick_ms": 1000, "dispatch_in": ["tick"], "upstream": "api:80", "authority": "a"}"#;
    let (server, _seen) = recording_server();
    let hostile = [
        "--profile",
        "hostile",
        "--hostile-seed",
        "3",
        "--hostile-rate",
        "0.3",
    ];
    let route = format!("api:80={}", server.addr());
    let out = run_probe(
        &[&hostile[..], &["--seconds", "20", "--workers", "2"]].concat(),
        config,
        &route,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let injections: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("--- ")?.strip_suffix(" injection(s)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no injection count: {stdout}"));
    assert!(injections > 0, "{stdout}");
    assert!(
        !stdout.contains("--- 0 trap(s)"),
        "the SDK probe traps: {stdout}"
    );
}
