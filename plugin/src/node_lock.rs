//! Once per node: a lease in proxy-wasm shared data that exactly one root context (of all the
//! workers and filter instances of a node) holds at a time, plus the node-wide export state it
//! guards. Only hashes, times and the storage version token live here, never the config body
//! (the default `shm_kv` zone is 1 MB).
//!
//! CAS rules differ (docs/host-behaviours.md, "Hostcall rules of ngx_wasm_module"): ngx_wasm_module creates a missing key with cas 0 and rejects cas 0
//! on an existing key; Envoy treats cas 0 as "unconditional". The only write that is atomic on
//! both is a set with the non-zero cas of a previous get, so every claim, renewal and state change
//! is read → modify → set(cas). cas 0 is used for one thing only: creating the empty record
//! (owner 0) when the key is missing, which never grants the lease by itself. (On Envoy, a create
//! racing with another worker's claim in the same instant could overwrite that claim; the claim
//! then fails its next CAS and the export's conditional write catches any duplicate.)
//!
//! A holder renews the lease on every tick; when its worker dies, the lease expires after
//! `lease_ttl_ms` and the next root context to tick takes over.

use crate::json;
use crate::json::Value;

use crate::debounce::{get_string, get_u64, Schedule};

/// Proxy-wasm shared data as the core sees it.
pub trait SharedStore {
    /// `(value, cas)`; `(None, _)` when the key does not exist.
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String>;
    /// `Ok(true)` stored, `Ok(false)` CAS mismatch.
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String>;
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeRecord {
    /// Root-context identity of the holder; 0 = nobody.
    pub owner: u64,
    /// Host time (ms) until which the holder's lease is valid.
    pub lease_until: u64,
    pub schedule: Schedule,
    /// Storage version token (S3 ETag) of the object as this node last wrote or read it.
    pub version: Option<String>,
    /// The node has seen the object's state (written it, or read it with a HEAD): `version` is
    /// then its ETag, or `None` when it does not exist. False after a start or reload.
    pub known: bool,
    /// The newest document any root context of the node has seen (filter instances may carry
    /// different configs; the newest wins, and only a root context holding it may export).
    pub newest: Option<Newest>,
    /// Content hashes of the configs this node has held since it started, oldest first (at
    /// most `HELD_MAX`): which config is newer (`engine::provenance`).
    pub held: Vec<String>,
    /// The `config-sequence` of the object as this node last wrote or read it (0: none), as
    /// `version` is its ETag: the next write carries one more.
    pub sequence: u64,
    /// Short hashes of that object's config and of the configs it superseded, newest first
    /// (`store::lineage::of_object`): the next write's `config-supersedes`.
    pub lineage: Vec<String>,
}

/// Hashes kept in `NodeRecord::held`.
pub const HELD_MAX: usize = 16;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Newest {
    pub hash: String,
    /// Host time (ms) when it was first seen.
    pub seen_at: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Lease<T> {
    /// We hold the lease and the record changes made by the closure were stored atomically.
    Held(T),
    /// Someone else holds a valid lease.
    Follower { owner: u64, until: u64 },
    /// Another root context changed the record first; try again next tick.
    Lost,
    /// Shared data failed (logged by the caller).
    Unavailable(String),
}

impl NodeRecord {
    pub fn to_json(&self) -> Value {
        json!({
            "owner": self.owner,
            "lease_until": self.lease_until,
            "schedule": self.schedule.to_json(),
            "version": self.version,
            "known": self.known,
            "newest": self.newest.as_ref().map(|n| json!({"hash": n.hash, "seen_at": n.seen_at})),
            "held": self.held,
            "sequence": self.sequence,
            "lineage": self.lineage,
        })
    }

    /// Missing or mistyped fields read as their defaults.
    pub fn from_json(v: &Value) -> NodeRecord {
        let Some(m) = v.as_object() else {
            return NodeRecord::default();
        };
        NodeRecord {
            owner: get_u64(m, "owner"),
            lease_until: get_u64(m, "lease_until"),
            schedule: m
                .get("schedule")
                .map(Schedule::from_json)
                .unwrap_or_default(),
            version: get_string(m, "version"),
            known: m.get("known").and_then(Value::as_bool).unwrap_or(false),
            newest: m.get("newest").and_then(Value::as_object).and_then(|n| {
                Some(Newest {
                    hash: get_string(n, "hash")?,
                    seen_at: get_u64(n, "seen_at"),
                })
            }),
            held: strings(m, "held", HELD_MAX),
            sequence: get_u64(m, "sequence"),
            lineage: strings(m, "lineage", crate::store::lineage::SUPERSEDES_MAX),
        }
    }
}

/// The first `max` strings of an array field (none if missing or mistyped).
fn strings(m: &crate::json::Map, key: &str, max: usize) -> Vec<String> {
    m.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .take(max)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn decode(bytes: &[u8]) -> NodeRecord {
    // A record we cannot read (older format, corruption) is replaced, not fatal.
    crate::json::parse(bytes)
        .map(|v| NodeRecord::from_json(&v))
        .unwrap_or_default()
}

fn encode(rec: &NodeRecord) -> Result<Vec<u8>, String> {
    Ok(crate::json::to_vec(&rec.to_json()))
}

/// Reads the record, creating an empty one if the key is missing; returns it with its cas.
fn read(store: &mut dyn SharedStore, key: &str) -> Result<Option<(NodeRecord, u32)>, String> {
    let (value, cas) = store.get(key)?;
    let (value, cas) = match value {
        Some(v) => (v, cas),
        None => {
            // Create-if-missing: atomic on ngx (cas 0 on a missing key), unconditional on Envoy;
            // harmless either way because the empty record grants nothing.
            store.set(key, &encode(&NodeRecord::default())?, None)?;
            let (v, c) = store.get(key)?;
            match v {
                Some(v) => (v, c),
                None => return Ok(None),
            }
        }
    };
    match cas {
        Some(c) if c != 0 => Ok(Some((decode(&value), c))),
        _ => Err("shared data returned no cas".to_string()),
    }
}

/// Claims or renews the lease for `me` and lets `f` change the node record in the same atomic
/// write. `f` gets `true` when the lease was just acquired (a takeover).
pub fn with_lease<T>(
    store: &mut dyn SharedStore,
    key: &str,
    me: u64,
    now: u64,
    ttl_ms: u64,
    f: impl FnOnce(&mut NodeRecord, bool) -> T,
) -> Lease<T> {
    with_lease_if(store, key, me, now, ttl_ms, |_| true, f)
}

/// As [`with_lease`], for a root context that may hold the lease only while `eligible(record)`:
/// an ineligible holder gives the lease up (so that an eligible one takes it on its next tick)
/// and an ineligible root context never claims it.
pub fn with_lease_if<T>(
    store: &mut dyn SharedStore,
    key: &str,
    me: u64,
    now: u64,
    ttl_ms: u64,
    eligible: impl FnOnce(&NodeRecord) -> bool,
    f: impl FnOnce(&mut NodeRecord, bool) -> T,
) -> Lease<T> {
    let (mut rec, cas) = match read(store, key) {
        Ok(Some(x)) => x,
        Ok(None) => return Lease::Lost,
        Err(e) => return Lease::Unavailable(e),
    };
    let held = rec.owner == me && now <= rec.lease_until;
    let free = rec.owner == 0 || now > rec.lease_until;
    if !eligible(&rec) {
        if rec.owner == me {
            rec.owner = 0;
            rec.lease_until = 0;
            let bytes = match encode(&rec) {
                Ok(b) => b,
                Err(e) => return Lease::Unavailable(e),
            };
            return match store.set(key, &bytes, Some(cas)) {
                Ok(true) => Lease::Follower { owner: 0, until: 0 },
                Ok(false) => Lease::Lost,
                Err(e) => Lease::Unavailable(e),
            };
        }
        return Lease::Follower {
            owner: rec.owner,
            until: rec.lease_until,
        };
    }
    if !held && !free {
        return Lease::Follower {
            owner: rec.owner,
            until: rec.lease_until,
        };
    }
    let acquired = !held;
    rec.owner = me;
    rec.lease_until = rec.lease_until.max(now.saturating_add(ttl_ms));
    if acquired {
        rec.lease_until = now.saturating_add(ttl_ms);
    }
    let out = f(&mut rec, acquired);
    let bytes = match encode(&rec) {
        Ok(b) => b,
        Err(e) => return Lease::Unavailable(e),
    };
    match store.set(key, &bytes, Some(cas)) {
        Ok(true) => Lease::Held(out),
        Ok(false) => Lease::Lost,
        Err(e) => Lease::Unavailable(e),
    }
}

/// Applies `f` to the record if `me` is still its owner (lease expired or not: nobody took it).
/// Retries a few times on CAS mismatch. Returns whether the change was stored.
pub fn update_if_owner(
    store: &mut dyn SharedStore,
    key: &str,
    me: u64,
    mut f: impl FnMut(&mut NodeRecord),
) -> Result<bool, String> {
    update_where(store, key, Some(me), &mut f)
}

/// Applies `f` to the record whoever holds the lease (CAS, a few attempts). Returns whether
/// the change was stored.
pub fn update(
    store: &mut dyn SharedStore,
    key: &str,
    mut f: impl FnMut(&mut NodeRecord),
) -> Result<bool, String> {
    update_where(store, key, None, &mut f)
}

/// `update` / `update_if_owner`, one copy in the module for all their closures (`dyn`: each
/// caller's closure made a ~700-byte copy of the loop).
fn update_where(
    store: &mut dyn SharedStore,
    key: &str,
    owner: Option<u64>,
    f: &mut dyn FnMut(&mut NodeRecord),
) -> Result<bool, String> {
    for _ in 0..4 {
        let Some((mut rec, cas)) = read(store, key)? else {
            continue;
        };
        if owner.is_some_and(|me| rec.owner != me) {
            return Ok(false);
        }
        f(&mut rec);
        if store.set(key, &encode(&rec)?, Some(cas))? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Reads the record without changing it.
pub fn peek(store: &dyn SharedStore, key: &str) -> Result<Option<NodeRecord>, String> {
    Ok(store.get(key)?.0.map(|v| decode(&v)))
}

/// A node-wide identity when none is configured: the first root context to ask writes one.
pub fn node_id(store: &mut dyn SharedStore, key: &str, candidate: &str) -> Result<String, String> {
    if let (Some(v), _) = store.get(key)? {
        return String::from_utf8(v).map_err(|_| "node id in shared data is not UTF-8".to_string());
    }
    store.set(key, candidate.as_bytes(), None)?;
    match store.get(key)? {
        (Some(v), _) => {
            String::from_utf8(v).map_err(|_| "node id in shared data is not UTF-8".to_string())
        }
        (None, _) => Ok(candidate.to_string()),
    }
}

/// An in-memory shared-data fake with either host's CAS rules, for tests.
#[cfg(test)]
pub mod fake {
    use super::SharedStore;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum CasRules {
        /// ngx_wasm_module: cas 0 creates a missing key and fails on an existing one.
        Ngx,
        /// Envoy: cas 0 is unconditional.
        Envoy,
    }

    #[derive(Default)]
    struct Inner {
        map: HashMap<String, (Vec<u8>, u32)>,
        next_cas: u32,
    }

    /// Cloning shares the data (several workers of one node).
    #[derive(Clone)]
    pub struct FakeStore {
        rules: CasRules,
        inner: Rc<RefCell<Inner>>,
    }

    impl FakeStore {
        pub fn new(rules: CasRules) -> FakeStore {
            FakeStore {
                rules,
                inner: Rc::new(RefCell::new(Inner {
                    map: HashMap::new(),
                    next_cas: 1,
                })),
            }
        }
    }

    impl SharedStore for FakeStore {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
            Ok(match self.inner.borrow().map.get(key) {
                Some((v, c)) => (Some(v.clone()), Some(*c)),
                None => (None, None),
            })
        }

        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
            let mut inner = self.inner.borrow_mut();
            let cas = cas.unwrap_or(0);
            let current = inner.map.get(key).map(|(_, c)| *c);
            let ok = match (self.rules, cas, current) {
                (_, 0, None) => true,
                (CasRules::Ngx, 0, Some(_)) => false,
                (CasRules::Envoy, 0, Some(_)) => true,
                (_, c, Some(cur)) => c == cur,
                (CasRules::Ngx, _, None) => false,
                (CasRules::Envoy, _, None) => true,
            };
            if ok {
                inner.next_cas += 1;
                let n = inner.next_cas;
                inner.map.insert(key.to_string(), (value.to_vec(), n));
            }
            Ok(ok)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{CasRules, FakeStore};
    use super::*;

    const K: &str = "config-bridge/lease/test";

    fn both() -> [FakeStore; 2] {
        [
            FakeStore::new(CasRules::Ngx),
            FakeStore::new(CasRules::Envoy),
        ]
    }

    #[test]
    fn first_claimer_wins_others_follow() {
        for mut s in both() {
            assert_eq!(
                with_lease(&mut s, K, 1, 0, 5000, |_, acq| acq),
                Lease::Held(true)
            );
            assert_eq!(
                with_lease(&mut s, K, 2, 100, 5000, |_, _| ()),
                Lease::Follower {
                    owner: 1,
                    until: 5000
                }
            );
            assert_eq!(
                with_lease(&mut s, K, 1, 1000, 5000, |_, acq| acq),
                Lease::Held(false)
            );
            assert_eq!(peek(&s, K).unwrap().unwrap().lease_until, 6000);
        }
    }

    #[test]
    fn expired_lease_is_taken_over_keeping_the_node_state() {
        for mut s in both() {
            let _ = with_lease(&mut s, K, 1, 0, 5000, |r, _| {
                r.schedule.exported = Some("h".into())
            });
            // Worker 1 dies; nobody renews.
            assert!(matches!(
                with_lease(&mut s, K, 2, 5000, 5000, |_, _| ()),
                Lease::Follower { .. }
            ));
            assert_eq!(
                with_lease(&mut s, K, 2, 5001, 5000, |r, acq| (
                    acq,
                    r.schedule.exported.clone()
                )),
                Lease::Held((true, Some("h".into())))
            );
            // The old holder comes back: it is a follower now and cannot write the record.
            assert!(matches!(
                with_lease(&mut s, K, 1, 5002, 5000, |_, _| ()),
                Lease::Follower { owner: 2, .. }
            ));
            assert_eq!(
                update_if_owner(&mut s, K, 1, |r| r.version = Some("x".into())),
                Ok(false)
            );
            assert_eq!(peek(&s, K).unwrap().unwrap().version, None);
        }
    }

    /// A store wrapper that lets another root context write between our get and our set.
    type Hook<'a> = Option<Box<dyn FnOnce(&mut FakeStore) + 'a>>;

    struct Interleave<'a> {
        inner: FakeStore,
        on_first_set: Hook<'a>,
    }
    impl SharedStore for Interleave<'_> {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
            self.inner.get(key)
        }
        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
            if cas.is_some() {
                if let Some(f) = self.on_first_set.take() {
                    f(&mut self.inner);
                }
            }
            self.inner.set(key, value, cas)
        }
    }

    #[test]
    fn concurrent_claims_have_exactly_one_winner_under_both_cas_rules() {
        for base in both() {
            let mut other = base.clone();
            let mut s = Interleave {
                inner: base.clone(),
                on_first_set: Some(Box::new(move |_| {
                    assert_eq!(
                        with_lease(&mut other, K, 2, 0, 5000, |_, _| ()),
                        Lease::Held(())
                    );
                })),
            };
            // Our claim read the record before worker 2 claimed it: our CAS must fail.
            assert_eq!(with_lease(&mut s, K, 1, 0, 5000, |_, _| ()), Lease::Lost);
            assert_eq!(peek(&base, K).unwrap().unwrap().owner, 2);
        }
    }

    #[test]
    fn holder_state_changes_are_atomic_with_the_renewal() {
        for mut s in both() {
            let _ = with_lease(&mut s, K, 7, 0, 5000, |_, _| ());
            assert_eq!(
                update_if_owner(&mut s, K, 7, |r| r.version = Some("\"etag\"".into())),
                Ok(true)
            );
            let r = peek(&s, K).unwrap().unwrap();
            assert_eq!((r.owner, r.version.as_deref()), (7, Some("\"etag\"")));
        }
    }

    #[test]
    fn garbage_record_is_replaced() {
        for mut s in both() {
            s.set(K, b"not json", None).unwrap();
            assert_eq!(
                with_lease(&mut s, K, 3, 0, 5000, |_, acq| acq),
                Lease::Held(true)
            );
            assert_eq!(peek(&s, K).unwrap().unwrap().owner, 3);
        }
    }

    #[test]
    fn node_id_is_shared_by_all_workers() {
        for mut s in both() {
            let a = node_id(&mut s, "nid", "node-a").unwrap();
            let b = node_id(&mut s, "nid", "node-b").unwrap();
            assert_eq!((a.as_str(), b.as_str()), ("node-a", "node-a"));
        }
    }

    #[test]
    fn ngx_rules_reject_cas0_on_existing_keys_and_envoy_does_not() {
        let mut n = FakeStore::new(CasRules::Ngx);
        let mut e = FakeStore::new(CasRules::Envoy);
        for s in [&mut n, &mut e] {
            assert_eq!(s.set("k", b"1", None), Ok(true));
        }
        assert_eq!(n.set("k", b"2", None), Ok(false));
        assert_eq!(e.set("k", b"2", None), Ok(true));
    }
}
