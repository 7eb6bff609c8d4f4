//! The export sub-machine: debounce (Kong's semantics, `debounce`), the conditional upload, the
//! HEAD that asks first or resolves a conflict, and retries with backoff.
//!
//! Conditional-write rule (an export never overwrites a newer config written by another node):
//! * the node record keeps the ETag of the object as this node last wrote or read it (`version`,
//!   `known`); a PUT sends `If-Match: <etag>`, or `If-None-Match: *` when the object is absent;
//! * a node that does not know the object (first export, or after a reload wiped shared data:
//!   docs/host-behaviours.md) HEADs it first, so identical content is never uploaded again;
//! * on 412/409 (or 404 NoSuchKey on `If-Match`) the next tick HEADs the object and reads the
//!   metadata every export writes (`config-sha256`, `config-applied-at` = host ms when the
//!   exporting node first saw the config, `uploader`, `config-sequence`, `config-updated-at`):
//!   - same content hash → already stored, nothing to do;
//!   - other content: `provenance::decide` says which is newer (docs/election.md, "Which config
//!     is newer"): a newer stored config is kept (our next change replaces it, with `If-Match` on
//!     the ETag just read); else PUT again with `If-Match` on that ETag (404 → `If-None-Match:
//!     *`).
//!
//! At most `MAX_CONFLICT_ROUNDS` such rounds in a row; then it counts as a failed export.
//! Every write carries `config-sequence`: one more than the object it replaces, and
//! `config-supersedes`: that object's config and what it had replaced (`store::lineage`).

use std::rc::Rc;

use super::effects::{Effects, Level, Metric};
use super::history::Exported;
use super::provenance::{self, Ours, Verdict};
use super::CallId;
use crate::backoff::{Backoff, Rng};
use crate::debounce::Decision;
use crate::document::Document;
use crate::http::{HttpResponse, OutboundRequest};
use crate::node_lock::{self, NodeRecord, SharedStore};
use crate::settings::Config;
use crate::store::{
    lineage, ExportMeta, HeadOutcome, ObjectStore, Precondition, PutOutcome, RemoteMeta,
};

const MAX_CONFLICT_ROUNDS: u32 = 3;

/// What the sub-machine needs from its orchestrator for one event or tick.
pub(super) struct Cx<'a> {
    pub now: u64,
    pub shared: &'a mut dyn SharedStore,
    pub fx: &'a mut Effects,
    pub store: &'a dyn ObjectStore,
    /// The node record (lease + export state) in shared data.
    pub record_key: &'a str,
    pub me: u64,
}

#[derive(Clone, Debug)]
enum CallKind {
    Put {
        hash: String,
        bytes: usize,
        next: Next,
        /// What the PUT stores, for the history once it is stored.
        upload: Option<Box<Exported>>,
    },
    Head {
        hash: String,
    },
}

impl CallKind {
    fn hash(&self) -> &str {
        match self {
            CallKind::Put { hash, .. } | CallKind::Head { hash } => hash,
        }
    }
}

#[derive(Clone, Debug)]
struct InFlight {
    id: CallId,
    kind: CallKind,
    /// When the export began (its first request): the debounce and the logged duration count
    /// the whole export, HEADs included.
    since: u64,
}

/// What a HEAD or a 412 leaves for the next tick (`since`: when the export began).
#[derive(Clone, Debug, PartialEq, Eq)]
enum FollowUp {
    Head { since: u64 },
    PutWith(Precondition, u64),
}

/// What the lease holder decided to do this tick (computed inside the atomic record update).
#[derive(Debug)]
pub(super) enum Plan {
    Nothing,
    /// A PUT: its precondition, when the export began, and where it stands after the object it
    /// replaces.
    Put(Precondition, u64, Next),
    Head(u64),
}

/// A write's place after the object it replaces (as the node last wrote or read it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Next {
    /// `config-sequence`: one more.
    sequence: u64,
    /// The replaced object's lineage (`NodeRecord::lineage`); `config-supersedes` leaves out the
    /// written config itself.
    replaced: Vec<String>,
}

