//! What a test asserts on: the recorder (logs, calls, traps, host crashes, recoveries,
//! injections), metrics, shared data, nodes and workers, guest memory.

use super::{NodeId, World};
use crate::hostile::{Injection, InjectionRecord};
use crate::record::{CallRecord, LogLine, MetricKind, Recorder, TrapRecord};
use crate::state::{lock, SharedValue};

impl World {
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

    /// Wall time of the guest callbacks run so far, by callback name (`on_configure`, ...).
    pub fn callback_times(
        &self,
    ) -> std::collections::BTreeMap<String, crate::record::CallbackTimes> {
        lock(&self.shared.recorder).callback_times.clone()
    }

    /// Measures each guest callback's thread CPU time from now on (`CallbackTimes::longest_cpu`,
    /// `total_cpu`), or stops. Off by default: it costs two system calls per callback, which
    /// slows a long simulation by about half (BENCHMARKS.md, host harness).
    pub fn measure_cpu_time(&mut self, on: bool) -> &mut Self {
        self.shared
            .measure_cpu
            .store(on, std::sync::atomic::Ordering::Relaxed);
        self
    }

    /// Records every guest callback with its arguments from now on (or stops and forgets).
    pub fn record_callbacks(&mut self, on: bool) -> &mut Self {
        lock(&self.shared.recorder).callbacks = on.then(Vec::new);
        self
    }

    /// Every guest callback recorded since [`World::record_callbacks`], in order.
    pub fn guest_calls(&self) -> Vec<crate::record::GuestCall> {
        lock(&self.shared.recorder)
            .callbacks
            .clone()
            .unwrap_or_default()
    }

    /// Forgets the callback times recorded so far (to measure one phase of a scenario).
    pub fn reset_callback_times(&self) {
        lock(&self.shared.recorder).callback_times.clear();
    }

    /// Every trap so far (callback, kind, panic message, frames), in order.
    pub fn traps(&self) -> Vec<TrapRecord> {
        lock(&self.shared.recorder).traps.clone()
    }

    /// Host crashes so far (a segfault of the real worker process), in order.
    pub fn fatal_errors(&self) -> Vec<TrapRecord> {
        lock(&self.shared.recorder).fatal_errors.clone()
    }

    /// How many times a trapped instance was re-created (ngx_wasm_module).
    pub fn recoveries(&self) -> usize {
        lock(&self.shared.recorder).recoveries.len()
    }

    /// Everything a hostile profile injected so far, in order ([`crate::hostile`]).
    pub fn injections(&self) -> Vec<InjectionRecord> {
        lock(&self.shared.recorder).injections.clone()
    }

    /// How many injections of one kind happened.
    pub fn injected(&self, kind: Injection) -> usize {
        lock(&self.shared.recorder)
            .injections
            .iter()
            .filter(|i| i.kind == kind)
            .count()
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

    /// A node's shared-data value (and its cas), as a guest would read it.
    pub fn shared_data(&self, node: NodeId, key: &str) -> Option<SharedValue> {
        lock(&self.nodes[node.0].shared.shared_data).get(key)
    }

    /// A node's shared-data keys, sorted.
    pub fn shared_data_keys(&self, node: NodeId) -> Vec<String> {
        lock(&self.nodes[node.0].shared.shared_data).keys()
    }

    /// Sets a node's clock skew (its clock minus the world's, ms): the host time its guests read
    /// (`proxy_get_current_time_nanoseconds`) moves by it; the world's clock, timers and the
    /// mocks' clocks do not.
    pub fn set_clock_skew(&self, node: NodeId, skew_ms: i64) {
        if let Some(n) = self.nodes.get(node.0) {
            n.shared
                .clock_skew_ms
                .store(skew_ms, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The name a node was added with.
    pub fn node_name(&self, node: NodeId) -> &str {
        &self.nodes[node.0].spec.name
    }

    /// How many nodes the world has (dead ones included).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// How many workers a node has.
    pub fn worker_count(&self, node: NodeId) -> usize {
        self.nodes[node.0].workers.len()
    }

    /// Current size of a worker's linear memory (wasm memory never shrinks: this is its peak).
    pub fn guest_memory_bytes(&mut self, node: NodeId, worker: usize) -> Option<usize> {
        self.nodes[node.0].workers[worker].memory_bytes()
    }

    /// Whether the world runs on the wall clock ([`World::new_realtime`]) instead of virtual time.
    pub fn is_realtime(&self) -> bool {
        self.realtime
    }
}
