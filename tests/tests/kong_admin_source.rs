//! `config_source: "kong_admin"` (issue 10): the real filter reads a mock Kong Admin API
//! (`MockKongAdmin`: Kong 3.4–3.9's paging, `/status`, RBAC) and exports Kong's flat form to the
//! mock S3, in the ngx_wasm_module and Envoy profiles with 2 workers.

use std::collections::BTreeSet;

use config_bridge_tests::kong_setup::*;
use config_bridge_tests::*;
use host_harness::mocks::faults::{Fault, Faulty};
use host_harness::mocks::kong::MockKongAdmin;
use host_harness::World;
use serde_json::{json, Value};

/// A world with the mock S3 and `admin` behind [`CP_ADMIN`], and node "n1" (2 workers) exporting
/// it with `cfg`.
fn source_world(
    profile: &host_harness::HostProfile,
    admin: impl host_harness::http::Handler + 'static,
    cfg: &Value,
) -> (World, host_harness::mocks::s3::MockS3) {
    let s3 = mock_s3();
    let mut world = world_with_storage(profile, s3.clone());
    route_host(&mut world, CP_ADMIN, admin);
    add_node(&mut world, "n1", 2, cfg, &[]);
    (world, s3)
}

/// [`source_world`] with an empty DB-less node and [`admin_source_config`].
fn dbless_source(
    profile: &host_harness::HostProfile,
) -> (MockKongAdmin, World, host_harness::mocks::s3::MockS3) {
    let admin = MockKongAdmin::dbless(KONG_VERSION);
    let cfg = admin_source_config(profile, CP_ADMIN);
    let (world, s3) = source_world(profile, admin.clone(), &cfg);
    (admin, world, s3)
}

/// Advances until the stored object holds exactly the entities of `admin.export_config()`.
fn until_exported(world: &mut World, s3: &host_harness::mocks::s3::MockS3, admin: &MockKongAdmin) {
    let want = entities_by_id(&admin.export_config());
    let ok = world.advance_until(secs(60), secs(1), |_| {
        stored_json(s3).is_some_and(|d| entities_by_id(&d) == want)
    });
    let got = stored_json(s3)
        .map(|d| entities_by_id(&d))
        .unwrap_or_default();
    assert!(
        ok,
        "{}: not exported; first difference: {}",
        world.profile().name,
        first_difference(&got, &want)
    );
}

/// The Admin API requests with `path` (query stripped), by the worker that sent them.
fn admin_paths(world: &World, path: &str) -> Vec<(usize, std::time::Duration)> {
    calls_to(world, CP_ADMIN)
        .into_iter()
        .filter(|c| c.request.path.split('?').next() == Some(path))
        .map(|c| (c.origin.worker, c.sent_at))
        .collect()
}

