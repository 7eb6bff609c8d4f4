//! The real engine as a test fixture: nginx 1.27.4 + Kong's ngx_wasm_module 0.6.0 + Wasmtime 26
//! (`../shared/ngx-wasm`, see its README) running the release `config_bridge.wasm`, exporting to a
//! mock S3 on a real TCP port.
//!
//! ```text
//! let s3 = LiveS3::start();
//! let Some(mut node) = EngineNode::start(EngineSpec::new("my_test", engine_filter_config(&s3.endpoint(), &doc)))
//! else { return };                                 // SKIP outside CI when the engine is missing
//! node.wait_for_log("exported config to", secs(30));
//! assert_eq!(s3.object().unwrap().body, payload_bytes(&doc));
//! node.reload_with(&new_cfg);                      // new workers, fresh shm_kv
//! node.assert_no_traps();
//! ```
//!
//! * **Engine**: `<workspace>/../shared/ngx-wasm` or `$NGX_WASM_ENGINE`. Missing: the test FAILS when
//!   `CI` is set, otherwise it prints `SKIP real engine ...` and `start` returns `None`.
//! * **Module**: the shipped build (`host_harness::wasm_build::config_bridge()`, `wasm-release`),
//!   or `$CONFIG_BRIDGE_WASM` (a prebuilt module, e.g. a release artifact or an older revision).
//! * **Process**: `daemon off; master_process on;` — the master is our child, in its own process
//!   group, with `PR_SET_PDEATHSIG = SIGTERM` (spawned from a process-long thread, so it dies with
//!   the test process, not with a test thread). `Drop` sends SIGTERM (= `nginx -s stop`), waits up to
//!   5 s, then SIGKILLs the whole group (master and workers) and reaps the master: nothing is left
//!   behind, also when the test panicked. `reload*` sends SIGHUP (= `nginx -s reload`).
//! * **Concurrency**: at most `$ENGINE_TESTS_PARALLEL` (default 2) engines run at once per process
//!   (each worker compiles the module for ~1 s on start and on every reload).
//! * **Scratch**: `target/real-engine/<name>-<pid>-<n>/` (conf, logs); removed on a passing drop,
//!   kept (and printed) when the test panicked.
//! * **Logs**: `logs/error.log` at `info` (the filter's lines and ngx_wasm_module's). Entries are
//!   parsed into [`LogEntry`] (`<date> <time> [level] <pid>#<tid>: [*conn ]text`, continuation lines
//!   such as a panic message or a wasm backtrace belong to the entry before them).
//!   `EngineSpec::debug_log()` adds `logs/debug.log` at `debug` (every `on_tick`, every request:
//!   large).
//!
//! What the engine prints (observed with this build, used below):
//! * module load, per worker: `[wasm] successfully loaded "config_bridge" module in 1017ms`;
//! * a trap: an `[error]` entry `... panicked at ...` (the Rust SDK's message), then `note: run with
//!   RUST_BACKTRACE=1`, then `[wasm] error while executing at wasm backtrace: ... Caused by: wasm
//!   trap: wasm `unreachable` instruction executed` — exactly one `wasm trap` entry per trap;
//! * `on_configure` returning false: `[emerg] ... [proxy-wasm] failed initializing "config_bridge"
//!   filter (on_configure failure)`, then the master: `[alert] ... worker process N exited with fatal
//!   code 2 and cannot be respawned`;
//! * a killed worker: `[alert] ... worker process N exited on signal 9`, then `start worker process M`;
//! * each failed dispatch: `[error] ... [wasm] dispatch failed: tcp socket - Connection refused`
//!   (or `... timed out`), independent of the filter's own line;
//! * every filter line: `[proxy-wasm]["config_bridge" #0] [config-bridge] ...`;
//! * at `debug` only: every tick (`root context resuming "on_tick" step in "background" phase`) and
//!   every header of a dispatched call, **including `authorization`** (`wasm setting request header:
//!   "authorization: AWS4-HMAC-SHA256 ... Signature=..."`) — never run a gateway at debug level
//!   with real credentials.
//!
//! Limits of the engine that shape these tests: nginx reads its configuration in 4096-byte buffers,
//! so an inline `proxy_wasm` argument (the filter configuration with its `config` payload) must stay
//! under ~4 KB (`too long parameter`; bigger configs: `config_source: "url"`, or Kong, which passes
//! the filter configuration through its API); started as root, workers run as `nobody`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use host_harness::http::{CallContext, Handler, HttpRequest, Reply, SharedHandler};
use host_harness::mocks::faults::Faulty;
use host_harness::mocks::s3::{MockS3, StoredObject};
use host_harness::mocks::serve::{self, ServerHandle};
use serde_json::{json, Value};

use crate::{mock_s3, ACCESS_KEY, BUCKET, CONFIG_KEY, GATEWAY_VERSION, PREFIX, REGION, SECRET_KEY};

/// Environment variable: the engine folder (holding `bin/nginx`).
pub const ENGINE_ENV: &str = "NGX_WASM_ENGINE";
/// Environment variable: a prebuilt `config_bridge.wasm` to load instead of building the shipped one.
pub const WASM_ENV: &str = "CONFIG_BRIDGE_WASM";
/// Environment variable: how many engines may run at once in one test process (default 2).
pub const PARALLEL_ENV: &str = "ENGINE_TESTS_PARALLEL";

/// The `node_id` of [`engine_filter_config`] (sent as `x-amz-meta-uploader`).
pub const ENGINE_NODE_ID: &str = "engine-node-1";

/// Filter log prefix.
pub const FILTER_PREFIX: &str = "[config-bridge] ";
/// What the filter logs once per root context after a successful `on_configure` (info).
pub const CONFIGURED: &str = "[config-bridge] configured";
/// What the filter logs for an invalid configuration (error), with the field name.
pub const INVALID_CONFIGURATION: &str = "invalid configuration";
/// What the filter logs after an upload.
pub const EXPORTED: &str = "exported config to s3://";
/// What the filter logs when a HEAD finds the same content in storage.
pub const ALREADY_HOLDS: &str = "already holds this config";
/// What ngx_wasm_module logs when a worker finished compiling the module.
pub const MODULE_LOADED: &str = "successfully loaded \"config_bridge\" module in ";

