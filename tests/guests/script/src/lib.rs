//! Test guest of the differential suite (`tests/src/differential/`): one filter whose plugin
//! configuration is a small script — per callback, a list of hostcalls to make — so one module
//! covers every hostcall and phase. Every callback with its arguments, every hostcall with its
//! result and the context's deletion are logged as `dg|<case>|<context>|<event>|gd` lines at info
//! level, so the real engine's error.log and the harness's log record give comparable traces.
//!
//! ```json
//! {"case": "headers_set", "tick_ms": 0,
//!  "do": {"request_headers": [["set_header", "request", "X-A", "1"], ["headers", "request"]]},
//!  "ret": {"request_headers": "pause"}}
//! ```
//!
//! Callbacks (keys of `do`/`ret`): `vm_start`, `configure`, `tick` (every tick) and `tick<N>` (the
//! Nth only), `queue_ready`, `request_headers`, `request_body`, `request_trailers`,
//! `response_headers`, `response_body`, `response_trailers`, `log`, `done`, `call_response`
//! (root and HTTP), `root_call_response`, `http_call_response`. `ret`: `pause` for an HTTP phase,
//! `false` for `vm_start`/`configure`/`done`. Verbs: see [`run`].

use std::collections::BTreeMap;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};
use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct Script {
    case: String,
    /// Tick period set in `on_configure` (0: none).
    tick_ms: u64,
    /// Ticks after this many are not logged (the engine keeps ticking while the suite waits).
    max_ticks: u64,
    #[serde(rename = "do")]
    actions: BTreeMap<String, Vec<Vec<String>>>,
    ret: BTreeMap<String, String>,
}

thread_local! {
    static QUEUES: std::cell::RefCell<BTreeMap<String, u32>> = const { std::cell::RefCell::new(BTreeMap::new()) };
    static METRICS: std::cell::RefCell<BTreeMap<String, u32>> = const { std::cell::RefCell::new(BTreeMap::new()) };
}

mod raw {
    // A second view of `proxy_log` taking any integer level, so a script can pass an invalid one.
    #[allow(clashing_extern_declarations)]
    extern "C" {
        #[link_name = "proxy_log"]
        pub(crate) fn proxy_log_raw(
            level: u32,
            message_data: *const u8,
            message_size: usize,
        ) -> u32;
    }
}

/// Writes one trace line (info level through the SDK). `who` is `<case>|<context>`: every
/// filter of a worker shares one instance, so the case travels with each context.
fn trace(who: &str, event: &str) {
    let event = event.replace('\n', "\\n").replace('\r', "\\r");
    let _ = hostcalls::log(LogLevel::Info, &format!("dg|{who}|{event}|gd"));
}

fn map_type(name: &str) -> Option<MapType> {
    Some(match name {
        "request" => MapType::HttpRequestHeaders,
        "request_trailers" => MapType::HttpRequestTrailers,
        "response" => MapType::HttpResponseHeaders,
        "response_trailers" => MapType::HttpResponseTrailers,
        "call" => MapType::HttpCallResponseHeaders,
        "call_trailers" => MapType::HttpCallResponseTrailers,
        _ => return None,
    })
}

fn buffer_type(name: &str) -> Option<BufferType> {
    Some(match name {
        "request" => BufferType::HttpRequestBody,
        "response" => BufferType::HttpResponseBody,
        "call" => BufferType::HttpCallResponseBody,
        "plugin_config" => BufferType::PluginConfiguration,
        "vm_config" => BufferType::VmConfiguration,
        _ => return None,
    })
}

fn arg(a: &[String], i: usize) -> &str {
    a.get(i).map(String::as_str).unwrap_or("")
}

fn num(a: &[String], i: usize) -> u64 {
    arg(a, i).parse().unwrap_or(0)
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn shown<E: std::fmt::Debug>(r: Result<Option<proxy_wasm::types::Bytes>, E>) -> String {
    match r {
        Ok(Some(b)) => format!("Ok({:?})", show(&b)),
        Ok(None) => "Ok(None)".into(),
        Err(e) => format!("Err({e:?})"),
    }
}

fn shape(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| match b {
            b'0'..=b'9' => "N".to_string(),
            0x20..=0x7e => char::from(*b).to_string(),
            _ => format!("<{b:02x}>"),
        })
        .collect()
}

