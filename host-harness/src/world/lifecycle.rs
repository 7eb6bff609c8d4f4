//! Workers' lives: instantiating a node's module, starting, killing, restarting and reloading
//! workers, reconfiguring filters, calling guest exports with the profile's rules, trap recovery
//! and refused configurations.

use anyhow::{anyhow, Result};
use rand::SeedableRng;
use wasmtime::{Instance, Store, Val};
use wasmtime_wasi::WasiCtxBuilder;

use super::{NodeId, NodeRuntime, NodeSpec, RootRuntime, WorkerRuntime, World};
use crate::abi::{self, Callback, Host, Outbox};
use crate::clock::{WasiMonotonic, WasiWall};
use crate::record::{LogLevel, LogLine, TrapRecord};
use crate::state::{lock, NodeShared};

/// What calling a guest export came to.
pub(super) enum Invoke {
    Returned(Option<i32>),
    /// Trapped, crashed, or the worker was not alive.
    Failed,
}

/// A guest export that ran (or trapped), with what its hostcalls left behind.
struct Called {
    result: wasmtime::Result<Option<i32>>,
    /// A host crash a hostcall caused.
    fatal: Option<String>,
    /// A trap that kills the worker for good.
    fatal_trap: Option<String>,
    outbox: Outbox,
}

