//! The sans-IO core of one root context: events in, effects out. Knows nothing of proxy-wasm.
//!
//! Only `tick` can return a request to send (`TickOutput::dispatch`); `on_event` returns
//! `Vec<Effect>`, a type with no way to express a dispatch. That is SPEC §6 in the type system:
//! hosts crash when a root context dispatches from `on_configure`, `on_vm_start` or
//! `on_http_call_response`, so follow-up requests (HEAD after a 412, the PUT after it, retries)
//! are remembered and sent on the next tick.
//!
//! Conditional-write rule (an export never overwrites a newer config written by another node):
//! * the node record keeps the ETag of the object as this node last wrote or read it; a PUT sends
//!   `If-Match: <etag>`, or `If-None-Match: *` when the node has never seen the object;
//! * on 412/409 the next tick HEADs the object and reads the metadata every export writes
//!   (`x-amz-meta-config-sha256`, `x-amz-meta-config-applied-at` = host ms when the exporting
//!   node first saw the config, `x-amz-meta-uploader`):
//!   - same content hash → already stored, nothing to do;
//!   - remote applied-at later than ours → a newer config: keep it, do not upload ours (our next
//!     change will be newer and replaces it, with `If-Match` on the ETag just read);
//!   - otherwise (older, or written without our metadata, e.g. by Kong) → PUT again with
//!     `If-Match` on the ETag just read (404 → `If-None-Match: *`).
//!
//! At most `MAX_CONFLICT_ROUNDS` such rounds in a row; then it counts as a failed export.
//! Clocks of different nodes decide "newer": keep them in sync (NTP), as Kong's election does.

use std::rc::Rc;

use crate::backoff::{Backoff, Rng};
use crate::config::{Config, SourceConfig};
use crate::debounce::Decision;
use crate::node_lock::{self, Lease, SharedStore};
use crate::object_store::{
    ExportMeta, HeadOutcome, HttpResponse, ObjectStore, OutboundRequest, Precondition, PutOutcome,
};
use crate::s3::S3Store;
use crate::source::{Document, PollResult, Source};

