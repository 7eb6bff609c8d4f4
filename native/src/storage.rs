//! Direct storage requests for the commands that only read (import to a file, drill, status):
//! the core's store builds and signs each request and classifies each answer; this sends them
//! and retries transport failures and error answers with the core's backoff until the deadline.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use config_bridge::backoff::{Backoff, Rng};
use config_bridge::document::{sha256_hex, validate_declarative_json};
use config_bridge::http::{HttpResponse, OutboundRequest};
use config_bridge::seal::{ObjectMeta, Start, Unsealed, Unsealer};
use config_bridge::settings::Config;
use config_bridge::store::timestamp::clock_skew_ms;
use config_bridge::store::{
    self, GetOutcome, HeadOutcome, ListEntry, ListOutcome, ObjectStore, RemoteMeta, StoreError,
};

use crate::http::Http;
use crate::outcome::{Exit, Outcome, Progress, Res};
use crate::pick::Picked;
use crate::time::{http_date_ms, now_ms};

/// A listing stops after this many pages (1,000 keys each).
const MAX_LIST_PAGES: usize = 100;

pub struct Storage<'a> {
    /// Mutable for its prerequisite (a GCS token), sent before any request: see `ready`.
    pub store: RefCell<Box<dyn ObjectStore>>,
    http: &'a Http,
    progress: Progress,
    deadline: Instant,
}

/// A downloaded object.
pub struct Object {
    pub body: Vec<u8>,
    pub meta: RemoteMeta,
    /// `Last-Modified`, ms since the epoch.
    pub last_modified: Option<u64>,
}

impl Object {
    /// When the config was first seen by its exporter (`x-amz-meta-config-applied-at`), else
    /// when the object was written; and which of the two it is.
    pub fn applied_at(&self) -> Option<(u64, &'static str)> {
        match (self.meta.applied_at, self.last_modified) {
            (Some(t), _) => Some((t, "x-amz-meta-config-applied-at")),
            (None, Some(t)) => Some((t, "Last-Modified")),
            (None, None) => None,
        }
    }
}

impl<'a> Storage<'a> {
    pub fn new(cfg: &Config, http: &'a Http, progress: Progress, deadline: Instant) -> Storage<'a> {
        Storage {
            store: RefCell::new(store::for_settings(&cfg.storage)),
            http,
            progress,
            deadline,
        }
    }

    /// `s3://bucket/key`.
    pub fn describe(&self, key: &str) -> String {
        self.store.borrow().describe(key)
    }

    /// The export at `key`; exit 11 when there is none (`missing`: what that means here).
    pub fn get(&self, key: &str, missing: &str) -> Res<Object> {
        let found = self.exchange(&|now| self.store.borrow().get(key, None, now), &|resp| {
            let last_modified = resp.header("last-modified").and_then(http_date_ms);
            match self.store.borrow().parse_get(resp) {
                GetOutcome::Found { body, meta } => Ok(Some(Object {
                    body,
                    meta,
                    last_modified,
                })),
                GetOutcome::Missing => Ok(None),
                GetOutcome::NotModified => Err(unexpected(304)),
                GetOutcome::Failed(e) => Err(e),
            }
        })?;
        found.ok_or_else(|| {
            let where_ = self.describe(key);
            Outcome::new(Exit::Nothing, format!("{where_} does not exist: {missing}"))
                .field("object", where_)
        })
    }

    /// The object's metadata, or `None` when it does not exist.
    pub fn head(&self, key: &str) -> Res<Option<RemoteMeta>> {
        self.exchange(
            &|now| self.store.borrow().head(key, now),
            &|resp| match self.store.borrow().parse_head(&resp) {
                HeadOutcome::Found(meta) => Ok(Some(meta)),
                HeadOutcome::Missing => Ok(None),
                HeadOutcome::Failed(e) => Err(e),
            },
        )
    }

    /// Every key under `prefix`, page by page (at most `MAX_LIST_PAGES`).
    pub fn list(&self, prefix: &str) -> Res<Vec<ListEntry>> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let (entries, next) = self.exchange(
                &|now| self.store.borrow().list(prefix, token.as_deref(), now),
                &|resp| match self.store.borrow().parse_list(&resp) {
                    ListOutcome::Page { entries, next } => Ok((entries, next)),
                    ListOutcome::Failed(e) => Err(e),
                },
            )?;
            all.extend(entries);
            match next {
                Some(n) => token = Some(n),
                None => return Ok(all),
            }
        }
        self.progress
            .warn(&format!("the listing was cut after {MAX_LIST_PAGES} pages"));
        Ok(all)
    }

    /// One request, retried with backoff while the store fails or does not answer.
    fn exchange<T>(
        &self,
        build: &dyn Fn(u64) -> Result<OutboundRequest, String>,
        parse: &dyn Fn(HttpResponse) -> Result<T, StoreError>,
    ) -> Res<T> {
        let mut retry = Retry::new(self.deadline);
        loop {
            let why = match self.ready() {
                Err(why) => why,
                Ok(()) => {
                    let request = build(now_ms()).map_err(|e| {
                        Outcome::new(Exit::Usage, format!("cannot build a storage request: {e}"))
                    })?;
                    match self.http.send(&request) {
                        Ok(resp) => {
                            let mut store = self.store.borrow_mut();
                            if store.rejects_credentials(&resp) {
                                // A token or keys the store no longer accepts: new ones next
                                // attempt.
                                store.on_unauthorized(now_ms());
                            }
                            if store.rejects_clock(&resp) {
                                if let Some(skew) = clock_skew_ms(resp.header("date"), now_ms()) {
                                    store.set_clock_skew(skew);
                                }
                            }
                            drop(store);
                            match parse(resp) {
                                Ok(t) => return Ok(t),
                                Err(e) => match e.needs_operator() {
                                    // No retry can fix it: say so now rather than at --timeout.
                                    Some(fix) => {
                                        return Err(Outcome::new(
                                            Exit::Usage,
                                            format!(
                                            "the storage refused the request: {e} (from {}); {fix}",
                                            request.authority
                                        ),
                                        ))
                                    }
                                    None => format!("{e} (from {})", request.authority),
                                },
                            }
                        }
                        Err(e) => e,
                    }
                }
            };
            if !retry.pause(&why, self.progress) {
                return Err(Outcome::new(
                    Exit::Storage,
                    format!("the storage did not answer usefully: {why}"),
                ));
            }
        }
    }
}

