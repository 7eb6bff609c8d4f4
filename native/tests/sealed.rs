//! Sealed exports through the built binary against the mock S3 (docs/sealed-exports.md): `export`
//! signs and encrypts with the filter's core, `status` shows it, `drill` and `import` verify and
//! decrypt with the same settings (environment variables), and refuse what they cannot verify or
//! decrypt (exit 12, one line). No key material in any output.

mod common;

use common::*;

fn with(s3: &S3, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env = s3.env();
    env.extend(extra.iter().cloned());
    env
}

fn no_keys_printed(run: &Run) {
    for k in SEAL_SECRETS {
        let b = config_bridge::document::base64(&k);
        assert!(
            !run.stdout.contains(&b) && !run.stderr.contains(&b),
            "{run:#?}"
        );
    }
}

#[test]
fn a_signed_and_encrypted_export_round_trips_and_is_refused_without_the_keys() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let text = doc(true);
    let file = write(dir.path(), "kong.json", &text);
    let sealed = with(&s3, &seal_env());
    let run = |args: &str, env: &[(&'static str, String)]| {
        let r = run_with(&args.split_whitespace().collect::<Vec<_>>(), env);
        no_keys_printed(&r);
        r
    };

    let out = run(
        &format!("export --version {VERSION} --from-file {file} --node-id ci-1 --json"),
        &sealed,
    );
    assert_eq!(out.expect(0).json()["uploaded"], true);
    let body = s3.body(KEY).unwrap();
    assert!(config_bridge::seal::stream::is_sealed(&body));
    assert!(
        !String::from_utf8_lossy(&body).contains("_format_version"),
        "plaintext stored"
    );
    assert_eq!(
        s3.meta(KEY, "config-signature-key").as_deref(),
        Some("sig-1")
    );
    assert_eq!(
        s3.meta(KEY, "config-encryption-key").as_deref(),
        Some("enc-1")
    );
    assert_eq!(
        s3.meta(KEY, "config-sha256"),
        Some(config_bridge::document::sha256_hex(&body))
    );
    // Again: the same bytes (deterministic encryption), nothing uploaded.
    let again = run(
        &format!("export --version {VERSION} --from-file {file} --json"),
        &sealed,
    );
    assert_eq!(again.expect(0).json()["uploaded"], false, "{again:#?}");

    let status = run("status --json", &s3.env()).expect(0).json();
    let v = &status["versions"][0]["export"];
    assert_eq!(
        v["sealed"], "signed (key sig-1), encrypted (key enc-1)",
        "{status}"
    );

    let drill = run(&format!("drill --version {VERSION}"), &sealed);
    drill.expect(0);
    assert!(
        drill
            .stdout
            .contains("sealed    signed (key sig-1), encrypted (key enc-1)"),
        "{drill:#?}"
    );
    assert!(drill.stdout.contains("routes 1, services 2"), "{drill:#?}");

    let target = dir.path().join("declarative.json");
    let t = target.display().to_string();
    run(&format!("import --version {VERSION} --out {t}"), &sealed).expect(0);
    assert_eq!(std::fs::read(&target).unwrap(), text.as_bytes());
    std::fs::remove_file(&target).unwrap();

    // Without the decryption keys; with only another verification key; a drill without keys.
    let r = run(&format!("import --version {VERSION} --out {t}"), &s3.env());
    r.expect(12);
    assert!(
        r.stderr
            .contains("is encrypted (key id enc-1) and import_decryption_keys is not set")
            || r.stdout.contains("is encrypted (key id enc-1)"),
        "{r:#?}"
    );
    let other = config_bridge::seal::sign::public_key(
        &config_bridge::seal::keys::KeyEntry::new("sig-2", [9; 32]).unwrap(),
    );
    let mut wrong = sealed.clone();
    wrong.retain(|(k, _)| *k != "CONFIG_BRIDGE_IMPORT_VERIFICATION_KEYS");
    wrong.push((
        "CONFIG_BRIDGE_IMPORT_VERIFICATION_KEYS",
        format!("sig-2:{}", config_bridge::document::base64(&other)),
    ));
    let r = run(&format!("import --version {VERSION} --out {t}"), &wrong);
    r.expect(12);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("key id sig-1, which is not among import_verification_keys"),
        "{r:#?}"
    );
    assert!(!target.exists(), "nothing written");
    let r = run(&format!("drill --version {VERSION}"), &s3.env());
    r.expect(12);
}

/// `import --admin-url` goes through the filter's own import sub-machine: it verifies and
/// decrypts too, and posts the plaintext.
#[test]
fn import_through_an_admin_api_unseals_with_the_engine() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let text = doc(false);
    let file = write(dir.path(), "kong.json", &text);
    let sealed = with(&s3, &seal_env());
    let args = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let export = args(&format!("export --version {VERSION} --from-file {file}"));
    let e: Vec<&str> = export.iter().map(String::as_str).collect();
    run_with(&e, &sealed).expect(0);
    let (kong, server) = start_kong();
    let import = args(&format!(
        "import --version {VERSION} --admin-url {} --timeout 30",
        server.url()
    ));
    let i: Vec<&str> = import.iter().map(String::as_str).collect();
    let r = run_with(&i, &sealed);
    r.expect(0);
    no_keys_printed(&r);
    assert_eq!(kong.applied_count(), 1, "{r:#?}");
}