const MAX_CONFLICT_ROUNDS: u32 = 3;
const NODE_ID_KEY: &str = "config-bridge/v1/node-id";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// The metrics config-bridge reports (names are stable: dashboards use them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    ExportsTotal,
    ExportFailuresTotal,
    SourceErrorsTotal,
    LastExportBytes,
    LastExportDurationMs,
    LastExportTimestampSeconds,
    /// 1 while the filter configuration is invalid and the filter inert, else 0.
    ConfigInvalid,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::ExportsTotal,
        Metric::ExportFailuresTotal,
        Metric::SourceErrorsTotal,
        Metric::LastExportBytes,
        Metric::LastExportDurationMs,
        Metric::LastExportTimestampSeconds,
        Metric::ConfigInvalid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::ExportsTotal => "config_bridge_exports_total",
            Metric::ExportFailuresTotal => "config_bridge_export_failures_total",
            Metric::SourceErrorsTotal => "config_bridge_source_errors_total",
            Metric::LastExportBytes => "config_bridge_last_export_bytes",
            Metric::LastExportDurationMs => "config_bridge_last_export_duration_ms",
            Metric::LastExportTimestampSeconds => "config_bridge_last_export_timestamp_seconds",
            Metric::ConfigInvalid => "config_bridge_config_invalid",
        }
    }

    pub fn kind(self) -> MetricKind {
        match self {
            Metric::ExportsTotal | Metric::ExportFailuresTotal | Metric::SourceErrorsTotal => {
                MetricKind::Counter
            }
            _ => MetricKind::Gauge,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Log(Level, String),
    /// Counter: add; gauge: set.
    Metric(Metric, u64),
}

/// Identifies one dispatched call inside this engine (the shell maps host tokens to it).
pub type CallId = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispatch {
    pub id: CallId,
    pub request: OutboundRequest,
    pub timeout_ms: u64,
}

#[derive(Debug, Default)]
pub struct TickOutput {
    pub dispatch: Option<Dispatch>,
    pub effects: Vec<Effect>,
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
}

#[derive(Clone, Debug)]
enum CallKind {
    Put { hash: String, bytes: usize },
    Head { hash: String },
    Poll,
}

#[derive(Clone, Debug)]
struct Call {
    id: CallId,
    kind: CallKind,
    started_at: u64,
    deadline: u64,
}

/// What a 412 leaves for the next tick.
#[derive(Clone, Debug, PartialEq, Eq)]
/// `since`: when the export began (its first request), so that the debounce and the logged
/// duration count the whole export, HEADs included.
enum FollowUp {
    Head { since: u64 },
    PutWith(Precondition, u64),
}

/// What the lease holder decided to do this tick (computed inside the atomic record update).
enum Plan {
    Nothing,
    Put(Precondition, u64),
    Head(u64),
    Poll,
}

pub struct Engine {
    cfg: Config,
    store: Box<dyn ObjectStore>,
    me: u64,
    rng: Rng,
    backoff: Backoff,
    key: String,
    lease_key: String,
    node_id: Option<String>,
    source: Source,
    doc: Option<Document>,
    call: Option<Call>,
    next_id: CallId,
    follow_up: Option<FollowUp>,
    conflict_rounds: u32,
    holder: bool,
    shared_data_broken: bool,
}

impl Engine {
    /// `me`: a unique non-zero identity of this root context (worker random + time + context id).
    pub fn new(cfg: Config, me: u64) -> Engine {
        let key = cfg.config_key();
        let store: Box<dyn ObjectStore> = Box::new(S3Store::new(
            cfg.s3.clone(),
            cfg.storage.bucket.clone(),
            cfg.storage_upstream.clone(),
        ));
        Engine {
            lease_key: cfg.shared_key(&format!(
                "config-bridge/v1/export/{}/{key}",
                cfg.storage.bucket
            )),
            key,
            store,
            me: me.max(1),
            rng: Rng::new(me),
            backoff: Backoff {
                base_ms: cfg.retry_base_ms,
                max_ms: cfg.retry_max_ms,
            },
            node_id: cfg.node_id.clone(),
            source: Source::from_config(&cfg.source),
            doc: None,
            call: None,
            next_id: 1,
            follow_up: None,
            conflict_rounds: 0,
            holder: false,
            shared_data_broken: false,
            cfg,
        }
    }

    /// A new filter configuration for the same root context: keeps the in-flight call when the
    /// target object is unchanged (its answer is still ours to record).
    pub fn reconfigure(&mut self, cfg: Config) {
        let mut next = Engine::new(cfg, self.me);
        // Call ids stay unique for the life of the root context: the shell still maps the old
        // target's in-flight token to its id, and that late answer must not match a new call.
        next.next_id = self.next_id;
        if next.lease_key == self.lease_key {
            next.call = self.call.take();
            next.holder = self.holder;
            next.rng = self.rng.clone();
            if matches!(next.source, Source::Filter) == matches!(self.source, Source::Filter) {
                next.doc = self.doc.take();
            }
        }
        *self = next;
    }

    /// The own-config document to apply after `new`/`reconfigure`, if that is the source.
    pub fn own_config_document(&self) -> Option<Rc<Vec<u8>>> {
        match &self.cfg.source {
            SourceConfig::Filter { document } if !document.is_empty() => Some(Rc::clone(document)),
            _ => None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn is_holder(&self) -> bool {
        self.holder
    }

    pub fn on_event(
        &mut self,
        event: Event,
        now: u64,
        shared: &mut dyn SharedStore,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        match event {
            Event::ConfigApplied(body) => self.apply(body, now, shared, &mut fx),
            Event::CallAnswered { id, response } => {
                if let Some(call) = self.take_call(id, &mut fx) {
                    self.answered(call, response, now, shared, &mut fx);
                }
            }
            Event::CallFailed { id, reason } => {
                if let Some(call) = self.take_call(id, &mut fx) {
                    self.call_failed(call, &reason, now, shared, &mut fx);
                }
            }
        }
        fx
    }

    pub fn tick(&mut self, now: u64, shared: &mut dyn SharedStore) -> TickOutput {
        let mut out = TickOutput::default();
        if !self.cfg.export {
            return out;
        }
        if let Some(call) = &self.call {
            if now < call.deadline {
                return out;
            }
            let call = call.clone();
            self.call = None;
            let reason = format!("no answer within {} ms", self.cfg.call_timeout_ms);
            self.call_failed(call, &reason, now, shared, &mut out.effects);
        }
        if self.node_id.is_none() {
            let key = self.cfg.shared_key(NODE_ID_KEY);
            match node_lock::node_id(shared, &key, &format!("node-{:016x}", self.me)) {
                Ok(id) => self.node_id = Some(id),
                Err(e) => {
                    self.shared_data_error(&e, &mut out.effects);
                    return out;
                }
            }
        }
        let deadline = now.saturating_add(self.cfg.call_timeout_ms);
        let (doc_hash, follow_up, poll_due) = (
            self.doc.as_ref().map(|d| d.sha256_hex.clone()),
            self.follow_up.clone(),
            matches!(&self.source, Source::Url(p) if p.due(now)),
        );
        let conditional = self.cfg.s3.conditional_writes;
        let own_source = matches!(self.source, Source::Filter);
        let my_hash = doc_hash.clone();
        let eligible = move |rec: &node_lock::NodeRecord| {
            !own_source
                || match (&rec.newest, &my_hash) {
                    (None, _) => true,
                    (Some(n), Some(h)) => &n.hash == h,
                    (Some(_), None) => false,
                }
        };
        let lease = node_lock::with_lease_if(
            shared,
            &self.lease_key,
            self.me,
            now,
            self.cfg.lease_ttl_ms,
            eligible,
            |rec, _| {
                let Some(hash) = doc_hash else {
                    return if poll_due { Plan::Poll } else { Plan::Nothing };
                };
                match rec.schedule.decide(&hash, now) {
                    Decision::Go => {}
                    Decision::UpToDate | Decision::Wait { .. } | Decision::Busy { .. } => {
                        return if poll_due { Plan::Poll } else { Plan::Nothing };
                    }
                }
                let plan = match follow_up {
                    Some(FollowUp::Head { since }) => Plan::Head(since),
                    Some(FollowUp::PutWith(p, since)) => Plan::Put(p, since),
                    // The node does not know the stored object (first export, or shared data
                    // wiped by a reload): ask before sending the whole body
                    // (docs/host-behaviours.md, "reload wipes shared data").
                    None if !rec.known => Plan::Head(now),
                    None if !conditional => Plan::Put(Precondition::None, now),
                    None => Plan::Put(
                        match &rec.version {
                            Some(v) => Precondition::IfMatch(v.clone()),
                            None => Precondition::IfAbsent,
                        },
                        now,
                    ),
                };
                // Marks the upload node-wide and keeps the lease at least until its deadline, so no
                // other worker starts one meanwhile, and a dead holder's upload expires with its lease.
                rec.schedule.begin(&hash, now, deadline);
                rec.lease_until = rec.lease_until.max(deadline);
                plan
            },
        );
        let plan = match lease {
            Lease::Held(plan) => {
                self.shared_data_broken = false;
                if !self.holder {
                    self.holder = true;
                    out.effects.push(Effect::Log(
                        Level::Info,
                        format!("this worker now exports {}", self.store.describe(&self.key)),
                    ));
                }
                plan
            }
            Lease::Follower { .. } | Lease::Lost => {
                self.shared_data_broken = false;
                if self.holder {
                    self.holder = false;
                    out.effects.push(Effect::Log(
                        Level::Info,
                        "the export moved to another root context of this node".into(),
                    ));
                }
                return out;
            }
            Lease::Unavailable(e) => {
                self.shared_data_error(&e, &mut out.effects);
                return out;
            }
        };
        let since = match &plan {
            Plan::Head(since) | Plan::Put(_, since) => *since,
            Plan::Nothing | Plan::Poll => now,
        };
        let (kind, request) = match plan {
            Plan::Nothing => return out,
            Plan::Poll => match &mut self.source {
                Source::Url(p) => (CallKind::Poll, Ok(p.request(now))),
                Source::Filter => return out,
            },
            Plan::Head(_) | Plan::Put(..) => {
                let Some(doc) = &self.doc else { return out };
                let hash = doc.sha256_hex.clone();
                if let Plan::Put(pre, _) = &plan {
                    let meta = ExportMeta {
                        uploader: self.node_id.clone().unwrap_or_default(),
                        applied_at: doc.seen_at,
                        sha256_hex: hash.clone(),
                        sha256: doc.sha256,
                    };
                    let req = self.store.put(&self.key, &doc.body, pre, &meta, now);
                    (
                        CallKind::Put {
                            hash,
                            bytes: doc.body.len(),
                        },
                        req,
                    )
                } else {
                    (CallKind::Head { hash }, self.store.head(&self.key, now))
                }
            }
        };
        self.follow_up = None;
        let id = self.next_id;
        self.next_id += 1;
        let call = Call {
            id,
            kind,
            started_at: since,
            deadline,
        };
        match request {
            Ok(request) => {
                self.call = Some(call);
                out.dispatch = Some(Dispatch {
                    id,
                    request,
                    timeout_ms: self.cfg.call_timeout_ms,
                });
            }
            Err(e) => self.call_failed(call, &e, now, shared, &mut out.effects),
        }
        out
    }

    fn apply(
        &mut self,
        body: Rc<Vec<u8>>,
        now: u64,
        shared: &mut dyn SharedStore,
        fx: &mut Vec<Effect>,
    ) {
        let doc = Document::new(body, now);
        if let Some(cur) = self.doc.as_mut() {
            if cur.sha256 == doc.sha256 {
                // Same content: keep the first-seen time, share the new buffer (the filter
                // configuration holds it) and release the old one.
                cur.body = doc.body;
                return;
            }
        }
        if matches!(self.source, Source::Filter) && self.cfg.export {
            // Node-wide "newest wins" across filter instances: only a root context holding the
            // newest document may hold the export lease (see `tick`).
            let (hash, seen_at) = (doc.sha256_hex.clone(), doc.seen_at);
            let published = node_lock::update(shared, &self.lease_key, |rec| {
                if rec.newest.as_ref().is_none_or(|n| seen_at >= n.seen_at) {
                    rec.newest = Some(node_lock::Newest {
                        hash: hash.clone(),
                        seen_at,
                    });
                }
            });
            if let Err(e) = published {
                self.shared_data_error(&e, fx);
            }
        }
        fx.push(Effect::Log(
            Level::Debug,
            format!(
                "config change seen ({} bytes, sha256 {})",
                doc.body.len(),
                short(&doc.sha256_hex)
            ),
        ));
        self.doc = Some(doc);
        // A pending conflict resolution was about the previous content.
        self.follow_up = None;
        self.conflict_rounds = 0;
    }

    fn take_call(&mut self, id: CallId, fx: &mut Vec<Effect>) -> Option<Call> {
        match &self.call {
            Some(c) if c.id == id => self.call.take(),
            _ => {
                fx.push(Effect::Log(
                    Level::Debug,
                    format!("ignoring a late or unknown answer (call {id})"),
                ));
                None
            }
        }
    }

    fn answered(
        &mut self,
        call: Call,
        response: HttpResponse,
        now: u64,
        shared: &mut dyn SharedStore,
        fx: &mut Vec<Effect>,
    ) {
        let resp = &response;
        match &call.kind {
            CallKind::Put { hash, bytes } => match self.store.parse_put(resp) {
                PutOutcome::Stored { version } => {
                    self.conflict_rounds = 0;
                    let (delay, started) = (self.cfg.export_delay_ms, call.started_at);
                    let recorded =
                        node_lock::update_if_owner(shared, &self.lease_key, self.me, |rec| {
                            rec.schedule.succeeded(hash, started, delay);
                            rec.version = version.clone();
                            rec.known = true;
                        });
                    let duration = now.saturating_sub(call.started_at);
                    fx.push(Effect::Log(
                        Level::Info,
                        format!(
                            "exported config to {} ({} bytes, sha256 {}) in {} ms",
                            self.store.describe(&self.key),
                            bytes,
                            short(hash),
                            duration
                        ),
                    ));
                    fx.push(Effect::Metric(Metric::ExportsTotal, 1));
                    fx.push(Effect::Metric(Metric::LastExportBytes, *bytes as u64));
                    fx.push(Effect::Metric(Metric::LastExportDurationMs, duration));
                    fx.push(Effect::Metric(
                        Metric::LastExportTimestampSeconds,
                        now / 1000,
                    ));
                    self.record_problem(recorded, fx);
                }
                PutOutcome::PreconditionFailed => {
                    let since = call.started_at;
                    self.conflict(
                        call,
                        "the object changed in storage since this node last saw it",
                        now,
                        shared,
                        fx,
                    );
                    self.follow_up = Some(FollowUp::Head { since });
                }
                PutOutcome::Failed(e) => {
                    let why = format!("{e} (from {})", self.cfg.storage_upstream);
                    self.export_failed(&call, &why, now, shared, fx)
                }
            },
            CallKind::Head { hash } => match self.store.parse_head(resp) {
                HeadOutcome::Found(meta) => {
                    let ours_seen_at = self.doc.as_ref().map(|d| d.seen_at).unwrap_or(0);
                    let version = meta.version.clone();
                    // The document may have changed while the HEAD was out: storage holding the
                    // current one also means nothing to upload.
                    let current = self.doc.as_ref().map(|d| d.sha256_hex.as_str());
                    let stored = meta.sha256_hex.as_deref();
                    let same = if stored == Some(hash.as_str()) {
                        Some(hash.clone())
                    } else {
                        stored.filter(|s| Some(*s) == current).map(str::to_string)
                    };
                    if same.is_some() || meta.applied_at.is_some_and(|t| t > ours_seen_at) {
                        let settled = same.clone().unwrap_or_else(|| hash.clone());
                        let same = same.is_some();
                        let recorded =
                            node_lock::update_if_owner(shared, &self.lease_key, self.me, |rec| {
                                rec.schedule.settled(&settled);
                                rec.version = version.clone();
                                rec.known = true;
                            });
                        self.conflict_rounds = 0;
                        let msg = if same {
                            format!(
                                "{} already holds this config (sha256 {}); nothing to upload",
                                self.store.describe(&self.key),
                                short(&settled)
                            )
                        } else {
                            format!(
                                "{} holds a newer config (uploaded by {}, applied at {} ms); not overwriting it",
                                self.store.describe(&self.key),
                                meta.uploader.as_deref().unwrap_or("unknown"),
                                meta.applied_at.unwrap_or(0)
                            )
                        };
                        fx.push(Effect::Log(Level::Info, msg));
                        self.record_problem(recorded, fx);
                    } else {
                        let pre = match version.clone() {
                            Some(v) if self.cfg.s3.conditional_writes => Precondition::IfMatch(v),
                            _ => Precondition::None,
                        };
                        self.release(
                            &call,
                            shared,
                            |rec| {
                                rec.version = version.clone();
                                rec.known = true;
                            },
                            fx,
                        );
                        self.follow_up = Some(FollowUp::PutWith(pre, call.started_at));
                    }
                }
                HeadOutcome::Missing => {
                    self.release(
                        &call,
                        shared,
                        |rec| {
                            rec.version = None;
                            rec.known = true;
                        },
                        fx,
                    );
                    let pre = if self.cfg.s3.conditional_writes {
                        Precondition::IfAbsent
                    } else {
                        Precondition::None
                    };
                    self.follow_up = Some(FollowUp::PutWith(pre, call.started_at));
                }
                HeadOutcome::Failed(e) => {
                    // Do not insist on asking: the retry writes conditionally (If-None-Match: *),
                    // whose answer also carries the store's error code (HEAD answers have no
                    // body), and a 412 brings the HEAD back.
                    let recorded =
                        node_lock::update_if_owner(shared, &self.lease_key, self.me, |rec| {
                            rec.known = true;
                        });
                    self.record_problem(recorded, fx);
                    let why = format!("{e} (from {})", self.cfg.storage_upstream);
                    self.export_failed(&call, &why, now, shared, fx)
                }
            },
            CallKind::Poll => {
                let Source::Url(p) = &mut self.source else {
                    return;
                };
                match p.on_response(response) {
                    PollResult::Unchanged => {}
                    PollResult::Fetched(body) => self.apply(Rc::new(body), now, shared, fx),
                    PollResult::Failed(reason) => {
                        let line =
                            format!("fetching the config from {} failed: {reason}", p.describe());
                        fx.push(Effect::Log(Level::Warn, line));
                        fx.push(Effect::Metric(Metric::SourceErrorsTotal, 1));
                    }
                }
            }
        }
    }

    fn call_failed(
        &mut self,
        call: Call,
        reason: &str,
        now: u64,
        shared: &mut dyn SharedStore,
        fx: &mut Vec<Effect>,
    ) {
        match &call.kind {
            CallKind::Put { .. } | CallKind::Head { .. } => {
                // Name where the call went (host:port or cluster; never credentials).
                let why = format!("request to {} failed: {reason}", self.cfg.storage_upstream);
                self.export_failed(&call, &why, now, shared, fx)
            }
            CallKind::Poll => {
                let what = match &self.source {
                    Source::Url(p) => p.describe(),
                    Source::Filter => String::new(),
                };
                fx.push(Effect::Log(
                    Level::Warn,
                    format!("fetching the config from {what} failed: {reason}"),
                ));
                fx.push(Effect::Metric(Metric::SourceErrorsTotal, 1));
            }
        }
    }

    /// A 412/409: the follow-up (set by the caller) resolves it on the next tick.
    fn conflict(
        &mut self,
        call: Call,
        why: &str,
        now: u64,
        shared: &mut dyn SharedStore,
        fx: &mut Vec<Effect>,
    ) {
        self.conflict_rounds += 1;
        if self.conflict_rounds > MAX_CONFLICT_ROUNDS {
            self.conflict_rounds = 0;
            self.export_failed(
                &call,
                &format!("{why}, {MAX_CONFLICT_ROUNDS} times in a row"),
                now,
                shared,
                fx,
            );
            return;
        }
        fx.push(Effect::Log(
            Level::Info,
            format!(
                "{}: {why}; checking it before writing",
                self.store.describe(&self.key)
            ),
        ));
        self.release(&call, shared, |_| {}, fx);
    }

    fn release(
        &mut self,
        _call: &Call,
        shared: &mut dyn SharedStore,
        mut f: impl FnMut(&mut node_lock::NodeRecord),
        fx: &mut Vec<Effect>,
    ) {
        let recorded = node_lock::update_if_owner(shared, &self.lease_key, self.me, |rec| {
            rec.schedule.release();
            f(rec);
        });
        self.record_problem(recorded, fx);
    }

    fn export_failed(
        &mut self,
        call: &Call,
        reason: &str,
        now: u64,
        shared: &mut dyn SharedStore,
        fx: &mut Vec<Effect>,
    ) {
        let hash = match &call.kind {
            CallKind::Put { hash, .. } | CallKind::Head { hash } => hash.clone(),
            CallKind::Poll => return,
        };
        self.follow_up = None;
        let (backoff, mut rng) = (self.backoff, self.rng.clone());
        let mut retry = (0, 0);
        let recorded = node_lock::update_if_owner(shared, &self.lease_key, self.me, |rec| {
            let mut r = rng.clone();
            retry = rec.schedule.failed(&hash, now, &backoff, &mut r);
            rng = r;
        });
        self.rng = rng;
        fx.push(Effect::Log(
            Level::Warn,
            format!(
                "export to {} failed: {reason}; retry {} in {} ms",
                self.store.describe(&self.key),
                retry.0,
                retry.1
            ),
        ));
        fx.push(Effect::Metric(Metric::ExportFailuresTotal, 1));
        self.record_problem(recorded, fx);
    }

    fn record_problem(&mut self, recorded: Result<bool, String>, fx: &mut Vec<Effect>) {
        match recorded {
            Ok(true) => {}
            Ok(false) => fx.push(Effect::Log(
                Level::Info,
                "the export lease moved to another worker meanwhile; it takes over from here"
                    .into(),
            )),
            Err(e) => self.shared_data_error(&e, fx),
        }
    }

    /// Logged once per outage, not on every tick.
    fn shared_data_error(&mut self, e: &str, fx: &mut Vec<Effect>) {
        if !self.shared_data_broken {
            self.shared_data_broken = true;
            fx.push(Effect::Log(
                Level::Error,
                format!(
                    "shared data unavailable ({e}); exports paused (is an shm_kv zone configured?)"
                ),
            ));
        }
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests;
