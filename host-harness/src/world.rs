//! A simulated world: nodes (gateway instances) with workers (one wasm instance each), a virtual
//! clock and an event queue. Everything a guest causes — ticks, call answers, queue notifications —
//! is an event delivered after the guest call that caused it has returned, in time order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Result};
use rand::SeedableRng;
use wasmtime::{Instance, InstancePre, Store, Val};
use wasmtime_wasi::WasiCtxBuilder;

use crate::abi::{self, CallResponseData, Callback, Host, LocalResponse, Outbox, StreamData};
use crate::clock::{Clock, WasiMonotonic, WasiWall};
use crate::http::{CallContext, CallFailure, HttpResponse, Reply, SharedHandler};
use crate::module::PluginModule;
use crate::profile::HostProfile;
use crate::record::{
    CallOutcome, CallRecord, LogLevel, LogLine, MetricKind, Origin, Recorder, TrapRecord,
};
use crate::state::{lock, NodeShared, SharedValue, WorldShared};

/// Index of a node in its world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeId(pub usize);

/// One filter instance in a worker's chain: its root context's configuration.
#[derive(Clone, Debug, Default)]
pub struct FilterSpec {
    pub plugin_config: Vec<u8>,
    pub vm_config: Vec<u8>,
}

impl FilterSpec {
    pub fn new(plugin_config: impl Into<Vec<u8>>) -> Self {
        FilterSpec {
            plugin_config: plugin_config.into(),
            vm_config: Vec::new(),
        }
    }
}

/// What a node runs.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    pub module: PluginModule,
    pub workers: usize,
    pub filters: Vec<FilterSpec>,
    /// Environment variables the workers see through WASI.
    pub env: Vec<(String, String)>,
    /// Properties readable from HTTP contexts (dotted paths).
    pub properties: Vec<(String, Vec<u8>)>,
    /// Seed of the WASI random generators (per worker it is mixed with the worker index).
    pub seed: u64,
}

impl NodeSpec {
    pub fn new(name: &str, module: &PluginModule) -> Self {
        NodeSpec {
            name: name.to_string(),
            module: module.clone(),
            workers: 1,
            filters: Vec::new(),
            env: Vec::new(),
            properties: Vec::new(),
            seed: 0,
        }
    }

    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Adds a filter instance with this plugin configuration.
    pub fn filter(mut self, plugin_config: impl Into<Vec<u8>>) -> Self {
        self.filters.push(FilterSpec::new(plugin_config));
        self
    }