/// The default timeout of waits in these tests (a busy 2-core CI machine compiles a worker's
/// module in up to ~1.6 s; reloads and exports finish well within this).
pub const WAIT: Duration = Duration::from_secs(30);

// ---- locating the engine and the module -----------------------------------------------------------

/// The workspace root (parent of `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The engine folder: `$NGX_WASM_ENGINE`, else `<workspace>/../shared/ngx-wasm`.
pub fn engine_dir() -> PathBuf {
    match std::env::var_os(ENGINE_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("..").join("shared").join("ngx-wasm"),
    }
}

/// The nginx binary, or `None` (after printing `SKIP ...`) when it is missing outside CI.
/// Under CI (`CI` set) a missing engine panics: CI must never skip these tests silently.
pub fn engine_binary(test: &str) -> Option<PathBuf> {
    let bin = engine_dir().join("bin").join("nginx");
    if bin.is_file() {
        return Some(bin);
    }
    let why = format!(
        "{} not found (set {ENGINE_ENV} to the folder holding bin/nginx; see \
         ../shared/ngx-wasm/README.md)",
        bin.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{test}: the real engine is required under CI: {why}");
    }
    eprintln!("SKIP real engine {test}: {why} (with CI set this is a failure)");
    None
}

/// The module nginx loads: `$CONFIG_BRIDGE_WASM`, else the shipped build (built once per process).
pub fn module_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os(WASM_ENV).filter(|v| !v.is_empty()) {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "{WASM_ENV}={} does not exist", p.display());
            return std::fs::canonicalize(&p).unwrap_or(p);
        }
        host_harness::wasm_build::config_bridge()
            .unwrap_or_else(|e| panic!("building config-bridge for wasm32-wasip1: {e:#}"))
    })
    .clone()
}

// ---- what a test configures -----------------------------------------------------------------------

/// A filter configuration for the engine tests: exports `doc` to `endpoint` (`http://127.0.0.1:PORT`,
/// path-style, the upstream is derived as `host:port`) with fast timings (tick 200 ms, export delay
/// 1 s, call timeout 2 s, lease 1 s, retries 200 ms..1 s, election and history off: one node's export
/// of config.json). Change fields with `cfg["f"] = json!(..)`.
pub fn engine_filter_config(endpoint: &str, doc: &Value) -> Value {
    json!({
        "cluster_fallback_config_export": "on",
        "cluster_fallback_config_storage": format!("s3://{BUCKET}/{PREFIX}"),
        "cluster_fallback_config_export_delay": 1,
        "gateway_version": GATEWAY_VERSION,
        "node_id": ENGINE_NODE_ID,
        "election": false,
        // These tests count config.json's PUTs: `engine_history` turns history on.
        "cluster_fallback_history": false,
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
        "aws_region": REGION,
        "storage_endpoint": endpoint,
        "tick_period_ms": 200,
        "call_timeout_ms": 2000,
        "lease_ttl_ms": 1000,
        "retry_base_ms": 200,
        "retry_max_ms": 1000,
        "config": doc,
    })
}

/// One engine node: its nginx.conf ingredients.
#[derive(Clone, Debug)]
pub struct EngineSpec {
    pub name: String,
    pub workers: usize,
    /// The filter configuration (JSON text) given to `proxy_wasm config_bridge '...'`.
    pub filter_config: String,
    /// Variables set in nginx's environment and listed with `env NAME;` (workers see only those).
    pub env: Vec<(String, String)>,
    /// `shm_kv` zones (`name`, size); default `* 1m`.
    pub shm_kv: Vec<(String, String)>,
    /// A second error log at `debug` level in `logs/debug.log`.
    pub debug_log: bool,
    /// Extra directives in the `wasm {}` block (e.g. `proxy_wasm_log_dispatch_errors off;`).
    pub wasm_directives: Vec<String>,
}

impl EngineSpec {
    /// Two workers, `shm_kv * 1m`, the filter on `location /`.
    pub fn new(name: &str, filter_config: impl fmt::Display) -> EngineSpec {
        EngineSpec {
            name: name.to_string(),
            workers: 2,
            filter_config: filter_config.to_string(),
            env: Vec::new(),
            shm_kv: vec![("*".into(), "1m".into())],
            debug_log: false,
            wasm_directives: Vec::new(),
        }
    }
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }
    /// Replaces the default `shm_kv * 1m;` with these zones.
    pub fn shm_kv(mut self, zones: &[(&str, &str)]) -> Self {
        self.shm_kv = zones
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect();
        self
    }
    pub fn debug_log(mut self) -> Self {
        self.debug_log = true;
        self
    }
    pub fn wasm_directive(mut self, directive: &str) -> Self {
        self.wasm_directives.push(directive.to_string());
        self
    }
}

/// `text` as an nginx single-quoted string: `\` and `'` escaped (nginx unescapes `\\`, `\'`,
/// `\"`, `\t`, `\r`, `\n` inside quotes, so JSON escapes must be protected too).
pub fn nginx_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// nginx reads its configuration in 4096-byte buffers and a single token must fit in one
/// ("too long parameter"): an inline filter configuration is limited to about this size.
pub const NGINX_MAX_TOKEN: usize = 4000;

fn render_conf(spec: &EngineSpec, module: &Path, port: u16) -> String {
    let quoted = nginx_quote(&spec.filter_config);
    assert!(
        quoted.len() <= NGINX_MAX_TOKEN,
        "{}: the filter configuration is {} bytes quoted; nginx accepts at most ~4 KB in one \
         directive argument (its configuration buffer)",
        spec.name,
        quoted.len()
    );
    let mut c = String::new();
    c.push_str("# written by tests/src/real_engine.rs\n");
    c.push_str(&format!("worker_processes {};\n", spec.workers));
    c.push_str("daemon off;\nmaster_process on;\n");
    c.push_str("error_log logs/error.log info;\n");
    if spec.debug_log {
        c.push_str("error_log logs/debug.log debug;\n");
    }
    c.push_str("pid logs/nginx.pid;\n");
    // Old workers of a reload must not linger on a hanging dispatch.
    c.push_str("worker_shutdown_timeout 3s;\n");
    for (name, _) in &spec.env {
        c.push_str(&format!("env {name};\n"));
    }
    c.push_str("events { worker_connections 512; }\n");
    c.push_str("wasm {\n");
    c.push_str(&format!("    module config_bridge {};\n", module.display()));
    for (zone, size) in &spec.shm_kv {
        c.push_str(&format!("    shm_kv {zone} {size};\n"));
    }
    for d in &spec.wasm_directives {
        c.push_str(&format!("    {d}\n"));
    }
    c.push_str("}\n");
    c.push_str("http {\n    access_log off;\n");
    for t in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        c.push_str(&format!("    {t}_temp_path tmp/{t};\n"));
    }
    c.push_str(&format!(
        "    server {{\n        listen 127.0.0.1:{port};\n        location / {{\n            \
         proxy_wasm config_bridge {quoted};\n            return 200 \"ok\\n\";\n        }}\n    \
         }}\n}}\n"
    ));
    c
}