impl Next {
    fn after(rec: &NodeRecord) -> Next {
        Next {
            sequence: rec.sequence.saturating_add(1),
            replaced: rec.lineage.clone(),
        }
    }
}

/// A request the export wants sent, or why it could not be built.
pub(super) struct Outgoing {
    kind: CallKind,
    since: u64,
    pub request: Result<OutboundRequest, String>,
}

pub(super) struct Export {
    key: String,
    /// The filter's own configuration is the source: filter instances may carry different
    /// documents, the newest wins node-wide (`NodeRecord::newest`).
    own_source: bool,
    conditional: bool,
    delay_ms: u64,
    backoff: Backoff,
    rng: Rng,
    node_id: Option<String>,
    doc: Option<Document>,
    call: Option<InFlight>,
    follow_up: Option<FollowUp>,
    conflict_rounds: u32,
    /// Signing (and, for the carried-over document, encryption) of the upload.
    seal: crate::settings::SealSettings,
    /// The export just stored (or found stored), for the history to record (`take_exported`).
    exported: Option<Exported>,
}

impl Export {
    pub(super) fn new(cfg: &Config, me: u64, conditional: bool, own_source: bool) -> Export {
        Export {
            key: cfg.config_key(),
            own_source,
            conditional,
            delay_ms: cfg.export_delay_ms,
            backoff: Backoff {
                base_ms: cfg.retry_base_ms,
                max_ms: cfg.retry_max_ms,
            },
            rng: Rng::new(me),
            node_id: cfg.node_id.clone(),
            doc: None,
            call: None,
            follow_up: None,
            conflict_rounds: 0,
            seal: cfg.seal.clone(),
            exported: None,
        }
    }

    /// A reconfigured root context keeps its document, its call and its randomness when the
    /// target object and the kind of source are unchanged.
    pub(super) fn carry_over(&mut self, previous: Export) {
        // Not across a change of sealing: an old document may be encrypted differently.
        if previous.key == self.key
            && previous.own_source == self.own_source
            && previous.seal == self.seal
        {
            self.doc = previous.doc;
            self.call = previous.call;
            self.rng = previous.rng;
        }
    }

    pub(super) fn key(&self) -> &str {
        &self.key
    }

    pub(super) fn set_node_id(&mut self, id: &str) {
        self.node_id = Some(id.to_string());
    }

    pub(super) fn node_id(&self) -> Option<&str> {
        self.node_id.as_deref()
    }

    /// Whether this root context may hold the node's lease (with the filter's own config as
    /// source, only one holding the newest document node-wide).
    pub(super) fn eligible(&self, rec: &NodeRecord) -> bool {
        !self.own_source
            || match (&rec.newest, &self.doc) {
                (None, _) => true,
                (Some(n), Some(d)) => n.hash == d.sha256_hex,
                (Some(_), None) => false,
            }
    }

    /// A new document (from the source). Same content keeps the first-seen time.
    pub(super) fn offer(&mut self, doc: Document, cx: &mut Cx<'_>) {
        if let Some(cur) = self.doc.as_mut() {
            if cur.sha256 == doc.sha256 {
                // Share the new buffer (the filter configuration holds it), release the old one.
                cur.body = doc.body;
                return;
            }
        }
        let (hash, seen_at) = (doc.sha256_hex.clone(), doc.seen_at);
        let prev = self.doc.as_ref().map(|d| d.sha256_hex.clone());
        let own_source = self.own_source;
        let published = node_lock::update(cx.shared, cx.record_key, |rec| {
            // Which configs this node held, in order: which config is newer (`provenance`).
            provenance::note_held(&mut rec.held, &hash, prev.as_deref());
            if own_source && rec.newest.as_ref().is_none_or(|n| seen_at >= n.seen_at) {
                rec.newest = Some(node_lock::Newest {
                    hash: hash.clone(),
                    seen_at,
                });
            }
        });
        if let Err(e) = published {
            cx.fx.log(Level::Debug, format!("shared data: {e}"));
        }
        cx.fx.log(
            Level::Debug,
            format!(
                "config change seen ({} bytes, sha256 {})",
                doc.body.len(),
                short(&doc.sha256_hex)
            ),
        );
        self.doc = Some(doc);
        // A pending conflict resolution was about the previous content.
        self.follow_up = None;
        self.conflict_rounds = 0;
    }

