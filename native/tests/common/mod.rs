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
    run_in(Path::new("."), args, env)
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

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `run_with` in `dir` (relative paths land there).
pub fn run_in(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_config-bridge"))
        .args(args)
        .current_dir(dir)
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

/// One HTTP exchange of a core-built request, for seeding (the tool's own `http.rs` is not a
/// library).
fn send_core(
    req: &config_bridge::http::OutboundRequest,
) -> Result<config_bridge::http::HttpResponse, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}://{}{}", req.scheme, req.authority, req.path);
    let mut builder = ureq::http::Request::builder()
        .method(req.method.as_str())
        .uri(url.as_str());
    for (name, value) in &req.headers {
        if !name.eq_ignore_ascii_case("host") {
            builder = builder.header(name.as_str(), value.as_str());
        }
    }
    let request = builder
        .body(req.body.as_slice())
        .map_err(|e| e.to_string())?;
    let mut resp = agent.run(request).map_err(|e| e.to_string())?;
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = if req.method == "HEAD" {
        Vec::new()
    } else {
        resp.body_mut().read_to_vec().map_err(|e| e.to_string())?
    };
    Ok(config_bridge::http::HttpResponse {
        status: resp.status().as_u16(),
        headers,
        body,
    })
}

/// Stores `body` at `key` with the filter's export metadata (`uploader`, `config-applied-at`,
/// `config-sha256`) by a PUT the core's own store builds and signs (a GCS token first), on any
/// server the tool talks to: history objects dated as a test needs. `env`: the tool's
/// environment (storage, credentials).
pub fn put_export(env: &[(&str, String)], key: &str, body: &[u8], uploader: &str, applied_at: u64) {
    use config_bridge::store::{ExportMeta, Precondition, PutOutcome};
    let lookup = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
    let cfg = config_bridge::settings::Config::parse(
        // Export on: writing credentials (a GCS token with the read-write scope).
        br#"{"cluster_fallback_config_export": true, "gateway_version": "seed",
             "config": {"_format_version": "3.0"}}"#,
        &lookup,
    )
    .expect("the seeding settings parse");
    let mut store = config_bridge::store::for_settings(&cfg.storage);
    let now = now_ms();
    // A GCS assertion is signed in slices, one per call, before its token request.
    for _ in 0..16 {
        match store.prerequisite(now) {
            Some(req) => store
                .on_prerequisite(send_core(&req), now)
                .expect("the seeding token"),
            None if store.ready(now) => break,
            None => {}
        }
    }
    let sha = config_bridge::document::sha256(body);
    let meta = ExportMeta {
        uploader: uploader.into(),
        applied_at,
        sha256_hex: config_bridge::document::hex(&sha),
        sha256: sha,
        sequence: 1,
        updated_at_ms: None,
        supersedes: Vec::new(),
        seal: Vec::new(),
    };
    let body = std::rc::Rc::new(body.to_vec());
    let req = store
        .put(key, &body, &Precondition::None, &meta, now)
        .expect("a PUT request");
    let resp = send_core(&req).expect("the seeding PUT is answered");
    assert!(
        matches!(store.parse_put(&resp), PutOutcome::Stored { .. }),
        "seeding {key}: HTTP {} {}",
        resp.status,
        String::from_utf8_lossy(&resp.body)
    );
}

/// A valid declarative configuration with `n` services (`svc-0` ...), each with a route; its
/// ids fixed, so two of them differ by the services added.
pub fn doc_n(n: usize) -> String {
    let services: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("00000000-0000-4000-8000-{i:012}"), "name": format!("svc-{i}"),
                        "host": format!("svc-{i}.internal"), "port": 80, "protocol": "http"})
        })
        .collect();
    let routes: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("00000000-0000-4000-9000-{i:012}"), "name": format!("route-{i}"),
                        "paths": [format!("/svc-{i}")], "service": format!("00000000-0000-4000-8000-{i:012}")}))
        .collect();
    format!(
        "{}\n",
        serde_json::to_string_pretty(
            &json!({"_format_version": "3.0", "services": services, "routes": routes})
        )
        .expect("json")
    )
}

