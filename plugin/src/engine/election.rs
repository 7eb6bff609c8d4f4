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

use std::collections::BTreeSet;

use super::effects::{Effects, Level, Metric};
use crate::http::{HttpResponse, OutboundRequest};
use crate::node_lock::SharedStore;
use crate::settings::ElectionSettings;
use crate::store::election_objects::ElectionCandidate;
use crate::store::timestamp::http_date_ms;
use crate::store::{DeleteOutcome, ListOutcome, ObjectStore, PutOutcome};

/// Kong's grace on top of the interval before a candidate counts as gone.
pub(crate) const FRESHNESS_GRACE_MS: u64 = 5_000;
/// The leader stops leading this long before the others could count it stale (covers the
/// `Date` header's one-second resolution and the round trip).
const LEADER_MARGIN_MS: u64 = 2_000;
/// A follower lists this long after the leader's registration would go stale.
const FOLLOWER_CHECK_MARGIN_MS: u64 = 1_000;
/// Kong waits a random 0–5 s before a node's first round (no thundering herd at fleet start).
const FIRST_ROUND_SPREAD_MS: u64 = 5_000;
/// A node leads only from a round this long after its first registration: nodes started
/// together register within the 0–5 s spread, so by then each one sees all the others (else the
/// first to register would lead alone until its next round).
pub(crate) const SETTLE_MS: u64 = FIRST_ROUND_SPREAD_MS + 1_000;
/// A node coming back (its registration went stale, so another may lead now) waits a round
/// period and this much more, so the other has listed it and stepped down first.
const REJOIN_MARGIN_MS: u64 = 5_000;
const SKEW_WARN_MS: i64 = 2_000;
/// Measured skews below this are the `Date` header's resolution, not skew.
const SKEW_NOISE_MS: i64 = 1_500;
/// Stale registrations deleted per round at most.
const CLEANUP_PER_ROUND: usize = 10;
/// Kong lists at most 1,000 keys per page; more pages are followed, up to this many keys.
const MAX_CANDIDATES: usize = 100_000;

