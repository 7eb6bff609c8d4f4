//! Test guest for the harness's HTTP fidelity (host-harness/tests/http_fidelity.rs). Every
//! callback logs `h <callback> ctx=<id> <arguments>`; its configuration says what to do where:
//! pause, send a local response, dispatch a call, read and set properties, call hostcalls the
//! hosts treat differently, panic.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, Status};
use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct Settings {
    /// Callbacks that return Pause (`request_headers`, `response_headers`, ...).
    pause: Vec<String>,
    /// Body callbacks that return Pause until end of stream (StopIterationAndBuffer).
    buffer: Vec<String>,
    /// Where to send a local response (`request_headers`, `response_headers`, `log`,
    /// `call_response`, ...), with what.
    local_in: String,
    local_status: u32,
    local_body: String,
    local_headers: Vec<(String, String)>,
    /// Add `x-early: 1` to the response headers from on_request_headers.
    early_response_header: bool,
    /// Dispatch a call from on_request_headers (and pause until it answers).
    dispatch: bool,
    upstream: String,
    /// What on_http_call_response does: `resume` (default), `local`, `panic`.
    on_call_response: String,
    /// Properties read (path segments) and logged in every HTTP callback and on_tick.
    properties: Vec<Vec<String>>,
    /// A property set from on_request_headers: segments and value.
    set_property: Option<(Vec<String>, String)>,
    /// Hostcalls tried from on_request_headers: `log_bad_level`, `tick`, `grpc`,
    /// `get_status`, `foreign`, `dispatch_empty_host` (no `proxy_get_log_level`: ngx_wasm_module
    /// 0.6 declares it with another signature, and a module importing it does not load).
    calls: Vec<String>,
    /// Set response headers from on_response_headers: name, value.
    set_response_headers: Vec<(String, String)>,
    /// Add this many `x-n-<i>` request headers in on_request_headers.
    many_headers: usize,
    /// Panic in this callback.
    panic_in: String,
    /// Tick period (ms): on_tick logs properties.
    tick_ms: u64,
    /// Register this queue from on_request_headers; the root enqueues on tick.
    queue: String,
    /// Send the local response twice from on_request_headers.
    local_twice: bool,
    /// Read the response body at (start, max) in on_response_body and log it.
    partial_read: Option<(usize, usize)>,
    /// The root creates L4 stream contexts instead of HTTP ones.
    stream: bool,
    /// Replace the downstream data with this (at its end).
    rewrite_downstream: Option<String>,
    /// Make a gRPC unary call to cluster `grpc-up` from on_request_headers, pause until it
    /// answers.
    grpc_call: bool,
    /// Replace the response body with this in on_response_body (at end of stream).
    rewrite_response_body: Option<String>,
}

extern "C" {
    fn proxy_log(level: LogLevel, message_data: *const u8, message_size: usize) -> Status;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> Status;
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(Root { id, settings: Settings::default(), queue: None })
    });
}}

fn log(message: String) {
    let _ = hostcalls::log(LogLevel::Info, &message);
}

fn property(path: &[String]) -> String {
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    match hostcalls::get_property(segments) {
        Ok(Some(v)) => format!("{:?}", String::from_utf8_lossy(&v)),
        Ok(None) => "none".to_string(),
        Err(s) => format!("{s:?}"),
    }
}

fn log_properties(s: &Settings, at: &str) {
    for p in &s.properties {
        log(format!(
            "h property at={at} {}={}",
            p.join("/"),
            property(p)
        ));
    }
}

