//! The proxy-wasm shell: host callbacks become core events, core output becomes hostcalls. No
//! decisions here. Rules (docs/host-behaviours.md): never trap (every hostcall result is a
//! `Result`, nothing is unwrapped, unknown ids are ignored), dispatch only from `on_tick`, never
//! read properties in a root context, metrics are optional.

mod abi;
mod hostcalls;
mod metrics;

use std::cell::RefCell;
use std::rc::Rc;

use crate::config_report::{inert_line, summary};
use crate::engine::{CallId, Dispatch, Effect, Engine, Event, Level, Metric};
use crate::host_tick;
use crate::http::HttpResponse;
use crate::json::members::first_byte;
use crate::json::scan::{Progress, Scanner, Summary, ValueKind};
use crate::node_lock::SharedStore;
use crate::redact::{unescape_key, KeyIndex, EXPORT_KEYS};
use crate::settings::{Config, ConfigError, PayloadCut, StringUnescape, Unescaped};
use crate::vec_map::VecMap;
use hostcalls::LogLevel;
use metrics::Metrics;

/// How often an inert filter (invalid configuration) repeats its error line.
const INERT_REMINDER_MS: u64 = 300_000;
/// The largest filter configuration kept as text for an import (`Engine::set_own_filter_config`).
const OWN_CONFIG_COPY_MAX: usize = 64 * 1024;

thread_local! {
    // A constant initial value: no lazy initialisation in each of the ~10 instantiations of
    // `LocalKey::with` (one per callback; BENCHMARKS.md "Issue 25, lean7").
    static FILTER: RefCell<Filter> = const {
        RefCell::new(Filter {
            roots: VecMap::new(),
            created: 0,
        })
    };
}

/// Runs `f` on the filter state; `None` if the state is busy (a host calling back into the
/// filter from inside a hostcall, which no host is known to do) — never a panic.
fn with_filter<T>(f: impl FnOnce(&mut Filter) -> T) -> Option<T> {
    FILTER.with(|cell| cell.try_borrow_mut().ok().map(|mut filter| f(&mut filter)))
}

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

/// Every root context of this worker (one per filter instance), by context id.
#[derive(Default)]
pub(crate) struct Filter {
    roots: VecMap<u32, Root>,
    /// Root contexts created so far: part of each one's identity.
    created: u64,
}

impl Filter {
    fn root_created(&mut self, context_id: u32) {
        self.created += 1;
        let created = self.created;
        self.roots
            .get_or_insert_with(context_id, || Root::new(context_id, created));
    }

    /// `on_done`: a root context going away withdraws its election registration (graceful
    /// hand-over, docs/election.md); HTTP contexts have nothing to finish.
    fn done(&mut self, context_id: u32) {
        if let Some(root) = self.roots.get_mut(&context_id) {
            root.stop();
        }
    }

    fn root_deleted(&mut self, context_id: u32) {
        self.roots.remove(&context_id);
    }

    fn root(&mut self, context_id: u32) -> &mut Root {
        if !self.roots.contains_key(&context_id) {
            self.root_created(context_id);
        }
        let created = self.created;
        self.roots
            .get_or_insert_with(context_id, || Root::new(context_id, created))
    }

    fn configure(&mut self, context_id: u32) -> bool {
        self.root(context_id).configure()
    }

    fn tick(&mut self, context_id: u32) {
        if let Some(root) = self.roots.get_mut(&context_id) {
            root.tick();
        }
    }

    fn call_response(&mut self, context_id: u32, token: u32, body_size: usize) {
        match self.roots.get_mut(&context_id) {
            Some(root) => root.call_response(token, body_size),
            None => log(
                Level::Debug,
                &format!("answer for unknown context {context_id} ignored"),
            ),
        }
    }
}

/// Shared data through the host; every status becomes a `Result`.
struct HostShared;

impl SharedStore for HostShared {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        hostcalls::get_shared_data(key).map_err(|s| format!("get_shared_data: status {}", s.0))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        hostcalls::set_shared_data(key, value, cas)
            .map_err(|s| format!("set_shared_data: status {}", s.0))
    }
}

