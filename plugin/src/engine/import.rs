//! The import sub-machine: a fallback node that has no configuration, and whose source of truth
//! is unreachable, downloads the last export and applies it through its own Admin API.
//!
//! One cycle, one request per tick (only the node's lease holder runs it):
//! 1. `GET /status` on the node's Admin API: `configuration_hash` 32 zeros means empty; otherwise
//!    `GET /services?size=2` tells a bootstrap configuration (one service tagged
//!    `config-bridge-bootstrap`, holding this filter's chain) from a real one. A real
//!    configuration — by any path: a CP, an operator, an earlier import — ends the import for good.
//! 2. With `import_probe_url`: `GET` it; any answer below 500 means the source of truth is up (do
//!    not import); it must fail for `import_grace_period` first. Without a probe, the node must
//!    have been empty for the grace period.
//! 3. `GET <prefix>/<version>/config.json` from the store (read-only credentials suffice; a
//!    refused object is asked for with `If-None-Match` so it is not downloaded again), validated:
//!    size limit, JSON with `_format_version`, the `config-sha256` metadata when present.
//! 4. The document's config-bridge filters — wherever they are: top-level `filter_chains`,
//!    nested under services and routes, object or Kong 3.4 string configurations — are replaced by
//!    this node's own (import-only) configuration, so a fallback node never starts exporting over
//!    the real backup; with `import_refuse_plugins`, a document holding one of those plugins
//!    anywhere is refused. This is a sliced pass (`redact::Rewriter`) and fail-closed: a document
//!    it cannot rewrite (not well-formed, nested too deep, an unreadable chain) is refused with one
//!    line, never applied unchanged. Then it is posted: `POST /config?flatten_errors=1`. 201 ends the import; 400 is logged (entity types,
//!    names and messages, never entity contents) and that object is not tried again, nor after a
//!    413 (one line naming `nginx_admin_client_max_body_size`); 429 (`Retry-After`, fractions
//!    included), 5xx and failures are retried with backoff.
//!
//! Kong Enterprise imports once, never retries, only on hybrid DPs; this retries until it works
//! and never replaces a configuration the node already has (docs/architecture.md).

use std::rc::Rc;

use crate::json::Value;

use super::effects::{Effects, Level, Metric};
use super::CallId;
use crate::backoff::{Backoff, Rng};
use crate::document_check::{CheckStep, DocumentCheck};
use crate::http::{HttpResponse, OutboundRequest};
use crate::http_url::HttpUrl;
use crate::redact::{chain_filters, is_config_bridge, ChainEdit, Rewriter, Step as RewriteStep};
use crate::seal::{ObjectMeta, Start, Unsealed, Unsealer, SEAL_SLICE_BYTES};
use crate::settings::KongAdminSettings;
use crate::settings::{ImportSettings, SealSettings};
use crate::store::{GetOutcome, ObjectStore, RemoteMeta};
use crate::vec_map::VecMap;

const EMPTY_HASH: &str = "00000000000000000000000000000000";
/// The tag a bootstrap configuration's only service carries (examples/kong/fallback-node/).
pub const BOOTSTRAP_TAG: &str = "config-bridge-bootstrap";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Status,
    Bootstrap,
    Probe,
    Fetch,
    Post,
}

/// A validated object waiting to be posted.
#[derive(Debug)]
struct Pending {
    body: Rc<Vec<u8>>,
    meta: RemoteMeta,
}

#[derive(Debug)]
pub(super) struct Import {
    settings: ImportSettings,
    key: String,
    /// The key signatures and encryption are bound to: `key`, or `config.json` when `key` is a
    /// history object (docs/history.md).
    seal_key: String,
    where_: String,
    /// This filter's own configuration text (import-only), put in place of exporting filters.
    own_filter_config: Option<Rc<Vec<u8>>>,
    next: Step,
    in_flight: Option<(CallId, Step)>,
    next_at: u64,
    empty_since: Option<u64>,
    probe_failing_since: Option<u64>,
    pending: Option<Pending>,
    /// A downloaded document being checked a slice per tick (before it is rewritten).
    checking: Option<(DocumentCheck, Vec<u8>, RemoteMeta)>,
    /// A validated object being rewritten a slice per tick (before it is pending).
    rewriting: Option<(Rewriter<ImportEdit>, RemoteMeta)>,
    /// The version (ETag) of an object refused by validation or by the Admin API.
    refused: Option<String>,
    backoff: Backoff,
    rng: Rng,
    failures: u32,
    done: bool,
    /// "Waiting" lines said once per reason (until the import happens), not every cycle.
    said: VecMap<&'static str, ()>,
    /// Signatures and encryption the import requires (docs/sealed-exports.md).
    seal: SealSettings,
    /// A downloaded sealed object being hashed, verified and decrypted a slice per tick.
    unsealing: Option<(Box<Unsealer>, RemoteMeta)>,
}