fn pairs(v: &[(String, String)]) -> String {
    v.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `k:v` arguments from index `from` on.
fn header_args(a: &[String], from: usize) -> Vec<(&str, &str)> {
    a.iter()
        .skip(from)
        // A pseudo-header's own ':' is part of its name (`:path:/x`).
        .filter_map(|h| {
            let from = usize::from(h.starts_with(':'));
            h[from..]
                .find(':')
                .map(|i| (&h[..from + i], &h[from + i + 1..]))
        })
        .collect()
}

/// A property path: segments separated by `.` (`request.path`), or by `/` when the path holds
/// dots of its own (`plugin_root_id` has none; `a/b.c` is `["a", "b.c"]`).
fn path(p: &str) -> Vec<&str> {
    if p.contains('/') {
        p.split('/').collect()
    } else {
        p.split('.').collect()
    }
}

fn queue_id(name: &str) -> Option<u32> {
    QUEUES.with(|q| q.borrow().get(name).copied())
}

/// Runs one scripted action; returns its result for the trace.
fn run(a: &[String]) -> String {
    let verb = arg(a, 0);
    match verb {
        // ["log", LEVEL, MESSAGE]: proxy_log with any level (0..5 valid).
        "log" => {
            let msg = arg(a, 2);
            // SAFETY: pointer and length of a live str.
            let s = unsafe { raw::proxy_log_raw(num(a, 1) as u32, msg.as_ptr(), msg.len()) };
            format!("status={s}")
        }
        // ["headers", MAP]: every pair of the map.
        "headers" => match map_type(arg(a, 1)) {
            Some(m) => match hostcalls::get_map(m) {
                Ok(v) => format!("n={} [{}]", v.len(), pairs(&v)),
                Err(e) => format!("Err({e:?})"),
            },
            None => "bad map".into(),
        },
        "header" => match map_type(arg(a, 1)) {
            Some(m) => format!("{:?}", hostcalls::get_map_value(m, arg(a, 2))),
            None => "bad map".into(),
        },
        "set_header" => match map_type(arg(a, 1)) {
            Some(m) => format!(
                "{:?}",
                hostcalls::set_map_value(m, arg(a, 2), Some(arg(a, 3)))
            ),
            None => "bad map".into(),
        },
        "add_header" => match map_type(arg(a, 1)) {
            Some(m) => format!("{:?}", hostcalls::add_map_value(m, arg(a, 2), arg(a, 3))),
            None => "bad map".into(),
        },
        "remove_header" => match map_type(arg(a, 1)) {
            Some(m) => format!("{:?}", hostcalls::remove_map_value(m, arg(a, 2))),
            None => "bad map".into(),
        },
        // ["set_headers", MAP, "k:v", ...]: replaces the whole map.
        "set_headers" => match map_type(arg(a, 1)) {
            Some(m) => format!("{:?}", hostcalls::set_map(m, header_args(a, 2))),
            None => "bad map".into(),
        },
        // ["body", BUFFER, START, MAX]
        "body" => match buffer_type(arg(a, 1)) {
            Some(b) => shown(hostcalls::get_buffer(
                b,
                num(a, 2) as usize,
                num(a, 3) as usize,
            )),
            None => "bad buffer".into(),
        },
        // ["set_body", BUFFER, START, SIZE, VALUE]
        "set_body" => match buffer_type(arg(a, 1)) {
            Some(b) => format!(
                "{:?}",
                hostcalls::set_buffer(
                    b,
                    num(a, 2) as usize,
                    num(a, 3) as usize,
                    arg(a, 4).as_bytes()
                )
            ),
            None => "bad buffer".into(),
        },
        // ["local", STATUS, BODY, "k:v", ...]
        "local" => format!(
            "{:?}",
            hostcalls::send_http_response(
                num(a, 1) as u32,
                header_args(a, 3),
                Some(arg(a, 2).as_bytes())
            )
        ),
        "prop" => shown(hostcalls::get_property(path(arg(a, 1)))),
        // ["prop_shape", PATH]: a value that is the host's clock or counter, by its shape only:
        // ASCII digits as `N`, other printable ASCII kept, any other byte as `<xx>`.
        "prop_shape" => match hostcalls::get_property(path(arg(a, 1))) {
            Ok(Some(b)) => format!("Ok(shape {})", shape(&b)),
            other => shown(other),
        },
        "set_prop" => format!(
            "{:?}",
            hostcalls::set_property(path(arg(a, 1)), Some(arg(a, 2).as_bytes()))
        ),
        // ["dispatch", UPSTREAM, PATH, TIMEOUT_MS, "k:v", ...]
        "dispatch" => {
            let mut headers = vec![
                (":method", "GET"),
                (":path", arg(a, 2)),
                (":authority", arg(a, 1)),
            ];
            headers.extend(header_args(a, 4));
            match hostcalls::dispatch_http_call(
                arg(a, 1),
                headers,
                None,
                vec![],
                Duration::from_millis(num(a, 3)),
            ) {
                // `token=` is renumbered by the suite: tokens count every dispatch of the worker.
                Ok(token) => format!("Ok(token={token})"),
                Err(e) => format!("Err({e:?})"),
            }
        }
        "shared_get" => match hostcalls::get_shared_data(arg(a, 1)) {
            Ok((v, cas)) => format!(
                "Ok({:?}, cas={})",
                v.map(|b| show(&b)),
                // The cas value is the host's; only whether there is one is comparable.
                if cas.is_some() { "some" } else { "none" }
            ),
            Err(e) => format!("Err({e:?})"),
        },
        // ["shared_set", KEY, VALUE, CAS]: CAS "none", a number, or "read" (the one get returns).
        "shared_set" => {
            let cas = match arg(a, 3) {
                "read" => hostcalls::get_shared_data(arg(a, 1)).ok().and_then(|r| r.1),
                "" | "none" => None,
                n => n.parse().ok(),
            };
            format!(
                "{:?}",
                hostcalls::set_shared_data(arg(a, 1), Some(arg(a, 2).as_bytes()), cas)
            )
        }
        "queue_register" => match hostcalls::register_shared_queue(arg(a, 1)) {
            Ok(id) => {
                QUEUES.with(|q| q.borrow_mut().insert(arg(a, 1).to_string(), id));
                "Ok".into()
            }
            Err(e) => format!("Err({e:?})"),
        },
        // ["queue_resolve", VM_ID, NAME]
        "queue_resolve" => match hostcalls::resolve_shared_queue(arg(a, 1), arg(a, 2)) {
            Ok(Some(id)) => {
                QUEUES.with(|q| q.borrow_mut().insert(arg(a, 2).to_string(), id));
                "Ok(found)".into()
            }
            other => format!("{other:?}"),
        },
        // ["queue_enqueue", NAME, VALUE] (an unknown name uses queue id 12345)
        "queue_enqueue" => format!(
            "{:?}",
            hostcalls::enqueue_shared_queue(
                queue_id(arg(a, 1)).unwrap_or(12345),
                Some(arg(a, 2).as_bytes())
            )
        ),
        "queue_dequeue" => shown(hostcalls::dequeue_shared_queue(
            queue_id(arg(a, 1)).unwrap_or(12345),
        )),
        "tick_period" => format!(
            "{:?}",
            hostcalls::set_tick_period(Duration::from_millis(num(a, 1)))
        ),
        "resume_request" => format!("{:?}", hostcalls::resume_http_request()),
        "resume_response" => format!("{:?}", hostcalls::resume_http_response()),
        "time" => match hostcalls::get_current_time() {
            // The value is the host's clock (virtual in the harness): only success is compared.
            Ok(_) => "Ok".into(),
            Err(e) => format!("Err({e:?})"),
        },
        // ["metric_define", "counter"|"gauge"|"histogram", NAME]
        "metric_define" => {
            let kind = match arg(a, 1) {
                "gauge" => MetricType::Gauge,
                "histogram" => MetricType::Histogram,
                _ => MetricType::Counter,
            };
            match hostcalls::define_metric(kind, arg(a, 2)) {
                Ok(id) => {
                    METRICS.with(|m| m.borrow_mut().insert(arg(a, 2).to_string(), id));
                    "Ok".into()
                }
                Err(e) => format!("Err({e:?})"),
            }
        }
        "metric_inc" => {
            let id = METRICS.with(|m| m.borrow().get(arg(a, 1)).copied());
            format!(
                "{:?}",
                hostcalls::increment_metric(id.unwrap_or(999), num(a, 2) as i64)
            )
        }
        "metric_record" => {
            let id = METRICS.with(|m| m.borrow().get(arg(a, 1)).copied());
            format!(
                "{:?}",
                hostcalls::record_metric(id.unwrap_or(999), num(a, 2))
            )
        }
        "metric_get" => {
            let id = METRICS.with(|m| m.borrow().get(arg(a, 1)).copied());
            format!("{:?}", hostcalls::get_metric(id.unwrap_or(999)))
        }
        "foreign" => {
            match hostcalls::call_foreign_function(arg(a, 1), Some(arg(a, 2).as_bytes())) {
                Ok(v) => format!("Ok({:?})", v.map(|b| show(&b))),
                Err(e) => format!("Err({e:?})"),
            }
        }
        "grpc_call" => format!(
            "{:?}",
            hostcalls::dispatch_grpc_call(
                arg(a, 1),
                "svc",
                "Method",
                vec![],
                None,
                Duration::from_millis(1000)
            )
        ),
        "grpc_status" => format!("{:?}", hostcalls::get_grpc_status()),
        "panic" => panic!("{}", arg(a, 1)),
        other => format!("unknown verb {other}"),
    }
}

/// Runs the script of `callback` in the context `who`, tracing each action and its result.
fn run_script(script: &Script, callback: &str, who: &str) {
    if let Some(actions) = script.actions.get(callback) {
        for a in actions {
            // Traced before running: a trap in the hostcall leaves the attempt in the trace.
            trace(who, &format!("call {}", a.join(" ")));
            let result = run(a);
            trace(who, &format!("-> {result}"));
        }
    }
}

fn action(script: &Script, callback: &str) -> Action {
    match script.ret.get(callback).map(String::as_str) {
        Some("pause") => Action::Pause,
        _ => Action::Continue,
    }
}

fn status_ok(s: Result<(), Status>) -> bool {
    s.is_ok()
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(Root { id, script: Script::default(), ticks: 0 })
    });
}}

