//! Test guest for the host harness: every proxy-wasm hostcall and callback, driven by its plugin
//! configuration, reporting what it saw as `probe <event> key=value ...` log lines.
//!
//! It is deliberately naive where a real filter must be careful (it dispatches wherever it is told
//! to), so the harness's host-profile rules can be observed.

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct Settings {
    /// Tick period in ms (0: no ticks).
    tick_ms: u64,
    /// Where to dispatch a call: "vm_start", "configure", "tick", "root_response", "request_headers".
    dispatch_in: Vec<String>,
    upstream: String,
    authority: String,
    path: String,
    timeout_ms: u64,
    /// Increment a node-wide counter in shared data on every tick (CAS loop).
    shared_counter: bool,
    /// Write this key with cas 0 on every tick and report the status.
    cas_zero_key: String,
    /// Register this queue at configure and enqueue on every tick.
    queue: String,
    metrics: bool,
    /// Read these properties in on_configure and in HTTP contexts.
    properties: Vec<String>,
    /// Panic in this callback ("tick", "configure", "request_headers").
    trap_in: String,
    /// Send a local response with this status from on_request_headers.
    local_response: u32,
    /// Pause request headers until a dispatched call answers.
    pause_for_call: bool,
    /// Return false from on_configure.
    reject_config: bool,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(ProbeRoot { id, settings: Settings::default(), queue: None, counter: None, ticks: 0 })
    });
}}

fn log(message: String) {
    let _ = hostcalls::log(LogLevel::Info, &message);
}

fn dispatch(s: &Settings, where_: &str) -> Option<u32> {
    let headers = vec![
        (":method", "GET"),
        (
            ":path",
            if s.path.is_empty() {
                "/probe"
            } else {
                s.path.as_str()
            },
        ),
        (":authority", s.authority.as_str()),
        ("x-probe-from", where_),
    ];
    let timeout = Duration::from_millis(if s.timeout_ms == 0 {
        1000
    } else {
        s.timeout_ms
    });
    match hostcalls::dispatch_http_call(&s.upstream, headers, None, vec![], timeout) {
        Ok(token) => {
            log(format!("probe dispatched from={where_} token={token}"));
            Some(token)
        }
        Err(status) => {
            log(format!(
                "probe dispatch_failed from={where_} status={status:?}"
            ));
            None
        }
    }
}

fn report_call_response(where_: &str, token: u32, num_headers: usize, body_size: usize) {
    let headers = hostcalls::get_map(MapType::HttpCallResponseHeaders).unwrap_or_default();
    let status = headers
        .iter()
        .find(|(k, _)| k == ":status")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let dispatch_status =
        hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":dispatch_status")
            .ok()
            .flatten()
            .unwrap_or_default();
    let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
        .ok()
        .flatten()
        .unwrap_or_default();
    log(format!(
        "probe call_response in={where_} token={token} headers={num_headers} status={status} dispatch_status={dispatch_status} body={}",
        String::from_utf8_lossy(&body)
    ));
}

struct ProbeRoot {
    id: u32,
    settings: Settings,
    queue: Option<u32>,
    counter: Option<u32>,
    ticks: u64,
}

impl Context for ProbeRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _t: usize,
    ) {
        report_call_response("root", token, num_headers, body_size);
        if self
            .settings
            .dispatch_in
            .iter()
            .any(|d| d == "root_response")
        {
            dispatch(&self.settings, "root_response");
        }
    }
}