impl Import {
    pub(super) fn new(
        settings: ImportSettings,
        key: String,
        where_: String,
        me: u64,
        backoff: Backoff,
    ) -> Import {
        Import {
            backoff,
            rng: Rng::new(me ^ 0x1a2b_3c4d),
            settings,
            seal_key: key.clone(),
            key,
            where_,
            own_filter_config: None,
            next: Step::Status,
            in_flight: None,
            next_at: 0,
            empty_since: None,
            probe_failing_since: None,
            pending: None,
            checking: None,
            rewriting: None,
            refused: None,
            failures: 0,
            done: false,
            said: VecMap::new(),
            seal: SealSettings::default(),
            unsealing: None,
        }
    }

    /// The signatures and encryption this import requires.
    pub(super) fn with_seal(mut self, seal: SealSettings) -> Import {
        self.seal = seal;
        self
    }

    /// The key the export was sealed for, when the import downloads a copy of it (a history
    /// object is sealed as `config.json`).
    pub(super) fn sealed_for(mut self, key: String) -> Import {
        self.seal_key = key;
        self
    }

    /// One slice of unsealing (every tick while an object is being verified and decrypted).
    pub(super) fn unseal_slice(&mut self, now: u64, fx: &mut Effects) {
        let Some((unsealer, _)) = self.unsealing.as_mut() else {
            return;
        };
        let outcome = unsealer.step(SEAL_SLICE_BYTES);
        if outcome == Unsealed::Working {
            return;
        }
        let Some((unsealer, mut meta)) = self.unsealing.take() else {
            return;
        };
        match outcome {
            Unsealed::Done(plain) => {
                let by = |what: &str, id: &Option<String>| {
                    id.as_ref().map(|id| format!("{what} (key {id})"))
                };
                let how: Vec<String> = [
                    by("signature verified", &unsealer.verified_by),
                    by("decrypted", &unsealer.decrypted_with),
                ]
                .into_iter()
                .flatten()
                .collect();
                fx.log(
                    Level::Info,
                    format!("import: {}: {}", self.where_, crate::text::join(&how, ", ")),
                );
                // `config-sha256` speaks of the stored bytes, checked by the unsealer.
                meta.sha256_hex = None;
                self.accept(plain, meta, now, fx);
            }
            Unsealed::Failed(why) => self.refuse(&why, meta.version, now, fx),
            Unsealed::Working => {}
        }
    }

    pub(super) fn set_own_filter_config(&mut self, text: Option<Rc<Vec<u8>>>) {
        self.own_filter_config = text;
    }

    /// A downloaded document is being checked or rewritten a slice per tick.
    pub(super) fn busy(&self) -> bool {
        self.checking.is_some() || self.rewriting.is_some() || self.unsealing.is_some()
    }

    /// The next request, if one is due (called on ticks by the node's lease holder).
    pub(super) fn poll(
        &mut self,
        now: u64,
        store: &dyn ObjectStore,
        fx: &mut Effects,
    ) -> Option<Result<OutboundRequest, String>> {
        if self.checking.is_some() {
            self.check_slice(now, fx);
            return None;
        }
        if self.rewriting.is_some() {
            self.rewrite_slice(now, fx);
            return None;
        }
        if self.done || self.in_flight.is_some() || self.unsealing.is_some() || now < self.next_at {
            return None;
        }
        let request = match self.next {
            Step::Status => Ok(self.admin_get("/status")),
            Step::Bootstrap => Ok(self.admin_get("/services?size=2")),
            Step::Probe => {
                let (url, upstream) = self.settings.probe.clone()?;
                Ok(plain_get(&url, &upstream, Vec::new()))
            }
            Step::Fetch => store.get(&self.key, self.refused.as_deref(), now),
            Step::Post => Ok(self.post()?),
        };
        Some(request)
    }

    /// The request went out as call `id`.
    pub(super) fn sent(&mut self, id: CallId) {
        self.in_flight = Some((id, self.next));
    }

    pub(super) fn on_answer(
        &mut self,
        id: CallId,
        resp: HttpResponse,
        now: u64,
        store: &dyn ObjectStore,
        fx: &mut Effects,
    ) {
        let Some(step) = self.take(id) else { return };
        match step {
            Step::Status => self.status(&resp, now, fx),
            Step::Bootstrap => self.bootstrap(&resp, now, fx),
            Step::Probe if resp.status < 500 => {
                self.probe_failing_since = None;
                self.wait(
                    "the source of truth answers (import_probe_url); not importing",
                    now,
                    fx,
                );
            }
            Step::Probe => self.probe_failed(&format!("HTTP {}", resp.status), now, fx),
            Step::Fetch => self.fetched(store.parse_get(resp), now, fx),
            Step::Post => self.posted(&resp, now, fx),
        }
    }

