//! The README's quickstart, as a test: the code between the `quickstart` markers is the README's
//! block verbatim (`the_readme_shows_this_code` checks it), so the quickstart cannot rot. The
//! filter is `host-harness/quickstart` (not config-bridge).

// quickstart begin
use std::{path::Path, sync::Arc, time::Duration};

use host_harness::http::{CallContext, HttpRequest, HttpResponse, Reply};
use host_harness::{wasm_build, HostProfile, HttpExchange, NodeSpec, PluginModule, World};

#[test]
fn unauthorised_requests_are_denied_and_ticks_run() -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let wasm = wasm_build::build_in(dir, "quickstart-filter", "quickstart_filter", "release")?;
    let mut world = World::new(HostProfile::ngx_wasm_module()); // or HostProfile::envoy()
    let auth = |req: &HttpRequest, _: &CallContext| match req.header("authorization") {
        Some("Bearer good") => Reply::now(HttpResponse::new(200)),
        _ => Reply::now(HttpResponse::new(401)),
    };
    world.route("auth.internal:8080", Arc::new(auth));
    let node = world.add_node(NodeSpec::new("gw", &PluginModule::load(wasm)?).filter("{}"))?;
    let get = |token: &str| HttpExchange::get("/private").header("Authorization", token);
    let denied = world.http(node, 0, 0, get("Bearer bad"));
    assert_eq!(
        (denied.status(), &denied.data.response_body[..]),
        (403, &b"denied\n"[..])
    );
    assert_eq!(world.http(node, 0, 0, get("Bearer good")).status(), 200); // the upstream's
    world.advance(Duration::from_secs(3));
    assert_eq!(world.logs_containing("tick ").len(), 3); // 3 ticks of 1 s on its one worker
    assert!(world.traps().is_empty());
    Ok(())
}
// quickstart end

#[test]
fn the_readme_shows_this_code() {
    let this = include_str!("quickstart.rs");
    let code = between(this, "// quickstart begin\n", "// quickstart end");
    let readme = include_str!("../README.md");
    let block = between(
        readme,
        "<!-- quickstart: tests/quickstart.rs -->\n```rust\n",
        "```",
    );
    assert_eq!(
        block, code,
        "host-harness/README.md's quickstart differs from tests/quickstart.rs"
    );
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .map(|i| i + start.len())
        .expect("start marker");
    let len = text[from..].find(end).expect("end marker");
    &text[from..from + len]
}
