//! A simulated world: nodes (gateway instances) with workers (one wasm instance each), a virtual
//! clock and an event queue. Everything a guest causes — ticks, call answers, queue notifications —
//! is an event delivered after the guest call that caused it has returned, in time order.
//!
//! * [`spec`]: what a node runs and what an HTTP exchange sends ([`NodeSpec`], [`HttpExchange`]).
//! * `scheduler`: the event queue in virtual time, ticks and queue notifications.
//! * `lifecycle`: instantiating workers, starting, killing, restarting and reloading them,
//!   reconfiguring, calling guest exports, trap recovery, refused configurations.
//! * `calls`: dispatched calls routed to handlers, their records, failures per profile, answers.
//! * `http`: HTTP exchanges through a filter chain ([`HttpOutcome`]).
//! * `tcp`: L4 connections through a stream context (Envoy) ([`TcpOutcome`]).
//! * `hostile`: the callbacks a hostile profile adds (lost, unknown tokens and contexts, twice).
//! * `inspect`: logs, calls, traps, metrics, shared data, injections.

mod calls;
mod exchange;
mod hostile;
mod http;
mod inspect;
mod lifecycle;
mod scheduler;
/// What a test sets up: nodes, filters, HTTP exchanges.
pub mod spec;
mod tcp;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use wasmtime::{Instance, InstancePre, Store};

pub use self::http::{Action, CallbackCall, ExchangeId, HttpOutcome};
use self::scheduler::Scheduled;
pub use self::spec::{FilterSpec, HttpExchange, NodeSpec};
pub use self::tcp::{TcpExchange, TcpOutcome};
use crate::abi::Host;
use crate::clock::Clock;
use crate::http::SharedHandler;
use crate::profile::HostProfile;
use crate::record::{LogLevel, Origin};
use crate::state::{lock, NodeShared, WorldShared};

/// Index of a node in its world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeId(pub usize);

/// One tick timer of a root context.
#[derive(Clone)]
struct Timer {
    id: u64,
    period: Duration,
}

struct RootRuntime {
    id: u32,
    configured: Option<bool>,
    timers: Vec<Timer>,
    /// After a recovery ngx_wasm_module adds a tick timer instead of replacing the old one.
    add_timer_on_next_period: bool,
}

struct WorkerRuntime {
    store: Option<Store<Host>>,
    instance: Option<Instance>,
    generation: u64,
    roots: Vec<RootRuntime>,
    next_context: u32,
    /// ngx_wasm_module's per-process call tokens (from 0), kept across trap recoveries.
    tokens: Arc<std::sync::atomic::AtomicU32>,
    dead: Option<String>,
    recovering: bool,
    /// Trapped, to be recovered when a request or a tick needs the instance
    /// ([`HostProfile::lazy_recovery`](crate::HostProfile::lazy_recovery)).
    pending_recovery: bool,
}

impl WorkerRuntime {
    fn not_started() -> Self {
        WorkerRuntime {
            store: None,
            instance: None,
            generation: 0,
            roots: Vec::new(),
            next_context: 0,
            tokens: Default::default(),
            dead: Some("not started".into()),
            recovering: false,
            pending_recovery: false,
        }
    }

    /// Drops the instance: the worker is dead for `reason`.
    fn die(&mut self, reason: String) {
        self.store = None;
        self.instance = None;
        self.dead = Some(reason);
        self.pending_recovery = false;
    }
}

struct NodeRuntime {
    spec: NodeSpec,
    shared: Arc<NodeShared>,
    pre: InstancePre<Host>,
    workers: Vec<WorkerRuntime>,
}

/// A simulated world of nodes and workers on one clock. Not `Sync`: drive it from one thread;
/// run worlds in parallel freely (there is no global state).
pub struct World {
    shared: Arc<WorldShared>,
    nodes: Vec<NodeRuntime>,
    events: BinaryHeap<Reverse<Scheduled>>,
    /// HTTP exchanges, in flight or finished.
    exchanges: Vec<Option<exchange::ExchangeRun>>,
    /// Exchanges not finished yet (driven after each event).
    active_exchanges: Vec<usize>,
    /// The streams of an instance that trapped, as it left them, by (node, worker, key): what the
    /// host still does with them (a stashed local response) comes from here.
    orphaned_streams: std::collections::HashMap<(usize, usize, u32), crate::abi::StreamData>,
    seq: u64,
    next_timer: u64,
    allow_traps: bool,
    realtime: bool,
}