/// A DB-less node whose configuration changes three times is exported three times, each export
/// equal to the node's configuration in Kong's flat form; one worker polls `/status`, about once
/// per poll interval.
#[test]
fn three_changes_of_a_db_less_node_are_three_exports_of_its_flat_form() {
    for profile in two_profiles() {
        let (admin, mut world, s3) = dbless_source(&profile);
        for n in 1..=3 {
            admin.set_config(kong_config(n));
            let changed_at = world.elapsed();
            until_exported(&mut world, &s3, &admin);
            let doc = stored_json(&s3).unwrap();
            assert_eq!(doc["_format_version"], json!("3.0"), "{}", profile.name);
            assert_eq!(doc["_transform"], json!(false), "{}", profile.name);
            // Foreign keys as plain ids.
            for r in doc["routes"].as_array().unwrap() {
                assert!(r["service"].is_string(), "{}: {r}", profile.name);
            }
            for t in doc["targets"].as_array().unwrap() {
                assert!(t["upstream"].is_string(), "{}: {t}", profile.name);
            }
            println!(
                "{}: config {n} exported {:.1} s after the change",
                profile.name,
                (world.elapsed() - changed_at).as_secs_f64()
            );
            // Spaced beyond the export delay (5 s).
            world.advance(secs(15));
        }
        let uploads: Vec<_> = puts(&s3).into_iter().filter(|p| p.status == 200).collect();
        assert_eq!(uploads.len(), 3, "{}", profile.name);
        assert_eq!(log_messages(&world, EXPORTED).len(), 3, "{}", profile.name);

        // One worker polls /status: about once per poll interval (1 s) while nothing changes
        // (a dump reads the collections instead, one page per tick).
        let status = admin_paths(&world, "/status");
        let workers: BTreeSet<usize> = status.iter().map(|(w, _)| *w).collect();
        assert_eq!(workers.len(), 1, "{}: {workers:?}", profile.name);
        let quiet_from = world.elapsed() - secs(14);
        let quiet = status.iter().filter(|(_, t)| *t > quiet_from).count();
        assert!(
            (13..=15).contains(&quiet),
            "{}: {quiet} /status requests in the last 14 s without a change",
            profile.name
        );
        let all_workers: BTreeSet<usize> = calls_to(&world, CP_ADMIN)
            .iter()
            .map(|c| c.origin.worker)
            .collect();
        assert_eq!(all_workers, workers, "{}", profile.name);
        assert_no_secrets(&world, &[]);
    }
}

/// The ids of `doc`'s entities that Kong's export leaves in: all but disabled services, their
/// routes, the plugins and filter chains on either, and disabled plugins.
fn expected_ids(doc: &Value) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let ids = |name: &str, keep: &dyn Fn(&Value) -> bool| -> BTreeSet<String> {
        doc[name]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| keep(e))
            .filter_map(|e| e["id"].as_str().map(str::to_string))
            .collect()
    };
    let disabled = ids("services", &|s| s["enabled"] == json!(false));
    let routes_off = ids("routes", &|r| {
        r["service"].as_str().is_some_and(|s| disabled.contains(s))
    });
    let on_disabled = |e: &Value| {
        e["service"].as_str().is_some_and(|s| disabled.contains(s))
            || e["route"].as_str().is_some_and(|r| routes_off.contains(r))
    };
    let mut out = std::collections::BTreeMap::new();
    for name in doc.as_object().unwrap().keys() {
        if name.starts_with('_') || name == "workspaces" {
            continue;
        }
        let keep: &dyn Fn(&Value) -> bool = match name.as_str() {
            "services" => &|s: &Value| s["enabled"] != json!(false),
            "plugins" => &|e: &Value| !on_disabled(e) && e["enabled"] != json!(false),
            "routes" | "filter_chains" => &|e: &Value| !on_disabled(e),
            _ => &|_: &Value| true,
        };
        out.insert(name.clone(), ids(name, keep));
    }
    out
}