    pub fn filter_spec(mut self, spec: FilterSpec) -> Self {
        self.filters.push(spec);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn property(mut self, path: &str, value: impl Into<Vec<u8>>) -> Self {
        self.properties.push((path.to_string(), value.into()));
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// An HTTP request/response passing through a filter chain.
#[derive(Clone, Debug, Default)]
pub struct HttpExchange {
    /// Request headers including `:method`, `:path`, `:authority`, `:scheme`.
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub request_trailers: Vec<(String, String)>,
    /// Response headers including `:status`.
    pub response_headers: Vec<(String, String)>,
    pub response_body: Vec<u8>,
    pub response_trailers: Vec<(String, String)>,
    /// How long (virtual time) a paused phase may wait for the filter to resume it.
    pub max_pause: Duration,
}

impl HttpExchange {
    pub fn get(path: &str) -> Self {
        HttpExchange {
            request_headers: vec![
                (":method".into(), "GET".into()),
                (":path".into(), path.into()),
                (":authority".into(), "example.test".into()),
                (":scheme".into(), "http".into()),
            ],
            response_headers: vec![(":status".into(), "200".into())],
            max_pause: Duration::from_secs(60),
            ..Default::default()
        }
    }
}

/// What happened to an exchange.
#[derive(Clone, Debug, Default)]
pub struct HttpOutcome {
    pub context_id: u32,
    /// The data as the filter left it (headers modified, bodies replaced...).
    pub data: StreamData,
    /// Actions returned by each phase, in order (`request_headers`, `request_body`, ...).
    pub actions: Vec<(&'static str, Action)>,
    /// A phase stayed paused past `max_pause`.
    pub stuck: bool,
    /// The worker trapped or died during the exchange.
    pub failed: bool,
}

impl HttpOutcome {
    pub fn local_response(&self) -> Option<&LocalResponse> {
        self.data.local_response.as_ref()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

#[derive(Clone, Debug)]
enum CallResult {
    Response(HttpResponse),
    Failed(CallFailure),
}

#[derive(Clone, Debug)]
enum Event {
    Tick {
        node: usize,
        worker: usize,
        root: u32,
        timer: u64,
    },
    CallDone {
        node: usize,
        worker: usize,
        generation: u64,
        token: u32,
        context: u32,
        result: CallResult,
    },
    QueueReady {
        node: usize,
        worker: usize,
        generation: u64,
        context: u32,
        queue: u32,
    },
}

struct Scheduled {
    due: Duration,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

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
    dead: Option<String>,
    recovering: bool,
}

struct NodeRuntime {
    spec: NodeSpec,
    shared: Arc<NodeShared>,
    pre: InstancePre<Host>,
    workers: Vec<WorkerRuntime>,
}

enum Invoke {
    Returned(Option<i32>),
    /// Trapped, crashed, or the worker was not alive.
    Failed,
}

/// A simulated world of nodes and workers on one clock. Not `Sync`: drive it from one thread;
/// run worlds in parallel freely (there is no global state).
pub struct World {
    shared: Arc<WorldShared>,
    nodes: Vec<NodeRuntime>,
    events: BinaryHeap<Reverse<Scheduled>>,
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
            seq: 0,
            next_timer: 1,
            allow_traps: false,
            realtime,
        }
    }

    pub fn profile(&self) -> &HostProfile {
        &self.shared.profile
    }

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

    /// Adds a node and starts its workers (`on_vm_start`, `on_configure` on every root context).
    pub fn add_node(&mut self, spec: NodeSpec) -> Result<NodeId> {
        let linker = abi::linker(&spec.module.engine).map_err(|e| anyhow!("{e:?}"))?;
        let pre = linker
            .instantiate_pre(&spec.module.module)
            .map_err(|e| anyhow!("linking the module: {e:?}"))?;
        let shared = NodeShared::new(&spec.name);
        {
            let mut props = shared.properties.write().unwrap_or_else(|e| e.into_inner());
            props.insert("plugin_root_id".into(), b"0".to_vec());
            for (k, v) in &spec.properties {
                props.insert(k.clone(), v.clone());
            }
        }
        let workers = (0..spec.workers)
            .map(|_| WorkerRuntime {
                store: None,
                instance: None,
                generation: 0,
                roots: Vec::new(),
                next_context: 0,
                dead: Some("not started".into()),
                recovering: false,
            })
            .collect();
        self.nodes.push(NodeRuntime {
            spec,
            shared,
            pre,
            workers,
        });
        let n = self.nodes.len() - 1;
        for w in 0..self.nodes[n].workers.len() {
            self.start_worker(NodeId(n), w)?;
        }
        Ok(NodeId(n))
    }

    pub fn node_name(&self, node: NodeId) -> &str {
        &self.nodes[node.0].spec.name
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn worker_count(&self, node: NodeId) -> usize {
        self.nodes[node.0].workers.len()
    }

    /// Starts (or restarts) a worker as a fresh process: new instance, `on_vm_start`,
    /// `on_configure`. Fails only when the module cannot be instantiated.
    pub fn start_worker(&mut self, node: NodeId, worker: usize) -> Result<()> {
        self.instantiate(node.0, worker, true)
    }

    /// Kills a worker (as `kill -9` would). Its calls in flight are orphaned, its timers stop.
    pub fn kill_worker(&mut self, node: NodeId, worker: usize) {
        let w = &mut self.nodes[node.0].workers[worker];
        w.store = None;
        w.instance = None;
        w.generation += 1;
        w.roots.clear();
        w.dead = Some("killed".into());
    }

    /// Whether a worker is running.
    pub fn worker_alive(&self, node: NodeId, worker: usize) -> bool {
        self.nodes[node.0].workers[worker].dead.is_none()
    }

    /// Why a worker is not running.
    pub fn worker_death(&self, node: NodeId, worker: usize) -> Option<String> {
        self.nodes[node.0].workers[worker].dead.clone()
    }

    /// What `on_configure` returned for a filter on a worker (`None`: not run / worker dead).
    pub fn configured(&self, node: NodeId, worker: usize, filter: usize) -> Option<bool> {
        self.nodes[node.0].workers[worker]
            .roots
            .get(filter)
            .and_then(|r| r.configured)
    }

    /// Gives a filter a new configuration and runs `on_configure` on every live worker, as Kong
    /// does when a filter chain's config changes. Returns each worker's result.
    pub fn reconfigure(
        &mut self,
        node: NodeId,
        filter: usize,
        plugin_config: impl Into<Vec<u8>>,
    ) -> Vec<Option<bool>> {
        let config = plugin_config.into();
        self.nodes[node.0].spec.filters[filter].plugin_config = config.clone();
        let root = filter as u32 + 1;
        let mut results = Vec::new();
        for w in 0..self.nodes[node.0].workers.len() {
            if self.nodes[node.0].workers[w].dead.is_some() {
                results.push(None);
                continue;
            }
            if let Some(store) = self.nodes[node.0].workers[w].store.as_mut() {
                if let Some(c) = store.data_mut().root_configs.get_mut(&root) {
                    c.1 = config.clone();
                }
            }
            let r = match self.invoke(
                node.0,
                w,
                Callback::Configure,
                root,
                "proxy_on_configure",
                &[root as i32, config.len() as i32],
            ) {
                Invoke::Returned(v) => Some(v.unwrap_or(0) != 0),
                Invoke::Failed => None,
            };
            if let Some(rt) = self.nodes[node.0].workers[w]
                .roots
                .iter_mut()
                .find(|r| r.id == root)
            {
                rt.configured = r;
            }
            if r == Some(false) {
                self.host_note(
                    node.0,
                    w,
                    &format!("on_configure of filter {filter} returned false"),
                );
                self.configure_refused(node.0, w);
            }
            results.push(r);
        }
        results
    }

    /// An nginx reload with a new configuration for one filter (`proxy_wasm` / Kong filter
    /// chain): the new workers start with it, shared data wiped.
    pub fn reload_node_with(
        &mut self,
        node: NodeId,
        filter: usize,
        plugin_config: impl Into<Vec<u8>>,
    ) -> Result<()> {
        self.nodes[node.0].spec.filters[filter].plugin_config = plugin_config.into();
        self.reload_node(node)
    }

    /// Restarts every worker of a node and wipes its shared data and queues (an nginx reload).
    pub fn reload_node(&mut self, node: NodeId) -> Result<()> {
        lock(&self.nodes[node.0].shared.shared_data).clear();
        lock(&self.nodes[node.0].shared.queues).queues.clear();
        for w in 0..self.nodes[node.0].workers.len() {
            self.kill_worker(node, w);
            self.start_worker(node, w)?;
        }
        Ok(())
    }

    /// Advances virtual time, delivering every due tick, answer and notification in order.
    pub fn advance(&mut self, by: Duration) {
        let deadline = self.elapsed() + by;
        self.run_until(deadline, |_| false);
    }

    /// Advances in `step`s until `done` holds or `limit` passes; returns whether it held.
    pub fn advance_until(
        &mut self,
        limit: Duration,
        step: Duration,
        mut done: impl FnMut(&World) -> bool,
    ) -> bool {
        let deadline = self.elapsed() + limit;
        while self.elapsed() < deadline {
            if done(self) {
                return true;
            }
            let next = (self.elapsed() + step).min(deadline);
            self.run_until(next, |_| false);
        }
        done(self)
    }

    /// Runs for `duration` of real time, delivering events when the wall clock reaches them.
    pub fn run_realtime(&mut self, duration: Duration) {
        let start_wall = Instant::now();
        let start_virtual = self.elapsed();
        let end = start_virtual + duration;
        loop {
            let next_due = self.events.peek().map(|Reverse(s)| s.due).unwrap_or(end);
            let target = next_due.min(end);
            let wait = (target - start_virtual).saturating_sub(start_wall.elapsed());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            self.run_until(target, |_| false);
            if target >= end {
                break;
            }
        }
    }

    /// Delivers events due up to `deadline`; stops early when `stop` holds after an event.
    fn run_until(&mut self, deadline: Duration, mut stop: impl FnMut(&World) -> bool) -> bool {
        loop {
            let due = match self.events.peek() {
                Some(Reverse(s)) if s.due <= deadline => s.due,
                _ => break,
            };
            let Some(Reverse(next)) = self.events.pop() else {
                break;
            };
            self.shared.clock.set_elapsed(due);
            self.deliver(next.event);
            if stop(self) {
                return true;
            }
        }
        self.shared.clock.set_elapsed(deadline);
        false
    }

    fn schedule(&mut self, due: Duration, event: Event) {
        self.seq += 1;
        self.events.push(Reverse(Scheduled {
            due,
            seq: self.seq,
            event,
        }));
    }

    fn origin(&self, n: usize, w: usize) -> Origin {
        Origin {
            node: self.nodes[n].spec.name.clone(),
            worker: w,
        }
    }

    fn instantiate(&mut self, n: usize, w: usize, fresh: bool) -> Result<()> {
        let spec = &self.nodes[n].spec;
        let generation = self.nodes[n].workers[w].generation + 1;
        let seed = spec
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add((n as u64) << 32 | (w as u64) << 16 | generation);
        let wasi = WasiCtxBuilder::new()
            .envs(&spec.env)
            .wall_clock(WasiWall(self.shared.clock.clone()))
            .monotonic_clock(WasiMonotonic(self.shared.clock.clone()))
            .secure_random(rand::rngs::StdRng::seed_from_u64(seed))
            .insecure_random(rand::rngs::StdRng::seed_from_u64(seed ^ 0x5555))
            .insecure_random_seed(u128::from(seed))
            .build_p1();
        let root_configs = spec
            .filters
            .iter()
            .enumerate()
            .map(|(i, f)| (i as u32 + 1, (f.vm_config.clone(), f.plugin_config.clone())))
            .collect();
        let host = Host {
            wasi,
            world: self.shared.clone(),
            node: self.nodes[n].shared.clone(),
            origin: self.origin(n, w),
            generation,
            callback: Callback::Initialize,
            effective_context: 0,
            root_configs,
            streams: Default::default(),
            call_response: None,
            outbox: Outbox::default(),
            fatal: None,
            fatal_trap: None,
        };
        let mut store = Store::new(&self.nodes[n].spec.module.engine, host);
        let instance = self.nodes[n]
            .pre
            .instantiate(&mut store)
            .map_err(|e| anyhow!("instantiating the module: {e:#}"))?;
        let filters = self.nodes[n].spec.filters.clone();
        let old_roots = std::mem::take(&mut self.nodes[n].workers[w].roots);
        {
            let wr = &mut self.nodes[n].workers[w];
            wr.store = Some(store);
            wr.instance = Some(instance);
            wr.generation = generation;
            wr.dead = None;
            wr.next_context = filters.len() as u32 + 1;
            wr.roots = filters
                .iter()
                .enumerate()
                .map(|(i, _)| {
                    let id = i as u32 + 1;
                    // A recovered root keeps its old timers; ngx then adds another.
                    let old = old_roots.iter().position(|r| r.id == id);
                    let (timers, add) = match (fresh, old) {
                        (false, Some(o)) => (old_roots_timers(&old_roots, o), true),
                        _ => (Vec::new(), false),
                    };
                    RootRuntime {
                        id,
                        configured: None,
                        timers,
                        add_timer_on_next_period: add,
                    }
                })
                .collect();
        }
        if let Invoke::Failed = self.invoke(n, w, Callback::Initialize, 0, "_initialize", &[]) {
            return Ok(());
        }
        for (i, f) in filters.iter().enumerate() {
            let root = i as u32 + 1;
            if let Invoke::Failed = self.invoke(
                n,
                w,
                Callback::ContextCreate,
                root,
                "proxy_on_context_create",
                &[root as i32, 0],
            ) {
                return Ok(());
            }
            let vm_start = fresh && (self.shared.profile.vm_start_per_root_context || i == 0);
            if vm_start {
                match self.invoke(
                    n,
                    w,
                    Callback::VmStart,
                    root,
                    "proxy_on_vm_start",
                    &[root as i32, f.vm_config.len() as i32],
                ) {
                    Invoke::Failed => return Ok(()),
                    Invoke::Returned(Some(0)) => {
                        self.host_note(n, w, "on_vm_start returned false");
                    }
                    Invoke::Returned(_) => {}
                }
            }
            let r = self.invoke(
                n,
                w,
                Callback::Configure,
                root,
                "proxy_on_configure",
                &[root as i32, f.plugin_config.len() as i32],
            );
            let configured = match r {
                Invoke::Failed => return Ok(()),
                Invoke::Returned(v) => v.unwrap_or(0) != 0,
            };
            if let Some(rt) = self.nodes[n].workers[w].roots.get_mut(i) {
                rt.configured = Some(configured);
            }
            if !configured {
                self.host_note(n, w, &format!("on_configure of filter {i} returned false"));
                if self.configure_refused(n, w) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// `on_configure` returned false. Where the profile says so (ngx_wasm_module), the worker
    /// exits for good, recorded as a fatal host error. Returns whether the worker died.
    fn configure_refused(&mut self, n: usize, w: usize) -> bool {
        if !self.shared.profile.configure_false_is_fatal {
            return false;
        }
        let reason = "on_configure returned false: worker process exited with fatal code 2 and \
                      cannot be respawned";
        let record = TrapRecord {
            at: self.elapsed(),
            origin: self.origin(n, w),
            callback: Callback::Configure.name().to_string(),
            message: reason.to_string(),
        };
        lock(&self.shared.recorder).fatal_errors.push(record);
        let wr = &mut self.nodes[n].workers[w];
        wr.store = None;
        wr.instance = None;
        wr.dead = Some(reason.to_string());
        true
    }

    /// A line from the host itself (not the guest) in the log, at Warn level, prefixed `[host]`.
    fn host_note(&mut self, n: usize, w: usize, message: &str) {
        let line = LogLine {
            at: self.elapsed(),
            origin: self.origin(n, w),
            level: LogLevel::Warn,
            message: format!("[host] {message}"),
        };
        let mut rec = lock(&self.shared.recorder);
        if rec.echo {
            eprintln!(
                "[{:>9.3}s] {} {}",
                line.at.as_secs_f64(),
                line.origin,
                line.message
            );
        }
        rec.logs.push(line);
    }

    /// Calls a guest export with the callback rules of the profile, then acts on the outbox.
    fn invoke(
        &mut self,
        n: usize,
        w: usize,
        cb: Callback,
        ctx: u32,
        func: &str,
        args: &[i32],
    ) -> Invoke {
        let wr = &mut self.nodes[n].workers[w];
        if wr.dead.is_some() {
            return Invoke::Failed;
        }
        let (Some(store), Some(instance)) = (wr.store.as_mut(), wr.instance) else {
            return Invoke::Failed;
        };
        store.data_mut().callback = cb;
        store.data_mut().effective_context = ctx;
        let Some(f) = instance.get_func(&mut *store, func) else {
            // Optional exports (`_initialize`, callbacks an old SDK lacks) are skipped.
            return Invoke::Returned(None);
        };
        let ty = f.ty(&*store);
        let params: Vec<Val> = ty
            .params()
            .enumerate()
            .map(|(i, _)| Val::I32(args.get(i).copied().unwrap_or(0)))
            .collect();
        let mut results: Vec<Val> = ty.results().map(|_| Val::I32(0)).collect();
        let outcome = f.call(&mut *store, &params, &mut results);
        let fatal = store.data_mut().fatal.take();
        let fatal_trap = store.data_mut().fatal_trap.take();
        let outbox = std::mem::take(&mut store.data_mut().outbox);
        match outcome {
            Ok(()) => {
                self.process_outbox(n, w, outbox);
                Invoke::Returned(results.first().and_then(|v| v.i32()))
            }
            Err(err) => {
                let record = TrapRecord {
                    at: self.elapsed(),
                    origin: self.origin(n, w),
                    callback: cb.name().to_string(),
                    message: format!("{err:?}"),
                };
                let recover = self.shared.profile.recover_after_trap
                    && fatal.is_none()
                    && fatal_trap.is_none()
                    && !self.nodes[n].workers[w].recovering
                    && cb != Callback::Initialize;
                {
                    let mut rec = lock(&self.shared.recorder);
                    if rec.echo {
                        eprintln!(
                            "[{:>9.3}s] {} TRAP in {}: {}",
                            record.at.as_secs_f64(),
                            record.origin,
                            record.callback,
                            record.message.lines().next().unwrap_or("")
                        );
                    }
                    if fatal.is_some() {
                        rec.fatal_errors.push(record);
                    } else {
                        rec.traps.push(record);
                    }
                }
                let reason = fatal
                    .or(fatal_trap)
                    .unwrap_or_else(|| format!("trapped in {}", cb.name()));
                let wr = &mut self.nodes[n].workers[w];
                wr.store = None;
                wr.instance = None;
                wr.dead = Some(reason);
                if recover {
                    lock(&self.shared.recorder)
                        .recoveries
                        .push((self.elapsed(), self.origin(n, w)));
                    self.nodes[n].workers[w].recovering = true;
                    let restarted = self.instantiate(n, w, false);
                    self.nodes[n].workers[w].recovering = false;
                    if let Err(e) = restarted {
                        self.nodes[n].workers[w].dead = Some(format!("recovery failed: {e:#}"));
                    }
                }
                Invoke::Failed
            }
        }
    }

    fn process_outbox(&mut self, n: usize, w: usize, outbox: Outbox) {
        let now = self.elapsed();
        for (root, period_ms) in outbox.tick_periods {
            let timer_id = self.next_timer;
            let Some(rt) = self.nodes[n].workers[w]
                .roots
                .iter_mut()
                .find(|r| r.id == root)
            else {
                continue;
            };
            if period_ms == 0 {
                rt.timers.clear();
                continue;
            }
            let period = Duration::from_millis(u64::from(period_ms));
            if rt.add_timer_on_next_period {
                rt.add_timer_on_next_period = false;
            } else {
                rt.timers.clear();
            }
            rt.timers.push(Timer {
                id: timer_id,
                period,
            });
            self.next_timer += 1;
            self.schedule(
                now + period,
                Event::Tick {
                    node: n,
                    worker: w,
                    root,
                    timer: timer_id,
                },
            );
        }
        for call in outbox.calls {
            self.send_call(n, w, call, now);
        }
        for queue in outbox.enqueued {
            let owner = lock(&self.nodes[n].shared.queues)
                .get_mut(queue)
                .map(|q| (q.owner_worker, q.owner_context, q.owner_generation));
            if let Some((worker, context, generation)) = owner {
                self.schedule(
                    now,
                    Event::QueueReady {
                        node: n,
                        worker,
                        generation,
                        context,
                        queue,
                    },
                );
            }
        }
    }

    fn send_call(&mut self, n: usize, w: usize, call: abi::PendingCall, now: Duration) {
        let generation = self.nodes[n].workers[w].generation;
        let origin = self.origin(n, w);
        let https = call.request.scheme == "https";
        let reply = match call.immediate_failure {
            Some(f) => Reply::Fail {
                failure: f,
                after: Duration::ZERO,
            },
            None => match self.shared.route(&call.upstream, https) {
                Some(handler) => {
                    let ctx =
                        CallContext::new(self.shared.clock.now(), &origin.node, &call.upstream);
                    handler.handle(&call.request, &ctx)
                }
                None => Reply::Fail {
                    failure: CallFailure::ResolverFailure,
                    after: Duration::ZERO,
                },
            },
        };
        let timeout = call.timeout;
        let failure = |f: CallFailure, after: Duration| {
            if after >= timeout {
                (timeout, CallResult::Failed(CallFailure::Timeout))
            } else {
                (after, CallResult::Failed(f))
            }
        };
        let scheduled = match reply {
            Reply::Response { response, latency } if latency < timeout => {
                Some((latency, CallResult::Response(response)))
            }
            Reply::Response { .. } | Reply::Hang => {
                Some((timeout, CallResult::Failed(CallFailure::Timeout)))
            }
            Reply::Fail { failure: f, after } => Some(failure(f, after)),
            Reply::NoCallback => None,
        };
        let scheduled = match scheduled {
            Some((_, CallResult::Failed(_))) if !self.shared.profile.callback_on_failure => None,
            s => s,
        };
        lock(&self.shared.recorder).calls.push(CallRecord {
            token: call.token,
            origin,
            context_id: call.context_id,
            upstream: call.upstream.clone(),
            timeout,
            request: call.request,
            sent_at: now,
            answered_at: None,
            outcome: if scheduled.is_some() {
                CallOutcome::Pending
            } else {
                CallOutcome::Lost
            },
        });
        if let Some((delay, result)) = scheduled {
            self.schedule(
                now + delay,
                Event::CallDone {
                    node: n,
                    worker: w,
                    generation,
                    token: call.token,
                    context: call.context_id,
                    result,
                },
            );
        }
    }

    fn deliver(&mut self, event: Event) {
        match event {
            Event::Tick {
                node,
                worker,
                root,
                timer,
            } => {
                let period = self.nodes[node].workers[worker]
                    .roots
                    .iter()
                    .find(|r| r.id == root)
                    .and_then(|r| r.timers.iter().find(|t| t.id == timer))
                    .map(|t| t.period);
                let Some(period) = period else { return };
                if self.nodes[node].workers[worker].dead.is_some() {
                    return;
                }
                // Reschedule first: a tick that traps and recovers keeps its timer (ngx).
                let next = self.elapsed() + period;
                self.schedule(
                    next,
                    Event::Tick {
                        node,
                        worker,
                        root,
                        timer,
                    },
                );
                self.invoke(
                    node,
                    worker,
                    Callback::Tick,
                    root,
                    "proxy_on_tick",
                    &[root as i32],
                );
            }
            Event::CallDone {
                node,
                worker,
                generation,
                token,
                context,
                result,
            } => self.deliver_call(node, worker, generation, token, context, result),
            Event::QueueReady {
                node,
                worker,
                generation,
                context,
                queue,
            } => {
                if self.nodes[node].workers[worker].generation == generation {
                    self.invoke(
                        node,
                        worker,
                        Callback::QueueReady,
                        context,
                        "proxy_on_queue_ready",
                        &[context as i32, queue as i32],
                    );
                }
            }
        }
    }

    fn deliver_call(
        &mut self,
        n: usize,
        w: usize,
        generation: u64,
        token: u32,
        context: u32,
        result: CallResult,
    ) {
        let now = self.elapsed();
        let wr = &mut self.nodes[n].workers[w];
        let alive = wr.dead.is_none() && wr.generation == generation;
        let is_root = wr.roots.iter().any(|r| r.id == context);
        let has_context = is_root
            || wr
                .store
                .as_ref()
                .is_some_and(|s| s.data().streams.contains_key(&context));
        let outcome = match &result {
            CallResult::Response(r) => CallOutcome::Response(r.clone()),
            CallResult::Failed(f) => CallOutcome::Failed(*f),
        };
        {
            let mut rec = lock(&self.shared.recorder);
            if let Some(c) = rec.call_mut(token) {
                c.answered_at = Some(now);
                c.outcome = if alive && has_context {
                    outcome
                } else {
                    CallOutcome::Orphaned
                };
            }
        }
        if !alive || !has_context {
            return;
        }
        let (data, num_headers, body_len, num_trailers) = match result {
            CallResult::Response(r) => {
                let mut headers = vec![(":status".to_string(), r.status.to_string())];
                headers.extend(r.headers);
                let (nh, nb) = (headers.len(), r.body.len());
                (
                    CallResponseData {
                        headers,
                        body: r.body,
                        trailers: Vec::new(),
                    },
                    nh,
                    nb,
                    0,
                )
            }
            CallResult::Failed(f) => {
                // Zero headers; ngx_wasm_module still lets the filter read `:dispatch_status`.
                let headers = if self.shared.profile.dispatch_status_header {
                    vec![(
                        ":dispatch_status".to_string(),
                        f.dispatch_status().to_string(),
                    )]
                } else {
                    Vec::new()
                };
                (
                    CallResponseData {
                        headers,
                        body: Vec::new(),
                        trailers: Vec::new(),
                    },
                    0,
                    0,
                    0,
                )
            }
        };
        if let Some(store) = self.nodes[n].workers[w].store.as_mut() {
            store.data_mut().call_response = Some(data);
        }
        let cb = if is_root {
            Callback::RootCallResponse
        } else {
            Callback::Http
        };
        self.invoke(
            n,
            w,
            cb,
            context,
            "proxy_on_http_call_response",
            &[
                context as i32,
                token as i32,
                num_headers as i32,
                body_len as i32,
                num_trailers,
            ],
        );
        if let Some(store) = self.nodes[n].workers[w].store.as_mut() {
            store.data_mut().call_response = None;
        }
    }

    /// Runs one HTTP exchange through filter `filter` on a worker: context creation, request and
    /// response phases (waiting in virtual time while the filter pauses), `on_log`, `on_done`,
    /// `on_delete`.
    pub fn http(
        &mut self,
        node: NodeId,
        worker: usize,
        filter: usize,
        exchange: HttpExchange,
    ) -> HttpOutcome {
        let n = node.0;
        let root = filter as u32 + 1;
        let mut outcome = HttpOutcome::default();
        let ctx = {
            let wr = &mut self.nodes[n].workers[worker];
            let Some(store) = wr.store.as_mut() else {
                outcome.failed = true;
                return outcome;
            };
            let ctx = wr.next_context;
            wr.next_context += 1;
            store.data_mut().streams.insert(
                ctx,
                StreamData {
                    request_headers: exchange.request_headers.clone(),
                    request_body: exchange.request_body.clone(),
                    request_trailers: exchange.request_trailers.clone(),
                    response_headers: exchange.response_headers.clone(),
                    response_body: exchange.response_body.clone(),
                    response_trailers: exchange.response_trailers.clone(),
                    ..Default::default()
                },
            );
            ctx
        };
        outcome.context_id = ctx;
        let phases: [(&'static str, &str, usize, bool, bool); 6] = [
            (
                "request_headers",
                "proxy_on_request_headers",
                exchange.request_headers.len(),
                exchange.request_body.is_empty() && exchange.request_trailers.is_empty(),
                true,
            ),
            (
                "request_body",
                "proxy_on_request_body",
                exchange.request_body.len(),
                exchange.request_trailers.is_empty(),
                !exchange.request_body.is_empty(),
            ),
            (
                "request_trailers",
                "proxy_on_request_trailers",
                exchange.request_trailers.len(),
                true,
                !exchange.request_trailers.is_empty(),
            ),
            (
                "response_headers",
                "proxy_on_response_headers",
                exchange.response_headers.len(),
                exchange.response_body.is_empty() && exchange.response_trailers.is_empty(),
                true,
            ),
            (
                "response_body",
                "proxy_on_response_body",
                exchange.response_body.len(),
                exchange.response_trailers.is_empty(),
                !exchange.response_body.is_empty(),
            ),
            (
                "response_trailers",
                "proxy_on_response_trailers",
                exchange.response_trailers.len(),
                true,
                !exchange.response_trailers.is_empty(),
            ),
        ];
        if let Invoke::Failed = self.invoke(
            n,
            worker,
            Callback::Http,
            ctx,
            "proxy_on_context_create",
            &[ctx as i32, root as i32],
        ) {
            outcome.failed = true;
            return outcome;
        }
        for (i, (name, func, count, eos, present)) in phases.into_iter().enumerate() {
            if !present
                || self
                    .stream(n, worker, ctx)
                    .is_none_or(|s| s.local_response.is_some())
            {
                continue;
            }
            let args = if name.ends_with("trailers") {
                vec![ctx as i32, count as i32]
            } else {
                vec![ctx as i32, count as i32, eos as i32]
            };
            let action = match self.invoke(n, worker, Callback::Http, ctx, func, &args) {
                Invoke::Failed => {
                    outcome.failed = true;
                    break;
                }
                Invoke::Returned(v) if v.unwrap_or(0) == 0 => Action::Continue,
                Invoke::Returned(_) => Action::Pause,
            };
            outcome.actions.push((name, action));
            if action == Action::Pause {
                let is_request = i < 3;
                let resumed =
                    self.advance_until(exchange.max_pause, Duration::from_millis(10), |world| {
                        world.stream(n, worker, ctx).is_none_or(|s| {
                            s.local_response.is_some()
                                || if is_request {
                                    s.resumed_request
                                } else {
                                    s.resumed_response
                                }
                        })
                    });
                if !resumed {
                    outcome.stuck = true;
                    break;
                }
            }
        }
        if !outcome.failed {
            for (func, args) in [
                ("proxy_on_log", vec![ctx as i32]),
                ("proxy_on_done", vec![ctx as i32]),
                ("proxy_on_delete", vec![ctx as i32]),
            ] {
                if let Invoke::Failed = self.invoke(n, worker, Callback::Http, ctx, func, &args) {
                    outcome.failed = true;
                    break;
                }
            }
        }
        if let Some(store) = self.nodes[n].workers[worker].store.as_mut() {
            if let Some(data) = store.data_mut().streams.remove(&ctx) {
                outcome.data = data;
            }
        }
        outcome
    }

    fn stream(&self, n: usize, w: usize, ctx: u32) -> Option<&StreamData> {
        self.nodes[n].workers[w]
            .store
            .as_ref()
            .and_then(|s| s.data().streams.get(&ctx))
    }

    // ---- inspection -------------------------------------------------------------------------

    /// Runs `f` on the recorder.
    pub fn with_recorder<R>(&self, f: impl FnOnce(&Recorder) -> R) -> R {
        f(&lock(&self.shared.recorder))
    }

    /// Every guest log line so far.
    pub fn logs(&self) -> Vec<LogLine> {
        lock(&self.shared.recorder).logs.clone()
    }

    /// Log messages containing `needle`.
    pub fn logs_containing(&self, needle: &str) -> Vec<LogLine> {
        lock(&self.shared.recorder)
            .logs
            .iter()
            .filter(|l| l.message.contains(needle))
            .cloned()
            .collect()
    }

    /// Every dispatched call so far.
    pub fn calls(&self) -> Vec<CallRecord> {
        lock(&self.shared.recorder).calls.clone()
    }

    pub fn traps(&self) -> Vec<TrapRecord> {
        lock(&self.shared.recorder).traps.clone()
    }

    pub fn fatal_errors(&self) -> Vec<TrapRecord> {
        lock(&self.shared.recorder).fatal_errors.clone()
    }

    pub fn recoveries(&self) -> usize {
        lock(&self.shared.recorder).recoveries.len()
    }

    /// A metric's value on a node.
    pub fn metric(&self, node: NodeId, name: &str) -> Option<i64> {
        lock(&self.nodes[node.0].shared.metrics)
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// Every metric of a node: (name, kind, value).
    pub fn metrics(&self, node: NodeId) -> Vec<(String, MetricKind, i64)> {
        lock(&self.nodes[node.0].shared.metrics)
            .metrics
            .iter()
            .map(|m| (m.name.clone(), m.kind, m.value))
            .collect()
    }

    pub fn shared_data(&self, node: NodeId, key: &str) -> Option<SharedValue> {
        lock(&self.nodes[node.0].shared.shared_data).get(key)
    }

    pub fn shared_data_keys(&self, node: NodeId) -> Vec<String> {
        lock(&self.nodes[node.0].shared.shared_data).keys()
    }

    /// Current size of a worker's linear memory (wasm memory never shrinks: this is its peak).
    pub fn guest_memory_bytes(&mut self, node: NodeId, worker: usize) -> Option<usize> {
        let wr = &mut self.nodes[node.0].workers[worker];
        let (store, instance) = (wr.store.as_mut()?, wr.instance?);
        let mem = instance.get_memory(&mut *store, "memory")?;
        Some(mem.data_size(&*store))
    }

    /// Events waiting to be delivered.
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    pub fn is_realtime(&self) -> bool {
        self.realtime
    }
}

fn old_roots_timers(roots: &[RootRuntime], i: usize) -> Vec<Timer> {
    roots[i]
        .timers
        .iter()
        .map(|t| Timer {
            id: t.id,
            period: t.period,
        })
        .collect()
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
            .map(|t| {
                format!(
                    "{} at {:?} in {}: {}",
                    t.origin,
                    t.at,
                    t.callback,
                    t.message.lines().next().unwrap_or("")
                )
            })
            .collect();
        drop(rec);
        panic!(
            "unexpected trap(s) in the simulated world (call World::expect_traps() if intended):\n{}",
            list.join("\n")
        );
    }
}
