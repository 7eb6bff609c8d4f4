//! The built `config-bridge` binary against the mock S3 (real SigV4 verification, a session
//! token required) and mock Kong Admin APIs (RBAC token required), over TCP: the whole round
//! trip export → status → drill → import, and every exit code provoked once. Every run is
//! checked for secrets in its output (`common::run_with`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use serde_json::{json, Value};

#[test]
fn help_documents_the_commands_exit_codes_settings_and_examples() {
    let top = run_with(&["--help"], &[]);
    top.expect(0);
    for needle in [
        "import",
        "export",
        "drill",
        "status",
        "EXIT CODES",
        "13  storage unreachable",
        "AWS_SECRET_ACCESS_KEY",
        "EXAMPLES",
        "--skip-if-exists",
        "history",
        "diff",
        "22  drill --sample",
        "import --version 3.9.1 --before '2026-12-05 14:00' --out kong.json",
    ] {
        assert!(top.stdout.contains(needle), "{needle}: {}", top.stdout);
    }
    let import = run_with(&["import", "--help"], &[]);
    import.expect(0);
    for needle in [
        "--cp-probe",
        "--out",
        "--admin-url",
        "--timeout",
        "--json",
        "EXIT CODES",
    ] {
        assert!(
            import.stdout.contains(needle),
            "{needle}: {}",
            import.stdout
        );
    }
}