    /// Inside the node record's atomic update, by the lease holder: what to send now.
    pub(super) fn plan(&self, rec: &mut NodeRecord, now: u64, deadline: u64) -> Plan {
        if self.call.is_some() {
            return Plan::Nothing;
        }
        let Some(doc) = &self.doc else {
            return Plan::Nothing;
        };
        let hash = &doc.sha256_hex;
        match rec.schedule.decide(hash, now) {
            Decision::Go => {}
            Decision::UpToDate | Decision::Wait { .. } | Decision::Busy { .. } => {
                return Plan::Nothing
            }
        }
        let next = Next::after(rec);
        let plan = match self.follow_up.clone() {
            Some(FollowUp::Head { since }) => Plan::Head(since),
            Some(FollowUp::PutWith(p, since)) => Plan::Put(p, since, next),
            // The node does not know the stored object: ask before sending the whole body.
            None if !rec.known => Plan::Head(now),
            None if !self.conditional => Plan::Put(Precondition::None, now, next),
            None => Plan::Put(
                match &rec.version {
                    Some(v) => Precondition::IfMatch(v.clone()),
                    None => Precondition::IfAbsent,
                },
                now,
                next,
            ),
        };
        // Marks the upload node-wide and keeps the lease at least until its deadline, so no
        // other worker starts one meanwhile, and a dead holder's upload expires with its lease.
        rec.schedule.begin(hash, now, deadline);
        rec.lease_until = rec.lease_until.max(deadline);
        plan
    }

    /// The request for a plan.
    pub(super) fn request(
        &mut self,
        plan: Plan,
        store: &dyn ObjectStore,
        now: u64,
    ) -> Option<Outgoing> {
        let doc = self.doc.as_ref()?;
        let hash = doc.sha256_hex.clone();
        let out = match plan {
            Plan::Nothing => return None,
            Plan::Put(pre, since, next) => {
                let meta = self.meta(doc, &next);
                let request = match &meta {
                    Ok(m) => store.put(&self.key, &doc.body, &pre, m, now),
                    Err(e) => Err(e.clone()),
                };
                Outgoing {
                    kind: CallKind::Put {
                        hash,
                        bytes: doc.body.len(),
                        next,
                        upload: meta.ok().map(|meta| {
                            Box::new(Exported {
                                body: Rc::clone(&doc.body),
                                meta,
                                at: now,
                            })
                        }),
                    },
                    since,
                    request,
                }
            }
            Plan::Head(since) => Outgoing {
                kind: CallKind::Head { hash },
                since,
                request: store.head(&self.key, now),
            },
        };
        self.follow_up = None;
        Some(out)
    }

    /// The metadata an upload of `doc` carries; sealed exports: the signature over the key and
    /// the stored bytes' digest.
    fn meta(&self, doc: &Document, next: &Next) -> Result<ExportMeta, String> {
        let seal = crate::seal::export_metadata(
            &self.seal,
            &self.key,
            &doc.body,
            &doc.sha256,
            doc.seen_at,
        )?;
        Ok(ExportMeta {
            uploader: self.node_id.clone().unwrap_or_default(),
            applied_at: doc.seen_at,
            sha256_hex: doc.sha256_hex.clone(),
            sha256: doc.sha256,
            sequence: next.sequence,
            updated_at_ms: doc.updated_at_ms,
            supersedes: lineage::for_write(&doc.sha256_hex, &next.replaced),
            seal,
        })
    }

    /// The export stored (or found already stored) since the last call, for the history.
    pub(super) fn take_exported(&mut self) -> Option<Exported> {
        self.exported.take()
    }

    /// The request went out as call `id`.
    pub(super) fn sent(&mut self, id: CallId, out: Outgoing) {
        self.call = Some(InFlight {
            id,
            kind: out.kind,
            since: out.since,
        });
    }