/// The words of a shell command line with single-quoted strings (README examples).
pub fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The history commands against a real server (`env`: the tool's environment for it): three
/// history exports seeded by signed PUTs (`put_export`) an hour and a day apart, the latest
/// `config.json`, then `history`, `import --version-id` (a full id: one GET), `import --before`,
/// `diff` and `drill --sample`, each checked. `history_prefix`: `<prefix>/<version>/history/`
/// as keys. `can_list`: whether the server lists that prefix (moto 5.2 refuses to: its SigV4
/// check of a ListObjectsV2 whose prefix holds a `/` fails, boto3's as well; then what needs a
/// listing must fail with that refusal, and what needs none must work). `secrets`: never printed.
pub fn history_round_trip(
    env: &[(&str, String)],
    version: &str,
    history_prefix: &str,
    can_list: bool,
    secrets: &[String],
) {
    const HOUR: u64 = 3_600_000;
    let run = |args: &[&str]| -> Run {
        let args = [args, &["--version", version, "--timeout", "20"]].concat();
        let r = run_with(&args, env);
        for s in secrets {
            assert!(
                !r.stdout.contains(s.as_str()) && !r.stderr.contains(s.as_str()),
                "a secret was printed by {args:?}: {r:#?}"
            );
        }
        r
    };
    let t0 = now_ms() - 2 * 24 * HOUR;
    let docs = [doc_n(1), doc_n(2), doc_n(3)];
    let times = [t0, t0 + HOUR, t0 + 24 * HOUR];
    let mut ids = Vec::new();
    for (body, at) in docs.iter().zip(times) {
        let sha = config_bridge::document::sha256_hex(body.as_bytes());
        let key = config_bridge::history::history_key(history_prefix, at, &sha).expect("key");
        put_export(env, &key, body.as_bytes(), "interop-cp", at);
        ids.push(key[history_prefix.len()..key.len() - ".json".len()].to_string());
    }
    // The latest by the tool's own export: its history cycle finds the newest history object
    // holding this content and uploads nothing (on moto, the cycle's listing is refused: a
    // warning, the export itself succeeds).
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "latest.json", &docs[2]);
    let exported = run(&[
        "export",
        "--from-file",
        &file,
        "--node-id",
        "interop-cp",
        "--json",
    ]);
    let exported_json = exported.expect(0).json();
    assert_eq!(exported_json["uploaded"], true, "{exported:#?}");
    if can_list {
        assert_eq!(exported_json["history"]["recorded"], false, "{exported:#?}");
        assert!(
            exported_json["history"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("{}.json already records this config", ids[2])),
            "{exported:#?}"
        );
    } else {
        assert!(
            exported_json["history"]["error"]
                .as_str()
                .unwrap_or("")
                .contains("SignatureDoesNotMatch"),
            "{exported:#?}"
        );
        assert!(
            exported.stderr.contains("(the export itself is stored)"),
            "{exported:#?}"
        );
    }
    let out = dir.path().join("kong.json");
    let out_s = out.display().to_string();
    // A full version id needs no listing.
    let by_id = run(&["import", "--version-id", &ids[0], "--out", &out_s, "--json"]);
    assert_eq!(
        by_id.expect(0).json()["version_id"],
        ids[0].as_str(),
        "{by_id:#?}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), docs[0]);
    let d = run(&["diff", &ids[0], "latest", "--json"]).expect(0).json();
    assert_eq!(d["summary"]["added"], 4, "{d}");
    assert_eq!(d["summary"]["unchanged"], 2, "{d}");

    let history = run(&["history", "--json"]);
    if !can_list {
        history.expect(2);
        assert!(
            history.json()["message"]
                .as_str()
                .unwrap_or("")
                .contains("SignatureDoesNotMatch"),
            "{history:#?}"
        );
        run(&["import", "--before", &basic_time(times[1]), "--out", &out_s]).expect(2);
        return;
    }
    let h = history.expect(0).json();
    let listed: Vec<&str> = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [&ids[2], &ids[1], &ids[0]], "{h}");
    assert_eq!(h["versions"][0]["uploader"], "interop-cp", "{h}");
    assert_eq!(h["versions"][0]["latest"], true, "{h}");
    assert_eq!(h["versions"][2]["bytes"], docs[0].len(), "{h}");
    let before = run(&[
        "import",
        "--before",
        &basic_time(times[1] + 60_000),
        "--out",
        &out_s,
        "--json",
    ]);
    assert_eq!(
        before.expect(0).json()["version_id"],
        ids[1].as_str(),
        "{before:#?}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), docs[1]);
    run(&[
        "import",
        "--before",
        &basic_time(t0 - 60_000),
        "--out",
        &out_s,
    ])
    .expect(11);
    let drill = run(&["drill", "--sample", "3", "--json"]).expect(0).json();
    let sampled = drill["history"]["sampled"].as_array().unwrap();
    assert_eq!(sampled.len(), 3, "{drill}");
    assert!(sampled.iter().all(|s| s["valid"] == true), "{drill}");
}

/// `20261205T140000Z`: a time as history names (and `--before` takes) it.
pub fn basic_time(ms: u64) -> String {
    config_bridge::store::timestamp::basic_utc(ms)
}
