//! The built binary against real S3 servers: **s3s-fs** and **moto with IAM auth on**, as CI
//! starts them (`eval "$(bash .ci/servers/s3.sh)"` exports `S3S_*` and `MOTO_*`: `_ENDPOINT`,
//! `_ACCESS_KEY`, `_SECRET_KEY`, `_BUCKET`). export → export again → status → drill → import to a
//! file, byte-identical; a missing version is exit 11.
//!
//! moto (5.2) verifies SigV4 against the *decoded* query string, so it refuses any signed
//! ListObjectsV2 whose `prefix` holds a `/` (boto3's too): the moto run keeps its objects at the
//! bucket's root (`s3://interop`, a unique gateway version), where `status` lists with an empty
//! prefix. s3s-fs runs under a prefix.
//!
//! A missing variable FAILS the test when `CI` is set (CI must never skip silently) and prints
//! `SKIP ...` otherwise. Every run writes under its own prefix.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{doc, history_round_trip, run_with, seal_env, write};

struct Server {
    endpoint: String,
    access_key: String,
    secret_key: String,
    bucket: String,
}

/// The server whose variables start with `prefix`, or `None` (skipped) outside CI.
fn server(prefix: &str, test: &str) -> Option<Server> {
    let get = |suffix: &str| {
        std::env::var(format!("{prefix}_{suffix}"))
            .ok()
            .filter(|v| !v.is_empty())
    };
    let missing = ["ENDPOINT", "ACCESS_KEY", "SECRET_KEY"]
        .into_iter()
        .find(|s| get(s).is_none());
    if let Some(suffix) = missing {
        let why = format!("{prefix}_{suffix} is not set; start the servers with `eval \"$(bash .ci/servers/s3.sh)\"`");
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: {why} (CI is set: this is a failure)"
        );
        eprintln!("SKIP {test}: {why}");
        return None;
    }
    Some(Server {
        endpoint: get("ENDPOINT")?,
        access_key: get("ACCESS_KEY")?,
        secret_key: get("SECRET_KEY")?,
        bucket: get("BUCKET").unwrap_or_else(|| "interop".into()),
    })
}

