//! Redaction by allowlist, and the sliced rewrite of the filter chains of a declarative document
//! (docs/security.md).
//!
//! An exported document is read by every importer (read-only credentials), so no config-bridge
//! filter configuration in it may carry a secret. Rather than a list of secret names (which a new
//! setting would silently escape), [`NON_SECRET_SETTINGS`] is the one list of settings known to be
//! harmless; every other member of a config-bridge filter configuration — the AWS keys, the
//! session token, the GCS service-account key, the Admin API token, the `config` document itself,
//! any setting added later — is removed. A removed setting falls back to its environment
//! variable, and config-bridge's importer replaces these configurations with its own anyway
//! (`engine::import`).
//!
//! A config-bridge filter is recognised by its name ([`FILTER_NAMES`]) or by its settings, in an
//! object configuration or in a Kong 3.4 string configuration (a JSON string holding the object),
//! in every `filter_chains` array of the document: top level (Kong's flat form) and nested under
//! services and routes (the nested form).
//!
//! Documents reach tens of MB: [`Rewriter`] finds the `filter_chains` values a slice at a time
//! (a byte-level state machine, no tree of the document), parses only those values (small), and
//! splices the edited ones into a copy, also a slice at a time. The import uses the same rewriter
//! (its own edit: replace the configurations, refuse plugins by policy). The same pass finds the
//! document's newest `updated_at` (`crate::updated_at`): one read of the document, not two. The
//! export of the filter's own `config` payload does not read it even once: the configuration's
//! validation scan noted where its keys are ([`KeyIndex`]), and the rewriter works from those
//! notes (BENCHMARKS.md, "Issue 25, speed7").

use std::ops::Range;
use std::rc::{Rc, Weak};

use crate::json::scan::{Found, KeyScan, KeyScanError, Wanted};
use crate::json::{Map, Value};

/// The names a config-bridge filter has in a filter chain (Kong names a filter after its module
/// file: `config_bridge.wasm`).
pub const FILTER_NAMES: &[&str] = &["config_bridge", "config-bridge"];

/// Settings that tell a config-bridge configuration under another filter name.
const OWN_MARKERS: &[&str] = &[
    "cluster_fallback_config_export",
    "cluster_fallback_config_import",
    "cluster_fallback_config_storage",
];

/// How an allowed setting is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// As it is.
    Value,
    /// A URL: kept without its query string (a signed URL's query is a credential).
    UrlWithoutQuery,
    /// `cluster_fallback_export_s3_config`: only the parameters in [`NON_SECRET_S3_PARAMS`].
    S3Params,
}

/// The settings of a config-bridge filter configuration that are known not to be secret: the
/// only ones an export keeps. A setting missing here is removed from every export — add a new
/// setting here only once it is known to hold nothing secret.
pub const NON_SECRET_SETTINGS: &[(&str, Keep)] = &[
    ("cluster_fallback_config_export", Keep::Value),
    ("cluster_fallback_config_import", Keep::Value),
    ("cluster_fallback_config_storage", Keep::Value),
    ("cluster_fallback_config_export_delay", Keep::Value),
    ("cluster_fallback_export_s3_config", Keep::S3Params),
    ("config_source", Keep::Value),
    ("config_url", Keep::UrlWithoutQuery),
    ("config_url_upstream", Keep::Value),
    ("config_poll_interval", Keep::Value),
    ("kong_admin_url", Keep::UrlWithoutQuery),
    ("kong_admin_upstream", Keep::Value),
    ("kong_admin_token_header", Keep::Value),
    ("kong_admin_dump_interval", Keep::Value),
    ("import_probe_url", Keep::UrlWithoutQuery),
    ("import_probe_upstream", Keep::Value),
    ("import_grace_period", Keep::Value),
    ("import_check_interval", Keep::Value),
    ("import_max_bytes", Keep::Value),
    ("import_refuse_plugins", Keep::Value),
    ("gateway_version", Keep::Value),
    ("node_id", Keep::Value),
    ("election", Keep::Value),
    ("cluster_fallback_election_interval", Keep::Value),
    // History and retention, the import's pin to a version id (docs/history.md).
    ("cluster_fallback_history", Keep::Value),
    ("cluster_fallback_history_keep", Keep::Value),
    ("cluster_fallback_history_max_age", Keep::Value),
    ("cluster_fallback_import_version", Keep::Value),
    ("aws_region", Keep::Value),
    // The credential chain's endpoints (docs/credentials.md); its tokens are secrets.
    ("aws_container_credentials_uri", Keep::UrlWithoutQuery),
    (
        "aws_container_credentials_relative_uri",
        Keep::UrlWithoutQuery,
    ),
    ("aws_container_credentials_upstream", Keep::Value),
    ("aws_role_arn", Keep::Value),
    ("aws_role_session_name", Keep::Value),
    ("aws_sts_endpoint", Keep::UrlWithoutQuery),
    ("aws_sts_upstream", Keep::Value),
    ("aws_imds_endpoint", Keep::UrlWithoutQuery),
    ("aws_imds_upstream", Keep::Value),
    ("aws_imds_disabled", Keep::Value),
    ("storage_endpoint", Keep::UrlWithoutQuery),
    ("storage_upstream", Keep::Value),
    ("s3_force_path_style", Keep::Value),
    ("s3_conditional_writes", Keep::Value),
    ("gcs_endpoint", Keep::UrlWithoutQuery),
    ("gcs_token_uri", Keep::UrlWithoutQuery),
    ("gcs_token_upstream", Keep::Value),
    ("gcs_metadata_url", Keep::UrlWithoutQuery),
    ("gcs_metadata_upstream", Keep::Value),
    ("tick_period_ms", Keep::Value),
    ("host_tick_ms", Keep::Value),
    ("call_timeout_ms", Keep::Value),
    ("lease_ttl_ms", Keep::Value),
    ("retry_base_ms", Keep::Value),
    ("retry_max_ms", Keep::Value),
    ("strict_config", Keep::Value),
    ("shared_data_namespace", Keep::Value),
];