    /// A request failed at the transport level (or timed out).
    pub(super) fn on_failure(
        &mut self,
        id: CallId,
        reason: &str,
        now: u64,
        store: &dyn ObjectStore,
        fx: &mut Effects,
    ) {
        let Some(step) = self.take(id) else { return };
        // Name where the call went (host:port or cluster; never credentials).
        let upstream = match step {
            Step::Probe => self
                .settings
                .probe
                .as_ref()
                .map(|(_, u)| u.as_str())
                .unwrap_or(""),
            Step::Fetch => store.upstream(),
            Step::Status | Step::Bootstrap | Step::Post => self.settings.admin.upstream.as_str(),
        };
        let reason = format!("{reason} (upstream {upstream})");
        let reason = reason.as_str();
        match step {
            Step::Probe => self.probe_failed(reason, now, fx),
            Step::Status | Step::Bootstrap => {
                let line =
                    format!("the node's Admin API did not answer ({reason}); checking again");
                self.retry(&line, now, fx);
            }
            Step::Fetch => self.retry(
                &format!("downloading {} failed: {reason}", self.where_),
                now,
                fx,
            ),
            Step::Post => self.retry(&format!("POST /config failed: {reason}"), now, fx),
        }
    }

    /// An answer announced more than `import_max_bytes` (its body was not read): the object is
    /// refused like one that failed validation (not downloaded again until it changes).
    pub(super) fn too_large(
        &mut self,
        id: CallId,
        resp: HttpResponse,
        announced: u64,
        now: u64,
        store: &dyn ObjectStore,
        fx: &mut Effects,
    ) {
        let Some(step) = self.take(id) else { return };
        let why = format!(
            "{announced} bytes is more than import_max_bytes ({})",
            self.settings.max_bytes
        );
        match step {
            Step::Fetch => {
                let version = match store.parse_get(resp) {
                    GetOutcome::Found { meta, .. } => meta.version,
                    _ => None,
                };
                self.refuse(&why, version, now, fx);
            }
            _ => self.retry(&format!("an answer of {why}"), now, fx),
        }
    }

    fn take(&mut self, id: CallId) -> Option<Step> {
        match self.in_flight {
            Some((i, step)) if i == id => {
                self.in_flight = None;
                Some(step)
            }
            _ => None,
        }
    }

    fn status(&mut self, resp: &HttpResponse, now: u64, fx: &mut Effects) {
        let hash = (resp.status == 200)
            .then(|| status_hash(&resp.body))
            .flatten();
        match hash.as_deref() {
            None if matches!(resp.status, 401 | 403) => {
                let line = format!(
                    "the node's /status answered HTTP {} (RBAC: set kong_admin_token, or a token with access)",
                    resp.status
                );
                self.retry(&line, now, fx);
            }
            None => {
                let line = format!("the node's /status answered HTTP {} without a configuration_hash (import needs a DB-less node's Admin API)", resp.status);
                self.retry(&line, now, fx);
            }
            Some(EMPTY_HASH) => self.empty(now, fx),
            Some(_) => {
                self.next = Step::Bootstrap;
            }
        }
    }

    fn bootstrap(&mut self, resp: &HttpResponse, now: u64, fx: &mut Effects) {
        if resp.status != 200 {
            let line = format!("the node's /services answered HTTP {}", resp.status);
            self.retry(&line, now, fx);
            return;
        }
        if only_bootstrap(&resp.body) {
            self.empty(now, fx);
            return;
        }
        self.done = true;
        fx.log(
            Level::Info,
            "the node has a configuration; nothing to import (and the import stays off)",
        );
    }

    /// The node has no real configuration: probe, or wait out the grace period, then fetch.
    fn empty(&mut self, now: u64, fx: &mut Effects) {
        let since = *self.empty_since.get_or_insert(now);
        if self.pending.is_some() {
            self.next = Step::Post;
            return;
        }
        if self.settings.probe.is_some() {
            self.next = Step::Probe;
            return;
        }
        if now.saturating_sub(since) >= self.settings.grace_ms {
            self.next = Step::Fetch;
        } else {
            self.wait(
                "the node has no configuration; waiting out import_grace_period",
                now,
                fx,
            );
        }
    }

    fn probe_failed(&mut self, reason: &str, now: u64, fx: &mut Effects) {
        let since = *self.probe_failing_since.get_or_insert(now);
        if now.saturating_sub(since) >= self.settings.grace_ms {
            self.next = Step::Fetch;
            if self.said.insert("probe", ()).is_none() {
                fx.log(
                    Level::Warn,
                    format!("the source of truth is unreachable ({reason}) for {} s; importing the last export", self.settings.grace_ms / 1000),
                );
            }
        } else {
            self.wait(
                "the source of truth is unreachable; waiting out import_grace_period",
                now,
                fx,
            );
        }
    }