/// Configurations up to this size are validated and parsed in `on_configure` itself.
const SCAN_SYNC_MAX: usize = 1024 * 1024;
/// Bytes of a larger configuration validated per tick: 1 MiB was 10-12 ms of guest CPU in wasm
/// at load 2-4 on 2 cores, about twice that under load (BENCHMARKS.md, issue 25, speed5).
const SCAN_SLICE_BYTES: usize = 512 * 1024;
/// The host's tick period (unless `host_tick_ms` says otherwise), set once per root context: the
/// engine's own `tick_period_ms` and the stepwise work (scan, dump, sliced hash) are paced from it.
/// A large or invalid first configuration sets it before any `host_tick_ms` is known; a longer
/// `host_tick_ms` is then kept by `host_tick::due`, a shorter one cannot be (`warn_host_tick`).
const HOST_TICK_MS: u64 = 50;

/// Bytes of a JSON string configuration (Kong 3.4) unescaped per tick: 7-8 ms of guest CPU in
/// wasm at load 2-4 on 2 cores, cheaper than the validation (BENCHMARKS.md, issue 25, speed5).
const UNESCAPE_SLICE_BYTES: usize = 1024 * 1024;

/// Bytes of a large configuration's payload moved per tick when it is cut out of the text.
const CUT_SLICE_BYTES: usize = 8 * 1024 * 1024;

/// A large filter configuration on its way in: unescaped (a JSON string, Kong 3.4) and validated
/// a slice per tick, then its payload cut out of the text a slice per tick; applied only once whole.
enum PendingConfig {
    Unescaping {
        bytes: Vec<u8>,
        unescape: StringUnescape,
    },
    Scanning {
        bytes: Vec<u8>,
        scanner: Scanner,
    },
    Cutting {
        cfg: Box<Config>,
        cut: PayloadCut,
        keys: PayloadKeys,
    },
}

/// The inline `config` payload's range in the scanned text, and where the scan found the
/// redaction's keys in that text (`redact::KeyIndex`), when the payload is an object.
type PayloadKeys = Option<(std::ops::Range<usize>, Vec<(usize, usize)>)>;

/// The validation scan of a large configuration: it also notes the redaction's keys
/// (`redact::EXPORT_KEYS`), so the export does not read its payload again (BENCHMARKS.md,
/// "Issue 25, speed7").
fn config_scanner() -> Scanner {
    let mut scanner = Scanner::new(Some("config"));
    scanner.watch_keys(EXPORT_KEYS, unescape_key);
    scanner
}

/// The worker's environment (what nginx/Kong pass through `env` / `nginx_main_env`).
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// An invalid configuration: the filter does nothing but remind.
struct Inert {
    error: ConfigError,
    last_reminder_ms: u64,
}

struct Root {
    context_id: u32,
    me: u64,
    engine: Option<Engine>,
    /// The engine of a configuration that turned invalid: withdraws its election registration at
    /// the next tick (ngx_wasm_module refuses calls from `on_configure`), then goes.
    retiring: Option<Engine>,
    inert: Option<Inert>,
    /// A large configuration being validated a slice per tick.
    pending: Option<PendingConfig>,
    /// The host's tick period, once set (it can be set only once: `ensure_ticks`).
    tick_period_ms: Option<u64>,
    /// The `host_tick_ms` last said not to apply (one warning per value).
    host_tick_warned: Option<u64>,
    /// When the engine's work last ran (every `host_tick_ms`: `host_tick::due`).
    last_work_tick: u64,
    /// When the engine last ticked (it ticks every `tick_period_ms`, or every host tick when busy).
    last_engine_tick: u64,
    /// Host call token → engine call id (no hashing: no `RandomState`, whose seeding may panic).
    calls: VecMap<u32, CallId>,
    metrics: Metrics,
}