struct Root {
    id: u32,
    script: Script,
    ticks: u64,
}

impl Root {
    fn who(&self) -> String {
        format!("{}|root#{}", self.script.case, self.id)
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        let who = self.who();
        trace(
            &who,
            &format!("on_http_call_response token={token} headers={headers} body={body} trailers={trailers}"),
        );
        run_script(&self.script, "call_response", &who);
        run_script(&self.script, "root_call_response", &who);
    }

    fn on_done(&mut self) -> bool {
        trace(&self.who(), "on_done");
        true
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, size: usize) -> bool {
        trace(&self.who(), &format!("on_vm_start size={size}"));
        true
    }

    fn on_configure(&mut self, size: usize) -> bool {
        let raw = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match serde_json::from_slice::<Script>(&raw) {
            Ok(s) => self.script = s,
            Err(e) => {
                trace(&self.who(), &format!("bad script: {e}"));
                return false;
            }
        }
        let who = self.who();
        trace(&who, &format!("on_configure size={size}"));
        if self.script.tick_ms > 0 {
            let r = hostcalls::set_tick_period(Duration::from_millis(self.script.tick_ms));
            trace(
                &who,
                &format!("tick_period {} -> ok={}", self.script.tick_ms, status_ok(r)),
            );
        }
        run_script(&self.script, "configure", &who);
        self.script.ret.get("configure").map(String::as_str) != Some("false")
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        if self.script.max_ticks > 0 && self.ticks > self.script.max_ticks {
            return;
        }
        let who = self.who();
        trace(&who, &format!("on_tick n={}", self.ticks));
        run_script(&self.script, "tick", &who);
        run_script(&self.script, &format!("tick{}", self.ticks), &who);
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        let name = QUEUES.with(|q| {
            q.borrow()
                .iter()
                .find(|(_, id)| **id == queue_id)
                .map(|(n, _)| n.clone())
        });
        let who = self.who();
        trace(
            &who,
            &format!(
                "on_queue_ready queue={}",
                name.unwrap_or_else(|| "?".into())
            ),
        );
        run_script(&self.script, "queue_ready", &who);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let h = Http {
            id: context_id,
            script: self.script.clone(),
        };
        trace(&h.who(), &format!("create root={}", self.id));
        Some(Box::new(h))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    id: u32,
    script: Script,
}

impl Http {
    fn who(&self) -> String {
        format!("{}|http#{}", self.script.case, self.id)
    }