impl World {
    /// A world on a virtual clock starting at 2026-01-01T00:00:00Z.
    pub fn new(profile: HostProfile) -> Self {
        Self::with_clock(profile, Clock::virtual_default(), false)
    }

    /// A world whose clock starts at the real time now, for [`World::run_realtime`].
    pub fn new_realtime(profile: HostProfile) -> Self {
        Self::with_clock(
            profile,
            Clock::new(SystemTime::now(), Duration::from_millis(1)),
            true,
        )
    }

    fn with_clock(profile: HostProfile, clock: Clock, realtime: bool) -> Self {
        World {
            shared: Arc::new(WorldShared::new(clock, profile)),
            nodes: Vec::new(),
            events: BinaryHeap::new(),
            exchanges: Vec::new(),
            active_exchanges: Vec::new(),
            orphaned_streams: Default::default(),
            seq: 0,
            next_timer: 1,
            allow_traps: false,
            realtime,
        }
    }

    /// The host profile the world simulates.
    pub fn profile(&self) -> &HostProfile {
        &self.shared.profile
    }

    /// The world's clock (virtual unless [`World::new_realtime`]).
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// Virtual time since the world started.
    pub fn elapsed(&self) -> Duration {
        self.shared.clock.elapsed()
    }

    /// Traps and host crashes are expected: do not fail the test when the world is dropped.
    pub fn expect_traps(&mut self) -> &mut Self {
        self.allow_traps = true;
        self
    }

    /// Print every guest log line to stderr as it happens.
    pub fn echo_logs(&mut self, on: bool) -> &mut Self {
        lock(&self.shared.recorder).echo = on;
        self
    }

    /// The log level `proxy_get_log_level` reports.
    pub fn set_log_level(&mut self, level: LogLevel) {
        *self
            .shared
            .log_level
            .write()
            .unwrap_or_else(|e| e.into_inner()) = level;
    }

    /// Routes an upstream (`host:port` for ngx, a cluster name for Envoy) to a handler.
    pub fn route(&mut self, upstream: &str, handler: SharedHandler) -> &mut Self {
        self.shared
            .routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(upstream.to_string(), handler);
        self
    }

    /// The root context id of filter `i` of node `n`. Envoy counts contexts from 1; in
    /// ngx_wasm_module a root context's id is its filter's id, a crc32 of its name and
    /// configuration (`get_filter_id`), and HTTP contexts count from 1 per worker: the harness
    /// derives a large id from the name and position (stable across reconfigurations).
    pub(crate) fn root_id(&self, n: usize, i: usize) -> u32 {
        match self.shared.profile.http {
            crate::profile::HttpModel::Envoy => i as u32 + 1,
            crate::profile::HttpModel::Ngx => {
                let name = self.nodes[n]
                    .spec
                    .filters
                    .get(i)
                    .map(|f| f.name.as_str())
                    .unwrap_or("");
                filter_id(name, i)
            }
        }
    }

    fn origin(&self, n: usize, w: usize) -> Origin {
        Origin {
            node: self.nodes[n].spec.name.clone(),
            worker: w,
        }
    }
}

/// A stable id in `0x1000_0000..0x7000_0000` (clear of HTTP context ids and of the hostile
/// profile's bogus ids) from a filter's name and position: FNV-1a.
fn filter_id(name: &str, i: usize) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes().chain((i as u32).to_le_bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    0x1000_0000 + h % 0x6000_0000
}

impl Drop for World {
    fn drop(&mut self) {
        if self.allow_traps || std::thread::panicking() {
            return;
        }
        let rec = lock(&self.shared.recorder);
        if rec.traps.is_empty() && rec.fatal_errors.is_empty() {
            return;
        }
        let list: Vec<String> = rec
            .traps
            .iter()
            .chain(rec.fatal_errors.iter())
            .map(|t| format!("{} at {:?} in {}", t.origin, t.at, t.summary()))
            .collect();
        drop(rec);
        panic!(
            "unexpected trap(s) in the simulated world (call World::expect_traps() if intended):\n{}",
            list.join("\n")
        );
    }
}