/// A database-backed node (no configuration hash) with a generated configuration — 19 entity
/// types, 1,200 consumers and as many key-auth credentials (two pages each), disabled services —
/// is exported completely in one document: every entity, foreign keys as plain ids, disabled
/// services and what hangs on them left out.
#[test]
fn a_database_node_is_exported_completely_across_pages() {
    let generated = host_harness::mocks::kong::generate::generate(30, 11);
    for profile in two_profiles() {
        let admin = MockKongAdmin::database(KONG_VERSION);
        admin.set_config(generated.clone());
        let mut cfg = admin_source_config(&profile, CP_ADMIN);
        cfg["kong_admin_dump_interval"] = json!(5);
        let (mut world, s3) = source_world(&profile, admin.clone(), &cfg);
        let ok = world.advance_until(secs(300), secs(5), |_| stored_json(&s3).is_some());
        assert!(ok, "{}: nothing exported", profile.name);
        let doc = stored_json(&s3).unwrap();
        let types = doc
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !k.starts_with('_'))
            .count();
        assert!(types >= 12, "{}: {types} entity types", profile.name);
        assert!(doc["consumers"].as_array().unwrap().len() > 1000);
        // Every entity Kong's export keeps, and no other.
        let got: std::collections::BTreeMap<String, BTreeSet<String>> = entities_by_id(&doc)
            .into_iter()
            .map(|(k, v)| (k, v.into_keys().collect()))
            .collect();
        let want = expected_ids(&generated);
        let want: std::collections::BTreeMap<String, BTreeSet<String>> =
            want.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        for (name, ids) in &want {
            assert_eq!(&got[name], ids, "{}: {name}", profile.name);
        }
        // Foreign keys are plain id strings pointing at exported entities.
        for (name, fk, target) in [
            ("routes", "service", "services"),
            ("targets", "upstream", "upstreams"),
            ("keyauth_credentials", "consumer", "consumers"),
            ("basicauth_credentials", "consumer", "consumers"),
            ("snis", "certificate", "certificates"),
            ("keys", "set", "key_sets"),
            ("filter_chains", "service", "services"),
        ] {
            for e in doc[name].as_array().unwrap() {
                let id = e[fk].as_str().unwrap_or_else(|| panic!("{name}.{fk}: {e}"));
                assert!(got[target].contains(id), "{name}.{fk} {id} dangles");
            }
        }
        // Consumers and key-auth credentials took two pages each (Kong's `next`).
        for path in ["/consumers", "/key-auths"] {
            let pages = admin_paths(&world, path).len();
            assert!(pages >= 4, "{path}: {pages} pages over two dumps");
        }
        println!(
            "{}: {} entities of {types} types, {} bytes, exported at {:?} after {} Admin API requests",
            profile.name,
            got.values().map(|v| v.len()).sum::<usize>(),
            s3.object(BUCKET, CONFIG_KEY).unwrap().body.len(),
            world.elapsed(),
            calls_to(&world, CP_ADMIN).len()
        );
    }
}