#[derive(Debug)]
enum Phase {
    /// Waiting for `next_round_at`.
    Idle,
    Registering,
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
    /// Local time of the last successful registration.
    registered_at: Option<u64>,
    /// How this node (re-)enters the race, decided when it registers; and from when it may
    /// lead, set by the first registration of that entry.
    entry: Entry,
    eligible_from: Option<u64>,
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
    malformed_logged: BTreeSet<String>,
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
    ) -> Election {
        Election {
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
            candidates: Vec::new(),
            leading: false,
            leader_until: 0,
            leader: None,
            skew_ms: 0,
            skew_warned: false,
            stale: Vec::new(),
            malformed_logged: BTreeSet::new(),
            pending_resign: None,
            settings: ElectionSettings {
                interval_ms: settings.interval_ms.max(1),
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
    pub(super) fn carry_over(&mut self, previous: Election) {
        let phase = std::mem::replace(&mut self.phase, Phase::Idle);
        *self = Election {
            settings: self.settings.clone(),
            prefix: std::mem::take(&mut self.prefix),
            register_key: std::mem::take(&mut self.register_key),
            phase,
            ..previous
        };
        // A call of the previous machine may still be in flight: its answer is ignored, the
        // next round starts at once.
        self.phase = Phase::Idle;
        self.next_round_at = 0;
    }

    /// A round is under way with its next request due (the shell may tick faster).
    pub(super) fn busy(&self) -> bool {
        matches!(self.phase, Phase::Listing { .. } | Phase::Cleaning)
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
        if self.leading && now >= self.leader_until {
            // No successful round for too long (the store unreachable, a partition): the others
            // no longer count this node, so it must not export either.
            self.leading = false;
            self.entry = Entry::Rejoin;
            self.eligible_from = None;
            fx.log(
                Level::Warn,
                "election: this node no longer leads the export (its registration could not be refreshed)",
            );
            fx.metric(Metric::ElectionLeader, 0);
        }
        if !matches!(self.phase, Phase::Idle) {
            return None;
        }
        if self.register_time_ms.is_none() {
            match self.load_register_time(shared) {
                // The node registered before (another worker held the lease): no delay; it
                // rejoins unless its registration is still fresh.
                Ok(Some((t, refreshed))) => {
                    self.register_time_ms = Some(t);
                    let fresh_until = refreshed
                        .saturating_add(self.settings.interval_ms)
                        .saturating_add(FRESHNESS_GRACE_MS)
                        .saturating_sub(LEADER_MARGIN_MS);
                    self.entry = if now < fresh_until {
                        Entry::Takeover
                    } else {
                        Entry::Rejoin
                    };
                }
                Ok(None) => {
                    let first = *self.first_poll.get_or_insert(now);
                    if now < first.saturating_add(self.spread_ms) {
                        return None;
                    }
                    match self.store_register_time(shared, now) {
                        Ok(t) => self.register_time_ms = Some(t),
                        Err(e) => {
                            fx.log(Level::Warn, format!("election: shared data: {e}"));
                            return None;
                        }
                    }
                }
                Err(e) => {
                    fx.log(Level::Warn, format!("election: shared data: {e}"));
                    return None;
                }
            }
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

    /// The next request of a round under way (a list page, a cleanup), if any.
    pub(super) fn follow_up(
        &mut self,
        now: u64,
        store: &dyn ObjectStore,
    ) -> Option<Result<OutboundRequest, String>> {
        match &self.phase {
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
            Phase::Registering => match store.parse_put(&response) {
                PutOutcome::Stored { .. } => {
                    self.registered_at = Some(now);
                    self.note_refresh(shared, now);
                    if self.eligible_from.is_none() {
                        let wait = match self.entry {
                            Entry::Start => SETTLE_MS,
                            Entry::Takeover => 0,
                            Entry::Rejoin => self.round_period().saturating_add(REJOIN_MARGIN_MS),
                        };
                        self.eligible_from = Some(now.saturating_add(wait));
                    }
                    self.candidates.clear();
                    self.phase = Phase::Listing { next: None };
                }
                PutOutcome::PreconditionFailed => self.round_failed(now, "registration refused (412)", fx),
                PutOutcome::Failed(e) => self.round_failed(now, &format!("registration failed: {e}"), fx),
            },
            Phase::Listing { .. } => match store.parse_list(&response) {
                ListOutcome::Page { entries, next } => {
                    for entry in &entries {
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
                    match next {
                        Some(token) if self.candidates.len() < MAX_CANDIDATES => {
                            self.phase = Phase::Listing { next: Some(token) };
                        }
                        _ => self.decide(now, node_id, fx),
                    }
                }
                ListOutcome::Failed(e) => self.round_failed(now, &format!("listing candidates failed: {e}"), fx),
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

    pub(super) fn on_failure(&mut self, reason: &str, now: u64, fx: &mut Effects) {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Registering | Phase::Listing { .. } => {
                self.round_failed(now, &format!("request failed: {reason}"), fx)
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

    /// Kong's rule: a failed register or list leaves leadership as it was (until it expires).
    fn round_failed(&mut self, now: u64, what: &str, fx: &mut Effects) {
        fx.log(
            Level::Warn,
            format!("election: {what}; leadership unchanged"),
        );
        fx.metric(Metric::ElectionFailuresTotal, 1);
        let retry = (self.settings.interval_ms / 10)
            .clamp(1_000, 30_000)
            .min(self.settings.interval_ms);
        self.next_round_at = now.saturating_add(retry);
    }

    fn decide(&mut self, now: u64, node_id: &str, fx: &mut Effects) {
        let interval = self.settings.interval_ms;
        let store_now = shift(now, self.skew_ms);
        let registered_store = shift(self.registered_at.unwrap_or(now), self.skew_ms);
        // This node registered a moment ago; a listing that lags behind still counts it.
        if let Some(t) = self.register_time_ms {
            if !self.candidates.iter().any(|(_, c)| c.node_id == node_id) {
                let key = self.registered_key.clone().unwrap_or_default();
                let me = ElectionCandidate {
                    node_id: node_id.to_string(),
                    register_time_ms: t,
                    refreshed_ms: registered_store,
                };
                self.candidates.push((key, me));
            }
        }
        let window = interval.saturating_add(FRESHNESS_GRACE_MS);
        let mut fresh: Vec<&ElectionCandidate> = self
            .candidates
            .iter()
            .map(|(_, c)| c)
            .filter(|c| store_now <= c.refreshed_ms.saturating_add(window))
            .collect();
        fresh.sort_by(|a, b| {
            (a.register_time_ms, a.node_id.as_str()).cmp(&(b.register_time_ms, b.node_id.as_str()))
        });
        let leader = fresh.first().map(|c| (*c).clone());
        fx.metric(Metric::ElectionCandidates, fresh.len() as u64);

        let leader_id = leader.as_ref().map(|c| c.node_id.clone());
        if leader_id != self.leader {
            fx.log(
                Level::Info,
                format!(
                    "election: leader is {} ({} fresh candidate(s))",
                    leader_id.as_deref().unwrap_or("nobody"),
                    fresh.len()
                ),
            );
            fx.metric(Metric::ElectionLeaderChangesTotal, 1);
        }
        let settle_until = self.eligible_from.unwrap_or(u64::MAX);
        let first_in_line = leader_id.as_deref() == Some(node_id);
        let leading = first_in_line && now >= settle_until;
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
        self.leading = leading;
        self.leader = leader_id;
        // The others count this node until its refresh + interval + 5 s: stop leading earlier.
        let registered = self.registered_at.unwrap_or(now);
        self.leader_until = registered
            .saturating_add(window)
            .saturating_sub(LEADER_MARGIN_MS);

        self.next_round_at = self.round_started.saturating_add(self.round_period());
        if first_in_line && !leading {
            // Confirm once the others have had their round (see `Entry`).
            self.next_round_at = settle_until.max(now.saturating_add(1_000));
        }
        if let Some(l) = leader.as_ref().filter(|l| l.node_id != node_id) {
            // Look again just after the leader would go stale, in local time.
            let stale_at = unshift(l.refreshed_ms.saturating_add(window), self.skew_ms)
                .saturating_add(FOLLOWER_CHECK_MARGIN_MS);
            self.next_round_at = self
                .next_round_at
                .min(stale_at.max(now.saturating_add(1_000)));
        }

        if leading {
            let cutoff = cleanup_after_ms(interval);
            self.stale = self
                .candidates
                .iter()
                .filter(|(_, c)| {
                    c.node_id != node_id && store_now > c.refreshed_ms.saturating_add(cutoff)
                })
                .map(|(key, _)| key.clone())
                .take(CLEANUP_PER_ROUND)
                .collect();
            if !self.stale.is_empty() {
                fx.log(
                    Level::Info,
                    format!(
                        "election: deleting {} long-stale registration(s)",
                        self.stale.len()
                    ),
                );
                self.phase = Phase::Cleaning;
            }
        }
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
        (self.settings.interval_ms / 4 * 3).max(1_000)
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

fn parse_record(s: &str) -> Option<(u64, u64)> {
    let mut parts = s.split_whitespace();
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
