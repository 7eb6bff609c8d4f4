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
//! 4. The document's config-bridge filters are replaced by this node's own (import-only)
//!    configuration, so a fallback node never starts exporting over the real backup, and it is
//!    posted: `POST /config?flatten_errors=1`. 201 ends the import; 400 is logged (entity types,
//!    names and messages, never entity contents) and that object is not tried again; 413, 429
//!    (`Retry-After`), 5xx and failures are retried with backoff.
//!
//! Kong Enterprise imports once, never retries, only on hybrid DPs; this retries until it works
//! and never replaces a configuration the node already has (docs/architecture.md).

use std::rc::Rc;

use serde_json::Value;

use super::effects::{Effects, Level, Metric};
use super::source::kong_admin::KongAdminSettings;
use super::CallId;
use crate::backoff::{Backoff, Rng};
use crate::document::{sha256_hex, validate_declarative_json};
use crate::http::{HttpResponse, OutboundRequest};
use crate::http_url::HttpUrl;
use crate::settings::scanner::object_members;
use crate::settings::ImportSettings;
use crate::store::{GetOutcome, ObjectStore, RemoteMeta};

const EMPTY_HASH: &str = "00000000000000000000000000000000";
/// The tag a bootstrap configuration's only service carries (examples/kong/fallback-node/).
pub const BOOTSTRAP_TAG: &str = "config-bridge-bootstrap";
/// The filter's name in Kong filter chains (the module's file name).
const FILTER_NAME: &str = "config_bridge";

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
    where_: String,
    /// This filter's own configuration text (import-only), put in place of exporting filters.
    own_filter_config: Option<Rc<Vec<u8>>>,
    next: Step,
    in_flight: Option<(CallId, Step)>,
    next_at: u64,
    empty_since: Option<u64>,
    probe_failing_since: Option<u64>,
    pending: Option<Pending>,
    /// The version (ETag) of an object refused by validation or by the Admin API.
    refused: Option<String>,
    backoff: Backoff,
    rng: Rng,
    failures: u32,
    done: bool,
    /// "Waiting" lines said once per reason (until the import happens), not every cycle.
    said: std::collections::BTreeSet<&'static str>,
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
            key,
            where_,
            own_filter_config: None,
            next: Step::Status,
            in_flight: None,
            next_at: 0,
            empty_since: None,
            probe_failing_since: None,
            pending: None,
            refused: None,
            failures: 0,
            done: false,
            said: std::collections::BTreeSet::new(),
        }
    }

    pub(super) fn set_own_filter_config(&mut self, text: Option<Rc<Vec<u8>>>) {
        self.own_filter_config = text;
    }

    /// The next request, if one is due (called on ticks by the node's lease holder).
    pub(super) fn poll(
        &mut self,
        now: u64,
        store: &dyn ObjectStore,
    ) -> Option<Result<OutboundRequest, String>> {
        if self.done || self.in_flight.is_some() || now < self.next_at {
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
            if self.said.insert("probe") {
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
            GetOutcome::Found { body, meta } => match self.validate(&body, &meta) {
                Ok(()) => {
                    self.pending = Some(Pending {
                        body: Rc::new(body),
                        meta,
                    });
                    // Check the node is still empty right before posting.
                    self.next = Step::Status;
                }
                Err(why) => {
                    self.refused = meta.version.clone();
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
            },
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

    fn validate(&self, body: &[u8], meta: &RemoteMeta) -> Result<(), String> {
        if body.len() as u64 > self.settings.max_bytes {
            return Err(format!(
                "{} bytes is more than import_max_bytes ({})",
                body.len(),
                self.settings.max_bytes
            ));
        }
        validate_declarative_json(body).map_err(|r| format!("the object {r}"))?;
        if let Some(expected) = &meta.sha256_hex {
            if *expected != sha256_hex(body) {
                return Err(
                    "its content does not match its config-sha256 metadata (corrupt or truncated)"
                        .into(),
                );
            }
        }
        Ok(())
    }

    fn post(&mut self) -> Option<OutboundRequest> {
        let pending = self.pending.as_ref()?;
        let body = rewrite_filter_chains(
            &pending.body,
            self.own_filter_config.as_deref().map(Vec::as_slice),
        );
        Some(config_post_request(&self.settings.admin, body))
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
                self.refused = pending.meta.version.clone();
                fx.log(
                    Level::Error,
                    format!(
                        "the node's Admin API refused {}: {}; this export is not tried again",
                        self.where_,
                        flattened_errors(&resp.body)
                    ),
                );
                fx.metric(Metric::ImportFailuresTotal, 1);
                self.next = Step::Status;
                self.retry_quietly(now);
            }
            s => {
                // 413, 429, 5xx: retried (the object stays pending; the node is checked again).
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
        if self.said.insert(why) {
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
    let base = a.url.path().trim_end_matches('/');
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
    let Ok(v) = serde_json::from_slice::<Value>(page) else {
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
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
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
            .find_map(|k| e.get(*k).and_then(Value::as_str))
            .unwrap_or("?");
        let messages: Vec<&str> = e
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|x| x.get("message").and_then(Value::as_str))
            .collect();
        parts.push(format!("{kind} {name}: {}", messages.join("; ")));
    }
    let line = parts.join(" | ");
    line.chars()
        .filter(|c| !c.is_control())
        .take(1000)
        .collect()
}

/// `Retry-After` in seconds, as milliseconds.
fn retry_after_ms(resp: &HttpResponse) -> Option<u64> {
    let s: u64 = resp.header("retry-after")?.trim().parse().ok()?;
    Some(s.min(3600) * 1000)
}

/// Whether a filter-chain entry is config-bridge: by name, or by its settings.
fn is_config_bridge(filter: &Value) -> bool {
    if filter.get("name").and_then(Value::as_str) == Some(FILTER_NAME) {
        return true;
    }
    let config = match filter.get("config") {
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).ok(),
        Some(v) => Some(v.clone()),
        None => None,
    };
    config.is_some_and(|c| {
        c.get("cluster_fallback_config_export").is_some()
            || c.get("cluster_fallback_config_storage").is_some()
    })
}

/// The document with every config-bridge filter's configuration replaced by `own` (this node's
/// import-only configuration; as a string where the original was one, Kong 3.4), or disabled when
/// `own` is unknown. Everything else stays byte for byte.
pub(crate) fn rewrite_filter_chains(doc: &[u8], own: Option<&[u8]>) -> Vec<u8> {
    let Some(members) = object_members(doc) else {
        return doc.to_vec();
    };
    let Some((_, start, end)) = members.iter().rev().find(|(k, _, _)| k == "filter_chains") else {
        return doc.to_vec();
    };
    let Some(Ok(Value::Array(mut chains))) =
        doc.get(*start..*end).map(serde_json::from_slice::<Value>)
    else {
        return doc.to_vec();
    };
    let own: Option<Value> = own.and_then(|t| serde_json::from_slice::<Value>(t).ok());
    let mut changed = false;
    for chain in &mut chains {
        let Some(filters) = chain.get_mut("filters").and_then(Value::as_array_mut) else {
            continue;
        };
        for filter in filters.iter_mut().filter(|f| is_config_bridge(f)) {
            changed = true;
            let was_string = matches!(filter.get("config"), Some(Value::String(_)));
            match (&own, filter.as_object_mut()) {
                (Some(own), Some(f)) => {
                    let own = match own {
                        // Kong 3.4 passes the configuration as a string, keep the shape.
                        Value::Object(_) if was_string => Value::String(own.to_string()),
                        other => other.clone(),
                    };
                    f.insert("config".into(), own);
                }
                (None, Some(f)) => {
                    f.insert("enabled".into(), Value::Bool(false));
                }
                _ => {}
            }
        }
    }
    if !changed {
        return doc.to_vec();
    }
    let Ok(new) = serde_json::to_vec(&chains) else {
        return doc.to_vec();
    };
    let mut out = Vec::with_capacity(doc.len() + new.len());
    out.extend_from_slice(doc.get(..*start).unwrap_or_default());
    out.extend_from_slice(&new);
    out.extend_from_slice(doc.get(*end..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exporting_filters_are_replaced_by_the_importers_own_configuration() {
        let doc = json!({
            "_format_version": "3.0",
            "services": [{"id": "s1", "name": "backup"}],
            "filter_chains": [
                {"id": "f1", "service": "s1", "filters": [
                    {"name": "config_bridge", "config": {"cluster_fallback_config_export": "on", "aws_secret_access_key": "EXPORTER-SECRET"}},
                    {"name": "other", "config": {"x": 1}}
                ]},
                {"id": "f2", "service": "s1", "filters": [
                    {"name": "renamed", "config": "{\"cluster_fallback_config_storage\":\"s3://b/p\"}"}
                ]}
            ]
        })
        .to_string();
        let own = br#"{"cluster_fallback_config_import":"on","cluster_fallback_config_storage":"s3://b/p"}"#;
        let out: Value =
            serde_json::from_slice(&rewrite_filter_chains(doc.as_bytes(), Some(own))).unwrap();
        let own_v: Value = serde_json::from_slice(own).unwrap();
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
        // Unknown own configuration: the exporting filter is disabled instead.
        let out: Value =
            serde_json::from_slice(&rewrite_filter_chains(doc.as_bytes(), None)).unwrap();
        assert_eq!(
            out["filter_chains"][0]["filters"][0]["enabled"],
            json!(false)
        );
        // Nothing to change: the same bytes.
        let plain = br#"{"_format_version":"3.0","services":[]}"#;
        assert_eq!(rewrite_filter_chains(plain, Some(own)), plain.to_vec());
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
