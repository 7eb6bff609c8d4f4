//! Filter configuration as the hosts hand it over: invalid settings refused with one clear line,
//! credentials (session tokens) and PutObject parameters reaching S3, secrets never logged.

use config_bridge_tests::*;
use host_harness::{HostProfile, NodeSpec, World};
use serde_json::{json, Value};

fn two_profiles() -> [HostProfile; 2] {
    [HostProfile::ngx_wasm_module(), HostProfile::envoy()]
}

/// (what is wrong, the configuration, the field its one log line must name)
fn invalid_cases(profile: &HostProfile) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let valid = filter_config(profile, &declarative(1));
    let with = |k: &str, v: Value| {
        let mut c = valid.clone();
        c[k] = v;
        c.to_string().into_bytes()
    };
    let without = |k: &str| {
        let mut c = valid.clone();
        c.as_object_mut().unwrap().remove(k);
        c.to_string().into_bytes()
    };
    vec![
        (
            "not JSON",
            b"{\"cluster_fallback_config_export\": on".to_vec(),
            "configuration",
        ),
        (
            "unknown scheme",
            with("cluster_fallback_config_storage", json!("ftp://bucket/p")),
            "cluster_fallback_config_storage",
        ),
        (
            "export and import off",
            with("cluster_fallback_config_export", json!("off")),
            "cluster_fallback_config_export",
        ),
        (
            "wrong type",
            with("cluster_fallback_config_export_delay", json!("soon")),
            "cluster_fallback_config_export_delay",
        ),
        (
            "unknown s3 parameter",
            with("cluster_fallback_export_s3_config", json!({"Body": "x"})),
            "cluster_fallback_export_s3_config",
        ),
        (
            "bad s3 parameter value",
            with(
                "cluster_fallback_export_s3_config",
                json!({"StorageClass": "CHEAP"}),
            ),
            "cluster_fallback_export_s3_config",
        ),
        ("no region", without("aws_region"), "aws_region"),
        (
            "no secret",
            without("aws_secret_access_key"),
            "aws_secret_access_key",
        ),
        (
            "secret of the wrong type",
            with(
                "aws_secret_access_key",
                json!(["s3cr3t-Export+Key/NEVER-LOG-ME-0123456789"]),
            ),
            "aws_secret_access_key",
        ),
        (
            "config without _format_version",
            with("config", json!({"services": []})),
            "config",
        ),
        (
            "unknown key",
            with("cluster_fallback_config_exprot", json!("on")),
            "cluster_fallback_config_exprot",
        ),
        (
            "bad endpoint",
            with("storage_endpoint", json!("s3.test:9000")),
            "storage_endpoint",
        ),
        (
            "lease shorter than two ticks",
            with("lease_ttl_ms", json!(1500)),
            "lease_ttl_ms",
        ),
    ]
}

#[test]
fn invalid_configurations_leave_the_filter_inert_with_one_line_naming_the_field() {
    for profile in two_profiles() {
        for (what, config, field) in invalid_cases(&profile) {
            let s3 = mock_s3();
            let mut world = world_with_storage(&profile, s3.clone());
            let node = world
                .add_node(
                    NodeSpec::new("n1", &plugin_module())
                        .workers(2)
                        .env("AWS_REGION_UNUSED", "x")
                        .filter(config),
                )
                .unwrap();
            // Inert, not refused: a false on_configure kills an ngx worker for good
            // (docs/host-behaviours.md).
            for w in 0..2 {
                assert_eq!(
                    world.configured(node, w, 0),
                    Some(true),
                    "{}: {what}",
                    profile.name
                );
                assert!(world.worker_alive(node, w), "{}: {what}", profile.name);
            }
            world.advance(secs(10));
            let lines: Vec<String> = world
                .logs()
                .into_iter()
                .filter(|l| l.origin.worker == 0 && l.message.starts_with("[config-bridge]"))
                .map(|l| l.message)
                .collect();
            assert_eq!(lines.len(), 1, "{}: {what}: {lines:?}", profile.name);
            // `<field>: <reason>`, or `<field>.<parameter>: <reason>` inside an object setting.
            let rest = lines[0]
                .strip_prefix("[config-bridge] invalid configuration: ")
                .and_then(|r| r.strip_prefix(field));
            assert!(
                rest.is_some_and(|r| r.starts_with(": ") || r.starts_with('.')),
                "{}: {what}: {lines:?}",
                profile.name
            );
            assert!(world.calls().is_empty(), "{what}");
            assert!(s3.requests().is_empty());
            assert!(world.traps().is_empty(), "{what}: {:?}", world.traps());
            assert_no_secrets(&world, &[]);
        }
    }
}

