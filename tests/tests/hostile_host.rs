//! The real filter under the harness's hostile host (`HostProfile::hostile`): every hostcall may
//! answer an unusual-but-legal status, callbacks get lost, answers arrive for tokens and contexts
//! the filter never had, answers come twice. The filter calls the ABI directly and turns every
//! status into a `Result` (docs/architecture.md): zero traps, whatever the host does, and the
//! export still lands once the host behaves.

use config_bridge_tests::*;
use host_harness::hostile::Injection;
use host_harness::{HostProfile, HttpExchange};

#[test]
fn no_trap_under_a_hostile_host_and_the_export_lands_when_it_calms_down() {
    let mut every_kind = std::collections::BTreeSet::new();
    for seed in [1u64, 7, 42, 1234, 99_991, 5, 2026, 31_337] {
        let profile = HostProfile::hostile().seed(seed).hostile_rate(0.08);
        let s3 = mock_s3();
        let mut world = world_with_storage(&profile, s3.clone());
        let mut cfg = filter_config(&profile, &declarative(seed as u32));
        cfg["cluster_fallback_config_export_delay"] = serde_json::json!(5);
        let node = start_node(&mut world, 2, &cfg);
        for round in 0..12u32 {
            world.advance(secs(100));
            apply_doc(&mut world, node, &declarative(seed as u32 * 10 + round));
            for i in 0..20 {
                world.http(node, i % 2, 0, HttpExchange::get("/through/the/chain"));
            }
        }
        world.advance(secs(100));
        assert!(
            world.traps().is_empty(),
            "seed {seed}: {:?}",
            world.traps().first()
        );
        assert!(
            world.fatal_errors().is_empty(),
            "seed {seed}: {:?}",
            world.fatal_errors()
        );
        for i in world.injections() {
            every_kind.insert(format!("{:?}", i.kind));
        }
        assert!(
            world.injections().len() > 50,
            "seed {seed}: the host was hardly hostile"
        );
        assert_no_secrets(&world, &[]);
    }
    // Every kind of hostility was met at least once over the seeds.
    for kind in [
        Injection::Log,
        Injection::Time,
        Injection::Buffer,
        Injection::HeaderMap,
        Injection::SharedDataGet,
        Injection::SharedDataSet,
        Injection::Dispatch,
        Injection::Metrics,
        Injection::LostCallback,
        Injection::UnknownToken,
        Injection::UnknownContext,
        Injection::DuplicateDelivery,
    ] {
        assert!(
            every_kind.contains(&format!("{kind:?}")),
            "{kind:?} never injected: {every_kind:?}"
        );
    }
}

#[test]
fn after_a_hostile_spell_the_newest_config_is_exported() {
    // Hostile for the first 5 minutes only is not a profile switch the harness offers; instead a
    // low rate with the store unaffected: the newest config must land.
    let profile = HostProfile::hostile()
        .seed(3)
        .hostile_rate(0.02)
        .hostile_without(&[Injection::Buffer]);
    let s3 = mock_s3();
    let mut world = world_with_storage(&profile, s3.clone());
    let node = start_exporter(&mut world, 2, &declarative(1));
    world.advance(secs(120));
    apply_doc(&mut world, node, &declarative(2));
    world.advance(secs(600));
    assert!(world.traps().is_empty(), "{:?}", world.traps().first());
    assert_exported(&s3, &declarative(2));
}

/// The host refusing the tick period (ngx_wasm_module allows it to be set once per root context,
/// so the filter sets it once): no trap, and a later configuration tries again.
#[test]
fn a_refused_tick_period_is_tried_again_by_the_next_configuration() {
    let profile = HostProfile::hostile()
        .seed(5)
        .hostile_rate(0.5)
        .hostile_only(&[Injection::TickPeriod]);
    let s3 = mock_s3();
    let mut world = world_with_storage(&profile, s3.clone());
    let node = start_exporter(&mut world, 1, &declarative(1));
    for n in 2..12 {
        world.advance(secs(70));
        apply_doc(&mut world, node, &declarative(n));
    }
    world.advance(secs(70));
    assert!(world.injected(Injection::TickPeriod) > 0);
    assert!(world.traps().is_empty(), "{:?}", world.traps().first());
    assert!(
        !puts(&s3).is_empty(),
        "never exported: the tick period was never set"
    );
}
