//! A filter in C: `tests/c/filter.c`, written against the proxy-wasm ABI 0.2.1 directly (no SDK,
//! no libc), built by `tests/c/build.sh` with Debian's clang 14 (the `.wasm` is checked in and
//! rebuilt bit for bit). The same test runs in both profiles: nothing here is specific to a
//! filter written in Rust.

use std::time::Duration;

use host_harness::{HostProfile, HttpExchange, NodeSpec, PluginModule, World};

mod common;
use common::assert_no_traps;

fn c_filter() -> PluginModule {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/c/filter.wasm");
    PluginModule::load(path).expect("loading the C filter")
}

#[test]
fn the_c_filter_adds_its_header_answers_locally_and_ticks_in_both_profiles() {
    for profile in [HostProfile::ngx_wasm_module(), HostProfile::envoy()] {
        let name = profile.name;
        let mut world = World::new(profile);
        let spec = NodeSpec::new("gw", &c_filter()).filter("hello from C");
        let node = world.add_node(spec).expect("add node");

        let ok = world.http(
            node,
            0,
            0,
            HttpExchange::get("/").respond(200, &[], b"upstream"),
        );
        assert_eq!(ok.status(), 200, "{name}");
        assert_eq!(ok.data.response_body, b"upstream", "{name}");
        let header = ok
            .data
            .response_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-c-filter"))
            .map(|(_, v)| v.as_str());
        assert_eq!(header, Some("hello from C"), "{name}");

        let blocked = world.http(
            node,
            0,
            0,
            HttpExchange::get("/blocked").respond(200, &[], b"upstream"),
        );
        // ngx_wasm_module ends a local response's body with a newline; Envoy sends it as given.
        let body: &[u8] = if name == "envoy" {
            b"blocked by C"
        } else {
            b"blocked by C\n"
        };
        assert_eq!(
            (blocked.status(), &blocked.data.response_body[..]),
            (403, body),
            "{name}"
        );

        world.advance(Duration::from_secs(3));
        let ticks = world.logs_containing("c-filter: tick ");
        assert!(ticks.len() >= 3, "{name}: {} tick lines", ticks.len());
        assert!(
            !world.logs_containing("c-filter: configured").is_empty(),
            "{name}"
        );
        assert_no_traps(&world);
    }
}
