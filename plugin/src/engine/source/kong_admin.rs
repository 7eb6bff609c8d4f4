//! A Kong Admin API as the source: the node's own (`http://127.0.0.1:8001`) or a CP's.
//!
//! Every poll starts with `GET /status`. On a DB-less node its `configuration_hash` is the change
//! probe: 32 zeros means "no configuration" (nothing to export), an unchanged hash costs that one
//! small request. When it changed, the entity collections are read page by page (`size=1000`,
//! Kong's `next` links; targets per upstream) into Kong's flat form (`flat_form`), one request per
//! tick, and `/status` is asked again: a different hash means the configuration changed during
//! the dump, which is then redone. A database-backed node has no hash: the collections are read
//! every `dump_interval` and a dump counts only when two consecutive dumps agree (there is no
//! snapshot to read from). The collections are chosen over `GET /config` (DB-less only, a YAML
//! string to parse in one callback, and a YAML parser in the module): docs/kong.md.
//!
//! A page is validated, then its entities are written into the flat form, a slice per tick
//! (`PAGE_SLICE_BYTES`; the answer only takes the body), and a database-backed dump is hashed a
//! slice per tick, so no callback does work proportional to a page or to the configuration
//! (BENCHMARKS.md, issue 25).
//!
//! Never emitted: a partial dump (any failed page aborts it), an empty configuration (it would
//! replace the last good backup with nothing), an inconsistent one.

use std::rc::Rc;

use super::PollResult;
use crate::digest::Digester;
use crate::document::hex;
use crate::flat_form::{Collection, FlatBuilder, Page, COLLECTIONS};
use crate::http::{HttpResponse, OutboundRequest};
use crate::http_url::percent_encode;
use crate::json::members::{check_json, json_string, object_members};
use crate::settings::KongAdminSettings;

/// `configuration_hash` of a DB-less node with no configuration.
const EMPTY_HASH: &str = "00000000000000000000000000000000";
/// Redoing a dump that keeps changing: give up after this many passes (and retry next poll).
const MAX_PASSES: u32 = 5;
const PAGE_SIZE: u32 = 1000;
/// Bytes of a page's entities written into the flat form per tick: a page of 1,000 entities was
/// ~26 ms of one callback in wasm at load ~9 (BENCHMARKS.md, issue 25).
const PAGE_SLICE_BYTES: usize = 64 * 1024;
/// The longest wait between polls after failures.
const MAX_BACKOFF_MS: u64 = 300_000;

#[derive(Debug)]
enum State {
    Idle,
    /// `GET /status` before a dump.
    Probing,
    Dumping(Dump),
    /// A database-backed dump being hashed a slice per tick (two dumps in a row must agree).
    Hashing(Digester),
    /// `GET /status` after a DB-less dump: the hash must not have moved.
    Verifying {
        hash: String,
        document: Vec<u8>,
        sent: bool,
    },
}

#[derive(Debug)]
struct Dump {
    /// DB-less: the hash the dump must match; `None` on a database-backed node.
    hash: Option<String>,
    collection: usize,
    /// The next page of the current collection (Kong's `next`), once the first was read.
    next: Option<String>,
    /// Targets: the index of the upstream whose targets are read.
    upstream: usize,
    builder: FlatBuilder,
    /// `true` while waiting for a page's answer.
    waiting: bool,
    /// The page answered, being written into the flat form a slice per tick.
    page: Option<Page>,
}

#[derive(Debug)]
pub struct KongAdmin {
    settings: KongAdminSettings,
    state: State,
    next_poll_at: u64,
    /// DB-less: the hash of the configuration last emitted.
    emitted_hash: Option<String>,
    /// Database-backed: the sha256 of the previous dump (two passes must agree) and of the last
    /// emitted one.
    previous_dump: Option<String>,
    emitted_dump: Option<String>,
    passes: u32,
    /// "No configuration yet" said once, not on every poll.
    empty_reported: bool,
    /// Failed polls in a row (they back off).
    failures: u32,
}

