//! Kong's flat declarative form, built from Admin API collection pages — what Kong Enterprise
//! exports (`declarative.export_config()`, docs/kong.md): `_format_version: "3.0"`,
//! `_transform: false` (credentials are already hashed: an import must not hash them again), one
//! array per entity type in an order where every foreign key points backwards, foreign keys as
//! the plain id string, and disabled services left out with their routes and every row pointing at
//! either (docs/kong.md). Null fields are dropped (Kong's own export keeps them; both import the same).
//!
//! The document is written as the pages arrive (at most 1,000 entities a page), each page a slice
//! of its entities at a time ([`Page`]), so no callback does work proportional to a page or to
//! the whole configuration.

use crate::vec_map::SortedVecSet;

use crate::json::Value;

use crate::json::members::{first_byte, json_string, object_members, skip_value, skip_ws};
use crate::json::scan::{Progress, Scanner, ValueKind};

/// One entity collection: its name in the flat form and its Admin API path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Collection {
    pub name: &'static str,
    /// `/services`; for targets, the path under each upstream (`/upstreams/{id}/targets`).
    pub path: &'static str,
    /// Listed once per upstream (`/upstreams/{id}/targets`): Kong 3.x has no global list.
    pub per_upstream: bool,
}

const fn c(name: &'static str, path: &'static str) -> Collection {
    Collection {
        name,
        path,
        per_upstream: false,
    }
}

/// Every core entity and every bundled plugin's credential entity Kong OSS 3.4–3.9 exports, in
/// dependency order (key sets before keys, certificates before SNIs and services, services
/// before routes, upstreams before targets, consumers before their credentials, everything a
/// plugin or a filter chain can point at before them). A collection a Kong does not have (404:
/// `filter_chains` before 3.4) is skipped; collections a newer Kong adds are not read.
pub const COLLECTIONS: &[Collection] = &[
    c("key_sets", "/key-sets"),
    c("keys", "/keys"),
    c("vaults", "/vaults"),
    c("certificates", "/certificates"),
    c("ca_certificates", "/ca_certificates"),
    c("snis", "/snis"),
    c("services", "/services"),
    c("routes", "/routes"),
    c("upstreams", "/upstreams"),
    Collection {
        name: "targets",
        path: "/targets",
        per_upstream: true,
    },
    c("consumers", "/consumers"),
    c("plugins", "/plugins"),
    c("filter_chains", "/filter-chains"),
    c("acls", "/acls"),
    c("basicauth_credentials", "/basic-auths"),
    c("hmacauth_credentials", "/hmac-auths"),
    c("jwt_secrets", "/jwts"),
    c("keyauth_credentials", "/key-auths"),
    c("oauth2_credentials", "/oauth2"),
    c("oauth2_tokens", "/oauth2_tokens"),
];

/// One Admin API page (`{"data": [...], "next": ...}`), validated and then its entities written
/// into the flat form a slice at a time ([`FlatBuilder::add_entities`]): a page of 1,000 entities
/// is hundreds of KB, too much to validate or rewrite in one host callback (BENCHMARKS.md,
/// issue 25).
#[derive(Debug)]
pub struct Page {
    collection: &'static str,
    body: Vec<u8>,
    /// The page's validation while it is under way (`None` once the page is valid); boxed, as
    /// a scanner is large and a dump holds its page.
    scan: Option<Box<Scanner>>,
    /// The next entity's first byte in `body` (inside the `data` array), once validated.
    pos: usize,
    done: bool,
    /// The path of the next page (Kong's `next`), if any, once validated.
    pub next: Option<String>,
}

impl Page {
    /// A page as the Admin API answered it; nothing is read yet (`FlatBuilder::add_entities`
    /// validates it first, a slice at a time).
    pub fn open(collection: &'static str, body: Vec<u8>) -> Page {
        Page {
            collection,
            body,
            scan: Some(Box::new(Scanner::new(None))),
            pos: 0,
            done: false,
            next: None,
        }
    }