/// export (file) → export again (nothing uploaded) → status → drill → import to a file and to
/// an Admin API, byte-identical; drill against the live Admin API, same then different.
#[test]
fn a_file_export_round_trips_through_status_drill_and_both_imports() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let text = doc(false);
    let file = write(dir.path(), "kong.json", &text);

    let first = s3.cli(&format!(
        "export --version {VERSION} --from-file {file} --node-id ci-runner-1 --json"
    ));
    let out = first.expect(0).json();
    assert_eq!(out["result"], "ok");
    assert_eq!(out["uploaded"], true);
    assert_eq!(out["object"], format!("s3://{BUCKET}/{KEY}"));
    assert_eq!(out["uploader"], "ci-runner-1");
    assert!(out["message"]
        .as_str()
        .unwrap()
        .starts_with("exported config to"));
    // Byte for byte (trailing newline included), with the filter's metadata.
    assert_eq!(s3.body(KEY).unwrap(), text.as_bytes());
    let sha = config_bridge::document::sha256_hex(text.as_bytes());
    assert_eq!(s3.meta(KEY, "config-sha256").as_deref(), Some(sha.as_str()));
    assert_eq!(out["sha256"], sha);
    assert_eq!(s3.meta(KEY, "uploader").as_deref(), Some("ci-runner-1"));
    assert!(s3.meta(KEY, "config-applied-at").is_some());
    // The filter's sequence: HEAD first (404), then a conditional PUT; then the history
    // (docs/history.md): its listing and the same bytes and metadata under history/; the final
    // HEAD reports.
    assert_eq!(
        s3.calls(),
        ["HEAD 404", "PUT 200", "GET 200", "PUT 200", "HEAD 200"]
    );
    let history: Vec<String> = s3
        .s3
        .list_keys(BUCKET)
        .into_iter()
        .filter(|k| k.starts_with("fallback/3.9.1/history/"))
        .collect();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(s3.body(&history[0]).unwrap(), text.as_bytes());
    assert_eq!(
        s3.meta(&history[0], "config-sha256").as_deref(),
        Some(sha.as_str())
    );
    assert_eq!(out["history"]["recorded"], true, "{out}");

    // The same content again: one HEAD, no upload; the history's listing finds it recorded.
    s3.s3.clear_requests();
    let again = s3.cli(&format!("export --version {VERSION} --from-file {file}"));
    again.expect(0);
    assert!(
        again.stdout.contains("already holds this config"),
        "{again:#?}"
    );
    assert_eq!(s3.calls(), ["HEAD 200", "GET 200"]);

    let status = s3.cli("status --json").expect(0).json();
    let v = &status["versions"][0];
    assert_eq!(v["version"], VERSION);
    assert_eq!(v["export"]["bytes"], text.len());
    assert_eq!(v["export"]["uploader"], "ci-runner-1");
    assert_eq!(v["export"]["sha256"], sha);
    assert!(v["export"]["age_seconds"].as_u64().unwrap() < 60);
    // The history object is counted for its version, not as an "other" object.
    assert_eq!(v["history"]["count"], 1, "{status}");
    assert_eq!(status["other_objects"], 0, "{status}");
    let human = s3.cli("status").expect(0).stdout.clone();
    assert!(
        human.contains("    history: 1 export(s), the newest"),
        "{human}"
    );
    assert!(
        human.contains(&format!("{VERSION}: {} bytes", text.len())),
        "{human}"
    );

    let drill = s3.cli(&format!("drill --version {VERSION} --max-age 3600"));
    drill.expect(0);
    for needle in [
        "matches its config-sha256 metadata",
        "uploader  ci-runner-1",
        "from x-amz-meta-config-applied-at",
        "routes 1, services 1",
        "drill passed",
    ] {
        assert!(drill.stdout.contains(needle), "{needle}: {drill:#?}");
    }

    // Import to a file: byte-identical, private, nothing left behind.
    let target = dir.path().join("declarative.json");
    let import = s3.cli(&format!(
        "import --version {VERSION} --out {} --json",
        target.display()
    ));
    let out = import.expect(0).json();
    assert_eq!(std::fs::read(&target).unwrap(), text.as_bytes());
    assert_eq!(out["uploader"], "ci-runner-1");
    assert_eq!(out["bytes"], text.len());
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);

    // Import through an empty node's Admin API (RBAC): the document arrives unchanged.
    let (kong, kong_srv) = start_kong();
    let admin = kong_srv.url();
    let posted = s3.cli(&format!("import --version {VERSION} --admin-url {admin}"));
    posted.expect(0);
    assert!(
        posted.stdout.contains("fallback config applied from"),
        "{posted:#?}"
    );
    let posts = kong.posts();
    assert_eq!(posts.len(), 1);
    assert!(posts[0].flatten_errors);
    assert_eq!(posts[0].body_size, text.len());
    assert_eq!(
        kong.config().unwrap(),
        serde_json::from_str::<Value>(&text).unwrap()
    );

    // The node has it now: a drill against it passes, a second import skips.
    let same = s3.cli(&format!(
        "drill --version {VERSION} --compare-admin {admin} --json"
    ));
    assert_eq!(same.expect(0).json()["compare"]["same"], true);
    let again = s3.cli(&format!(
        "import --version {VERSION} --admin-url {admin} --json"
    ));
    assert_eq!(again.expect(10).json()["reason"], "configured");
    assert_eq!(kong.posts().len(), 1);

    // The live configuration moves on: the drill says how the backup differs, in one line.
    kong.set_config(serde_json::from_str(&doc(true)).unwrap());
    let differs = s3.cli(&format!(
        "drill --version {VERSION} --compare-admin {admin}"
    ));
    differs.expect(21);
    assert!(
        differs.stdout.contains("services: 1 not in the backup"),
        "{differs:#?}"
    );
    let reason: Vec<&str> = differs.stderr.lines().collect();
    assert_eq!(reason.len(), 1, "one line: {differs:#?}");
    assert!(
        reason[0].contains("drill FAILED: different: "),
        "{differs:#?}"
    );
}

/// Through an Admin API, an exporting config-bridge filter in the document is disabled (the
/// engine's import rule: a fallback node must not start exporting over the real backup); the rest
/// of the document arrives as exported.
#[test]
fn an_admin_api_import_disables_exporting_filters() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let mut doc: Value = serde_json::from_str(&doc(false)).unwrap();
    doc["filter_chains"] = json!([{
        "id": "7d3c1b2a-0f4e-4c5d-9e8f-1a2b3c4d5e06", "name": "backup",
        "service": "0b6f8e7e-6a3f-4d52-9a86-2f1b8e3c5a01",
        "filters": [{"name": "config_bridge", "config": {"cluster_fallback_config_export": "on"}}]
    }]);
    let file = write(dir.path(), "kong.json", &doc.to_string());
    s3.cli(&format!("export --version {VERSION} --from-file {file}"))
        .expect(0);
    let (kong, kong_srv) = start_kong();
    s3.cli(&format!(
        "import --version {VERSION} --admin-url {}",
        kong_srv.url()
    ))
    .expect(0);
    let applied = kong.config().unwrap();
    assert_eq!(applied["filter_chains"][0]["filters"][0]["enabled"], false);
    assert_eq!(applied["services"], doc["services"]);
    assert_eq!(applied["routes"], doc["routes"]);
}