impl KongAdmin {
    pub fn new(settings: KongAdminSettings) -> KongAdmin {
        KongAdmin {
            settings,
            state: State::Idle,
            next_poll_at: 0,
            emitted_hash: None,
            previous_dump: None,
            emitted_dump: None,
            passes: 0,
            empty_reported: false,
            failures: 0,
        }
    }

    pub fn describe(&self) -> String {
        format!("the Kong Admin API at {}", self.settings.url)
    }

    /// A dump is in progress: one page per tick, so the shell ticks faster meanwhile.
    pub fn busy(&self) -> bool {
        matches!(
            self.state,
            State::Dumping(_) | State::Hashing(_) | State::Verifying { .. }
        )
    }

    /// One slice of the work between requests (a page written into the flat form, a dump
    /// hashed); called on the lease holder's ticks before `poll`.
    pub fn step(&mut self, now: u64) -> PollResult {
        let state = std::mem::replace(&mut self.state, State::Idle);
        let result = match state {
            State::Dumping(dump) if dump.page.is_some() => self.write_slice(dump),
            State::Hashing(mut digester) => match digester.step(crate::digest::SLICE_BYTES) {
                Some(sha) => {
                    let body = Rc::clone(digester.body());
                    drop(digester);
                    let document = Rc::try_unwrap(body).unwrap_or_else(|rc| rc.as_ref().clone());
                    self.agreed(document, hex(&sha))
                }
                None => {
                    self.state = State::Hashing(digester);
                    PollResult::Unchanged
                }
            },
            // Nothing to do between requests (and nothing to settle: an idle tick is no success).
            other => {
                self.state = other;
                return PollResult::Unchanged;
            }
        };
        self.settle(result, now)
    }

    /// The next request, if one is due (called on ticks by the lease holder when no source call
    /// is in flight). A dump in progress asks for its next page on every tick.
    pub fn poll(&mut self, now: u64) -> Option<OutboundRequest> {
        match &mut self.state {
            State::Idle if now >= self.next_poll_at => {
                self.next_poll_at = now.saturating_add(self.settings.poll_interval_ms);
                self.state = State::Probing;
                Some(self.get("/status".to_string()))
            }
            State::Verifying { sent, .. } if !*sent => {
                *sent = true;
                Some(self.get("/status".to_string()))
            }
            State::Dumping(dump) if !dump.waiting && dump.page.is_none() => {
                let path = next_page_path(dump)?;
                dump.waiting = true;
                let path = self.path(&path);
                Some(self.get_raw(path))
            }
            _ => None,
        }
    }

    /// A request of this source failed at the transport level: the poll or dump is abandoned.
    pub fn on_failure(&mut self, now: u64) {
        self.state = State::Idle;
        self.back_off(now);
    }

    pub fn on_response(&mut self, resp: HttpResponse, now: u64) -> PollResult {
        let state = std::mem::replace(&mut self.state, State::Idle);
        let result = match state {
            State::Probing => self.probed(&resp, now),
            State::Dumping(dump) => self.page(dump, resp),
            State::Verifying { hash, document, .. } => self.verified(&resp, hash, document),
            // No request of these is in flight: a stray answer changes nothing.
            other @ (State::Idle | State::Hashing(_)) => {
                self.state = other;
                PollResult::Unchanged
            }
        };
        self.settle(result, now)
    }

    /// Failures back off; a success, or an idle outcome, resets the count.
    fn settle(&mut self, result: PollResult, now: u64) -> PollResult {
        match &result {
            PollResult::Failed(_) => self.back_off(now),
            PollResult::Fetched(_) => self.failures = 0,
            _ if matches!(self.state, State::Idle) => self.failures = 0,
            _ => {}
        }
        result
    }