    /// Validates at most `budget` more bytes; once the page is valid JSON, finds its `data`
    /// array and its `next`. `Ok(true)`: validated.
    fn validate(&mut self, budget: usize) -> Result<bool, String> {
        let Some(scan) = self.scan.as_mut() else {
            return Ok(true);
        };
        let summary = match scan.step(&self.body, budget) {
            Progress::More => return Ok(false),
            Progress::Invalid(e) => return Err(format!("the page is {e}").to_ascii_lowercase()),
            Progress::Done(summary) => summary,
        };
        self.scan = None;
        if summary.root != ValueKind::Object {
            return Err("the page is not a JSON object".into());
        }
        let raw = |key: &str| {
            let m = summary.member(key)?;
            Some((m.kind, m.value.start, self.body.get(m.value.clone())?))
        };
        let Some((ValueKind::Array, open, _)) = raw("data") else {
            return Err("the page has no \"data\" array".into());
        };
        self.next = match raw("next") {
            Some((ValueKind::String, _, text)) => json_string(text).ok().filter(|n| !n.is_empty()),
            _ => None,
        };
        self.pos = skip_ws(&self.body, open + 1);
        self.done = self.body.get(self.pos) == Some(&b']');
        Ok(true)
    }
}

/// Bytes of a page validated per call of [`FlatBuilder::add_entities`] for each byte of entities
/// it would write: validating costs a fraction of rewriting (BENCHMARKS.md, issue 25, speed5).
const VALIDATE_PER_WRITE: usize = 8;

/// The flat document being written.
#[derive(Debug)]
pub struct FlatBuilder {
    out: Vec<u8>,
    /// The collection whose array is open, and how many entities it has so far.
    open: Option<(&'static str, usize)>,
    entities: usize,
    disabled_services: SortedVecSet<String>,
    routes_of_disabled: SortedVecSet<String>,
    upstreams: Vec<String>,
}

impl Default for FlatBuilder {
    fn default() -> Self {
        FlatBuilder::new()
    }
}

impl FlatBuilder {
    pub fn new() -> FlatBuilder {
        FlatBuilder {
            out: br#"{"_format_version":"3.0","_transform":false"#.to_vec(),
            open: None,
            entities: 0,
            disabled_services: SortedVecSet::new(),
            routes_of_disabled: SortedVecSet::new(),
            upstreams: Vec::new(),
        }
    }

    /// Entities written so far.
    pub fn entity_count(&self) -> usize {
        self.entities
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entities == 0
    }

    /// The ids of the upstreams seen (targets are listed per upstream).
    pub fn upstream_ids(&self) -> &[String] {
        &self.upstreams
    }

    /// Adds one page of `collection` as the Admin API returned it, whole (tests, small pages);
    /// returns the path of the next page, if any. The filter goes a slice at a time
    /// ([`Page::open`], [`FlatBuilder::add_entities`]).
    pub fn add_page(
        &mut self,
        collection: &'static str,
        page: &[u8],
    ) -> Result<Option<String>, String> {
        let mut page = Page::open(collection, page.to_vec());
        while !self.add_entities(&mut page, usize::MAX)? {}
        Ok(page.next)
    }

    /// Writes the next entities of `page` into the document, about `budget` bytes of them (at
    /// least one entity); `Ok(true)` once the page is all written. Until the page is validated,
    /// a call validates `VALIDATE_PER_WRITE` times `budget` bytes of it first (a call that
    /// finishes the validation writes with what is left of its budget). The page is
    /// rewritten as text (no tree of its entities is built: smaller module, less memory, one
    /// pass).
    pub fn add_entities(&mut self, page: &mut Page, mut budget: usize) -> Result<bool, String> {
        if let Some(scan) = &page.scan {
            let before = scan.position();
            if !page.validate(budget.saturating_mul(VALIDATE_PER_WRITE))? {
                return Ok(false);
            }
            // What the validation left of this call's budget goes to the entities.
            let read = page.body.len().saturating_sub(before);
            budget = budget.saturating_sub(read / VALIDATE_PER_WRITE);
            if budget == 0 || page.done {
                return Ok(page.done);
            }
        }
        let collection = page.collection;
        let t = page.body.as_slice();
        let stop = page.pos.saturating_add(budget.max(1));
        while !page.done && page.pos < stop {
            let start = page.pos;
            let mut end = skip_value(t, start).ok_or("the page's \"data\" array is cut short")?;
            let next = skip_ws(t, end);
            while end > start && t.get(end - 1).is_some_and(|b| b.is_ascii_whitespace()) {
                end -= 1;
            }
            let entity = t.get(start..end).unwrap_or_default();
            let fields = object_members(entity)
                .ok_or_else(|| format!("{collection}: an entity that is not a JSON object"))?;
            if self.keep(collection, entity, &fields) {
                self.write(collection, entity, &fields);
            }
            match t.get(next) {
                Some(b',') => page.pos = skip_ws(t, next + 1),
                Some(b']') => page.done = true,
                _ => return Err("the page's \"data\" array is cut short".to_string()),
            }
        }
        Ok(page.done)
    }