/// The Admin API as the source: Kong's flat form read page by page (with the RBAC token),
/// exported, and a drill against the same node finds it identical. A URL source too.
#[test]
fn exports_from_an_admin_api_and_a_url() {
    let s3 = S3::start();
    let (kong, kong_srv) = start_kong();
    kong.set_config(serde_json::from_str(&doc(true)).unwrap());
    let admin = kong_srv.url();
    let run = s3.cli(&format!(
        "export --version {VERSION} --from-admin {admin} --json"
    ));
    assert_eq!(run.expect(0).json()["uploaded"], true);
    let stored: Value = serde_json::from_slice(&s3.body(KEY).unwrap()).unwrap();
    assert_eq!(stored["_format_version"], "3.0");
    assert_eq!(stored["_transform"], false);
    assert_eq!(stored["services"].as_array().unwrap().len(), 2);
    assert_eq!(
        stored["routes"][0]["service"],
        "0b6f8e7e-6a3f-4d52-9a86-2f1b8e3c5a01"
    );
    s3.cli(&format!(
        "drill --version {VERSION} --compare-admin {admin}"
    ))
    .expect(0);

    // An empty node: nothing to export, nothing uploaded.
    let (_empty, empty_srv) = start_kong();
    s3.cli(&format!(
        "export --version 3.8.0 --from-admin {}",
        empty_srv.url()
    ))
    .expect(11);
    assert!(s3.body("fallback/3.8.0/config.json").is_none());

    // A URL answering a declarative configuration.
    let text = doc(false);
    let url_srv = answering(200, &text);
    s3.cli(&format!(
        "export --version 3.7.0 --from-url {}/kong.json",
        url_srv.url()
    ))
    .expect(0);
    assert_eq!(
        s3.body("fallback/3.7.0/config.json").unwrap(),
        text.as_bytes()
    );
}

#[test]
fn import_skips_when_a_config_is_persisted_or_the_cp_answers() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let text = doc(false);
    let file = write(dir.path(), "kong.json", &text);
    s3.cli(&format!("export --version {VERSION} --from-file {file}"))
        .expect(0);
    let out = dir.path().join("out.json");
    let to_file = format!("import --version {VERSION} --out {}", out.display());
    s3.s3.clear_requests();

    // A persisted configuration (Kong's LMDB directory): not even the storage is asked.
    let lmdb = dir.path().join("dbless.lmdb");
    std::fs::create_dir(&lmdb).unwrap();
    let skipped = s3.cli(&format!(
        "{to_file} --skip-if-exists {} --json",
        lmdb.display()
    ));
    assert_eq!(skipped.expect(10).json()["reason"], "persisted");
    assert!(s3.calls().is_empty());

    // The CP answers (any status below 500): skipped.
    let cp = answering(401, "{}");
    let up = s3.cli(&format!("{to_file} --cp-probe {}", cp.url()));
    up.expect(10);
    assert!(up.stderr.contains("source of truth answers"), "{up:#?}");
    assert!(s3.calls().is_empty() && !out.exists());

    // The CP fails (503) or is down: imported.
    let failing = answering(503, "{}");
    s3.cli(&format!("{to_file} --cp-probe {}", failing.url()))
        .expect(0);
    std::fs::remove_file(&out).unwrap();
    let down = closed_port_url();
    s3.cli(&format!("{to_file} --cp-probe {down}")).expect(0);
    assert_eq!(std::fs::read(&out).unwrap(), text.as_bytes());

    // Through an Admin API, the probe is the engine's: the CP answers, nothing is posted.
    let (kong, kong_srv) = start_kong();
    let to_admin = format!("import --version {VERSION} --admin-url {}", kong_srv.url());
    let run = s3.cli(&format!("{to_admin} --cp-probe {} --json", cp.url()));
    assert_eq!(run.expect(10).json()["reason"], "cp-up");
    assert!(kong.posts().is_empty());
    s3.cli(&format!("{to_admin} --cp-probe {down}")).expect(0);
    assert_eq!(kong.posts().len(), 1);
}