    /// The request could not be built (a signing error): a failed attempt.
    pub(super) fn not_sent(&mut self, out: Outgoing, why: &str, cx: &mut Cx<'_>) {
        let call = InFlight {
            id: 0,
            kind: out.kind,
            since: out.since,
        };
        self.failed(&call, why, cx);
    }

    fn take(&mut self, id: CallId) -> Option<InFlight> {
        match &self.call {
            Some(c) if c.id == id => self.call.take(),
            _ => None,
        }
    }

    pub(super) fn on_answer(&mut self, id: CallId, resp: HttpResponse, cx: &mut Cx<'_>) {
        let Some(call) = self.take(id) else { return };
        match &call.kind {
            CallKind::Put {
                hash,
                bytes,
                next,
                upload,
            } => match cx.store.parse_put(&resp) {
                PutOutcome::Stored { version } => {
                    let written = (version, next.clone());
                    self.stored(&call, hash, *bytes, written, cx);
                    self.exported = upload.clone().map(|u| Exported { at: cx.now, ..*u });
                }
                PutOutcome::PreconditionFailed => {
                    let since = call.since;
                    let why = "the object changed in storage since this node last saw it";
                    if self.conflict(&call, why, cx) {
                        self.follow_up = Some(FollowUp::Head { since });
                    }
                }
                PutOutcome::Failed(e) => {
                    let why = format!("{e} (from {})", cx.store.upstream());
                    self.failed_with(&call, &why, e.needs_operator(), cx)
                }
            },
            CallKind::Head { .. } => self.head_answered(&call, &resp, cx),
        }
    }

    fn head_answered(&mut self, call: &InFlight, resp: &HttpResponse, cx: &mut Cx<'_>) {
        match cx.store.parse_head(resp) {
            HeadOutcome::Found(meta) => self.head_found(call, meta, cx),
            HeadOutcome::Missing => {
                self.release(cx, |rec| {
                    rec.version = None;
                    rec.lineage.clear();
                    rec.known = true;
                });
                let pre = if self.conditional {
                    Precondition::IfAbsent
                } else {
                    Precondition::None
                };
                self.follow_up = Some(FollowUp::PutWith(pre, call.since));
            }
            HeadOutcome::Failed(e) => {
                // With conditional writes, do not insist on asking: the retry writes
                // conditionally (If-None-Match: *), whose answer also carries the store's
                // error code (HEAD answers have no body), and a 412 brings the HEAD back.
                // Without them the retry asks again: an unconditional write would replace an
                // object nobody read (a node restarted from a stale config over a newer
                // export: found by the chaos test, docs/election.md "Measured").
                if self.conditional {
                    let recorded =
                        node_lock::update_if_owner(cx.shared, cx.record_key, cx.me, |rec| {
                            rec.known = true;
                        });
                    record_problem(recorded, cx.fx);
                }
                let why = format!("{e} (from {})", cx.store.upstream());
                self.failed_with(call, &why, e.needs_operator(), cx)
            }
        }
    }

    pub(super) fn on_failure(&mut self, id: CallId, reason: &str, cx: &mut Cx<'_>) {
        let Some(call) = self.take(id) else { return };
        // Name where the call went (host:port or cluster; never credentials).
        let why = format!("request to {} failed: {reason}", cx.store.upstream());
        self.failed(&call, &why, cx);
    }

    fn stored(
        &mut self,
        call: &InFlight,
        hash: &str,
        bytes: usize,
        (version, next): (Option<String>, Next),
        cx: &mut Cx<'_>,
    ) {
        let supersedes = lineage::for_write(hash, &next.replaced);
        let lineage = lineage::of_object(Some(hash), &supersedes);
        self.conflict_rounds = 0;
        let (delay, started) = (self.delay_ms, call.since);
        let recorded = node_lock::update_if_owner(cx.shared, cx.record_key, cx.me, |rec| {
            rec.schedule.succeeded(hash, started, delay);
            rec.version = version.clone();
            rec.sequence = next.sequence;
            rec.lineage = lineage.clone();
            rec.known = true;
        });
        let duration = cx.now.saturating_sub(call.since);
        cx.fx.log(
            Level::Info,
            format!(
                "exported config to {} ({} bytes, sha256 {}) in {} ms",
                cx.store.describe(&self.key),
                bytes,
                short(hash),
                duration
            ),
        );
        cx.fx.metric(Metric::ExportsTotal, 1);
        cx.fx.metric(Metric::LastExportBytes, bytes as u64);
        cx.fx.metric(Metric::LastExportDurationMs, duration);
        cx.fx
            .metric(Metric::LastExportTimestampSeconds, cx.now / 1000);
        record_problem(recorded, cx.fx);
    }