impl Storage<'_> {
    /// Sends the store's prerequisite (a GCS access token) when it needs one, as the filter's
    /// engine does before any other request of the store. A failure is retried by the caller's
    /// backoff, not the store's own (`on_unauthorized` clears it).
    fn ready(&self) -> Result<(), String> {
        // IMDSv2 takes three requests (session token, role, credentials); a GCS assertion is
        // signed in slices, one per call, before its request (docs/gcs.md).
        for _ in 0..16 {
            let request = self.store.borrow_mut().prerequisite(now_ms());
            let Some(request) = request else {
                if self.store.borrow().ready(now_ms()) {
                    return Ok(());
                }
                continue;
            };
            let answer = self.http.send(&request);
            let mut store = self.store.borrow_mut();
            if let Ok(resp) = &answer {
                if store.rejects_clock(resp) {
                    if let Some(skew) = clock_skew_ms(resp.header("date"), now_ms()) {
                        store.set_clock_skew(skew);
                    }
                }
            }
            store.on_prerequisite(answer, now_ms()).inspect_err(|_| {
                store.on_unauthorized(now_ms());
            })?;
        }
        Ok(())
    }
}

fn unexpected(status: u16) -> StoreError {
    StoreError {
        status,
        code: "Unexpected".into(),
        message: "unexpected answer".into(),
    }
}

/// Capped exponential backoff with jitter (the core's) until a deadline.
pub struct Retry {
    deadline: Instant,
    backoff: Backoff,
    rng: Rng,
    attempt: u32,
}

impl Retry {
    pub fn new(deadline: Instant) -> Retry {
        Retry {
            deadline,
            backoff: Backoff {
                base_ms: 500,
                max_ms: 10_000,
            },
            rng: Rng::new(now_ms() ^ u64::from(std::process::id())),
            attempt: 0,
        }
    }

