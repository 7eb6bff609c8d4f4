//! The leader election on GCS (docs/gcs.md, "Election objects"): three exporting nodes share the
//! mock GCS; registrations are Kong's GCS objects `<prefix>/<version>/election/<node_id>`; one
//! leader uploads, and it stays the leader across refresh rounds (its first registration time
//! survives the re-uploads in the object's `register-time` metadata).

mod gcs_support;

use config_bridge_tests::kong_setup::two_profiles;
use config_bridge_tests::*;
use gcs_support::*;
use host_harness::NodeSpec;
use serde_json::json;

const ELECTION_PREFIX: &str = "dp/cluster-a/3.9.1/election/";

#[test]
fn three_nodes_on_gcs_elect_one_uploader_with_kongs_object_names() {
    for profile in two_profiles() {
        let mut g = gcs_world(&profile);
        let doc = declarative(1);
        for i in 1..=3u64 {
            let mut cfg = gcs_config(&profile, &doc, Some(&g.key_json));
            cfg["election"] = json!(true);
            cfg["cluster_fallback_election_interval"] = json!(10);
            cfg["cluster_fallback_config_export_delay"] = json!(5);
            cfg["node_id"] = json!(format!("node-{i}"));
            g.world
                .add_node(
                    NodeSpec::new(&format!("n{i}"), &plugin_module())
                        .workers(1)
                        .seed(i)
                        .filter(cfg.to_string()),
                )
                .unwrap();
        }
        assert!(until_exported(&mut g, &doc, secs(60)), "{}", profile.name);
        // Several refresh rounds (interval 10 s).
        g.world.advance(secs(60));
        let names: Vec<String> = g
            .mock
            .objects(BUCKET)
            .into_iter()
            .filter_map(|o| o.name.strip_prefix(ELECTION_PREFIX).map(str::to_string))
            .collect();
        assert_eq!(names, ["node-1", "node-2", "node-3"], "{}", profile.name);
        let uploaders: std::collections::BTreeSet<String> = g
            .mock
            .requests()
            .into_iter()
            .filter(|c| {
                c.status == 200
                    && c.request.path.starts_with("/upload/")
                    && c.request.query_param("name").as_deref() == Some(CONFIG_KEY)
            })
            .map(|c| c.node)
            .collect();
        assert_eq!(uploaders.len(), 1, "{}: {uploaders:?}", profile.name);
        let leaders = log_messages(&g.world, "leader");
        eprintln!(
            "{}: {} leader lines: {:?}",
            profile.name,
            leaders.len(),
            leaders.iter().take(6).collect::<Vec<_>>()
        );
        assert!(g.world.traps().is_empty());
    }
}