#[test]
fn nothing_to_import_and_invalid_objects_have_their_own_exit_codes() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let (kong, kong_srv) = start_kong();
    let admin = kong_srv.url();

    // 11: no export for this version; an empty prefix.
    s3.cli(&format!("import --version 9.9.9 --out {}", out.display()))
        .expect(11);
    s3.cli("drill --version 9.9.9").expect(11);
    s3.cli("status").expect(11);
    s3.cli(&format!("import --version 9.9.9 --admin-url {admin}"))
        .expect(11);

    // 12: not JSON; no _format_version. Through an Admin API, the engine's import refuses the
    // same objects and posts nothing.
    let now = SystemTime::now();
    s3.put_direct("fallback/6.6.6/config.json", b"<html>oops</html>", now);
    s3.put_direct("fallback/6.6.7/config.json", br#"{"services":[]}"#, now);
    for version in ["6.6.6", "6.6.7"] {
        let run = s3.cli(&format!(
            "import --version {version} --out {}",
            out.display()
        ));
        run.expect(12);
        assert!(run.stderr.contains("is not applied"), "{run:#?}");
        s3.cli(&format!("drill --version {version}")).expect(12);
        s3.cli(&format!("import --version {version} --admin-url {admin}"))
            .expect(12);
    }
    assert!(kong.posts().is_empty());
    assert!(!out.exists());
    // Over --max-bytes.
    let file = write(dir.path(), "kong.json", &doc(false));
    s3.cli(&format!("export --version {VERSION} --from-file {file}"))
        .expect(0);
    s3.cli(&format!(
        "import --version {VERSION} --out {} --max-bytes 10",
        out.display()
    ))
    .expect(12);

    // 12: Kong refuses the document (400).
    kong.next_post_responses([400]);
    let refused = s3.cli(&format!("import --version {VERSION} --admin-url {admin}"));
    refused.expect(12);
    assert!(refused.stderr.contains("refused"), "{refused:#?}");

    // 12: an export whose input is not a declarative configuration (a file, a URL's answer).
    let url_srv = answering(200, "{\"services\": []}");
    let url = format!("{}/kong.json", url_srv.url());
    s3.cli(&format!(
        "export --version {VERSION} --from-url {url} --timeout 1"
    ))
    .expect(12);
    let bad = write(dir.path(), "bad.json", "{\"services\": []}");
    s3.cli(&format!("export --version {VERSION} --from-file {bad}"))
        .expect(12);
}

