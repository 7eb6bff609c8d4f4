//! Calling a guest export with the profile's rules: the call's record and timing, what its
//! hostcalls left behind, and a trap: its record, the worker's death and, where the profile does
//! it, the instance's recovery.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmtime::{Instance, Store, Val};

use super::Worker;
use crate::abi::{Callback, Host, Outbox};
use crate::record::TrapRecord;
use crate::state::lock;

/// What calling a guest export came to.
pub(in crate::world) enum Invoke {
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

/// Why a guest call failed, as the host saw it.
struct Failure {
    cb: Callback,
    err: wasmtime::Error,
    fatal: Option<String>,
    fatal_trap: Option<String>,
    /// The recorder's log length before the call (the guest's panic message comes after).
    logs_before: usize,
}

impl Worker {
    /// Calls a guest export with the callback rules of the profile, then acts on the outbox; a
    /// trap kills the worker (and the profile may recover it).
    pub(in crate::world) fn invoke(
        &mut self,
        cb: Callback,
        ctx: u32,
        func: &str,
        args: &[i32],
    ) -> Invoke {
        let (None, Some(store), Some(instance)) = (&self.dead, self.store.as_mut(), self.instance)
        else {
            return Invoke::Failed;
        };
        store.data_mut().callback = cb;
        store.data_mut().effective_context = ctx;
        let logs_before = lock(&self.shared.recorder).logs.len();
        self.shared.copy_nanos.store(0, Ordering::Relaxed);
        self.shared.copy_cpu_nanos.store(0, Ordering::Relaxed);
        let started = Instant::now();
        // Thread CPU time costs two system calls per callback: only when asked (benchmarks).
        let cpu_time = self.shared.measure_cpu.load(Ordering::Relaxed);
        let cpu_started = if cpu_time {
            crate::cpu_time::thread_cpu()
        } else {
            Duration::ZERO
        };
        let called = call_export(store, instance, func, args);
        let wall = started.elapsed();
        let cpu = if cpu_time {
            crate::cpu_time::thread_cpu().saturating_sub(cpu_started)
        } else {
            Duration::ZERO
        };
        let Some(called) = called else {
            // Optional exports (`_initialize`, callbacks an old SDK lacks) are skipped.
            return Invoke::Returned(None);
        };
        self.record_call(cb, func, args, &called, (wall, cpu));
        match called.result {
            Ok(value) => {
                self.process_outbox(called.outbox);
                Invoke::Returned(value)
            }
            Err(err) => {
                let (fatal, fatal_trap) = (called.fatal, called.fatal_trap);
                self.trapped(Failure {
                    cb,
                    err,
                    fatal,
                    fatal_trap,
                    logs_before,
                });
                Invoke::Failed
            }
        }
    }

    /// The call in the recorder (when it records callbacks) and its wall time, guest and bulk
    /// copies apart.
    fn record_call(
        &self,
        cb: Callback,
        func: &str,
        args: &[i32],
        called: &Called,
        (wall, cpu): (Duration, Duration),
    ) {
        let copied = Duration::from_nanos(self.shared.copy_nanos.load(Ordering::Relaxed));
        let copied_cpu = Duration::from_nanos(self.shared.copy_cpu_nanos.load(Ordering::Relaxed));
        let mut rec = lock(&self.shared.recorder);
        if let Some(calls) = rec.callbacks.as_mut() {
            calls.push(crate::record::GuestCall {
                at: self.shared.clock.elapsed(),
                origin: self.origin.clone(),
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
        t.total_cpu += cpu;
        t.longest_cpu = t.longest_cpu.max(cpu);
        let guest_cpu = cpu.saturating_sub(copied_cpu);
        t.total_guest_cpu += guest_cpu;
        t.longest_guest_cpu = t.longest_guest_cpu.max(guest_cpu);
        t.longest_copy_cpu = t.longest_copy_cpu.max(copied_cpu);
    }

    /// A guest call trapped (or crashed the host): record it, kill the worker, and recover it
    /// where the profile does (not after a host crash or a fatal trap, not during a recovery).
    fn trapped(&mut self, failure: Failure) {
        let record = self.trap_record(&failure);
        let Failure {
            cb,
            fatal,
            fatal_trap,
            ..
        } = failure;
        let profile = &self.shared.profile;
        // ngx_wasm_module: a trap in on_configure is an on_configure failure, fatal to the
        // worker like `false` ("on_configure failure", no retry).
        let fatal_trap = match (cb, profile.configure_false_is_fatal) {
            (Callback::Configure, true) => {
                fatal_trap.or_else(|| Some("trap in on_configure: on_configure failure".into()))
            }
            _ => fatal_trap,
        };
        let recover = profile.recover_after_trap
            && fatal.is_none()
            && fatal_trap.is_none()
            && !self.recovering
            && cb != Callback::Initialize;
        let lazy = profile.lazy_recovery;
        self.record_trap(record, fatal.is_some());
        if let Some(store) = self.store.as_mut() {
            self.orphaned_streams
                .extend(std::mem::take(&mut store.data_mut().streams));
        }
        let reason = fatal
            .or(fatal_trap)
            .unwrap_or_else(|| format!("trapped in {}", cb.name()));
        self.die(reason);
        if recover && lazy {
            self.pending_recovery = true;
        } else if recover {
            self.recover();
        }
    }

    /// The record of a trap: callback, kind, innermost frames, and the guest's panic message
    /// if it logged one during the call.
    fn trap_record(&self, failure: &Failure) -> TrapRecord {
        let origin = self.origin.clone();
        let panic = lock(&self.shared.recorder)
            .logs
            .get(failure.logs_before..)
            .unwrap_or_default()
            .iter()
            .rev()
            .find(|l| l.origin == origin && l.message.contains("panicked at"))
            // The SDK's hook logs `panicked at <file:line>:\n<message>`: one line.
            .map(|l| {
                let lines: Vec<&str> = l.message.lines().map(str::trim).collect();
                lines.join(" ")
            });
        TrapRecord {
            at: self.elapsed(),
            origin,
            callback: failure.cb.name().to_string(),
            kind: trap_kind(&failure.err),
            frames: top_frames(&failure.err, 5),
            panic,
            message: format!("{:?}", failure.err),
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
    pub(super) fn recover(&mut self) {
        let at = (self.elapsed(), self.origin.clone());
        lock(&self.shared.recorder).recoveries.push(at);
        self.recovering = true;
        let restarted = self.instantiate(false);
        self.recovering = false;
        if let Err(e) = restarted {
            self.dead = Some(format!("recovery failed: {e:#}"));
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
