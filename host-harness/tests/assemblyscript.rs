//! A filter in another language: the AssemblyScript SDK's README filter (`@solo-io/proxy-runtime`
//! 0.1.8, AssemblyScript 0.14.13; source and `build.sh` in `tests/assemblyscript/`, the `.wasm`
//! checked in and rebuilt bit for bit by the script). It registers its root context as
//! `add_header`, which it finds through `plugin_root_id`: Envoy's `root_id`, set here as a node
//! property. (ngx_wasm_module answers "0" there in every context, checked against the engine by
//! the differential case `prop_plugin_root_id`, so the SDK finds no root context.)

use host_harness::{HostProfile, HttpExchange, NodeSpec, PluginModule, World};

mod common;
use common::assert_no_traps;

fn add_header() -> PluginModule {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/assemblyscript/add_header.wasm"
    );
    PluginModule::load(path).expect("loading the AssemblyScript filter")
}

fn response_header(world: &mut World, config: &str) -> Option<String> {
    let spec = NodeSpec::new("envoy", &add_header())
        .property("plugin_root_id", "add_header")
        .filter(config);
    let node = world.add_node(spec).expect("add node");
    let out = world.http(node, 0, 0, HttpExchange::get("/").respond(200, &[], b"ok"));
    let traps: Vec<String> = world.traps().iter().map(|t| t.summary()).collect();
    let fatal: Vec<String> = world.fatal_errors().iter().map(|t| t.summary()).collect();
    assert!(
        !out.failed,
        "traps {traps:?}, fatal {fatal:?}, logs {:?}",
        world.logs()
    );
    assert_eq!(out.data.response_body, b"ok");
    out.data
        .response_headers
        .iter()
        .find(|(k, _)| k == "hello")
        .map(|(_, v)| v.clone())
}

#[test]
fn the_assemblyscript_sdks_readme_filter_adds_its_header_in_the_envoy_profile() {
    let mut world = World::new(HostProfile::envoy());
    // The README's configuration. (With an empty one the SDK 0.1.8 traps in on_configure, out of
    // bounds: it reads an empty buffer through the null pointer the harness hands back; not
    // checked in Envoy.)
    let header = response_header(&mut world, "what ever you want");
    assert_eq!(header.as_deref(), Some("what ever you want"));
    assert_eq!(response_header(&mut world, "x").as_deref(), Some("x"));
    assert_no_traps(&world);
}
