//! The differential runner (issue 17): the same guest filter, configuration and request (or tick
//! scenario) in the real engine (nginx + ngx_wasm_module, `../shared/ngx-wasm`) and in the harness
//! with the `ngx_wasm_module` profile; the two [`Observed`] are compared field by field: the
//! response (status, headers with their case, body), the filter's log lines in order (the
//! script guest `tests/guests/script` logs every callback with its arguments and every hostcall
//! with its result) and the number of traps.
//!
//! * **Engine**: one nginx (one worker) per batch of cases; each case is a `location /<case>/`
//!   with its own `proxy_wasm` filter(s) in front of `proxy_pass` to a fixed upstream
//!   ([`Upstream`]). A case's request path is prefixed with `/<case>`. Dispatches go to a shared
//!   call server ([`CALL`] in a script is replaced by its `host:port`), which the harness routes
//!   to the same handler.
//! * **Harness**: a fresh [`World`] per case; the exchange holds the request as the engine receives
//!   it (pseudo-headers in nginx's order, `Host`, the case's headers) and the upstream's response
//!   as the upstream sends it.
//! * What is normalised on both sides, and why, is listed in `docs/differential.md` (context ids,
//!   root ids and tokens by order of appearance; `Date` values; the virtual clock).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use host_harness::http::{CallContext, HttpRequest, HttpResponse, Reply};
use host_harness::mocks::serve;
use host_harness::tcp_upstream::{parse_response, TcpUpstream};
use host_harness::{HostProfile, HttpExchange, LogLevel, NodeSpec, PluginModule, World};
use serde_json::Value;

use crate::real_engine::{engine_binary, free_port, parse_log, workspace_root, LogEntry};

/// Placeholder in a script for the call server's `host:port`.
pub const CALL: &str = "$CALL";
/// Placeholder in a script for the upstream's `host:port` as a dispatch target: a raw HTTP/1.0
/// server whose header names are mixed-case ([`Upstream`]); the harness reaches it over TCP
/// ([`TcpUpstream`]), so what a real server's answer looks like on the wire is compared.
pub const UPSTREAM: &str = "$UPSTREAM";
/// What the fixed upstream answers (after the headers below).
pub const UPSTREAM_BODY: &str = "upstream body\n";
/// The `server_name` of the engine's server block (the request's `Host`).
pub const HOST: &str = "diff.test";

/// The script guest, built for wasm32-wasip1 once per process.
pub fn guest_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        host_harness::wasm_build::build("script-guest", "script_guest", "wasm-release")
            .unwrap_or_else(|e| panic!("building the script guest: {e:#}"))
    })
    .clone()
}

fn guest_module() -> PluginModule {
    static MODULE: OnceLock<PluginModule> = OnceLock::new();
    MODULE
        .get_or_init(|| PluginModule::load(guest_path()).expect("loading the script guest"))
        .clone()
}

// ---- cases ----------------------------------------------------------------------------------------

/// A request as the client sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn get(path: &str) -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn post(path: &str, body: &str) -> Request {
        Request {
            method: "POST".into(),
            body: body.as_bytes().to_vec(),
            ..Request::get(path)
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// `[METHOD] /path [-H NAME:VALUE]... [-d BODY]`: the CLI's `--request` syntax (its parser).
    pub fn parse(spec: &str) -> Result<Request, String> {
        let r =
            host_harness::cli::request::RequestSpec::parse(spec).map_err(|e| format!("{e:#}"))?;
        Ok(Request {
            method: r.method,
            path: r.path,
            headers: r.headers,
            body: r.body,
        })
    }
}

/// One differential case: the guest's script(s) (one per filter of the location's chain), and a
/// request or a number of ticks to wait for.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    /// The scripts, in chain order; `case` is set to the case name (`<name>`, `<name>.2`, ...).
    pub filters: Vec<Value>,
    pub request: Option<Request>,
    /// Wait until the first filter logged this many ticks (its script's `max_ticks`).
    pub ticks: u64,
    /// Still differs, waiting for the harness fix described here (the suite fails if it agrees).
    pub known: Option<&'static str>,
    /// Needs an engine of its own (it traps: recovery re-runs every filter's `on_configure`).
    pub alone: bool,
}

