//! The sans-IO core of one root context: events and time in, requests and effects out. Knows
//! nothing of proxy-wasm (docs/architecture.md).
//!
//! A small orchestrator (`Engine`) owns time, the call table (`calls`: which sub-machine owns
//! each call in flight) and the node-wide lease (`node_lock`), and routes events to sub-machines
//! that each own their state: `export` (debounce, upload, conflicts, retries), `source` (the
//! filter's own config, a URL or a Kong Admin API), `import` (fallback nodes) and `election`
//! (several backup nodes, docs/election.md). Each sub-machine
//! has at most one call in flight; a tick may emit one request per sub-machine.
//!
//! Only `tick` can return requests (`TickOutput::dispatches`); `on_event` returns effects, a type
//! with no way to express a dispatch. That is a host rule in the type system: ngx_wasm_module
//! kills or crashes the worker when a root context dispatches from `on_configure`,
//! `on_vm_start` or `on_http_call_response` (docs/host-behaviours.md), so follow-up requests
//! (the PUT after a HEAD, retries) wait for the next tick.

mod calls;
mod effects;
mod election;
mod export;
mod history;
mod import;
mod prepare;
mod provenance;
pub mod source;

use std::rc::Rc;

pub use calls::{CallId, Owner};
pub use effects::{Effect, Effects, Level, Metric, MetricKind};
pub use import::{config_post_request, flattened_errors, rewrite_for_import, BOOTSTRAP_TAG};

use calls::CallTable;
use election::Election;
use export::{Cx, Export, Plan};
use history::History;
use import::Import;
use source::{PollResult, Source};

use crate::http::{HttpResponse, OutboundRequest};
use crate::node_lock::{self, Lease, SharedStore};
use crate::seal::ExportSealer;
use crate::settings::{Config, SourceConfig};
use crate::store::timestamp::clock_skew_ms;
use crate::store::{self, ObjectStore};
use prepare::Prepare;

const NODE_ID_KEY: &str = "config-bridge/v1/node-id";
/// The store's credentials as the lease holder fetched them (docs/credentials.md).
const CREDENTIALS_KEY: &str = "config-bridge/v1/store-credentials";