    /// After a failure the next poll waits longer (doubling up to 5 minutes): an Admin API that is
    /// down or refuses the token is not asked, nor logged about, every poll interval.
    fn back_off(&mut self, now: u64) {
        self.failures = self.failures.saturating_add(1);
        let factor = 1u64 << self.failures.min(16);
        let delay = self
            .settings
            .poll_interval_ms
            .saturating_mul(factor / 2)
            .clamp(
                self.settings.poll_interval_ms,
                MAX_BACKOFF_MS.max(self.settings.poll_interval_ms),
            );
        self.next_poll_at = now.saturating_add(delay);
    }

    fn probed(&mut self, resp: &HttpResponse, now: u64) -> PollResult {
        if let Err(e) = check_status(resp, "/status") {
            return PollResult::Failed(e);
        }
        let hash = match status_hash(&resp.body) {
            Ok(h) => h,
            Err(e) => return PollResult::Failed(e),
        };
        match hash {
            Some(h) if h == EMPTY_HASH => {
                if self.empty_reported {
                    return PollResult::Unchanged;
                }
                self.empty_reported = true;
                PollResult::Note("the node has no configuration yet (configuration_hash is empty); nothing to export".into())
            }
            Some(h) if self.emitted_hash.as_deref() == Some(h.as_str()) => PollResult::Unchanged,
            Some(h) => self.start_dump(Some(h)),
            // A database-backed node: dump on the longer interval.
            None => {
                self.next_poll_at = now.saturating_add(self.settings.dump_interval_ms);
                self.start_dump(None)
            }
        }
    }

    fn start_dump(&mut self, hash: Option<String>) -> PollResult {
        self.empty_reported = false;
        self.state = State::Dumping(Dump {
            hash,
            collection: 0,
            next: None,
            upstream: 0,
            builder: FlatBuilder::new(),
            waiting: false,
            page: None,
        });
        PollResult::Unchanged
    }

    fn page(&mut self, mut dump: Dump, resp: HttpResponse) -> PollResult {
        dump.waiting = false;
        let Some(collection) = COLLECTIONS.get(dump.collection).copied() else {
            return PollResult::Unchanged;
        };
        // A collection this Kong does not have (older versions, a plugin not bundled).
        if resp.status == 404 && dump.next.is_none() && !collection.per_upstream {
            return self.next_collection(dump);
        }
        if let Err(e) = check_status(&resp, collection.path) {
            return PollResult::Failed(format!("{e}; the dump is abandoned"));
        }
        // Validated, then written into the flat form, on the next ticks (`step`).
        dump.page = Some(Page::open(collection.name, resp.body));
        self.state = State::Dumping(dump);
        PollResult::Unchanged
    }

    /// One slice of the page being written; when it is all written, the next page, upstream or
    /// collection. A bad entity abandons the dump.
    fn write_slice(&mut self, mut dump: Dump) -> PollResult {
        let Some(mut page) = dump.page.take() else {
            self.state = State::Dumping(dump);
            return PollResult::Unchanged;
        };
        let Some(collection) = COLLECTIONS.get(dump.collection).copied() else {
            return PollResult::Unchanged;
        };
        match dump.builder.add_entities(&mut page, PAGE_SLICE_BYTES) {
            Err(e) => PollResult::Failed(format!("{}: {e}", collection.path)),
            Ok(false) => {
                dump.page = Some(page);
                self.state = State::Dumping(dump);
                PollResult::Unchanged
            }
            Ok(true) => {
                dump.next = page.next;
                self.advance(dump, collection)
            }
        }
    }

    /// A page is written: its next page, the next upstream's targets, or the next collection.
    fn advance(&mut self, mut dump: Dump, collection: Collection) -> PollResult {
        if dump.next.is_some() {
            self.state = State::Dumping(dump);
            return PollResult::Unchanged;
        }
        if collection.per_upstream && dump.upstream + 1 < dump.builder.upstream_ids().len() {
            dump.upstream += 1;
            self.state = State::Dumping(dump);
            return PollResult::Unchanged;
        }
        self.next_collection(dump)
    }

