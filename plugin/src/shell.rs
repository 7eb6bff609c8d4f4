//! The proxy-wasm glue: host callbacks become engine events, engine output becomes hostcalls.
//! No decisions here. Rules from SPEC §6: never trap (every hostcall error is logged and
//! handled, nothing is unwrapped), never dispatch outside `on_tick`, never read properties in a
//! root context, metrics are optional.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};

use crate::config::{Config, ConfigError};
use crate::config_report::{inert_line, summary};
use crate::engine::{CallId, Effect, Engine, Event, Level, Metric, MetricKind};
use crate::guarded_hostcalls;
use crate::node_lock::SharedStore;
use crate::object_store::HttpResponse;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> { Box::new(Root::new(context_id)) });
}}

fn log(level: Level, message: &str) {
    let host_level = match level {
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    };
    // Nothing sensible to do if logging itself fails.
    let _ = hostcalls::log(host_level, &format!("[config-bridge] {message}"));
}

fn now_ms() -> Option<u64> {
    let t = hostcalls::get_current_time().ok()?;
    t.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as u64)
}

/// Shared data through the host; every status becomes a `Result` (see `guarded_hostcalls`).
struct HostShared;

impl SharedStore for HostShared {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        hostcalls::get_shared_data(key).map_err(|s| format!("get_shared_data: {s:?}"))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        guarded_hostcalls::set_shared_data(key, value, cas)
            .map_err(|s| format!("set_shared_data: status {}", s.0))
    }
}

/// Metric ids, defined lazily; a host without the metrics ABI disables them for good.
#[derive(Default)]
struct Metrics {
    ids: HashMap<Metric, u32>,
    disabled: bool,
}

impl Metrics {
    fn apply(&mut self, metric: Metric, value: u64) {
        if self.disabled {
            return;
        }
        let id = match self.ids.get(&metric) {
            Some(id) => *id,
            None => {
                let kind = match metric.kind() {
                    MetricKind::Counter => guarded_hostcalls::COUNTER,
                    MetricKind::Gauge => guarded_hostcalls::GAUGE,
                };
                match guarded_hostcalls::define_metric(kind, metric.name()) {
                    Ok(id) => {
                        self.ids.insert(metric, id);
                        id
                    }
                    Err(_) => {
                        self.disabled = true;
                        return;
                    }
                }
            }
        };
        let result = match metric.kind() {
            MetricKind::Counter => {
                guarded_hostcalls::increment_metric(id, i64::try_from(value).unwrap_or(i64::MAX))
            }
            MetricKind::Gauge => guarded_hostcalls::record_metric(id, value),
        };
        if result.is_err() {
            self.disabled = true;
        }
    }
}

/// How often an inert filter (invalid configuration) repeats its error line.
const INERT_REMINDER_MS: u64 = 300_000;
/// Tick period while inert: only the reminder runs.
const INERT_TICK_MS: u64 = 10_000;

/// An invalid configuration: the filter does nothing but remind (docs/host-behaviours.md).
struct Inert {
    error: ConfigError,
    last_reminder_ms: u64,
}

/// The HTTP context of a request through a filter chain that carries config-bridge: it never
/// touches requests, but it must exist. Every host creates one per request (Kong: every request
/// through the service or route of the chain), and the SDK panics when the root context declares
/// no context type (docs/host-behaviours.md). The trait defaults continue every phase.
struct PassThrough;

impl Context for PassThrough {}
impl HttpContext for PassThrough {}

struct Root {
    context_id: u32,
    me: u64,
    engine: Option<Engine>,
    inert: Option<Inert>,
    /// Host call token → engine call id.
    calls: HashMap<u32, CallId>,
    metrics: Metrics,
}

impl Root {
    fn new(context_id: u32) -> Root {
        // Unique per root context across the node's workers: std's RandomState is seeded from
        // WASI `random_get`, mixed with the host time and the context id.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(now_ms().unwrap_or(0));
        h.write_u32(context_id);
        Root {
            context_id,
            me: h.finish().max(1),
            engine: None,
            inert: None,
            calls: HashMap::new(),
            metrics: Metrics::default(),
        }
    }