    fn fetched(&mut self, outcome: GetOutcome, now: u64, fx: &mut Effects) {
        match outcome {
            GetOutcome::Found { body, meta } => self.downloaded(body, meta, now, fx),
            GetOutcome::NotModified => self.wait(
                "the export is still the one refused before; waiting for a newer one",
                now,
                fx,
            ),
            GetOutcome::Missing => {
                let line = format!("{} does not exist yet; nothing to import", self.where_);
                self.retry(&line, now, fx);
            }
            GetOutcome::Failed(e) => match e.needs_operator() {
                None => {
                    let line = format!("downloading {} failed: {e}", self.where_);
                    self.retry(&line, now, fx);
                }
                Some(fix) => {
                    // No retry can fix it: said at error level, retried after the longest backoff.
                    self.failures = self.failures.max(31);
                    let delay = self.retry_quietly(now);
                    let line = format!(
                        "import: downloading {} failed: {e}; no retry can fix this: {fix} (next try in {delay} ms)",
                        self.where_
                    );
                    fx.log(Level::Error, line);
                }
            },
        }
    }

    /// A downloaded object: size first, then (sealed exports) hash, signature and decryption
    /// across ticks (`unseal_slice`), before anything parses it.
    fn downloaded(&mut self, body: Vec<u8>, meta: RemoteMeta, now: u64, fx: &mut Effects) {
        let max = self.settings.max_bytes;
        if body.len() as u64 > max {
            let why = format!("{} bytes is more than import_max_bytes ({max})", body.len());
            return self.refuse(&why, meta.version, now, fx);
        }
        let object = ObjectMeta {
            seal: meta.seal.clone(),
            applied_at: meta.applied_at,
            config_sha256: meta.sha256_hex.clone(),
        };
        match Unsealer::start(&self.seal, &self.seal_key, body, object) {
            Start::Plain(body) => self.accept(body, meta, now, fx),
            Start::Refused(why) => self.refuse(&why, meta.version, now, fx),
            Start::Unseal(u) => self.unsealing = Some((u, meta)),
        }
    }

    /// A document (plaintext) to check, then rewrite, a slice per tick each.
    fn accept(&mut self, body: Vec<u8>, meta: RemoteMeta, now: u64, fx: &mut Effects) {
        if body.len() as u64 > self.settings.max_bytes {
            let why = format!(
                "{} bytes is more than import_max_bytes ({})",
                body.len(),
                self.settings.max_bytes
            );
            return self.refuse(&why, meta.version, now, fx);
        }
        let check = DocumentCheck::new(meta.sha256_hex.clone());
        // Checked from the next tick on (`poll`): the answer that carried the body in has had
        // the host's copy of it (BENCHMARKS.md, issue 25, speed5).
        self.checking = Some((check, body, meta));
    }

    /// One slice of the check; a valid document goes on to the rewrite.
    fn check_slice(&mut self, now: u64, fx: &mut Effects) {
        let Some((check, body, _)) = self.checking.as_mut() else {
            return;
        };
        let step = check.step(body);
        if step == CheckStep::Working {
            return;
        }
        let Some((_, body, meta)) = self.checking.take() else {
            return;
        };
        match step {
            CheckStep::Valid => {
                let edit = ImportEdit::new(
                    self.own_filter_config.as_deref().map(Vec::as_slice),
                    &self.settings.refuse_plugins,
                );
                self.rewriting = Some((Rewriter::new(Rc::new(body), edit), meta));
            }
            CheckStep::Invalid(why) => {
                self.refuse(&format!("the object {why}"), meta.version, now, fx);
            }
            CheckStep::Working => {}
        }
    }

    /// One slice of the rewrite; the rewritten document becomes pending (posted after the node
    /// is checked again), or the object is refused.
    fn rewrite_slice(&mut self, now: u64, fx: &mut Effects) {
        let Some((rewriter, _)) = self.rewriting.as_mut() else {
            return;
        };
        let step = rewriter.step(crate::redact::SLICE_BYTES);
        if matches!(step, RewriteStep::Working) {
            return;
        }
        let Some((_, meta)) = self.rewriting.take() else {
            return;
        };
        match step {
            RewriteStep::Done(done) => {
                self.pending = Some(Pending {
                    body: done.body,
                    meta,
                });
                // Check the node is still empty right before posting.
                self.next = Step::Status;
            }
            RewriteStep::Failed(why) => self.refuse(&why, meta.version, now, fx),
            RewriteStep::Working => {}
        }
    }