// ---- the concurrency limit and the spawner ------------------------------------------------------

struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
}

fn slots() -> &'static Slots {
    static SLOTS: OnceLock<Slots> = OnceLock::new();
    SLOTS.get_or_init(|| Slots {
        used: Mutex::new(0),
        freed: Condvar::new(),
    })
}

fn max_parallel() -> usize {
    std::env::var(PARALLEL_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n: &usize| *n > 0)
        .unwrap_or(2)
}

/// One of the [`max_parallel`] engine slots; released on drop.
struct Permit;

impl Permit {
    fn acquire() -> Permit {
        let s = slots();
        let mut used = s.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= max_parallel() {
            used = s.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        Permit
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let s = slots();
        let mut used = s.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(1);
        s.freed.notify_one();
    }
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns from one thread that lives as long as the process: `PR_SET_PDEATHSIG` fires when the
/// *thread* that forked the child exits, and test threads end before the process does.
fn spawn_child(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("real-engine-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawning the engine spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| std::io::Error::other("engine spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("engine spawner thread is gone"))?
}

/// A free 127.0.0.1 port (bound then released: a race with other processes is possible; `start`
/// retries on "Address already in use").
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free 127.0.0.1 port: {e}"))
}

// ---- /proc ----------------------------------------------------------------------------------------

/// `(state, ppid, pgrp)` of a process from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u32, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
    let rest = &s[s.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// A process that exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    matches!(proc_stat(pid), Some((state, _, _)) if state != 'Z' && state != 'X')
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `VmRSS` of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn signal(pid: i32, sig: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

// ---- the error log --------------------------------------------------------------------------------

/// One error-log entry: `2026/12/01 08:29:38 [info] 11385#0: *5 text` plus continuation lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// `YYYY/MM/DD HH:MM:SS`.
    pub time: String,
    /// `debug`, `info`, `notice`, `warn`, `error`, `crit`, `alert`, `emerg`.
    pub level: String,
    pub pid: u32,
    /// The text after `pid#tid: ` (with the `*conn ` prefix when there is one), continuation
    /// lines included after `\n`.
    pub text: String,
    /// Byte offset of the entry in the file.
    pub offset: usize,
}

impl LogEntry {
    pub fn contains(&self, needle: &str) -> bool {
        self.text.contains(needle)
    }
    /// Whether this entry is a line of the filter (`[config-bridge] ...`).
    pub fn is_filter(&self) -> bool {
        self.text.contains(FILTER_PREFIX)
    }
}

impl fmt::Display for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] {}: {}",
            self.time, self.level, self.pid, self.text
        )
    }
}

fn parse_head(line: &str) -> Option<(String, String, u32, String)> {
    // 2026/12/01 08:29:38 [info] 11385#0: text
    let b = line.as_bytes();
    if b.len() < 22 || b[4] != b'/' || b[7] != b'/' || b[10] != b' ' || b[13] != b':' {
        return None;
    }
    let time = line.get(..19)?.to_string();
    let rest = line.get(20..)?.strip_prefix('[')?;
    let (level, rest) = rest.split_once("] ")?;
    let (pid, rest) = rest.split_once('#')?;
    let pid = pid.parse().ok()?;
    let (_tid, text) = rest.split_once(": ").unwrap_or((rest, ""));
    Some((time, level.to_string(), pid, text.to_string()))
}

/// Parses an nginx error log (starting at byte `base` of the file).
pub fn parse_log(text: &str, base: usize) -> Vec<LogEntry> {
    let mut out: Vec<LogEntry> = Vec::new();
    let mut offset = base;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        match parse_head(bare) {
            Some((time, level, pid, text)) => out.push(LogEntry {
                time,
                level,
                pid,
                text,
                offset,
            }),
            None => {
                if let Some(last) = out.last_mut() {
                    last.text.push('\n');
                    last.text.push_str(bare);
                }
            }
        }
        offset += line.len();
    }
    out
}

/// What [`EngineNode::problems`] reports: a trap, a panic, a crash or a fatal host error.
pub const PROBLEM_MARKERS: [&str; 6] = [
    "wasm trap",
    "panicked at",
    "exited on signal",
    "exited with fatal code",
    "cannot be respawned",
    "failed initializing",
];

// ---- HTTP client --------------------------------------------------------------------------------

/// An HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.0 request over a fresh connection (the server closes it after the answer).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<HttpReply> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut req = format!("{method} {path} HTTP/1.0\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers in the answer"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpReply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

// ---- the node -------------------------------------------------------------------------------------

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A running nginx + ngx_wasm_module node with the filter on `location /`. Stopped on drop.
pub struct EngineNode {
    spec: EngineSpec,
    nginx: PathBuf,
    module: PathBuf,
    prefix: PathBuf,
    port: u16,
    child: Option<Child>,
    master: u32,
    /// The current generation of workers (from the last start or reload).
    generation: Vec<u32>,
    _permit: Permit,
}

impl fmt::Debug for EngineNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineNode")
            .field("name", &self.spec.name)
            .field("prefix", &self.prefix)
            .field("port", &self.port)
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

/// A position in the error log (its length in bytes at some moment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogMark(pub usize);

