//! The `hostile` host ([`HostProfile::hostile`](crate::HostProfile::hostile)): a host that answers
//! hostcalls with unusual-but-legal statuses and delivers callbacks a guest did not ask for, so a
//! test can prove that a guest never traps whatever a host returns.
//!
//! Hostility is data on the profile ([`Hostility`]): a seed, a rate and the kinds allowed. At each
//! decision point (a hostcall, a dispatched call, a call's answer, a tick) the world draws from one
//! seeded RNG, so a run is reproducible from its seed; every injection is recorded
//! ([`InjectionRecord`], [`World::injections`](crate::World::injections)) so a test can assert
//! that each kind of hostility actually happened.
//!
//! ```no_run
//! use std::time::Duration;
//! use host_harness::{HostProfile, Injection, NodeSpec, PluginModule, World};
//! let module = PluginModule::load("filter.wasm").unwrap();
//! // ngx_wasm_module's rules, plus one odd answer in 20 decisions, reproducible from seed 7.
//! let mut world = World::new(HostProfile::hostile().seed(7).hostile_rate(0.05));
//! world.add_node(NodeSpec::new("dp1", &module).workers(2).filter("{}")).unwrap();
//! world.advance(Duration::from_secs(600));
//! assert!(world.traps().is_empty(), "the filter trapped under a hostile host");
//! assert!(world.injected(Injection::UnknownToken) > 0);
//! ```

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::record::Origin;

/// One kind of hostility. Each has variants (its [`Injection::variants`]); a variant named after a
/// proxy-wasm status (`NotFound`, `BadArgument`, ...) is that status returned by the hostcall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Injection {
    /// `proxy_log` fails and the line is dropped (ngx_wasm_module answers an error for a bad level).
    Log,
    /// `proxy_get_current_time_nanoseconds` fails, or answers the epoch itself, the far future
    /// (`u64::MAX` ns, year 2554) or a time a day behind the previous answers (the ABI's u64 cannot
    /// say "before the epoch").
    Time,
    /// `proxy_set_tick_period_milliseconds` is refused and no timer changes.
    TickPeriod,
    /// `proxy_get_buffer_bytes` answers NotFound or Empty, or Ok with fewer bytes than asked for
    /// and available ("short": half of them).
    Buffer,
    /// `proxy_get_header_map_pairs` answers NotFound, or Ok with odd but valid encodings: no pairs
    /// at all (a null pointer), an explicit zero count (4 bytes), or every pair twice, the second
    /// time with an upper-case name.
    HeaderMap,
    /// `proxy_get_shared_data` answers NotFound for whatever key, or InternalFailure.
    SharedDataGet,
    /// `proxy_set_shared_data` answers CasMismatch (as if another worker had won) or
    /// InternalFailure, and stores nothing.
    SharedDataSet,
    /// `proxy_http_call` answers InternalFailure, BadArgument or Unimplemented; no call is made.
    Dispatch,
    /// The metrics hostcalls (`define`, `increment`, `record`, `get`) answer Unimplemented.
    Metrics,
    /// A dispatched call is never answered: no callback, ever (recorded as `CallOutcome::Lost`).
    LostCallback,
    /// Before a call's answer, `proxy_on_http_call_response` for a token the guest never received,
    /// on the live context the answer is for (zero headers, zero body).
    UnknownToken,
    /// Next to a tick, a callback for a context id that does not exist: `proxy_on_tick`,
    /// `proxy_on_http_call_response` (with a token never issued) or `proxy_on_queue_ready`.
    UnknownContext,
    /// A call's answer is delivered a second time, 1 ms after the first.
    DuplicateDelivery,
}

impl Injection {
    /// Every kind, in declaration order.
    pub const ALL: [Injection; 13] = [
        Injection::Log,
        Injection::Time,
        Injection::TickPeriod,
        Injection::Buffer,
        Injection::HeaderMap,
        Injection::SharedDataGet,
        Injection::SharedDataSet,
        Injection::Dispatch,
        Injection::Metrics,
        Injection::LostCallback,
        Injection::UnknownToken,
        Injection::UnknownContext,
        Injection::DuplicateDelivery,
    ];