    fn head_found(&mut self, call: &InFlight, meta: RemoteMeta, cx: &mut Cx<'_>) {
        let hash = call.kind.hash();
        let same = self.same_content(hash, meta.sha256_hex.as_deref());
        let verdict = match same {
            Some(_) => None,
            None => Some(self.which_is_newer(hash, &meta, cx)),
        };
        let why_kept = match verdict {
            Some(Verdict::Replace(_)) => {
                let pre = match meta.version.clone() {
                    Some(v) if self.conditional => Precondition::IfMatch(v),
                    _ => Precondition::None,
                };
                self.release(cx, |rec| knows_stored(rec, &meta));
                self.follow_up = Some(FollowUp::PutWith(pre, call.since));
                return;
            }
            Some(Verdict::Keep(why)) => why,
            None => "",
        };
        let settled = same.clone().unwrap_or_else(|| hash.to_string());
        let recorded = node_lock::update_if_owner(cx.shared, cx.record_key, cx.me, |rec| {
            rec.schedule.settled(&settled);
            knows_stored(rec, &meta);
        });
        self.conflict_rounds = 0;
        let what = cx.store.describe(&self.key);
        let msg = if same.is_some() {
            format!(
                "{what} already holds this config (sha256 {}); nothing to upload",
                short(&settled)
            )
        } else {
            format!(
                "{what} holds a newer config (uploaded by {}, applied at {} ms, sequence {}): {why_kept}; not overwriting it",
                meta.uploader.as_deref().unwrap_or("unknown"),
                meta.applied_at.unwrap_or(0),
                meta.sequence.unwrap_or(0)
            )
        };
        cx.fx.log(Level::Info, msg);
        record_problem(recorded, cx.fx);
        self.note_stored_current(same.as_deref(), &meta, cx.now);
    }

    /// The content both the HEAD's object and ours (the call's, or the current document: it
    /// may have changed while the HEAD was out) have, if any: nothing to upload then.
    fn same_content(&self, hash: &str, stored: Option<&str>) -> Option<String> {
        let current = self.doc.as_ref().map(|d| d.sha256_hex.as_str());
        if stored == Some(hash) {
            Some(hash.to_string())
        } else {
            stored.filter(|s| Some(*s) == current).map(str::to_string)
        }
    }

    /// Storage holds the current document: the history records it too (a leader may have
    /// stopped between `config.json` and its history object; docs/history.md).
    fn note_stored_current(&mut self, same: Option<&str>, meta: &RemoteMeta, now: u64) {
        let Some(doc) = self
            .doc
            .as_ref()
            .filter(|d| same == Some(d.sha256_hex.as_str()))
        else {
            return;
        };
        // The stored object's own place: its sequence, and what it superseded.
        let stored_place = Next {
            sequence: meta.sequence.unwrap_or(0),
            replaced: meta.supersedes.clone(),
        };
        self.exported = self.meta(doc, &stored_place).ok().map(|meta| Exported {
            body: Rc::clone(&doc.body),
            meta,
            at: now,
        });
    }

    /// Whether our document replaces the stored one, whose content differs
    /// (`provenance::decide`, with the configs this node held).
    fn which_is_newer(&self, hash: &str, meta: &RemoteMeta, cx: &mut Cx<'_>) -> Verdict {
        let held = match node_lock::peek(cx.shared, cx.record_key) {
            Ok(rec) => rec.map(|r| r.held).unwrap_or_default(),
            Err(e) => {
                cx.fx.log(Level::Debug, format!("shared data: {e}"));
                Vec::new()
            }
        };
        let doc = self.doc.as_ref().filter(|d| d.sha256_hex == hash);
        let ours = Ours {
            hash,
            held: &held,
            updated_at_ms: doc.and_then(|d| d.updated_at_ms),
            seen_at: doc.map(|d| d.seen_at).unwrap_or(0),
        };
        let verdict = provenance::decide(&ours, meta, cx.now);
        if let Verdict::Replace(why) = verdict {
            cx.fx.log(
                Level::Info,
                format!(
                    "{} holds another config (sequence {}); replacing it: {why}",
                    cx.store.describe(&self.key),
                    meta.sequence.unwrap_or(0)
                ),
            );
        }
        verdict
    }