impl Case {
    pub fn new(name: &str, script: Value) -> Case {
        Case {
            name: name.into(),
            filters: vec![script],
            request: None,
            ticks: 0,
            known: None,
            alone: false,
        }
    }
    pub fn request(mut self, r: Request) -> Case {
        self.request = Some(r);
        self
    }
    pub fn then(mut self, script: Value) -> Case {
        self.filters.push(script);
        self
    }
    pub fn ticks(mut self, n: u64) -> Case {
        self.ticks = n;
        self
    }
    pub fn known(mut self, why: &'static str) -> Case {
        self.known = Some(why);
        self
    }
    pub fn alone(mut self) -> Case {
        self.alone = true;
        self
    }

    fn case_name(&self, i: usize) -> String {
        if i == 0 {
            self.name.clone()
        } else {
            format!("{}.{}", self.name, i + 1)
        }
    }

    /// The filter configurations with the case name, the call server and the upstream filled in.
    fn configs(&self, call: &str, upstream: &str) -> Vec<String> {
        self.filters
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut s = s.clone();
                s["case"] = Value::String(self.case_name(i));
                s.to_string()
                    .replace(CALL, call)
                    .replace(UPSTREAM, upstream)
            })
            .collect()
    }

    fn tick_ms(&self) -> u64 {
        self.filters
            .first()
            .and_then(|s| s["tick_ms"].as_u64())
            .unwrap_or(0)
    }
}

// ---- what each side shows ----------------------------------------------------------------------

/// A response as the client received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Names with their case, in order; `Date` values normalised.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What one side showed for a case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// `None`: no answer (the connection closed without one, or the harness left it paused).
    pub response: Option<Response>,
    /// The filter's log lines of this case, `level message`, normalised.
    pub trace: Vec<String>,
    pub traps: usize,
    /// The engine's own lines about this case (not compared: the harness has no host log).
    pub host_lines: Vec<String>,
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.response {
            Some(r) => writeln!(
                f,
                "  response {} {:?} {:?}",
                r.status,
                r.headers,
                String::from_utf8_lossy(&r.body)
            )?,
            None => writeln!(f, "  no response")?,
        }
        writeln!(f, "  traps {}", self.traps)?;
        for l in &self.trace {
            writeln!(f, "  | {l}")?;
        }
        for l in &self.host_lines {
            writeln!(f, "  host: {l}")?;
        }
        Ok(())
    }
}

/// The differences between the engine's and the harness's observations (empty: they agree).
pub fn compare(engine: &Observed, harness: &Observed) -> Vec<String> {
    let mut d = Vec::new();
    match (&engine.response, &harness.response) {
        (Some(e), Some(h)) => {
            if e.status != h.status {
                d.push(format!("status: engine {} harness {}", e.status, h.status));
            }
            if e.headers != h.headers {
                d.push(format!(
                    "response headers:\n    engine  {:?}\n    harness {:?}",
                    e.headers, h.headers
                ));
            }
            if e.body != h.body {
                d.push(format!(
                    "response body: engine {:?} harness {:?}",
                    String::from_utf8_lossy(&e.body),
                    String::from_utf8_lossy(&h.body)
                ));
            }
        }
        (e, h) => {
            if e.is_some() != h.is_some() {
                d.push(format!(
                    "response: engine {:?} harness {:?}",
                    e.as_ref().map(|r| r.status),
                    h.as_ref().map(|r| r.status)
                ));
            }
        }
    }
    if engine.traps != harness.traps {
        d.push(format!(
            "traps: engine {} harness {}",
            engine.traps, harness.traps
        ));
    }
    if engine.trace != harness.trace {
        let n = engine
            .trace
            .iter()
            .zip(&harness.trace)
            .take_while(|(a, b)| a == b)
            .count();
        d.push(format!(
            "trace differs from line {} (engine {} lines, harness {}):\n    engine  {:?}\n    harness {:?}",
            n + 1,
            engine.trace.len(),
            harness.trace.len(),
            engine.trace.get(n),
            harness.trace.get(n)
        ));
    }
    d
}

// ---- normalisation -------------------------------------------------------------------------------