/// `env` with `name` replaced by `value` (or removed, for `None`).
fn with(
    env: &[(&'static str, String)],
    name: &'static str,
    value: Option<String>,
) -> Vec<(&'static str, String)> {
    let mut env: Vec<_> = env.iter().filter(|(k, _)| *k != name).cloned().collect();
    env.extend(value.map(|v| (name, v)));
    env
}

#[test]
fn unreachable_storage_and_sources_after_retries_until_the_timeout() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let file = write(dir.path(), "kong.json", &doc(false));

    // 13: nothing listens at the endpoint; retried with backoff until --timeout.
    let env = with(
        &s3.env(),
        "AWS_CONFIG_STORAGE_ENDPOINT",
        Some(closed_port_url()),
    );
    let started = Instant::now();
    let run = cli_with(
        &format!(
            "import --version {VERSION} --out {} --timeout 1.5",
            out.display()
        ),
        &env,
    );
    run.expect(13);
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "retried until the timeout"
    );
    assert!(run.stderr.contains("retrying in"), "{run:#?}");
    cli_with(&format!("drill --version {VERSION} --timeout 0.5"), &env).expect(13);
    cli_with("status --timeout 0.5", &env).expect(13);
    cli_with(
        &format!("export --version {VERSION} --from-file {file} --timeout 1"),
        &env,
    )
    .expect(13);

    // 2, at once: the storage refuses a wrong secret, which no retry can fix (the server's
    // code and the fix, never a secret), for the engine's export and the direct reads alike.
    let wrong = with(
        &s3.env(),
        "AWS_SECRET_ACCESS_KEY",
        Some("wrong-secret".into()),
    );
    for line in [
        format!("export --version {VERSION} --from-file {file} --timeout 30 -vv"),
        format!(
            "import --version {VERSION} --out {} --timeout 30",
            out.display()
        ),
        "status --timeout 30".to_string(),
    ] {
        let started = Instant::now();
        let run = cli_with(&line, &wrong);
        run.expect(2);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "stopped at once, not at the timeout: {line}"
        );
        assert!(run.stderr.contains("SignatureDoesNotMatch"), "{run:#?}");
        assert!(
            run.stderr
                .contains("aws_secret_access_key / AWS_SECRET_ACCESS_KEY"),
            "names the fix: {run:#?}"
        );
        assert!(!run.stderr.contains("wrong-secret"));
        assert!(!run.stderr.contains("retrying in"), "{run:#?}");
    }
    // An unknown access key id: the same, with its own fix.
    let unknown = with(&s3.env(), "AWS_ACCESS_KEY_ID", Some("AKIAUNKNOWN".into()));
    let run = cli_with("status --timeout 30", &unknown);
    run.expect(2);
    assert!(run.stderr.contains("InvalidAccessKeyId"), "{run:#?}");

    // 14: the source or the Admin API does not answer.
    s3.cli(&format!("export --version {VERSION} --from-file {file}"))
        .expect(0);
    let down = closed_port_url();
    for line in [
        format!("export --version {VERSION} --from-url {down}/kong.json"),
        format!("export --version {VERSION} --from-admin {down}"),
        format!("import --version {VERSION} --admin-url {down}"),
        format!("drill --version {VERSION} --compare-admin {down}"),
    ] {
        s3.cli(&format!("{line} --timeout 1")).expect(14);
    }
    // A missing RBAC token: the Admin API refuses.
    let (_kong, kong_srv) = start_kong();
    let no_token = with(&s3.env(), "KONG_ADMIN_TOKEN", None);
    let run = cli_with(
        &format!(
            "drill --version {VERSION} --compare-admin {}",
            kong_srv.url()
        ),
        &no_token,
    );
    run.expect(14);
    assert!(run.stderr.contains("RBAC"), "{run:#?}");
}