    /// A 412/409: returns whether a HEAD should resolve it (false: too many rounds, failed).
    fn conflict(&mut self, call: &InFlight, why: &str, cx: &mut Cx<'_>) -> bool {
        self.conflict_rounds += 1;
        if self.conflict_rounds > MAX_CONFLICT_ROUNDS {
            self.conflict_rounds = 0;
            let why = format!("{why}, {MAX_CONFLICT_ROUNDS} times in a row");
            self.failed(call, &why, cx);
            return false;
        }
        cx.fx.log(
            Level::Info,
            format!(
                "{}: {why}; checking it before writing",
                cx.store.describe(&self.key)
            ),
        );
        self.release(cx, |_| {});
        true
    }

    fn release(&mut self, cx: &mut Cx<'_>, mut f: impl FnMut(&mut NodeRecord)) {
        let recorded = node_lock::update_if_owner(cx.shared, cx.record_key, cx.me, |rec| {
            rec.schedule.release();
            f(rec);
        });
        record_problem(recorded, cx.fx);
    }

    fn failed(&mut self, call: &InFlight, reason: &str, cx: &mut Cx<'_>) {
        self.failed_with(call, reason, None, cx);
    }

    /// `fix`: the store's error is one no retry can fix (wrong keys, a missing permission,
    /// `StoreError::needs_operator`): logged at error level with what to change, and retried only
    /// after the longest backoff (the operator may fix it without a reload).
    fn failed_with(&mut self, call: &InFlight, reason: &str, fix: Option<&str>, cx: &mut Cx<'_>) {
        let hash = call.kind.hash().to_string();
        self.follow_up = None;
        let (mut backoff, mut rng) = (self.backoff, self.rng.clone());
        if fix.is_some() {
            backoff.base_ms = backoff.max_ms;
        }
        let mut retry = (0, 0);
        let now = cx.now;
        let recorded = node_lock::update_if_owner(cx.shared, cx.record_key, cx.me, |rec| {
            let mut r = rng.clone();
            retry = rec.schedule.failed(&hash, now, &backoff, &mut r);
            rng = r;
        });
        self.rng = rng;
        match fix {
            None => cx.fx.log(
                Level::Warn,
                format!(
                    "export to {} failed: {reason}; retry {} in {} ms",
                    cx.store.describe(&self.key),
                    retry.0,
                    retry.1
                ),
            ),
            Some(fix) => cx.fx.log(
                Level::Error,
                format!(
                    "export to {} failed: {reason}; no retry can fix this: {fix}; next attempt in {} ms",
                    cx.store.describe(&self.key),
                    retry.1
                ),
            ),
        }
        cx.fx.metric(Metric::ExportFailuresTotal, 1);
        record_problem(recorded, cx.fx);
    }
}

/// The node record knows the stored object as a HEAD read it.
fn knows_stored(rec: &mut NodeRecord, meta: &RemoteMeta) {
    rec.version = meta.version.clone();
    rec.sequence = meta.sequence.unwrap_or(0);
    rec.lineage = lineage::of_object(meta.sha256_hex.as_deref(), &meta.supersedes);
    rec.known = true;
}

fn record_problem(recorded: Result<bool, String>, fx: &mut Effects) {
    match recorded {
        Ok(true) => {}
        Ok(false) => fx.log(
            Level::Info,
            "the export lease moved to another worker meanwhile; it takes over from here",
        ),
        // The orchestrator reports shared-data outages once, on its own reads.
        Err(e) => fx.log(Level::Debug, format!("shared data: {e}")),
    }
}

pub(super) fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}