impl EngineNode {
    /// Starts the node and waits until every worker loaded the module and configured the filter
    /// (or died trying). `None` = the engine is missing and this is not CI (the test should
    /// return). Panics when nginx cannot start.
    pub fn start(spec: EngineSpec) -> Option<EngineNode> {
        let nginx = engine_binary(&spec.name)?;
        let module = module_path();
        let permit = Permit::acquire();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let prefix = workspace_root()
            .join("target")
            .join("real-engine")
            .join(format!("{}-{}-{n}", spec.name, std::process::id()));
        let _ = std::fs::remove_dir_all(&prefix);
        for d in ["logs", "conf", "tmp"] {
            std::fs::create_dir_all(prefix.join(d))
                .unwrap_or_else(|e| panic!("creating {}: {e}", prefix.join(d).display()));
        }
        let mut node = EngineNode {
            spec,
            nginx,
            module,
            prefix,
            port: 0,
            child: None,
            master: 0,
            generation: Vec::new(),
            _permit: permit,
        };
        let mut last_err = String::new();
        for _attempt in 0..5 {
            node.port = free_port();
            match node.spawn_master() {
                Ok(()) => {
                    node.generation = node
                        .wait_generation(LogMark(0), &[], WAIT)
                        .unwrap_or_else(|e| panic!("{}: start: {e}", node.spec.name));
                    return Some(node);
                }
                Err(e) if e.contains("Address already in use") => last_err = e,
                Err(e) => panic!("{}: nginx did not start: {e}", node.spec.name),
            }
        }
        panic!("{}: no free port after 5 tries: {last_err}", node.spec.name);
    }

    fn write_conf(&self) {
        let conf = render_conf(&self.spec, &self.module, self.port);
        std::fs::write(self.prefix.join("conf/nginx.conf"), conf)
            .unwrap_or_else(|e| panic!("writing nginx.conf: {e}"));
    }