    /// The object is not applied (one line), nor downloaded again until it changes.
    fn refuse(&mut self, why: &str, version: Option<String>, now: u64, fx: &mut Effects) {
        self.refused = version;
        fx.log(
            Level::Error,
            format!(
                "{} is not applied: {why}; waiting for a newer export",
                self.where_
            ),
        );
        fx.metric(Metric::ImportFailuresTotal, 1);
        self.retry_quietly(now);
    }

    fn post(&mut self) -> Option<OutboundRequest> {
        let pending = self.pending.as_ref()?;
        let mut req = config_post_request(&self.settings.admin, Vec::new());
        req.body = Rc::clone(&pending.body);
        Some(req)
    }

    fn posted(&mut self, resp: &HttpResponse, now: u64, fx: &mut Effects) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        match resp.status {
            200..=299 => {
                self.done = true;
                let meta = &pending.meta;
                let age = meta
                    .applied_at
                    .map(|t| format!("{} s old", now.saturating_sub(t) / 1000))
                    .unwrap_or_else(|| "age unknown".into());
                fx.log(
                    Level::Info,
                    format!(
                        "fallback config applied from {} ({age}, {} bytes, uploaded by {})",
                        self.where_,
                        pending.body.len(),
                        meta.uploader.as_deref().unwrap_or("unknown")
                    ),
                );
                fx.metric(Metric::ImportsTotal, 1);
            }
            400 => {
                let why = format!(
                    "the node's Admin API refused {}: {}",
                    self.where_,
                    flattened_errors(&resp.body)
                );
                self.refused_by_admin(&pending, &why, now, fx);
            }
            413 => {
                let why = format!(
                    "the node's Admin API refused {} as too large (HTTP 413, {} bytes): raise Kong's nginx_admin_client_max_body_size",
                    self.where_,
                    pending.body.len()
                );
                self.refused_by_admin(&pending, &why, now, fx);
            }
            s => {
                // 429, 5xx: retried (the object stays pending; the node is checked again).
                let after = retry_after_ms(resp);
                self.pending = Some(pending);
                let line = format!("POST /config answered HTTP {s}; retrying");
                self.retry(&line, now, fx);
                if let Some(ms) = after {
                    self.next_at = self.next_at.max(now.saturating_add(ms));
                }
            }
        }
    }

    /// The Admin API refused this export (400, 413): the same body would be refused again, so it
    /// is not tried until the export changes.
    fn refused_by_admin(&mut self, pending: &Pending, why: &str, now: u64, fx: &mut Effects) {
        self.refused = pending.meta.version.clone();
        fx.log(
            Level::Error,
            format!("{why}; this export is not tried again"),
        );
        fx.metric(Metric::ImportFailuresTotal, 1);
        self.next = Step::Status;
        self.retry_quietly(now);
    }

    /// A failed step: warn, back off, and start the cycle again.
    fn retry(&mut self, line: &str, now: u64, fx: &mut Effects) {
        let delay = self.retry_quietly(now);
        fx.log(
            Level::Warn,
            format!("import: {line} (next try in {delay} ms)"),
        );
    }

    fn retry_quietly(&mut self, now: u64) -> u64 {
        self.failures = self.failures.saturating_add(1);
        let delay = self.backoff.delay(self.failures, &mut self.rng);
        self.next_at = now.saturating_add(delay);
        self.next = Step::Status;
        delay
    }

    /// Nothing to do yet: check again after `import_check_interval`; say why once.
    fn wait(&mut self, why: &'static str, now: u64, fx: &mut Effects) {
        self.failures = 0;
        self.next = Step::Status;
        self.next_at = now.saturating_add(self.settings.check_interval_ms);
        if self.said.insert(why, ()).is_none() {
            fx.log(Level::Info, format!("import: {why}"));
        }
    }

    fn admin_get(&self, path: &str) -> OutboundRequest {
        admin_get(&self.settings.admin, path)
    }
}

/// A GET of `path` under the Admin API's base URL, with its token.
fn admin_get(a: &KongAdminSettings, path: &str) -> OutboundRequest {
    let mut headers = Vec::new();
    if let Some((name, token)) = &a.auth {
        headers.push((name.to_ascii_lowercase(), token.expose().to_string()));
    }
    let base = crate::text::trim_end_ascii(a.url.path(), b'/');
    let mut req = plain_get(&a.url, &a.upstream, headers);
    req.path = format!("{base}{path}");
    req
}

/// `POST /config?flatten_errors=1` of `body` to a DB-less node's Admin API: what an import sends
/// (and the native tool's `drill --apply-to`). 201 applied; 400 refused (`flattened_errors`).
pub fn config_post_request(a: &KongAdminSettings, body: Vec<u8>) -> OutboundRequest {
    let mut req = admin_get(a, "/config?flatten_errors=1");
    req.method = "POST".into();
    req.headers
        .push(("content-type".into(), "application/json".into()));
    req.body = Rc::new(body);
    req
}