#[test]
fn a_bad_reconfiguration_makes_the_filter_inert_until_a_valid_one_arrives() {
    for profile in two_profiles() {
        let s3 = mock_s3();
        let mut world = world_with_storage(&profile, s3.clone());
        let node = start_exporter(&mut world, 1, &declarative(1));
        advance_to(&mut world, secs(5));
        let mut bad = filter_config(&profile, &declarative(2));
        bad["cluster_fallback_config_storage"] = json!("gopher://x");
        assert_eq!(
            world.reconfigure(node, 0, bad.to_string()),
            vec![Some(true)]
        );
        assert_eq!(
            log_messages(
                &world,
                "invalid configuration: cluster_fallback_config_storage"
            )
            .len(),
            1
        );
        advance_to(&mut world, secs(100));
        // Inert: nothing of the bad configuration (nor the previous one) is sent.
        assert_eq!(puts(&s3).len(), 1, "{}", profile.name);
        assert!(send_times(&world, "PUT").iter().all(|t| *t < secs(5)));
        // A later valid one is exported as usual (the node still knows the object: no HEAD).
        apply_doc(&mut world, node, &declarative(3));
        advance_to(&mut world, secs(200));
        assert_eq!(send_times(&world, "HEAD"), vec![secs(1)]);
        // The first PUT after the HEAD; the second on the first tick after the valid
        // configuration (the host ticks every 50 ms, the engine at once after being inert).
        let times = send_times(&world, "PUT");
        assert_eq!(times.len(), 2, "{times:?}");
        assert_eq!(times[0], secs(2));
        assert!(times[1] > secs(100) && times[1] <= secs(101), "{times:?}");
        assert_exported(&s3, &declarative(3));
        assert_no_secrets(&world, &[]);
    }
}

#[test]
fn credentials_from_the_environment_with_a_session_token_and_kong_34_string_config() {
    for profile in two_profiles() {
        let s3 = mock_s3_with_session_token();
        let mut world = world_with_storage(&profile, s3.clone());
        let mut cfg = filter_config(&profile, &declarative(1));
        let obj = cfg.as_object_mut().unwrap();
        for k in [
            "aws_access_key_id",
            "aws_secret_access_key",
            "aws_region",
            "storage_endpoint",
            "node_id",
        ] {
            obj.remove(k);
        }
        // Kong 3.4 hands the configuration over as a JSON string.
        let as_string = Value::String(cfg.to_string()).to_string();
        let node = world
            .add_node(
                NodeSpec::new("n1", &plugin_module())
                    .workers(2)
                    .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
                    .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
                    .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
                    .env("AWS_DEFAULT_REGION", REGION)
                    .env("AWS_CONFIG_STORAGE_ENDPOINT", ENDPOINT)
                    .env("HOSTNAME", "dp-7f9c")
                    .filter(as_string),
            )
            .unwrap();
        assert_eq!(world.configured(node, 0, 0), Some(true));
        world.advance(secs(5));
        let put = &storage_calls(&world, "PUT")[0];
        assert_eq!(
            put.request.header("x-amz-security-token"),
            Some(SESSION_TOKEN)
        );
        assert_eq!(put.request.authority, "s3.test:9000");
        assert_eq!(put.request.path, format!("/{BUCKET}/{CONFIG_KEY}"));
        let stored = s3
            .object(BUCKET, CONFIG_KEY)
            .expect("stored with the session credential");
        assert_eq!(stored.body, payload_bytes(&declarative(1)));
        assert!(
            stored
                .metadata
                .contains(&("uploader".into(), "dp-7f9c".into())),
            "{:?}",
            stored.metadata
        );
        assert_no_secrets(&world, &[]);
    }
}

#[test]
fn put_object_parameters_reach_s3() {
    for profile in two_profiles() {
        let s3 = mock_s3();
        let mut world = world_with_storage(&profile, s3.clone());
        let mut cfg = filter_config(&profile, &declarative(1));
        cfg["cluster_fallback_export_s3_config"] = json!({
            "StorageClass": "STANDARD_IA",
            "Metadata": {"team": "platform"},
            "CacheControl": "no-cache",
        });
        start_node(&mut world, 1, &cfg);
        world.advance(secs(3));
        let obj = s3.object(BUCKET, CONFIG_KEY).expect("stored");
        assert_eq!(obj.storage_class(), "STANDARD_IA");
        assert_eq!(obj.header("cache-control"), Some("no-cache"));
        assert!(
            obj.metadata.contains(&("team".into(), "platform".into())),
            "{:?}",
            obj.metadata
        );
        let put = &storage_calls(&world, "PUT")[0];
        assert!(put.request.header("x-amz-checksum-sha256").is_some());
        assert_eq!(put.request.header("content-type"), Some("application/json"));
        assert_no_secrets(&world, &[]);
    }
}

#[test]
fn the_secret_check_itself_catches_a_leak() {
    // Guards the guard: a world whose log contains the secret must fail `assert_no_secrets`.
    let s3 = mock_s3();
    let profile = HostProfile::ngx_wasm_module();
    let mut world = World::new(profile.clone());
    route_storage(&mut world, s3);
    let mut cfg = filter_config(&profile, &declarative(1));
    // An unknown key whose *name* is the secret: the one log line names the field.
    cfg[SECRET_KEY] = json!(1);
    start_node(&mut world, 1, &cfg);
    let leaked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_no_secrets(&world, &[])
    }));
    assert!(leaked.is_err(), "{:?}", world.logs());
}

