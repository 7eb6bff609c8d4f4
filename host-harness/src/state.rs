//! State the hostcalls of many workers share: per world (clock, profile, upstream routes, call
//! tokens, the recorder) and per node (shared data, shared queues, metrics, properties).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::clock::Clock;
use crate::hostile::{Dice, Injection, InjectionRecord};
use crate::http::SharedHandler;
use crate::profile::HostProfile;
use crate::record::{LogLevel, MetricKind, Origin, Recorder};

/// Locks a mutex, recovering the data if a panicking thread poisoned it (a failed test must not
/// cascade into every other assertion).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct WorldShared {
    pub clock: Clock,
    pub profile: HostProfile,
    pub routes: RwLock<HashMap<String, SharedHandler>>,
    /// gRPC clusters (Envoy profile), by name.
    pub grpc_routes: RwLock<HashMap<String, crate::grpc::GrpcHandler>>,
    pub next_token: AtomicU32,
    pub recorder: Mutex<Recorder>,
    pub log_level: RwLock<LogLevel>,
    /// The RNG of a hostile profile.
    dice: Option<Dice>,
    /// Nanoseconds spent in hostcalls that copy bulk data into or out of the guest (buffers, the
    /// dispatched request) during the current guest call: reported apart from guest time.
    pub copy_nanos: std::sync::atomic::AtomicU64,
    /// The thread CPU time of those copies (only while `measure_cpu` is on).
    pub copy_cpu_nanos: std::sync::atomic::AtomicU64,
    /// Whether each guest callback's thread CPU time is measured (`World::measure_cpu_time`):
    /// two `clock_gettime` system calls per callback, off unless a benchmark asks.
    pub measure_cpu: std::sync::atomic::AtomicBool,
}

impl WorldShared {
    pub(crate) fn new(clock: Clock, profile: HostProfile) -> Self {
        WorldShared {
            clock,
            routes: RwLock::new(HashMap::new()),
            grpc_routes: RwLock::new(HashMap::new()),
            next_token: AtomicU32::new(1),
            recorder: Mutex::new(Recorder::default()),
            log_level: RwLock::new(LogLevel::Trace),
            dice: profile.hostility.as_ref().map(Dice::new),
            copy_nanos: std::sync::atomic::AtomicU64::new(0),
            copy_cpu_nanos: std::sync::atomic::AtomicU64::new(0),
            measure_cpu: std::sync::atomic::AtomicBool::new(false),
            profile,
        }
    }

    /// Runs a hostcall that copies bulk data between host and guest, adding its wall time (and
    /// its thread CPU time when measured) to the current guest call's copy time (`copy_nanos`).
    pub(crate) fn time_copy<T>(&self, copy: impl FnOnce() -> T) -> T {
        use std::sync::atomic::Ordering::Relaxed;
        let cpu = self.measure_cpu.load(Relaxed);
        let cpu_started = if cpu {
            crate::cpu_time::thread_cpu()
        } else {
            std::time::Duration::ZERO
        };
        let t = std::time::Instant::now();
        let r = copy();
        let nanos = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.copy_nanos.fetch_add(nanos(t.elapsed()), Relaxed);
        if cpu {
            let spent = crate::cpu_time::thread_cpu().saturating_sub(cpu_started);
            self.copy_cpu_nanos.fetch_add(nanos(spent), Relaxed);
        }
        r
    }

    /// With a hostile profile, whether to inject `kind` at this decision point and which variant;
    /// an injection is recorded with `detail` (what it hit). Always `None` for the other profiles.
    pub(crate) fn inject(
        &self,
        origin: &Origin,
        kind: Injection,
        detail: impl FnOnce() -> String,
    ) -> Option<&'static str> {
        let variant = self.dice.as_ref()?.roll(kind)?;
        lock(&self.recorder).injections.push(InjectionRecord {
            at: self.clock.elapsed(),
            origin: origin.clone(),
            kind,
            variant,
            detail: detail(),
        });
        Some(variant)
    }

    /// Tokens are unique in the whole world, so a late answer can never reach the wrong call.
    pub(crate) fn token(&self) -> u32 {
        self.next_token.fetch_add(1, Ordering::SeqCst)
    }

    /// The handler for an upstream: exact name first, then `host` ≡ `host:80`/`host:443`.
    pub(crate) fn route(&self, upstream: &str, https: bool) -> Option<SharedHandler> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = routes.get(upstream) {
            return Some(h.clone());
        }
        let default_port = if https { 443 } else { 80 };
        match host_and_port(upstream) {
            (host, Some(port)) if port == default_port => routes.get(host).cloned(),
            (_, Some(_)) => None,
            (_, None) => routes.get(&format!("{upstream}:{default_port}")).cloned(),
        }
    }
}

/// One value in shared data with its CAS.
#[derive(Clone, Debug)]
pub struct SharedValue {
    /// The bytes stored.
    pub value: Vec<u8>,
    /// The CAS a `set_shared_data` must give to replace it (never 0).
    pub cas: u32,
}

/// Outcome of `set_shared_data`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SetResult {
    Ok,
    CasMismatch,
}

#[derive(Default)]
pub(crate) struct SharedData {
    values: HashMap<String, SharedValue>,
    next_cas: u32,
}

impl SharedData {
    pub(crate) fn get(&self, key: &str) -> Option<SharedValue> {
        self.values.get(key).cloned()
    }