fn plain_get(url: &HttpUrl, upstream: &str, headers: Vec<(String, String)>) -> OutboundRequest {
    OutboundRequest {
        upstream: upstream.to_string(),
        method: "GET".into(),
        path: url.path_and_query.clone(),
        authority: url.authority(),
        scheme: url.scheme.clone(),
        headers,
        body: Rc::default(),
    }
}

/// `configuration_hash` of a `/status` answer (the Kong Admin source reads it the same way).
fn status_hash(body: &[u8]) -> Option<String> {
    super::source::kong_admin::status_hash(body).ok().flatten()
}

/// A `/services` page holding exactly one service, tagged as the bootstrap's.
fn only_bootstrap(page: &[u8]) -> bool {
    let Ok(v) = crate::json::parse(page) else {
        return false;
    };
    match v.get("data").and_then(Value::as_array).map(Vec::as_slice) {
        Some([service]) => service
            .get("tags")
            .and_then(Value::as_array)
            .is_some_and(|tags| tags.iter().any(|t| t.as_str() == Some(BOOTSTRAP_TAG))),
        _ => false,
    }
}

/// Kong's flattened errors as one line: the message, then entity type, name or id and messages
/// of each error — never the entities' contents (they may hold credentials).
pub fn flattened_errors(body: &[u8]) -> String {
    let Ok(v) = crate::json::parse(body) else {
        return "no readable error body".into();
    };
    let mut parts = vec![v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("invalid declarative configuration")
        .chars()
        .take(200)
        .collect::<String>()];
    let errors = v.get("flattened_errors").and_then(Value::as_array);
    for e in errors.into_iter().flatten().take(10) {
        let kind = e
            .get("entity_type")
            .and_then(Value::as_str)
            .unwrap_or("entity");
        let name = ["entity_name", "entity_id"]
            .iter()
            .find_map(|k| e.get(k).and_then(Value::as_str))
            .unwrap_or("?");
        let messages: Vec<&str> = e
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|x| x.get("message").and_then(Value::as_str))
            .collect();
        parts.push(format!(
            "{kind} {name}: {}",
            crate::text::join(&messages, "; ")
        ));
    }
    let line = crate::text::join(&parts, " | ");
    line.chars()
        .filter(|c| !c.is_control())
        .take(1000)
        .collect()
}

/// `Retry-After` in seconds, as milliseconds; Kong may send a fraction (`1.5`).
fn retry_after_ms(resp: &HttpResponse) -> Option<u64> {
    let text = resp.header("retry-after")?.trim();
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = if int.is_empty() {
        0
    } else {
        int.parse::<u64>().ok()?.min(3600)
    };
    let mut ms = secs * 1000;
    for (digit, scale) in frac.bytes().zip([100u64, 10, 1]) {
        ms += u64::from(digit - b'0') * scale;
    }
    Some(ms)
}

/// The import's edit of a document (`redact::Rewriter`): every config-bridge filter gets this
/// node's own configuration (or is disabled when that is unknown); with a content policy, a
/// plugin it names anywhere refuses the document.
#[derive(Debug)]
pub(crate) struct ImportEdit {
    own: Option<Value>,
    refuse_plugins: Vec<String>,
}

impl ImportEdit {
    /// `own`: this node's filter configuration text; `refuse_plugins`: `import_refuse_plugins`.
    pub(crate) fn new(own: Option<&[u8]>, refuse_plugins: &[String]) -> ImportEdit {
        ImportEdit {
            own: own.and_then(|t| crate::json::parse(t).ok()),
            refuse_plugins: refuse_plugins.to_vec(),
        }
    }

    fn refused(&self, entity: &Value) -> Option<&str> {
        let name = entity.get("name").and_then(Value::as_str)?;
        self.refuse_plugins
            .iter()
            .find(|r| r.eq_ignore_ascii_case(name.trim()))
            .map(String::as_str)
    }
}

impl ChainEdit for ImportEdit {
    fn keys(&self) -> &[&'static str] {
        if self.refuse_plugins.is_empty() {
            &["filter_chains"]
        } else {
            &["filter_chains", "plugins"]
        }
    }