    /// The finished document.
    pub fn finish(mut self) -> Vec<u8> {
        if self.open.is_some() {
            self.out.push(b']');
        }
        self.out.push(b'}');
        self.out
    }

    /// Kong's export rules (`export_from_db_impl` with `skip_disabled_entities`, docs/kong.md):
    /// a disabled service is left out, and so are its routes, disabled plugins, and every row
    /// of any collection with a foreign key to a left-out service or route (plugins, filter
    /// chains, `oauth2_tokens.service`, a custom plugin's entities): kept, such a row points at
    /// nothing and `POST /config` refuses the whole document.
    fn keep(&mut self, collection: &str, entity: &[u8], fields: &[(String, usize, usize)]) -> bool {
        let raw = |name: &str| {
            fields
                .iter()
                .find(|(k, _, _)| k == name)
                .and_then(|(_, s, e)| entity.get(*s..*e))
        };
        let id = raw("id").and_then(|v| json_string(v).ok());
        match collection {
            "services" if raw("enabled") == Some(b"false") => {
                self.disabled_services.extend(id);
                return false;
            }
            "routes"
                if raw("service")
                    .and_then(foreign_key)
                    .is_some_and(|s| self.disabled_services.contains(&s)) =>
            {
                self.routes_of_disabled.extend(id);
                return false;
            }
            "plugins" if raw("enabled") == Some(b"false") => return false,
            _ => {}
        }
        if (!self.disabled_services.is_empty() || !self.routes_of_disabled.is_empty())
            && fields.iter().any(|(_, s, e)| {
                entity.get(*s..*e).and_then(foreign_key).is_some_and(|to| {
                    self.disabled_services.contains(&to) || self.routes_of_disabled.contains(&to)
                })
            })
        {
            return false;
        }
        if collection == "upstreams" {
            self.upstreams.extend(id);
        }
        true
    }

