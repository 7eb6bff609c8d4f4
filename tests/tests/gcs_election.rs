//! The leader election on GCS (docs/gcs.md, "Election objects"): three exporting nodes share the
//! mock GCS; registrations are Kong's GCS objects `<prefix>/<version>/election/<node_id>`; one
//! leader uploads, and it stays the leader across refresh rounds: a refresh is a metadata update
//! (as Kong Enterprise refreshes), so `timeCreated`, the register time, never moves. A mixed
//! fleet with a model of Kong Enterprise's GCS election agrees on one leader.

mod gcs_support;

use config_bridge_tests::kong_setup::two_profiles;
use config_bridge_tests::*;
use gcs_support::*;
use std::time::{Duration, SystemTime};

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

/// Kong Enterprise's GCS election as it behaves (docs/election.md): a candidate registers once
/// (an empty object), refreshes with a metadata update every interval, and the leader is the fresh
/// candidate (`updated` + interval + 5 s ≥ now) with the oldest `timeCreated`, ties by name.
fn kong_leader(g: &Gcs, now: SystemTime, interval: Duration) -> Option<String> {
    g.mock
        .objects(BUCKET)
        .into_iter()
        .filter_map(|o| {
            let name = o.name.strip_prefix(ELECTION_PREFIX)?.to_string();
            (now <= o.updated + interval + secs(5)).then_some((o.created, name))
        })
        .min()
        .map(|(_, name)| name)
}

#[test]
fn a_mixed_fleet_with_kong_enterprise_on_gcs_agrees_on_one_leader_and_keeps_time_created() {
    const INTERVAL: u64 = 10;
    let profile = host_harness::HostProfile::ngx_wasm_module();
    let mut g = gcs_world(&profile);
    let doc = declarative(1);
    let mut nodes = Vec::new();
    for i in 1..=2u64 {
        let mut cfg = gcs_config(&profile, &doc, Some(&g.key_json));
        cfg["election"] = json!(true);
        cfg["cluster_fallback_election_interval"] = json!(INTERVAL);
        cfg["cluster_fallback_config_export_delay"] = json!(5);
        cfg["node_id"] = json!(format!("node-{i}"));
        let node = g
            .world
            .add_node(
                NodeSpec::new(&format!("n{i}"), &plugin_module())
                    .workers(2)
                    .seed(i)
                    .filter(cfg.to_string()),
            )
            .unwrap();
        nodes.push((node, format!("node-{i}")));
    }
    let now =
        |g: &Gcs| SystemTime::UNIX_EPOCH + Duration::from_nanos(g.world.clock().guest_wall_nanos());
    let kong = "kong-ee-7f3a";
    let kong_key = format!("{ELECTION_PREFIX}{kong}");
    let mut created: std::collections::BTreeMap<String, SystemTime> = Default::default();
    let mut kong_refreshed = None;
    for second in 1..=150u64 {
        g.world.advance(secs(1));
        let t = now(&g);
        // Kong Enterprise joins after the others registered, then refreshes every interval.
        if second == 8 {
            g.mock.put_object(BUCKET, &kong_key, b"", "text/plain", t);
            kong_refreshed = Some(second);
        } else if kong_refreshed.is_some_and(|r| second >= r + INTERVAL) {
            g.mock
                .patch_metadata(BUCKET, &kong_key, "kong", "refresh", t);
            kong_refreshed = Some(second);
        }
        // Our registrations keep their `timeCreated` (the register time Kong reads).
        for o in g.mock.objects(BUCKET) {
            if let Some(name) = o.name.strip_prefix(ELECTION_PREFIX) {
                let first = *created.entry(name.to_string()).or_insert(o.created);
                assert_eq!(first, o.created, "{name}: timeCreated moved at {second} s");
            }
        }
        if second < 20 {
            continue;
        }
        let ours: Vec<&String> = nodes
            .iter()
            .filter(|(n, _)| g.world.metric(*n, "config_bridge_election_leader") == Some(1))
            .map(|(_, id)| id)
            .collect();
        let theirs = kong_leader(&g, t, secs(INTERVAL));
        let mut leaders: Vec<String> = ours.iter().map(|s| s.to_string()).collect();
        if theirs.as_deref() == Some(kong) {
            leaders.push(kong.to_string());
        }
        assert_eq!(
            leaders.len(),
            1,
            "at {second} s: leaders {leaders:?}, Kong's view {theirs:?}"
        );
        assert_eq!(
            theirs.as_ref(),
            leaders.first(),
            "at {second} s: Kong's view differs"
        );
    }
    assert!(g.world.traps().is_empty());
}