/// Field for field, the export of a database-backed node is what Kong's own
/// `declarative.export_config()` writes for it (nulls aside: the filter drops them).
#[test]
fn the_export_is_kongs_own_export_field_for_field() {
    let generated = host_harness::mocks::kong::generate::generate(10, 5);
    let profile = host_harness::HostProfile::ngx_wasm_module();
    let admin = MockKongAdmin::database(KONG_VERSION);
    admin.set_config(generated);
    let mut cfg = admin_source_config(&profile, CP_ADMIN);
    cfg["kong_admin_dump_interval"] = json!(5);
    let (mut world, s3) = source_world(&profile, admin.clone(), &cfg);
    assert!(world.advance_until(secs(300), secs(5), |_| stored_json(&s3).is_some()));
    let ours = entities_by_id(&stored_json(&s3).unwrap());
    let kong = entities_by_id(&admin.export_config());
    let differences = differences(&ours, &kong);
    assert!(
        differences.is_empty(),
        "{} entities differ from Kong's export_config() (got: ours):\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// The entities of a configuration as a DB-less node stores it, timestamps aside (a load sets
/// them to the load time).
fn loaded_entities(
    doc: &Value,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, Value>> {
    let scratch = MockKongAdmin::dbless(KONG_VERSION);
    scratch.set_config(doc.clone());
    without_timestamps(entities_by_id(&scratch.export_config()))
}

fn without_timestamps(
    mut m: std::collections::BTreeMap<String, std::collections::BTreeMap<String, Value>>,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, Value>> {
    for e in m.values_mut().flat_map(|c| c.values_mut()) {
        if let Some(o) = e.as_object_mut() {
            o.remove("updated_at");
            o.remove("created_at");
        }
    }
    m
}

/// A configuration change in the middle of a dump (after each request of it in turn) never gives
/// a mixed export: every upload is one configuration entirely, and the newest lands.
#[test]
fn a_change_during_the_dump_never_exports_a_mix() {
    for profile in two_profiles() {
        for database in [false, true] {
            let admin = match database {
                false => MockKongAdmin::dbless(KONG_VERSION),
                true => MockKongAdmin::database(KONG_VERSION),
            };
            let mut cfg = admin_source_config(&profile, CP_ADMIN);
            cfg["kong_admin_dump_interval"] = json!(2);
            let (mut world, s3) = source_world(&profile, admin.clone(), &cfg);
            let mut known = vec![loaded_entities(&kong_config(100))];
            admin.set_config(kong_config(100));
            // After the n-th request from the /status that starts the dump: 21 collection
            // pages, then the /status check (DB-less) or the second dump (database).
            let points: Vec<u64> = match database {
                false => (1..=23).collect(),
                true => vec![1, 5, 12, 20, 25, 40],
            };
            for (k, n) in points.iter().enumerate() {
                let (before, after) = (200 + 2 * k as u32, 201 + 2 * k as u32);
                known.push(loaded_entities(&kong_config(before)));
                known.push(loaded_entities(&kong_config(after)));
                let want = known.last().unwrap().clone();
                // Start from a quiet node: the next request is the /status of a poll.
                world.advance(secs(3));
                admin.set_config(kong_config(before));
                admin.change_after_requests(*n, kong_config(after));
                let ok = world.advance_until(secs(240), secs(1), |_| {
                    stored_json(&s3).is_some_and(|d| without_timestamps(entities_by_id(&d)) == want)
                });
                assert!(ok, "{} (database {database}): change after {n} requests: the newest config never landed", profile.name);
            }
            for (i, body) in put_bodies(&world).iter().enumerate() {
                let doc: Value = serde_json::from_slice(body).expect("an uploaded body is JSON");
                let got = without_timestamps(entities_by_id(&doc));
                assert!(
                    known.contains(&got),
                    "{} (database {database}): upload {i} is not any one configuration: {}",
                    profile.name,
                    first_difference(&got, known.last().unwrap())
                );
            }
            println!(
                "{} (database {database}): {} uploads for {} changes, {} 'changed during the dump' lines",
                profile.name,
                put_bodies(&world).len(),
                points.len() * 2,
                log_messages(&world, "changed during the dump").len()
            );
        }
    }
}

/// Kong Enterprise RBAC: with `kong_admin_token` (setting or `KONG_ADMIN_TOKEN`) every request
/// carries it and the export works; without it, one clear line naming RBAC per failed poll, no
/// export. The token never reaches a log line.
#[test]
fn rbac_needs_the_token_and_never_logs_it() {
    for profile in two_profiles() {
        for how in ["setting", "environment", "none"] {
            let admin = MockKongAdmin::dbless(KONG_VERSION).with_admin_token(ADMIN_TOKEN);
            admin.set_config(kong_config(1));
            let mut cfg = admin_source_config(&profile, CP_ADMIN);
            let mut env = Vec::new();
            match how {
                "setting" => cfg["kong_admin_token"] = json!(ADMIN_TOKEN),
                "environment" => env.push(("KONG_ADMIN_TOKEN", ADMIN_TOKEN)),
                _ => {}
            }
            let s3 = mock_s3();
            let mut world = world_with_storage(&profile, s3.clone());
            route_host(&mut world, CP_ADMIN, admin.clone());
            add_node(&mut world, "n1", 2, &cfg, &env);
            world.advance(secs(40));
            let calls = calls_to(&world, CP_ADMIN);
            assert!(!calls.is_empty());
            if how == "none" {
                assert!(
                    puts(&s3).is_empty(),
                    "{}: exported without a token",
                    profile.name
                );
                let lines = log_messages(&world, "RBAC");
                assert!(lines.len() >= 2, "{}: retried: {lines:?}", profile.name);
                assert!(
                    lines[0].contains("/status: HTTP 401") && lines[0].contains("kong_admin_token"),
                    "{}: {}",
                    profile.name,
                    lines[0]
                );
                assert!(calls
                    .iter()
                    .all(|c| c.request.header("kong-admin-token").is_none()));
            } else {
                assert_eq!(puts(&s3).len(), 1, "{} ({how})", profile.name);
                let doc = stored_json(&s3).unwrap();
                assert_eq!(
                    entities_by_id(&doc),
                    entities_by_id(&admin.export_config()),
                    "{} ({how})",
                    profile.name
                );
                assert!(calls
                    .iter()
                    .all(|c| c.request.header("kong-admin-token") == Some(ADMIN_TOKEN)));
                assert!(log_messages(&world, "RBAC").is_empty());
            }
            // Neither the token nor anything else secret in any line (the summary line
            // included: it names the Admin API, never the token).
            assert_no_secrets(&world, &[ADMIN_TOKEN]);
        }
    }
}

/// One way the Admin API can fail, and the line that names it.
struct Breakage {
    what: &'static str,
    /// Which requests it hits.
    pages_only: bool,
    fault: Fault,
    line: &'static str,
}

fn breakages() -> Vec<Breakage> {
    let kong_error = |status: u16, message: &str| {
        Fault::Respond(host_harness::http::HttpResponse::json(
            status,
            &json!({ "message": message }),
        ))
    };
    // A page of 16 MB that never ends (an answer cut off, or garbage).
    let mut huge = br#"{"data":["#.to_vec();
    while huge.len() < 16 * 1024 * 1024 {
        huge.extend_from_slice(
            br#"{"id":"00000000-0000-4000-8000-000000000000","username":"u","custom_id":null},"#,
        );
    }
    vec![
        Breakage {
            what: "connection refused",
            pages_only: false,
            fault: Fault::reset(),
            line: "failed: ",
        },
        Breakage {
            what: "500",
            pages_only: true,
            fault: kong_error(500, "An unexpected error occurred"),
            line: "/consumers: HTTP 500; the dump is abandoned",
        },
        Breakage {
            what: "401",
            pages_only: false,
            fault: kong_error(401, "Invalid RBAC credentials"),
            line: "/status: HTTP 401 (RBAC",
        },
        Breakage {
            what: "truncated body",
            pages_only: true,
            fault: Fault::Truncate { keep: 40 },
            line: "/consumers: the page is",
        },
        Breakage {
            what: "invalid JSON",
            pages_only: true,
            fault: Fault::Respond(
                host_harness::http::HttpResponse::new(200)
                    .with_header("content-type", "text/html")
                    .with_body("<html><body>502 Bad Gateway</body></html>"),
            ),
            line: "/consumers: the page is",
        },
        Breakage {
            what: "huge page",
            pages_only: true,
            fault: Fault::Respond(host_harness::http::HttpResponse::new(200).with_body(huge)),
            line: "/consumers: the page is",
        },
    ]
}

/// Every Admin API failure gives a clear line, is retried, never traps, and never replaces the
/// good export with a partial or empty one: first with nothing changed, then with a change that
/// cannot be read; once the Admin API heals, the change lands.
#[test]
fn admin_api_failures_never_replace_a_good_export() {
    for profile in two_profiles() {
        for b in breakages() {
            let admin = MockKongAdmin::dbless(KONG_VERSION);
            admin.set_config(kong_config(1));
            let faulty = Faulty::new(std::sync::Arc::new(admin.clone()));
            let cfg = admin_source_config(&profile, CP_ADMIN);
            let (mut world, s3) = source_world(&profile, faulty.clone(), &cfg);
            until_exported(&mut world, &s3, &admin);
            let good = s3.object(BUCKET, CONFIG_KEY).unwrap();
            let uploads = puts(&s3).len();
            let rule = if b.pages_only {
                faulty.always(|r, _| r.path.starts_with("/consumers"), b.fault.clone())
            } else {
                faulty.always(|_, _| true, b.fault.clone())
            };
            // Broken, nothing changed.
            world.advance(secs(20));
            // Broken, and a change that cannot be read.
            admin.set_config(kong_config(2));
            world.advance(secs(90));
            let context = format!("{} / {}", profile.name, b.what);
            assert_eq!(
                puts(&s3).len(),
                uploads,
                "{context}: something was uploaded"
            );
            assert_eq!(s3.object(BUCKET, CONFIG_KEY).unwrap(), good, "{context}");
            let lines = log_messages(&world, "fetching the config from the Kong Admin API");
            assert!(
                lines.len() >= 2,
                "{context}: not retried, or not said: {lines:?}"
            );
            assert!(
                lines.iter().all(|l| l.contains(b.line)),
                "{context}: {lines:?}"
            );
            assert!(world.traps().is_empty(), "{context}: {:?}", world.traps());
            // Healed: the change lands.
            faulty.remove(rule);
            until_exported(&mut world, &s3, &admin);
            println!(
                "{context}: {} failure lines, e.g. {}",
                lines.len(),
                lines[0]
            );
            assert_no_secrets(&world, &[]);
        }
    }
}

/// A DB-less node with no configuration (`configuration_hash` of 32 zeros) is never exported:
/// one line says so, and only `/status` is asked. A node that loses its configuration after a
/// good export leaves that export in place.
#[test]
fn an_empty_db_less_node_is_never_exported() {
    for profile in two_profiles() {
        let (admin, mut world, s3) = dbless_source(&profile);
        world.advance(secs(60));
        assert!(
            s3.requests().is_empty(),
            "{}: {:?}",
            profile.name,
            s3.requests()
        );
        assert_eq!(
            log_messages(&world, "has no configuration yet").len(),
            1,
            "{}",
            profile.name
        );
        assert!(admin.requests().iter().all(|r| r.request.path == "/status"));

        admin.set_config(kong_config(1));
        until_exported(&mut world, &s3, &admin);
        let good = s3.object(BUCKET, CONFIG_KEY).unwrap();
        admin.clear_config();
        world.advance(secs(120));
        assert_eq!(puts(&s3).len(), 1, "{}", profile.name);
        assert_eq!(s3.object(BUCKET, CONFIG_KEY).unwrap(), good);
        assert_eq!(
            log_messages(&world, "has no configuration yet").len(),
            2,
            "{}",
            profile.name
        );
    }
}

/// Nothing changes for 10 virtual minutes (default poll interval, 10 s): only `/status` reaches
/// the Admin API, one per poll.
#[test]
fn an_unchanged_node_costs_one_status_request_per_poll() {
    for profile in two_profiles() {
        let admin = MockKongAdmin::dbless(KONG_VERSION);
        admin.set_config(kong_config(1));
        let mut cfg = admin_source_config(&profile, CP_ADMIN);
        if let Some(o) = cfg.as_object_mut() {
            o.remove("config_poll_interval");
        }
        let (mut world, s3) = source_world(&profile, admin.clone(), &cfg);
        until_exported(&mut world, &s3, &admin);
        world.advance(secs(5));
        admin.clear_requests();
        let start = world.elapsed();
        world.advance(secs(600));
        let requests = admin.requests();
        let paths: BTreeSet<&str> = requests.iter().map(|r| r.request.path.as_str()).collect();
        assert_eq!(paths, BTreeSet::from(["/status"]), "{}", profile.name);
        assert!(
            (59..=61).contains(&requests.len()),
            "{}: {} requests in 10 minutes",
            profile.name,
            requests.len()
        );
        let per_minute: Vec<usize> = (0..10)
            .map(|m| {
                let from = start + secs(60 * m);
                calls_to(&world, CP_ADMIN)
                    .iter()
                    .filter(|c| c.sent_at >= from && c.sent_at < from + secs(60))
                    .count()
            })
            .collect();
        println!(
            "{}: Admin API requests per minute with nothing changing: {per_minute:?}; bytes per minute ≈ {}",
            profile.name,
            calls_to(&world, CP_ADMIN)
                .iter()
                .filter(|c| c.sent_at >= start)
                .filter_map(|c| match &c.outcome {
                    host_harness::CallOutcome::Response(r) => Some(r.body.len()),
                    _ => None,
                })
                .sum::<usize>()
                / 10
        );
        assert_eq!(puts(&s3).len(), 1, "{}", profile.name);
    }
}
