//! The history sub-machine (docs/history.md): every stored export also lands as an immutable
//! history object, and retention prunes them. Runs in the node's lease holder while this node
//! leads the export, one request in flight at most.
//!
//! A cycle: list `<prefix>/<version>/history/` (pages followed up to `MAX_LIST_PAGES`); then, for
//! the oldest export waiting to be recorded, upload it under its history key unless the newest
//! history object already has its digest (identical content is never uploaded twice in a row);
//! then delete what `history::prune_plan` names, at most `MAX_DELETES_PER_CYCLE`, oldest first.
//! A cycle starts when an export waits, and at least every `PRUNE_INTERVAL_MS` (age limits
//! apply without exports). Failures are logged and retried later; they never touch the export.

use std::collections::VecDeque;
use std::rc::Rc;

use super::effects::{Effects, Level, Metric};
use crate::backoff::{Backoff, Rng};
use crate::history::{self, HistoryEntry};
use crate::http::{HttpResponse, OutboundRequest};
use crate::settings::HistorySettings;
use crate::store::{DeleteOutcome, ExportMeta, ListOutcome, ObjectStore, Precondition, PutOutcome};

/// Deletions per cycle at most (one request per tick); a longer plan continues at once.
pub(crate) const MAX_DELETES_PER_CYCLE: usize = 20;
/// Listing pages per cycle at most (S3 and GCS answer up to 1,000 keys a page).
const MAX_LIST_PAGES: usize = 20;
/// A cycle at least this often while leading: entries age out without exports.
pub(crate) const PRUNE_INTERVAL_MS: u64 = 3_600_000;
/// Failed pruning cycles in a row retried with backoff; then hourly.
const GIVE_UP_PRUNING_AFTER: u32 = 3;
/// Exports waiting to be recorded at most (each holds its body): the oldest is dropped beyond.
const MAX_WAITING: usize = 4;

/// An export as it was stored as `config.json`: the same bytes and metadata go to history.
#[derive(Clone, Debug)]
pub(super) struct Exported {
    pub body: Rc<Vec<u8>>,
    pub meta: ExportMeta,
    /// When it was stored (host ms): the history key's time.
    pub at: u64,
}

#[derive(Debug)]
enum Phase {
    Idle,
    /// The next page to ask for (or the one in flight).
    Listing {
        next: Option<String>,
    },
    /// The history object being written.
    Writing {
        key: String,
    },
    /// Deleting `deletes` one by one; `current`: the one in flight.
    Deleting {
        current: Option<String>,
    },
}

#[derive(Debug)]
pub(super) struct History {
    settings: HistorySettings,
    /// `<prefix>/<version>/history/`.
    prefix: String,
    waiting: VecDeque<Exported>,
    phase: Phase,
    /// This cycle's listing: history objects directly under `prefix`.
    listed: Vec<HistoryEntry>,
    list_tokens: Vec<String>,
    /// The listing stopped at `MAX_LIST_PAGES` with more to read.
    cut: bool,
    deletes: VecDeque<String>,
    /// The plan was cut at `MAX_DELETES_PER_CYCLE`: the next cycle follows at once.
    more: bool,
    /// Objects deleted this cycle.
    deleted: usize,
    /// `None` until the first tick this node leads (then one interval away).
    next_prune_at: Option<u64>,
    retry_at: u64,
    failures: u32,
    backoff: Backoff,
    rng: Rng,
}

impl History {
    pub(super) fn new(
        settings: HistorySettings,
        prefix: String,
        backoff: Backoff,
        me: u64,
    ) -> History {
        History {
            settings,
            prefix,
            waiting: VecDeque::new(),
            phase: Phase::Idle,
            listed: Vec::new(),
            list_tokens: Vec::new(),
            cut: false,
            deletes: VecDeque::new(),
            more: false,
            deleted: 0,
            next_prune_at: None,
            retry_at: 0,
            failures: 0,
            backoff,
            rng: Rng::new(me ^ 0x4a57_0e11),
        }
    }

