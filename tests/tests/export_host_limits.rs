//! Hosts with partial ABIs (metrics are missing or partial on some; `plugin/src/shell/metrics.rs`): the filter keeps
//! exporting and never traps, where the SDK's own wrappers would panic on the unexpected status.

use config_bridge_tests::*;
use host_harness::mocks::s3::MockS3;
use host_harness::{HostProfile, NodeId, World};

fn export_once(profile: HostProfile) -> (World, NodeId, MockS3) {
    let s3 = mock_s3();
    let mut world = world_with_storage(&profile, s3.clone());
    let node = start_exporter(&mut world, 2, &declarative(1));
    world.advance(secs(3));
    (world, node, s3)
}

#[test]
fn metrics_count_exports_and_bytes_when_the_host_has_them() {
    for profile in [HostProfile::ngx_wasm_module(), HostProfile::envoy()] {
        let (world, node, s3) = export_once(profile);
        let object = s3.object(BUCKET, CONFIG_KEY).expect("exported");
        assert_eq!(world.metric(node, "config_bridge_exports_total"), Some(1));
        assert_eq!(
            world.metric(node, "config_bridge_last_export_bytes"),
            Some(object.body.len() as i64)
        );
        assert_eq!(
            world
                .metric(node, "config_bridge_export_failures_total")
                .unwrap_or(0),
            0
        );
        assert_no_secrets(&world, &[]);
    }
}

#[test]
fn a_host_whose_metrics_abi_fails_does_not_trap_the_filter() {
    for base in [HostProfile::ngx_wasm_module(), HostProfile::envoy()] {
        let profile = HostProfile {
            metrics: false,
            ..base
        };
        let (world, node, s3) = export_once(profile);
        // Exported anyway; no trap (the world's drop check fails the test on any).
        let object = s3
            .object(BUCKET, CONFIG_KEY)
            .expect("exported without metrics");
        assert_eq!(object.body, payload_bytes(&declarative(1)));
        assert!(world.metrics(node).is_empty());
        assert!(world.traps().is_empty() && world.fatal_errors().is_empty());
    }
}

#[test]
fn a_failed_call_is_logged_with_the_hosts_dispatch_status() {
    use host_harness::mocks::faults::{Fault, Faulty};
    use std::sync::Arc;
    for (profile, reason) in [
        (HostProfile::ngx_wasm_module(), "broken connection"),
        (HostProfile::envoy(), "no response"),
    ] {
        let s3 = mock_s3();
        let faulty = Faulty::new(Arc::new(s3.clone()));
        faulty.push(Fault::reset());
        let mut world = world_with_storage(&profile, faulty);
        start_exporter(&mut world, 1, &declarative(1));
        world.advance(secs(5));
        let failures = log_messages(&world, "failed");
        assert!(
            failures.first().is_some_and(|l| l.contains(reason)),
            "{}: {failures:?}",
            profile.name
        );
        // Retried and landed.
        assert!(s3.object(BUCKET, CONFIG_KEY).is_some());
        assert_no_secrets(&world, &[]);
    }
}