    fn next_collection(&mut self, mut dump: Dump) -> PollResult {
        dump.collection += 1;
        dump.next = None;
        dump.upstream = 0;
        // Targets need at least one upstream.
        while COLLECTIONS
            .get(dump.collection)
            .is_some_and(|c| c.per_upstream && dump.builder.upstream_ids().is_empty())
        {
            dump.collection += 1;
        }
        if dump.collection < COLLECTIONS.len() {
            self.state = State::Dumping(dump);
            return PollResult::Unchanged;
        }
        self.dumped(dump)
    }

    fn dumped(&mut self, dump: Dump) -> PollResult {
        let entities = dump.builder.entity_count();
        let document = dump.builder.finish();
        if entities == 0 {
            return PollResult::Note(
                "the node's configuration has no entities; not exporting it over the last backup"
                    .into(),
            );
        }
        match dump.hash {
            Some(hash) => {
                // `/status` again on the next tick.
                self.state = State::Verifying {
                    hash,
                    document,
                    sent: false,
                };
                PollResult::Unchanged
            }
            // Hashed a slice per tick (`step`), then `agreed`.
            None => {
                self.state = State::Hashing(Digester::new(Rc::new(document)));
                PollResult::Unchanged
            }
        }
    }

    /// Database-backed: a dump counts when the one before it had the same content.
    fn agreed(&mut self, document: Vec<u8>, sha: String) -> PollResult {
        if self.emitted_dump.as_deref() == Some(sha.as_str()) {
            self.previous_dump = Some(sha);
            self.passes = 0;
            return PollResult::Unchanged;
        }
        if self.previous_dump.as_deref() == Some(sha.as_str()) {
            self.emitted_dump = Some(sha);
            self.passes = 0;
            return PollResult::Fetched(document);
        }
        self.previous_dump = Some(sha);
        self.passes += 1;
        if self.passes >= MAX_PASSES {
            self.passes = 0;
            return PollResult::Failed(format!(
                "the configuration changed during each of {MAX_PASSES} dumps; trying again later"
            ));
        }
        // Dump again at once to confirm.
        self.start_dump(None)
    }

    fn verified(&mut self, resp: &HttpResponse, hash: String, document: Vec<u8>) -> PollResult {
        if let Err(e) = check_status(resp, "/status") {
            return PollResult::Failed(e);
        }
        let now_hash = match status_hash(&resp.body) {
            Ok(h) => h,
            Err(e) => return PollResult::Failed(e),
        };
        if now_hash.as_deref() == Some(hash.as_str()) {
            self.emitted_hash = Some(hash);
            self.passes = 0;
            return PollResult::Fetched(document);
        }
        self.passes += 1;
        if self.passes >= MAX_PASSES {
            self.passes = 0;
            return PollResult::Failed(format!(
                "the configuration changed during each of {MAX_PASSES} dumps; trying again later"
            ));
        }
        match now_hash {
            Some(h) if h != EMPTY_HASH => {
                let _ = self.start_dump(Some(h));
                PollResult::Note(
                    "the configuration changed during the dump; reading it again".into(),
                )
            }
            _ => PollResult::Unchanged,
        }
    }

    /// An Admin API path under the base URL's path.
    fn path(&self, path: &str) -> String {
        let base = crate::text::trim_end_ascii(self.settings.url.path(), b'/');
        format!("{base}{path}")
    }

    fn get(&self, path: String) -> OutboundRequest {
        let full = self.path(&path);
        self.get_raw(full)
    }

    fn get_raw(&self, path: String) -> OutboundRequest {
        let mut headers = vec![("accept".to_string(), "application/json".to_string())];
        if let Some((name, token)) = &self.settings.auth {
            headers.push((name.to_ascii_lowercase(), token.expose().to_string()));
        }
        OutboundRequest {
            upstream: self.settings.upstream.clone(),
            method: "GET".into(),
            path,
            authority: self.settings.url.authority(),
            scheme: self.settings.url.scheme.clone(),
            headers,
            body: Rc::default(),
        }
    }
}