/// Replaces the number after each `prefix` by its order of first appearance (`root#R1`, ...).
fn renumber(line: &str, prefix: &str, tag: &str, seen: &mut BTreeMap<String, usize>) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find(prefix) {
        out.push_str(&rest[..i + prefix.len()]);
        rest = &rest[i + prefix.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            continue;
        }
        let next = seen.len() + 1;
        let n = *seen.entry(digits.clone()).or_insert(next);
        out.push_str(&format!("{tag}{n}"));
        rest = &rest[digits.len()..];
    }
    out.push_str(rest);
    out
}

/// `Date: <anything> GMT` values (any case of the name), which are the host's clock.
fn strip_dates(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("Date: ").or_else(|| rest.find("date: ")) {
        out.push_str(&rest[..i + 6]);
        rest = &rest[i + 6..];
        match rest.find(" GMT") {
            Some(j) => {
                out.push_str("<date>");
                rest = &rest[j + 4..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// Ids per case: root contexts, HTTP contexts and dispatch tokens numbered by first appearance.
#[derive(Default)]
struct Ids {
    roots: BTreeMap<String, usize>,
    https: BTreeMap<String, usize>,
    tokens: BTreeMap<String, usize>,
}

impl Ids {
    fn normalise(&mut self, line: &str) -> String {
        let l = renumber(line, "root#", "R", &mut self.roots);
        let l = renumber(&l, "root=", "R", &mut self.roots);
        let l = renumber(&l, "http#", "H", &mut self.https);
        let l = renumber(&l, "token=", "T", &mut self.tokens);
        strip_dates(&l)
    }
}

fn level_name(l: LogLevel) -> &'static str {
    // ngx_wasm_module's mapping of proxy-wasm levels onto nginx's (trace and debug are debug).
    match l {
        LogLevel::Trace | LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
        LogLevel::Critical => "crit",
    }
}

/// The case (`dg|<case>|...`) and the `root#N` of a trace line.
fn dg_case(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix("dg|")?;
    let (case, rest) = rest.split_once('|')?;
    Some((case, rest.split('|').next().unwrap_or("")))
}

/// Each filter line's case and its `level message` form. A line without a case (`on_vm_start`
/// runs before the script is read) goes to the case whose root id it names; other filter lines
/// (a `log` action, a panic message) to the case of the line before them. Chained filters
/// (`<case>.2`) belong to their case, in log order.
fn attribute(lines: &[(String, String)]) -> Vec<(String, String, String)> {
    let mut root_case: BTreeMap<String, String> = BTreeMap::new();
    for (_, m) in lines {
        if let Some((case, who)) = dg_case(m) {
            if !case.is_empty() {
                root_case.insert(who.to_string(), case.to_string());
            }
        }
    }
    let mut current = String::new();
    lines
        .iter()
        .map(|(level, m)| {
            current = match dg_case(m) {
                Some(("", who)) => root_case.get(who).cloned().unwrap_or_default(),
                Some((case, _)) => case.to_string(),
                None => current.clone(),
            };
            let shown = match m.strip_prefix("dg|") {
                Some(rest) => {
                    let body = rest.strip_suffix("|gd").unwrap_or(rest);
                    let body = body.split_once('|').map(|(_, b)| b).unwrap_or(body);
                    format!("{level} {body}")
                }
                None => format!("{level} {m}"),
            };
            (base_case(&current).to_string(), current.clone(), shown)
        })
        .collect()
}

/// The normalised trace of `case` among attributed lines. The engine starts the root contexts
/// of a chain in no particular order: lines before the first HTTP context are ordered by filter
/// (stable), which keeps each root's own order (docs/differential.md).
fn trace_of(attributed: &[(String, String, String)], case: &str) -> Vec<String> {
    let mine: Vec<&(String, String, String)> =
        attributed.iter().filter(|(c, _, _)| c == case).collect();
    let first_http = mine
        .iter()
        .position(|(_, _, l)| l.contains("http#"))
        .unwrap_or(mine.len());
    let (mut start, rest) = (mine[..first_http].to_vec(), &mine[first_http..]);
    start.sort_by(|a, b| a.1.cmp(&b.1));
    normalise_trace(
        start
            .iter()
            .chain(rest.iter())
            .map(|(_, _, l)| l.clone())
            .collect(),
    )
}

/// Chained filters (`<case>.2`) belong to their case: one trace, chain order kept.
fn base_case(case: &str) -> &str {
    case.split('.').next().unwrap_or(case)
}

fn normalise_trace(lines: Vec<String>) -> Vec<String> {
    let mut ids = Ids::default();
    lines.iter().map(|l| ids.normalise(l)).collect()
}

// ---- the shared servers ----------------------------------------------------------------------------

/// The upstream behind every location: answers any request with `200`, `Content-Type:
/// text/plain`, `X-Up: 1` and [`UPSTREAM_BODY`] (HTTP/1.0, header case as written here).
pub struct Upstream {
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

/// The upstream's answer, as the harness exchange's response.
pub fn upstream_response() -> (Vec<(String, String)>, Vec<u8>) {
    (
        vec![
            (":status".into(), "200".into()),
            ("Content-Type".into(), "text/plain".into()),
            ("X-Up".into(), "1".into()),
            ("Content-Length".into(), UPSTREAM_BODY.len().to_string()),
        ],
        UPSTREAM_BODY.as_bytes().to_vec(),
    )
}

impl Upstream {
    pub fn start() -> Upstream {
        let l = TcpListener::bind("127.0.0.1:0").expect("binding the upstream");
        let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st = stop.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if st.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let Ok(mut s) = conn else { continue };
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Read the head and a Content-Length body, then answer and close.
                    while let Ok(n) = s.read(&mut chunk) {
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + len {
                                break;
                            }
                        }
                    }
                    let (headers, body) = upstream_response();
                    let mut out = String::from("HTTP/1.0 200 OK\r\n");
                    for (k, v) in headers.iter().skip(1) {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    let _ = s.write_all(out.as_bytes());
                    let _ = s.write_all(&body);
                });
            }
        });
        Upstream { port, stop }
    }
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The call server's handler: `/slow` answers after 3 s (a dispatch timeout), `/status/<n>`
/// with that status; anything else `200` with `X-Call: yes` and `call body <path>`.
pub fn call_handler(req: &HttpRequest, _ctx: &CallContext) -> Reply {
    if let Some(s) = req.path.strip_prefix("/status/") {
        return Reply::now(HttpResponse::new(s.parse().unwrap_or(500)).with_body("status"));
    }
    let r = HttpResponse::new(200)
        .with_header("X-Call", "yes")
        .with_body(format!("call body {}", req.path));
    if req.path == "/slow" {
        return Reply::Response {
            response: r,
            latency: Duration::from_secs(3),
        };
    }
    Reply::now(r)
}

// ---- the engine side ---------------------------------------------------------------------------

/// One nginx (one worker) running a batch of cases.
pub struct EngineBatch {
    prefix: PathBuf,
    port: u16,
    child: Option<Child>,
    call: String,
}

fn render(cases: &[&Case], module: &Path, port: u16, upstream: u16, call: &str) -> String {
    let mut c = String::from("# written by tests/src/differential.rs\n");
    c.push_str("worker_processes 1;\ndaemon off;\nmaster_process on;\n");
    c.push_str("error_log logs/error.log info;\npid logs/nginx.pid;\n");
    c.push_str("events { worker_connections 256; }\n");
    c.push_str(&format!(
        "wasm {{\n    module g {};\n    shm_kv * 1m;\n    shm_kv ns 1m;\n    shm_queue q_rt 1m;\n}}\n",
        module.display()
    ));
    c.push_str("http {\n    access_log off;\n");
    for t in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        c.push_str(&format!("    {t}_temp_path tmp/{t};\n"));
    }
    c.push_str(&format!(
        "    server {{\n        listen 127.0.0.1:{port};\n        server_name {HOST};\n"
    ));
    for case in cases {
        c.push_str(&format!("        location /{}/ {{\n", case.name));
        for cfg in case.configs(call, &format!("127.0.0.1:{upstream}")) {
            c.push_str(&format!(
                "            proxy_wasm g {};\n",
                crate::real_engine::nginx_quote(&cfg)
            ));
        }
        c.push_str(&format!(
            "            proxy_pass http://127.0.0.1:{upstream};\n        }}\n"
        ));
    }
    c.push_str("    }\n}\n");
    c
}

