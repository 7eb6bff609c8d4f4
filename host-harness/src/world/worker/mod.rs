//! A simulated worker process ([`Worker`]): its own wasmtime `Store` and instance, its root
//! contexts with their tick timers, its call tokens, the streams of an instance that trapped, and
//! trap recovery. A worker runs guest calls and keeps, in order, the events they cause (ticks,
//! call answers, queue notifications) for the router to hand to the scheduler: it never reaches
//! another worker or the world.
//!
//! * `invoke`: calling a guest export with the profile's rules; traps, their records, recovery.
//! * `outbox`: what a guest call leaves behind: tick periods, dispatched calls, gRPC calls,
//!   queue notifications.

mod invoke;
mod outbox;

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use rand::SeedableRng;
use wasmtime::{Engine, Instance, InstancePre, Store};
use wasmtime_wasi::WasiCtxBuilder;

pub(super) use self::invoke::Invoke;
use super::scheduler::Event;
use super::spec::{FilterSpec, NodeSpec};
use crate::abi::{self, CallResponseData, Callback, Host, StreamData};
use crate::clock::{WasiMonotonic, WasiWall};
use crate::profile::{HostProfile, HttpModel};
use crate::record::{LogLevel, LogLine, Origin, TrapRecord};
use crate::state::{lock, NodeShared, WorldShared};

/// What `proxy_on_http_call_response` is told: headers, body size, trailers.
pub(super) type Counts = [i32; 3];

/// What every worker of a node instantiates: the linked module and the node's filters.
/// Replaced (not changed) when a filter's configuration changes.
#[derive(Clone)]
pub(super) struct Blueprint {
    pre: InstancePre<Host>,
    engine: Engine,
    filters: Vec<FilterSpec>,
    /// The root context id of each filter.
    root_ids: Vec<u32>,
    env: Vec<(String, String)>,
    seed: u64,
}

impl Blueprint {
    /// Links a node's module (refusing imports the profile declares otherwise).
    pub(super) fn new(spec: &NodeSpec, profile: &HostProfile) -> Result<Self> {
        for name in &profile.mismatched_imports {
            let import = format!("env::{name}");
            if spec.module.imports().contains(&import) {
                return Err(anyhow!(
                    "failed instantiating the module: incompatible import type for `{import}` \
                     ({} declares it with another signature)",
                    profile.name
                ));
            }
        }
        let linker = abi::linker(&spec.module.engine).map_err(|e| anyhow!("{e:?}"))?;
        let pre = linker
            .instantiate_pre(&spec.module.module)
            .map_err(|e| anyhow!("linking the module: {e:?}"))?;
        let root_ids = (0..spec.filters.len())
            .map(|i| root_id(profile.http, &spec.filters, i))
            .collect();
        Ok(Blueprint {
            pre,
            engine: spec.module.engine.clone(),
            filters: spec.filters.clone(),
            root_ids,
            env: spec.env.clone(),
            seed: spec.seed,
        })
    }

    /// The same module with filter `i`'s new plugin configuration.
    pub(super) fn with_config(&self, i: usize, config: &[u8]) -> Self {
        let mut next = self.clone();
        if let Some(f) = next.filters.get_mut(i) {
            f.plugin_config = config.to_vec();
        }
        next
    }
}

