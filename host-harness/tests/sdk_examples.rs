//! The proxy-wasm Rust SDK's examples (`host-harness/sdk-examples/`: the SDK's `examples/*/src`
//! at tag v0.2.5, built against `proxy-wasm = "=0.2.5"` from crates.io) run as their READMEs
//! describe them in Envoy, in the harness's Envoy profile; the HTTP ones also in the
//! ngx_wasm_module profile. They are built here the way a filter author builds theirs:
//! `wasm_build::build_in` on their own workspace.

use std::{path::Path, sync::Arc, time::Duration};

use host_harness::http::{CallContext, HttpRequest, HttpResponse, Reply};
use host_harness::{wasm_build, HostProfile, HttpExchange, NodeSpec, PluginModule, World};

mod common;
use common::assert_no_traps;

/// Builds one example (`package` `proxy-wasm-example-<name>`) in release, the SDK's own profile.
fn example(name: &str) -> PluginModule {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk-examples");
    let package = format!("proxy-wasm-example-{}", name.replace('_', "-"));
    let lib = format!("proxy_wasm_example_{name}");
    let wasm = wasm_build::build_in(&dir, &package, &lib, "release")
        .unwrap_or_else(|e| panic!("build the SDK's {name} example: {e:#}"));
    PluginModule::load(wasm).unwrap_or_else(|e| panic!("load the SDK's {name} example: {e:#}"))
}

fn messages(world: &World) -> Vec<String> {
    world.logs().into_iter().map(|l| l.message).collect()
}

/// "Hello, World!" at start, then a line every 5 s with the time and a random byte.
#[test]
fn hello_world_greets_and_logs_a_lucky_number_every_five_seconds() {
    let module = example("hello_world");
    let mut world = World::new(HostProfile::envoy());
    world
        .add_node(NodeSpec::new("envoy", &module).filter(""))
        .expect("add node");
    world.advance(Duration::from_secs(20));
    let lines = messages(&world);
    assert_eq!(
        lines.first().map(String::as_str),
        Some("Hello, World!"),
        "{lines:?}"
    );
    let lucky: Vec<&String> = lines.iter().filter(|l| l.starts_with("It's ")).collect();
    assert_eq!(lucky.len(), 4, "one line per 5 s over 20 s: {lines:?}");
    for line in &lucky {
        // "It's 2022-11-22 03:39:17.849616 UTC, your lucky number is 41."
        let (time, number) = line
            .strip_prefix("It's ")
            .and_then(|rest| rest.split_once(" UTC, your lucky number is "))
            .unwrap_or_else(|| panic!("not the README's shape: {line}"));
        assert!(time.len() >= 19 && time.as_bytes()[4] == b'-', "{line}");
        let n = number.strip_suffix('.').unwrap_or(number);
        assert!(n.parse::<u8>().is_ok(), "{line}");
    }
    assert_no_traps(&world);
}

/// A call to `httpbin` decides: an even first byte → "Access granted." and the upstream's answer
/// with `Powered-By`; odd → "Access forbidden." and a local 403.
#[test]
fn http_auth_random_grants_on_an_even_byte_and_forbids_on_an_odd_one() {
    let module = example("http_auth_random");
    for profile in [HostProfile::envoy(), HostProfile::ngx_wasm_module()] {
        let mut world = World::new(profile);
        let byte = Arc::new(std::sync::atomic::AtomicU8::new(2));
        let served = Arc::clone(&byte);
        let httpbin = move |req: &HttpRequest, _: &CallContext| {
            // The README's call: GET httpbin.org/bytes/1 (anything else gets no byte: forbidden).
            if (
                req.method.as_str(),
                req.path.as_str(),
                req.authority.as_str(),
            ) != ("GET", "/bytes/1", "httpbin.org")
            {
                return Reply::now(HttpResponse::new(404));
            }
            let b = served.load(std::sync::atomic::Ordering::SeqCst);
            Reply::now(HttpResponse::new(200).with_body(vec![b]))
        };
        world.route("httpbin", Arc::new(httpbin));
        let node = world
            .add_node(NodeSpec::new("gw", &module).named_filter("http_auth_random", ""))
            .expect("add node");
        let name = world.profile().name;

        let granted = world.http(
            node,
            0,
            0,
            HttpExchange::get("/headers").respond(200, &[], b"{}"),
        );
        assert_eq!(
            (granted.status(), &granted.data.response_body[..]),
            (200, &b"{}"[..]),
            "{name}"
        );
        let powered = granted
            .data
            .response_headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("powered-by") && v == "proxy-wasm");
        assert!(powered, "{name}: {:?}", granted.data.response_headers);

        byte.store(3, std::sync::atomic::Ordering::SeqCst);
        let forbidden = world.http(
            node,
            0,
            0,
            HttpExchange::get("/headers").respond(200, &[], b"{}"),
        );
        assert_eq!(forbidden.status(), 403, "{name}");
        // ngx_wasm_module adds a newline to a local response's body; Envoy sends it as given.
        let body: &[u8] = if name == "envoy" {
            b"Access forbidden.\n"
        } else {
            b"Access forbidden.\n\n"
        };
        assert_eq!(forbidden.data.response_body, body, "{name}");

        let verdicts: Vec<String> = messages(&world)
            .into_iter()
            .filter(|m| m.starts_with("Access "))
            .collect();
        assert_eq!(verdicts, ["Access granted.", "Access forbidden."], "{name}");
        assert_no_traps(&world);
    }
}