/// `send_local_response` through the raw hostcall, to see its status.
fn local_response(s: &Settings) -> Status {
    let pairs: Vec<(&str, &str)> = s
        .local_headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut map = Vec::new();
    map.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in &pairs {
        map.extend_from_slice(&(k.len() as u32).to_le_bytes());
        map.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in &pairs {
        map.extend_from_slice(k.as_bytes());
        map.push(0);
        map.extend_from_slice(v.as_bytes());
        map.push(0);
    }
    let body = s.local_body.as_bytes();
    let status = unsafe {
        proxy_send_local_response(
            s.local_status,
            std::ptr::null(),
            0,
            body.as_ptr(),
            body.len(),
            map.as_ptr(),
            map.len(),
            -1,
        )
    };
    log(format!("h local_response status={status:?}"));
    status
}

struct Root {
    id: u32,
    settings: Settings,
    queue: Option<u32>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.settings = serde_json::from_slice(&raw).unwrap_or_default();
        log(format!("h configure root={}", self.id));
        if self.settings.tick_ms > 0 {
            let _ = hostcalls::set_tick_period(Duration::from_millis(self.settings.tick_ms));
        }
        true
    }

    fn on_tick(&mut self) {
        log(format!("h tick root={}", self.id));
        log_properties(&self.settings, "tick");
        if !self.settings.queue.is_empty() {
            if self.queue.is_none() {
                self.queue = hostcalls::resolve_shared_queue("", &self.settings.queue)
                    .ok()
                    .flatten();
            }
            if let Some(q) = self.queue {
                let r = hostcalls::enqueue_shared_queue(q, Some(b"item"));
                log(format!("h enqueue result={r:?}"));
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        log(format!("h create ctx={context_id} root={}", self.id));
        Some(Box::new(Http {
            id: context_id,
            s: self.settings.clone(),
        }))
    }

    fn create_stream_context(&self, context_id: u32) -> Option<Box<dyn StreamContext>> {
        log(format!("h create_stream ctx={context_id} root={}", self.id));
        Some(Box::new(L4 {
            id: context_id,
            s: self.settings.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(if self.settings.stream {
            ContextType::StreamContext
        } else {
            ContextType::HttpContext
        })
    }
}

/// An L4 stream context: logs its callbacks.
struct L4 {
    id: u32,
    s: Settings,
}

impl Context for L4 {}

impl StreamContext for L4 {
    fn on_new_connection(&mut self) -> Action {
        log(format!("h new_connection ctx={}", self.id));
        Action::Continue
    }

    fn on_downstream_data(&mut self, size: usize, eos: bool) -> Action {
        let data = self.get_downstream_data(0, size).unwrap_or_default();
        log(format!(
            "h downstream_data ctx={} size={size} eos={eos} data={}",
            self.id,
            String::from_utf8_lossy(&data)
        ));
        if eos {
            if let Some(r) = &self.s.rewrite_downstream {
                self.set_downstream_data(0, size, r.as_bytes());
            }
        }
        if self.s.buffer.iter().any(|b| b == "downstream_data") && !eos {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_downstream_close(&mut self, peer: proxy_wasm::types::PeerType) {
        log(format!("h downstream_close ctx={} peer={peer:?}", self.id));
    }

    fn on_upstream_data(&mut self, size: usize, eos: bool) -> Action {
        let data = self.get_upstream_data(0, size).unwrap_or_default();
        log(format!(
            "h upstream_data ctx={} size={size} eos={eos} data={}",
            self.id,
            String::from_utf8_lossy(&data)
        ));
        Action::Continue
    }

    fn on_upstream_close(&mut self, peer: proxy_wasm::types::PeerType) {
        log(format!("h upstream_close ctx={} peer={peer:?}", self.id));
    }

    fn on_log(&mut self) {
        log(format!("h stream_log ctx={}", self.id));
    }
}

struct Http {
    id: u32,
    s: Settings,
}

impl Http {
    /// What every callback does first: log itself, read properties, panic or send a local
    /// response if told to here.
    fn enter(&self, name: &str, args: String) {
        log(format!("h {name} ctx={} {args}", self.id));
        log_properties(&self.s, name);
        if self.s.panic_in == name {
            panic!("h panic in {name}");
        }
        if self.s.local_in == name {
            local_response(&self.s);
            if self.s.local_twice {
                local_response(&self.s);
            }
        }
    }

    fn action(&self, name: &str, eos: bool) -> Action {
        if self.s.pause.iter().any(|p| p == name)
            || (self.s.buffer.iter().any(|p| p == name) && !eos)
        {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn try_calls(&mut self) {
        for call in self.s.calls.clone() {
            let result = match call.as_str() {
                "log_bad_level" => {
                    let m = "bad level line";
                    let level: LogLevel = unsafe { std::mem::transmute(42u32) };
                    format!("{:?}", unsafe { proxy_log(level, m.as_ptr(), m.len()) })
                }
                "tick" => format!("{:?}", hostcalls::set_tick_period(Duration::from_secs(1))),
                "grpc" => format!(
                    "{:?}",
                    hostcalls::dispatch_grpc_call(
                        "grpc",
                        "svc",
                        "m",
                        vec![],
                        None,
                        Duration::from_secs(1)
                    )
                ),
                "get_status" => format!("{:?}", hostcalls::get_grpc_status()),
                "foreign" => format!("{:?}", hostcalls::call_foreign_function("nope", None)),
                "dispatch_empty_host" => format!(
                    "{:?}",
                    hostcalls::dispatch_http_call(
                        "",
                        vec![(":method", "GET"), (":path", "/"), (":authority", "x")],
                        None,
                        vec![],
                        Duration::from_secs(1)
                    )
                ),
                other => format!("unknown call {other}"),
            };
            log(format!("h call {call} -> {result}"));
        }
    }
}

impl Context for Http {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        let message = hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let detail = match status {
            0 => String::new(),
            _ => format!("{:?}", hostcalls::get_grpc_status()),
        };
        self.enter(
            "grpc_response",
            format!(
                "token={token} status={status} message={} {detail}",
                String::from_utf8_lossy(&message)
            ),
        );
        self.resume_http_request();
    }

    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, _t: usize) {
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .unwrap_or_default();
        let ds = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":dispatch_status")
            .ok()
            .flatten()
            .unwrap_or_default();
        self.enter(
            "call_response",
            format!(
                "token={token} headers={headers} body={body} status={status} dispatch_status={ds}"
            ),
        );
        match self.s.on_call_response.as_str() {
            "panic" => panic!("h panic in call_response"),
            "local" => {
                local_response(&self.s);
            }
            _ => self.resume_http_request(),
        }
    }

    fn on_done(&mut self) -> bool {
        self.enter("done", String::new());
        true
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, n: usize, eos: bool) -> Action {
        self.enter("request_headers", format!("n={n} eos={eos}"));
        if self.s.early_response_header {
            self.add_http_response_header("x-early", "1");
        }
        for i in 0..self.s.many_headers {
            self.add_http_request_header(&format!("x-n-{i}"), "v");
        }
        if self.s.many_headers > 0 {
            log(format!("h pairs={}", self.get_http_request_headers().len()));
        }
        if let Some((path, value)) = &self.s.set_property {
            let segments: Vec<&str> = path.iter().map(String::as_str).collect();
            let r = hostcalls::set_property(segments, Some(value.as_bytes()));
            log(format!(
                "h set_property {}={value} -> {r:?}",
                path.join("/")
            ));
        }
        if !self.s.queue.is_empty() {
            let r = hostcalls::register_shared_queue(&self.s.queue);
            log(format!("h register_queue -> {r:?}"));
        }
        self.try_calls();
        if self.s.grpc_call {
            let r = hostcalls::dispatch_grpc_call(
                "grpc-up",
                "svc.S",
                "M",
                vec![("k", b"v")],
                Some(b"req"),
                Duration::from_secs(1),
            );
            log(format!("h grpc_call -> {r:?}"));
            if r.is_ok() {
                return Action::Pause;
            }
        }
        if self.s.dispatch {
            let r = hostcalls::dispatch_http_call(
                &self.s.upstream,
                vec![
                    (":method", "GET"),
                    (":path", "/call"),
                    (":authority", "up"),
                    ("X-Mixed-Case", "1"),
                ],
                None,
                vec![],
                Duration::from_secs(5),
            );
            log(format!("h dispatch -> {r:?}"));
            if r.is_ok() {
                return Action::Pause;
            }
        }
        self.action("request_headers", false)
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        self.enter(
            "request_body",
            format!(
                "size={size} eos={eos} body={}",
                String::from_utf8_lossy(&body)
            ),
        );
        self.action("request_body", eos)
    }

    fn on_http_request_trailers(&mut self, n: usize) -> Action {
        self.enter("request_trailers", format!("n={n}"));
        self.action("request_trailers", true)
    }

    fn on_http_response_headers(&mut self, n: usize, eos: bool) -> Action {
        let status = self.get_http_response_header(":status").unwrap_or_default();
        self.enter(
            "response_headers",
            format!("n={n} eos={eos} status={status}"),
        );
        for (k, v) in &self.s.set_response_headers {
            self.set_http_response_header(k, Some(v));
        }
        self.action("response_headers", false)
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        let body = self.get_http_response_body(0, size).unwrap_or_default();
        self.enter(
            "response_body",
            format!(
                "size={size} eos={eos} body={}",
                String::from_utf8_lossy(&body)
            ),
        );
        if let Some((start, max)) = self.s.partial_read {
            let part = self.get_http_response_body(start, max).unwrap_or_default();
            log(format!("h partial={}", String::from_utf8_lossy(&part)));
        }
        if eos {
            if let Some(b) = &self.s.rewrite_response_body {
                self.set_http_response_body(0, size, b.as_bytes());
            }
        }
        self.action("response_body", eos)
    }

    fn on_http_response_trailers(&mut self, n: usize) -> Action {
        self.enter("response_trailers", format!("n={n}"));
        self.action("response_trailers", true)
    }

    fn on_log(&mut self) {
        self.enter("log", String::new());
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        // Dropped when the host calls proxy_on_delete (the SDK removes the context then).
        log(format!("h delete ctx={}", self.id));
    }
}