    /// Writes the entity: foreign keys as the plain id (`{"id": "x"}` → `"x"`), null fields
    /// dropped, every other value copied as it came.
    fn write(
        &mut self,
        collection: &'static str,
        entity: &[u8],
        fields: &[(String, usize, usize)],
    ) {
        match &mut self.open {
            Some((open, n)) if *open == collection => {
                self.out.push(b',');
                *n += 1;
            }
            other => {
                if other.is_some() {
                    self.out.push(b']');
                }
                self.out.extend_from_slice(b",\"");
                self.out.extend_from_slice(collection.as_bytes());
                self.out.extend_from_slice(b"\":[");
                *other = Some((collection, 1));
            }
        }
        if collection == "filter_chains" {
            self.write_filter_chain(entity);
            return;
        }
        self.out.push(b'{');
        let mut first = true;
        for (key, start, end) in fields {
            let value = entity.get(*start..*end).unwrap_or_default();
            // The Admin API lists a certificate's SNI names on it; the SNIs are their own
            // collection, and `POST /config` refuses them declared twice.
            if value == b"null" || (collection == "certificates" && key == "snis") {
                continue;
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            write_json_string(&mut self.out, key);
            self.out.push(b':');
            match foreign_key_raw(value) {
                Some(id) => self.out.extend_from_slice(id),
                None => self.out.extend_from_slice(value),
            }
        }
        self.out.push(b'}');
        self.entities += 1;
    }
}

impl FlatBuilder {
    /// A filter chain, with any config-bridge filter in it reduced to its non-secret settings
    /// (`redact`): the backup is read by importers with read-only credentials, and an importer
    /// puts its own configuration there anyway (`engine::import`). The engine redacts the whole
    /// document again before the export (every source goes through it).
    fn write_filter_chain(&mut self, entity: &[u8]) {
        let Ok(Value::Object(mut chain)) = crate::json::parse(entity) else {
            // Not expected (the page was validated): keep the document well-formed anyway.
            self.out.extend_from_slice(entity);
            self.entities += 1;
            return;
        };
        chain.retain(|_, v| !v.is_null());
        for (_, v) in chain.iter_mut() {
            if let Value::Object(o) = v {
                if o.len() == 1 {
                    if let Some(id @ Value::String(_)) = o.get("id") {
                        *v = id.clone();
                    }
                }
            }
        }
        if let Some(Value::Array(filters)) = chain.get_mut("filters") {
            for filter in filters.iter_mut() {
                crate::redact::redact_filter(filter);
            }
        }
        self.out
            .extend_from_slice(&crate::json::to_vec(&Value::Object(chain)));
        self.entities += 1;
    }
}

/// The raw id string of a foreign key value `{"id": "<uuid>"}` (a one-member object).
fn foreign_key_raw(value: &[u8]) -> Option<&[u8]> {
    if first_byte(value) != Some(b'{') {
        return None;
    }
    let members = object_members(value)?;
    match members.as_slice() {
        [(key, start, end)] if key == "id" => {
            let id = value.get(*start..*end)?;
            (first_byte(id) == Some(b'"')).then_some(id)
        }
        _ => None,
    }
}

/// The id a foreign key value points at.
fn foreign_key(value: &[u8]) -> Option<String> {
    foreign_key_raw(value).and_then(|id| json_string(id).ok())
}

/// `s` as a JSON string (Kong's field names are plain ASCII; anything else is escaped).
fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn page(data: Value) -> Vec<u8> {
        json!({"data": data, "next": null}).to_string().into_bytes()
    }

    #[test]
    fn builds_kongs_flat_form_with_plain_foreign_keys_and_no_disabled_services() {
        let mut b = FlatBuilder::new();
        b.add_page(
            "services",
            &page(json!([
                {"id": "s1", "name": "on", "enabled": true, "client_certificate": null, "tags": null},
                {"id": "s2", "name": "off", "enabled": false}
            ])),
        )
        .unwrap();
        b.add_page(
            "routes",
            &page(json!([
                {"id": "r1", "service": {"id": "s1"}, "paths": ["/a"]},
                {"id": "r2", "service": {"id": "s2"}, "paths": ["/b"]}
            ])),
        )
        .unwrap();
        b.add_page("upstreams", &page(json!([{"id": "u1", "name": "up"}])))
            .unwrap();
        b.add_page(
            "plugins",
            &page(json!([
                {"id": "p1", "name": "cors", "service": {"id": "s1"}, "route": null},
                {"id": "p2", "name": "cors", "service": {"id": "s2"}},
                {"id": "p3", "name": "cors", "route": {"id": "r2"}},
                {"id": "p4", "name": "cors", "config": {"origins": ["x"], "nested": {"id": "kept"}}}
            ])),
        )
        .unwrap();
        assert_eq!(b.upstream_ids(), ["u1"]);
        assert_eq!(b.entity_count(), 5);
        let doc: Value = serde_json::from_slice(&b.finish()).unwrap();
        assert_eq!(
            doc,
            json!({
                "_format_version": "3.0",
                "_transform": false,
                "services": [{"id": "s1", "name": "on", "enabled": true}],
                "routes": [{"id": "r1", "service": "s1", "paths": ["/a"]}],
                "upstreams": [{"id": "u1", "name": "up"}],
                "plugins": [
                    {"id": "p1", "name": "cors", "service": "s1"},
                    // Only top-level fields are foreign keys; nested objects stay as they are.
                    {"id": "p4", "name": "cors", "config": {"origins": ["x"], "nested": {"id": "kept"}}}
                ]
            })
        );
    }