impl EngineBatch {
    /// Starts nginx with one location per case and waits until every filter is configured.
    /// `None`: the engine is missing outside CI (skip).
    pub fn start(name: &str, cases: &[&Case], upstream: u16, call: &str) -> Option<EngineBatch> {
        let nginx = engine_binary(name)?;
        let prefix = workspace_root()
            .join("target")
            .join("differential")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&prefix);
        for d in ["logs", "conf", "tmp"] {
            std::fs::create_dir_all(prefix.join(d)).expect("creating the engine prefix");
        }
        let port = free_port();
        let conf = render(cases, &guest_path(), port, upstream, call);
        std::fs::write(prefix.join("conf/nginx.conf"), conf).expect("writing nginx.conf");
        let mut cmd = Command::new(nginx);
        cmd.arg("-p")
            .arg(format!("{}/", prefix.display()))
            .args(["-c", "conf/nginx.conf", "-e", "logs/error.log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let child = cmd.spawn().expect("spawning nginx");
        let batch = EngineBatch {
            prefix,
            port,
            child: Some(child),
            call: call.to_string(),
        };
        let want = cases.iter().map(|c| c.filters.len()).sum::<usize>();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = batch.log_text();
            let configured = log.matches("|on_configure size=").count();
            if configured >= want
                || log.contains("cannot be respawned")
                || log.contains("exited on signal")
                || log.contains("[emerg]")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: the engine did not configure {want} filters in 30 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = batch.log_text();
        // A batch whose worker died answers nothing: every case would time out. Only cases that
        // run alone may kill it (then their traces show how).
        assert!(
            cases.len() == 1
                || !(log.contains("cannot be respawned") || log.contains("exited on signal")),
            "{name}: the engine's worker died at start; a case that traps at start must be alone:\n{log}"
        );
        Some(batch)
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(
            &std::fs::read(self.prefix.join("logs/error.log")).unwrap_or_default(),
        )
        .into_owned()
    }

    fn entries(&self) -> Vec<LogEntry> {
        parse_log(&self.log_text(), 0)
    }

    /// Waits until the case's first filter logged `n` ticks.
    fn wait_ticks(&self, case: &Case, n: u64) {
        let needle = format!("dg|{}|", case.name);
        let tick = format!("on_tick n={n}|");
        let deadline =
            Instant::now() + Duration::from_secs(10) + Duration::from_millis(case.tick_ms() * n);
        while Instant::now() < deadline {
            if self
                .log_text()
                .lines()
                .any(|l| l.contains(&needle) && l.contains(&tick))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends the case's request; waits until the filters deleted their contexts (or a trap).
    fn send(&self, case: &Case, req: &Request) -> Option<Response> {
        let log = self.log_text();
        if log.contains("cannot be respawned") || log.contains("exited on signal") {
            // No worker serves (or each crashes at start): nothing would answer.
            return None;
        }
        let mark = log.len();
        let path = format!("/{}{}", case.name, req.path);
        let reply = raw_request(
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            req,
            &path,
            Duration::from_secs(5),
        )
        .ok();
        let deadline = Instant::now() + Duration::from_secs(3);
        let deleted = format!("dg|{}|", case.name);
        while Instant::now() < deadline {
            let log = self.log_text();
            let tail = log.get(mark..).unwrap_or("");
            if tail.contains("wasm trap")
                || tail
                    .lines()
                    .any(|l| l.contains(&deleted) && l.contains("|on_delete|"))
            {
                std::thread::sleep(Duration::from_millis(100));
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        reply
    }

    /// Runs every case (ticks first, then requests) and returns what the engine showed per case.
    pub fn run(&self, cases: &[&Case]) -> BTreeMap<String, Observed> {
        for c in cases.iter().filter(|c| c.ticks > 0) {
            self.wait_ticks(c, c.ticks);
        }
        let mut responses = BTreeMap::new();
        for c in cases {
            if let Some(r) = &c.request {
                responses.insert(c.name.clone(), self.send(c, r));
            }
        }
        let mut out = observed_from_log(&self.entries());
        for c in cases {
            let o = out.entry(c.name.clone()).or_default();
            o.response = responses.remove(&c.name).flatten();
        }
        out
    }

    /// The call server's address as scripts see it.
    pub fn call(&self) -> &str {
        &self.call
    }
}

/// Splits the engine's log into per-case observations: filter lines (`[proxy-wasm]["g" #N]`),
/// traps and the host's own lines about a request, each given to the case of the filter line
/// before it.
fn observed_from_log(entries: &[LogEntry]) -> BTreeMap<String, Observed> {
    const FILTER: &str = "[proxy-wasm][\"g\" #";
    let mut lines: Vec<(String, String)> = Vec::new();
    // Host lines and traps, tagged with the index of the filter line before them.
    let mut extra: Vec<(usize, bool, String)> = Vec::new();
    for e in entries {
        if let Some(i) = e.text.find(FILTER) {
            let after = &e.text[i + FILTER.len()..];
            let msg = after.split_once("] ").map(|(_, m)| m).unwrap_or(after);
            let msg = match msg.find("|gd") {
                Some(j) if msg.starts_with("dg|") => &msg[..j + 3],
                _ => cut_context(msg),
            };
            lines.push((e.level.clone(), msg.to_string()));
        } else if e.text.contains("error while executing") || e.text.contains("wasm trap") {
            // One entry per trap (a guest panic or a host trap), its cause on the last line.
            let cause = e
                .text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            extra.push((lines.len(), true, format!("trap: {}", cause.trim())));
        } else if (e.text.contains("[wasm]") || e.text.contains("[proxy-wasm]"))
            // The module's loading lines at start are no case's.
            && !["successfully loaded", "loading \"g\"", "using wasmtime", "wasm VM"]
                .iter()
                .any(|n| e.text.contains(n))
        {
            extra.push((lines.len(), false, first_line(&e.text)));
        }
    }
    let attributed = attribute(&lines);
    let mut out: BTreeMap<String, Observed> = BTreeMap::new();
    let cases: std::collections::BTreeSet<&String> = attributed.iter().map(|(c, _, _)| c).collect();
    for case in cases {
        out.entry(case.clone()).or_default().trace = trace_of(&attributed, case);
    }
    for (idx, trap, text) in extra {
        let case = idx
            .checked_sub(1)
            .and_then(|i| attributed.get(i))
            .map(|(c, _, _)| c.clone())
            .unwrap_or_default();
        let o = out.entry(case).or_default();
        if trap {
            o.traps += 1;
        }
        o.host_lines.push(text);
    }
    out
}

/// A filter message without nginx's `, client: ...` / ` while ...` context.
fn cut_context(msg: &str) -> &str {
    let mut end = msg.len();
    for pat in [", client: ", " while "] {
        if let Some(i) = msg.find(pat) {
            end = end.min(i);
        }
    }
    &msg[..end]
}

fn first_line(text: &str) -> String {
    cut_context(text.lines().next().unwrap_or("")).to_string()
}

impl Drop for EngineBatch {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = child.id() as i32;
            // SAFETY: kill(2) on our own process group.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            let _ = child.wait();
        }
        if !std::thread::panicking() && std::env::var_os("DIFF_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.prefix);
        } else {
            eprintln!("differential engine kept in {}", self.prefix.display());
        }
    }
}

/// Response headers as compared: pseudo-headers dropped, `Date` values replaced, sorted by name
/// (the order a client sees is nginx's serialisation of its header structures; the order the
/// filter sees is compared in the traces' header dumps — docs/differential.md).
fn client_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| !k.starts_with(':'))
        .map(|(k, v)| {
            let v = if k.eq_ignore_ascii_case("date") {
                "<date>".to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    v.sort_by_key(|(k, _)| k.to_ascii_lowercase());
    v
}

/// One HTTP/1.1 request (the connection is dropped after the answer); the answer's header
/// names keep their case. Bodies: `Content-Length` or chunked.
pub fn raw_request(
    addr: SocketAddr,
    req: &Request,
    path: &str,
    timeout: Duration,
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    let mut head = format!("{} {path} HTTP/1.1\r\nHost: {HOST}\r\n", req.method);
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !req.body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(&req.body)?;
    let head_only = req.method == "HEAD";
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk)?;
        raw.extend_from_slice(&chunk[..n]);
        // The harness's own HTTP/1.x reader: names keep their case; Content-Length or chunked.
        if let Some(r) = parse_response(&raw, head_only, n == 0) {
            return Ok(Response {
                status: r.status,
                headers: client_headers(&r.headers),
                body: r.body,
            });
        }
        if n == 0 {
            return Err(std::io::Error::other(
                "connection closed before a full answer",
            ));
        }
    }
}

// ---- the harness side --------------------------------------------------------------------------

/// The request as nginx hands it to a filter: pseudo-headers in ngx_wasm_module's order, then the
/// client's headers (`Host` first, as [`raw_request`] sends them).
pub fn exchange_for(req: &Request, path: &str, port: u16) -> HttpExchange {
    let mut ex = HttpExchange::get(path);
    let mut h = vec![
        (":path".to_string(), path.to_string()),
        (":method".into(), req.method.clone()),
        (":scheme".into(), "http".into()),
        (":authority".into(), format!("{HOST}:{port}")),
        ("Host".into(), HOST.into()),
    ];
    h.extend(req.headers.iter().cloned());
    if !req.body.is_empty() {
        h.push(("Content-Length".into(), req.body.len().to_string()));
    }
    ex.request_headers = h;
    ex.request_body = req.body.clone();
    let (rh, rb) = upstream_response();
    ex.response_headers = rh;
    ex.response_body = rb;
    ex
}

/// Runs a case in a fresh harness world (`ngx_wasm_module` profile).
pub fn run_in_harness(case: &Case, call: &str, upstream: &str, engine_port: u16) -> Observed {
    // The engine's nginx.conf declares `shm_kv ns` next to `shm_kv *` (see `render`).
    let mut world = World::new(
        // The zones the runner's nginx.conf declares.
        HostProfile::ngx_wasm_module()
            .with_shm_zones(&["*", "ns"])
            .with_shm_queues(&["q_rt"]),
    );
    world.expect_traps();
    world.route(call, Arc::new(call_handler));
    let tcp = TcpUpstream::new(upstream).expect("a TCP client");
    world.route(upstream, Arc::new(tcp.with_timeout(Duration::from_secs(5))));
    // `request.host` is nginx's `$hostname`: this machine's name.
    let mut spec = NodeSpec::new("n1", &guest_module()).hostname(&machine_hostname());
    for cfg in case.configs(call, upstream) {
        // nginx.conf loads the guest as module `g`: the filter's name (`plugin_name`).
        spec = spec.named_filter("g", cfg);
    }
    let mut out = Observed::default();
    let node = match world.add_node(spec) {
        Ok(n) => n,
        Err(e) => {
            out.host_lines.push(format!("add_node failed: {e:#}"));
            return out;
        }
    };
    if case.ticks > 0 {
        world.advance(Duration::from_millis(case.tick_ms() * (case.ticks + 1)));
    }
    if let Some(req) = &case.request {
        let path = format!("/{}{}", case.name, req.path);
        let chain: Vec<usize> = (0..case.filters.len()).collect();
        let outcome = world.http_chain(node, 0, &chain, exchange_for(req, &path, engine_port));
        world.advance(Duration::from_secs(1));
        // The response as the client gets it: after a local response the exchange's response
        // is the local one, as it went through the response phases.
        let m = &outcome.data.messages;
        // A failed exchange (a trap) still has the response the host sent, if it sent one.
        let answered = m.response_headers.iter().any(|(k, _)| k == ":status");
        // `incomplete`: nginx sent a Content-Length the body did not fill; the client waits.
        out.response = if outcome.stuck || outcome.incomplete || (outcome.failed && !answered) {
            None
        } else {
            let status = m
                .response_headers
                .iter()
                .find(|(k, _)| k == ":status")
                .and_then(|(_, v)| v.parse().ok())
                .or_else(|| outcome.local_response().map(|l| l.status as u16))
                .unwrap_or(0);
            Some(Response {
                status,
                headers: client_headers(&m.response_headers),
                body: m.response_body.clone(),
            })
        };
    }
    // The engine's error_log is at `info`: lines below it never reach its log. Lines the
    // profile writes for the host itself (`[host] ...`) are the engine's own lines, not the filter's.
    let mut lines: Vec<(String, String)> = Vec::new();
    for l in world.logs() {
        let level = level_name(l.level);
        if let Some(host) = l.message.strip_prefix("[host] ") {
            out.host_lines.push(host.to_string());
        } else if level != "debug" {
            lines.push((level.to_string(), l.message));
        }
    }
    out.trace = trace_of(&attribute(&lines), &case.name);
    out.traps = world.traps().len() + world.fatal_errors().len();
    for t in world.traps().iter().chain(world.fatal_errors().iter()) {
        out.host_lines.push(format!(
            "trap in {}: {}",
            t.callback,
            t.message
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
        ));
    }
    out
}

/// The machine's host name, as nginx's `gethostname` gives it.
fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

// ---- the suite -------------------------------------------------------------------------------------

/// The verdict on one case.
#[derive(Debug)]
pub struct Verdict {
    pub case: String,
    pub known: Option<&'static str>,
    pub differences: Vec<String>,
    pub engine: Observed,
    pub harness: Observed,
}

/// Runs the cases: the batchable ones in one engine, each `alone` case in its own; then each in the
/// harness. `None`: the engine is missing outside CI.
pub fn run_cases(name: &str, cases: &[Case]) -> Option<Vec<Verdict>> {
    let upstream = Upstream::start();
    let call_server = serve::spawn(Arc::new(call_handler), "127.0.0.1:0").expect("call server");
    let call = call_server.url().trim_start_matches("http://").to_string();
    let upstream_addr = format!("127.0.0.1:{}", upstream.port());
    let mut engine: BTreeMap<String, Observed> = BTreeMap::new();
    let mut ports: BTreeMap<String, u16> = BTreeMap::new();
    let batch: Vec<&Case> = cases.iter().filter(|c| !c.alone).collect();
    let mut groups: Vec<Vec<&Case>> = vec![batch];
    groups.extend(cases.iter().filter(|c| c.alone).map(|c| vec![c]));
    for (i, group) in groups.iter().enumerate() {
        if group.is_empty() {
            continue;
        }
        let e = EngineBatch::start(&format!("{name}-{i}"), group, upstream.port(), &call)?;
        engine.extend(e.run(group));
        for c in group {
            ports.insert(c.name.clone(), e.port);
        }
    }
    let verdicts = cases
        .iter()
        .map(|c| {
            let e = engine.remove(&c.name).unwrap_or_default();
            let port = ports.get(&c.name).copied().unwrap_or(0);
            let h = run_in_harness(c, &call, &upstream_addr, port);
            Verdict {
                case: c.name.clone(),
                known: c.known,
                differences: compare(&e, &h),
                engine: e,
                harness: h,
            }
        })
        .collect();
    call_server.stop();
    Some(verdicts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_numbered_by_first_appearance() {
        let mut ids = Ids::default();
        assert_eq!(
            ids.normalise("root#77|on_tick create root=77 http#9 token=4 Date: Tue, 01 Dec 2026 11:24:29 GMT, date: Thu, 01 Jan 2026 00:00:00 GMT"),
            "root#R1|on_tick create root=R1 http#H1 token=T1 Date: <date>, date: <date>"
        );
        assert_eq!(
            ids.normalise("root#5 token=4 token=0"),
            "root#R2 token=T1 token=T2"
        );
    }

    #[test]
    fn requests_parse_like_the_cli() {
        let r = Request::parse("GET /a?b=1 -H X-A:1 -H 'y: 2").unwrap_err();
        assert!(r.contains("unterminated"), "{r}");
        let r = Request::parse("GET /a?b=1 -H 'y: 2 3'").unwrap();
        assert_eq!(r.headers, vec![("y".to_string(), "2 3".to_string())]);
        let r = Request::parse("/p -H X-A:1 -d hello").unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.headers, vec![("X-A".to_string(), "1".to_string())]);
        assert_eq!(r.body, b"hello");
        assert!(Request::parse("GET").is_err());
    }

    #[test]
    fn lines_go_to_their_case() {
        let l = |m: &str| ("info".to_string(), m.to_string());
        let lines = vec![
            l("dg||root#9|on_vm_start size=0|gd"),
            l("dg|a|root#9|on_configure size=1|gd"),
            l("panicked at x"),
            l("dg|b|root#3|on_configure size=1|gd"),
        ];
        let m = attribute(&lines);
        assert_eq!(
            trace_of(&m, "a"),
            vec![
                "info root#R1|on_vm_start size=0",
                "info root#R1|on_configure size=1",
                "info panicked at x"
            ]
        );
        assert_eq!(trace_of(&m, "b"), vec!["info root#R1|on_configure size=1"]);
    }
}
