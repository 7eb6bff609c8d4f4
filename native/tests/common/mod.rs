//! What the tool's tests share: the built binary run as a child process with a clean
//! environment, the mock S3 (real SigV4 verification, session token required) and mock Kong
//! Admin APIs over TCP, and a check on every run that no secret reached stdout or stderr.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::SystemTime;

use harness_mocks::http::{CallContext, HttpRequest, HttpResponse, Reply};
use harness_mocks::kong::MockKongAdmin;
use harness_mocks::s3::{MockS3, S3Credential};
use harness_mocks::serve::{spawn, ServerHandle};
use serde_json::{json, Value};

pub const BUCKET: &str = "kong-backups";
pub const STORAGE: &str = "s3://kong-backups/fallback";
pub const VERSION: &str = "3.9.1";
pub const KEY: &str = "fallback/3.9.1/config.json";
pub const ACCESS_KEY: &str = "AKIANATIVETOOL";
/// Secrets: none of these may ever appear in the tool's output.
pub const SECRET_KEY: &str = "native-secret-key-must-never-print-7f3a";
pub const SESSION_TOKEN: &str = "native-session-token-must-never-print-91be";
pub const ADMIN_TOKEN: &str = "native-rbac-token-must-never-print-c0de";
pub const SECRETS: [&str; 3] = [SECRET_KEY, SESSION_TOKEN, ADMIN_TOKEN];

/// One run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {self:#?}"))
    }

    pub fn expect(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "exit code: {self:#?}");
        self
    }
}

/// Runs `config-bridge args` with exactly `env` (no inherited variables) and checks that no
/// secret is in its output.
pub fn run_with(args: &[&str], env: &[(&str, String)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_config-bridge"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("the binary runs");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for secret in SECRETS {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "a secret was printed by {args:?}: {run:#?}"
        );
    }
    run
}

/// The mock S3 on a port, and what the tool needs to reach it.
pub struct S3 {
    pub s3: MockS3,
    pub server: ServerHandle,
}

impl S3 {
    pub fn start() -> S3 {
        let s3 = MockS3::builder()
            .region("us-east-1")
            .bucket(BUCKET)
            .credential(S3Credential::new(ACCESS_KEY, SECRET_KEY).session_token(SESSION_TOKEN))
            .build();
        let server = spawn(Arc::new(s3.clone()), "127.0.0.1:0").expect("mock S3 serves");
        S3 { s3, server }
    }

    /// The tool's environment: storage, credentials (with a session token), region, endpoint,
    /// the Admin API token.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KONG_CLUSTER_FALLBACK_CONFIG_STORAGE", STORAGE.into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_SESSION_TOKEN", SESSION_TOKEN.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_CONFIG_STORAGE_ENDPOINT", self.server.url()),
            ("KONG_ADMIN_TOKEN", ADMIN_TOKEN.into()),
        ]
    }

    pub fn run(&self, args: &[&str]) -> Run {
        run_with(args, &self.env())
    }

    /// `run` with the arguments of a command line split at spaces (`format!` friendly).
    pub fn cli(&self, line: &str) -> Run {
        self.run(&line.split_whitespace().collect::<Vec<_>>())
    }

    pub fn body(&self, key: &str) -> Option<Vec<u8>> {
        self.s3.object(BUCKET, key).map(|o| o.body)
    }

    pub fn meta(&self, key: &str, name: &str) -> Option<String> {
        let obj = self.s3.object(BUCKET, key)?;
        obj.metadata
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// Requests the mock answered, as `METHOD status`.
    pub fn calls(&self) -> Vec<String> {
        self.s3
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.status))
            .collect()
    }

    pub fn put_direct(&self, key: &str, body: &[u8], at: SystemTime) {
        self.s3.put_object_direct(BUCKET, key, body, at);
    }
}

/// A DB-less mock Kong Admin API needing `Kong-Admin-Token: ADMIN_TOKEN`, on a port.
pub fn start_kong() -> (MockKongAdmin, ServerHandle) {
    let kong = MockKongAdmin::dbless(VERSION).with_admin_token(ADMIN_TOKEN);
    let server = spawn(Arc::new(kong.clone()), "127.0.0.1:0").expect("mock Kong serves");
    (kong, server)
}

/// A server answering every request with `status` and `body`.
pub fn answering(status: u16, body: &str) -> ServerHandle {
    let body = body.to_string();
    let handler = move |_: &HttpRequest, _: &CallContext| {
        Reply::now(
            HttpResponse::new(status)
                .with_header("content-type", "application/json")
                .with_body(body.clone()),
        )
    };
    spawn(Arc::new(handler), "127.0.0.1:0").expect("serves")
}

/// `run_with` for a command line split at spaces.
pub fn cli_with(line: &str, env: &[(&str, String)]) -> Run {
    run_with(&line.split_whitespace().collect::<Vec<_>>(), env)
}

/// `http://127.0.0.1:<port>` where nothing listens.
pub fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

/// A small valid Kong declarative configuration with fixed ids (the mock Kong keeps them), as
/// text with a trailing newline (byte-for-byte checks see it).
pub fn doc(extra_service: bool) -> String {
    let mut services = vec![json!({
        "id": "0b6f8e7e-6a3f-4d52-9a86-2f1b8e3c5a01", "name": "orders",
        "host": "orders.internal", "port": 80, "protocol": "http"
    })];
    if extra_service {
        services.push(json!({
            "id": "0b6f8e7e-6a3f-4d52-9a86-2f1b8e3c5a02", "name": "billing",
            "host": "billing.internal", "port": 80, "protocol": "http"
        }));
    }
    let doc = json!({
        "_format_version": "3.0",
        "services": services,
        "routes": [{
            "id": "5c2d7a10-2f8e-4b1c-8d3e-7a9b0c1d2e03", "name": "orders",
            "paths": ["/orders"], "service": "0b6f8e7e-6a3f-4d52-9a86-2f1b8e3c5a01"
        }]
    });
    format!("{}\n", serde_json::to_string_pretty(&doc).expect("json"))
}

pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

/// Sealed exports (docs/sealed-exports.md): the exporter's signing seed and encryption key, the
/// importer's public key and decryption keys, as the environment gives them to the tool.
pub fn seal_env() -> Vec<(&'static str, String)> {
    use config_bridge::document::base64;
    use config_bridge::seal::{keys::KeyEntry, sign::public_key};
    let seed = [0x5e; 32];
    let public = public_key(&KeyEntry::new("sig-1", seed).expect("key"));
    vec![
        (
            "CONFIG_BRIDGE_EXPORT_SIGNING_KEY",
            format!("sig-1:{}", base64(&seed)),
        ),
        (
            "CONFIG_BRIDGE_EXPORT_ENCRYPTION_KEY",
            format!("enc-1:{}", base64(&[0xe7; 32])),
        ),
        (
            "CONFIG_BRIDGE_IMPORT_VERIFICATION_KEYS",
            format!("sig-1:{}", base64(&public)),
        ),
        (
            "CONFIG_BRIDGE_IMPORT_DECRYPTION_KEYS",
            format!("enc-0:{},enc-1:{}", base64(&[1; 32]), base64(&[0xe7; 32])),
        ),
    ]
}

/// Key material of [`seal_env`] that must never be printed.
pub const SEAL_SECRETS: [[u8; 32]; 2] = [[0x5e; 32], [0xe7; 32]];