#[test]
fn usage_and_local_errors() {
    let s3 = S3::start();
    // 2: no storage at all; a bad storage URL; no region; clap's own usage errors.
    let run = run_with(&["status"], &[]);
    run.expect(2);
    assert!(
        run.stderr.contains("cluster_fallback_config_storage"),
        "{run:#?}"
    );
    s3.cli("status --storage ftp://bucket/p").expect(2);
    let run = cli_with(
        &format!("drill --version {VERSION}"),
        &with(&s3.env(), "AWS_REGION", None),
    );
    run.expect(2);
    assert!(
        run.stderr.contains("S3 region is not configured"),
        "{run:#?}"
    );
    s3.cli(&format!("import --version {VERSION}")).expect(2);
    s3.cli(&format!("export --version {VERSION}")).expect(2);
    s3.cli(&format!(
        "import --version {VERSION} --out x --file-mode 999"
    ))
    .expect(2);
    s3.cli("status --timeout -1").expect(2);
    // A settings file with an unknown key (the core's check, naming the key).
    let dir = tempfile::tempdir().unwrap();
    let settings = write(dir.path(), "s.json", r#"{"aws_regoin": "us-east-1"}"#);
    let run = s3.cli(&format!("status --settings {settings}"));
    run.expect(2);
    assert!(
        run.stderr.contains("aws_regoin: unknown setting"),
        "{run:#?}"
    );

    // 1: unreadable input, unwritable output.
    s3.cli(&format!(
        "export --version {VERSION} --from-file /nonexistent/kong.json"
    ))
    .expect(1);
    let file = write(dir.path(), "kong.json", &doc(false));
    s3.cli(&format!("export --version {VERSION} --from-file {file}"))
        .expect(0);
    let run = s3.cli(&format!(
        "import --version {VERSION} --out /nonexistent/dir/kong.json"
    ));
    run.expect(1);
    assert!(run.stderr.contains("cannot write"), "{run:#?}");
}

/// An export older than `--max-age` (its age from Last-Modified when it has no metadata, as an
/// object Kong Enterprise wrote).
#[test]
fn drill_fails_a_stale_backup() {
    let s3 = S3::start();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    s3.put_direct(KEY, doc(false).as_bytes(), two_hours_ago);
    let run = s3.cli(&format!("drill --version {VERSION} --max-age 3600"));
    run.expect(20);
    assert!(run.stdout.contains("from Last-Modified"), "{run:#?}");
    assert!(run.stdout.contains("no config-sha256 metadata"), "{run:#?}");
    assert!(
        run.stderr
            .contains("drill FAILED: stale: the export is 2h 00m old"),
        "{run:#?}"
    );
    let out = s3
        .cli(&format!("drill --version {VERSION} --max-age 3600 --json"))
        .expect(20)
        .json();
    assert_eq!(out["result"], "stale");
    assert_eq!(out["age_from"], "Last-Modified");
    s3.cli(&format!("drill --version {VERSION} --max-age 10000"))
        .expect(0);
}

/// A newer config in storage (seen after ours) is not overwritten: exit 10.
#[test]
fn export_never_overwrites_a_newer_config() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "kong.json", &doc(false));
    // Another exporter's object, applied an hour from now (clocks can disagree).
    let newer = doc(true).into_bytes();
    signed_put(&s3, &newer, now_ms() + 3_600_000, "other-node");
    let run = s3.cli(&format!(
        "export --version {VERSION} --from-file {file} --json"
    ));
    let out = run.expect(10).json();
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .contains("holds a newer config"),
        "{out}"
    );
    assert_eq!(s3.body(KEY).unwrap(), newer);
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A PUT with the filter's metadata, built and signed by the core's store.
fn signed_put(s3: &S3, body: &[u8], applied_at: u64, uploader: &str) {
    use config_bridge::store::{self, ExportMeta, Precondition};
    let settings = serde_json::to_vec(&json!({
        "cluster_fallback_config_export": true,
        "cluster_fallback_config_storage": STORAGE,
        "gateway_version": VERSION,
        "aws_region": "us-east-1",
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
        "aws_session_token": SESSION_TOKEN,
        "storage_endpoint": s3.server.url(),
        "config": {"_format_version": "3.0"},
    }))
    .unwrap();
    let cfg = config_bridge::settings::Config::parse(&settings, &|_| None).unwrap();
    let store = store::for_settings(&cfg.storage);
    let meta = ExportMeta {
        uploader: uploader.into(),
        applied_at,
        sha256_hex: config_bridge::document::sha256_hex(body),
        sha256: config_bridge::document::sha256(body),
        sequence: 1,
        updated_at_ms: None,
        supersedes: Vec::new(),
        seal: Vec::new(),
    };
    let req = store
        .put(
            KEY,
            &Rc::new(body.to_vec()),
            &Precondition::None,
            &meta,
            now_ms(),
        )
        .unwrap();
    let mut builder = ureq::http::Request::builder()
        .method("PUT")
        .uri(format!("{}://{}{}", req.scheme, req.authority, req.path));
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let resp = ureq::Agent::new_with_defaults()
        .run(builder.body(req.body.as_slice()).unwrap())
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

/// Election registrations as Kong writes them: fresh and stale candidates, the would-be leader.
#[test]
fn status_shows_election_candidates_and_the_would_be_leader() {
    let s3 = S3::start();
    let now = SystemTime::now();
    let long_ago = now - Duration::from_secs(3600);
    let election = "fallback/3.9.1/election";
    s3.put_direct(
        &format!("{election}/1733012300.5-dp-old-but-gone"),
        b"",
        long_ago,
    );
    s3.put_direct(&format!("{election}/1733012345.123-dp-b"), b"", now);
    s3.put_direct(&format!("{election}/1733012345.123-dp-a"), b"", now);
    s3.put_direct(&format!("{election}/1733012399-dp-young"), b"", now);
    s3.put_direct("fallback/3.10.0/config.json", doc(false).as_bytes(), now);
    s3.put_direct("fallback/README", b"hello", now);

    let out = s3.cli("status --json").expect(0).json();
    let versions = out["versions"].as_array().unwrap();
    assert_eq!(versions[0]["version"], "3.10.0", "newest version first");
    assert_eq!(versions[1]["version"], "3.9.1");
    assert_eq!(versions[1]["export"], Value::Null);
    let election = &versions[1]["election"];
    assert_eq!(election["leader"], "dp-a");
    let candidates = election["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 4);
    assert_eq!(candidates[0]["node_id"], "dp-old-but-gone");
    assert_eq!(candidates[0]["fresh"], false);
    assert_eq!(out["other_objects"], 1);
    // A 10-minute interval keeps nobody from an hour ago; a 2-hour one does.
    let long = s3
        .cli("status --election-interval 7200")
        .expect(0)
        .stdout
        .clone();
    assert!(long.contains("leader dp-old-but-gone"), "{long}");
    let human = s3.cli("status").expect(0).stdout.clone();
    assert!(
        human.contains("dp-a") && human.contains("<- leader"),
        "{human}"
    );
    assert!(human.contains("stale (refreshed"), "{human}");
}

/// Secrets given through a settings file and the environment never appear, even at -vv and in
/// failures (every run is checked by `run_with`; this one makes the tool talk the most).
#[test]
fn secrets_are_never_printed_even_verbose_and_failing() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let settings = write(
        dir.path(),
        "filter.json",
        &json!({
            "cluster_fallback_config_storage": STORAGE,
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
            "aws_session_token": SESSION_TOKEN,
            "kong_admin_token": ADMIN_TOKEN,
            "aws_region": "us-east-1",
            "storage_endpoint": s3.server.url(),
        })
        .to_string(),
    );
    let file = write(dir.path(), "kong.json", &doc(false));
    let (kong, kong_srv) = start_kong();
    kong.set_config(serde_json::from_str(&doc(false)).unwrap());
    let admin = kong_srv.url();
    let with_file = |line: String| cli_with(&format!("{line} --settings {settings} -vv"), &[]);
    with_file(format!("export --version {VERSION} --from-file {file}")).expect(0);
    with_file(format!("drill --version {VERSION} --compare-admin {admin}")).expect(0);
    with_file(format!(
        "export --version 3.8.0 --from-admin {admin} --json"
    ))
    .expect(0);
    with_file("status --json".into()).expect(0);
    with_file(format!("import --version {VERSION} --admin-url {admin}")).expect(10);
    // A settings file that is not JSON: serde_json's message (which may quote it) is not shown.
    let broken = write(
        dir.path(),
        "broken.json",
        &format!("{{\"aws_secret_access_key\": \"{SECRET_KEY}\""),
    );
    cli_with(&format!("status --settings {broken}"), &[]).expect(2);
}

/// `drill --apply-to`: the backup loads in a scratch DB-less node (the mock checks Kong's schema
/// and the RBAC token); a node that refuses it fails the drill with Kong's errors in one line.
#[test]
fn drill_applies_the_backup_to_a_scratch_admin_api() {
    let s3 = S3::start();
    s3.put_direct(KEY, doc(true).as_bytes(), SystemTime::now());
    let (scratch, scratch_srv) = start_kong();
    let run = s3.cli(&format!(
        "drill --version {VERSION} --apply-to {}",
        scratch_srv.url()
    ));
    run.expect(0);
    assert!(run.stdout.contains("apply     "), "{run:#?}");
    assert!(run.stdout.contains(": loaded (HTTP"), "{run:#?}");
    let applied = scratch.config().expect("the scratch node holds the backup");
    let backup: Value = serde_json::from_str(&doc(true)).unwrap();
    assert_eq!(applied["services"], backup["services"]);

    let refusing = answering(
        400,
        r#"{"code":14,"name":"invalid declarative configuration","message":"declarative config is invalid: {}","flattened_errors":[{"entity_type":"service","entity_name":"svc-a","errors":[{"type":"field","field":"host","message":"required field missing"}]}]}"#,
    );
    let run = s3.cli(&format!(
        "drill --version {VERSION} --apply-to {} --json",
        refusing.url()
    ));
    let out = run.expect(12).json();
    let problems = out["problems"].to_string();
    assert!(problems.contains("refused the backup"), "{out}");
    assert!(problems.contains("required field missing"), "{out}");
    s3.cli(&format!(
        "drill --version {VERSION} --apply-to {}",
        closed_port_url()
    ))
    .expect(14);
}

/// Long transfers report their progress with `-v` (stderr is no terminal here): a line per
/// quarter, with the host and byte counts only.
#[test]
fn long_uploads_and_downloads_show_a_progress_line() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let services: Vec<Value> = (0..20_000)
        .map(|i| json!({"name": format!("svc-{i:05}"), "url": format!("http://upstream-{i}.internal:8080/some/path")}))
        .collect();
    let text =
        serde_json::to_string(&json!({"_format_version": "3.0", "services": services})).unwrap();
    assert!(text.len() > 1 << 20);
    let file = write(dir.path(), "big.json", &text);
    let up = s3.cli(&format!("export --version {VERSION} --from-file {file} -v"));
    up.expect(0);
    let lines: Vec<&str> = up
        .stderr
        .lines()
        .filter(|l| l.contains("uploading to"))
        .collect();
    // config.json, then its history copy (docs/history.md): four quarters each.
    assert_eq!(lines.len(), 8, "{up:#?}");
    assert!(lines[3].ends_with("(100%)"), "{lines:?}");
    assert!(lines[7].ends_with("(100%)"), "{lines:?}");
    let out = dir.path().join("kong.json");
    let down = s3.cli(&format!(
        "import --version {VERSION} --out {} -v",
        out.display()
    ));
    down.expect(0);
    assert!(
        down.stderr
            .lines()
            .any(|l| l.contains("downloading from") && l.ends_with("(100%)")),
        "{down:#?}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), text.as_bytes());
    // Without -v (and no terminal): quiet.
    let quiet = s3.cli(&format!(
        "import --version {VERSION} --out {}",
        out.display()
    ));
    quiet.expect(0);
    assert!(!quiet.stderr.contains("downloading from"), "{quiet:#?}");
}

/// `import_refuse_plugins` (here from its environment variable): `import --out`, `drill` and
/// `import --admin-url` refuse a backup holding a `pre-function` plugin (exit 12, one line naming
/// the setting); without the setting it is imported.
#[test]
fn the_content_policy_refuses_a_backup_with_a_refused_plugin() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let (kong, kong_srv) = start_kong();
    let mut doc: Value = serde_json::from_str(&doc(false)).unwrap();
    doc["plugins"] = json!([{"name": "pre-function", "config": {"access": ["os.exit(1)"]}}]);
    let body = doc.to_string();
    s3.put_direct(
        &format!("fallback/{VERSION}/config.json"),
        body.as_bytes(),
        SystemTime::now(),
    );
    let mut env = s3.env();
    env.push((
        "CONFIG_BRIDGE_IMPORT_REFUSE_PLUGINS",
        "post-function, pre-function".to_string(),
    ));
    for line in [
        format!("import --version {VERSION} --out {}", out.display()),
        format!("drill --version {VERSION}"),
        format!("import --version {VERSION} --admin-url {}", kong_srv.url()),
    ] {
        let run = cli_with(&line, &env);
        run.expect(12);
        assert!(
            run.stderr.contains("import_refuse_plugins")
                || run.stdout.contains("import_refuse_plugins"),
            "{line}: {run:#?}"
        );
    }
    assert!(kong.posts().is_empty());
    assert!(!out.exists());
    s3.cli(&format!(
        "import --version {VERSION} --out {}",
        out.display()
    ))
    .expect(0);
}
