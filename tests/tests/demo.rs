//! `cargo run -p host-harness -- demo`, the README's first command, tells one story with the
//! real `.wasm`: a CP exports its own configuration through the Kong Admin source with the
//! election on, three changes in one debounce window cost one upload, a 503 is retried, the CP
//! dies and a new fallback node imports the backup through its Admin API. Checked on the Kong
//! (ngx_wasm_module) and Envoy profiles; the printed summary is the last line.

use config_bridge_tests::kong_setup::two_profiles;
use config_bridge_tests::plugin_module;
use host_harness::cli::demo::story;

/// The README shows the demo's output as printed (after the line naming the built module).
fn readme_demo_block() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let section = &readme[readme.find("## The demo").expect("a demo section")..];
    let start = section.find("\n```\n").expect("a code block") + 5;
    let end = start + section[start..].find("\n```").expect("its end");
    section[start..end].to_string()
}

#[test]
fn the_demo_tells_the_whole_story() {
    for profile in two_profiles() {
        let started = std::time::Instant::now();
        let o = story::scenario(&plugin_module(), profile.clone()).expect("the demo runs");
        let name = &profile.name;
        let timeline = o.lines.join("\n");
        assert!(o.led, "{name}: the CP never led the election\n{timeline}");
        assert_eq!(
            (o.window_changes, o.window_uploads),
            (3, 1),
            "{name}: three changes in one window, one upload\n{timeline}"
        );
        assert!(o.retried_503, "{name}: the 503 was not retried\n{timeline}");
        assert_eq!(
            o.exported_services,
            [
                "catalog",
                "inventory",
                "orders",
                "payments",
                "pricing",
                "reviews",
                "search"
            ],
            "{name}"
        );
        // The first export, the coalesced one, the retried one.
        assert_eq!(o.uploads, 3, "{name}\n{timeline}");
        assert!(o.imported && o.chain_import_only, "{name}\n{timeline}");
        assert!(o.entities > 10, "{name}: {} entities", o.entities);
        assert_eq!(o.traps, 0, "{name}");
        assert!(o.ok());
        let last = o.lines.last().cloned().unwrap_or_default();
        assert!(last.starts_with("DEMO OK: "), "{name}: last line {last:?}");
        assert!(
            timeline.contains("fallback config applied from"),
            "{name}: the import's own log line is shown\n{timeline}"
        );
        if profile.name == host_harness::HostProfile::ngx_wasm_module().name {
            assert_eq!(
                readme_demo_block(),
                timeline,
                "README.md's demo output is not what the demo prints"
            );
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{name}: {:?}",
            started.elapsed()
        );
    }
}