    fn spawn_master(&mut self) -> Result<(), String> {
        self.write_conf();
        let _ = std::fs::remove_file(self.prefix.join("logs/error.log"));
        let stderr = std::fs::File::create(self.prefix.join("logs/stderr.log"))
            .map_err(|e| format!("creating logs/stderr.log: {e}"))?;
        let mut cmd = Command::new(&self.nginx);
        cmd.arg("-p")
            .arg(format!("{}/", self.prefix.display()))
            .args(["-c", "conf/nginx.conf", "-e", "logs/error.log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0);
        for (k, v) in &self.spec.env {
            cmd.env(k, v);
        }
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child =
            spawn_child(cmd).map_err(|e| format!("spawning {}: {e}", self.nginx.display()))?;
        self.master = child.id();
        self.child = Some(child);
        // Up when the master started its workers; a configuration or bind error ends it.
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.error_log();
            if log.contains("start worker processes") {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                let stderr = std::fs::read_to_string(self.prefix.join("logs/stderr.log"))
                    .unwrap_or_default();
                return Err(format!("nginx exited ({status}):\n{stderr}\n{log}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nginx did not start its workers in {WAIT:?}:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the generation of workers started after `since` (`spec.workers` of them): each
    /// loaded the module and configured the filter (or exited), and every pid of `old` is gone.
    /// Returns the live pids of the new generation.
    fn wait_generation(
        &self,
        since: LogMark,
        old: &[u32],
        timeout: Duration,
    ) -> Result<Vec<u32>, String> {
        let deadline = Instant::now() + timeout;
        let want = self.spec.workers;
        // When this wait first saw each worker's module-load line.
        let mut loaded_seen: BTreeMap<u32, Instant> = BTreeMap::new();
        loop {
            let entries = self.entries_since(since);
            let started: Vec<u32> = entries
                .iter()
                .filter(|e| e.pid == self.master)
                .filter_map(|e| e.text.strip_prefix("start worker process "))
                .filter_map(|p| p.trim().parse().ok())
                .collect();
            for e in entries.iter().filter(|e| e.contains(MODULE_LOADED)) {
                loaded_seen.entry(e.pid).or_insert_with(Instant::now);
            }
            let settled = |pid: u32| {
                !alive(pid)
                    || entries.iter().any(|e| {
                        e.pid == pid
                            && (e.contains(CONFIGURED)
                                || e.contains(INVALID_CONFIGURATION)
                                || e.contains("failed initializing"))
                    })
                    // A filter that logs no configure line at info: quiet for a second after
                    // loading the module (on_configure runs right after the load).
                    || loaded_seen
                        .get(&pid)
                        .is_some_and(|t| t.elapsed() > Duration::from_secs(1))
            };
            let old_gone = old.iter().all(|p| !alive(*p));
            let all_settled = started.len() >= want && started.iter().all(|p| settled(*p));
            if old_gone && all_settled {
                // The master needs a moment to log a worker that died during configure.
                std::thread::sleep(Duration::from_millis(100));
                return Ok(started.into_iter().filter(|p| alive(*p)).collect());
            }
            if !alive(self.master) {
                return Err(format!("the master exited:\n{}", self.error_log()));
            }
            if let Some(e) = entries
                .iter()
                .find(|e| e.pid == self.master && e.level == "emerg")
            {
                return Err(format!("the master refused the configuration: {e}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "workers not ready after {timeout:?} (started {started:?}, old still alive: \
                     {:?}); log since the mark:\n{}",
                    old.iter().filter(|p| alive(**p)).collect::<Vec<_>>(),
                    self.log_since_for_humans(since)
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The name given in the spec.
    pub fn name(&self) -> &str {
        &self.spec.name
    }
    /// The scratch prefix (`conf/nginx.conf`, `logs/error.log`).
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
    pub fn master_pid(&self) -> u32 {
        self.master
    }
    pub fn spec(&self) -> &EngineSpec {
        &self.spec
    }
    /// The workers of the last start or reload that are still alive (a respawned worker is not
    /// in it: see [`EngineNode::worker_pids`]).
    pub fn generation(&self) -> Vec<u32> {
        self.generation
            .iter()
            .copied()
            .filter(|p| alive(*p))
            .collect()
    }

    /// Live children of the master (workers, including old ones still shutting down after a
    /// reload), from /proc.
    pub fn worker_pids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = all_pids()
            .into_iter()
            .filter(|p| matches!(proc_stat(*p), Some((s, ppid, _)) if ppid == self.master && s != 'Z' && s != 'X'))
            .collect();
        v.sort_unstable();
        v
    }

    /// `VmRSS` of a worker in KiB (0 when it is gone).
    pub fn worker_rss_kib(&self, pid: u32) -> u64 {
        rss_kib(pid).unwrap_or(0)
    }

    /// The whole error log.
    pub fn error_log(&self) -> String {
        read_lossy(&self.prefix.join("logs/error.log"))
    }

    /// The debug log (empty unless `EngineSpec::debug_log`).
    pub fn debug_log_path(&self) -> PathBuf {
        self.prefix.join("logs/debug.log")
    }

    /// Size of the debug log in bytes (a position in it).
    pub fn debug_log_len(&self) -> usize {
        std::fs::metadata(self.debug_log_path())
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    }

    /// Per pid, how many debug-log entries after byte `from` contain `needle` (e.g. `resuming
    /// "on_tick"`, which ngx_wasm_module logs at debug for every tick of every root context).
    pub fn debug_counts_since(&self, from: usize, needle: &str) -> BTreeMap<u32, usize> {
        let bytes = std::fs::read(self.debug_log_path()).unwrap_or_default();
        let start = from.min(bytes.len());
        let mut m = BTreeMap::new();
        for e in parse_log(&String::from_utf8_lossy(&bytes[start..]), start) {
            if e.contains(needle) {
                *m.entry(e.pid).or_insert(0) += 1;
            }
        }
        m
    }

    /// Fails (with the log) unless exactly `n` workers of the current generation are alive and
    /// the master has no other children.
    pub fn assert_workers(&self, n: usize) {
        let gen = self.generation();
        let all = self.worker_pids();
        assert!(
            gen.len() == n && all.len() == n,
            "{}: expected {n} live workers, generation {gen:?}, children {all:?}; log:\n{}",
            self.spec.name,
            self.log_since_for_humans(LogMark(0))
        );
    }

    /// Sends `n` `GET /req/<i>` through the filter's location, one connection each; returns how
    /// many were answered `200 ok` and a description of the first few others. Gives up after 50
    /// failures, or after 3 in a row that got no answer (2 s timeout: no worker is left).
    pub fn hammer(&self, n: usize) -> (usize, Vec<String>) {
        let mut ok = 0;
        let mut bad = Vec::new();
        let (mut failures, mut unanswered) = (0, 0);
        for i in 0..n {
            let answer = self.get_with_timeout(&format!("/req/{i}"), Duration::from_secs(2));
            match &answer {
                Ok(r) if r.status == 200 && r.body == b"ok\n" => {
                    ok += 1;
                    unanswered = 0;
                }
                Ok(_) => unanswered = 0,
                Err(_) => unanswered += 1,
            }
            if !matches!(&answer, Ok(r) if r.status == 200 && r.body == b"ok\n") {
                failures += 1;
                if bad.len() < 3 {
                    bad.push(match answer {
                        Ok(r) => format!("request {i}: {} {:?}", r.status, r.text()),
                        Err(e) => format!("request {i}: {e}"),
                    });
                }
            }
            if failures >= 50 || unanswered >= 3 {
                bad.push(format!(
                    "gave up after {failures} failures in {} requests",
                    i + 1
                ));
                break;
            }
        }
        (ok, bad)
    }

    /// Now, as a position in the error log.
    pub fn mark(&self) -> LogMark {
        LogMark(
            std::fs::metadata(self.prefix.join("logs/error.log"))
                .map(|m| m.len() as usize)
                .unwrap_or(0),
        )
    }

    /// Every entry of the error log.
    pub fn entries(&self) -> Vec<LogEntry> {
        parse_log(&self.error_log(), 0)
    }

    /// The entries written after `mark`.
    pub fn entries_since(&self, mark: LogMark) -> Vec<LogEntry> {
        let bytes = std::fs::read(self.prefix.join("logs/error.log")).unwrap_or_default();
        let start = mark.0.min(bytes.len());
        parse_log(&String::from_utf8_lossy(&bytes[start..]), start)
    }

    /// Entries containing `needle`.
    pub fn entries_containing(&self, needle: &str) -> Vec<LogEntry> {
        self.entries()
            .into_iter()
            .filter(|e| e.contains(needle))
            .collect()
    }

    /// Entries after `mark` containing `needle`.
    pub fn entries_since_containing(&self, mark: LogMark, needle: &str) -> Vec<LogEntry> {
        self.entries_since(mark)
            .into_iter()
            .filter(|e| e.contains(needle))
            .collect()
    }

    /// Waits for an entry containing `needle` (anywhere in the log); panics with the log on timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> LogEntry {
        self.wait_for_log_since(LogMark(0), needle, timeout)
    }

    /// Waits for an entry after `mark` containing `needle`; panics with the log on timeout.
    pub fn wait_for_log_since(&self, mark: LogMark, needle: &str, timeout: Duration) -> LogEntry {
        self.wait_for_logs_since(mark, needle, 1, timeout)
            .into_iter()
            .next()
            .unwrap_or_else(|| unreachable!())
    }

    /// Waits for `n` entries after `mark` containing `needle`; returns them all.
    pub fn wait_for_logs_since(
        &self,
        mark: LogMark,
        needle: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<LogEntry> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.entries_since_containing(mark, needle);
            if found.len() >= n {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: waited {timeout:?} for {n} log entr(y/ies) containing {needle:?}, got {}; \
                     log since the mark:\n{}",
                    self.spec.name,
                    found.len(),
                    self.log_since_for_humans(mark)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Polls `cond` every 25 ms until it holds or `timeout` passes; returns whether it held.
    pub fn wait_until(&self, timeout: Duration, mut cond: impl FnMut(&EngineNode) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The log after `mark` for assertion messages: first lines of each entry (a trap's panic
    /// message kept, backtraces dropped), at most the first 40 and the last 80 entries.
    pub fn log_since_for_humans(&self, mark: LogMark) -> String {
        let lines: Vec<String> = self
            .entries_since(mark)
            .iter()
            .map(|e| {
                let first = e.text.lines().next().unwrap_or("");
                let caused = e
                    .text
                    .lines()
                    .find(|l| l.contains("wasm trap") || l.contains("panicked at"))
                    .map(|l| format!(" / {l}"))
                    .unwrap_or_default();
                format!("{} [{}] {}: {first}{caused}", e.time, e.level, e.pid)
            })
            .collect();
        elide(&lines, 40, 80)
    }

    /// `GET path` through the filter's location (HTTP/1.0, 5 s timeout).
    pub fn get(&self, path: &str) -> std::io::Result<HttpReply> {
        http_request(self.addr(), "GET", path, &[], &[], Duration::from_secs(5))
    }

    /// `GET path` with a chosen timeout.
    pub fn get_with_timeout(&self, path: &str, timeout: Duration) -> std::io::Result<HttpReply> {
        http_request(self.addr(), "GET", path, &[], &[], timeout)
    }

    /// Entries showing a trap, a panic, a crash or a fatal host error ([`PROBLEM_MARKERS`]).
    pub fn problems(&self) -> Vec<LogEntry> {
        self.entries()
            .into_iter()
            .filter(|e| PROBLEM_MARKERS.iter().any(|m| e.contains(m)))
            .collect()
    }

    /// Wasm traps (one `wasm trap` entry per trap) plus guest panics reported without a trap.
    pub fn count_traps(&self) -> usize {
        let entries = self.entries();
        let traps = entries.iter().filter(|e| e.contains("wasm trap")).count();
        let panics = entries.iter().filter(|e| e.contains("panicked at")).count();
        traps.max(panics)
    }

    /// Fails with the offending entries if the log shows any [`EngineNode::problems`].
    pub fn assert_no_traps(&self) {
        let p = self.problems();
        assert!(
            p.is_empty(),
            "{}: {} trap/panic/crash entr(y/ies) in the engine's log:\n{}",
            self.spec.name,
            p.len(),
            p.iter()
                .take(6)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
    }

    /// Filter entries (`[config-bridge] ...`) of `pid` containing `needle`.
    pub fn filter_lines_of(&self, pid: u32, needle: &str) -> Vec<LogEntry> {
        self.entries()
            .into_iter()
            .filter(|e| e.pid == pid && e.is_filter() && e.contains(needle))
            .collect()
    }

    /// How often each pid logged `needle` (filter lines only).
    pub fn filter_line_counts(&self, needle: &str) -> BTreeMap<u32, usize> {
        let mut m = BTreeMap::new();
        for e in self.entries() {
            if e.is_filter() && e.contains(needle) {
                *m.entry(e.pid).or_insert(0) += 1;
            }
        }
        m
    }

    /// Rewrites nginx.conf with a new filter configuration and reloads (SIGHUP, as `nginx -s
    /// reload`); waits for the new generation of workers (loaded and configured, or dead) and for
    /// the old one to exit. Returns the new workers. Panics when the master refuses the config.
    pub fn reload_with(&mut self, filter_config: impl fmt::Display) -> Vec<u32> {
        self.spec.filter_config = filter_config.to_string();
        self.reload()
    }

    /// Reloads with the current spec (after changing it with [`EngineNode::spec_mut`]).
    pub fn reload(&mut self) -> Vec<u32> {
        self.write_conf();
        let old = self.worker_pids();
        let mark = self.mark();
        assert!(
            signal(self.master as i32, libc::SIGHUP),
            "{}: cannot signal the master {}",
            self.spec.name,
            self.master
        );
        self.generation = self
            .wait_generation(mark, &old, WAIT)
            .unwrap_or_else(|e| panic!("{}: reload: {e}", self.spec.name));
        self.generation.clone()
    }

    /// The spec, to change before [`EngineNode::reload`].
    pub fn spec_mut(&mut self) -> &mut EngineSpec {
        &mut self.spec
    }

    /// Sends `sig` to a worker (e.g. `libc::SIGKILL`).
    pub fn signal_worker(&self, pid: u32, sig: i32) {
        assert!(
            self.worker_pids().contains(&pid),
            "{}: {pid} is not a worker of this node",
            self.spec.name
        );
        assert!(
            signal(pid as i32, sig),
            "{}: kill({pid}, {sig}) failed",
            self.spec.name
        );
    }

    /// Stops the node (same as dropping it, but a test can look at the prefix afterwards).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = self.master as i32;
        // `nginx -s stop`: fast shutdown of master and workers.
        signal(pgid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        // Wait without reaping: while the master is an unreaped zombie its pid (= our process
        // group id) cannot be reused, so the group kill below can only hit our processes.
        while Instant::now() < deadline {
            let master_done = !alive(self.master);
            let group_left = all_pids()
                .into_iter()
                .any(|p| matches!(proc_stat(p), Some((s, _, g)) if g == self.master && s != 'Z' && s != 'X'));
            if master_done && !group_left {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal(-pgid, libc::SIGKILL);
        let _ = child.wait();
    }

    /// Name, prefix, port and processes, for messages.
    pub fn summary(&self) -> String {
        format!(
            "{} (prefix {}, port {}, master {}, workers {:?})",
            self.spec.name,
            self.prefix.display(),
            self.port,
            self.master,
            self.worker_pids()
        )
    }
}

impl Drop for EngineNode {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "real engine {}: kept {} (conf/nginx.conf, logs/error.log)",
                self.spec.name,
                self.prefix.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.prefix);
        }
    }
}

/// `lines` joined, with the middle replaced by a count when there are more than `head + tail`.
pub fn elide(lines: &[String], head: usize, tail: usize) -> String {
    if lines.len() <= head + tail {
        return lines.join("\n");
    }
    format!(
        "{}\n... ({} entries left out) ...\n{}",
        lines[..head].join("\n"),
        lines.len() - head - tail,
        lines[lines.len() - tail..].join("\n")
    )
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

// ---- the storage side: mock S3 on a real port -----------------------------------------------------

/// One request as it reached the S3 port (before fault injection).
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub at: SystemTime,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    /// The answer's status; `None` when the connection was dropped or held (faults).
    pub status: Option<u16>,
    /// Which MockS3 instance (0, then +1 per [`LiveS3::restart_empty`]).
    pub instance: u32,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct RecorderState {
    seen: Vec<SeenRequest>,
    instance: u32,
}

/// Records every request with its headers, then hands it on.
#[derive(Clone)]
struct Recorder {
    inner: Arc<Mutex<SharedHandler>>,
    state: Arc<Mutex<RecorderState>>,
}

impl Handler for Recorder {
    fn handle(&self, req: &HttpRequest, ctx: &CallContext) -> Reply {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let reply = inner.handle(req, ctx);
        let status = reply.response().map(|r| r.status);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let instance = st.instance;
        st.seen.push(SeenRequest {
            at: SystemTime::now(),
            method: req.method.clone(),
            path: req.path.clone(),
            headers: req.headers.clone(),
            body_len: req.body.len(),
            status,
            instance,
        });
        reply
    }
}

/// The mock S3 (real SigV4 checks, [`BUCKET`], [`ACCESS_KEY`]/[`SECRET_KEY`]) behind a fault
/// injector on a 127.0.0.1 port, recording every request. `stop` makes the port refuse
/// connections, `start_again` serves the same store again, `restart_empty` serves a fresh store.
pub struct LiveS3 {
    make: fn() -> MockS3,
    s3: MockS3,
    faults: Faulty,
    recorder: Recorder,
    port: u16,
    server: Option<ServerHandle>,
}

impl LiveS3 {
    /// Serving [`mock_s3`] on a free port.
    pub fn start() -> LiveS3 {
        LiveS3::start_with(mock_s3)
    }

    /// Serving `make()` (e.g. [`crate::mock_s3_with_session_token`]) on a free port.
    pub fn start_with(make: fn() -> MockS3) -> LiveS3 {
        LiveS3::stopped_with(free_port(), make).serving()
    }

    /// [`mock_s3`], not serving yet: connections to `port` are refused until
    /// [`LiveS3::start_again`].
    pub fn stopped(port: u16) -> LiveS3 {
        LiveS3::stopped_with(port, mock_s3)
    }

    /// `make()`, not serving yet on `port`.
    pub fn stopped_with(port: u16, make: fn() -> MockS3) -> LiveS3 {
        let s3 = make();
        let faults = Faulty::new(Arc::new(s3.clone()));
        let recorder = Recorder {
            inner: Arc::new(Mutex::new(faults.shared())),
            state: Arc::default(),
        };
        LiveS3 {
            make,
            s3,
            faults,
            recorder,
            port,
            server: None,
        }
    }

    fn serving(mut self) -> LiveS3 {
        self.start_again();
        self
    }

    /// Serves (again) on the same port.
    pub fn start_again(&mut self) {
        if self.server.is_some() {
            return;
        }
        let addr = format!("127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match serve::spawn(Arc::new(self.recorder.clone()), &addr) {
                Ok(h) => {
                    self.server = Some(h);
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("serving the mock S3 on {addr}: {e}"),
            }
        }
    }

    /// Stops serving: connections are refused.
    pub fn stop(&mut self) {
        if let Some(h) = self.server.take() {
            h.stop();
        }
    }

    /// Stops, replaces the store with an empty one (same bucket and credentials) and serves again
    /// on the same port: S3 "restarted and lost everything".
    pub fn restart_empty(&mut self) {
        self.stop();
        self.s3 = (self.make)();
        self.faults = Faulty::new(Arc::new(self.s3.clone()));
        *self
            .recorder
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = self.faults.shared();
        self.recorder
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .instance += 1;
        self.start_again();
    }

    pub fn port(&self) -> u16 {
        self.port
    }
    /// `127.0.0.1:PORT` (the dispatch upstream the filter derives).
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    /// The store (current instance).
    pub fn mock(&self) -> &MockS3 {
        &self.s3
    }
    /// The fault injector in front of the store (current instance).
    pub fn faults(&self) -> &Faulty {
        &self.faults
    }
    /// The exported object ([`CONFIG_KEY`] in [`BUCKET`]).
    pub fn object(&self) -> Option<StoredObject> {
        self.s3.object(BUCKET, CONFIG_KEY)
    }
    /// Every request that reached the port, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.recorder
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .clone()
    }
    /// Requests with `method` that reached the port after `since`.
    pub fn requests_since(&self, method: &str, since: SystemTime) -> Vec<SeenRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.at >= since)
            .collect()
    }
    /// PUTs carrying a body (the full config), any outcome.
    pub fn puts(&self) -> Vec<SeenRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PUT" && r.body_len > 0)
            .collect()
    }
    /// Every SigV4 signature sent (from the `authorization` headers).
    pub fn signatures(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter_map(|r| r.header("authorization"))
            .filter_map(|a| a.split("Signature=").nth(1))
            .map(str::to_string)
            .collect()
    }
    /// `METHOD path -> status` per request, for messages.
    pub fn summary(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| {
                format!(
                    "{} {} ({} bytes, if-match {:?}, if-none-match {:?}) -> {}",
                    r.method,
                    r.path,
                    r.body_len,
                    r.header("if-match"),
                    r.header("if-none-match"),
                    r.status.map_or("no answer".to_string(), |s| s.to_string())
                )
            })
            .collect()
    }
}

impl Drop for LiveS3 {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until the exported object holds exactly `expected`; panics with the S3 request log and
/// the engine's log otherwise.
pub fn wait_for_object(node: &EngineNode, s3: &LiveS3, expected: &[u8], timeout: Duration) {
    let ok = node.wait_until(timeout, |_| s3.object().is_some_and(|o| o.body == expected));
    assert!(
        ok,
        "{}: s3://{BUCKET}/{CONFIG_KEY} did not become the expected {} bytes in {timeout:?} (now: \
         {:?}); S3 saw:\n{}\nlog:\n{}",
        node.name(),
        expected.len(),
        s3.object()
            .map(|o| String::from_utf8_lossy(&o.body).into_owned()),
        elide(&s3.summary(), 10, 20),
        node.log_since_for_humans(LogMark(0))
    );
}

/// Lets the node run for `d` (a settle time before "nothing more happened" assertions).
pub fn settle(d: Duration) {
    std::thread::sleep(d);
}

// ---- secrets --------------------------------------------------------------------------------------

/// Fails if the node's error log (and debug log, if any) contains one of `secrets` or a long
/// enough half of one (≥ 12 characters), e.g. [`SECRET_KEY`], a session token, the signatures from
/// [`LiveS3::signatures`]. The engine's own debug output is checked too: the Authorization header
/// must not appear there either.
pub fn assert_no_secrets_in_logs(node: &EngineNode, secrets: &[String]) {
    let fragments: Vec<&str> = secrets
        .iter()
        .flat_map(|s| {
            let mid = s.len() / 2;
            [
                s.as_str(),
                s.get(..mid.max(12).min(s.len())).unwrap_or(s),
                s.get(mid..).unwrap_or(s),
            ]
        })
        .filter(|f| f.len() >= 12)
        .collect();
    for e in node.entries() {
        for f in &fragments {
            assert!(
                !e.text.contains(f),
                "{}: a secret leaked into the error log: {e}",
                node.name()
            );
        }
    }
}

/// The engine tests' secrets: [`SECRET_KEY`], [`crate::SESSION_TOKEN`] and every signature `s3` saw.
pub fn known_secrets(s3: &LiveS3) -> Vec<String> {
    let mut v = vec![SECRET_KEY.to_string(), crate::SESSION_TOKEN.to_string()];
    v.extend(s3.signatures());
    v
}

// ---- a config source over HTTP ---------------------------------------------------------------------

/// A tiny "config URL" on a 127.0.0.1 port for `config_source: "url"`: serves the current document
/// with an ETag (304 on `If-None-Match` with the same one). `set` swaps the document.
pub struct ConfigUrl {
    doc: Arc<Mutex<(u64, Vec<u8>)>>,
    server: Option<ServerHandle>,
}

impl ConfigUrl {
    pub fn start(doc: &Value) -> ConfigUrl {
        let state = Arc::new(Mutex::new((1u64, crate::payload_bytes(doc))));
        let st = state.clone();
        let handler = move |req: &HttpRequest, _ctx: &CallContext| -> Reply {
            let (version, body) = st.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let etag = format!("\"v{version}\"");
            if req.header("if-none-match") == Some(etag.as_str()) {
                return Reply::now(
                    host_harness::http::HttpResponse::new(304).with_header("etag", &etag),
                );
            }
            Reply::now(
                host_harness::http::HttpResponse::new(200)
                    .with_header("content-type", "application/json")
                    .with_header("etag", &etag)
                    .with_body(body),
            )
        };
        let server = serve::spawn(Arc::new(handler), "127.0.0.1:0")
            .unwrap_or_else(|e| panic!("serving the config URL: {e}"));
        ConfigUrl {
            doc: state,
            server: Some(server),
        }
    }

    /// `http://127.0.0.1:PORT/config`
    pub fn url(&self) -> String {
        format!(
            "{}/config",
            self.server.as_ref().map(|s| s.url()).unwrap_or_default()
        )
    }

    /// Serves `doc` from now on (a new ETag).
    pub fn set(&self, doc: &Value) {
        let mut st = self.doc.lock().unwrap_or_else(|e| e.into_inner());
        st.0 += 1;
        st.1 = crate::payload_bytes(doc);
    }
}

/// Filter settings that make `cfg` take its config from `url` (polled every 200 ms) instead of
/// its own `config`.
pub fn with_url_source(mut cfg: Value, url: &str) -> Value {
    if let Some(m) = cfg.as_object_mut() {
        m.remove("config");
    }
    cfg["config_source"] = json!("url");
    cfg["config_url"] = json!(url);
    cfg["config_poll_interval"] = json!(0.2);
    cfg
}

/// A declarative config with a service whose name holds characters nginx's quoting and JSON's
/// escaping both care about (`'`, `"`, `\`, `$`, `;`, `{}`, non-ASCII), `n` making it distinct.
pub fn tricky_doc(n: u32) -> Value {
    json!({
        "_format_version": "3.0",
        "services": [{
            "name": format!("svc-{n}"),
            "url": format!("http://upstream-{n}.internal:8080"),
            "tags": ["it's", "a \"quoted\" \\ back\\slash", "$host; {braces}", "ünïcødé ✓", "tab\there"],
            "routes": [{"name": format!("route-{n}"), "paths": [format!("/r{n}")]}],
        }],
    })
}

/// Sorted, deduplicated pids of `entries`.
pub fn pids_of(entries: &[LogEntry]) -> BTreeSet<u32> {
    entries.iter().map(|e| e.pid).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_entries_keep_their_continuation_lines() {
        let log = "2026/12/01 08:29:48 [error] 11824#0: *5 \nthread '<unnamed>' (1) panicked at x.rs:1:2:\nmissing ContextType on root_context\n2026/12/01 08:29:48 [info] 11825#0: [wasm] successfully loaded \"config_bridge\" module in 995ms <vm: \"main\">\n";
        let e = parse_log(log, 10);
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].level.as_str(), e[0].pid, e[0].offset),
            ("error", 11824, 10)
        );
        assert!(e[0].contains("panicked at") && e[0].contains("missing ContextType"));
        assert_eq!(
            (e[1].pid, e[1].time.as_str()),
            (11825, "2026/12/01 08:29:48")
        );
        assert!(e[1].contains(MODULE_LOADED));
    }

    #[test]
    fn nginx_quoting_protects_json_escapes_and_quotes() {
        let json = r#"{"a":"it's \"q\" \\ \t $x; {}"}"#;
        let q = nginx_quote(json);
        assert!(q.starts_with('\'') && q.ends_with('\''));
        // What nginx's parser does inside quotes: `\\` -> `\`, `\'` -> `'`, `\"` -> `"`,
        // `\t` -> tab, `\n`, `\r`; any other `\` stays.
        let inner = &q[1..q.len() - 1];
        let mut out = String::new();
        let mut it = inner.chars().peekable();
        while let Some(c) = it.next() {
            if c == '\\' {
                match it.peek().copied() {
                    Some(n @ ('"' | '\'' | '\\')) => {
                        out.push(n);
                        it.next();
                        continue;
                    }
                    Some('t') => {
                        out.push('\t');
                        it.next();
                        continue;
                    }
                    _ => {}
                }
            }
            out.push(c);
        }
        assert_eq!(out, json);
    }

    #[test]
    fn conf_lists_env_zones_and_the_filter() {
        let spec = EngineSpec::new("t", r#"{"k":"v"}"#)
            .workers(3)
            .env("AWS_ACCESS_KEY_ID", "AK")
            .shm_kv(&[("kv", "2m")]);
        let c = render_conf(&spec, Path::new("/m/config_bridge.wasm"), 18080);
        for needle in [
            "worker_processes 3;",
            "master_process on;",
            "error_log logs/error.log info;",
            "env AWS_ACCESS_KEY_ID;",
            "module config_bridge /m/config_bridge.wasm;",
            "shm_kv kv 2m;",
            "listen 127.0.0.1:18080;",
            r#"proxy_wasm config_bridge '{"k":"v"}';"#,
        ] {
            assert!(c.contains(needle), "{needle} missing in\n{c}");
        }
        assert!(!c.contains("shm_kv *"));
        assert!(!c.contains("AK"), "values are not written to nginx.conf");
    }
}
