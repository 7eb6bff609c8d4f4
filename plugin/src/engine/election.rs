//! The election sub-machine: which of several backup nodes exports (docs/election.md).
//!
//! Kong Enterprise's protocol, kept so a mixed fleet agrees on one leader: every candidate
//! re-PUTs an empty registration object under `<prefix>/<version>/election/` every interval
//! (names in `store::election_objects`), lists them, and the fresh candidate (`now <= refreshed +
//! interval + 5 s`) with the smallest register time leads, ties broken by node id. A failed
//! register or list leaves leadership as it was. Beyond Kong:
//! * a follower lists again just after the leader's registration would go stale, so failover
//!   takes at most interval + 5 s after the leader's last refresh;
//! * a leader gives up leadership on its own before the others can consider it stale (it never
//!   exports on a registration the others no longer count);
//! * a stopping leader deletes its registration (`resign`), so a successor leads at its next
//!   round (within one interval);
//! * the leader deletes registrations stale for long (`cleanup_after_ms`);
//! * the store's `Date` header measures this node's clock skew; freshness is judged on the
//!   store's clock, and a skew over `SKEW_WARN_MS` is logged and exported as a gauge.
//!
//! Runs only in the node's lease holder (once per node); the register time is kept in shared data
//! so a worker taking over the lease keeps the node's place in the queue.

use crate::vec_map::SortedVecSet;

use super::effects::{Effects, Level, Metric};
use crate::http::{HttpResponse, OutboundRequest};
use crate::node_lock::SharedStore;
use crate::settings::ElectionSettings;
use crate::store::election_objects::ElectionCandidate;
use crate::store::timestamp::http_date_ms;
use crate::store::{DeleteOutcome, ListEntry, ListOutcome, ObjectStore, PutOutcome, StoreError};

/// Kong's grace on top of the interval before a candidate counts as gone.
pub(crate) const FRESHNESS_GRACE_MS: u64 = 5_000;
/// The `Date` header counts whole seconds: a skew measured from it is up to this much short.
const DATE_RESOLUTION_MS: u64 = 1_000;
/// A follower lists this long after the leader's registration would go stale.
const FOLLOWER_CHECK_MARGIN_MS: u64 = 1_000;
/// Kong waits a random 0–5 s before a node's first round (no thundering herd at fleet start).
const FIRST_ROUND_SPREAD_MS: u64 = 5_000;
const SKEW_WARN_MS: i64 = 2_000;
/// Measured skews below this are the `Date` header's resolution, not skew.
const SKEW_NOISE_MS: i64 = 1_500;
/// Stale registrations deleted per round at most.
const CLEANUP_PER_ROUND: usize = 10;
/// Kong lists at most 1,000 keys per page; more pages are followed, up to this many.
const MAX_LIST_PAGES: u32 = 100;

/// How long before the others could count it stale the leader stops leading, from the time it
/// *sent* its last successful registration (the store stamps it no earlier): another node's
/// estimate of the store's clock may be early by the skew it ignores (`SKEW_NOISE_MS`) plus the
/// `Date` header's resolution, and an upload the leader sends just before it stops may reach
/// the store up to a call timeout later (docs/election.md, "Margins").
pub(crate) fn leader_margin_ms(call_timeout_ms: u64) -> u64 {
    SKEW_NOISE_MS
        .unsigned_abs()
        .saturating_add(DATE_RESOLUTION_MS)
        .saturating_add(call_timeout_ms)
}

#[derive(Debug)]
enum Phase {
    /// Waiting for `next_round_at`.
    Idle,
    Registering,
    /// The refresh found no registration (GCS answers a metadata update of a missing object
    /// with 404): it is created.
    Creating,
    Listing {
        next: Option<String>,
    },
    Cleaning,
    Resigning,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    /// The node's first registration: peers started with it register within the spread.
    Start,
    /// Another worker of the node led or registered, and the node's registration is still fresh:
    /// nobody else can lead meanwhile.
    Takeover,
    /// The node's registration went stale: another node may lead until its next round.
    Rejoin,
}