    fn effects(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Log(level, msg) => log(level, &msg),
                Effect::Metric(m, v) => self.metrics.apply(m, v),
            }
        }
    }

    /// An invalid configuration: one error line naming the field; then no export, no import.
    /// `on_configure` still returns true unless `strict_config` asked the host to refuse
    /// (ngx_wasm_module kills the worker for good on false: docs/host-behaviours.md).
    fn go_inert(&mut self, error: ConfigError) -> bool {
        log(Level::Error, &inert_line(&error, false));
        self.engine = None;
        self.calls.clear();
        self.metrics.apply(Metric::ConfigInvalid, 1);
        if error.strict {
            return false;
        }
        if let Err(s) = hostcalls::set_tick_period(Duration::from_millis(INERT_TICK_MS)) {
            log(Level::Warn, &format!("cannot set the tick period ({s:?})"));
        }
        self.inert = Some(Inert {
            error,
            last_reminder_ms: now_ms().unwrap_or(0),
        });
        true
    }

    fn event(&mut self, event: Event) {
        let Some(now) = now_ms() else { return };
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        let fx = engine.on_event(event, now, &mut HostShared);
        self.effects(fx);
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(id) = self.calls.remove(&token_id) else {
            log(
                Level::Debug,
                &format!("answer for an unknown call token {token_id} ignored"),
            );
            return;
        };
        // Read even when the header count is 0: ngx_wasm_module reports failures in `:dispatch_status`.
        let headers = guarded_hostcalls::call_response_headers().unwrap_or_default();
        let status = headers
            .iter()
            .find(|(k, _)| k == ":status")
            .and_then(|(_, v)| v.trim().parse::<u16>().ok());
        let Some(status) = status else {
            let reason = headers
                .iter()
                .find(|(k, _)| k == ":dispatch_status")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| "no response".to_string());
            self.event(Event::CallFailed { id, reason });
            return;
        };
        let body = if body_size > 0 {
            match hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size) {
                Ok(b) => b.unwrap_or_default(),
                Err(s) => {
                    self.event(Event::CallFailed {
                        id,
                        reason: format!("cannot read the response body ({s:?})"),
                    });
                    return;
                }
            }
        } else {
            Vec::new()
        };
        let headers = headers
            .into_iter()
            .filter(|(k, _)| !k.starts_with(':'))
            .collect();
        self.event(Event::CallAnswered {
            id,
            response: HttpResponse {
                status,
                headers,
                body,
            },
        });
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(b) => b.unwrap_or_default(),
            Err(s) => {
                // Nothing to validate: stay inert rather than take the worker down.
                let error = ConfigError {
                    field: "configuration".into(),
                    reason: format!("the host did not hand it over ({s:?})"),
                    strict: false,
                };
                return self.go_inert(error);
            }
        };
        // The buffer is consumed: an inline payload is cut out of it in place, the rest released.
        let cfg = match Config::parse_owned(bytes, &|name| std::env::var(name).ok()) {
            Ok(c) => c,
            Err(e) => return self.go_inert(e),
        };
        if cfg.import && !cfg.export {
            log(Level::Warn, "cluster_fallback_config_import is not implemented in this build yet; this filter instance only validates its configuration");
        }
        if let Err(s) = hostcalls::set_tick_period(Duration::from_millis(cfg.tick_period_ms)) {
            log(Level::Error, &format!("cannot set the tick period ({s:?})"));
        }
        self.inert = None;
        self.metrics.apply(Metric::ConfigInvalid, 0);
        let summary = summary(&cfg);
        let engine = match self.engine.as_mut() {
            Some(e) => {
                e.reconfigure(cfg);
                e
            }
            None => self.engine.insert(Engine::new(cfg, self.me)),
        };
        if let Some(doc) = engine.own_config_document() {
            self.event(Event::ConfigApplied(doc));
        }
        log(
            Level::Info,
            &format!("configured (root context {}): {summary}", self.context_id),
        );
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(PassThrough))
    }

    fn on_tick(&mut self) {
        let Some(now) = now_ms() else {
            log(Level::Warn, "host time unavailable; tick skipped");
            return;
        };
        if let Some(inert) = self.inert.as_mut() {
            if now.saturating_sub(inert.last_reminder_ms) >= INERT_REMINDER_MS {
                inert.last_reminder_ms = now;
                log(Level::Error, &inert_line(&inert.error, true));
            }
            return;
        }
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        let out = engine.tick(now, &mut HostShared);
        self.effects(out.effects);
        let Some(d) = out.dispatch else { return };
        let r = &d.request;
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", r.method.as_str()),
            (":path", r.path.as_str()),
            (":authority", r.authority.as_str()),
            (":scheme", r.scheme.as_str()),
        ];
        headers.extend(r.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let body = if r.body.is_empty() {
            None
        } else {
            Some(r.body.as_slice())
        };
        match hostcalls::dispatch_http_call(
            &r.upstream,
            headers,
            body,
            Vec::new(),
            Duration::from_millis(d.timeout_ms),
        ) {
            Ok(token) => {
                self.calls.insert(token, d.id);
            }
            Err(s) => {
                let reason = format!(
                    "the host refused the call to upstream {} ({s:?})",
                    r.upstream
                );
                self.event(Event::CallFailed { id: d.id, reason });
            }
        }
    }
}