impl World {
    /// Adds a node and starts its workers (`on_vm_start`, `on_configure` on every root context).
    pub fn add_node(&mut self, spec: NodeSpec) -> Result<NodeId> {
        // A node without a filter would run nothing at all, silently.
        if spec.filters.is_empty() {
            return Err(anyhow!(
                "node `{}` has no filter: add one with NodeSpec::filter (or named_filter)",
                spec.name
            ));
        }
        for name in &self.shared.profile.mismatched_imports {
            let import = format!("env::{name}");
            if spec.module.imports().contains(&import) {
                return Err(anyhow!(
                    "failed instantiating the module: incompatible import type for `{import}` \
                     ({} declares it with another signature)",
                    self.shared.profile.name
                ));
            }
        }
        let linker = abi::linker(&spec.module.engine).map_err(|e| anyhow!("{e:?}"))?;
        let pre = linker
            .instantiate_pre(&spec.module.module)
            .map_err(|e| anyhow!("linking the module: {e:?}"))?;
        let shared = NodeShared::new(&spec.name, spec.hostname.as_deref().unwrap_or(&spec.name));
        {
            let mut props = shared.properties.write().unwrap_or_else(|e| e.into_inner());
            props.insert("plugin_root_id".into(), b"0".to_vec());
            // Keys are NUL-joined segments; a dotted path splits at its dots.
            for (k, v) in &spec.properties {
                let key = if k.contains('\0') {
                    k.clone()
                } else {
                    k.replace('.', "\0")
                };
                props.insert(key, v.clone());
            }
        }
        let workers = (0..spec.workers)
            .map(|_| WorkerRuntime::not_started())
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

    /// Starts (or restarts) a worker as a fresh process: new instance, `on_vm_start`,
    /// `on_configure`. Fails only when the module cannot be instantiated.
    pub fn start_worker(&mut self, node: NodeId, worker: usize) -> Result<()> {
        self.instantiate(node.0, worker, true)
    }

    /// Kills a worker (as `kill -9` would). Its calls in flight are orphaned, its timers stop.
    pub fn kill_worker(&mut self, node: NodeId, worker: usize) {
        let w = &mut self.nodes[node.0].workers[worker];
        w.die("killed".into());
        w.generation += 1;
        w.roots.clear();
    }

    /// Whether a worker is running.
    /// A worker whose instance trapped and waits for its lazy recovery is running (the nginx
    /// process lives on).
    pub fn worker_alive(&self, node: NodeId, worker: usize) -> bool {
        let wr = &self.nodes[node.0].workers[worker];
        wr.dead.is_none() || wr.pending_recovery
    }

    /// Why a worker is not running.
    pub fn worker_death(&self, node: NodeId, worker: usize) -> Option<String> {
        let wr = &self.nodes[node.0].workers[worker];
        wr.dead.clone().filter(|_| !wr.pending_recovery)
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
        (0..self.nodes[node.0].workers.len())
            .map(|w| self.reconfigure_worker(node.0, w, filter, &config))
            .collect()
    }

    fn reconfigure_worker(
        &mut self,
        n: usize,
        w: usize,
        filter: usize,
        config: &[u8],
    ) -> Option<bool> {
        if self.nodes[n].workers[w].dead.is_some() {
            return None;
        }
        let root = self.root_id(n, filter);
        if let Some(store) = self.nodes[n].workers[w].store.as_mut() {
            if let Some(c) = store.data_mut().root_configs.get_mut(&root) {
                c.1 = config.to_vec();
            }
        }
        let r = match self.invoke(
            n,
            w,
            Callback::Configure,
            root,
            "proxy_on_configure",
            &[root as i32, config.len() as i32],
        ) {
            Invoke::Returned(v) => Some(v.unwrap_or(0) != 0),
            Invoke::Failed => None,
        };
        if let Some(rt) = self.nodes[n].workers[w]
            .roots
            .iter_mut()
            .find(|r| r.id == root)
        {
            rt.configured = r;
        }
        if r == Some(false) {
            self.host_note(
                n,
                w,
                &format!("on_configure of filter {filter} returned false"),
            );
            self.configure_refused(n, w);
        }
        r
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

    /// A new instance for a worker, then its root contexts' start. `fresh`: a new process
    /// (`on_vm_start`, new timers); otherwise a recovery after a trap.
    pub(super) fn instantiate(&mut self, n: usize, w: usize, fresh: bool) -> Result<()> {
        let generation = self.nodes[n].workers[w].generation + 1;
        if fresh {
            // A new process: ngx_wasm_module's static counters start again.
            self.nodes[n].workers[w].tokens = Default::default();
        }
        let host = self.new_host(n, w, generation);
        let mut store = Store::new(&self.nodes[n].spec.module.engine, host);
        let instance = self.nodes[n]
            .pre
            .instantiate(&mut store)
            .map_err(|e| anyhow!("instantiating the module: {e:#}"))?;
        self.install(n, w, store, instance, generation, fresh);
        self.start_roots(n, w, fresh);
        Ok(())
    }

    /// The store data of a worker's new instance: WASI on the world's clock with seeded
    /// randomness, and every filter's configuration.
    fn new_host(&self, n: usize, w: usize, generation: u64) -> Host {
        let spec = &self.nodes[n].spec;
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
            .map(|(i, f)| {
                let id = self.root_id(n, i);
                (id, (f.vm_config.clone(), f.plugin_config.clone()))
            })
            .collect();
        let root_names = spec
            .filters
            .iter()
            .enumerate()
            .map(|(i, f)| (self.root_id(n, i), f.name.clone()))
            .collect();
        let worker_tokens = (self.shared.profile.http == crate::profile::HttpModel::Ngx)
            .then(|| self.nodes[n].workers[w].tokens.clone());
        Host {
            wasi,
            world: self.shared.clone(),
            node: self.nodes[n].shared.clone(),
            origin: self.origin(n, w),
            generation,
            callback: Callback::Initialize,
            effective_context: 0,
            root_configs,
            streams: Default::default(),
            stream_of: Default::default(),
            root_names,
            worker_tokens,
            call_response: None,
            grpc_message: None,
            grpc_status: None,
            outbox: Outbox::default(),
            fatal: None,
            fatal_trap: None,
            tick_set: Default::default(),
        }
    }

    /// Makes a new instance the worker's, with one root runtime per filter. A recovered root
    /// keeps its old timers; ngx then adds another.
    fn install(
        &mut self,
        n: usize,
        w: usize,
        store: Store<Host>,
        instance: Instance,
        generation: u64,
        fresh: bool,
    ) {
        let filters = self.nodes[n].spec.filters.len();
        let ids: Vec<u32> = (0..filters).map(|i| self.root_id(n, i)).collect();
        let ngx = self.shared.profile.http == crate::profile::HttpModel::Ngx;
        let wr = &mut self.nodes[n].workers[w];
        let old_roots = std::mem::take(&mut wr.roots);
        wr.store = Some(store);
        wr.instance = Some(instance);
        wr.generation = generation;
        wr.dead = None;
        // Envoy: one context counter, roots first. ngx_wasm_module: HTTP contexts count from 1
        // per process (`next_id`), also after a trap recovery.
        wr.next_context = match (ngx, fresh) {
            (true, true) => 1,
            (true, false) => wr.next_context.max(1),
            (false, _) => filters as u32 + 1,
        };
        wr.roots = ids
            .into_iter()
            .map(|id| {
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
    fn start_roots(&mut self, n: usize, w: usize, fresh: bool) {
        if let Invoke::Failed = self.invoke(n, w, Callback::Initialize, 0, "_initialize", &[]) {
            return;
        }
        for i in 0..self.nodes[n].spec.filters.len() {
            if !self.start_root(n, w, i, fresh) {
                return;
            }
        }
    }

    /// `on_context_create`, `on_vm_start` (fresh workers; per root context or once, as the
    /// profile says) and `on_configure` of filter `i`. Returns whether the worker lives on.
    fn start_root(&mut self, n: usize, w: usize, i: usize, fresh: bool) -> bool {
        let root = self.root_id(n, i);
        let (vm_len, config_len) = {
            let f = &self.nodes[n].spec.filters[i];
            (f.vm_config.len() as i32, f.plugin_config.len() as i32)
        };
        let create = [root as i32, 0];
        let create = self.invoke(
            n,
            w,
            Callback::ContextCreate,
            root,
            "proxy_on_context_create",
            &create,
        );
        if let Invoke::Failed = create {
            return false;
        }
        if fresh && (self.shared.profile.vm_start_per_root_context || i == 0) {
            let args = [root as i32, vm_len];
            match self.invoke(n, w, Callback::VmStart, root, "proxy_on_vm_start", &args) {
                Invoke::Failed => return false,
                Invoke::Returned(Some(0)) => self.host_note(n, w, "on_vm_start returned false"),
                Invoke::Returned(_) => {}
            }
        }
        let args = [root as i32, config_len];
        let configured =
            match self.invoke(n, w, Callback::Configure, root, "proxy_on_configure", &args) {
                Invoke::Failed => return false,
                Invoke::Returned(v) => v.unwrap_or(0) != 0,
            };
        if let Some(rt) = self.nodes[n].workers[w].roots.get_mut(i) {
            rt.configured = Some(configured);
        }
        if !configured {
            self.host_note(n, w, &format!("on_configure of filter {i} returned false"));
            return !self.configure_refused(n, w);
        }
        true
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
            kind: "worker exit".to_string(),
            ..Default::default()
        };
        lock(&self.shared.recorder).fatal_errors.push(record);
        self.nodes[n].workers[w].die(reason.to_string());
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
        lock(&self.shared.recorder).push_log(line, false);
    }

    /// Calls a guest export with the callback rules of the profile, then acts on the outbox; a
    /// trap kills the worker (and the profile may recover it).
    pub(super) fn invoke(
        &mut self,
        n: usize,
        w: usize,
        cb: Callback,
        ctx: u32,
        func: &str,
        args: &[i32],
    ) -> Invoke {
        let wr = &mut self.nodes[n].workers[w];
        let (None, Some(store), Some(instance)) = (&wr.dead, wr.store.as_mut(), wr.instance) else {
            return Invoke::Failed;
        };
        store.data_mut().callback = cb;
        store.data_mut().effective_context = ctx;
        let logs_before = lock(&self.shared.recorder).logs.len();
        let copy = &self.shared.copy_nanos;
        copy.store(0, std::sync::atomic::Ordering::Relaxed);
        let started = std::time::Instant::now();
        let called = call_export(store, instance, func, args);
        let wall = started.elapsed();
        let copied =
            std::time::Duration::from_nanos(copy.load(std::sync::atomic::Ordering::Relaxed));
        if let Some(called) = called.as_ref() {
            let origin = self.origin(n, w);
            let mut rec = lock(&self.shared.recorder);
            if let Some(calls) = rec.callbacks.as_mut() {
                calls.push(crate::record::GuestCall {
                    at: self.shared.clock.elapsed(),
                    origin,
                    func: func.to_string(),
                    args: args.to_vec(),
                    result: called.result.as_ref().ok().copied().flatten(),
                });
            }
            let t = rec.callback_times.entry(cb.name().to_string()).or_default();
            let guest = wall.saturating_sub(copied);
            t.count += 1;
            t.total_guest += guest;
            t.longest_guest = t.longest_guest.max(guest);
            t.total_copy += copied;
            t.longest_copy = t.longest_copy.max(copied);
        }
        let Some(called) = called else {
            // Optional exports (`_initialize`, callbacks an old SDK lacks) are skipped.
            return Invoke::Returned(None);
        };
        match called.result {
            Ok(value) => {
                self.process_outbox(n, w, called.outbox);
                Invoke::Returned(value)
            }
            Err(err) => {
                self.trapped(n, w, cb, err, called.fatal, called.fatal_trap, logs_before);
                Invoke::Failed
            }
        }
    }

    /// A guest call trapped (or crashed the host): record it, kill the worker, and recover it
    /// where the profile does (not after a host crash or a fatal trap, not during a recovery).
    #[allow(clippy::too_many_arguments)]
    fn trapped(
        &mut self,
        n: usize,
        w: usize,
        cb: Callback,
        err: wasmtime::Error,
        fatal: Option<String>,
        fatal_trap: Option<String>,
        logs_before: usize,
    ) {
        let origin = self.origin(n, w);
        let panic = lock(&self.shared.recorder)
            .logs
            .get(logs_before..)
            .unwrap_or_default()
            .iter()
            .rev()
            .find(|l| l.origin == origin && l.message.contains("panicked at"))
            // The SDK's hook logs `panicked at <file:line>:\n<message>`: one line.
            .map(|l| {
                let lines: Vec<&str> = l.message.lines().map(str::trim).collect();
                lines.join(" ")
            });
        let record = TrapRecord {
            at: self.elapsed(),
            origin,
            callback: cb.name().to_string(),
            kind: trap_kind(&err),
            frames: top_frames(&err, 5),
            panic,
            message: format!("{err:?}"),
        };
        // ngx_wasm_module: a trap in on_configure is an on_configure failure, fatal to the
        // worker like `false` ("on_configure failure", no retry).
        let fatal_trap = match (cb, self.shared.profile.configure_false_is_fatal) {
            (Callback::Configure, true) => {
                fatal_trap.or_else(|| Some("trap in on_configure: on_configure failure".into()))
            }
            _ => fatal_trap,
        };
        let recover = self.shared.profile.recover_after_trap
            && fatal.is_none()
            && fatal_trap.is_none()
            && !self.nodes[n].workers[w].recovering
            && cb != Callback::Initialize;
        self.record_trap(record, fatal.is_some());
        if let Some(store) = self.nodes[n].workers[w].store.as_mut() {
            for (key, data) in std::mem::take(&mut store.data_mut().streams) {
                self.orphaned_streams.insert((n, w, key), data);
            }
        }
        let reason = fatal
            .or(fatal_trap)
            .unwrap_or_else(|| format!("trapped in {}", cb.name()));
        self.nodes[n].workers[w].die(reason);
        if recover && self.shared.profile.lazy_recovery {
            self.nodes[n].workers[w].pending_recovery = true;
        } else if recover {
            self.recover(n, w);
        }
    }

    /// A request or a tick needs the worker's instance: a trapped one waiting for its lazy
    /// recovery is re-created now (docs/host-behaviours.md, "Trap recovery adds a timer").
    pub(super) fn wake(&mut self, n: usize, w: usize) {
        let wr = &mut self.nodes[n].workers[w];
        if wr.pending_recovery && !wr.recovering {
            wr.pending_recovery = false;
            self.recover(n, w);
        }
    }

    fn record_trap(&self, record: TrapRecord, host_crash: bool) {
        let mut rec = lock(&self.shared.recorder);
        if rec.echo {
            eprintln!(
                "[{:>9.3}s] {} TRAP in {}",
                record.at.as_secs_f64(),
                record.origin,
                record.summary()
            );
        }
        if host_crash {
            rec.fatal_errors.push(record);
        } else {
            rec.traps.push(record);
        }
    }

    /// ngx_wasm_module after a trap: a new instance, `on_configure` again (no `on_vm_start`).
    fn recover(&mut self, n: usize, w: usize) {
        let origin = self.origin(n, w);
        lock(&self.shared.recorder)
            .recoveries
            .push((self.elapsed(), origin));
        self.nodes[n].workers[w].recovering = true;
        let restarted = self.instantiate(n, w, false);
        self.nodes[n].workers[w].recovering = false;
        if let Err(e) = restarted {
            self.nodes[n].workers[w].dead = Some(format!("recovery failed: {e:#}"));
        }
    }
}

/// A trap's kind: wasmtime's trap code (`unreachable`, ...) or the host's message.
fn trap_kind(err: &wasmtime::Error) -> String {
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        let text = trap.to_string();
        // "wasm `unreachable` instruction executed" -> "unreachable"
        return match (text.find('`'), text.rfind('`')) {
            (Some(a), Some(b)) if b > a => text[a + 1..b].to_string(),
            _ => text,
        };
    }
    // A trap a hostcall raised: its message comes first (the backtrace is context).
    let root = err.root_cause().to_string();
    root.lines().next().unwrap_or_default().to_string()
}

/// The innermost `max` frames of the wasm backtrace, by symbol name (or function index).
fn top_frames(err: &wasmtime::Error, max: usize) -> Vec<String> {
    let Some(bt) = err.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return Vec::new();
    };
    let names: Vec<String> = bt
        .frames()
        .iter()
        .map(|f| match f.func_name() {
            Some(name) => format!("{:#}", rustc_demangle::demangle(name)),
            None => format!("func[{}]", f.func_index()),
        })
        .collect();
    // Skip the panic machinery (std/core panicking, abort) above the guest's own frames.
    let machinery = |n: &str| {
        [
            "std::",
            "core::",
            "__rustc::",
            "alloc::",
            "abort",
            "rust_",
            "__rust",
        ]
        .iter()
        .any(|p| n.starts_with(p))
    };
    let start = names.iter().position(|n| !machinery(n)).unwrap_or(0);
    names.into_iter().skip(start).take(max).collect()
}

/// Runs a guest export with i32 arguments (missing ones are 0); `None` when the module lacks it.
fn call_export(
    store: &mut Store<Host>,
    instance: Instance,
    func: &str,
    args: &[i32],
) -> Option<Called> {
    let f = instance.get_func(&mut *store, func)?;
    let ty = f.ty(&*store);
    let params: Vec<Val> = ty
        .params()
        .enumerate()
        .map(|(i, _)| Val::I32(args.get(i).copied().unwrap_or(0)))
        .collect();
    let mut results: Vec<Val> = ty.results().map(|_| Val::I32(0)).collect();
    let result = f
        .call(&mut *store, &params, &mut results)
        .map(|()| results.first().and_then(|v| v.i32()));
    let host = store.data_mut();
    Some(Called {
        result,
        fatal: host.fatal.take(),
        fatal_trap: host.fatal_trap.take(),
        outbox: std::mem::take(&mut host.outbox),
    })
}