#[derive(Debug)]
pub(super) struct Election {
    settings: ElectionSettings,
    /// `<prefix>/<version>/election/`.
    prefix: String,
    /// Shared-data key of this node's register time.
    register_key: String,
    register_time_ms: Option<u64>,
    /// The key this node registered (deleted on resign).
    registered_key: Option<String>,
    phase: Phase,
    next_round_at: u64,
    round_started: u64,
    /// Local time at which the last successful registration was sent.
    registered_at: Option<u64>,
    /// The leader stops this long before the others could count it stale (`leader_margin_ms`).
    margin_ms: u64,
    /// The listing was refused (401/403: no `s3:ListBucket`, a signing mismatch) in a row:
    /// the node leads blind (docs/election.md, "An election that cannot complete").
    refused: u32,
    /// Continuation tokens seen in this round's listing (a store repeating one would loop).
    list_tokens: Vec<String>,
    /// The warning about unconditional writes was logged.
    warned_unconditional: bool,
    /// How this node (re-)enters the race, decided when it registers; and from when it may
    /// lead, set by the first registration of that entry.
    entry: Entry,
    eligible_from: Option<u64>,
    /// Store time at which this node's registration of the current entry was first listed:
    /// a candidate that refreshed after it has listed this node since.
    entered_store_ms: Option<u64>,
    /// The first refresh (store time) of each other candidate seen after this node entered.
    seen_since_entry: Vec<(String, u64)>,
    /// This round's candidates with the keys they were listed under.
    candidates: Vec<(String, ElectionCandidate)>,
    /// The first round's random delay, and when this election first wanted to register.
    spread_ms: u64,
    first_poll: Option<u64>,
    leading: bool,
    /// Local time until which this node may export as leader.
    leader_until: u64,
    leader: Option<String>,
    /// Store clock minus local clock, ms (0 until measured beyond the noise).
    skew_ms: i64,
    skew_warned: bool,
    stale: Vec<String>,
    /// Malformed keys already logged (once each).
    malformed_logged: SortedVecSet<String>,
    /// A registration to delete before anything else (this node stopped leading by
    /// reconfiguration).
    pending_resign: Option<String>,
}

impl Election {
    pub(super) fn new(
        settings: ElectionSettings,
        prefix: String,
        register_key: String,
        spread_seed: u64,
        call_timeout_ms: u64,
    ) -> Election {
        let interval_ms = settings.interval_ms.max(1);
        // The leader must stay valid past its next round (a round period and a call); on an
        // interval too short for the call timeout the margin gives way (a warning at start).
        let window = interval_ms.saturating_add(FRESHNESS_GRACE_MS);
        let room = window.saturating_sub(round_period(interval_ms).saturating_add(call_timeout_ms));
        Election {
            margin_ms: leader_margin_ms(call_timeout_ms).min(room),
            refused: 0,
            list_tokens: Vec::new(),
            warned_unconditional: false,
            spread_ms: spread_seed % (FIRST_ROUND_SPREAD_MS + 1),
            first_poll: None,
            next_round_at: 0,
            round_started: 0,
            phase: Phase::Idle,
            register_time_ms: None,
            registered_key: None,
            registered_at: None,
            entry: Entry::Start,
            eligible_from: None,
            entered_store_ms: None,
            seen_since_entry: Vec::new(),
            candidates: Vec::new(),
            leading: false,
            leader_until: 0,
            leader: None,
            skew_ms: 0,
            skew_warned: false,
            stale: Vec::new(),
            malformed_logged: SortedVecSet::new(),
            pending_resign: None,
            settings: ElectionSettings {
                interval_ms,
                ..settings
            },
            prefix,
            register_key,
        }
    }

    /// Whether this node may export now.
    pub(super) fn is_leader(&self, now: u64) -> bool {
        !self.settings.enabled || (self.leading && now < self.leader_until)
    }

    pub(super) fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// The registration this election made, for the next engine to delete when the new
    /// configuration no longer elects under the same key.
    pub(super) fn registration(&self) -> Option<&str> {
        self.registered_key.as_deref()
    }

    pub(super) fn resign_later(&mut self, key: String) {
        self.pending_resign = Some(key);
    }

    /// Carries the state of the previous engine's election (same prefix, same settings).
    /// Kong re-configures the filter on every config change: the round schedule goes on.
    pub(super) fn carry_over(&mut self, previous: Election) {
        let interrupted = !matches!(previous.phase, Phase::Idle);
        *self = Election {
            settings: self.settings.clone(),
            prefix: std::mem::take(&mut self.prefix),
            register_key: std::mem::take(&mut self.register_key),
            phase: Phase::Idle,
            ..previous
        };
        if interrupted {
            // A round's answer is ignored (the phase is reset): that round starts again.
            self.next_round_at = 0;
        }
    }

    /// A round is under way with its next request due (the shell may tick faster).
    pub(super) fn busy(&self) -> bool {
        matches!(
            self.phase,
            Phase::Creating | Phase::Listing { .. } | Phase::Cleaning
        )
    }

    /// The withdrawal a previous configuration left, if any (sent before anything else).
    pub(super) fn pending_resign(
        &mut self,
        now: u64,
        store: &dyn ObjectStore,
    ) -> Option<OutboundRequest> {
        let key = self.pending_resign.take()?;
        match store.delete(&key, now) {
            Ok(request) => {
                self.phase = Phase::Resigning;
                Some(request)
            }
            Err(_) => None,
        }
    }