    /// What this kind may do; each injection picks one at random.
    pub fn variants(self) -> &'static [&'static str] {
        match self {
            Injection::Log => &["BadArgument", "InternalFailure"],
            Injection::Time => &["InternalFailure", "epoch", "far future", "a day behind"],
            Injection::TickPeriod => &["BadArgument", "Unimplemented"],
            Injection::Buffer => &["NotFound", "Empty", "short"],
            Injection::HeaderMap => &["NotFound", "no pairs", "zero count", "duplicated pairs"],
            Injection::SharedDataGet => &["NotFound", "InternalFailure"],
            Injection::SharedDataSet => &["CasMismatch", "InternalFailure"],
            Injection::Dispatch => &["InternalFailure", "BadArgument", "Unimplemented"],
            Injection::Metrics => &["Unimplemented"],
            Injection::LostCallback => &["no callback"],
            Injection::UnknownToken => &["on_http_call_response"],
            Injection::UnknownContext => &["on_tick", "on_http_call_response", "on_queue_ready"],
            Injection::DuplicateDelivery => &["on_http_call_response"],
        }
    }
}

/// The proxy-wasm status a variant names, if it names one.
pub(crate) fn status_of(variant: &str) -> Option<i32> {
    use crate::abi::status::*;
    Some(match variant {
        "NotFound" => NOT_FOUND,
        "BadArgument" => BAD_ARGUMENT,
        "Empty" => EMPTY,
        "CasMismatch" => CAS_MISMATCH,
        "InternalFailure" => INTERNAL_FAILURE,
        "Unimplemented" => UNIMPLEMENTED,
        _ => return None,
    })
}

/// How hostile a host is: part of [`HostProfile`](crate::HostProfile).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hostility {
    /// Seed of the RNG every decision draws from: the same seed and scenario inject the same way.
    pub seed: u64,
    /// Chance that one decision point injects, in parts per million (1_000_000: always).
    pub rate_ppm: u32,
    /// The kinds that may be injected.
    pub kinds: Vec<Injection>,
}

impl Default for Hostility {
    /// Seed 0, one decision in 20, every kind.
    fn default() -> Self {
        Hostility {
            seed: 0,
            rate_ppm: 50_000,
            kinds: Injection::ALL.to_vec(),
        }
    }
}

/// One injection that happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectionRecord {
    /// When (virtual time).
    pub at: Duration,
    /// Which node and worker.
    pub origin: Origin,
    /// What kind of injection.
    pub kind: Injection,
    /// Which of the kind's [`Injection::variants`].
    pub variant: &'static str,
    /// What it hit: the hostcall, key, upstream, token or context.
    pub detail: String,
}

/// The RNG of a hostile world.
pub(crate) struct Dice {
    hostility: Hostility,
    rng: Mutex<StdRng>,
}

impl Dice {
    pub(crate) fn new(hostility: &Hostility) -> Self {
        Dice {
            hostility: hostility.clone(),
            rng: Mutex::new(StdRng::seed_from_u64(hostility.seed)),
        }
    }

    /// Whether to inject `kind` at this decision point, and which variant.
    pub(crate) fn roll(&self, kind: Injection) -> Option<&'static str> {
        if !self.hostility.kinds.contains(&kind) {
            return None;
        }
        let mut rng = crate::state::lock(&self.rng);
        if !rng.random_ratio(self.hostility.rate_ppm.min(1_000_000), 1_000_000) {
            return None;
        }
        let variants = kind.variants();
        Some(variants[rng.random_range(0..variants.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_rolls_the_same_way_and_disabled_kinds_never_fire() {
        let hostility = Hostility {
            seed: 7,
            rate_ppm: 300_000,
            kinds: vec![Injection::Time, Injection::Buffer],
        };
        let draw = |h: &Hostility| {
            let dice = Dice::new(h);
            (0..200)
                .map(|i| dice.roll(Injection::ALL[i % 13]))
                .collect::<Vec<_>>()
        };
        let a = draw(&hostility);
        assert_eq!(a, draw(&hostility));
        assert_ne!(
            a,
            draw(&Hostility {
                seed: 8,
                ..hostility.clone()
            })
        );
        for (i, v) in a.iter().enumerate() {
            let kind = Injection::ALL[i % 13];
            if let Some(v) = v {
                assert!(hostility.kinds.contains(&kind) && kind.variants().contains(v));
            }
        }
        assert!(a.iter().flatten().count() > 5);
    }

    #[test]
    fn status_variants_name_real_statuses() {
        for kind in Injection::ALL {
            for v in kind.variants() {
                let looks_like_status = v.chars().next().is_some_and(char::is_uppercase);
                assert_eq!(status_of(v).is_some(), looks_like_status, "{kind:?} {v}");
            }
        }
    }
}