/// A Kong declarative configuration of at least `bytes` bytes: [`declarative`]'s service `n`
/// repeated under distinct names.
fn large_doc(n: u32, bytes: usize) -> Value {
    let one = payload_bytes(&declarative(n)).len();
    let services: Vec<Value> = (0..bytes.div_ceil(one))
        .map(|i| {
            json!({"name": format!("svc-{n}-{i}"), "url": format!("http://u{i}.internal:8080"),
                   "routes": [{"name": format!("route-{n}-{i}"), "paths": [format!("/r{n}/{i}")]}]})
        })
        .collect();
    json!({"_format_version": "3.0", "services": services})
}

/// A configuration over 1 MiB is validated, then its payload cut out of the text, a slice per
/// tick (over 8 MiB: the cut itself takes two ticks); the export is its exact bytes. A newer
/// configuration arriving meanwhile wins: the one still in slices is dropped, never exported, and
/// no PUT carries anything but a whole document.
#[test]
fn a_large_configuration_is_exported_exactly_and_a_newer_one_replaces_it_in_flight() {
    let profile = HostProfile::ngx_wasm_module();
    let s3 = mock_s3();
    let mut world = world_with_storage(&profile, s3.clone());
    let big = large_doc(1, 9 * 1024 * 1024);
    let mut cfg = filter_config(&profile, &big);
    cfg["cluster_fallback_config_export_delay"] = json!(0);
    let node = start_node(&mut world, 1, &cfg);
    let stored = |s3: &host_harness::mocks::s3::MockS3| s3.object(BUCKET, CONFIG_KEY);
    assert!(world.advance_until(secs(60), ms(100), |_| stored(&s3).is_some()));
    assert_exported(&s3, &big);

    // A second large configuration, and before its slices are done a small one.
    let big2 = large_doc(2, 9 * 1024 * 1024);
    cfg["config"] = big2.clone();
    world.reconfigure(node, 0, cfg.to_string());
    world.advance(ms(100));
    let small = declarative(3);
    cfg["config"] = small.clone();
    world.reconfigure(node, 0, cfg.to_string());
    world.advance(secs(30));
    assert_exported(&s3, &small);
    let (a, c) = (payload_bytes(&big), payload_bytes(&small));
    let bodies: Vec<_> = storage_calls(&world, "PUT")
        .into_iter()
        .map(|call| call.request.body)
        .collect();
    assert_eq!(bodies.len(), 2, "one PUT per applied configuration");
    assert!(
        bodies.iter().all(|b| *b == a || *b == c),
        "a PUT that is neither whole document"
    );
    assert!(world.traps().is_empty());
}

/// A large first configuration is validated across host ticks of 50 ms, a period set before its
/// `host_tick_ms` is known (a root context sets it once): a longer `host_tick_ms` still paces the
/// filter's stepwise work (the document's sliced checks and hash, a slice per work tick), and a
/// shorter one than the host's period is refused with one warning naming the field.
#[test]
fn a_large_first_configuration_keeps_its_host_tick_ms() {
    let profile = HostProfile::ngx_wasm_module();
    let big = large_doc(1, 6 * 1024 * 1024);
    // When the first storage call leaves, with the given timing settings.
    let first_call = |timing: Value| {
        let s3 = mock_s3();
        let mut world = world_with_storage(&profile, s3.clone());
        let mut cfg = filter_config(&profile, &big);
        cfg["cluster_fallback_config_export_delay"] = json!(0);
        for (k, v) in timing.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        start_node(&mut world, 1, &cfg);
        let stored = |_: &World| s3.object(BUCKET, CONFIG_KEY).is_some();
        assert!(world.advance_until(secs(120), ms(100), stored), "{timing}");
        assert_exported(&s3, &big);
        assert!(world.traps().is_empty());
        let first = world.calls().iter().map(|c| c.sent_at).min().unwrap();
        let warned = world.logs_containing("host_tick_ms").len();
        (first, warned)
    };
    let (default, warned) = first_call(json!({}));
    assert_eq!(warned, 0);
    let (slow, warned) = first_call(json!({"host_tick_ms": 1000}));
    assert_eq!(warned, 0);
    eprintln!("first storage call: {default:?} at the default host tick, {slow:?} at 1 s");
    // The hash's six slices (1 MiB each), one per second: the redaction works from the
    // validation scan's notes, no slices of its own (BENCHMARKS.md, "Issue 25, speed7").
    assert!(default < secs(3), "{default:?}");
    assert!(slow >= secs(5), "{slow:?}: host_tick_ms ignored");
    // Shorter than the 50 ms the validation needed: one warning, the work at 50 ms.
    let (fast, warned) = first_call(json!({"tick_period_ms": 20, "host_tick_ms": 20}));
    assert_eq!(warned, 1, "one warning naming host_tick_ms");
    assert!(fast < secs(3), "{fast:?}");
}