    fn edit(&mut self, key: &str, value: &mut Value) -> Result<bool, String> {
        if key == "plugins" {
            let entities: Vec<&Value> = match &*value {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            if let Some(name) = entities.into_iter().find_map(|e| self.refused(e)) {
                return Err(format!(
                    "it holds a {} plugin, which import_refuse_plugins refuses",
                    crate::json::quoted(name)
                ));
            }
            return Ok(false);
        }
        let mut changed = false;
        for filter in chain_filters(value).filter(|f| is_config_bridge(f)) {
            changed = true;
            let was_string = matches!(filter.get("config"), Some(Value::String(_)));
            let Some(f) = filter.as_object_mut() else {
                continue;
            };
            match &self.own {
                Some(own) => {
                    let own = match own {
                        // Kong 3.4 passes the configuration as a string: keep the shape.
                        Value::Object(_) if was_string => Value::String(crate::json::to_text(own)),
                        other => other.clone(),
                    };
                    f.insert("config".into(), own);
                }
                None => {
                    // Unknown own configuration: the exporter's is dropped and the filter off.
                    let empty = if was_string {
                        Value::String("{}".into())
                    } else {
                        Value::Object(crate::json::Map::new())
                    };
                    f.insert("config".into(), empty);
                    f.insert("enabled".into(), Value::Bool(false));
                }
            }
        }
        Ok(changed)
    }
}

/// The document as an import posts it (`ImportEdit`), in one pass: tests and the native tool.
pub fn rewrite_for_import(
    doc: &[u8],
    own: Option<&[u8]>,
    refuse_plugins: &[String],
) -> Result<Vec<u8>, String> {
    let done = Rewriter::run(Rc::new(doc.to_vec()), ImportEdit::new(own, refuse_plugins))?;
    Ok(Rc::try_unwrap(done.body).unwrap_or_else(|rc| rc.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    const OWN: &[u8] =
        br#"{"cluster_fallback_config_import":"on","cluster_fallback_config_storage":"s3://b/p"}"#;

    fn rewrite(doc: &Value, own: Option<&[u8]>) -> Value {
        let out = rewrite_for_import(doc.to_string().as_bytes(), own, &[]).unwrap();
        crate::json::parse(&out).unwrap()
    }

    fn exporter_chain(config: Value) -> Value {
        json!({"filters": [
            {"name": "config_bridge", "config": config},
            {"name": "other", "config": {"x": 1}}
        ]})
    }

    fn exporter() -> Value {
        json!({"cluster_fallback_config_export": "on", "cluster_fallback_config_storage": "s3://b/p", "aws_secret_access_key": "EXPORTER-SECRET"})
    }

    #[test]
    fn exporting_filters_are_replaced_at_the_top_level() {
        let doc = json!({
            "_format_version": "3.0",
            "services": [{"id": "s1", "name": "backup"}],
            "filter_chains": [
                exporter_chain(exporter()),
                {"id": "f2", "service": "s1", "filters": [
                    {"name": "renamed", "config": "{\"cluster_fallback_config_storage\":\"s3://b/p\"}"}
                ]}
            ]
        });
        let out = rewrite(&doc, Some(OWN));
        let own_v: Value = crate::json::parse(OWN).unwrap();
        assert_eq!(out["filter_chains"][0]["filters"][0]["config"], own_v);
        assert_eq!(
            out["filter_chains"][0]["filters"][1]["config"],
            json!({"x": 1})
        );
        assert_eq!(
            out["filter_chains"][1]["filters"][0]["config"],
            json!(own_v.to_string())
        );
        assert_eq!(out["services"], json!([{"id": "s1", "name": "backup"}]));
        assert!(!out.to_string().contains("EXPORTER-SECRET"));
        // Unknown own configuration: the exporting filter is emptied and disabled instead.
        let out = rewrite(&doc, None);
        let f = &out["filter_chains"][0]["filters"][0];
        assert_eq!(f["enabled"], json!(false));
        assert_eq!(f["config"], json!({}));
        assert_eq!(out["filter_chains"][1]["filters"][0]["config"], json!("{}"));
        // Nothing to change: the same bytes.
        let plain = br#"{"_format_version":"3.0", "services":[]}"#;
        assert_eq!(
            rewrite_for_import(plain, Some(OWN), &[]).unwrap(),
            plain.to_vec()
        );
    }

    #[test]
    fn exporting_filters_are_replaced_under_services_and_routes_and_in_string_configs() {
        let string_config = json!(exporter().to_string());
        let doc = json!({
            "_format_version": "3.0",
            "services": [{
                "name": "s",
                "filter_chains": [exporter_chain(exporter())],
                "routes": [{"name": "r", "filter_chains": [exporter_chain(string_config.clone())]}]
            }],
            "routes": [{"name": "r2", "filter_chains": [exporter_chain(string_config)]}]
        });
        let out = rewrite(&doc, Some(OWN));
        let own_v: Value = crate::json::parse(OWN).unwrap();
        assert!(!out.to_string().contains("EXPORTER-SECRET"), "{out}");
        assert!(
            !out.to_string().contains("cluster_fallback_config_export"),
            "{out}"
        );
        assert_eq!(
            out["services"][0]["filter_chains"][0]["filters"][0]["config"],
            own_v
        );
        assert_eq!(
            out["services"][0]["routes"][0]["filter_chains"][0]["filters"][0]["config"],
            json!(own_v.to_string())
        );
        assert_eq!(
            out["routes"][0]["filter_chains"][0]["filters"][0]["config"],
            json!(own_v.to_string())
        );
        assert_eq!(
            out["routes"][0]["filter_chains"][0]["filters"][1]["config"],
            json!({"x": 1})
        );
    }

    #[test]
    fn a_document_that_cannot_be_rewritten_is_refused_not_passed_on() {
        let deep = format!(
            r#"{{"_format_version":"3.0","services":[{{"filter_chains":[{{"filters":[{{"name":"config_bridge","config":{}1{}}}]}}]}}]}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        for bad in [
            deep.as_str(),
            r#"{"_format_version":"3.0","filter_chains":[{"filters":[1e999]}]}"#,
            r#"{"_format_version":"3.0","filter_chains":[{"filters":["#,
        ] {
            let err = rewrite_for_import(bad.as_bytes(), Some(OWN), &[]).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
    }

    #[test]
    fn the_content_policy_refuses_a_named_plugin_anywhere() {
        let refuse = vec!["pre-function".to_string(), "post-function".to_string()];
        for doc in [
            json!({"_format_version": "3.0", "plugins": [{"name": "cors"}, {"name": "pre-function", "config": {"access": ["os.exit()"]}}]}),
            json!({"_format_version": "3.0", "services": [{"name": "s", "plugins": [{"name": "post-function"}]}]}),
            json!({"_format_version": "3.0", "services": [{"name": "s", "routes": [{"name": "r", "plugins": [{"name": "Pre-Function"}]}]}]}),
            json!({"_format_version": "3.0", "consumers": [{"username": "u", "plugins": [{"name": "pre-function"}]}]}),
        ] {
            let err =
                rewrite_for_import(doc.to_string().as_bytes(), Some(OWN), &refuse).unwrap_err();
            assert!(err.contains("import_refuse_plugins"), "{err}");
        }
        let fine = json!({"_format_version": "3.0", "plugins": [{"name": "cors", "config": {"name": "pre-function"}}]});
        assert!(rewrite_for_import(fine.to_string().as_bytes(), Some(OWN), &refuse).is_ok());
        // Without the policy, the same document is applied.
        let doc = json!({"_format_version": "3.0", "plugins": [{"name": "pre-function"}]});
        assert!(rewrite_for_import(doc.to_string().as_bytes(), Some(OWN), &[]).is_ok());
    }

    #[test]
    fn retry_after_takes_whole_and_fractional_seconds() {
        let with = |v: &str| HttpResponse {
            status: 429,
            headers: vec![("retry-after".into(), v.into())],
            body: Vec::new(),
        };
        assert_eq!(retry_after_ms(&with("2")), Some(2_000));
        assert_eq!(retry_after_ms(&with(" 1.5 ")), Some(1_500));
        assert_eq!(retry_after_ms(&with("0.25")), Some(250));
        assert_eq!(retry_after_ms(&with(".5")), Some(500));
        assert_eq!(retry_after_ms(&with("3.14159")), Some(3_141));
        assert_eq!(retry_after_ms(&with("99999")), Some(3_600_000));
        for bad in ["", ".", "-1", "1e3", "soon", "1.2.3"] {
            assert_eq!(retry_after_ms(&with(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn flattened_errors_name_entities_but_never_their_contents() {
        let body = json!({
            "code": 14, "name": "invalid declarative configuration",
            "message": "declarative config is invalid: {}",
            "flattened_errors": [{
                "entity_type": "keyauth_credential", "entity_name": null, "entity_id": "k1",
                "entity": {"key": "SECRET-KEY-VALUE"},
                "errors": [{"type": "field", "field": "consumer", "message": "required field missing"}]
            }]
        })
        .to_string();
        let line = flattened_errors(body.as_bytes());
        assert!(
            line.contains("keyauth_credential k1: required field missing"),
            "{line}"
        );
        assert!(!line.contains("SECRET-KEY-VALUE"), "{line}");
    }

    #[test]
    fn the_bootstrap_configuration_is_told_from_a_real_one() {
        let page = |services: Value| json!({"data": services, "next": null}).to_string();
        assert!(only_bootstrap(
            page(json!([{"id": "b", "tags": [BOOTSTRAP_TAG]}])).as_bytes()
        ));
        assert!(!only_bootstrap(
            page(json!([{"id": "b", "tags": [BOOTSTRAP_TAG]}, {"id": "x"}])).as_bytes()
        ));
        assert!(!only_bootstrap(
            page(json!([{"id": "x", "tags": null}])).as_bytes()
        ));
        assert!(!only_bootstrap(b"not json"));
    }
}