    /// The next request to send, if any (called on the lease holder's ticks, when no election
    /// call is in flight).
    pub(super) fn poll(
        &mut self,
        now: u64,
        node_id: &str,
        store: &dyn ObjectStore,
        shared: &mut dyn SharedStore,
        fx: &mut Effects,
    ) -> Option<Result<OutboundRequest, String>> {
        if !self.settings.enabled {
            return None;
        }
        if !self.warned_unconditional && !store.conditional_writes() {
            self.warned_unconditional = true;
            fx.log(
                Level::Warn,
                "election: s3_conditional_writes is off: nothing but the election's margins keeps two overlapping uploads apart (docs/election.md, \"Margins\")",
            );
        }
        self.lapse_if_expired(now, fx);
        if !matches!(self.phase, Phase::Idle) {
            return None;
        }
        if self.register_time_ms.is_none() && !self.find_register_time(now, shared, fx) {
            return None;
        }
        if now < self.next_round_at {
            return None;
        }
        let register_time = self.register_time_ms?;
        self.round_started = now;
        self.phase = Phase::Registering;
        let key = store.election_key(&self.prefix, node_id, register_time);
        self.registered_key = Some(key.clone());
        Some(store.put_marker(&key, now))
    }

    /// No successful round for too long (the store unreachable, a partition): the others no
    /// longer count this node, so it must not export either.
    fn lapse_if_expired(&mut self, now: u64, fx: &mut Effects) {
        if !self.leading || now < self.leader_until {
            return;
        }
        self.leading = false;
        self.entry = Entry::Rejoin;
        self.eligible_from = None;
        self.entered_store_ms = None;
        self.seen_since_entry.clear();
        fx.log(
            Level::Warn,
            "election: this node no longer leads the export (its registration could not be refreshed)",
        );
        fx.metric(Metric::ElectionLeader, 0);
    }

    /// Sets the node's register time, the first time this election needs it; returns false
    /// while there is none yet (the first round's spread, a shared-data error).
    fn find_register_time(
        &mut self,
        now: u64,
        shared: &mut dyn SharedStore,
        fx: &mut Effects,
    ) -> bool {
        match self.load_register_time(shared) {
            // The node registered before (another worker held the lease): no delay; it
            // rejoins unless its registration is still fresh.
            Ok(Some((t, refreshed))) => {
                self.register_time_ms = Some(t);
                self.entry = if now < self.valid_after(refreshed) {
                    Entry::Takeover
                } else {
                    Entry::Rejoin
                };
                true
            }
            Ok(None) => {
                let first = *self.first_poll.get_or_insert(now);
                if now < first.saturating_add(self.spread_ms) {
                    return false;
                }
                match self.store_register_time(shared, now) {
                    Ok(t) => {
                        self.register_time_ms = Some(t);
                        true
                    }
                    Err(e) => {
                        fx.log(Level::Warn, format!("election: shared data: {e}"));
                        false
                    }
                }
            }
            Err(e) => {
                fx.log(Level::Warn, format!("election: shared data: {e}"));
                false
            }
        }
    }

    /// The next request of a round under way (a list page, a cleanup), if any.
    pub(super) fn follow_up(
        &mut self,
        now: u64,
        store: &dyn ObjectStore,
    ) -> Option<Result<OutboundRequest, String>> {
        match &self.phase {
            Phase::Creating => {
                let key = self.registered_key.clone()?;
                Some(store.create_marker(&key, now))
            }
            Phase::Listing { next } => Some(store.list(&self.prefix, next.as_deref(), now)),
            Phase::Cleaning => match self.stale.pop() {
                Some(key) => Some(store.delete(&key, now)),
                None => {
                    self.phase = Phase::Idle;
                    None
                }
            },
            _ => None,
        }
    }