impl Root {
    fn new(context_id: u32, created: u64) -> Root {
        // Unique per root context across the node's workers: WASI randomness mixed with the host
        // time, the context id and this worker's creation count.
        let mut seed = hostcalls::random_u64().unwrap_or(0);
        for part in [
            hostcalls::now_ms().unwrap_or(0),
            u64::from(context_id),
            created,
        ] {
            seed = crate::backoff::Rng::new(seed ^ part).next_u64();
        }
        Root {
            context_id,
            me: seed.max(1),
            engine: None,
            retiring: None,
            inert: None,
            pending: None,
            tick_period_ms: None,
            host_tick_warned: None,
            last_work_tick: 0,
            last_engine_tick: 0,
            calls: VecMap::new(),
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

    fn event(&mut self, event: Event) {
        let Ok(now) = hostcalls::now_ms() else { return };
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        let fx = engine.on_event(event, now, &mut HostShared);
        self.effects(fx);
    }

    fn configure(&mut self) -> bool {
        // The newest configuration wins: one still being validated or cut is dropped.
        self.pending = None;
        let bytes = match hostcalls::buffer(hostcalls::PLUGIN_CONFIGURATION, usize::MAX) {
            Ok(b) => b,
            Err(s) => {
                // Nothing to validate: stay inert rather than take the worker down.
                let error = ConfigError {
                    field: "configuration".into(),
                    reason: format!("the host did not hand it over (status {})", s.0),
                    strict: false,
                };
                return self.go_inert(error);
            }
        };
        // A large configuration (it embeds the document to export) is validated a slice per tick:
        // no callback walks tens of MB (docs/architecture.md). Until then the previous
        // configuration, if any, keeps working. A JSON string (Kong 3.4) is unescaped first.
        let first = bytes.first().copied();
        if bytes.len() > SCAN_SYNC_MAX && matches!(first, Some(b'{' | b'"')) {
            log(
                Level::Info,
                &format!(
                    "configuration of {} bytes: validating it across ticks",
                    bytes.len()
                ),
            );
            self.pending = Some(if first == Some(b'"') {
                let unescape = StringUnescape::new();
                PendingConfig::Unescaping { bytes, unescape }
            } else {
                PendingConfig::Scanning {
                    bytes,
                    scanner: config_scanner(),
                }
            });
            self.ensure_ticks(HOST_TICK_MS);
            return true;
        }
        // An importer puts its own configuration in place of exporting filters it imports; an
        // import-only configuration is small (an exporter's may carry a large payload: no copy).
        let own_text = (bytes.len() <= OWN_CONFIG_COPY_MAX).then(|| Rc::new(bytes.clone()));
        // The buffer is consumed: an inline payload is cut out of it in place, the rest released.
        match Config::parse_owned(bytes, &env) {
            Ok(cfg) => self.apply(cfg, own_text, None),
            Err(e) => self.go_inert(e),
        }
    }

    /// The next slice of a large configuration's validation (parsed when complete), or of its
    /// payload's cut (applied when complete).
    fn pending_slice(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        match pending {
            PendingConfig::Unescaping { bytes, unescape } => self.unescape_slice(bytes, unescape),
            PendingConfig::Scanning { bytes, mut scanner } => {
                match scanner.step(&bytes, SCAN_SLICE_BYTES) {
                    Progress::More => {
                        self.pending = Some(PendingConfig::Scanning { bytes, scanner })
                    }
                    Progress::Invalid(e) => {
                        let error = ConfigError {
                            field: "configuration".into(),
                            reason: format!("not valid JSON ({e})"),
                            strict: false,
                        };
                        self.go_inert(error);
                    }
                    // The cut starts at the next tick: this one scanned a slice.
                    Progress::Done(scanned) => self.scanned(bytes, scanned),
                }
            }
            PendingConfig::Cutting { cfg, mut cut, keys } => {
                if cut.step(CUT_SLICE_BYTES) {
                    match cut.finish(*cfg) {
                        Some(cfg) => self.apply(cfg, None, keys),
                        // Not reached (the last step was taken); never an empty payload.
                        None => self.go_inert(ConfigError {
                            field: "config".into(),
                            reason: "could not be cut out of the configuration".into(),
                            strict: false,
                        }),
                    };
                } else {
                    self.pending = Some(PendingConfig::Cutting { cfg, cut, keys });
                }
            }
        }
    }

    /// A large configuration is scanned: its settings read, its payload's cut set up.
    fn scanned(&mut self, bytes: Vec<u8>, mut scanned: Summary) {
        let found = std::mem::take(&mut scanned.found);
        // The payload `parse_scanned` cuts out: the last `config` member, when an object.
        let keys = scanned
            .member("config")
            .filter(|m| m.kind == ValueKind::Object)
            .map(|m| (m.value.clone(), found));
        match Config::parse_scanned(bytes, &scanned, &env) {
            Ok((cfg, cut)) => {
                let cfg = Box::new(cfg);
                self.pending = Some(PendingConfig::Cutting { cfg, cut, keys });
            }
            Err(e) => {
                self.go_inert(e);
            }
        }
    }

    /// The next slice of a JSON string configuration's unescaping (Kong 3.4), in place; then its
    /// text is validated like an object's.
    fn unescape_slice(&mut self, mut bytes: Vec<u8>, mut unescape: StringUnescape) {
        let reason = match unescape.step(&mut bytes, UNESCAPE_SLICE_BYTES) {
            Unescaped::More => {
                self.pending = Some(PendingConfig::Unescaping { bytes, unescape });
                return;
            }
            Unescaped::Done if first_byte(&bytes) == Some(b'{') => {
                let scanner = config_scanner();
                self.pending = Some(PendingConfig::Scanning { bytes, scanner });
                return;
            }
            Unescaped::Done => "expected a JSON object or a JSON string holding one".to_string(),
            Unescaped::Invalid(why) => format!("not valid JSON ({why})"),
        };
        self.go_inert(ConfigError {
            field: "configuration".into(),
            reason,
            strict: false,
        });
    }

    /// A valid configuration: (re)configures the engine and hands it its own document.
    /// `keys`: where the validation scan found the redaction's keys in the payload, if it did.
    fn apply(&mut self, cfg: Config, own_text: Option<Rc<Vec<u8>>>, keys: PayloadKeys) -> bool {
        self.ensure_ticks(cfg.host_tick_ms);
        self.warn_host_tick(cfg.host_tick_ms);
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
        engine.set_own_filter_config(own_text);
        if let Some(doc) = engine.own_config_document() {
            if let Some(index) = keys.and_then(|(range, found)| KeyIndex::new(&doc, found, range)) {
                engine.index_own_document(index);
            }
            self.event(Event::ConfigApplied(doc));
        }
        log(
            Level::Info,
            &format!("configured (root context {}): {summary}", self.context_id),
        );
        true
    }

    /// An invalid configuration: one error line naming the field; then no export, no import.
    /// `on_configure` still returns true unless `strict_config` asked the host to refuse
    /// (ngx_wasm_module kills the worker for good on false: docs/host-behaviours.md).
    fn go_inert(&mut self, error: ConfigError) -> bool {
        log(Level::Error, &inert_line(&error, false));
        // An inert filter is no candidate: a leader withdraws its registration (next tick).
        self.retiring = self.engine.take();
        self.calls.clear();
        self.metrics.apply(Metric::ConfigInvalid, 1);
        if error.strict {
            return false;
        }
        self.ensure_ticks(HOST_TICK_MS);
        self.inert = Some(Inert {
            error,
            last_reminder_ms: hostcalls::now_ms().unwrap_or(0),
        });
        true
    }

    fn tick(&mut self) {
        let Ok(now) = hostcalls::now_ms() else {
            log(Level::Warn, "host time unavailable; tick skipped");
            return;
        };
        if self.pending.is_some() {
            self.pending_slice();
        }
        if let Some(mut retiring) = self.retiring.take() {
            for d in retiring.stop(now) {
                self.dispatch(d);
            }
        }
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
        // The work runs every `host_tick_ms`, also where the host ticks faster (its period was
        // set before this configuration was known).
        let period = self.tick_period_ms.unwrap_or(0);
        if !host_tick::due(
            now,
            self.last_work_tick,
            engine.config().host_tick_ms,
            period,
        ) {
            return;
        }
        self.last_work_tick = now;
        // The host ticks every `host_tick_ms`; the engine every `tick_period_ms`, or at every host
        // tick while it has stepwise work (a dump, a sliced hash).
        // A clock that went back (or a bogus reading earlier) must not stop the engine for good.
        let due = now < self.last_engine_tick
            || now
                >= self
                    .last_engine_tick
                    .saturating_add(engine.config().tick_period_ms);
        if !due && !engine.busy() {
            return;
        }
        self.last_engine_tick = now;
        let out = engine.tick(now, &mut HostShared);
        // Calls the engine gave up: their tokens go (a host that never answers must not grow
        // the map by one entry per call).
        if !out.expired.is_empty() {
            self.calls.retain(|_, id| !out.expired.contains(id));
        }
        self.effects(out.effects);
        for d in out.dispatches {
            self.dispatch(d);
        }
    }

    fn stop(&mut self) {
        let (Some(engine), Ok(now)) = (self.engine.as_mut(), hostcalls::now_ms()) else {
            return;
        };
        for d in engine.stop(now) {
            self.dispatch(d);
        }
    }

    /// Sets the host's tick period, once per root context: ngx_wasm_module traps on a second
    /// `set_tick_period` ("tick_period already set": docs/host-behaviours.md), and Kong re-runs
    /// `on_configure` when a filter chain's configuration changes.
    fn ensure_ticks(&mut self, period_ms: u64) {
        if self.tick_period_ms.is_some() {
            return;
        }
        // The engine's first tick comes one `tick_period_ms` after the first configuration, as it
        // would with a host timer of that period.
        self.last_engine_tick = hostcalls::now_ms().unwrap_or(0);
        match hostcalls::set_tick_period_ms(period_ms) {
            Ok(()) => self.tick_period_ms = Some(period_ms),
            // Refused: no timer was set, so the next configuration may try again.
            Err(s) => log(
                Level::Error,
                &format!("cannot set the tick period (status {})", s.0),
            ),
        }
    }

    /// A `host_tick_ms` shorter than the host's period, which was set before (by an earlier
    /// configuration, or for validating a large one): the host cannot tick faster, say so once.
    fn warn_host_tick(&mut self, host_tick_ms: u64) {
        let Some(period) = self.tick_period_ms.filter(|&p| p > host_tick_ms) else {
            return;
        };
        if self.host_tick_warned == Some(host_tick_ms) {
            return;
        }
        self.host_tick_warned = Some(host_tick_ms);
        log(
            Level::Warn,
            &format!(
                "host_tick_ms {host_tick_ms} cannot apply: the host already ticks this root context every {period} ms (it sets the period once, here before this configuration was known: a large or invalid configuration came first); the filter works every {period} ms"
            ),
        );
    }

    fn dispatch(&mut self, d: Dispatch) {
        let r = &d.request;
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", r.method.as_str()),
            (":path", r.path.as_str()),
            (":authority", r.authority.as_str()),
            (":scheme", r.scheme.as_str()),
        ];
        headers.extend(r.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        match hostcalls::http_call(&r.upstream, &headers, &r.body, d.timeout_ms) {
            Ok(token) => {
                self.calls.insert(token, d.id);
            }
            Err(s) => {
                let reason = format!(
                    "the host refused the call to upstream {} (status {})",
                    r.upstream, s.0
                );
                self.event(Event::CallFailed { id: d.id, reason });
            }
        }
    }

    fn call_response(&mut self, token: u32, body_size: usize) {
        let Some(id) = self.calls.remove(&token) else {
            log(
                Level::Debug,
                &format!("answer for an unknown call token {token} ignored"),
            );
            return;
        };
        // Read even when the header count is 0: ngx_wasm_module reports failures in
        // `:dispatch_status`.
        let headers = hostcalls::call_response_headers().unwrap_or_default();
        let status = match answer_status(&headers) {
            Ok(status) => status,
            Err(reason) => return self.event(Event::CallFailed { id, reason }),
        };
        // A body larger than the call may have is refused on its announced size, before the
        // filter allocates or copies any of it (`import_max_bytes`).
        let limit = self.engine.as_ref().and_then(|e| e.answer_limit(id));
        let too_large = limit.is_some_and(|l| body_size as u64 > l);
        let body = match answer_body(if too_large { 0 } else { body_size }) {
            Ok(body) => body,
            Err(reason) => return self.event(Event::CallFailed { id, reason }),
        };
        let response = HttpResponse {
            status,
            headers: headers
                .into_iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .collect(),
            body,
        };
        self.event(if too_large {
            Event::AnswerTooLarge {
                id,
                response,
                announced: body_size as u64,
            }
        } else {
            Event::CallAnswered { id, response }
        });
    }
}

/// A call answer's `:status`, or why there is none (the host's `:dispatch_status`).
fn answer_status(headers: &[(String, String)]) -> Result<u16, String> {
    if let Some(status) = headers
        .iter()
        .find(|(k, _)| k == ":status")
        .and_then(|(_, v)| v.trim().parse::<u16>().ok())
    {
        return Ok(status);
    }
    Err(headers
        .iter()
        .find(|(k, _)| k == ":dispatch_status")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "no response".to_string()))
}

/// A call answer's body of `size` bytes (none read for 0).
fn answer_body(size: usize) -> Result<Vec<u8>, String> {
    if size == 0 {
        return Ok(Vec::new());
    }
    hostcalls::buffer(hostcalls::HTTP_CALL_RESPONSE_BODY, size)
        .map_err(|s| format!("cannot read the response body (status {})", s.0))
}