/// The root context id of filter `i`. Envoy counts contexts from 1; in ngx_wasm_module a root
/// context's id is its filter's id, a crc32 of its name and configuration (`get_filter_id`), and
/// HTTP contexts count from 1 per worker: the harness derives a large id from the name and
/// position (stable across reconfigurations).
fn root_id(model: HttpModel, filters: &[FilterSpec], i: usize) -> u32 {
    match model {
        HttpModel::Envoy => i as u32 + 1,
        HttpModel::Ngx => filter_id(filters.get(i).map(|f| f.name.as_str()).unwrap_or(""), i),
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

/// A worker process: one wasm instance in its own `Store`, and what the host keeps for it.
pub(crate) struct Worker {
    shared: Arc<WorldShared>,
    node_shared: Arc<NodeShared>,
    blueprint: Arc<Blueprint>,
    /// (node, worker) indexes: the address on the events it causes.
    at: (usize, usize),
    origin: Origin,
    store: Option<Store<Host>>,
    instance: Option<Instance>,
    generation: u64,
    roots: Vec<RootRuntime>,
    next_context: u32,
    next_timer: u64,
    /// ngx_wasm_module's per-process call tokens (from 0), kept across trap recoveries.
    tokens: Arc<AtomicU32>,
    dead: Option<String>,
    recovering: bool,
    /// Trapped, to be recovered when a request or a tick needs the instance
    /// ([`HostProfile::lazy_recovery`](crate::HostProfile::lazy_recovery)).
    pending_recovery: bool,
    /// The streams of an instance that trapped, as it left them, by exchange key: what the host
    /// still does with them (a stashed local response) comes from here.
    orphaned_streams: HashMap<u32, StreamData>,
    /// Events its guest calls caused, in the order they caused them, for the scheduler.
    caused: Vec<(Duration, Event)>,
}

impl Worker {
    /// Worker `at.1` of node `at.0`, not started.
    pub(super) fn new(
        shared: Arc<WorldShared>,
        node_shared: Arc<NodeShared>,
        blueprint: Arc<Blueprint>,
        at: (usize, usize),
        node_name: &str,
    ) -> Self {
        Worker {
            shared,
            node_shared,
            blueprint,
            at,
            origin: Origin {
                node: node_name.to_string(),
                worker: at.1,
            },
            store: None,
            instance: None,
            generation: 0,
            roots: Vec::new(),
            next_context: 0,
            next_timer: 1,
            tokens: Default::default(),
            dead: Some("not started".into()),
            recovering: false,
            pending_recovery: false,
            orphaned_streams: HashMap::new(),
            caused: Vec::new(),
        }
    }

    /// The profile of the host it runs in.
    pub(super) fn profile(&self) -> &HostProfile {
        &self.shared.profile
    }

    /// The world's clock (virtual time since the start).
    pub(super) fn elapsed(&self) -> Duration {
        self.shared.clock.elapsed()
    }

    /// The world's wall clock, for headers (`Date`).
    pub(super) fn wall_now(&self) -> std::time::SystemTime {
        self.shared.clock.now()
    }

    /// Where its log lines and records come from (`node/wN`).
    pub(super) fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The events its guest calls caused since the last time, in order.
    pub(super) fn take_caused(&mut self) -> Vec<(Duration, Event)> {
        std::mem::take(&mut self.caused)
    }

    /// The instance's generation (bumped at each new instance or kill).
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the instance runs (not dead, not waiting for its lazy recovery).
    pub(super) fn is_running(&self) -> bool {
        self.dead.is_none()
    }

    /// Whether the process lives (a trapped instance waiting for its lazy recovery does).
    pub(super) fn alive(&self) -> bool {
        self.dead.is_none() || self.pending_recovery
    }

    /// Why the process is not running.
    pub(super) fn death(&self) -> Option<String> {
        self.dead.clone().filter(|_| !self.pending_recovery)
    }

    /// What `on_configure` returned for filter `i` (`None`: not run / dead).
    pub(super) fn configured(&self, i: usize) -> Option<bool> {
        self.roots.get(i).and_then(|r| r.configured)
    }

    /// The root context id of filter `i`.
    pub(super) fn root_id(&self, i: usize) -> u32 {
        root_id(self.shared.profile.http, &self.blueprint.filters, i)
    }

    /// The name (`plugin_name`) of filter `i`.
    pub(super) fn filter_name(&self, i: usize) -> String {
        let filters = &self.blueprint.filters;
        filters.get(i).map(|f| f.name.clone()).unwrap_or_default()
    }

    /// Whether `ctx` is one of its root contexts.
    pub(super) fn is_root(&self, ctx: u32) -> bool {
        self.roots.iter().any(|r| r.id == ctx)
    }

    /// A fresh context id (HTTP and stream contexts).
    pub(super) fn new_context(&mut self) -> u32 {
        let c = self.next_context;
        self.next_context += 1;
        c
    }

    /// The store's data, whatever the state of the instance.
    pub(super) fn host_mut(&mut self) -> Option<&mut Host> {
        self.store.as_mut().map(|s| s.data_mut())
    }

    /// An exchange's stream in the store.
    pub(super) fn stream(&self, key: u32) -> Option<&StreamData> {
        self.store.as_ref()?.data().streams.get(&key)
    }

    /// An exchange's stream in the store, to change.
    pub(super) fn stream_mut(&mut self, key: u32) -> Option<&mut StreamData> {
        self.store.as_mut()?.data_mut().streams.get_mut(&key)
    }

    /// The stream an instance that trapped left behind.
    pub(super) fn take_orphaned(&mut self, key: u32) -> Option<StreamData> {
        self.orphaned_streams.remove(&key)
    }

    /// Whether `ctx` is an HTTP context of an exchange still in flight.
    pub(super) fn live_http_context(&self, ctx: u32) -> bool {
        self.store.as_ref().is_some_and(|s| s.data().is_stream(ctx))
    }

    /// Whether a call's answer can reach its context: `Some(is_root)` when the instance (same
    /// generation) and the context are alive.
    pub(super) fn call_target(&self, generation: u64, context: u32) -> Option<bool> {
        if self.dead.is_some() || self.generation != generation {
            return None;
        }
        let is_root = self.is_root(context);
        (is_root || self.live_http_context(context)).then_some(is_root)
    }

    /// The period of a root context's timer, if it still has it.
    pub(super) fn timer_period(&self, root: u32, timer: u64) -> Option<Duration> {
        let root = self.roots.iter().find(|r| r.id == root)?;
        root.timers.iter().find(|t| t.id == timer).map(|t| t.period)
    }

    /// Size of its linear memory (wasm memory never shrinks: this is its peak).
    pub(super) fn memory_bytes(&mut self) -> Option<usize> {
        let (store, instance) = (self.store.as_mut()?, self.instance?);
        let mem = instance.get_memory(&mut *store, "memory")?;
        Some(mem.data_size(&*store))
    }

    /// Starts (or restarts) as a fresh process: new instance, `on_vm_start`, `on_configure`.
    /// Fails only when the module cannot be instantiated.
    pub(super) fn start(&mut self) -> Result<()> {
        self.instantiate(true)
    }

    /// Dies as `kill -9` would: calls in flight are orphaned, timers stop.
    pub(super) fn kill(&mut self) {
        self.die("killed".into());
        self.generation += 1;
        self.roots.clear();
    }

    /// Drops the instance: the worker is dead for `reason`.
    fn die(&mut self, reason: String) {
        self.store = None;
        self.instance = None;
        self.dead = Some(reason);
        self.pending_recovery = false;
    }

    /// The node's new blueprint, for its next instance.
    pub(super) fn set_blueprint(&mut self, blueprint: Arc<Blueprint>) {
        self.blueprint = blueprint;
    }

    /// Filter `i` gets a new configuration (the node's new blueprint) and `on_configure` runs
    /// again. Returns its result (`None`: dead or trapped).
    pub(super) fn reconfigure(&mut self, blueprint: Arc<Blueprint>, i: usize) -> Option<bool> {
        self.blueprint = blueprint;
        if self.dead.is_some() {
            return None;
        }
        let root = self.root_id(i);
        let config = self.blueprint.filters.get(i)?.plugin_config.clone();
        if let Some(c) = self.host_mut().and_then(|h| h.root_configs.get_mut(&root)) {
            c.1 = config.clone();
        }
        let args = [root as i32, config.len() as i32];
        let r = match self.invoke(Callback::Configure, root, "proxy_on_configure", &args) {
            Invoke::Returned(v) => Some(v.unwrap_or(0) != 0),
            Invoke::Failed => None,
        };
        if let Some(rt) = self.roots.iter_mut().find(|r| r.id == root) {
            rt.configured = r;
        }
        if r == Some(false) {
            self.note(
                LogLevel::Warn,
                &format!("on_configure of filter {i} returned false"),
            );
            self.configure_refused();
        }
        r
    }

    /// A request or a tick needs the instance: a trapped one waiting for its lazy recovery is
    /// re-created now (docs/host-behaviours.md, "Trap recovery adds a timer").
    pub(super) fn wake(&mut self) {
        if self.pending_recovery && !self.recovering {
            self.pending_recovery = false;
            self.recover();
        }
    }

    /// A new instance, then its root contexts' start. `fresh`: a new process (`on_vm_start`,
    /// new timers); otherwise a recovery after a trap.
    fn instantiate(&mut self, fresh: bool) -> Result<()> {
        let generation = self.generation + 1;
        if fresh {
            // A new process: ngx_wasm_module's static counters start again.
            self.tokens = Default::default();
        }
        let host = self.new_host(generation);
        let mut store = Store::new(&self.blueprint.engine, host);
        let instance = self
            .blueprint
            .pre
            .instantiate(&mut store)
            .map_err(|e| anyhow!("instantiating the module: {e:#}"))?;
        self.install(store, instance, generation, fresh);
        self.start_roots(fresh);
        Ok(())
    }

    /// The store data of a new instance: WASI on the world's clock with seeded randomness, and
    /// every filter's configuration.
    fn new_host(&self, generation: u64) -> Host {
        let bp = &self.blueprint;
        let (n, w) = self.at;
        let seed = bp
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add((n as u64) << 32 | (w as u64) << 16 | generation);
        let wasi = WasiCtxBuilder::new()
            .envs(&bp.env)
            .wall_clock(WasiWall(self.shared.clock.clone()))
            .monotonic_clock(WasiMonotonic(self.shared.clock.clone()))
            .secure_random(rand::rngs::StdRng::seed_from_u64(seed))
            .insecure_random(rand::rngs::StdRng::seed_from_u64(seed ^ 0x5555))
            .insecure_random_seed(u128::from(seed))
            .build_p1();
        let ids = bp.root_ids.iter().copied();
        let root_configs = ids
            .clone()
            .zip(&bp.filters)
            .map(|(id, f)| (id, (f.vm_config.clone(), f.plugin_config.clone())))
            .collect();
        let root_names = ids
            .zip(&bp.filters)
            .map(|(id, f)| (id, f.name.clone()))
            .collect();
        let worker_tokens =
            (self.shared.profile.http == HttpModel::Ngx).then(|| self.tokens.clone());
        let mut host = Host::new(
            wasi,
            self.shared.clone(),
            self.node_shared.clone(),
            self.origin.clone(),
            generation,
            worker_tokens,
        );
        host.root_configs = root_configs;
        host.root_names = root_names;
        host
    }

    /// Makes a new instance the worker's, with one root runtime per filter. A recovered root
    /// keeps its old timers; ngx then adds another.
    fn install(&mut self, store: Store<Host>, instance: Instance, generation: u64, fresh: bool) {
        let filters = self.blueprint.filters.len();
        let ngx = self.shared.profile.http == HttpModel::Ngx;
        let old_roots = std::mem::take(&mut self.roots);
        self.store = Some(store);
        self.instance = Some(instance);
        self.generation = generation;
        self.dead = None;
        // Envoy: one context counter, roots first. ngx_wasm_module: HTTP contexts count from 1
        // per process (`next_id`), also after a trap recovery.
        self.next_context = match (ngx, fresh) {
            (true, true) => 1,
            (true, false) => self.next_context.max(1),
            (false, _) => filters as u32 + 1,
        };
        self.roots = self
            .blueprint
            .root_ids
            .iter()
            .map(|&id| {
                let old = old_roots.iter().find(|r| r.id == id).filter(|_| !fresh);
                RootRuntime {
                    id,
                    configured: None,
                    timers: old.map(|r| r.timers.clone()).unwrap_or_default(),
                    add_timer_on_next_period: old.is_some(),
                }
            })
            .collect();
    }

    /// `_initialize`, then each filter's root context; stops at the first failure.
    fn start_roots(&mut self, fresh: bool) {
        if let Invoke::Failed = self.invoke(Callback::Initialize, 0, "_initialize", &[]) {
            return;
        }
        for i in 0..self.blueprint.filters.len() {
            if !self.start_root(i, fresh) {
                return;
            }
        }
    }

    /// `on_context_create`, `on_vm_start` (fresh workers; per root context or once, as the
    /// profile says) and `on_configure` of filter `i`. Returns whether the worker lives on.
    fn start_root(&mut self, i: usize, fresh: bool) -> bool {
        let root = self.root_id(i);
        let f = &self.blueprint.filters[i];
        let (vm_len, config_len) = (f.vm_config.len() as i32, f.plugin_config.len() as i32);
        let create = [root as i32, 0];
        let cb = Callback::ContextCreate;
        if let Invoke::Failed = self.invoke(cb, root, "proxy_on_context_create", &create) {
            return false;
        }
        if fresh && (self.shared.profile.vm_start_per_root_context || i == 0) {
            let args = [root as i32, vm_len];
            match self.invoke(Callback::VmStart, root, "proxy_on_vm_start", &args) {
                Invoke::Failed => return false,
                Invoke::Returned(Some(0)) => {
                    self.note(LogLevel::Warn, "on_vm_start returned false")
                }
                Invoke::Returned(_) => {}
            }
        }
        let args = [root as i32, config_len];
        let configured = match self.invoke(Callback::Configure, root, "proxy_on_configure", &args) {
            Invoke::Failed => return false,
            Invoke::Returned(v) => v.unwrap_or(0) != 0,
        };
        if let Some(rt) = self.roots.get_mut(i) {
            rt.configured = Some(configured);
        }
        if !configured {
            self.note(
                LogLevel::Warn,
                &format!("on_configure of filter {i} returned false"),
            );
            return !self.configure_refused();
        }
        true
    }

    /// `on_configure` returned false. Where the profile says so (ngx_wasm_module), the worker
    /// exits for good, recorded as a fatal host error. Returns whether the worker died.
    fn configure_refused(&mut self) -> bool {
        if !self.shared.profile.configure_false_is_fatal {
            return false;
        }
        let reason = "on_configure returned false: worker process exited with fatal code 2 and \
                      cannot be respawned";
        let record = TrapRecord {
            at: self.elapsed(),
            origin: self.origin.clone(),
            callback: Callback::Configure.name().to_string(),
            message: reason.to_string(),
            kind: "worker exit".to_string(),
            ..Default::default()
        };
        lock(&self.shared.recorder).fatal_errors.push(record);
        self.die(reason.to_string());
        true
    }

    /// A line from the host itself (not the guest) in the log, prefixed `[host]`.
    pub(super) fn note(&self, level: LogLevel, message: &str) {
        let line = LogLine {
            at: self.elapsed(),
            origin: self.origin.clone(),
            level,
            message: format!("[host] {message}"),
        };
        lock(&self.shared.recorder).push_log(line, false);
    }

    /// `proxy_on_http_call_response` with `data` readable during the callback.
    pub(super) fn call_back(
        &mut self,
        context: u32,
        token: u32,
        is_root: bool,
        data: CallResponseData,
        counts: Counts,
    ) {
        if let Some(host) = self.host_mut() {
            host.call_response = Some(data);
        }
        let cb = match is_root {
            true => Callback::RootCallResponse,
            false => Callback::HttpCallResponse,
        };
        let [headers, body, trailers] = counts;
        // ngx_wasm_module passes the filter's (root context's) id, not the HTTP context's
        // (`ngx_http_proxy_wasm_on_dispatch_response`: `filter->id`); the SDK finds the context
        // by token.
        let mut first = context;
        if !is_root && self.shared.profile.http == HttpModel::Ngx {
            let root = self.store.as_ref().and_then(|store| {
                let host = store.data();
                let key = host.stream_of.get(&context)?;
                host.streams.get(key)?.roots.get(&context).copied()
            });
            first = root.unwrap_or(context);
        }
        let args = [first as i32, token as i32, headers, body, trailers];
        self.invoke(cb, context, "proxy_on_http_call_response", &args);
        if let Some(host) = self.host_mut() {
            host.call_response = None;
        }
    }

    /// `proxy_on_grpc_receive` (a message) or `proxy_on_grpc_close` (a status), as Envoy's
    /// `GrpcCallClientHandler::onSuccess` / `onFailure` do for a unary call.
    pub(super) fn grpc_back(&mut self, token: u32, context: u32, reply: crate::grpc::GrpcReply) {
        let Some(host) = self.host_mut() else {
            return;
        };
        let (func, last) = match reply {
            crate::grpc::GrpcReply::Message { message, .. } => {
                let size = message.len() as i32;
                host.grpc_message = Some(message);
                ("proxy_on_grpc_receive", size)
            }
            crate::grpc::GrpcReply::Status { code, message, .. } => {
                host.grpc_status = Some((code, message));
                ("proxy_on_grpc_close", code as i32)
            }
        };
        let args = [context as i32, token as i32, last];
        self.invoke(Callback::Grpc, context, func, &args);
        if let Some(host) = self.host_mut() {
            host.grpc_message = None;
            host.grpc_status = None;
        }
    }
}

#[cfg(test)]
pub(super) mod testing {
    //! A worker without a world, for unit tests of what steps against one.

    use super::*;
    use crate::clock::Clock;
    use crate::module::PluginModule;

    /// A started worker (node 0, worker 0) of a module in WebAssembly text, one filter.
    pub(crate) fn lone_worker(profile: HostProfile, wat: &str, config: &str) -> Worker {
        let module = PluginModule::from_bytes(wat.as_bytes()).expect("module");
        let spec = NodeSpec::new("n", &module).filter(config);
        let blueprint = Blueprint::new(&spec, &profile).expect("blueprint");
        let shared = Arc::new(WorldShared::new(Clock::virtual_default(), profile));
        let node = NodeShared::new("n", "n");
        let mut worker = Worker::new(shared, node, Arc::new(blueprint), (0, 0), "n");
        worker.start().expect("start");
        worker
    }

    /// The traps recorded so far.
    pub(crate) fn traps(worker: &Worker) -> usize {
        lock(&worker.shared.recorder).traps.len()
    }
}
