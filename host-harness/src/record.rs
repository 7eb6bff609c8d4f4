//! Everything a test may want to assert on: log lines, dispatched calls and how they ended,
//! metrics, traps and fatal host errors, in the order they happened.

use std::time::Duration;

use crate::hostile::InjectionRecord;
use crate::http::{CallFailure, HttpRequest, HttpResponse};

/// Where something happened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Origin {
    pub node: String,
    pub worker: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/w{}", self.node, self.worker)
    }
}

/// proxy-wasm log levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

impl LogLevel {
    pub fn from_abi(level: i32) -> Option<Self> {
        Some(match level {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub at: Duration,
    pub origin: Origin,
    pub level: LogLevel,
    pub message: String,
}

/// How a dispatched call ended, as delivered to the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// Not answered yet.
    Pending,
    Response(HttpResponse),
    Failed(CallFailure),
    /// The host dropped it: no callback will ever come.
    Lost,
    /// The context or worker that made it was gone when the answer came.
    Orphaned,
}

#[derive(Clone, Debug)]
pub struct CallRecord {
    pub token: u32,
    pub origin: Origin,
    pub context_id: u32,
    pub upstream: String,
    /// Timeout the guest asked for.
    pub timeout: Duration,
    pub request: HttpRequest,
    pub sent_at: Duration,
    pub answered_at: Option<Duration>,
    pub outcome: CallOutcome,
}

/// A trap or host crash: which callback was running, and why.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TrapRecord {
    pub at: Duration,
    pub origin: Origin,
    /// The callback that was running (`on_request_headers`, `on_tick`, ...).
    pub callback: String,
    /// Everything wasmtime or the host said (with the wasm backtrace).
    pub message: String,
    /// The trap's kind (`unreachable`, `out of bounds memory access`, ...), or the host's reason
    /// for a trap it raised (`host trap (bad usage): ...`).
    pub kind: String,
    /// The guest's last `panicked at ...` log line during the callback (Rust SDK panic hook).
    pub panic: Option<String>,
    /// The top frames of the wasm backtrace, symbolised (innermost first).
    pub frames: Vec<String>,
}

impl TrapRecord {
    /// One line: callback, kind, the guest's panic message and the top frames.
    pub fn summary(&self) -> String {
        let mut out = format!("{}: {}", self.callback, self.kind);
        if let Some(p) = &self.panic {
            out.push_str(&format!(" -- {p}"));
        }
        if !self.frames.is_empty() {
            out.push_str(&format!(" [at {}]", self.frames.join(" <- ")));
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricRecord {
    pub origin_node: String,
    pub name: String,
    pub kind: MetricKind,
    pub value: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// The log of one simulated world.
#[derive(Debug, Default)]
pub struct Recorder {
    pub logs: Vec<LogLine>,
    pub calls: Vec<CallRecord>,
    pub traps: Vec<TrapRecord>,
    /// Host crashes (what would be a segfault of the worker process).
    pub fatal_errors: Vec<TrapRecord>,
    /// Worker restarts after traps.
    pub recoveries: Vec<(Duration, Origin)>,
    /// What a hostile profile injected ([`crate::hostile`]).
    pub injections: Vec<InjectionRecord>,
    /// Also print every log line to stderr as it happens (CLI, debugging).
    pub echo: bool,
    /// Wall time of guest callbacks, by callback name.
    pub callback_times: std::collections::BTreeMap<String, CallbackTimes>,
    /// Every guest callback with its arguments, when switched on
    /// ([`crate::World::record_callbacks`]).
    pub callbacks: Option<Vec<GuestCall>>,
}

/// One guest export called by the host: where, which, with what, and what it returned
/// (`None`: trapped or returns nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestCall {
    pub at: Duration,
    pub origin: Origin,
    /// The export (`proxy_on_request_headers`, `proxy_on_http_call_response`, ...).
    pub func: String,
    pub args: Vec<i32>,
    pub result: Option<i32>,
}

/// How long a kind of guest callback took (wall time, on this machine): `guest` excludes the
/// host's bulk copies (buffers handed in, dispatched requests copied out), reported as `copy`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallbackTimes {
    pub count: u64,
    pub total_guest: std::time::Duration,
    pub longest_guest: std::time::Duration,
    pub total_copy: std::time::Duration,
    pub longest_copy: std::time::Duration,
}

impl Recorder {
    /// Records a log line, echoing it to stderr when `echo` is on (with its level: a guest's
    /// line; without: the host's own `[host]` notes).
    pub(crate) fn push_log(&mut self, line: LogLine, show_level: bool) {
        if self.echo {
            let level = if show_level {
                format!(" {:?}", line.level)
            } else {
                String::new()
            };
            let at = line.at.as_secs_f64();
            eprintln!("[{at:>9.3}s] {}{level} {}", line.origin, line.message);
        }
        self.logs.push(line);
    }

    /// The last call with this token from this worker (ngx_wasm_module's tokens are per worker).
    pub(crate) fn call_mut(&mut self, origin: &Origin, token: u32) -> Option<&mut CallRecord> {
        self.calls
            .iter_mut()
            .rev()
            .find(|c| c.token == token && &c.origin == origin)
    }
}