    /// Kong's export leaves out every row of any collection with a foreign key to a disabled
    /// service or to a route of one (`oauth2_tokens.service`, a custom entity's `route`), not only
    /// plugins and filter chains: kept, `POST /config` refuses the dangling reference.
    #[test]
    fn every_row_pointing_at_a_left_out_service_or_route_is_left_out() {
        let mut b = FlatBuilder::new();
        b.add_page(
            "services",
            &page(json!([{"id": "s1", "enabled": true}, {"id": "s2", "enabled": false}])),
        )
        .unwrap();
        b.add_page(
            "routes",
            &page(json!([
                {"id": "r1", "service": {"id": "s1"}},
                {"id": "r2", "service": {"id": "s2"}},
                {"id": "r3", "service": null}
            ])),
        )
        .unwrap();
        b.add_page("consumers", &page(json!([{"id": "c1"}])))
            .unwrap();
        b.add_page(
            "oauth2_credentials",
            &page(json!([{"id": "o1", "consumer": {"id": "c1"}}])),
        )
        .unwrap();
        b.add_page(
            "oauth2_tokens",
            &page(json!([
                {"id": "t1", "service": {"id": "s1"}, "credential": {"id": "o1"}},
                {"id": "t2", "service": {"id": "s2"}, "credential": {"id": "o1"}},
                {"id": "t3", "service": null, "credential": {"id": "o1"}}
            ])),
        )
        .unwrap();
        b.add_page(
            "degraphql_routes",
            &page(json!([
                {"id": "g1", "service": {"id": "s1"}, "uri": "/"},
                {"id": "g2", "service": {"id": "s2"}, "uri": "/"}
            ])),
        )
        .unwrap();
        b.add_page(
            "custom_entities",
            &page(
                json!([{"id": "x1", "route": {"id": "r2"}}, {"id": "x2", "route": {"id": "r1"}}]),
            ),
        )
        .unwrap();
        let doc: Value = serde_json::from_slice(&b.finish()).unwrap();
        let ids = |c: &str| -> Vec<String> {
            doc[c]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ids("routes"), ["r1", "r3"]);
        assert_eq!(ids("oauth2_tokens"), ["t1", "t3"]);
        assert_eq!(ids("degraphql_routes"), ["g1"]);
        assert_eq!(ids("custom_entities"), ["x2"]);
        assert_eq!(ids("oauth2_credentials"), ["o1"]);
    }