    pub(crate) fn set(
        &mut self,
        key: &str,
        value: Vec<u8>,
        cas: u32,
        strict_cas: bool,
    ) -> SetResult {
        let current = self.values.get(key).map(|v| v.cas);
        let allowed = match (current, cas, strict_cas) {
            // Envoy: cas 0 means "no check".
            (_, 0, false) => true,
            // ngx_wasm_module: cas 0 only creates; an existing key needs its exact cas.
            (None, 0, true) => true,
            (Some(_), 0, true) => false,
            (Some(current), cas, _) => current == cas,
            // A cas for a key that does not exist cannot match.
            (None, _, true) => false,
            (None, _, false) => true,
        };
        if !allowed {
            return SetResult::CasMismatch;
        }
        // CAS values are never 0 (the SDK reads 0 as "no cas").
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        self.values.insert(
            key.to_string(),
            SharedValue {
                value,
                cas: self.next_cas,
            },
        );
        SetResult::Ok
    }

    pub(crate) fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.values.keys().cloned().collect();
        keys.sort();
        keys
    }

    pub(crate) fn clear(&mut self) {
        self.values.clear();
    }
}

/// A shared queue: who registered it (and so gets `on_queue_ready`), and its items.
pub(crate) struct Queue {
    pub vm_id: String,
    pub name: String,
    pub owner_worker: usize,
    pub owner_context: u32,
    pub owner_generation: u64,
    pub items: std::collections::VecDeque<Vec<u8>>,
}

#[derive(Default)]
pub(crate) struct Queues {
    pub queues: Vec<Queue>,
}

impl Queues {
    pub(crate) fn find(&self, vm_id: &str, name: &str) -> Option<u32> {
        self.queues
            .iter()
            .position(|q| q.vm_id == vm_id && q.name == name)
            .map(|i| i as u32 + 1)
    }

    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Queue> {
        (id as usize)
            .checked_sub(1)
            .and_then(|i| self.queues.get_mut(i))
    }
}

pub(crate) struct Metric {
    pub name: String,
    pub kind: MetricKind,
    pub value: i64,
}

#[derive(Default)]
pub(crate) struct Metrics {
    pub metrics: Vec<Metric>,
}

impl Metrics {
    pub(crate) fn define(&mut self, kind: MetricKind, name: &str) -> u32 {
        if let Some(i) = self
            .metrics
            .iter()
            .position(|m| m.name == name && m.kind == kind)
        {
            return i as u32 + 1;
        }
        self.metrics.push(Metric {
            name: name.to_string(),
            kind,
            value: 0,
        });
        self.metrics.len() as u32
    }

    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Metric> {
        (id as usize)
            .checked_sub(1)
            .and_then(|i| self.metrics.get_mut(i))
    }
}

pub(crate) struct NodeShared {
    #[allow(dead_code)] // kept for debugging output
    pub name: String,
    pub shared_data: Mutex<SharedData>,
    pub queues: Mutex<Queues>,
    pub metrics: Mutex<Metrics>,
    /// Properties readable from HTTP contexts, by dotted path (`request.path`).
    pub properties: RwLock<HashMap<String, Vec<u8>>>,
    /// This node's clock minus the world's, ms (`World::set_clock_skew`): what
    /// `proxy_get_current_time_nanoseconds` answers is shifted by it.
    pub clock_skew_ms: std::sync::atomic::AtomicI64,
    /// The machine's host name (`NodeSpec::hostname`).
    pub hostname: String,
}

impl NodeShared {
    pub(crate) fn new(name: &str, hostname: &str) -> Arc<Self> {
        Arc::new(NodeShared {
            name: name.to_string(),
            hostname: hostname.to_string(),
            shared_data: Mutex::new(SharedData::default()),
            queues: Mutex::new(Queues::default()),
            metrics: Mutex::new(Metrics::default()),
            properties: RwLock::new(HashMap::new()),
            clock_skew_ms: std::sync::atomic::AtomicI64::new(0),
        })
    }
}

/// An upstream `host[:port]` split at its port, if it ends with one (`[::1]:80` → `[::1]`, 80;
/// `[::1]` has none).
pub(crate) fn host_and_port(upstream: &str) -> (&str, Option<u16>) {
    match upstream.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(port) => (host, Some(port)),
            Err(_) => (upstream, None),
        },
        None => (upstream, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_split_at_a_numeric_port_only() {
        assert_eq!(host_and_port("s3.local:9000"), ("s3.local", Some(9000)));
        assert_eq!(host_and_port("[::1]:80"), ("[::1]", Some(80)));
        assert_eq!(host_and_port("[::1]"), ("[::1]", None));
        assert_eq!(host_and_port("cluster_s3"), ("cluster_s3", None));
        assert_eq!(host_and_port("host:http"), ("host:http", None));
    }

    #[test]
    fn cas_rules_of_both_hosts() {
        for strict in [false, true] {
            let mut d = SharedData::default();
            assert_eq!(d.set("k", b"a".to_vec(), 0, strict), SetResult::Ok);
            let cas = d.get("k").unwrap().cas;
            assert_ne!(cas, 0);
            // cas 0 on an existing key: Envoy overwrites, ngx refuses.
            let expected = if strict {
                SetResult::CasMismatch
            } else {
                SetResult::Ok
            };
            assert_eq!(d.set("k", b"b".to_vec(), 0, strict), expected);
            let cas = d.get("k").unwrap().cas;
            assert_eq!(
                d.set("k", b"c".to_vec(), cas + 7, strict),
                SetResult::CasMismatch
            );
            assert_eq!(d.set("k", b"c".to_vec(), cas, strict), SetResult::Ok);
            assert_eq!(d.get("k").unwrap().value, b"c");
        }
    }
}