/// The `cluster_fallback_export_s3_config` parameters an export keeps (`SSECustomerKey`, the
/// SSE-C key, and its MD5 are not among them; nor is any parameter added later).
pub const NON_SECRET_S3_PARAMS: &[&str] = &[
    "ACL",
    "BucketKeyEnabled",
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "Expires",
    "ExpectedBucketOwner",
    "GrantFullControl",
    "GrantRead",
    "GrantReadACP",
    "GrantWriteACP",
    "Metadata",
    "ObjectLockLegalHoldStatus",
    "ObjectLockMode",
    "ObjectLockRetainUntilDate",
    "RequestPayer",
    "ServerSideEncryption",
    "SSECustomerAlgorithm",
    "SSEKMSKeyId",
    "SSEKMSEncryptionContext",
    "StorageClass",
    "Tagging",
    "WebsiteRedirectLocation",
];

/// Whether a filter-chain entry is config-bridge: by name, or by its settings (object or JSON
/// string configuration).
pub fn is_config_bridge(filter: &Value) -> bool {
    if filter
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| FILTER_NAMES.contains(&n))
    {
        return true;
    }
    let has_markers = |o: &Map| OWN_MARKERS.iter().any(|k| o.contains_key(k));
    match filter.get("config") {
        Some(Value::Object(o)) => has_markers(o),
        Some(Value::String(s)) => matches!(
            crate::json::parse(s.as_bytes()),
            Ok(Value::Object(o)) if has_markers(&o)
        ),
        _ => false,
    }
}

/// Keeps only the allowed settings of one config-bridge configuration object.
fn redact_settings(config: &mut Map) {
    let old = std::mem::take(config);
    for (key, mut value) in old {
        let Some((_, keep)) = NON_SECRET_SETTINGS.iter().find(|(k, _)| *k == key) else {
            continue;
        };
        let kept = match keep {
            Keep::Value => true,
            Keep::UrlWithoutQuery => match &mut value {
                Value::String(url) => {
                    *url = without_query(url).to_string();
                    true
                }
                _ => false,
            },
            Keep::S3Params => redact_s3_params(&mut value),
        };
        if kept {
            config.insert(key, value);
        }
    }
}