    pub(super) fn on_answer(
        &mut self,
        response: HttpResponse,
        now: u64,
        node_id: &str,
        store: &dyn ObjectStore,
        shared: &mut dyn SharedStore,
        fx: &mut Effects,
    ) {
        self.measure_skew(&response, now, fx);
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Idle => {}
            phase @ (Phase::Registering | Phase::Creating) => match store.parse_put(&response) {
                PutOutcome::Stored { .. } => self.registered(now, shared),
                PutOutcome::Failed(e)
                    if e.status == 404
                        && store.refreshes_in_place()
                        && matches!(phase, Phase::Registering) =>
                {
                    self.phase = Phase::Creating;
                }
                PutOutcome::PreconditionFailed => self.round_failed(now, "registration refused (412)", fx),
                PutOutcome::Failed(e) => self.round_failed(now, &format!("registration failed: {e}"), fx),
            },
            Phase::Listing { .. } => match store.parse_list(&response) {
                ListOutcome::Page { entries, next } => {
                    self.add_candidates(&entries, store, fx);
                    self.next_page(next, now, node_id, shared, fx);
                }
                ListOutcome::Failed(e) if matches!(e.status, 401 | 403) => {
                    self.listing_refused(now, node_id, &e, fx)
                }
                ListOutcome::Failed(e) => self.listing_failed(now, &format!("listing candidates failed: {e}"), fx),
            },
            Phase::Cleaning => match store.parse_delete(&response) {
                DeleteOutcome::Deleted => self.phase = Phase::Cleaning,
                DeleteOutcome::Failed(e) => {
                    fx.log(Level::Info, format!("election: cleanup stopped: {e}"));
                    self.stale.clear();
                }
            },
            Phase::Resigning => match store.parse_delete(&response) {
                DeleteOutcome::Deleted => fx.log(Level::Info, "election: registration withdrawn"),
                DeleteOutcome::Failed(e) => fx.log(
                    Level::Warn,
                    format!("election: withdrawing the registration failed: {e} (it goes stale instead)"),
                ),
            },
        }
    }

    /// The registration (or its creation) was stored: the round lists the candidates next.
    fn registered(&mut self, now: u64, shared: &mut dyn SharedStore) {
        // Counted from when the registration was sent: the store stamped it no
        // earlier, and the answer may come up to a call timeout later.
        let sent = self.round_started.min(now);
        if self
            .registered_at
            .is_some_and(|prev| sent > self.valid_after(prev))
        {
            // This node's registration went stale meanwhile (failed rounds, an answer
            // a reconfiguration dropped): the others may have listed without it, so
            // their refreshes since its entry prove nothing. It enters anew (found
            // by the chaos test without conditional writes: two leaders).
            self.entered_store_ms = None;
            self.seen_since_entry.clear();
            self.eligible_from = None;
        }
        self.registered_at = Some(sent);
        self.note_refresh(shared, sent);
        if self.eligible_from.is_none() && self.entry == Entry::Takeover {
            self.eligible_from = Some(now);
        }
        self.candidates.clear();
        self.list_tokens.clear();
        self.phase = Phase::Listing { next: None };
    }

    /// A listing page's candidates; keys that are not registrations are skipped (logged once).
    fn add_candidates(&mut self, entries: &[ListEntry], store: &dyn ObjectStore, fx: &mut Effects) {
        for entry in entries {
            if entry.key == self.prefix {
                continue;
            }
            match store.election_candidate(&self.prefix, entry) {
                Ok(c) => self.candidates.push((entry.key.clone(), c)),
                Err(why) => {
                    if self.malformed_logged.len() < 1_000
                        && self.malformed_logged.insert(entry.key.clone())
                    {
                        fx.log(
                            Level::Info,
                            format!("election: skipping {}: {why}", store.describe(&entry.key)),
                        );
                    }
                }
            }
        }
    }

    /// After a listing page: the next page, or the decision on what was read.
    fn next_page(
        &mut self,
        next: Option<String>,
        now: u64,
        node_id: &str,
        shared: &mut dyn SharedStore,
        fx: &mut Effects,
    ) {
        match next {
            Some(token) if self.list_tokens.contains(&token) => self.listing_failed(
                now,
                "listing candidates failed: the store repeated a continuation token",
                fx,
            ),
            Some(token) if self.list_tokens.len() < MAX_LIST_PAGES as usize => {
                self.list_tokens.push(token.clone());
                self.phase = Phase::Listing { next: Some(token) };
            }
            Some(_) => {
                fx.log(
                    Level::Warn,
                    format!(
                        "election: the listing was cut after {MAX_LIST_PAGES} pages; deciding on what it read"
                    ),
                );
                self.decide(now, node_id, shared, fx)
            }
            None => self.decide(now, node_id, shared, fx),
        }
    }

    pub(super) fn on_failure(&mut self, reason: &str, now: u64, fx: &mut Effects) {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Registering | Phase::Creating => {
                self.round_failed(now, &format!("request failed: {reason}"), fx)
            }
            Phase::Listing { .. } => {
                self.listing_failed(now, &format!("request failed: {reason}"), fx)
            }
            Phase::Cleaning => self.stale.clear(),
            Phase::Resigning => fx.log(
                Level::Warn,
                format!("election: withdrawing the registration failed: {reason} (it goes stale instead)"),
            ),
            Phase::Idle => {}
        }
    }

    /// This node's registration to delete when it stops (graceful hand-over), if it has one.
    pub(super) fn resign(&mut self) -> Option<String> {
        self.leading = false;
        self.leader_until = 0;
        self.registered_at = None;
        self.registered_key.take()
    }

    /// The listing failed after the registration succeeded: the others see a refresh, which to
    /// them means this node listed and saw anyone older (`decide` counts on it). A leader that
    /// did not list steps down until a round succeeds; otherwise Kong's rule.
    fn listing_failed(&mut self, now: u64, what: &str, fx: &mut Effects) {
        if self.leading {
            self.leading = false;
            fx.log(
                Level::Warn,
                "election: this node no longer leads the export until a listing succeeds (its refresh tells the others it listed)",
            );
            fx.metric(Metric::ElectionLeader, 0);
        }
        self.round_failed(now, what, fx);
    }

    /// Kong's rule: a failed register or list leaves leadership as it was (until it expires).
    fn round_failed(&mut self, now: u64, what: &str, fx: &mut Effects) {
        fx.log(
            Level::Warn,
            format!("election: {what}; leadership unchanged"),
        );
        fx.metric(Metric::ElectionFailuresTotal, 1);
        // The gauge is the node's: a worker that took the lease over from a leader that died
        // reports what it knows (found by the chaos test: a partitioned node's gauge stayed 1).
        fx.metric(Metric::ElectionLeader, u64::from(self.leading));
        let retry = (self.settings.interval_ms / 10)
            .clamp(1_000, 30_000)
            .min(self.settings.interval_ms);
        self.next_round_at = now.saturating_add(retry);
    }

    /// The round's listing is complete: who leads, whether this node does, when it looks again,
    /// and which long-stale registrations it deletes.
    fn decide(&mut self, now: u64, node_id: &str, shared: &mut dyn SharedStore, fx: &mut Effects) {
        let store_now = shift(now, self.skew_ms);
        let registered_store = shift(self.registered_at.unwrap_or(now), self.skew_ms);
        self.count_own_registration(node_id, registered_store);
        // Took back a stale older registration: the others listed this node under its newer,
        // younger key, so nothing they did yet shows they saw it older.
        let re_entered = self.adopt_older_registration(node_id, now, store_now, shared, fx);
        if re_entered {
            self.entered_store_ms = None;
            self.seen_since_entry.clear();
        }
        // Decided on here; the next round lists anew.
        let candidates = std::mem::take(&mut self.candidates);
        let fresh = self.fresh_candidates(&candidates, store_now);
        let fresh_nodes = distinct_nodes(&fresh);
        fx.metric(Metric::ElectionCandidates, fresh_nodes as u64);
        let leader = fresh.first().copied();
        let leader_id = leader.map(|c| c.node_id.clone());
        self.note_leader(leader_id.as_deref(), fresh_nodes, fx);
        let first_in_line = leader_id.as_deref() == Some(node_id);
        // Not this round when it just took back an older registration: its entry begins when that
        // registration is refreshed (the next round).
        let entered =
            (!re_entered).then(|| self.entered_store(&candidates, node_id, registered_store));
        let others: Vec<&ElectionCandidate> = fresh
            .iter()
            .copied()
            .filter(|c| c.node_id != node_id)
            .collect();
        self.note_seen_since_entry(&others, entered);
        let eligible = self.leading
            || self.eligible_from.is_some_and(|t| now >= t)
            || self.seen_by_all(&others, entered, store_now);
        let leading = first_in_line && eligible;
        self.lead(leading, leader_id, now, fx);
        let leader_elsewhere = leader.filter(|l| l.node_id != node_id);
        self.next_round_at =
            self.next_round_time(now, first_in_line && !leading, &others, leader_elsewhere);
        if leading {
            self.queue_cleanup(&candidates, node_id, store_now, fx);
        }
        if !self.stale.is_empty() {
            self.phase = Phase::Cleaning;
        }
    }

    /// This node registered a moment ago; a listing that lags behind still counts it.
    fn count_own_registration(&mut self, node_id: &str, registered_store: u64) {
        let Some(t) = self.register_time_ms else {
            return;
        };
        if self.candidates.iter().any(|(_, c)| c.node_id == node_id) {
            return;
        }
        let key = self.registered_key.clone().unwrap_or_default();
        let me = ElectionCandidate {
            node_id: node_id.to_string(),
            register_time_ms: t,
            refreshed_ms: registered_store,
        };
        self.candidates.push((key, me));
    }

    /// The fresh candidates (`store_now <= refreshed + interval + 5 s`) in Kong's order: the
    /// smallest register time first, ties broken by node id. The first leads.
    fn fresh_candidates<'c>(
        &self,
        candidates: &'c [(String, ElectionCandidate)],
        store_now: u64,
    ) -> Vec<&'c ElectionCandidate> {
        let window = self.freshness_window();
        let mut fresh: Vec<&ElectionCandidate> = candidates
            .iter()
            .map(|(_, c)| c)
            .filter(|c| store_now <= c.refreshed_ms.saturating_add(window))
            .collect();
        crate::sort::sort_by(&mut fresh, |a, b| {
            (a.register_time_ms, a.node_id.as_str()).cmp(&(b.register_time_ms, b.node_id.as_str()))
        });
        fresh
    }

    /// How long after its refresh a candidate counts: Kong's interval + 5 s.
    fn freshness_window(&self) -> u64 {
        self.settings.interval_ms.saturating_add(FRESHNESS_GRACE_MS)
    }

    /// Logs and counts a change of leader.
    fn note_leader(&self, leader_id: Option<&str>, fresh_nodes: usize, fx: &mut Effects) {
        if leader_id == self.leader.as_deref() {
            return;
        }
        fx.log(
            Level::Info,
            format!(
                "election: leader is {} ({} fresh candidate(s))",
                leader_id.unwrap_or("nobody"),
                fresh_nodes
            ),
        );
        fx.metric(Metric::ElectionLeaderChangesTotal, 1);
    }

    /// When this node entered the race (its registration's first listed store time).
    fn entered_store(
        &mut self,
        candidates: &[(String, ElectionCandidate)],
        node_id: &str,
        registered_store: u64,
    ) -> u64 {
        *self.entered_store_ms.get_or_insert_with(|| {
            candidates
                .iter()
                .filter(|(_, c)| c.node_id == node_id)
                .map(|(_, c)| c.refreshed_ms)
                .max()
                .unwrap_or(registered_store)
        })
    }

    /// Records the first refresh of each other candidate that refreshed (and so listed) after
    /// this node entered.
    fn note_seen_since_entry(&mut self, others: &[&ElectionCandidate], entered: Option<u64>) {
        let Some(seen_after) = entered.map(|e| e.saturating_add(DATE_RESOLUTION_MS)) else {
            return;
        };
        for c in others.iter().filter(|c| c.refreshed_ms > seen_after) {
            if self.first_seen(&c.node_id).is_none() && self.seen_since_entry.len() < 1_000 {
                self.seen_since_entry
                    .push((c.node_id.clone(), c.refreshed_ms));
            }
        }
    }

    /// The first refresh (store time) of `node_id` seen since this node entered.
    fn first_seen(&self, node_id: &str) -> Option<u64> {
        self.seen_since_entry
            .iter()
            .find(|(id, _)| id == node_id)
            .map(|(_, t)| *t)
    }

    /// A node first in line leads once nobody else can be leading: no other fresh
    /// candidate, or every other one refreshed (and so listed, and saw this node older)
    /// since it entered, long enough ago for that listing to be answered. A worker taking
    /// over the lease of a node already in line leads at once (`Entry::Takeover`, through
    /// `eligible_from`).
    fn seen_by_all(
        &self,
        others: &[&ElectionCandidate],
        entered: Option<u64>,
        store_now: u64,
    ) -> bool {
        let settled_at = self.margin_settle();
        others.is_empty()
            || (entered.is_some()
                && others.iter().all(|c| {
                    self.first_seen(&c.node_id)
                        .is_some_and(|t| store_now >= t.saturating_add(settled_at))
                }))
    }

    /// Takes the round's outcome: whether this node leads, and until when it may.
    fn lead(&mut self, leading: bool, leader_id: Option<String>, now: u64, fx: &mut Effects) {
        if leading != self.leading {
            fx.log(
                Level::Info,
                if leading {
                    "election: this node now leads the export"
                } else {
                    "election: this node no longer leads the export"
                },
            );
        }
        fx.metric(Metric::ElectionLeader, u64::from(leading));
        if self.refused > 0 {
            self.refused = 0;
            fx.log(Level::Info, "election: the listing works again");
            fx.metric(Metric::ElectionBlind, 0);
        }
        self.leading = leading;
        self.leader = leader_id;
        // The others count this node until its refresh + interval + 5 s: stop leading earlier.
        self.leader_until = self.valid_until(now);
    }

    /// When the next round starts: a round period after this one's start, earlier for a node
    /// waiting first in line or following a leader that may go stale meanwhile.
    fn next_round_time(
        &self,
        now: u64,
        waiting_first: bool,
        others: &[&ElectionCandidate],
        leader_elsewhere: Option<&ElectionCandidate>,
    ) -> u64 {
        let mut next = self.round_started.saturating_add(self.round_period());
        if waiting_first {
            // Look again once the others have had their next round (a config-bridge node
            // refreshes every round period, Kong every interval: whichever comes first).
            let settled_at = self.margin_settle();
            let next_seen = others
                .iter()
                .map(|c| match self.first_seen(&c.node_id) {
                    Some(t) => t,
                    None => c.refreshed_ms.saturating_add(self.round_period()),
                })
                .map(|t| {
                    unshift(t.saturating_add(settled_at), self.skew_ms)
                        .saturating_add(FOLLOWER_CHECK_MARGIN_MS)
                })
                .filter(|&t| t > now)
                .min()
                .unwrap_or(next);
            next = next_seen.max(now.saturating_add(1_000)).min(next);
        }
        if let Some(l) = leader_elsewhere {
            // Look again just after the leader would go stale, in local time.
            let stale_at = unshift(
                l.refreshed_ms.saturating_add(self.freshness_window()),
                self.skew_ms,
            )
            .saturating_add(FOLLOWER_CHECK_MARGIN_MS);
            next = next.min(stale_at.max(now.saturating_add(1_000)));
        }
        next
    }

    /// The leader deletes registrations of other nodes silent for long (`cleanup_after_ms`), at
    /// most `CLEANUP_PER_ROUND` per round.
    fn queue_cleanup(
        &mut self,
        candidates: &[(String, ElectionCandidate)],
        node_id: &str,
        store_now: u64,
        fx: &mut Effects,
    ) {
        let cutoff = cleanup_after_ms(self.settings.interval_ms);
        let before = self.stale.len();
        self.stale.extend(
            candidates
                .iter()
                .filter(|(_, c)| {
                    c.node_id != node_id && store_now > c.refreshed_ms.saturating_add(cutoff)
                })
                .map(|(key, _)| key.clone())
                .take(CLEANUP_PER_ROUND),
        );
        if self.stale.len() > before {
            fx.log(
                Level::Info,
                format!(
                    "election: deleting {} long-stale registration(s)",
                    self.stale.len() - before
                ),
            );
        }
    }

    /// How long after another candidate's refresh its listing has surely been answered (a call
    /// timeout and the `Date` resolution).
    fn margin_settle(&self) -> u64 {
        self.margin_ms
            .saturating_sub(SKEW_NOISE_MS.unsigned_abs())
            .max(DATE_RESOLUTION_MS)
    }

    /// Until when a registration sent at `registered_at` lets this node lead (local time).
    fn valid_until(&self, now: u64) -> u64 {
        self.valid_after(self.registered_at.unwrap_or(now))
    }

    /// Until when a registration sent at `sent` counts for sure (local time).
    fn valid_after(&self, sent: u64) -> u64 {
        sent.saturating_add(self.settings.interval_ms)
            .saturating_add(FRESHNESS_GRACE_MS)
            .saturating_sub(self.margin_ms)
    }

    /// The listing shows an older registration of this node (its shared data was wiped by a
    /// reload or a restart, so it registered anew): it takes that place back from the next
    /// round on, and deletes the newer key (one registration per node).
    /// Returns whether it took back a registration that had gone stale (the others may lead).
    fn adopt_older_registration(
        &mut self,
        node_id: &str,
        now: u64,
        store_now: u64,
        shared: &mut dyn SharedStore,
        fx: &mut Effects,
    ) -> bool {
        let Some(mine) = self.register_time_ms else {
            return false;
        };
        let older = self
            .candidates
            .iter()
            .filter(|(_, c)| c.node_id == node_id && c.register_time_ms < mine)
            .min_by_key(|(_, c)| c.register_time_ms)
            .map(|(key, c)| (key.clone(), c.register_time_ms, c.refreshed_ms));
        let Some((key, t, refreshed_ms)) = older else {
            return false;
        };
        // Still fresh (the node's previous workers refreshed it moments ago: a reload): nobody
        // else can have led meanwhile, so no settle round, as for a lease takeover.
        let fresh_until = refreshed_ms
            .saturating_add(self.settings.interval_ms)
            .saturating_add(FRESHNESS_GRACE_MS)
            .saturating_sub(self.margin_ms);
        let fresh = store_now < fresh_until;
        if fresh {
            self.entry = Entry::Takeover;
            self.eligible_from = Some(now);
        }
        if let Some(newer) = self.registered_key.replace(key.clone()) {
            if newer != key {
                self.stale.push(newer);
            }
        }
        self.register_time_ms = Some(t);
        let refreshed = self.registered_at.unwrap_or(0);
        if let Ok((_, cas)) = shared.get(&self.register_key) {
            let _ = shared.set(
                &self.register_key,
                format!("{t} {refreshed}").as_bytes(),
                cas,
            );
        }
        fx.log(
            Level::Info,
            "election: this node registered before (its shared data was reset); it keeps its first registration",
        );
        !fresh
    }

    /// The listing was refused (401/403): this node cannot see the other candidates. Kong's
    /// rule (leadership unchanged) would silence a lone node for good, so it leads blind, as with
    /// `election: false`, and says so loudly every round: conditional writes and the provenance
    /// rule still keep an older config from replacing a newer one (docs/election.md).
    fn listing_refused(&mut self, now: u64, node_id: &str, e: &StoreError, fx: &mut Effects) {
        self.refused = self.refused.saturating_add(1);
        fx.metric(Metric::ElectionFailuresTotal, 1);
        fx.metric(Metric::ElectionBlind, 1);
        fx.log(
            Level::Error,
            format!(
                "election: listing the candidates was refused ({e}): the credentials need s3:ListBucket (GCS: storage.objects.list) on the election prefix; this node exports as if alone until the listing works"
            ),
        );
        if !self.leading {
            fx.log(
                Level::Info,
                "election: this node now leads the export (blind: it cannot list the candidates)",
            );
        }
        self.leading = true;
        self.leader = Some(node_id.to_string());
        fx.metric(Metric::ElectionLeader, 1);
        self.leader_until = self.valid_until(now);
        self.next_round_at = self.round_started.saturating_add(self.round_period());
        self.candidates.clear();
    }

    fn measure_skew(&mut self, response: &HttpResponse, now: u64, fx: &mut Effects) {
        let Some(date) = response.header("date").and_then(http_date_ms) else {
            return;
        };
        let measured = i64::try_from(date)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(now).unwrap_or(i64::MAX));
        self.skew_ms = if measured.abs() < SKEW_NOISE_MS {
            0
        } else {
            measured
        };
        fx.metric(Metric::ElectionClockSkewMs, self.skew_ms.unsigned_abs());
        let over = self.skew_ms.abs() > SKEW_WARN_MS;
        if over && !self.skew_warned {
            fx.log(
                Level::Warn,
                format!(
                    "election: this node's clock is {} ms {} the store's; freshness is judged on the store's clock",
                    self.skew_ms.unsigned_abs(),
                    if self.skew_ms > 0 { "behind" } else { "ahead of" }
                ),
            );
        }
        self.skew_warned = over;
    }

    /// Candidates re-register every three quarters of the interval: Kong re-registers every
    /// interval and drops a candidate silent for interval + 5 s, which leaves no room for a
    /// retry; a quarter interval does (and Kong nodes still see us fresh).
    fn round_period(&self) -> u64 {
        round_period(self.settings.interval_ms)
    }

    /// The node's register time and last refresh from shared data (`<register> <refreshed>`).
    fn load_register_time(
        &self,
        shared: &mut dyn SharedStore,
    ) -> Result<Option<(u64, u64)>, String> {
        let (value, _) = shared.get(&self.register_key)?;
        Ok(value
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| parse_record(&s)))
    }

    /// Records a successful refresh for a worker that takes over the lease (best effort: without
    /// it, that worker rejoins, which is slower, not wrong).
    fn note_refresh(&self, shared: &mut dyn SharedStore, now: u64) {
        let Some(t) = self.register_time_ms else {
            return;
        };
        if let Ok((_, cas)) = shared.get(&self.register_key) {
            let _ = shared.set(&self.register_key, format!("{t} {now}").as_bytes(), cas);
        }
    }

    /// The first worker to register writes the node's register time; a racing worker's wins.
    fn store_register_time(&self, shared: &mut dyn SharedStore, now: u64) -> Result<u64, String> {
        let (existing, cas) = shared.get(&self.register_key)?;
        if let Some((t, _)) = existing
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| parse_record(&s))
        {
            return Ok(t);
        }
        if shared.set(&self.register_key, format!("{now} 0").as_bytes(), cas)? {
            return Ok(now);
        }
        self.load_register_time(shared)?
            .map(|(t, _)| t)
            .ok_or_else(|| "register time vanished".to_string())
    }
}