/// `sealed`: signed and encrypted exports (docs/sealed-exports.md), the keys in the environment.
/// A run's own place on the server: a unique prefix with gateway version 3.9.1, or (moto: no
/// `/` in a listed prefix) the bucket's root with a unique gateway version. Returns the
/// environment, the gateway version and `<prefix>/<version>/` as keys.
fn place(
    srv: &Server,
    name: &str,
    under_a_prefix: bool,
) -> (Vec<(&'static str, String)>, String, String) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let unique = format!("native-{}-{nanos}-{name}", std::process::id());
    let (storage, version, keys) = if under_a_prefix {
        (
            format!("s3://{}/{unique}", srv.bucket),
            "3.9.1".to_string(),
            format!("{unique}/3.9.1/"),
        )
    } else {
        (
            format!("s3://{}", srv.bucket),
            unique.clone(),
            format!("{unique}/"),
        )
    };
    let env = vec![
        ("KONG_CLUSTER_FALLBACK_CONFIG_STORAGE", storage),
        ("AWS_ACCESS_KEY_ID", srv.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", srv.secret_key.clone()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_CONFIG_STORAGE_ENDPOINT", srv.endpoint.clone()),
    ];
    (env, version, keys)
}

fn round_trip(srv: Server, name: &str, under_a_prefix: bool, sealed: bool) {
    let (plain_env, version, _) = place(&srv, name, under_a_prefix);
    let version = version.as_str();
    let mut env = plain_env.clone();
    if sealed {
        env.extend(seal_env());
    }
    let run = |args: &[&str]| {
        let args = [args, &["--timeout", "20"]].concat();
        let r = run_with(&args, &env);
        assert!(!r.stdout.contains(&srv.secret_key) && !r.stderr.contains(&srv.secret_key));
        r
    };
    let dir = tempfile::tempdir().unwrap();
    let text = doc(true);
    let file = write(dir.path(), "kong.json", &text);

    let out = run(&[
        "export",
        "--version",
        version,
        "--from-file",
        &file,
        "--node-id",
        name,
        "--json",
    ]);
    assert_eq!(out.expect(0).json()["uploaded"], true, "{name}: {out:#?}");
    // Again: nothing new (the server keeps our metadata) or a conditional rewrite (it does not).
    run(&["export", "--version", version, "--from-file", &file]).expect(0);

    let status = run(&["status", "--json"]).expect(0).json();
    let versions = status["versions"].as_array().unwrap();
    let v = versions
        .iter()
        .find(|v| v["version"] == version)
        .unwrap_or_else(|| panic!("{name}: {version} not in {status}"));
    if sealed {
        // The header and a tag per segment: the stored object is not the plaintext.
        let bytes = v["export"]["bytes"].as_u64().unwrap_or(0) as usize;
        assert!(bytes > text.len(), "{name}: {status}");
        assert_eq!(
            v["export"]["sealed"], "signed (key sig-1), encrypted (key enc-1)",
            "{name}: {status}"
        );
    } else {
        assert_eq!(v["export"]["bytes"], text.len(), "{name}: {status}");
    }

    let drill = run(&["drill", "--version", version, "--max-age", "600"]);
    drill.expect(0);
    assert!(
        drill.stdout.contains("routes 1, services 2"),
        "{name}: {drill:#?}"
    );

    let target = dir.path().join("declarative.json");
    let target_s = target.display().to_string();
    run(&["import", "--version", version, "--out", &target_s]).expect(0);
    assert_eq!(
        std::fs::read(&target).unwrap(),
        text.as_bytes(),
        "{name}: byte-identical"
    );
    run(&["import", "--version", "0.0.0", "--out", &target_s]).expect(11);
    if sealed {
        // Without the decryption keys: refused, nothing written.
        std::fs::remove_file(&target).unwrap();
        let args = [
            "import",
            "--version",
            version,
            "--out",
            &target_s,
            "--timeout",
            "20",
        ];
        run_with(&args, &plain_env).expect(12);
        assert!(!target.exists(), "{name}");
    }
}

#[test]
fn s3s_fs_round_trip() {
    if let Some(srv) = server("S3S", "native s3s_fs_round_trip") {
        round_trip(srv, "s3s", true, false);
    }
}

#[test]
fn s3s_fs_sealed_round_trip() {
    if let Some(srv) = server("S3S", "native s3s_fs_sealed_round_trip") {
        round_trip(srv, "s3s-sealed", true, true);
    }
}

#[test]
fn moto_round_trip() {
    if let Some(srv) = server("MOTO", "native moto_round_trip") {
        round_trip(srv, "moto", false, false);
    }
}

#[test]
fn moto_sealed_round_trip() {
    if let Some(srv) = server("MOTO", "native moto_sealed_round_trip") {
        round_trip(srv, "moto-sealed", false, true);
    }
}

/// The history commands (docs/history.md) against a real server: seeded history objects, then
/// history, import --version-id / --before, diff, drill --sample (`common::history_round_trip`).
fn history(srv: Server, name: &str, under_a_prefix: bool, can_list: bool) {
    let (env, version, keys) = place(&srv, name, under_a_prefix);
    let history_prefix = format!("{keys}history/");
    history_round_trip(&env, &version, &history_prefix, can_list, &[srv.secret_key]);
}

#[test]
fn s3s_fs_history() {
    if let Some(srv) = server("S3S", "native s3s_fs_history") {
        history(srv, "s3s-history", true, true);
    }
}

/// moto cannot list `<version>/history/` (the '/' in the prefix, see the top): a full version id
/// restores and diffs (no listing); history and --before fail with moto's refusal.
#[test]
fn moto_history() {
    if let Some(srv) = server("MOTO", "native moto_history") {
        history(srv, "moto-history", false, false);
    }
}