/// The export's context, borrowing the orchestrator's fields next to `self.export` (disjoint
/// borrows: a method taking `&self` could not lend them while the export is mutated).
macro_rules! export_cx {
    ($engine:ident, $now:expr, $shared:expr, $fx:expr) => {
        Cx {
            now: $now,
            shared: $shared,
            fx: $fx,
            store: $engine.store.as_ref(),
            record_key: &$engine.record_key,
            me: $engine.me,
        }
    };
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispatch {
    pub id: CallId,
    /// The sub-machine the call belongs to (at most one call per owner is in flight).
    pub owner: Owner,
    pub request: OutboundRequest,
    pub timeout_ms: u64,
}

#[derive(Debug, Default)]
pub struct TickOutput {
    pub dispatches: Vec<Dispatch>,
    pub effects: Vec<Effect>,
    /// Calls given up this tick (no answer within `call_timeout_ms`): a late answer is ignored,
    /// and the shell forgets their host tokens.
    pub expired: Vec<CallId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A configuration was applied (own-config source: every `on_configure`).
    ConfigApplied(Rc<Vec<u8>>),
    CallAnswered {
        id: CallId,
        response: HttpResponse,
    },
    /// The host reported a failure (no headers, `:dispatch_status`) or refused the dispatch.
    CallFailed {
        id: CallId,
        reason: String,
    },
    /// An answer whose announced body is over `Engine::answer_limit`: status and headers only,
    /// the body was not read.
    AnswerTooLarge {
        id: CallId,
        response: HttpResponse,
        announced: u64,
    },
}

pub struct Engine {
    cfg: Config,
    me: u64,
    store: Box<dyn ObjectStore>,
    calls: CallTable,
    /// The node record in shared data: the lease and the export's node-wide state.
    record_key: String,
    holder: bool,
    /// "this worker now exports" was said (exporters only).
    holder_said: bool,
    shared_data_broken: bool,
    source: Source,
    export: Export,
    /// With `cluster_fallback_config_import` on.
    import: Option<Import>,
    election: Election,
    /// Every stored export also kept as a history object, and retention (docs/history.md).
    history: History,
    /// A large document being redacted and hashed a slice per tick (`prepare`).
    digesting: Option<Prepare>,
    /// Where the configuration's validation scan found the redaction's keys in the own-config
    /// document (`index_own_document`), until that document is offered.
    own_index: Option<crate::redact::KeyIndex>,
    /// Encrypts prepared documents before the export sees them (`export_encryption_key`).
    sealer: ExportSealer,
    /// The store's clock minus this node's (ms), as last measured: kept across
    /// reconfigurations, which build a new store.
    clock_skew_ms: i64,
}

impl Engine {
    /// `me`: a unique non-zero identity of this root context (worker random + time + context id).
    pub fn new(cfg: Config, me: u64) -> Engine {
        let me = me.max(1);
        let store = store::for_settings(&cfg.storage);
        let own_source = matches!(cfg.source, SourceConfig::Filter { .. });
        let export = Export::new(&cfg, me, store.conditional_writes(), own_source);
        let record_key = cfg.shared_key(&format!(
            "config-bridge/v1/export/{}/{}",
            cfg.storage.location.bucket,
            export.key()
        ));
        let backoff = crate::backoff::Backoff {
            base_ms: cfg.retry_base_ms,
            max_ms: cfg.retry_max_ms,
        };
        let import = cfg.import_settings.clone().map(|s| {
            // `config.json`, or the history object `cluster_fallback_import_version` names.
            let key = cfg.import_key();
            let where_ = store.describe(&key);
            Import::new(s, key, where_, me, backoff)
                .with_seal(cfg.seal.clone())
                .sealed_for(cfg.config_key())
        });
        let history_settings = crate::settings::HistorySettings {
            enabled: cfg.history.enabled && cfg.export,
            ..cfg.history.clone()
        };
        let history = History::new(history_settings, cfg.history_prefix(), backoff, me);
        let sealer = ExportSealer::new(&cfg.seal, export.key());
        let election_prefix = cfg.storage.location.election_prefix(&cfg.gateway_version);
        let register_key = cfg.shared_key(&format!(
            "config-bridge/v1/election/{}/{election_prefix}",
            cfg.storage.location.bucket
        ));
        let election = Election::new(
            cfg.election.clone(),
            election_prefix,
            register_key,
            me,
            cfg.call_timeout_ms,
        );
        Engine {
            import,
            record_key,
            source: Source::from_config(&cfg.source),
            export,
            store,
            me,
            calls: CallTable::default(),
            holder: false,
            holder_said: false,
            shared_data_broken: false,
            election,
            history,
            digesting: None,
            own_index: None,
            sealer,
            clock_skew_ms: 0,
            cfg,
        }
    }

    /// A new filter configuration for the same root context: keeps the export's in-flight call
    /// when the target object is unchanged (its answer is still ours to record).
    pub fn reconfigure(&mut self, cfg: Config) {
        let mut next = Engine::new(cfg, self.me);
        next.calls.continue_ids(&self.calls);
        let previous = std::mem::replace(self, next);
        self.clock_skew_ms = previous.clock_skew_ms;
        self.store.set_clock_skew(self.clock_skew_ms);
        if previous.record_key == self.record_key {
            // Same object: calls in flight stay in flight (one per owner, as before); an answer
            // a replaced sub-machine no longer expects is ignored by it.
            self.holder = previous.holder;
            self.holder_said = previous.holder_said;
            self.calls = previous.calls;
            self.export.carry_over(previous.export);
            self.sealer.carry_over(previous.sealer);
            self.history.carry_over(previous.history);
        }
        let same_election = previous.election.enabled()
            && self.election.enabled()
            && self.cfg.export
            && previous.cfg.storage.location == self.cfg.storage.location
            && previous.cfg.gateway_version == self.cfg.gateway_version
            && previous.cfg.node_id == self.cfg.node_id;
        if same_election {
            self.election.carry_over(previous.election);
        } else if let Some(key) = previous.election.registration() {
            // No longer a candidate under that key: withdraw it (graceful hand-over).
            self.election.resign_later(key.to_string());
        }
    }

    /// The filter is going away (`on_done`): the leader's registration is withdrawn so another
    /// node leads at its next round (docs/election.md). Fire and forget.
    pub fn stop(&mut self, now: u64) -> Vec<Dispatch> {
        let mut out = Vec::new();
        if let Some(key) = self.election.resign() {
            if let Ok(request) = self.store.delete(&key, now) {
                // Even with a round in flight (an owner of its own): the withdrawal matters.
                self.push_call(Owner::Withdrawal, request, now, &mut out);
            }
        }
        out
    }

    /// The own-config document to apply after `new`/`reconfigure`, if that is the source.
    pub fn own_config_document(&self) -> Option<Rc<Vec<u8>>> {
        match &self.cfg.source {
            SourceConfig::Filter { document } if !document.is_empty() => Some(Rc::clone(document)),
            _ => None,
        }
    }

    /// Where the configuration's validation scan found the redaction's keys in the own-config
    /// document (`redact::KeyIndex`): its redaction works from these instead of reading it again
    /// (BENCHMARKS.md, "Issue 25, speed7"). Used for that document only, when it is offered next.
    pub fn index_own_document(&mut self, index: crate::redact::KeyIndex) {
        self.own_index = Some(index);
    }

    /// This filter's own configuration text, which an import puts in place of the exporting
    /// filters it finds in the imported document (`import::ImportEdit`).
    pub fn set_own_filter_config(&mut self, text: Option<Rc<Vec<u8>>>) {
        if let Some(import) = self.import.as_mut() {
            import.set_own_filter_config(text);
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn is_holder(&self) -> bool {
        self.holder
    }

    /// Work that proceeds a slice or a request per tick is under way (a Kong Admin API dump, a
    /// large document being hashed): the shell may tick faster until it is done.
    pub fn busy(&self) -> bool {
        self.digesting.is_some()
            || self.sealer.busy()
            || self.import.as_ref().is_some_and(|i| i.busy())
            || (self.holder
                && (self.source.busy()
                    || self.election.busy()
                    || self.history.busy()
                    || self.store.preparing()))
    }

    /// The most bytes the answer to call `id` may have: the shell refuses a larger announced
    /// body before reading it (`import_max_bytes` for the import's calls).
    pub fn answer_limit(&self, id: CallId) -> Option<u64> {
        match self.calls.owner(id)? {
            Owner::Import => self.cfg.import_settings.as_ref().map(|s| s.max_bytes),
            _ => None,
        }
    }

    pub fn on_event(
        &mut self,
        event: Event,
        now: u64,
        shared: &mut dyn SharedStore,
    ) -> Vec<Effect> {
        let mut fx = Effects::default();
        match event {
            Event::ConfigApplied(body) => self.offer_body(body, now, shared, &mut fx),
            Event::CallAnswered { id, response } => match self.calls.take(id) {
                Some(owner) => self.answer(owner, id, Ok(response), now, shared, &mut fx),
                None => late(id, &mut fx),
            },
            Event::CallFailed { id, reason } => match self.calls.take(id) {
                Some(owner) => self.answer(owner, id, Err(reason), now, shared, &mut fx),
                None => late(id, &mut fx),
            },
            Event::AnswerTooLarge {
                id,
                response,
                announced,
            } => match (self.calls.take(id), self.import.as_mut()) {
                (Some(Owner::Import), Some(import)) => {
                    import.too_large(id, response, announced, now, self.store.as_ref(), &mut fx)
                }
                (Some(owner), _) => {
                    let reason = format!("the answer announces {announced} bytes; not read");
                    self.answer(owner, id, Err(reason), now, shared, &mut fx);
                }
                (None, _) => late(id, &mut fx),
            },
        }
        fx.0
    }

    pub fn tick(&mut self, now: u64, shared: &mut dyn SharedStore) -> TickOutput {
        let mut fx = Effects::default();
        let mut dispatches = Vec::new();
        self.digest_slice(now, shared, &mut fx);
        self.seal_slice(now, shared, &mut fx);
        let mut expired = Vec::new();
        for (id, owner) in self.calls.expired(now) {
            let reason = format!("no answer within {} ms", self.cfg.call_timeout_ms);
            self.answer(owner, id, Err(reason), now, shared, &mut fx);
            expired.push(id);
        }
        if self.holder {
            self.dispatch_resign(now, &mut dispatches);
        }
        // Once per node: only the holder of the node-wide lease imports, elects and exports.
        if (self.cfg.export || self.cfg.import) && self.node_identity(shared, &mut fx) {
            // The store's prerequisite (a token) goes before any other request of the store, and
            // only the lease holder needs one (a new holder gets it on its next tick).
            let ready = self.store_ready(now, self.holder, shared, &mut dispatches);
            if let Some(plan) = self.lease(now, shared, ready, &mut fx) {
                if ready {
                    self.dispatch_import(now, &mut fx, &mut dispatches);
                }
                if self.cfg.export {
                    if ready {
                        self.dispatch_election(now, shared, &mut fx, &mut dispatches);
                        self.dispatch_export(plan, now, shared, &mut fx, &mut dispatches);
                        self.dispatch_history(now, &mut fx, &mut dispatches);
                    }
                    self.dispatch_source(now, shared, &mut fx, &mut dispatches);
                }
            } else {
                self.history.not_leading();
            }
        }
        TickOutput {
            dispatches,
            effects: fx.0,
            expired,
        }
    }

    /// A document for the export: redacted and hashed at once when small, else a slice per tick
    /// (the newest document replaces one still being prepared).
    fn offer_body(
        &mut self,
        body: Rc<Vec<u8>>,
        now: u64,
        shared: &mut dyn SharedStore,
        fx: &mut Effects,
    ) {
        // Newer than any document still being prepared: that one is dropped. One larger than a
        // slice is left to the engine's ticks, a slice each: the callback that brought it (a
        // source's answer, the tick that applies a configuration and then ticks the engine)
        // does no more than one slice (BENCHMARKS.md, issue 25, speed5).
        let at_once = body.len() <= crate::redact::SLICE_BYTES;
        // Used only if they are this document's (`Rewriter::with_index`).
        let index = self.own_index.take();
        self.digesting = Some(Prepare::new(body, now, index));
        if at_once {
            self.digest_slice(now, shared, fx);
        }
    }

    fn digest_slice(&mut self, now: u64, shared: &mut dyn SharedStore, fx: &mut Effects) {
        let Some(prepare) = self.digesting.as_mut() else {
            return;
        };
        let Some(ready) = prepare.step() else {
            return;
        };
        self.digesting = None;
        match ready {
            // Encrypted first when exports are (docs/sealed-exports.md): at once when small,
            // else a slice per tick (`seal_slice`).
            Ok(doc) => {
                if let Some(doc) = self.sealer.offer(doc) {
                    self.export
                        .offer(doc, &mut export_cx!(self, now, shared, fx));
                }
            }
            Err(line) => {
                fx.log(Level::Error, line);
                fx.metric(Metric::ExportFailuresTotal, 1);
            }
        }
    }

    /// One slice of sealing work: the export's encryption, the import's verification and
    /// decryption.
    fn seal_slice(&mut self, now: u64, shared: &mut dyn SharedStore, fx: &mut Effects) {
        if let Some(doc) = self.sealer.step() {
            self.export
                .offer(doc, &mut export_cx!(self, now, shared, fx));
        }
        if let Some(import) = self.import.as_mut() {
            import.unseal_slice(now, fx);
        }
    }

    /// Whether the store can take requests; sends its prerequisite when it needs one.
    /// `may_fetch`: this worker may send the prerequisite (the lease holder).
    fn store_ready(
        &mut self,
        now: u64,
        may_fetch: bool,
        shared: &mut dyn SharedStore,
        out: &mut Vec<Dispatch>,
    ) -> bool {
        if self.calls.busy(Owner::Store) {
            return false;
        }
        if may_fetch {
            // Credentials another worker of this node fetched come first: one fetch per node.
            self.store
                .share(&self.cfg.shared_key(CREDENTIALS_KEY), shared, now);
            if let Some(request) = self.store.prerequisite(now) {
                self.open(Owner::Store, Some(request), now, out);
                return false;
            }
        }
        self.store.ready(now)
    }

    /// Sends `request` (if any) as a call of `owner`, unless that owner has one in flight.
    fn open(
        &mut self,
        owner: Owner,
        request: Option<OutboundRequest>,
        now: u64,
        out: &mut Vec<Dispatch>,
    ) {
        if let Some(request) = request {
            self.push_call(owner, request, now, out);
        }
    }

    /// Registers a call of `owner` and queues its dispatch; its id. `None` (nothing sent) while
    /// `owner` has a call in flight: the call table keeps one call per owner.
    fn push_call(
        &mut self,
        owner: Owner,
        request: OutboundRequest,
        now: u64,
        out: &mut Vec<Dispatch>,
    ) -> Option<CallId> {
        let timeout_ms = self.cfg.call_timeout_ms;
        let id = self.calls.open(owner, now.saturating_add(timeout_ms))?;
        out.push(Dispatch {
            id,
            owner,
            request,
            timeout_ms,
        });
        Some(id)
    }

    /// The node id written as `uploader`: the setting, else one shared by the node's workers.
    fn node_identity(&mut self, shared: &mut dyn SharedStore, fx: &mut Effects) -> bool {
        if self.export.node_id().is_some() {
            return true;
        }
        let key = self.cfg.shared_key(NODE_ID_KEY);
        match node_lock::node_id(shared, &key, &format!("node-{:016x}", self.me)) {
            Ok(id) => {
                self.export.set_node_id(&id);
                true
            }
            Err(e) => {
                self.shared_data_error(&e, fx);
                false
            }
        }
    }

    /// Takes or renews the node-wide lease; the holder gets the export's plan, decided inside
    /// the same atomic record update.
    /// `store_ready`: the export may plan a request this tick.
    fn lease(
        &mut self,
        now: u64,
        shared: &mut dyn SharedStore,
        store_ready: bool,
        fx: &mut Effects,
    ) -> Option<Plan> {
        let deadline = now.saturating_add(self.cfg.call_timeout_ms);
        let export = &self.export;
        // A call of the export still in flight (possibly one a reconfiguration inherited).
        let free = !self.calls.busy(Owner::Export);
        let leader = self.election.is_leader(now);
        let lease = node_lock::with_lease_if(
            shared,
            &self.record_key,
            self.me,
            now,
            self.cfg.lease_ttl_ms,
            |rec| export.eligible(rec),
            |rec, _| {
                if leader && free && store_ready {
                    export.plan(rec, now, deadline)
                } else {
                    Plan::Nothing
                }
            },
        );
        self.lease_outcome(lease, fx)
    }

    /// Whether this root context holds the node's lease now, said once per change.
    fn lease_outcome(&mut self, lease: Lease<Plan>, fx: &mut Effects) -> Option<Plan> {
        match lease {
            Lease::Held(plan) => {
                self.shared_data_broken = false;
                self.holder = true;
                if !self.holder_said && self.cfg.export {
                    self.holder_said = true;
                    fx.log(
                        Level::Info,
                        format!(
                            "this worker now exports {}",
                            self.store.describe(self.export.key())
                        ),
                    );
                }
                Some(plan)
            }
            Lease::Follower { .. } | Lease::Lost => {
                self.shared_data_broken = false;
                self.holder = false;
                if self.holder_said {
                    self.holder_said = false;
                    fx.log(
                        Level::Info,
                        "the export moved to another root context of this node",
                    );
                }
                None
            }
            Lease::Unavailable(e) => {
                self.shared_data_error(&e, fx);
                None
            }
        }
    }

    fn dispatch_export(
        &mut self,
        plan: Plan,
        now: u64,
        shared: &mut dyn SharedStore,
        fx: &mut Effects,
        out: &mut Vec<Dispatch>,
    ) {
        // No plan while the export has a call in flight (`lease` plans with the table's `busy`);
        // should one come anyway, the table refuses it below and the export hears why.
        let Some(outgoing) = self.export.request(plan, self.store.as_ref(), now) else {
            return;
        };
        let sent = match outgoing.request.clone() {
            Ok(request) => self
                .push_call(Owner::Export, request, now, out)
                .ok_or_else(|| "a call of the export is in flight".to_string()),
            Err(e) => Err(e),
        };
        match sent {
            Ok(id) => self.export.sent(id, outgoing),
            Err(e) => {
                let mut cx = export_cx!(self, now, shared, fx);
                self.export.not_sent(outgoing, &e, &mut cx);
            }
        }
    }

    fn dispatch_import(&mut self, now: u64, fx: &mut Effects, out: &mut Vec<Dispatch>) {
        if self.calls.busy(Owner::Import) {
            return;
        }
        let Some(import) = self.import.as_mut() else {
            return;
        };
        match import.poll(now, self.store.as_ref(), fx) {
            None => {}
            Some(Ok(request)) => {
                // The table has room: `busy` was checked above.
                if let Some(id) = self.push_call(Owner::Import, request, now, out) {
                    if let Some(import) = self.import.as_mut() {
                        import.sent(id);
                    }
                }
            }
            Some(Err(e)) => fx.log(Level::Warn, format!("import: cannot build a request: {e}")),
        }
    }

    /// The lease holder's election round: the next request of a round under way, else a new
    /// round when one is due.
    fn dispatch_election(
        &mut self,
        now: u64,
        shared: &mut dyn SharedStore,
        fx: &mut Effects,
        out: &mut Vec<Dispatch>,
    ) {
        if self.calls.busy(Owner::Election) {
            return;
        }
        let node_id = self.export.node_id().unwrap_or_default().to_string();
        let store = self.store.as_ref();
        let request = match self.election.follow_up(now, store) {
            Some(r) => Some(r),
            None => self.election.poll(now, &node_id, store, shared, fx),
        };
        match request {
            Some(Ok(request)) => self.open(Owner::Election, Some(request), now, out),
            Some(Err(e)) => {
                self.election
                    .on_failure(&format!("cannot build the request: {e}"), now, fx)
            }
            None => {}
        }
    }

    /// The leader's history: record stored exports, prune (docs/history.md).
    fn dispatch_history(&mut self, now: u64, fx: &mut Effects, out: &mut Vec<Dispatch>) {
        if !self.election.is_leader(now) {
            self.history.not_leading();
            return;
        }
        if self.calls.busy(Owner::History) {
            return;
        }
        match self.history.poll(now, self.store.as_ref(), fx) {
            Some(Ok(request)) => {
                self.push_call(Owner::History, request, now, out);
            }
            Some(Err(e)) => {
                let reason = format!("cannot build the request: {e}");
                self.history
                    .on_failure(&reason, now, self.store.as_ref(), fx);
            }
            None => {}
        }
    }

    /// Withdraws a registration a previous configuration left, whatever this one does.
    fn dispatch_resign(&mut self, now: u64, out: &mut Vec<Dispatch>) {
        if self.calls.busy(Owner::Election) {
            return;
        }
        if let Some(request) = self.election.pending_resign(now, self.store.as_ref()) {
            self.open(Owner::Election, Some(request), now, out);
        }
    }

    /// The lease holder does a slice of the source's work between requests (a Kong Admin API
    /// page written into the flat form), then polls the source when it is due.
    fn dispatch_source(
        &mut self,
        now: u64,
        shared: &mut dyn SharedStore,
        fx: &mut Effects,
        out: &mut Vec<Dispatch>,
    ) {
        if self.calls.busy(Owner::Source) {
            return;
        }
        let result = self.source.step(now);
        self.source_result(result, now, shared, fx);
        let request = self.source.poll(now);
        self.open(Owner::Source, request, now, out);
    }

    /// A call's answer (`Err`: the call failed, with the reason) to the sub-machine that owns it.
    fn answer(
        &mut self,
        owner: Owner,
        id: CallId,
        answer: Result<HttpResponse, String>,
        now: u64,
        shared: &mut dyn SharedStore,
        fx: &mut Effects,
    ) {
        if let Ok(response) = &answer {
            self.learn_from_store_answer(owner, response, now);
        }
        match owner {
            Owner::Export => self.export_answer(id, answer, now, shared, fx),
            Owner::History => match answer {
                Ok(response) => self
                    .history
                    .on_answer(response, now, self.store.as_ref(), fx),
                Err(reason) => self
                    .history
                    .on_failure(&reason, now, self.store.as_ref(), fx),
            },
            Owner::Source => self.source_answer(answer, now, shared, fx),
            Owner::Import => {
                if let Some(import) = self.import.as_mut() {
                    let store = self.store.as_ref();
                    match answer {
                        Ok(response) => import.on_answer(id, response, now, store, fx),
                        Err(reason) => import.on_failure(id, &reason, now, store, fx),
                    }
                }
            }
            Owner::Election => match answer {
                Ok(response) => {
                    let node_id = self.export.node_id().unwrap_or_default();
                    self.election.on_answer(
                        response,
                        now,
                        node_id,
                        self.store.as_ref(),
                        shared,
                        fx,
                    );
                }
                Err(reason) => self.election.on_failure(&reason, now, fx),
            },
            Owner::Withdrawal => withdrawn(answer, fx),
            Owner::Store => {
                let answered = answer.is_ok();
                if let Err(e) = self.store.on_prerequisite(answer, now) {
                    fx.log(Level::Warn, e);
                }
                if answered {
                    self.store
                        .share(&self.cfg.shared_key(CREDENTIALS_KEY), shared, now);
                }
            }
        }
    }

    /// The export's answer; a stored export goes into the history.
    fn export_answer(
        &mut self,
        id: CallId,
        answer: Result<HttpResponse, String>,
        now: u64,
        shared: &mut dyn SharedStore,
        fx: &mut Effects,
    ) {
        let mut cx = export_cx!(self, now, shared, fx);
        match answer {
            Ok(response) => self.export.on_answer(id, response, &mut cx),
            Err(reason) => self.export.on_failure(id, &reason, &mut cx),
        }
        if let Some(exported) = self.export.take_exported() {
            self.history.record(exported, fx);
        }
    }

    /// What any answer of the store says about the store itself: credentials it no longer takes,
    /// its clock.
    fn learn_from_store_answer(&mut self, owner: Owner, response: &HttpResponse, now: u64) {
        // A store that authenticates with a token (GCS) or expiring keys (S3 `ExpiredToken`)
        // fetches new ones on the next tick; the call itself fails and is retried by its owner.
        // Import's Kong Admin calls share the owner: a 401 there costs at most one extra fetch.
        let store_call = matches!(
            owner,
            Owner::Export | Owner::Import | Owner::Election | Owner::Withdrawal | Owner::History
        );
        if store_call && self.store.rejects_credentials(response) {
            self.store.on_unauthorized(now);
        }
        // The store's clock, from its `Date`: signatures use it (docs/credentials.md). Only
        // answers known to come from the store count (the import's Kong Admin calls and the
        // credential endpoints run on this node's clock), and any answer refusing the clock.
        if matches!(owner, Owner::Export | Owner::Election) || self.store.rejects_clock(response) {
            if let Some(skew) = clock_skew_ms(response.header("date"), now) {
                self.clock_skew_ms = skew;
                self.store.set_clock_skew(skew);
            }
        }
    }

    /// The source's answer: a new document to export, or a line saying why not.
    fn source_answer(
        &mut self,
        answer: Result<HttpResponse, String>,
        now: u64,
        shared: &mut dyn SharedStore,
        fx: &mut Effects,
    ) {
        let result = match answer {
            Ok(response) => self.source.on_response(response, now),
            Err(reason) => {
                self.source.on_failure(now);
                PollResult::Failed(reason)
            }
        };
        self.source_result(result, now, shared, fx);
    }

    /// What the source gave: a new document to export, or a line saying why not.
    fn source_result(
        &mut self,
        result: PollResult,
        now: u64,
        shared: &mut dyn SharedStore,
        fx: &mut Effects,
    ) {
        let reason = match result {
            PollResult::Unchanged => return,
            PollResult::Fetched(body) => return self.offer_body(Rc::new(body), now, shared, fx),
            PollResult::Note(line) => return fx.log(Level::Info, line),
            PollResult::Failed(reason) => reason,
        };
        let line = format!(
            "fetching the config from {} failed: {reason}",
            self.source.describe()
        );
        fx.log(Level::Warn, line);
        fx.metric(Metric::SourceErrorsTotal, 1);
    }

    /// Logged once per outage, not on every tick.
    fn shared_data_error(&mut self, e: &str, fx: &mut Effects) {
        if !self.shared_data_broken {
            self.shared_data_broken = true;
            fx.log(
                Level::Error,
                format!(
                    "shared data unavailable ({e}); paused until it works again (the filter needs an shm_kv zone)"
                ),
            );
        }
    }
}

/// The answer to the withdrawal of a replaced configuration's registration (2xx or 404: gone).
fn withdrawn(answer: Result<HttpResponse, String>, fx: &mut Effects) {
    let failure = match answer {
        Ok(r) if (200..300).contains(&r.status) || r.status == 404 => {
            return fx.log(Level::Debug, "election: registration withdrawn");
        }
        Ok(r) => format!("got HTTP {}", r.status),
        Err(reason) => format!("failed: {reason}"),
    };
    fx.log(
        Level::Warn,
        format!("election: withdrawing this node's registration {failure}"),
    );
}

fn late(id: CallId, fx: &mut Effects) {
    fx.log(
        Level::Debug,
        format!("ignoring a late or unknown answer (call {id})"),
    );
}

#[cfg(test)]
mod tests;