    /// A reconfigured root context keeps the waiting exports, the cycle (its call stays in
    /// flight) and the schedule when the history prefix is unchanged.
    pub(super) fn carry_over(&mut self, previous: History) {
        if previous.prefix == self.prefix && self.settings.enabled {
            *self = History {
                settings: self.settings.clone(),
                backoff: self.backoff,
                ..previous
            };
        }
    }

    /// A cycle is under way with its next request due (the shell may tick faster).
    pub(super) fn busy(&self) -> bool {
        !matches!(self.phase, Phase::Idle)
    }

    /// An export was stored (or found already stored): it is recorded at the next cycle.
    pub(super) fn record(&mut self, exported: Exported, fx: &mut Effects) {
        if !self.settings.enabled {
            return;
        }
        if self.waiting.len() >= MAX_WAITING {
            if let Some(dropped) = self.waiting.pop_front() {
                fx.log(
                    Level::Warn,
                    format!(
                        "history: too many exports waiting to be recorded; sha256 {} is not recorded",
                        super::export::short(&dropped.meta.sha256_hex)
                    ),
                );
            }
        }
        self.waiting.push_back(exported);
    }

    /// This node does not lead (or this worker does not hold the lease): exports not recorded
    /// yet are dropped (the leader records its own; a stale one must never become the newest).
    pub(super) fn not_leading(&mut self) {
        self.waiting.clear();
        self.next_prune_at = None;
        // A call still in flight is answered into `Idle` and ignored.
        self.phase = Phase::Idle;
        self.deletes.clear();
    }

    /// The next request, if one is due (the lease holder of the leading node, no history call
    /// in flight).
    pub(super) fn poll(
        &mut self,
        now: u64,
        store: &dyn ObjectStore,
        fx: &mut Effects,
    ) -> Option<Result<OutboundRequest, String>> {
        if !self.settings.enabled {
            return None;
        }
        let prune_at = *self
            .next_prune_at
            .get_or_insert(now.saturating_add(PRUNE_INTERVAL_MS));
        if matches!(self.phase, Phase::Idle) {
            let due = !self.waiting.is_empty() || now >= prune_at;
            if !due || now < self.retry_at {
                return None;
            }
            self.listed.clear();
            self.list_tokens.clear();
            self.cut = false;
            self.deletes.clear();
            self.more = false;
            self.deleted = 0;
            self.phase = Phase::Listing { next: None };
        }
        match &mut self.phase {
            Phase::Idle => None,
            Phase::Listing { next } => Some(store.list(&self.prefix, next.as_deref(), now)),
            Phase::Writing { key } => {
                let Some(waiting) = self.waiting.front() else {
                    self.phase = Phase::Idle;
                    return None;
                };
                let pre = if store.conditional_writes() {
                    Precondition::IfAbsent
                } else {
                    Precondition::None
                };
                Some(store.put(key, &waiting.body, &pre, &waiting.meta, now))
            }
            Phase::Deleting { current } => {
                let Some(key) = self.deletes.pop_front() else {
                    self.finish(now, fx);
                    return None;
                };
                *current = Some(key.clone());
                Some(store.delete(&key, now))
            }
        }
    }