impl RootContext for ProbeRoot {
    fn on_vm_start(&mut self, size: usize) -> bool {
        let vm = hostcalls::get_buffer(BufferType::VmConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        log(format!(
            "probe vm_start root={} vm_config={}",
            self.id,
            String::from_utf8_lossy(&vm)
        ));
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.settings = match serde_json::from_slice(&raw) {
            Ok(s) => s,
            Err(e) => {
                log(format!("probe bad_config error={e}"));
                return false;
            }
        };
        let now = hostcalls::get_current_time().unwrap_or(UNIX_EPOCH);
        let wasi_now = std::time::SystemTime::now();
        log(format!(
            "probe configure root={} proxy_time_ms={} wasi_time_ms={} log_level={:?}",
            self.id,
            now.duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
            wasi_now
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
            hostcalls::get_log_level().ok()
        ));
        for p in &self.settings.properties {
            let v = hostcalls::get_property(p.split('.').collect())
                .ok()
                .flatten();
            log(format!(
                "probe root_property {p}={:?}",
                v.map(|b| String::from_utf8_lossy(&b).into_owned())
            ));
        }
        if !self.settings.queue.is_empty() {
            self.queue = hostcalls::register_shared_queue(&self.settings.queue).ok();
        }
        if self.settings.metrics {
            self.counter = hostcalls::define_metric(MetricType::Counter, "probe_ticks").ok();
        }
        if self.settings.tick_ms > 0 {
            let _ = hostcalls::set_tick_period(Duration::from_millis(self.settings.tick_ms));
        }
        if self.settings.dispatch_in.iter().any(|d| d == "configure") {
            dispatch(&self.settings, "configure");
        }
        if self.settings.trap_in == "configure" {
            panic!("probe trap in configure");
        }
        !self.settings.reject_config
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        let now = hostcalls::get_current_time().unwrap_or(UNIX_EPOCH);
        log(format!(
            "probe tick root={} n={} time_ms={}",
            self.id,
            self.ticks,
            now.duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis()
        ));
        if self.settings.dispatch_in.iter().any(|d| d == "tick") {
            dispatch(&self.settings, "tick");
        }
        if self.settings.shared_counter {
            // CAS loop: read, then write with the cas read (0 when the key is new).
            for _ in 0..10 {
                let (value, cas) =
                    hostcalls::get_shared_data("probe/counter").unwrap_or((None, None));
                let n: u64 = value
                    .and_then(|v| String::from_utf8(v).ok())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                match hostcalls::set_shared_data(
                    "probe/counter",
                    Some((n + 1).to_string().as_bytes()),
                    cas,
                ) {
                    Ok(()) => break,
                    Err(_) => log("probe cas_retry".to_string()),
                }
            }
        }
        if !self.settings.cas_zero_key.is_empty() {
            let r = hostcalls::set_shared_data(&self.settings.cas_zero_key, Some(b"x"), None);
            log(format!("probe cas_zero_set result={r:?}"));
        }
        if let Some(q) = self.queue {
            let r =
                hostcalls::enqueue_shared_queue(q, Some(format!("item{}", self.ticks).as_bytes()));
            log(format!("probe enqueue result={r:?}"));
        }
        if let Some(m) = self.counter {
            let _ = hostcalls::increment_metric(m, 1);
            log(format!("probe metric value={:?}", hostcalls::get_metric(m)));
        }
        if self.settings.trap_in == "tick" {
            panic!("probe trap in tick");
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        let item = hostcalls::dequeue_shared_queue(queue_id);
        let empty = hostcalls::dequeue_shared_queue(queue_id);
        log(format!(
            "probe queue_ready id={queue_id} item={:?} then={:?}",
            item.map(|o| o.map(|b| String::from_utf8_lossy(&b).into_owned())),
            empty.map(|o| o.is_none())
        ));
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(ProbeHttp {
            id: context_id,
            settings: self.settings.clone(),
            waiting: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct ProbeHttp {
    id: u32,
    settings: Settings,
    waiting: Option<u32>,
}

impl Context for ProbeHttp {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _t: usize,
    ) {
        report_call_response("http", token, num_headers, body_size);
        if self.waiting == Some(token) {
            self.set_http_request_header(
                "x-call-status",
                Some(if num_headers > 0 { "ok" } else { "failed" }),
            );
            self.resume_http_request();
        }
    }

    fn on_done(&mut self) -> bool {
        log(format!("probe done ctx={}", self.id));
        true
    }
}

impl HttpContext for ProbeHttp {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        let headers = self.get_http_request_headers();
        log(format!(
            "probe request_headers ctx={} count={num_headers} eos={end_of_stream} path={:?}",
            self.id,
            self.get_http_request_header(":path")
        ));
        assert_eq!(headers.len(), num_headers, "header count matches the map");
        for p in &self.settings.properties {
            let v = self.get_property(p.split('.').collect());
            log(format!(
                "probe http_property {p}={:?}",
                v.map(|b| String::from_utf8_lossy(&b).into_owned())
            ));
        }
        self.add_http_request_header("x-probe", "1");
        self.set_http_request_header("x-replaced", Some("new"));
        self.set_http_request_header("x-remove-me", None);
        if self.settings.trap_in == "request_headers" {
            panic!("probe trap in request_headers");
        }
        if self.settings.local_response != 0 {
            self.send_http_response(
                self.settings.local_response,
                vec![("x-local", "yes")],
                Some(b"denied by probe"),
            );
            return Action::Pause;
        }
        if self.settings.pause_for_call
            || self
                .settings
                .dispatch_in
                .iter()
                .any(|d| d == "request_headers")
        {
            self.waiting = dispatch(&self.settings, "request_headers");
            if self.settings.pause_for_call && self.waiting.is_some() {
                return Action::Pause;
            }
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        log(format!(
            "probe request_body size={body_size} eos={end_of_stream} body={}",
            String::from_utf8_lossy(&body)
        ));
        self.set_http_request_body(0, body_size, b"rewritten");
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, n: usize) -> Action {
        log(format!("probe request_trailers count={n}"));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.set_http_response_header("x-probe-response", Some("yes"));
        log(format!(
            "probe response_headers status={:?}",
            self.get_http_response_header(":status")
        ));
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _eos: bool) -> Action {
        let body = self
            .get_http_response_body(0, body_size)
            .unwrap_or_default();
        log(format!(
            "probe response_body body={}",
            String::from_utf8_lossy(&body)
        ));
        Action::Continue
    }

    fn on_log(&mut self) {
        log(format!("probe log ctx={}", self.id));
    }
}