/// A body with "secret" is replaced by "Original message body (N bytes) redacted."; others pass.
#[test]
fn http_body_redacts_a_body_that_mentions_a_secret() {
    let module = example("http_body");
    for profile in [HostProfile::envoy(), HostProfile::ngx_wasm_module()] {
        let mut world = World::new(profile);
        let node = world
            .add_node(NodeSpec::new("gw", &module).named_filter("http_body", ""))
            .expect("add node");
        let name = world.profile().name;
        let public = "Everyone may read this message.\n";
        let hello = world.http(
            node,
            0,
            0,
            HttpExchange::get("/hello").respond(200, &[], public.as_bytes()),
        );
        assert_eq!(hello.data.response_body, public.as_bytes(), "{name}");

        let secret = "This secret message should not be read by anyone.\n";
        assert_eq!(secret.len(), 50, "the README's 50 bytes");
        let out = world.http(
            node,
            0,
            0,
            HttpExchange::get("/secret").respond(200, &[], secret.as_bytes()),
        );
        assert_eq!(
            String::from_utf8_lossy(&out.data.response_body),
            "Original message body (50 bytes) redacted.\n",
            "{name}"
        );
        assert_no_traps(&world);
    }
}

/// The filter configuration's text becomes every response's `custom-header`.
#[test]
fn http_config_adds_the_configured_header() {
    let module = example("http_config");
    let text = "The secret to life is meaningless unless you discover it yourself";
    for profile in [HostProfile::envoy(), HostProfile::ngx_wasm_module()] {
        let mut world = World::new(profile);
        let node = world
            .add_node(NodeSpec::new("gw", &module).named_filter("http_config", text))
            .expect("add node");
        let name = world.profile().name;
        let out = world.http(
            node,
            0,
            0,
            HttpExchange::get("/hello").respond(200, &[], b"Hello"),
        );
        let header = out
            .data
            .response_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("custom-header"))
            .map(|(_, v)| v.as_str());
        assert_eq!(header, Some(text), "{name}");
        assert_no_traps(&world);
    }
}

/// `/hello` is answered locally ("Hello, World!" with `Hello`/`Powered-By`); every request's and
/// response's headers are logged (`#<context> -> name: value`, `<-` for the response) and
/// "#<context> completed." at the end. Envoy presents the names lower-case, as in the README.
#[test]
fn http_headers_logs_both_directions_and_answers_hello_locally() {
    let module = example("http_headers");
    let mut world = World::new(HostProfile::envoy());
    let node = world
        .add_node(NodeSpec::new("envoy", &module).named_filter("http_headers", ""))
        .expect("add node");
    let ex = HttpExchange::get("/hello")
        .header("User-Agent", "curl/7.81.0")
        .header("Accept", "*/*");
    let out = world.http(node, 0, 0, ex);
    assert_eq!(
        (out.status(), &out.data.response_body[..]),
        (200, &b"Hello, World!\n"[..])
    );
    let lines = messages(&world);
    let has = |l: &str| lines.iter().any(|m| m.ends_with(l));
    for expected in [
        " -> :path: /hello",
        " -> :method: GET",
        " -> user-agent: curl/7.81.0",
        " -> accept: */*",
        " <- :status: 200",
        " <- hello: World",
        " <- powered-by: proxy-wasm",
        " completed.",
    ] {
        assert!(has(expected), "no line ending in {expected:?}: {lines:#?}");
    }
    // All lines of one request carry the same context id.
    let ids: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter_map(|m| m.strip_prefix('#')?.split_once(' ').map(|(id, _)| id))
        .collect();
    assert_eq!(ids.len(), 1, "{lines:#?}");
    assert_no_traps(&world);
}