    pub(super) fn on_answer(
        &mut self,
        resp: HttpResponse,
        now: u64,
        store: &dyn ObjectStore,
        fx: &mut Effects,
    ) {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Idle => {}
            Phase::Listing { .. } => self.listed_page(store.parse_list(&resp), now, store, fx),
            Phase::Writing { key } => match store.parse_put(&resp) {
                // 412: a create-only write found the object there (same second, same digest).
                PutOutcome::Stored { .. } | PutOutcome::PreconditionFailed => {
                    fx.log(
                        Level::Info,
                        format!("history: recorded {}", store.describe(&key)),
                    );
                    self.waiting.pop_front();
                    if let Some(entry) = history::parse_history_key(&key) {
                        self.listed.push(entry);
                    }
                    self.plan(now, fx);
                }
                PutOutcome::Failed(e) => {
                    let why = format!("recording {} failed: {e}", store.describe(&key));
                    self.failed(&why, e.needs_operator(), now, fx);
                }
            },
            Phase::Deleting { current } => match store.parse_delete(&resp) {
                DeleteOutcome::Deleted => {
                    if let Some(key) = current {
                        self.listed.retain(|e| e.key != key);
                        self.deleted += 1;
                    }
                    self.phase = Phase::Deleting { current: None };
                }
                DeleteOutcome::Failed(e) => {
                    let what = current.as_deref().unwrap_or(&self.prefix);
                    let why = format!("pruning {} failed: {e}", store.describe(what));
                    self.failed(&why, e.needs_operator(), now, fx);
                }
            },
        }
    }

    /// One page of the history's listing: the next page, or the whole list to plan from.
    fn listed_page(
        &mut self,
        page: ListOutcome,
        now: u64,
        store: &dyn ObjectStore,
        fx: &mut Effects,
    ) {
        let (entries, next) = match page {
            ListOutcome::Page { entries, next } => (entries, next),
            ListOutcome::Failed(e) => {
                let why = format!("listing {} failed: {e}", store.describe(&self.prefix));
                return self.failed(&why, e.needs_operator(), now, fx);
            }
        };
        for e in &entries {
            if let Some(entry) = self.entry(&e.key) {
                self.listed.push(entry);
            }
        }
        match next {
            Some(token) if self.list_tokens.contains(&token) => self.failed(
                "listing failed: the store repeated a continuation token",
                None,
                now,
                fx,
            ),
            Some(token) if self.list_tokens.len() + 1 < MAX_LIST_PAGES => {
                self.list_tokens.push(token.clone());
                self.phase = Phase::Listing { next: Some(token) };
            }
            Some(_) => {
                self.cut = true;
                self.listed_all(now, store, fx);
            }
            None => self.listed_all(now, store, fx),
        }
    }

    /// The call failed at the transport level, timed out, or could not be built.
    pub(super) fn on_failure(
        &mut self,
        reason: &str,
        now: u64,
        store: &dyn ObjectStore,
        fx: &mut Effects,
    ) {
        let what = match &self.phase {
            Phase::Idle => return,
            Phase::Listing { .. } => format!("listing {}", store.describe(&self.prefix)),
            Phase::Writing { key } => format!("recording {}", store.describe(key)),
            Phase::Deleting { current } => {
                format!(
                    "pruning {}",
                    store.describe(current.as_deref().unwrap_or(&self.prefix))
                )
            }
        };
        let why = format!(
            "{what} failed: request to {} failed: {reason}",
            store.upstream()
        );
        self.failed(&why, None, now, fx);
    }

    /// A listed key as a history entry: directly under the prefix, and a history key.
    fn entry(&self, key: &str) -> Option<HistoryEntry> {
        let name = key.strip_prefix(&self.prefix)?;
        if name.contains('/') {
            return None;
        }
        history::parse_history_key(key)
    }

    /// The listing is complete (or cut): record the oldest waiting export, or prune.
    fn listed_all(&mut self, now: u64, store: &dyn ObjectStore, fx: &mut Effects) {
        let Some(waiting) = self.waiting.front() else {
            return self.plan(now, fx);
        };
        let sha = &waiting.meta.sha256_hex;
        // A cut listing holds the oldest objects: the newest is unknown.
        let newest = if self.cut {
            None
        } else {
            history::newest(&self.listed)
        };
        if let Some(n) = newest.filter(|n| sha.starts_with(&n.sha_prefix)) {
            fx.log(
                Level::Info,
                format!(
                    "history: {} already records this config (sha256 {}); nothing to upload",
                    store.describe(&n.key),
                    super::export::short(sha)
                ),
            );
            self.waiting.pop_front();
            return self.plan(now, fx);
        }
        // The newest history object is always the last export, whatever the clocks of
        // successive leaders say: a second past the newest one when that is not older.
        let at = match newest {
            Some(n) if n.uploaded_at_ms / 1000 >= waiting.at / 1000 => {
                n.uploaded_at_ms.saturating_add(1000)
            }
            _ => waiting.at,
        };
        match history::history_key(&self.prefix, at, sha) {
            Some(key) => self.phase = Phase::Writing { key },
            None => {
                // Not a SHA-256 hex digest: nothing this core writes; never recorded.
                self.waiting.pop_front();
                fx.log(
                    Level::Warn,
                    "history: an export without a valid digest is not recorded",
                );
                self.plan(now, fx);
            }
        }
    }

    /// Retention: the deletions of this cycle, or the end of it.
    fn plan(&mut self, now: u64, fx: &mut Effects) {
        let unseen = usize::from(self.cut);
        let plan = history::prune_plan_partial(
            &self.listed,
            unseen,
            now,
            self.settings.keep,
            self.settings.max_age_ms,
            MAX_DELETES_PER_CYCLE,
        );
        // Defence in depth: only history keys directly under the prefix, never the newest.
        let newest = history::newest(&self.listed).map(|e| e.key.clone());
        let plan: VecDeque<String> = plan
            .into_iter()
            .filter(|k| self.entry(k).is_some() && Some(k) != newest.as_ref())
            .collect();
        if plan.is_empty() {
            return self.finish(now, fx);
        }
        self.more = plan.len() >= MAX_DELETES_PER_CYCLE;
        self.deleted = 0;
        self.deletes = plan;
        self.phase = Phase::Deleting { current: None };
    }

    /// The cycle is done: the next one when an export waits, a plan was cut, or in an interval.
    fn finish(&mut self, now: u64, fx: &mut Effects) {
        if self.deleted > 0 {
            fx.log(
                Level::Info,
                format!(
                    "history: pruned {} object(s) beyond retention (keep {}, max age {} s); {} kept",
                    self.deleted,
                    self.settings.keep,
                    self.settings.max_age_ms / 1000,
                    self.listed.len()
                ),
            );
            self.deleted = 0;
        }
        self.phase = Phase::Idle;
        self.failures = 0;
        self.retry_at = 0;
        self.next_prune_at = Some(if self.more {
            now
        } else {
            now.saturating_add(PRUNE_INTERVAL_MS)
        });
        if !self.cut {
            fx.metric(Metric::HistoryObjects, self.listed.len() as u64);
        }
    }

    /// Logged, counted, retried after a backoff (the longest for an error no retry can fix);
    /// the export is not affected.
    fn failed(&mut self, why: &str, fix: Option<&str>, now: u64, fx: &mut Effects) {
        self.phase = Phase::Idle;
        self.deletes.clear();
        self.failures = self.failures.saturating_add(1);
        let mut backoff = self.backoff;
        if fix.is_some() {
            backoff.base_ms = backoff.max_ms;
        }
        let delay = backoff.delay(self.failures, &mut self.rng);
        self.retry_at = now.saturating_add(delay);
        if self.waiting.is_empty() && self.failures >= GIVE_UP_PRUNING_AFTER {
            // Only pruning failed, again and again (a lock on the objects, a missing delete
            // permission): the next attempt is the hourly one, not a request a minute.
            self.next_prune_at = Some(now.saturating_add(PRUNE_INTERVAL_MS));
        }
        match fix {
            None => fx.log(Level::Warn, format!("history: {why}; retry in {delay} ms")),
            Some(fix) => fx.log(
                Level::Error,
                format!("history: {why}; no retry can fix this: {fix}; next attempt in {delay} ms"),
            ),
        }
        fx.metric(Metric::HistoryFailuresTotal, 1);
    }
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