/// `configuration_hash` of a `/status` answer (`None`: a database-backed node has none).
pub(crate) fn status_hash(body: &[u8]) -> Result<Option<String>, String> {
    check_json(body).map_err(|_| "/status did not answer JSON".to_string())?;
    let members = object_members(body).ok_or("/status did not answer a JSON object")?;
    Ok(members
        .iter()
        .rev()
        .find(|(k, _, _)| k == "configuration_hash")
        .and_then(|(_, s, e)| body.get(*s..*e))
        .and_then(|raw| json_string(raw).ok()))
}

/// The next page to read: Kong's `next` link, or the first page of the current collection.
fn next_page_path(dump: &Dump) -> Option<String> {
    if let Some(next) = &dump.next {
        // Kong answers an absolute path (`/consumers?offset=...`).
        return Some(next.clone());
    }
    let collection: Collection = *COLLECTIONS.get(dump.collection)?;
    if collection.per_upstream {
        let upstream = dump.builder.upstream_ids().get(dump.upstream)?;
        return Some(format!(
            "/upstreams/{}/targets?size={PAGE_SIZE}",
            percent_encode(upstream, false)
        ));
    }
    Some(format!("{}?size={PAGE_SIZE}", collection.path))
}

/// A clear line for an Admin API answer that is not 200.
fn check_status(resp: &HttpResponse, what: &str) -> Result<(), String> {
    match resp.status {
        200 => Ok(()),
        401 | 403 => Err(format!(
            "{what}: HTTP {} (RBAC: set kong_admin_token, or a token with read access)",
            resp.status
        )),
        404 => Err(format!(
            "{what}: HTTP 404 (not a Kong Admin API, or a Kong older than 3.x)"
        )),
        s => Err(format!("{what}: HTTP {s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_url::HttpUrl;
    use crate::secret::Secret;
    use serde_json::{json, Value};
    use std::collections::BTreeMap;

    /// A Kong Admin API in a few lines: collections with Kong's paging, `/status` hashes.
    struct FakeAdmin {
        collections: BTreeMap<String, Vec<Value>>,
        /// `configuration_hash` answers, in order (the last repeats); `None`: a database node.
        hashes: Vec<Option<String>>,
        status_calls: usize,
        fail_path: Option<(String, u16, Vec<u8>)>,
        seen: Vec<OutboundRequest>,
    }

    impl FakeAdmin {
        fn new(hashes: &[Option<&str>]) -> FakeAdmin {
            FakeAdmin {
                collections: BTreeMap::new(),
                hashes: hashes.iter().map(|h| h.map(str::to_string)).collect(),
                status_calls: 0,
                fail_path: None,
                seen: Vec::new(),
            }
        }

        fn with(mut self, path: &str, entities: Vec<Value>) -> FakeAdmin {
            self.collections.insert(path.to_string(), entities);
            self
        }

        fn answer(&mut self, req: &OutboundRequest) -> HttpResponse {
            self.seen.push(req.clone());
            let ok = |v: Value| HttpResponse {
                status: 200,
                headers: vec![],
                body: v.to_string().into_bytes(),
            };
            let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
            if let Some((p, status, body)) = &self.fail_path {
                if path == p {
                    return HttpResponse {
                        status: *status,
                        headers: vec![],
                        body: body.clone(),
                    };
                }
            }
            if path == "/status" {
                let i = self.status_calls.min(self.hashes.len() - 1);
                self.status_calls += 1;
                return ok(match &self.hashes[i] {
                    Some(h) => json!({"configuration_hash": h, "server": {}}),
                    None => json!({"server": {}, "database": {"reachable": true}}),
                });
            }
            let Some(all) = self.collections.get(path) else {
                return HttpResponse {
                    status: 404,
                    headers: vec![],
                    body: br#"{"message":"Not found"}"#.to_vec(),
                };
            };
            let param = |k: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                    .map(str::to_string)
            };
            let size: usize = param("size").and_then(|s| s.parse().ok()).unwrap_or(100);
            let offset: usize = param("offset").and_then(|s| s.parse().ok()).unwrap_or(0);
            let page: Vec<Value> = all.iter().skip(offset).take(size).cloned().collect();
            let next = (offset + size < all.len())
                .then(|| format!("{path}?offset={}&size={size}", offset + size));
            ok(json!({"data": page, "next": next}))
        }
    }

    fn settings(token: Option<&str>) -> KongAdminSettings {
        KongAdminSettings {
            url: HttpUrl::parse("http://127.0.0.1:8001").unwrap(),
            upstream: "127.0.0.1:8001".into(),
            auth: token.map(|t| ("Kong-Admin-Token".to_string(), Secret::new(t))),
            poll_interval_ms: 1000,
            dump_interval_ms: 5000,
        }
    }

    /// Ticks every 100 ms until `until`, answering each request at once.
    fn run(k: &mut KongAdmin, admin: &mut FakeAdmin, from: u64, until: u64) -> Vec<PollResult> {
        let mut out = Vec::new();
        let mut now = from;
        while now < until {
            // As the engine does on a tick: a slice of work, then a request if one is due.
            let r = k.step(now);
            if r != PollResult::Unchanged {
                out.push(r);
            }
            if let Some(req) = k.poll(now) {
                let resp = admin.answer(&req);
                let r = k.on_response(resp, now);
                if r != PollResult::Unchanged {
                    out.push(r);
                }
            }
            now += 100;
        }
        out
    }

    fn consumers(n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| json!({"id": format!("c{i:05}"), "username": format!("user-{i}"), "custom_id": null}))
            .collect()
    }

    fn dbless(hashes: &[Option<&str>]) -> FakeAdmin {
        FakeAdmin::new(hashes)
            .with(
                "/services",
                vec![json!({"id": "s1", "name": "a", "enabled": true})],
            )
            .with(
                "/routes",
                vec![json!({"id": "r1", "service": {"id": "s1"}})],
            )
            .with("/upstreams", vec![json!({"id": "u1", "name": "up"})])
            .with(
                "/upstreams/u1/targets",
                vec![json!({"id": "t1", "upstream": {"id": "u1"}, "target": "10.0.0.1:80"})],
            )
            .with("/consumers", consumers(2500))
    }

    #[test]
    fn a_db_less_node_is_dumped_once_per_hash_with_every_page() {
        let mut admin = dbless(&[Some("h1")]);
        let mut k = KongAdmin::new(settings(Some("rbac-secret")));
        let out = run(&mut k, &mut admin, 0, 60_000);
        assert_eq!(out.len(), 1, "{out:?}");
        let PollResult::Fetched(doc) = &out[0] else {
            panic!("{out:?}")
        };
        let doc: Value = serde_json::from_slice(doc).unwrap();
        assert_eq!(doc["_transform"], json!(false));
        assert_eq!(doc["consumers"].as_array().unwrap().len(), 2500);
        assert_eq!(doc["routes"][0]["service"], json!("s1"));
        assert_eq!(doc["targets"][0]["upstream"], json!("u1"));
        assert!(doc["consumers"][0].get("custom_id").is_none());
        // Every request carried the token; 3 pages of consumers.
        assert!(admin
            .seen
            .iter()
            .all(|r| r.header("kong-admin-token") == Some("rbac-secret")));
        let consumer_pages = admin
            .seen
            .iter()
            .filter(|r| r.path.starts_with("/consumers"))
            .count();
        assert_eq!(consumer_pages, 3);
        // Later polls: the hash did not move, one small request each.
        let before = admin.seen.len();
        assert!(run(&mut k, &mut admin, 60_000, 70_000).is_empty());
        let later: Vec<&str> = admin.seen[before..]
            .iter()
            .map(|r| r.path.as_str())
            .collect();
        assert!(
            later.iter().all(|p| *p == "/status") && later.len() == 10,
            "{later:?}"
        );
        assert!(!k.describe().contains("rbac-secret"));
    }

    #[test]
    fn an_empty_node_is_said_once_and_never_exported() {
        let mut admin = dbless(&[Some(EMPTY_HASH)]);
        let mut k = KongAdmin::new(settings(None));
        let out = run(&mut k, &mut admin, 0, 10_000);
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], PollResult::Note(n) if n.contains("no configuration yet")));
        assert!(admin.seen.iter().all(|r| r.path == "/status"));
    }

    #[test]
    fn a_change_during_the_dump_is_read_again() {
        // /status: h1 before the dump, h2 after it (the node changed meanwhile), then h2.
        let mut admin = dbless(&[Some("h1"), Some("h2"), Some("h2")]);
        let mut k = KongAdmin::new(settings(None));
        let out = run(&mut k, &mut admin, 0, 30_000);
        assert!(
            matches!(&out[0], PollResult::Note(n) if n.contains("changed during the dump")),
            "{out:?}"
        );
        assert!(matches!(&out[1], PollResult::Fetched(_)), "{out:?}");
        assert_eq!(out.len(), 2);
        assert_eq!(k.emitted_hash.as_deref(), Some("h2"));
    }

    #[test]
    fn a_database_node_counts_a_dump_when_two_in_a_row_agree() {
        let mut admin = dbless(&[None]);
        let mut k = KongAdmin::new(settings(None));
        let out = run(&mut k, &mut admin, 0, 5_000);
        assert_eq!(
            out.len(),
            1,
            "two dumps back to back, then one document: {out:?}"
        );
        assert!(matches!(&out[0], PollResult::Fetched(_)));
        // Nothing changed: the next dumps (every 5 s) emit nothing.
        assert!(run(&mut k, &mut admin, 5_000, 30_000).is_empty());
        // A change: two more agreeing dumps, then the new document.
        admin
            .collections
            .insert("/services".into(), vec![json!({"id": "s9", "name": "new"})]);
        let out = run(&mut k, &mut admin, 30_000, 60_000);
        assert_eq!(out.len(), 1, "{out:?}");
        let PollResult::Fetched(doc) = &out[0] else {
            panic!()
        };
        assert!(String::from_utf8_lossy(doc).contains("\"s9\""));
    }

    #[test]
    fn errors_abandon_the_dump_with_a_clear_reason_and_never_emit() {
        for (path, status, body, needle) in [
            (
                "/status",
                401,
                b"{\"message\":\"Invalid RBAC credentials\"}".to_vec(),
                "RBAC",
            ),
            ("/consumers", 500, b"{}".to_vec(), "/consumers: HTTP 500"),
            (
                "/consumers",
                200,
                b"{\"data\":[{\"id\":".to_vec(),
                "not valid json",
            ),
            ("/routes", 200, b"{\"nodata\":1}".to_vec(), "no \"data\""),
        ] {
            let mut admin = dbless(&[Some("h1")]);
            admin.fail_path = Some((path.to_string(), status, body));
            let mut k = KongAdmin::new(settings(None));
            let out = run(&mut k, &mut admin, 0, 20_000);
            assert!(
                !out.iter().any(|r| matches!(r, PollResult::Fetched(_))),
                "{path}: {out:?}"
            );
            assert!(
                out.iter()
                    .any(|r| matches!(r, PollResult::Failed(e) if e.contains(needle))),
                "{path}: {out:?}"
            );
            // Fixed: the next poll dumps again and exports.
            admin.fail_path = None;
            let out = run(&mut k, &mut admin, 20_000, 80_000);
            assert!(
                out.iter().any(|r| matches!(r, PollResult::Fetched(_))),
                "{path}: {out:?}"
            );
        }
    }

    /// Consumers with a long field, so a page of 1,000 is several `PAGE_SLICE_BYTES` slices.
    fn fat_consumers(n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| json!({"id": format!("c{i:05}"), "username": format!("user-{i}"), "custom_id": "x".repeat(300)}))
            .collect()
    }

    #[test]
    fn a_page_is_written_over_several_ticks_and_no_request_goes_meanwhile() {
        let mut admin = dbless(&[Some("h1")]).with("/consumers", fat_consumers(2500));
        let mut k = KongAdmin::new(settings(None));
        let (mut writing_ticks, mut now) = (0, 0);
        let mut out = Vec::new();
        while now < 60_000 {
            out.push(k.step(now));
            let writing = matches!(&k.state, State::Dumping(d) if d.page.is_some());
            writing_ticks += usize::from(writing);
            let req = k.poll(now);
            assert!(
                !(writing && req.is_some()),
                "a request while a page is written"
            );
            if let Some(req) = req {
                let resp = admin.answer(&req);
                out.push(k.on_response(resp, now));
            }
            now += 100;
        }
        out.retain(|r| *r != PollResult::Unchanged);
        // 2,500 consumers of ~360 bytes: ~900 KB in 3 pages, 64 KiB a slice.
        assert!(writing_ticks >= 12, "{writing_ticks} ticks of writing");
        let [PollResult::Fetched(doc)] = &out[..] else {
            panic!("{out:?}")
        };
        let doc: Value = serde_json::from_slice(doc).unwrap();
        assert_eq!(doc["consumers"].as_array().unwrap().len(), 2500);
        assert_eq!(doc["consumers"][2499]["id"], json!("c02499"));
    }

    #[test]
    fn a_bad_entity_late_in_a_page_abandons_the_dump() {
        let mut data = fat_consumers(900);
        data.push(json!(7));
        let body = json!({"data": data, "next": null}).to_string().into_bytes();
        let mut admin = dbless(&[Some("h1")]);
        admin.fail_path = Some(("/consumers".into(), 200, body));
        let mut k = KongAdmin::new(settings(None));
        let out = run(&mut k, &mut admin, 0, 20_000);
        assert!(
            out.iter().all(|r| matches!(r, PollResult::Failed(e) if e.contains("/consumers: consumers: an entity that is not a JSON object"))),
            "{out:?}"
        );
        assert!(!out.is_empty() && matches!(k.state, State::Idle));
        // Each failure doubles the wait (1, 2, 4, 8 s...): the idle ticks between polls, where
        // `step` has nothing to do, do not count as successes.
        assert!(out.len() <= 5, "{} failures in 20 s", out.len());
        admin.fail_path = None;
        let out = run(&mut k, &mut admin, 20_000, 80_000);
        assert!(matches!(&out[..], [PollResult::Fetched(_)]), "{out:?}");
    }

    #[test]
    fn a_database_dump_is_hashed_across_ticks_before_two_are_compared() {
        // ~1.5 MB of consumers: two 1 MiB hash slices per dump.
        let mut admin = dbless(&[None]).with("/consumers", fat_consumers(4000));
        let mut k = KongAdmin::new(settings(None));
        let (mut hashing_ticks, mut now, mut out) = (0, 0, Vec::new());
        while now < 20_000 && out.is_empty() {
            out.extend(run(&mut k, &mut admin, now, now + 100));
            hashing_ticks += usize::from(matches!(k.state, State::Hashing(_)));
            now += 100;
        }
        assert!(matches!(&out[..], [PollResult::Fetched(_)]), "{out:?}");
        assert!(hashing_ticks >= 2, "{hashing_ticks}");
    }

    #[test]
    fn collections_a_kong_does_not_have_are_skipped() {
        // A Kong without /filter-chains (before 3.4) or /key-sets answers 404 there.
        let mut admin = dbless(&[Some("h1")]);
        let mut k = KongAdmin::new(settings(None));
        let out = run(&mut k, &mut admin, 0, 60_000);
        assert!(matches!(&out[..], [PollResult::Fetched(_)]), "{out:?}");
        assert!(admin
            .seen
            .iter()
            .any(|r| r.path.starts_with("/filter-chains")));
    }
}
