//! A simulated world: nodes (gateway instances) with workers (one wasm instance each), a virtual
//! clock and an event queue. Everything a guest causes — ticks, call answers, queue notifications —
//! is an event delivered after the guest call that caused it has returned, in time order.
//!
//! The world is a router over sub-machines that own their state:
//!
//! * `worker` (`Worker`): one simulated worker process: its wasmtime `Store` and instance, root
//!   contexts, tick timers, call tokens, trap recovery; it keeps the events its guest calls cause.
//! * `exchange` (`Exchange`): one HTTP exchange's run state, stepping against one worker
//!   (`Exchange::step(&mut self, &mut Worker, now) -> Step`), and the pure rules of how a host
//!   builds its messages.
//! * `scheduler` (`Scheduler`): the clock and the event queue.
//!
//! and the world's own parts, each routing to those:
//!
//! * [`spec`]: what a node runs and what an HTTP exchange sends ([`NodeSpec`], [`HttpExchange`]).
//! * `events`: advancing time, delivering each due event to the worker or exchange it concerns.
//! * `lifecycle`: adding nodes, starting, killing, restarting, reloading and reconfiguring workers.
//! * `calls`: delivering dispatched calls' answers (records, what the callback reads).
//! * `http`: the HTTP API ([`World::http`], [`World::start_http`], ...) and [`HttpOutcome`].
//! * `tcp`: L4 connections through a stream context (Envoy) ([`TcpOutcome`]).
//! * `hostile`: the callbacks a hostile profile adds (lost, unknown tokens and contexts, twice).
//! * `inspect`: logs, calls, traps, metrics, shared data, injections.

mod calls;
mod events;
mod exchange;
mod hostile;
mod http;
mod inspect;
mod lifecycle;
mod scheduler;
/// What a test sets up: nodes, filters, HTTP exchanges.
pub mod spec;
mod tcp;
mod worker;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use self::http::{Action, CallbackCall, ExchangeId, HttpOutcome};
use self::scheduler::Scheduler;
pub use self::spec::{FilterSpec, HttpExchange, NodeSpec};
pub use self::tcp::{TcpExchange, TcpOutcome};
use self::worker::{Blueprint, Worker};
use crate::clock::Clock;
use crate::http::SharedHandler;
use crate::profile::HostProfile;
use crate::record::LogLevel;
use crate::state::{lock, NodeShared, WorldShared};

/// Index of a node in its world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeId(pub usize);

/// A node: what it runs, what its workers share, and its workers.
struct Node {
    spec: NodeSpec,
    shared: Arc<NodeShared>,
    blueprint: Arc<Blueprint>,
    workers: Vec<Worker>,
}

/// A simulated world of nodes and workers on one clock. Not `Sync`: drive it from one thread;
/// run worlds in parallel freely (there is no global state).
///
/// Each worker owns its instance, timers and trap recovery; each HTTP exchange owns its run
/// state and steps against its worker; the scheduler owns the clock and the event queue. The
/// world hands each event to what it concerns, and what workers cause to the scheduler.
pub struct World {
    shared: Arc<WorldShared>,
    nodes: Vec<Node>,
    scheduler: Scheduler,
    /// HTTP exchanges, in flight or finished.
    exchanges: Vec<Option<exchange::Exchange>>,
    /// Exchanges not finished yet (driven after each event).
    active_exchanges: Vec<usize>,
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
            shared: Arc::new(WorldShared::new(clock.clone(), profile)),
            nodes: Vec::new(),
            scheduler: Scheduler::new(clock),
            exchanges: Vec::new(),
            active_exchanges: Vec::new(),
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
        self.scheduler.now()
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

    /// Runs `f` on a worker, then hands what its guest calls caused to the scheduler (before
    /// anything else is scheduled: the queue keeps the order things happened in).
    fn on_worker<R>(&mut self, n: usize, w: usize, f: impl FnOnce(&mut Worker) -> R) -> R {
        let worker = &mut self.nodes[n].workers[w];
        let r = f(worker);
        for (due, event) in worker.take_caused() {
            self.scheduler.schedule(due, event);
        }
        r
    }
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
