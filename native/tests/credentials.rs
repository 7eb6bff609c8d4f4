//! The tool's AWS credential chain against the mocks (docs/credentials.md): IMDSv2, container
//! credentials with a token file (EKS Pod Identity), STS web identity with a token file (IRSA),
//! and a profile of the shared credentials file. The mock S3 knows no permanent key here: only
//! what the credential endpoints issued (or the profile's keys).

mod common;

use std::sync::Arc;

use common::*;
use harness_mocks::aws_credentials::{MockAwsCredentials, Provider};
use harness_mocks::s3::{MockS3, S3Credential};
use harness_mocks::serve::{spawn, ServerHandle};

const ROLE: &str = "arn:aws:iam::123456789012:role/config-bridge";
const WEB_TOKEN: &str = "eyJ.irsa-web-identity-token-never-print";
const POD_TOKEN: &str = "eks-pod-identity-token-never-print";

struct World {
    s3: MockS3,
    s3_server: ServerHandle,
    creds: MockAwsCredentials,
    creds_server: ServerHandle,
}

fn world() -> World {
    let s3 = MockS3::builder().region("us-east-1").bucket(BUCKET).build();
    let s3_server = spawn(Arc::new(s3.clone()), "127.0.0.1:0").expect("mock S3 serves");
    let creds = MockAwsCredentials::new()
        .issue_for(&s3)
        .container("/v1/credentials", Some(POD_TOKEN))
        .web_identity(WEB_TOKEN, ROLE);
    let creds_server = spawn(Arc::new(creds.clone()), "127.0.0.1:0").expect("mock serves");
    World {
        s3,
        s3_server,
        creds,
        creds_server,
    }
}

impl World {
    /// Storage, region and endpoint; no keys. IMDS is pointed at nothing unless a test says so.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KONG_CLUSTER_FALLBACK_CONFIG_STORAGE", STORAGE.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_CONFIG_STORAGE_ENDPOINT", self.s3_server.url()),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", closed_port_url()),
            ("HOME", "/nonexistent".into()),
        ]
    }

    fn export(&self, env: &[(&'static str, String)], dir: &std::path::Path) -> Run {
        let file = write(dir, "kong.json", &doc(false));
        let run = cli_with(
            &format!("export --version {VERSION} --from-file {file} --timeout 20"),
            env,
        );
        for secret in [
            WEB_TOKEN,
            POD_TOKEN,
            "mock-temporary-secret",
            "mock-session-token",
        ] {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "a secret was printed: {run:#?}"
            );
        }
        run
    }
}

fn exported(w: &World) -> bool {
    w.s3.object(BUCKET, KEY).is_some()
}

#[test]
fn imdsv2() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let mut env = w.env();
    env.retain(|(k, _)| *k != "AWS_EC2_METADATA_SERVICE_ENDPOINT");
    env.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT", w.creds_server.url()));
    w.export(&env, dir.path()).expect(0);
    assert!(exported(&w));
    let issued = w.creds.issued();
    // `export` reads the object directly and runs the engine: one fetch each at most.
    assert!((1..=2).contains(&issued.len()), "{issued:?}");
    assert!(issued.iter().all(|i| i.provider == Provider::Imds));
}

#[test]
fn container_credentials_with_the_pod_identity_token_file() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let token = write(
        dir.path(),
        "eks-pod-identity-token",
        &format!("{POD_TOKEN}\n"),
    );
    let mut env = w.env();
    env.push((
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        format!("{}/v1/credentials", w.creds_server.url()),
    ));
    env.push(("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token));
    w.export(&env, dir.path()).expect(0);
    assert!(exported(&w));
    assert_eq!(w.creds.issued()[0].provider, Provider::Container);
}

#[test]
fn web_identity_with_the_irsa_token_file() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let token = write(dir.path(), "token", WEB_TOKEN);
    let mut env = w.env();
    env.push(("AWS_WEB_IDENTITY_TOKEN_FILE", token));
    env.push(("AWS_ROLE_ARN", ROLE.into()));
    env.push(("AWS_ENDPOINT_URL_STS", w.creds_server.url()));
    w.export(&env, dir.path()).expect(0);
    assert!(exported(&w));
    assert_eq!(w.creds.issued()[0].provider, Provider::WebIdentity);
    // A token STS does not accept: the STS code, no token.
    let w = world();
    let bad = write(dir.path(), "bad", "eyJ.not-the-right-token-never-print");
    let mut env = w.env();
    env.push(("AWS_WEB_IDENTITY_TOKEN_FILE", bad));
    env.push(("AWS_ROLE_ARN", ROLE.into()));
    env.push(("AWS_ENDPOINT_URL_STS", w.creds_server.url()));
    let file = write(dir.path(), "kong2.json", &doc(false));
    let run = cli_with(
        &format!("export --version {VERSION} --from-file {file} --timeout 2"),
        &env,
    );
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("InvalidIdentityToken"), "{run:#?}");
    assert!(!run.stderr.contains("not-the-right-token"), "{run:#?}");
}

#[test]
fn a_profile_of_the_shared_credentials_file() {
    let w = world();
    w.s3.add_temporary_credential(
        S3Credential::new("AKIAPROFILE", "profile-secret-never-print"),
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    );
    let dir = tempfile::tempdir().unwrap();
    let creds = write(
        dir.path(),
        "credentials",
        "[default]\naws_access_key_id = AKIAWRONG\naws_secret_access_key = wrong\n\n[kong]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = profile-secret-never-print\n",
    );
    let mut env = w.env();
    env.push(("AWS_SHARED_CREDENTIALS_FILE", creds));
    env.push(("AWS_PROFILE", "kong".into()));
    let run = w.export(&env, dir.path());
    run.expect(0);
    assert!(!run.stderr.contains("profile-secret-never-print"));
    assert!(exported(&w));
    assert!(w.creds.issued().is_empty());
    // A profile no file has: a usage error naming it.
    env.retain(|(k, _)| *k != "AWS_PROFILE");
    env.push(("AWS_PROFILE", "missing".into()));
    let run = cli_with("status --timeout 2", &env);
    run.expect(2);
    assert!(run.stderr.contains("\"missing\""), "{run:#?}");
}