/// `cluster_fallback_export_s3_config` (object or JSON string) with only the allowed parameters;
/// false: unreadable, drop it.
fn redact_s3_params(value: &mut Value) -> bool {
    let keep = |o: &mut Map| {
        o.retain(|k, _| NON_SECRET_S3_PARAMS.contains(&k.as_str()));
    };
    match value {
        Value::Object(o) => {
            keep(o);
            true
        }
        Value::String(s) => match crate::json::parse(s.as_bytes()) {
            Ok(Value::Object(mut o)) => {
                keep(&mut o);
                *s = crate::json::to_text(&Value::Object(o));
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// `url` without its query string or fragment.
pub fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Redacts one filter-chain entry when it is config-bridge; whether it was.
pub fn redact_filter(filter: &mut Value) -> bool {
    if !is_config_bridge(filter) {
        return false;
    }
    let Some(config) = filter.get_mut("config") else {
        return true;
    };
    match config {
        Value::Object(o) => redact_settings(o),
        Value::String(text) => match crate::json::parse(text.as_bytes()) {
            Ok(Value::Object(mut o)) => {
                redact_settings(&mut o);
                *text = crate::json::to_text(&Value::Object(o));
            }
            // Unreadable: nothing of it is known to be harmless.
            _ => *text = "{}".to_string(),
        },
        Value::Null => {}
        other => *other = Value::Object(Map::new()),
    }
    true
}

/// The filters of every chain of a `filter_chains` array (or a single chain object).
pub fn chain_filters(chains: &mut Value) -> impl Iterator<Item = &mut Value> {
    let chains: Vec<&mut Value> = match chains {
        Value::Array(a) => a.iter_mut().collect(),
        Value::Object(_) => vec![chains],
        _ => Vec::new(),
    };
    chains.into_iter().flat_map(|chain| {
        chain
            .get_mut("filters")
            .and_then(Value::as_array_mut)
            .map(|f| f.iter_mut())
            .into_iter()
            .flatten()
    })
}

/// What a [`Rewriter`] does with the values it finds.
pub trait ChainEdit {
    /// The member names whose values are handed to `edit` (wherever they are in the document).
    fn keys(&self) -> &[&'static str];
    /// One such value, parsed; `Ok(true)`: changed (it is written back), `Err`: the document
    /// must not be used (one line, no content).
    fn edit(&mut self, key: &str, value: &mut Value) -> Result<bool, String>;
}

/// The export's edit: config-bridge filter configurations keep only their allowed settings.
#[derive(Debug, Default)]
pub struct Redaction;

impl ChainEdit for Redaction {
    fn keys(&self) -> &[&'static str] {
        &["filter_chains"]
    }

    fn edit(&mut self, _key: &str, value: &mut Value) -> Result<bool, String> {
        let before = value.clone();
        for filter in chain_filters(value) {
            redact_filter(filter);
        }
        Ok(*value != before)
    }
}

/// The names the export's rewrite looks for, numbered as the rewriter numbers them
/// ([`Redaction`]'s, then `updated_at`): also given to the configuration's validation scan
/// (`json::scan::Scanner::watch_keys`), whose notes ([`KeyIndex`]) then stand for the rewriter's
/// own scan.
pub const EXPORT_KEYS: &[&[u8]] = &[b"filter_chains", crate::updated_at::KEY.as_bytes()];

/// Where the configuration's validation scan found the members named [`EXPORT_KEYS`] in the
/// text it read, for the document cut out of that text: the rewriter works from these notes
/// instead of reading the document again. Tied to that document's allocation (a `Weak`: a
/// document shared or moved is another one), it is used for no other document.
#[derive(Debug)]
pub struct KeyIndex {
    body: Weak<Vec<u8>>,
    /// (name, value's first byte) in the scanned text, in document order; the document is its
    /// bytes from `offset` on.
    found: Vec<(usize, usize)>,
    offset: usize,
    /// The next note to take; the end of the last value edited (notes inside it are not taken,
    /// as the rewriter's own scan does not look inside a captured value).
    next: usize,
    until: usize,
}

impl KeyIndex {
    /// The scan's notes `found` over a text whose bytes `payload` are now `body` (the payload
    /// cut out); `None` when the lengths differ.
    pub fn new(
        body: &Rc<Vec<u8>>,
        found: Vec<(usize, usize)>,
        payload: Range<usize>,
    ) -> Option<KeyIndex> {
        (payload.len() == body.len()).then(|| KeyIndex {
            body: Rc::downgrade(body),
            found,
            offset: payload.start,
            next: 0,
            until: 0,
        })
    }

    /// Whether these are the notes of `body` (the same allocation, alive, so unchanged).
    pub fn is_for(&self, body: &Rc<Vec<u8>>) -> bool {
        self.body.strong_count() > 0 && std::ptr::eq(self.body.as_ptr(), Rc::as_ptr(body))
    }
}

/// Bytes a [`Rewriter`] reads per tick in the filter: 1 MiB was 14-15 ms of guest CPU in wasm at
/// load 2-4 on 2 cores, about twice that under load (BENCHMARKS.md, issue 25, speed5).
pub const SLICE_BYTES: usize = 512 * 1024;

/// The deepest nesting the rewriter follows (as `json::scan::MAX_DEPTH`): a deeper document is
/// refused rather than passed on unread.
pub const MAX_DEPTH: usize = crate::json::scan::MAX_DEPTH;

/// The document a [`Rewriter`] finished with.
#[derive(Debug)]
pub struct Rewritten<E> {
    /// The original bytes when nothing changed (shared, not copied).
    pub body: Rc<Vec<u8>>,
    /// How many values were changed.
    pub edited: usize,
    pub edit: E,
    /// The newest `updated_at` member of the rewritten document (`crate::updated_at`), in ms.
    pub updated_at_ms: Option<u64>,
}

#[derive(Debug)]
enum Phase {
    Scan,
    /// Copying the original with the edits spliced in: position in the original, next edit.
    Splice {
        out: Vec<u8>,
        pos: usize,
        next: usize,
    },
}

/// Rewrites the values of some member names anywhere in a JSON document, a slice per step.
#[derive(Debug)]
pub struct Rewriter<E> {
    /// `None` once finished.
    edit: Option<E>,
    core: Core,
}

/// The rewriter's scan and splice, shared by every edit type: one copy in the module where a
/// generic `Rewriter<E>` had one per edit (BENCHMARKS.md, "Issue 25, lean5"). The byte-level scan
/// is `json::scan::KeyScan`, built for speed (BENCHMARKS.md, "Issue 25, speed6"), unless the
/// validation scan's notes of the document stand for it (`index`, "Issue 25, speed7").
#[derive(Debug)]
struct Core {
    body: Rc<Vec<u8>>,
    phase: Phase,
    keys: KeyScan,
    index: Option<KeyIndex>,
    notes: Notes,
}

/// What the wanted values gave so far.
#[derive(Debug, Default)]
struct Notes {
    /// (start, end, new bytes) in document order.
    edits: Vec<(usize, usize, Vec<u8>)>,
    /// The newest `updated_at` so far (ms).
    updated_at_ms: Option<u64>,
}

/// The outcome of one [`Rewriter::step`].
#[derive(Debug)]
pub enum Step<E> {
    /// More steps needed.
    Working,
    Done(Rewritten<E>),
    /// The document cannot be rewritten (not well-formed, too deep, a value `edit` refused).
    Failed(String),
}

impl<E: ChainEdit> Rewriter<E> {
    pub fn new(body: Rc<Vec<u8>>, edit: E) -> Rewriter<E> {
        Rewriter {
            edit: Some(edit),
            core: Core {
                body,
                phase: Phase::Scan,
                keys: KeyScan::new(),
                index: None,
                notes: Notes::default(),
            },
        }
    }

    /// The whole rewrite at once (small documents, tests, the native tool).
    pub fn run(body: Rc<Vec<u8>>, edit: E) -> Result<Rewritten<E>, String> {
        let mut r = Rewriter::new(body, edit);
        loop {
            match r.step(usize::MAX) {
                Step::Working => {}
                Step::Done(done) => return Ok(done),
                Step::Failed(why) => return Err(why),
            }
        }
    }

    /// Reads (then copies) at most about `budget` more bytes.
    pub fn step(&mut self, budget: usize) -> Step<E> {
        let budget = budget.max(1);
        let Some(edit) = self.edit.as_mut() else {
            return Step::Failed("the rewrite was already finished".to_string());
        };
        let result = match &mut self.core.phase {
            Phase::Scan => self.core.scan(budget, edit),
            Phase::Splice { .. } => Ok(self.core.splice(budget)),
        };
        match result {
            Ok(true) => self.finish(),
            Ok(false) => Step::Working,
            Err(why) => Step::Failed(why),
        }
    }

    fn finish(&mut self) -> Step<E> {
        let phase = std::mem::replace(&mut self.core.phase, Phase::Scan);
        let body = match phase {
            Phase::Splice { out, .. } => Rc::new(out),
            Phase::Scan => Rc::clone(&self.core.body),
        };
        let Some(edit) = self.edit.take() else {
            return Step::Failed("the rewrite was already finished".to_string());
        };
        Step::Done(Rewritten {
            body,
            edited: self.core.notes.edits.len(),
            edit,
            updated_at_ms: self.core.notes.updated_at_ms,
        })
    }
}

impl Rewriter<Redaction> {
    /// The export's redaction, working from the validation scan's notes when they are `body`'s
    /// (else reading the document itself). The notes number the names as [`EXPORT_KEYS`]
    /// does, which are the redaction's (a test checks).
    pub fn with_index(body: Rc<Vec<u8>>, index: Option<KeyIndex>) -> Rewriter<Redaction> {
        let mut r = Rewriter::new(body, Redaction);
        if let Some(index) = index.filter(|i| i.is_for(&r.core.body)) {
            r.core.index = Some(index);
        }
        r
    }
}

/// The edit's names (captured whole), then `updated_at` (read where its value starts): what the
/// rewriter looks for, numbered in this order.
fn wanted(names: &[&'static str]) -> Vec<Wanted<'static>> {
    names
        .iter()
        .map(|n| Wanted {
            name: n.as_bytes(),
            capture: true,
        })
        .chain([Wanted {
            name: crate::updated_at::KEY.as_bytes(),
            capture: false,
        }])
        .collect()
}

impl Core {
    /// Scans a slice (or replays the notes of one); `Ok(true)`: done and nothing to splice.
    fn scan(&mut self, budget: usize, edit: &mut dyn ChainEdit) -> Result<bool, String> {
        let t = Rc::clone(&self.body);
        let names: Vec<&'static str> = edit.keys().to_vec();
        let wanted = wanted(&names);
        let end = self.keys.position().saturating_add(budget).min(t.len());
        let mut spent = 0;
        loop {
            let found = match &mut self.index {
                Some(index) => index.next(&t, names.len(), &mut spent, budget)?,
                None => next_found(&mut self.keys, &t, end, &wanted)?,
            };
            match found {
                Found::Slice => break,
                Found::Value { at, .. } => {
                    let ms = crate::updated_at::number_ms(&t, at);
                    self.notes.updated_at_ms = self.notes.updated_at_ms.max(ms);
                }
                Found::Captured { want, start, end } => {
                    let key = names.get(want).copied().unwrap_or_default();
                    self.notes.captured(&t, key, start..end, edit)?;
                }
                Found::EscapedKey { .. } => {}
            }
        }
        let read = match &self.index {
            Some(index) => index.next >= index.found.len(),
            None => self.keys.position() >= t.len(),
        };
        if !read {
            return Ok(false);
        }
        self.scan_finished(&t)
    }

    /// The whole document is scanned: well-formed, and either nothing to change (`Ok(true)`) or
    /// the splice phase set up.
    fn scan_finished(&mut self, t: &[u8]) -> Result<bool, String> {
        if self.index.is_none() && self.keys.inside_a_value() {
            return Err("it is not well-formed JSON (it ends inside a value)".to_string());
        }
        if self.notes.edits.is_empty() {
            return Ok(true);
        }
        let grow: usize = self.notes.edits.iter().map(|(_, _, new)| new.len()).sum();
        let mut out = Vec::new();
        out.try_reserve_exact(t.len().saturating_add(grow))
            .map_err(|_| "not enough memory to rewrite it".to_string())?;
        self.phase = Phase::Splice {
            out,
            pos: 0,
            next: 0,
        };
        Ok(false)
    }

    /// Copies a slice of the original with the edits spliced in; true when finished.
    fn splice(&mut self, budget: usize) -> bool {
        let Phase::Splice { out, pos, next } = &mut self.phase else {
            return true;
        };
        let t = &self.body;
        let mut left = budget;
        loop {
            let (until, edit) = match self.notes.edits.get(*next) {
                Some((start, end, new)) => (*start, Some((*end, new))),
                None => (t.len(), None),
            };
            let n = until.saturating_sub(*pos).min(left);
            out.extend_from_slice(t.get(*pos..*pos + n).unwrap_or_default());
            *pos += n;
            left -= n;
            if *pos < until {
                return false;
            }
            match edit {
                Some((end, new)) => {
                    out.extend_from_slice(new);
                    *pos = end;
                    *next += 1;
                }
                None => return true,
            }
            if left == 0 {
                return false;
            }
        }
    }
}

/// The rewriter's own scan: the next value found before `end`, or `Found::Slice`.
fn next_found(
    keys: &mut KeyScan,
    t: &[u8],
    end: usize,
    wanted: &[Wanted],
) -> Result<Found, String> {
    loop {
        match keys.step(t, end, wanted) {
            Ok(Found::EscapedKey { start, end }) => {
                // Rare: decoded, then compared (`filter\u005fchains` is `filter_chains`).
                let key = crate::json::members::json_string(t.get(start..end).unwrap_or_default());
                let key = key.as_ref().map(String::as_bytes);
                keys.key_matched(wanted.iter().position(|w| key == Ok(w.name)));
            }
            Ok(found) => return Ok(found),
            Err(KeyScanError::TooDeep) => {
                return Err(format!("it is nested deeper than {MAX_DEPTH} levels"))
            }
            Err(KeyScanError::Unbalanced(i)) => return Err(not_json(i)),
        }
    }
}

impl KeyIndex {
    /// The next note as the rewriter's own scan would report it (the first `captured` names'
    /// values are containers, else passed over; nothing inside one is taken), or `Found::Slice`
    /// once about `budget` bytes of work are `spent` (an edited value's length, 64 a noted
    /// `updated_at`) or all notes are taken. An edited value's end is found by a walk of its bytes
    /// (valid JSON: the validation scan read it).
    fn next(
        &mut self,
        t: &[u8],
        captured: usize,
        spent: &mut usize,
        budget: usize,
    ) -> Result<Found, String> {
        while *spent < budget {
            let Some(&(want, at)) = self.found.get(self.next) else {
                break;
            };
            self.next += 1;
            // Members of the configuration before and after the payload are not its own.
            let Some(at) = at.checked_sub(self.offset) else {
                continue;
            };
            if at >= t.len() {
                self.next = self.found.len();
                break;
            }
            if at < self.until {
                continue;
            }
            if want >= captured {
                *spent = spent.saturating_add(64);
                return Ok(Found::Value { want, at });
            }
            if !matches!(t.get(at), Some(b'{' | b'[')) {
                continue;
            }
            let end = crate::json::members::skip_value(t, at)
                .ok_or_else(|| "the configuration's scan does not match it".to_string())?;
            self.until = end;
            *spent = spent.saturating_add(end.saturating_sub(at));
            return Ok(Found::Captured {
                want,
                start: at,
                end,
            });
        }
        Ok(Found::Slice)
    }
}

impl Notes {
    /// A captured value of `key` (`t[range]`): parsed, edited, its newest `updated_at` read
    /// (the scan does not look inside it).
    fn captured(
        &mut self,
        t: &[u8],
        key: &str,
        range: std::ops::Range<usize>,
        edit: &mut dyn ChainEdit,
    ) -> Result<(), String> {
        let raw = t.get(range.clone()).unwrap_or_default();
        let mut value: Value =
            crate::json::parse(raw).map_err(|e| format!("a {key} value cannot be read ({e})"))?;
        let newest = if edit.edit(key, &mut value)? {
            let new = crate::json::to_vec(&value);
            let newest = crate::updated_at::newest_updated_at_ms(&new);
            self.edits.push((range.start, range.end, new));
            newest
        } else {
            crate::updated_at::newest_updated_at_ms(raw)
        };
        self.updated_at_ms = self.updated_at_ms.max(newest);
        Ok(())
    }
}

/// A key with an escape (quotes included), decoded: for the validation scan's notes
/// (`json::scan::Scanner::watch_keys`).
pub fn unescape_key(quoted: &[u8]) -> Option<String> {
    crate::json::members::json_string(quoted).ok()
}

/// A bracket that closes nothing open, at byte `i`.
fn not_json(i: usize) -> String {
    format!("it is not well-formed JSON (unbalanced bracket at byte {i})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    /// Every secret setting, with a value that must never come out.
    const SECRETS: &[(&str, &str)] = &[
        ("aws_access_key_id", "AKIA-SECRET-ID"),
        ("aws_secret_access_key", "SECRET-ACCESS-KEY"),
        ("aws_session_token", "SECRET-SESSION-TOKEN"),
        ("gcp_service_account", "SECRET-PRIVATE-KEY"),
        ("kong_admin_token", "SECRET-ADMIN-TOKEN"),
        ("some_future_setting", "SECRET-UNKNOWN-SETTING"),
    ];

    fn own_config() -> Value {
        let mut c = json!({
            "cluster_fallback_config_export": "on",
            "cluster_fallback_config_storage": "s3://b/p",
            "aws_region": "eu-west-1",
            "config_url": "https://cp.example/config?X-Amz-Signature=SECRET-IN-QUERY",
            "cluster_fallback_export_s3_config": {
                "StorageClass": "STANDARD",
                "SSECustomerAlgorithm": "AES256",
                "SSECustomerKey": "SECRET-SSE-C-KEY",
                "SSECustomerKeyMD5": "SECRET-SSE-C-MD5"
            },
            "config": {"_format_version": "3.0", "consumers": [{"username": "SECRET-IN-CONFIG"}]}
        });
        for (k, v) in SECRETS {
            c[*k] = json!(v);
        }
        c
    }

    fn redacted(doc: &Value) -> (String, usize) {
        let body = Rc::new(crate::json::to_vec(doc));
        let done = Rewriter::run(body, Redaction).unwrap();
        (String::from_utf8(done.body.to_vec()).unwrap(), done.edited)
    }

    fn assert_clean(text: &str) {
        for (k, v) in SECRETS {
            assert!(!text.contains(v), "{k} leaked: {text}");
        }
        for v in [
            "SECRET-SSE-C-KEY",
            "SECRET-SSE-C-MD5",
            "SECRET-IN-QUERY",
            "SECRET-IN-CONFIG",
        ] {
            assert!(!text.contains(v), "{v} leaked: {text}");
        }
    }

    fn chain(config: Value) -> Value {
        json!({"name": "c", "filters": [
            {"name": "config_bridge", "config": config},
            {"name": "other", "config": {"aws_secret_access_key": "not ours"}}
        ]})
    }

    /// The rewrite in slices of `budget` bytes.
    fn in_slices(body: Rc<Vec<u8>>, budget: usize) -> Rewritten<Redaction> {
        drive(Rewriter::new(body, Redaction), budget)
    }

    /// A filter configuration carrying `payload` (an object) as its `config`, with look-alike
    /// members around it (their chains hold secrets, their `updated_at` is the newest): the
    /// payload cut out of it, and the validation scan's notes of that text (in slices of
    /// `scan_budget`) for it.
    fn scanned_payload(payload: &str, scan_budget: usize) -> (Rc<Vec<u8>>, Option<KeyIndex>) {
        let chains = json!([chain(own_config())]);
        let config = format!(
            r#"{{"filter_chains":{chains},"updated_at":1999999999,"config" : {payload} ,"x":{{"filter\u005fchains":{chains}}},"updated_at":1999999998}}"#
        );
        let mut scanner = json::scan::Scanner::new(Some("config"));
        scanner.watch_keys(EXPORT_KEYS, unescape_key);
        let summary = loop {
            match scanner.step(config.as_bytes(), scan_budget) {
                json::scan::Progress::More => {}
                json::scan::Progress::Done(summary) => break summary,
                json::scan::Progress::Invalid(e) => {
                    panic!("{e}: {}", &config[e.offset.saturating_sub(60)..])
                }
            }
        };
        let range = summary.member("config").unwrap().value.clone();
        let body = Rc::new(config.as_bytes()[range.clone()].to_vec());
        let index = KeyIndex::new(&body, summary.found, range);
        (body, index)
    }

    /// The rewrite of `payload` from the validation scan's notes (used: checked).
    fn fused(payload: &str, scan_budget: usize, budget: usize) -> Rewritten<Redaction> {
        let (body, index) = scanned_payload(payload, scan_budget);
        assert_eq!(body.as_slice(), payload.as_bytes());
        let r = Rewriter::with_index(body, index);
        assert!(r.core.index.is_some(), "the notes are not used");
        drive(r, budget)
    }

    fn drive<E: ChainEdit>(mut r: Rewriter<E>, budget: usize) -> Rewritten<E> {
        loop {
            match r.step(budget) {
                Step::Working => {}
                Step::Done(d) => break d,
                Step::Failed(why) => panic!("{why}"),
            }
        }
    }

    #[test]
    fn every_kong_form_keeps_only_the_allowed_settings() {
        let string_config = json!(own_config().to_string());
        let doc = json!({
            "_format_version": "3.0",
            "filter_chains": [chain(own_config())],
            "services": [{
                "name": "s",
                "filter_chains": [chain(string_config.clone())],
                "routes": [{"name": "r", "filter_chains": [chain(own_config())]}]
            }],
            "routes": [{"name": "r2", "filter_chains": [chain(string_config)]}]
        });
        let (text, edited) = redacted(&doc);
        assert_clean(&text);
        assert_eq!(edited, 4);
        let out: Value = crate::json::parse(text.as_bytes()).unwrap();
        let want = json!({
            "cluster_fallback_config_export": "on",
            "cluster_fallback_config_storage": "s3://b/p",
            "aws_region": "eu-west-1",
            "config_url": "https://cp.example/config",
            "cluster_fallback_export_s3_config": {"StorageClass": "STANDARD", "SSECustomerAlgorithm": "AES256"}
        });
        assert_eq!(out["filter_chains"][0]["filters"][0]["config"], want);
        assert_eq!(
            out["services"][0]["routes"][0]["filter_chains"][0]["filters"][0]["config"],
            want
        );
        let string_form = &out["services"][0]["filter_chains"][0]["filters"][0]["config"];
        assert_eq!(
            crate::json::parse(string_form.as_str().unwrap().as_bytes()).unwrap(),
            want
        );
        // Other filters are not touched, nor anything else.
        assert_eq!(
            out["routes"][0]["filter_chains"][0]["filters"][1],
            json!({"name": "other", "config": {"aws_secret_access_key": "not ours"}})
        );
        assert_eq!(out["services"][0]["name"], json!("s"));
    }

    #[test]
    fn each_secret_setting_alone_is_removed_under_any_name_or_form() {
        for (k, v) in SECRETS {
            for name in ["config_bridge", "renamed"] {
                let mut config = json!({"cluster_fallback_config_storage": "s3://b/p"});
                config[*k] = json!(v);
                for config in [config.clone(), json!(config.to_string())] {
                    let doc = json!({"_format_version": "3.0", "filter_chains": [
                        {"filters": [{"name": name, "config": config}]}
                    ]});
                    let (text, edited) = redacted(&doc);
                    assert!(!text.contains(v), "{k} under {name}: {text}");
                    assert_eq!(edited, 1);
                }
            }
        }
    }

    #[test]
    fn the_allowlist_names_only_real_settings_and_secrets_are_not_in_it() {
        for (k, _) in NON_SECRET_SETTINGS {
            assert!(
                crate::settings::SETTINGS.contains(k) || *k == "import_refuse_plugins",
                "{k} is no setting"
            );
        }
        for secret in [
            "aws_access_key_id",
            "aws_secret_access_key",
            "aws_session_token",
            "aws_container_authorization_token",
            "aws_web_identity_token",
            "gcp_service_account",
            "kong_admin_token",
            "config",
        ] {
            assert!(NON_SECRET_SETTINGS.iter().all(|(k, _)| *k != secret));
        }
        assert!(!NON_SECRET_S3_PARAMS.contains(&"SSECustomerKey"));
    }

    #[test]
    fn unreadable_configurations_are_emptied_and_nothing_else_changes() {
        let doc = json!({"_format_version": "3.0", "filter_chains": [{"filters": [
            {"name": "config_bridge", "config": "not json SECRET-RAW"},
            {"name": "config_bridge", "config": 12}
        ]}]});
        let (text, _) = redacted(&doc);
        assert!(!text.contains("SECRET-RAW"));
        let out: Value = crate::json::parse(text.as_bytes()).unwrap();
        assert_eq!(out["filter_chains"][0]["filters"][0]["config"], json!("{}"));
        assert_eq!(out["filter_chains"][0]["filters"][1]["config"], json!({}));
        // A document without config-bridge filters comes back as the same allocation.
        let plain = Rc::new(
            br#"{"_format_version":"3.0","filter_chains":[{"filters":[{"name":"x"}]}]}"#.to_vec(),
        );
        let done = Rewriter::run(Rc::clone(&plain), Redaction).unwrap();
        assert!(Rc::ptr_eq(&done.body, &plain));
        assert_eq!(done.edited, 0);
    }

    #[test]
    fn escaped_keys_and_tricky_strings_do_not_hide_a_chain() {
        let inner = chain(own_config()).to_string();
        let text = format!(
            r#"{{"_format_version":"3.0","a":"\"filter_chains\":[","b":["{{","\\"],"filter\u005fchains" : [ {inner} ] }}"#
        );
        // In any slices: an escape or an escaped key split across two steps is still followed.
        for budget in [1, 2, 3, 5, usize::MAX] {
            let done = in_slices(Rc::new(text.clone().into_bytes()), budget);
            assert_eq!(done.edited, 1, "budget {budget}");
            let out = String::from_utf8(done.body.to_vec()).unwrap();
            assert_clean(&out);
            let v: Value = crate::json::parse(out.as_bytes()).unwrap();
            assert_eq!(v["a"], json!("\"filter_chains\":["));
            assert_eq!(v["b"], json!(["{", "\\"]));
        }
    }

    /// Random documents, written as raw text (escaped keys, look-alike strings, whitespace),
    /// rewritten in random slices, against a redaction of the whole parsed tree: every
    /// `filter_chains` member value outside another is redacted, nothing else changes, and the
    /// newest `updated_at` is the tree's.
    #[test]
    fn random_documents_agree_with_a_redaction_of_the_whole_tree() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut edited = 0;
        for round in 0..400 {
            let mut text = String::new();
            random_value(&mut seed, 0, true, &mut text);
            let body = Rc::new(text.clone().into_bytes());
            let budget = [1, 3, 7, 64, 4096, usize::MAX][round % 6];
            let done = in_slices(Rc::clone(&body), budget);
            let mut want: Value = crate::json::parse(&body).unwrap();
            let mut newest = None;
            redact_tree(&mut want, &mut newest);
            let got: Value = crate::json::parse(&done.body).unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(done.updated_at_ms, newest, "{text}");
            edited += done.edited;
            // The same from the validation scan's notes: byte for byte.
            let scan_budget = [5, 4096, 2, usize::MAX, 1, 64][round % 6];
            let fused = fused(&text, scan_budget, budget);
            assert_eq!(fused.body, done.body, "{text}");
            assert_eq!(
                (fused.updated_at_ms, fused.edited),
                (done.updated_at_ms, done.edited)
            );
        }
        assert!(
            edited > 100,
            "only {edited} values edited: the documents test little"
        );
    }

    fn redact_tree(v: &mut Value, newest: &mut Option<u64>) {
        match v {
            Value::Object(o) => {
                for (k, child) in o.iter_mut() {
                    let container = matches!(child, Value::Object(_) | Value::Array(_));
                    if k == "filter_chains" && container {
                        Redaction.edit(k, child).unwrap();
                        let found = crate::updated_at::newest_updated_at_ms(&json::to_vec(child));
                        *newest = (*newest).max(found);
                        continue;
                    }
                    if k == "updated_at" {
                        let text = json::to_text(child);
                        *newest = (*newest).max(crate::updated_at::number_ms(text.as_bytes(), 0));
                    }
                    redact_tree(child, newest);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|c| redact_tree(c, newest)),
            _ => {}
        }
    }

    fn next(seed: &mut u64, n: u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed % n
    }

    /// Raw keys and what they decode to (one of each decoded name per object).
    const KEYS: &[(&str, &str)] = &[
        (r#""filter_chains""#, "filter_chains"),
        (r#""filter\u005fchains""#, "filter_chains"),
        (r#""updated_at""#, "updated_at"),
        (r#""name""#, "name"),
        (r#""filters""#, "filters"),
        (r#""a\"b""#, "a\"b"),
        (r#""services""#, "services"),
    ];

    fn random_value(seed: &mut u64, depth: usize, object: bool, out: &mut String) {
        const WS: &[&str] = &["", " ", "\n  ", "\t"];
        const STRINGS: &[&str] = &[
            r#""x""#,
            r#""filter_chains""#,
            r#""\"filter_chains\":[""#,
            r#""updated_at""#,
            r#""{[\\""#,
            r#""\u00e9t\u00e9 \"}""#,
        ];
        let ws = |seed: &mut u64| WS[next(seed, 4) as usize];
        let kind = if object {
            6
        } else {
            next(seed, if depth > 3 { 4 } else { 8 })
        };
        match kind {
            0 => out.push_str(&(1_700_000_000 + next(seed, 1000)).to_string()),
            1 => out.push_str(STRINGS[next(seed, STRINGS.len() as u64) as usize]),
            2 => out.push_str(["true", "false", "null"][next(seed, 3) as usize]),
            3 => {
                let config = own_config();
                let config = if next(seed, 2) == 0 {
                    config
                } else {
                    json!(config.to_string())
                };
                out.push_str(&chain(config).to_string());
            }
            4 | 5 => {
                out.push('[');
                for i in 0..next(seed, 4) {
                    out.push_str(if i > 0 { "," } else { "" });
                    out.push_str(ws(seed));
                    random_value(seed, depth + 1, false, out);
                }
                out.push_str(ws(seed));
                out.push(']');
            }
            _ => {
                out.push('{');
                let mut used: Vec<&str> = Vec::new();
                for _ in 0..next(seed, 6) {
                    let (raw, name) = KEYS[next(seed, KEYS.len() as u64) as usize];
                    if used.contains(&name) {
                        continue;
                    }
                    out.push_str(if used.is_empty() { "" } else { "," });
                    used.push(name);
                    out.push_str(ws(seed));
                    out.push_str(raw);
                    out.push_str(ws(seed));
                    out.push(':');
                    out.push_str(ws(seed));
                    if name == "filter_chains" && next(seed, 2) == 0 {
                        // A chain at once, half the time: most of these are to be redacted.
                        out.push('[');
                        out.push_str(&chain(own_config()).to_string());
                        out.push(']');
                        continue;
                    }
                    random_value(seed, depth + 1, false, out);
                }
                out.push_str(ws(seed));
                out.push('}');
            }
        }
    }

    /// The validation scan's notes stand for the rewriter's scan: escaped and nested
    /// `filter_chains`, a chain's key split across slices, look-alike strings and keys, members
    /// of the configuration around the payload (not the payload's: their chains stay, their
    /// `updated_at` is not taken).
    #[test]
    fn the_notes_of_the_validation_scan_redact_as_the_scan_does() {
        let own = chain(own_config());
        let string_form = chain(json!(own_config().to_string()));
        let payload = format!(
            r#"{{"_format_version":"3.0","a":"\"filter_chains\":[","filter_chain":[{own}],"filter_chainsX":{{"c":[{own}]}},
            "services":[{{"name":"s","updated_at":1700000100,"filter\u005fchains" : [{string_form}],
            "routes":[{{"filter_chains":[{own}],"x":["filter_chains",{{"updated\u005fat":1700000200}}]}}]}}],
            "filter_chains":{{"filters":[{{"name":"config_bridge","config":{{"filter_chains":[{own}],"kong_admin_token":"SECRET-ADMIN-TOKEN"}}}}]}},
            "updated_at":"1800000000"}}"#
        );
        let whole = Rewriter::run(Rc::new(payload.clone().into_bytes()), Redaction).unwrap();
        assert_eq!(whole.edited, 3);
        assert_eq!(whole.updated_at_ms, Some(1_700_000_200_000));
        for (scan_budget, budget) in [(1, 1), (2, 3), (7, 5), (64, 64), (usize::MAX, usize::MAX)] {
            let done = fused(&payload, scan_budget, budget);
            assert_eq!(done.body, whole.body, "{scan_budget}/{budget}");
            assert_eq!(done.edited, 3);
            assert_eq!(done.updated_at_ms, whole.updated_at_ms);
            let out: Value = json::parse(&done.body).unwrap();
            assert_clean(&json::to_text(&out["services"]));
            assert_clean(&json::to_text(&out["filter_chains"]));
            // Look-alikes are left as they are.
            assert_eq!(out["filter_chain"][0], own);
            assert_eq!(out["filter_chainsX"]["c"][0], own);
        }
    }

    /// The notes are used for the document they were taken of only.
    #[test]
    fn notes_of_another_document_or_for_other_names_are_not_used() {
        let payload = format!(r#"{{"filter_chains":[{}]}}"#, chain(own_config()));
        let (body, index) = scanned_payload(&payload, usize::MAX);
        let index = index.unwrap();
        // The same bytes in another allocation: its own scan, the same result.
        let copy = Rc::new(body.to_vec());
        assert!(index.is_for(&body) && !index.is_for(&copy));
        let r = Rewriter::with_index(Rc::clone(&copy), Some(index));
        assert!(r.core.index.is_none());
        let done = drive(r, 7);
        assert_eq!(done.edited, 1);
        assert_clean(std::str::from_utf8(&done.body).unwrap());
        // A length that is not the payload's: no notes.
        assert!(KeyIndex::new(&copy, Vec::new(), 0..copy.len() + 1).is_none());
        // Notes gone with their document are no one's.
        let (body, index) = scanned_payload(&payload, usize::MAX);
        drop(body);
        assert!(!index.unwrap().is_for(&copy));
    }

    #[test]
    fn the_export_names_are_the_redactions() {
        let names: Vec<&[u8]> = wanted(Redaction.keys()).iter().map(|w| w.name).collect();
        assert_eq!(names, EXPORT_KEYS);
    }

    #[test]
    fn every_slice_size_gives_the_one_shot_result() {
        let doc = json!({
            "_format_version": "3.0",
            "services": [{"name": "s \u{e9}\"}]", "filter_chains": [chain(own_config())]}],
            "filter_chains": [chain(json!(own_config().to_string()))],
            "tail": ["x", 1, true, null, {"k": "v"}]
        });
        let body = Rc::new(serde_json::to_vec_pretty(&crate::json::value::to_serde(&doc)).unwrap());
        let whole = Rewriter::run(Rc::clone(&body), Redaction).unwrap().body;
        for budget in [1, 2, 3, 7, 64, 1000, body.len()] {
            let mut r = Rewriter::new(Rc::clone(&body), Redaction);
            let mut steps = 0;
            let out = loop {
                steps += 1;
                assert!(steps < 10 * body.len(), "no progress");
                match r.step(budget) {
                    Step::Working => {}
                    Step::Done(d) => break d.body,
                    Step::Failed(why) => panic!("{why}"),
                }
            };
            assert_eq!(out, whole, "budget {budget}");
        }
        assert!(matches!(
            Rewriter::new(body, Redaction).step(1),
            Step::Working
        ));
    }

    /// The rewriter's `updated_at` (found in its own pass) is the byte scan's over what it
    /// writes, in any slices: the newest member anywhere, in a chain it edited or left alone,
    /// never the letters in a string or an escaped look-alike key.
    #[test]
    fn the_newest_updated_at_comes_from_the_same_pass() {
        let mut edited_chain = chain(own_config());
        edited_chain["updated_at"] = json!(1_700_000_300);
        let mut config_with_a_bogus_member = own_config();
        config_with_a_bogus_member["updated_at"] = json!(1_999_999_999);
        let doc = json!({
            "_format_version": "3.0",
            "services": [{"name": "updated_at", "updated_at": 1_700_000_000, "tags": ["\"updated_at\": 1900000000"],
                "filter_chains": [{"updated_at": 1_700_000_200.5, "filters": [{"name": "other", "config": {}}]}]}],
            "filter_chains": [edited_chain, chain(config_with_a_bogus_member)],
            "a\"updated_at": 1_800_000_000u64,
            "targets": [{"updated_at": 1_700_000_100.125}, {"updated_at": null}]
        });
        let body = Rc::new(serde_json::to_vec_pretty(&crate::json::value::to_serde(&doc)).unwrap());
        for budget in [1, 5, 64, body.len()] {
            let done = in_slices(Rc::clone(&body), budget);
            assert_eq!(done.edited, 1, "the bogus member is redacted out");
            assert_eq!(
                done.updated_at_ms,
                crate::updated_at::newest_updated_at_ms(&done.body)
            );
            assert_eq!(
                done.updated_at_ms,
                Some(1_700_000_300_000),
                "budget {budget}"
            );
        }
        let none = Rewriter::run(Rc::new(br#"{"services":[]}"#.to_vec()), Redaction).unwrap();
        assert_eq!(none.updated_at_ms, None);
    }

    #[test]
    fn truncated_too_deep_and_unreadable_chains_fail() {
        let deep = format!(
            r#"{{"_format_version":"3.0","x":{}{}}}"#,
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        let shallow = format!(
            r#"{{"_format_version":"3.0","x":{}{}}}"#,
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(Rewriter::run(Rc::new(shallow.into_bytes()), Redaction).is_ok());
        for (bad, why) in [
            (deep.as_str(), "deeper than"),
            (
                r#"{"_format_version":"3.0","filter_chains":[{"filters":["#,
                "ends inside",
            ),
            (r#"{"a":"unterminated"#, "ends inside"),
            (r#"{"a":[}"#, "unbalanced"),
            (
                r#"{"filter_chains":[1e400]}"#,
                "filter_chains value cannot be read",
            ),
        ] {
            let err = Rewriter::run(Rc::new(bad.as_bytes().to_vec()), Redaction).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