    #[test]
    fn pages_give_their_next_and_bad_pages_are_errors() {
        let b = FlatBuilder::new();
        assert!(b.is_empty());
        assert_eq!(
            b.finish(),
            br#"{"_format_version":"3.0","_transform":false}"#
        );
        let mut b = FlatBuilder::new();
        let next = b
            .add_page(
                "consumers",
                br#"{ "data" : [ {"id":"a", "username":"x\"y"} ] , "next":"/consumers?offset=x","offset":"x"}"#,
            )
            .unwrap();
        assert_eq!(next.as_deref(), Some("/consumers?offset=x"));
        assert_eq!(
            b.add_page("consumers", br#"{"data":[],"next":null}"#)
                .unwrap(),
            None
        );
        let doc: Value = serde_json::from_slice(&b.finish()).unwrap();
        assert_eq!(doc["consumers"], json!([{"id": "a", "username": "x\"y"}]));
        for bad in [
            &b"[]"[..],
            b"{\"next\":null}",
            b"{\"data\":[1",
            b"\xff",
            b"{\"data\":[1]}",
        ] {
            assert!(
                FlatBuilder::new().add_page("services", bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_page_written_in_any_slices_is_the_page_written_whole() {
        let entities: Vec<Value> = (0..40)
            .map(|i| json!({"id": format!("r{i}"), "service": {"id": "s1"}, "name": null, "paths": [format!("/p{i}")]}))
            .collect();
        let body = json!({"next": "/routes?offset=x", "data": entities})
            .to_string()
            .into_bytes();
        let mut whole = FlatBuilder::new();
        assert_eq!(
            whole.add_page("routes", &body).unwrap().as_deref(),
            Some("/routes?offset=x")
        );
        let whole = whole.finish();
        for budget in [1, 17, 100, 1_000] {
            let mut b = FlatBuilder::new();
            let mut page = Page::open("routes", body.clone());
            let mut steps = 0;
            while !b.add_entities(&mut page, budget).unwrap() {
                steps += 1;
            }
            assert!(steps > 0 || budget >= body.len());
            assert_eq!(b.entity_count(), 40);
            assert_eq!(b.finish(), whole, "budget {budget}");
        }
        // An empty page is done once validated: at once with the budget for it, else in
        // slices (4 calls validate its 27 bytes 8 at a time).
        let empty = br#"{"data": [ ], "next": null}"#.to_vec();
        let mut page = Page::open("routes", empty.clone());
        assert!(FlatBuilder::new().add_entities(&mut page, 4).unwrap());
        assert_eq!(page.next, None);
        let mut page = Page::open("routes", empty);
        let mut b = FlatBuilder::new();
        let calls = (1..=10).find(|_| b.add_entities(&mut page, 1).unwrap());
        assert_eq!(calls, Some(4));
        assert_eq!(b.entity_count(), 0);
    }

    #[test]
    fn entities_round_trip_exactly_with_odd_keys_and_values() {
        let entity = json!({"id": "k1", "key": "a\u{0}b\\c\"d", "tags": ["x", "y"], "ttl": 1.5, "weird key\n": {"id": 3}});
        let mut b = FlatBuilder::new();
        b.add_page("keyauth_credentials", &page(json!([entity.clone()])))
            .unwrap();
        let doc: Value = serde_json::from_slice(&b.finish()).unwrap();
        // `{"id": 3}` is no foreign key (ids are strings): kept as an object.
        assert_eq!(doc["keyauth_credentials"][0], entity);
    }

    #[test]
    fn certificates_lose_their_sni_list_disabled_plugins_and_exporter_secrets_are_dropped() {
        let mut b = FlatBuilder::new();
        b.add_page(
            "certificates",
            &page(json!([{"id": "c1", "cert": "PEM", "snis": ["a.example"]}])),
        )
        .unwrap();
        b.add_page(
            "plugins",
            &page(json!([{"id": "p1", "name": "cors", "enabled": false}, {"id": "p2", "name": "cors", "enabled": true}])),
        )
        .unwrap();
        b.add_page(
            "filter_chains",
            &page(json!([{"id": "f1", "service": {"id": "s1"}, "route": null, "filters": [
                {"name": "config_bridge", "config": {"cluster_fallback_config_export": "on", "aws_secret_access_key": "SECRET-1", "aws_region": "r"}},
                {"name": "config_bridge", "config": "{\"cluster_fallback_config_storage\":\"s3://b/p\",\"kong_admin_token\":\"SECRET-2\"}"},
                {"name": "other", "config": {"aws_secret_access_key": "not ours"}}
            ]}])),
        )
        .unwrap();
        let text = String::from_utf8(b.finish()).unwrap();
        assert!(
            !text.contains("SECRET-1") && !text.contains("SECRET-2"),
            "{text}"
        );
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["certificates"], json!([{"id": "c1", "cert": "PEM"}]));
        assert_eq!(
            doc["plugins"],
            json!([{"id": "p2", "name": "cors", "enabled": true}])
        );
        assert_eq!(doc["filter_chains"][0]["service"], json!("s1"));
        assert!(doc["filter_chains"][0].get("route").is_none());
        assert_eq!(
            doc["filter_chains"][0]["filters"][0]["config"],
            json!({"cluster_fallback_config_export": "on", "aws_region": "r"})
        );
        assert_eq!(
            doc["filter_chains"][0]["filters"][2]["config"],
            json!({"aws_secret_access_key": "not ours"})
        );
    }

    #[test]
    fn collections_are_in_dependency_order() {
        let at = |n: &str| COLLECTIONS.iter().position(|c| c.name == n).unwrap();
        for (before, after) in [
            ("key_sets", "keys"),
            ("certificates", "snis"),
            ("certificates", "services"),
            ("services", "routes"),
            ("upstreams", "targets"),
            ("consumers", "plugins"),
            ("routes", "plugins"),
            ("services", "filter_chains"),
            ("consumers", "keyauth_credentials"),
            ("consumers", "acls"),
        ] {
            assert!(at(before) < at(after), "{before} before {after}");
        }
    }
}