    /// Waits before the next attempt (never past the deadline); false when the deadline has
    /// passed and there is no next attempt.
    pub fn pause(&mut self, why: &str, progress: Progress) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        self.attempt += 1;
        let delay = Duration::from_millis(self.backoff.delay(self.attempt, &mut self.rng))
            .min(self.deadline - now);
        progress.warn(&format!("{why}; retrying in {} ms", delay.as_millis()));
        std::thread::sleep(delay);
        true
    }
}

/// A sealed export (docs/sealed-exports.md) verified and decrypted with the settings' keys,
/// by the filter's own code, before anything parses it: the object with its plaintext (its
/// `config-sha256`, which speaks of the stored bytes, checked and cleared). Without keys, an
/// unencrypted object as it is. The error reads after "<object> is not applied: ".
pub fn unseal(
    cfg: &Config,
    key: &str,
    mut object: Object,
    max_bytes: u64,
) -> Result<Object, String> {
    within(&object.body, max_bytes)?;
    let meta = ObjectMeta {
        seal: object.meta.seal.clone(),
        applied_at: object.meta.applied_at,
        config_sha256: object.meta.sha256_hex.clone(),
    };
    let body = std::mem::take(&mut object.body);
    match Unsealer::start(&cfg.seal, key, body, meta) {
        Start::Plain(body) => object.body = body,
        Start::Refused(why) => return Err(why),
        Start::Unseal(mut u) => loop {
            match u.step(usize::MAX) {
                Unsealed::Working => {}
                Unsealed::Done(plain) => {
                    object.body = plain;
                    object.meta.sha256_hex = None;
                    break;
                }
                Unsealed::Failed(why) => return Err(why),
            }
        },
    }
    Ok(object)
}

/// An export as an import applies it (`import`, `drill`, `diff`): the size limit; for a history
/// object, the digest its name records (the first 16 hex digits of the stored bytes' SHA-256:
/// an object stored under another export's name is refused); the seal, verified and decrypted
/// as the `config.json` of this prefix and version, which history objects are sealed for
/// (docs/history.md); then `check_object`. The error reads after "<object> is not applied: ".
pub fn open_export(
    cfg: &Config,
    picked: &Picked,
    object: Object,
    max_bytes: u64,
) -> Result<Object, String> {
    within(&object.body, max_bytes)?;
    if let Some(entry) = &picked.entry {
        let sha = sha256_hex(&object.body);
        if !sha.starts_with(&entry.sha_prefix) {
            return Err(format!(
                "its content (sha256 {}) is not the export its name records (sha256 {}…)",
                sha.get(..16).unwrap_or(&sha),
                entry.sha_prefix
            ));
        }
    }
    let object = unseal(cfg, &cfg.config_key(), object, max_bytes)?;
    check_object(&object, max_bytes, &refuse_plugins(cfg))?;
    Ok(object)
}

/// `--max-bytes`: checked before anything else reads the object.
fn within(body: &[u8], max_bytes: u64) -> Result<(), String> {
    let size = body.len() as u64;
    if size > max_bytes {
        return Err(format!(
            "{size} bytes is more than --max-bytes ({max_bytes})"
        ));
    }
    Ok(())
}

/// The checks the filter's import makes before applying an object: a size limit, a Kong
/// declarative configuration (JSON object with `_format_version`, the core's check), and its
/// `config-sha256` metadata when present (a corrupt or truncated object is not applied).
/// `refuse_plugins`: `import_refuse_plugins`; the document must also be one the filter's import
/// could rewrite (fail-closed: docs/security.md).
pub fn check_object(
    object: &Object,
    max_bytes: u64,
    refuse_plugins: &[String],
) -> Result<(), String> {
    within(&object.body, max_bytes)?;
    validate_declarative_json(&object.body).map_err(|reason| format!("the object {reason}"))?;
    match &object.meta.sha256_hex {
        Some(expected) if *expected != sha256_hex(&object.body) => {
            return Err(
                "its content does not match its config-sha256 metadata (corrupt or truncated)"
                    .into(),
            )
        }
        _ => {}
    }
    config_bridge::engine::rewrite_for_import(&object.body, None, refuse_plugins).map(|_| ())
}

/// `import_refuse_plugins` of the settings (none when import is off).
pub fn refuse_plugins(cfg: &config_bridge::settings::Config) -> Vec<String> {
    cfg.import_settings
        .as_ref()
        .map(|s| s.refuse_plugins.clone())
        .unwrap_or_default()
}
