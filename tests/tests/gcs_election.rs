//! The leader election on GCS (docs/gcs.md, "Election objects"): three exporting nodes share the
//! mock GCS; registrations are Kong's GCS objects `<prefix>/<version>/election/<node_id>`; one
//! leader uploads, and it stays the leader across refresh rounds: a refresh is a metadata update
//! (as Kong Enterprise refreshes), so `timeCreated`, the register time, never moves. A mixed
//! fleet with a model of Kong Enterprise's GCS election agrees on one leader.

mod gcs_support;

use config_bridge_tests::kong_ee::{election_prefix, GcsElection, KongNode, MixedFleet};
use config_bridge_tests::kong_setup::two_profiles;
use config_bridge_tests::*;
use gcs_support::*;
use std::time::SystemTime;

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

/// A mixed fleet on GCS: two config-bridge nodes and a Kong Enterprise node of the model
/// (`config_bridge_tests::kong_ee`: created once, refreshed by a metadata update, register time
/// `timeCreated`) agree on one leader every second once settled; our registrations keep their
/// `timeCreated` (issue 26: re-uploading gave each refresh a new one, and Kong saw our nodes
/// re-register every round: two leaders).
#[test]
fn a_mixed_fleet_with_kong_enterprise_on_gcs_agrees_on_one_leader_and_keeps_time_created() {
    const INTERVAL: u64 = 10;
    let profile = host_harness::HostProfile::ngx_wasm_module();
    let mut g = gcs_world(&profile);
    let doc = declarative(1);
    let mut fleet = MixedFleet {
        ours: Vec::new(),
        kong: Vec::new(),
        interval: secs(INTERVAL),
    };
    for i in 1..=2u64 {
        let mut cfg = gcs_config(&profile, &doc, Some(&g.key_json));
        cfg["election"] = json!(true);
        cfg["cluster_fallback_election_interval"] = json!(INTERVAL);
        cfg["cluster_fallback_config_export_delay"] = json!(5);
        cfg["node_id"] = json!(format!("node-{i}"));
        fleet.add_ours(&mut g.world, i, &cfg);
    }
    let mock = g.mock.clone();
    let store = GcsElection {
        gcs: &mock,
        bucket: BUCKET,
        prefix: election_prefix(PREFIX, GATEWAY_VERSION),
    };
    let mut created: std::collections::BTreeMap<String, SystemTime> = Default::default();
    for second in 1..=150u64 {
        let t = fleet.step(&mut g.world, &store);
        // Kong Enterprise joins after the others registered.
        if second == 8 {
            fleet.kong.push(KongNode::new("kong-ee-7f3a", t, secs(0)));
        }
        // Our registrations keep their `timeCreated` (the register time Kong reads).
        for o in g.mock.objects(BUCKET) {
            if let Some(name) = o.name.strip_prefix(ELECTION_PREFIX) {
                let first = *created.entry(name.to_string()).or_insert(o.created);
                assert_eq!(first, o.created, "{name}: timeCreated moved at {second} s");
            }
        }
        if second >= 20 {
            if let Err(e) = fleet.agreed_leader(&g.world) {
                panic!("at {second} s: {e}");
            }
        }
    }
    assert!(g.world.traps().is_empty());
}