    fn phase(&self, callback: &str, args: String) -> Action {
        let who = self.who();
        trace(&who, &format!("on_{callback} {args}"));
        run_script(&self.script, callback, &who);
        let act = action(&self.script, callback);
        if act == Action::Pause {
            trace(&who, &format!("on_{callback} returns pause"));
        }
        act
    }
}

/// The SDK drops a context on `proxy_on_delete`.
impl Drop for Http {
    fn drop(&mut self) {
        trace(&self.who(), "on_delete");
    }
}

impl Context for Http {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        let who = self.who();
        trace(
            &who,
            &format!("on_http_call_response token={token} headers={headers} body={body} trailers={trailers}"),
        );
        run_script(&self.script, "call_response", &who);
        run_script(&self.script, "http_call_response", &who);
    }

    fn on_done(&mut self) -> bool {
        let who = self.who();
        trace(&who, "on_done");
        run_script(&self.script, "done", &who);
        self.script.ret.get("done").map(String::as_str) != Some("false")
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, n: usize, eos: bool) -> Action {
        self.phase("request_headers", format!("n={n} eos={eos}"))
    }
    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        self.phase("request_body", format!("size={size} eos={eos}"))
    }
    fn on_http_request_trailers(&mut self, n: usize) -> Action {
        self.phase("request_trailers", format!("n={n}"))
    }
    fn on_http_response_headers(&mut self, n: usize, eos: bool) -> Action {
        self.phase("response_headers", format!("n={n} eos={eos}"))
    }
    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        self.phase("response_body", format!("size={size} eos={eos}"))
    }
    fn on_http_response_trailers(&mut self, n: usize) -> Action {
        self.phase("response_trailers", format!("n={n}"))
    }
    fn on_log(&mut self) {
        let who = self.who();
        trace(&who, "on_log");
        run_script(&self.script, "log", &who);
    }
}
