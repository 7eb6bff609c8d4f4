//! Everything a test may want to assert on: log lines, dispatched calls and how they ended,
//! metrics, traps and fatal host errors, in the order they happened.

use std::time::Duration;

use crate::hostile::InjectionRecord;
use crate::http::{CallFailure, HttpRequest, HttpResponse};

/// Where something happened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The node's name (`NodeSpec::new`).
    pub node: String,
    /// The worker's index in the node, from 0.
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
    /// `proxy_log` level 0.
    Trace,
    /// Level 1.
    Debug,
    /// Level 2.
    Info,
    /// Level 3.
    Warn,
    /// Level 4.
    Error,
    /// Level 5.
    Critical,
}

impl LogLevel {
    /// The level of an ABI value (0-5), `None` for any other.
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

/// One line a guest logged (`proxy_log`), or a host note (`[host] ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// When (virtual time since the world started).
    pub at: Duration,
    /// Which node and worker.
    pub origin: Origin,
    /// Its level.
    pub level: LogLevel,
    /// The text as logged.
    pub message: String,
}

/// How a dispatched call ended, as delivered to the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// Not answered yet.
    Pending,
    /// The upstream answered.
    Response(HttpResponse),
    /// The call failed (refused, timed out, ...): the guest was called back without a status.
    Failed(CallFailure),
    /// The host dropped it: no callback will ever come.
    Lost,
    /// The context or worker that made it was gone when the answer came.
    Orphaned,
}

/// One `dispatch_http_call`: what was sent, when, and how it ended.
#[derive(Clone, Debug)]
pub struct CallRecord {
    /// The token the host returned to the guest.
    pub token: u32,
    /// Which node and worker dispatched it.
    pub origin: Origin,
    /// The context that dispatched it (root or HTTP).
    pub context_id: u32,
    /// The upstream as the guest named it (`host:port` or a cluster).
    pub upstream: String,
    /// Timeout the guest asked for.
    pub timeout: Duration,
    /// The request as the handler received it.
    pub request: HttpRequest,
    /// When it was dispatched (virtual time).
    pub sent_at: Duration,
    /// When its answer (or failure) was delivered; `None` while pending or lost.
    pub answered_at: Option<Duration>,
    /// How it ended.
    pub outcome: CallOutcome,
}

/// A trap or host crash: which callback was running, and why.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TrapRecord {
    /// When it trapped (virtual time).
    pub at: Duration,
    /// Which node and worker.
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

/// A metric a guest defined, with its current value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricRecord {
    /// The node it belongs to (metrics are per node).
    pub origin_node: String,
    /// The name the guest defined it with.
    pub name: String,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The current value (a histogram: the last recorded value).
    pub value: i64,
}

/// The kinds of `proxy_define_metric`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only increments.
    Counter,
    /// Set or incremented.
    Gauge,
    /// Recorded values.
    Histogram,
}

/// The log of one simulated world.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Every log line, in order.
    pub logs: Vec<LogLine>,
    /// Every dispatched call, in order.
    pub calls: Vec<CallRecord>,
    /// Every trap, in order.
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
    /// When (virtual time).
    pub at: Duration,
    /// Which node and worker.
    pub origin: Origin,
    /// The export (`proxy_on_request_headers`, `proxy_on_http_call_response`, ...).
    pub func: String,
    /// Its arguments (context id first).
    pub args: Vec<i32>,
    /// What it returned.
    pub result: Option<i32>,
}

/// How long a kind of guest callback took (wall time, on this machine): `guest` excludes the
/// host's bulk copies (buffers handed in, dispatched requests copied out), reported as `copy`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallbackTimes {
    /// How many calls.
    pub count: u64,
    /// Their total time in the guest.
    pub total_guest: std::time::Duration,
    /// The longest one in the guest.
    pub longest_guest: std::time::Duration,
    /// Their total time copying data in and out.
    pub total_copy: std::time::Duration,
    /// The longest copy.
    pub longest_copy: std::time::Duration,
    /// The CPU time of this thread during the longest call (copies included): unlike wall time,
    /// not inflated by other processes on busy cores. Zero unless
    /// [`World::measure_cpu_time`](crate::World::measure_cpu_time) turned it on, or where the OS
    /// does not tell.
    pub longest_cpu: std::time::Duration,
    /// Their total CPU time (copies included).
    pub total_cpu: std::time::Duration,
    /// The longest call's CPU time without the host's copies in it: the guest's own work
    /// (zero unless measured, as `longest_cpu`).
    pub longest_guest_cpu: std::time::Duration,
    /// Their total CPU time without the host's copies.
    pub total_guest_cpu: std::time::Duration,
    /// The CPU time of the longest copy (within one call).
    pub longest_copy_cpu: std::time::Duration,
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