fn round_period(interval_ms: u64) -> u64 {
    (interval_ms / 4 * 3).max(1_000)
}

/// How many nodes the fresh candidates are. A node registered several times (a reload wipes
/// shared data, so it registers anew) is one candidate; its oldest fresh registration stands for
/// it in Kong's order.
fn distinct_nodes(fresh: &[&ElectionCandidate]) -> usize {
    let mut nodes: Vec<&str> = fresh.iter().map(|c| c.node_id.as_str()).collect();
    crate::sort::sort(&mut nodes);
    nodes.dedup();
    nodes.len()
}

fn parse_record(s: &str) -> Option<(u64, u64)> {
    // ASCII: the record is written by this filter as "{t} {now}" (no Unicode whitespace tables).
    let mut parts = s.split_ascii_whitespace();
    let t = parts.next()?.parse().ok()?;
    let refreshed = parts.next().and_then(|r| r.parse().ok()).unwrap_or(0);
    Some((t, refreshed))
}

/// Registrations of nodes silent this long are deleted by the leader: long enough that a node
/// merely partitioned or restarting keeps its place (it re-registers with its old time).
pub(crate) fn cleanup_after_ms(interval_ms: u64) -> u64 {
    interval_ms.saturating_mul(3).max(3_600_000)
}

fn shift(local: u64, skew: i64) -> u64 {
    if skew >= 0 {
        local.saturating_add(skew.unsigned_abs())
    } else {
        local.saturating_sub(skew.unsigned_abs())
    }
}

fn unshift(store: u64, skew: i64) -> u64 {
    shift(store, skew.saturating_neg())
}

#[cfg(test)]
#[path = "election_tests.rs"]
mod tests;
