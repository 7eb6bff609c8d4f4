//! Where the exported configuration comes from (`config_source`).

use std::rc::Rc;

use super::lookup::{Field, Lookup};
use super::{err, fail_of, Fail, PayloadLoc, SourceConfig};
use crate::document::{check_format_version, validate_declarative_json};
use crate::http_url::HttpUrl;
use crate::json::members::{first_byte, json_string};
use crate::secret::Secret;

/// The Kong Admin API's settings (`SourceConfig::KongAdmin` and the importer's), read by
/// [`parse_kong_admin`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KongAdminSettings {
    pub url: HttpUrl,
    pub upstream: String,
    /// `(header name, token)`: Kong Enterprise RBAC `Kong-Admin-Token`, or any header.
    pub auth: Option<(String, Secret)>,
    /// How often `/status` is asked (DB-less change probe).
    pub poll_interval_ms: u64,
    /// How often a database-backed node is dumped.
    pub dump_interval_ms: u64,
}

pub(crate) fn parse_source(
    l: &Lookup<'_>,
    export: bool,
) -> Result<(SourceConfig, PayloadLoc), Fail> {
    let kind = l
        .string("config_source", &[])?
        .map(|(s, _)| s)
        .unwrap_or_else(|| "filter".to_string());
    match kind.as_str() {
        "filter" => filter_source(l, export),
        "url" => url_source(l),
        "kong_admin" => {
            if l.config.is_some() {
                return err(
                    "config",
                    "must not be set when config_source is \"kong_admin\"",
                );
            }
            let settings = parse_kong_admin(l)?;
            Ok((SourceConfig::KongAdmin(settings), PayloadLoc::None))
        }
        _ => err(
            "config_source",
            "must be \"filter\", \"url\" or \"kong_admin\"",
        ),
    }
}

/// `config_source: "filter"`: the document is the filter's own `config` (an object, or a JSON
/// string holding one as Kong 3.4 stores it).
fn filter_source(l: &Lookup<'_>, export: bool) -> Result<(SourceConfig, PayloadLoc), Fail> {
    let empty = SourceConfig::Filter {
        document: Rc::default(),
    };
    let (start, end) = match l.config {
        Some((start, end)) if l.text.get(start..end) != Some(b"null") => (start, end),
        _ if export => {
            return err(
                "config",
                "is required when config_source is \"filter\" and export is on",
            )
        }
        _ => return Ok((empty, PayloadLoc::None)),
    };
    let not_object = || {
        fail_of("config", "expected a JSON object (a Kong declarative configuration) or a JSON string holding one")
    };
    let raw = l.text.get(start..end).unwrap_or_default();
    let loc = match first_byte(raw) {
        Some(b'{') => {
            // Already validated as JSON with the whole filter configuration.
            let checked = match &l.config_format_version {
                Some(scanned) => scanned.clone(),
                None => check_format_version(raw),
            };
            checked.map_err(|r| fail_of("config", r))?;
            PayloadLoc::Range(start, end)
        }
        // Kong 3.4 style: the document as a JSON string, unescaped once.
        Some(b'"') => {
            let doc = json_string(raw).map_err(|_| not_object())?;
            if first_byte(doc.as_bytes()) != Some(b'{') {
                return Err(not_object());
            }
            validate_declarative_json(doc.as_bytes()).map_err(|r| fail_of("config", r))?;
            PayloadLoc::Owned(doc.into_bytes())
        }
        _ => return Err(not_object()),
    };
    Ok((empty, loc))
}

/// `config_source: "url"`: the document is polled from `config_url`.
fn url_source(l: &Lookup<'_>) -> Result<(SourceConfig, PayloadLoc), Fail> {
    let (raw, field) = l
        .string("config_url", &[])?
        .ok_or_else(|| fail_of("config_url", "is required when config_source is \"url\""))?;
    let url = HttpUrl::parse(&raw).or_else(|r| err(field, r))?;
    let upstream = l
        .string("config_url_upstream", &[])?
        .map(|(u, _)| u)
        .unwrap_or_else(|| url.upstream());
    let poll_interval_ms = l.seconds_ms("config_poll_interval", &[], 10, 86_400)?;
    if poll_interval_ms < 100 {
        return err("config_poll_interval", "must be at least 0.1 seconds");
    }
    if l.config.is_some() {
        return err("config", "must not be set when config_source is \"url\"");
    }
    Ok((
        SourceConfig::Url {
            url,
            upstream,
            poll_interval_ms,
        },
        PayloadLoc::None,
    ))
}

/// The Kong Admin API (source and importer): `kong_admin_url` (default the node's own
/// `http://127.0.0.1:8001`), its upstream, an optional token header, poll intervals.
pub(crate) fn parse_kong_admin(l: &Lookup<'_>) -> Result<KongAdminSettings, Fail> {
    let (raw, field) = l
        .string("kong_admin_url", &["CONFIG_BRIDGE_KONG_ADMIN_URL"])?
        .unwrap_or_else(|| {
            (
                DEFAULT_ADMIN_URL.to_string(),
                Field::named("kong_admin_url"),
            )
        });
    let url = HttpUrl::parse(&raw).or_else(|r| err(field, r))?;
    let upstream = l
        .string("kong_admin_upstream", &[])?
        .map(|(u, _)| u)
        .unwrap_or_else(|| url.upstream());
    let header = l
        .string("kong_admin_token_header", &[])?
        .map(|(h, _)| h)
        .unwrap_or_else(|| "Kong-Admin-Token".to_string());
    if header.is_empty()
        || !header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return err(
            "kong_admin_token_header",
            "must be an HTTP header name (letters, digits, '-', '_')",
        );
    }
    let auth = l
        .secret("kong_admin_token", &["KONG_ADMIN_TOKEN"])?
        .map(|token| (header, token));
    let poll_interval_ms = l.seconds_ms("config_poll_interval", &[], 10, 86_400)?;
    if poll_interval_ms < 100 {
        return err("config_poll_interval", "must be at least 0.1 seconds");
    }
    let dump_interval_ms = l.seconds_ms("kong_admin_dump_interval", &[], 60, 86_400)?;
    if dump_interval_ms < 1000 {
        return err("kong_admin_dump_interval", "must be at least 1 second");
    }
    Ok(KongAdminSettings {
        url,
        upstream,
        auth,
        poll_interval_ms,
        dump_interval_ms,
    })
}

const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:8001";
