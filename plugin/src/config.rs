//! The filter configuration: parsing, validation and environment fallbacks (SPEC §2).
//!
//! Pure: `Config::parse(bytes, env)` sees the environment only through the `env` lookup, so the
//! shell passes WASI's environment and tests pass a map. Every error names ONE field and the reason
//! in one line, and never quotes a value (values may be secrets, and serde_json's own messages echo
//! them, so they are never forwarded).

use std::fmt;
use std::rc::Rc;

use serde::de::{Error as _, IgnoredAny};
use serde_json::{Map, Value};

use crate::http_url::{percent_encode, HttpUrl};
use crate::storage::{validate_gateway_version, Backend, StorageUrl};

/// A value that must never be logged; `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting (or environment variable) at fault, e.g. `cluster_fallback_config_storage`.
    pub field: String,
    pub reason: String,
    /// `strict_config` was on (or could not be read and `CONFIG_BRIDGE_STRICT_CONFIG` is on): the
    /// shell makes `on_configure` return false so the host refuses the filter. Otherwise the
    /// filter stays inert (docs/host-behaviours.md: a false `on_configure` kills an nginx worker).
    pub strict: bool,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Field and reason may quote user input (an unknown key, a URL scheme): control characters
        // are escaped so the error stays one log line.
        write!(
            f,
            "invalid configuration: {}: {}",
            one_line(&self.field),
            one_line(&self.reason)
        )
    }
}

impl std::error::Error for ConfigError {}

fn one_line(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

fn err<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        strict: false,
        field: field.into(),
        reason: reason.into(),
    })
}

/// Where the exported configuration comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceConfig {
    /// The `config` payload of the filter configuration: its JSON text exactly as given (a JSON
    /// string holding the document is unescaped once). Shared with the engine, never copied.
    Filter { document: Rc<Vec<u8>> },
    /// An HTTP URL polled on ticks.
    Url {
        url: HttpUrl,
        upstream: String,
        poll_interval_ms: u64,
    },
    // A Kong Admin API source (`GET /status` configuration_hash, then `GET /config`) is the next
    // issue: it becomes a third variant here and in `source::Source`.
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Settings {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    pub region: String,
    /// `AWS_CONFIG_STORAGE_ENDPOINT`: an S3-compatible endpoint (always path-style).
    pub endpoint: Option<HttpUrl>,
    pub force_path_style: bool,
    /// Send `If-Match` / `If-None-Match` (stores without conditional writes: turn off).
    pub conditional_writes: bool,
    /// `cluster_fallback_export_s3_config` mapped to (header name, value), in a stable order.
    pub extra_headers: HeaderList,
}

/// Headers whose values may be secret (`SSECustomerKey`): `Debug` shows only the names.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderList(pub Vec<(String, String)>);

impl fmt::Debug for HeaderList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub export: bool,
    pub import: bool,
    pub storage: StorageUrl,
    pub export_delay_ms: u64,
    pub source: SourceConfig,
    pub gateway_version: String,
    /// `None`: the shell derives a node-wide id (see `node_lock::node_id`).
    pub node_id: Option<String>,
    pub s3: S3Settings,
    /// `dispatch_http_call` upstream for storage (`host:port` on ngx, a cluster name on Envoy).
    pub storage_upstream: String,
    pub tick_period_ms: u64,
    pub call_timeout_ms: u64,
    pub lease_ttl_ms: u64,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// An invalid configuration makes `on_configure` return false (the host refuses the filter).
    pub strict_config: bool,
    /// The `shm_kv` zone for shared data (`None`: the default zone `*`). ngx_wasm_module resolves a
    /// key `<zone>/<rest>` in the zone named `<zone>` (docs/host-behaviours.md).
    pub shared_data_namespace: Option<String>,
}

impl Config {
    /// A shared-data key in the configured namespace.
    pub fn shared_key(&self, key: &str) -> String {
        match &self.shared_data_namespace {
            Some(ns) => format!("{ns}/{key}"),
            None => key.to_string(),
        }
    }
}

/// Every accepted top-level key; anything else is a configuration error (a typo must not be
/// silently ignored). Keep in sync with SETTINGS.md.
pub const SETTINGS: &[&str] = &[
    "cluster_fallback_config_export",
    "cluster_fallback_config_import",
    "cluster_fallback_config_storage",
    "cluster_fallback_config_export_delay",
    "cluster_fallback_export_s3_config",
    "config_source",
    "config",
    "config_url",
    "config_url_upstream",
    "config_poll_interval",
    "gateway_version",
    "node_id",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_region",
    "storage_endpoint",
    "storage_upstream",
    "s3_force_path_style",
    "s3_conditional_writes",
    "tick_period_ms",
    "call_timeout_ms",
    "lease_ttl_ms",
    "retry_base_ms",
    "retry_max_ms",
    "strict_config",
    "shared_data_namespace",
];

/// Metadata keys config-bridge writes itself (see `s3`); an operator may not override them.
pub const RESERVED_METADATA: &[&str] = &["uploader", "config-applied-at", "config-sha256"];

/// One setting's raw value and where it came from (for error messages).
struct Raw {
    value: Value,
    field: String,
}

struct Lookup<'a> {
    /// Every setting except `config`, as (small) JSON values.
    obj: &'a Map<String, Value>,
    /// The `config` setting as a byte range of `text` (its raw JSON text); `null` included.
    config: Option<(usize, usize)>,
    /// The filter configuration text.
    text: &'a [u8],
    env: &'a dyn Fn(&str) -> Option<String>,
}

/// Where the `config` payload is: a byte range of the filter configuration text (an object given
/// inline), or its own buffer (a JSON string holding the document, unescaped).
enum PayloadLoc {
    None,
    Range(usize, usize),
    Owned(Vec<u8>),
}

impl Lookup<'_> {
    /// The filter-config value first, then the first non-empty environment variable.
    fn get(&self, key: &str, env_names: &[&str]) -> Option<Raw> {
        if let Some(v) = self.obj.get(key) {
            if !v.is_null() {
                return Some(Raw {
                    value: v.clone(),
                    field: key.to_string(),
                });
            }
        }
        env_names.iter().find_map(|name| {
            (self.env)(name)
                .filter(|s| !s.trim().is_empty())
                .map(|s| Raw {
                    value: Value::String(s),
                    field: format!("{key} (from {name})"),
                })
        })
    }

    fn bool(&self, key: &str, env: &[&str], default: bool) -> Result<bool, ConfigError> {
        match self.get(key, env) {
            None => Ok(default),
            Some(r) => parse_bool(&r.value)
                .ok_or(())
                .or_else(|_| err(r.field, "expected a boolean or \"on\"/\"off\"")),
        }
    }

    fn string(&self, key: &str, env: &[&str]) -> Result<Option<(String, String)>, ConfigError> {
        match self.get(key, env) {
            None => Ok(None),
            Some(Raw {
                value: Value::String(s),
                field,
            }) => {
                let s = s.trim().to_string();
                if s.is_empty() {
                    Ok(None)
                } else {
                    Ok(Some((s, field)))
                }
            }
            Some(r) => err(r.field, "expected a string"),
        }
    }

    /// A non-negative integer, also accepted as a numeric string (environment variables).
    fn uint(
        &self,
        key: &str,
        env: &[&str],
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let Some(r) = self.get(key, env) else {
            return Ok(default);
        };
        let n = match &r.value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            Some(_) => err(r.field, format!("must be between {min} and {max}")),
            None => err(r.field, "expected a non-negative integer"),
        }
    }

    /// Seconds (integer or decimal) converted to milliseconds.
    fn seconds_ms(
        &self,
        key: &str,
        env: &[&str],
        default_s: u64,
        max_s: u64,
    ) -> Result<u64, ConfigError> {
        let Some(r) = self.get(key, env) else {
            return Ok(default_s * 1000);
        };
        let n = match &r.value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if n.is_finite() && n >= 0.0 && n <= max_s as f64 => {
                Ok((n * 1000.0).round() as u64)
            }
            Some(_) => err(
                r.field,
                format!("must be a number of seconds between 0 and {max_s}"),
            ),
            None => err(r.field, "expected a number of seconds"),
        }
    }

    fn secret(&self, key: &str, env: &[&str]) -> Result<Option<Secret>, ConfigError> {
        Ok(self.string(key, env)?.map(|(s, _)| Secret(s)))
    }
}

fn parse_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" | "1" => Some(true),
            "off" | "false" | "no" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A JSON object, or a JSON string holding one (Kong 3.4 passes the filter config as a string).
fn object_or_json_string(v: Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        },
        _ => None,
    }
}

/// serde_json's syntax errors carry only a position; its type errors may quote values, so only the
/// category and position are reported.
fn json_syntax_reason(e: &serde_json::Error) -> String {
    format!(
        "not valid JSON ({:?} error at line {} column {})",
        e.classify(),
        e.line(),
        e.column()
    )
    .to_ascii_lowercase()
}

impl Config {
    pub fn parse(
        bytes: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::parse_owned(bytes.to_vec(), env)
    }

    /// `parse` taking the filter configuration buffer: an inline `config` payload is cut out of it
    /// in place (no second payload-sized buffer), and the rest of the buffer is released.
    pub fn parse_owned(
        bytes: Vec<u8>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::parse_buffer(bytes, env).map_err(|e| {
            // Errors found before the settings could be read (bad JSON): the environment decides.
            let env_strict = env("CONFIG_BRIDGE_STRICT_CONFIG")
                .is_some_and(|v| parse_bool(&Value::String(v)) == Some(true));
            ConfigError {
                strict: e.strict || env_strict,
                ..e
            }
        })
    }

    fn parse_buffer(
        bytes: Vec<u8>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let not_object = || ConfigError {
            strict: false,
            field: "configuration".into(),
            reason: "expected a JSON object or a JSON string holding one".into(),
        };
        let text = match first_byte(&bytes) {
            None => return err("configuration", "is empty (expected a JSON object)"),
            // Kong 3.4 passes the filter configuration as a JSON string: unescape it once.
            Some(b'"') => {
                let s = json_string(&bytes).map_err(|e| ConfigError {
                    strict: false,
                    field: "configuration".into(),
                    reason: json_syntax_reason(&e),
                })?;
                drop(bytes);
                if first_byte(s.as_bytes()) != Some(b'{') {
                    return Err(not_object());
                }
                s.into_bytes()
            }
            // Anything else: `parse_text` tells a syntax error from valid JSON that is no object.
            Some(_) => bytes,
        };
        let (mut cfg, loc) = Config::parse_text(&text, env)?;
        if let SourceConfig::Filter { document } = &mut cfg.source {
            let payload = match loc {
                PayloadLoc::None => Vec::new(),
                PayloadLoc::Owned(v) => v,
                PayloadLoc::Range(start, end) if start <= end && end <= text.len() => {
                    let mut v = text;
                    v.truncate(end);
                    v.drain(..start);
                    v
                }
                PayloadLoc::Range(..) => return err("config", "could not be located"),
            };
            *document = Rc::new(payload);
        }
        Ok(cfg)
    }

    fn parse_text(
        text: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Config, PayloadLoc), ConfigError> {
        // Validated as JSON without a tree, then split into members (byte ranges): the `config`
        // payload is located, never decoded; the other settings are small and become `Value`s.
        check_json(text).map_err(|e| ConfigError {
            strict: false,
            field: "configuration".into(),
            reason: json_syntax_reason(&e),
        })?;
        let members = object_members(text).ok_or_else(|| ConfigError {
            strict: false,
            field: "configuration".into(),
            reason: "expected a JSON object or a JSON string holding one".into(),
        })?;
        let mut obj = Map::new();
        let mut config = None;
        // The first bad member is reported once `strict_config` (wherever it is) has been read.
        let mut first_error = None;
        for (k, start, end) in members {
            if !SETTINGS.contains(&k.as_str()) {
                first_error.get_or_insert((k, "unknown setting".to_string()));
                continue;
            }
            if k == "config" {
                config = Some((start, end));
                continue;
            }
            let raw = text.get(start..end).unwrap_or_default();
            match serde_json::from_slice::<Value>(raw) {
                Ok(value) => {
                    obj.insert(k, value);
                }
                Err(e) => {
                    first_error.get_or_insert((k, json_syntax_reason(&e)));
                }
            }
        }
        let l = Lookup {
            obj: &obj,
            config,
            text,
            env,
        };
        // Read first and leniently: it decides what happens to every other error.
        let strict = l
            .bool("strict_config", &["CONFIG_BRIDGE_STRICT_CONFIG"], false)
            .unwrap_or(false);
        if let Some((field, reason)) = first_error {
            return Err(ConfigError {
                field,
                reason,
                strict,
            });
        }
        Config::parse_settings(&l).map_err(|e| ConfigError { strict, ..e })
    }

    fn parse_settings(l: &Lookup<'_>) -> Result<(Config, PayloadLoc), ConfigError> {
        let export = l.bool(
            "cluster_fallback_config_export",
            &["KONG_CLUSTER_FALLBACK_CONFIG_EXPORT"],
            false,
        )?;
        let import = l.bool(
            "cluster_fallback_config_import",
            &["KONG_CLUSTER_FALLBACK_CONFIG_IMPORT"],
            false,
        )?;
        if !export && !import {
            return err(
                "cluster_fallback_config_export",
                "export and import are both off; turn on cluster_fallback_config_export or cluster_fallback_config_import",
            );
        }

        let (storage_raw, storage_field) = l
            .string(
                "cluster_fallback_config_storage",
                &["KONG_CLUSTER_FALLBACK_CONFIG_STORAGE"],
            )?
            .ok_or_else(|| ConfigError {
                strict: false,
                field: "cluster_fallback_config_storage".into(),
                reason: "is required when export or import is on".into(),
            })?;
        let storage = StorageUrl::parse(&storage_raw).map_err(|r| ConfigError {
            strict: false,
            field: storage_field,
            reason: r,
        })?;
        if storage.backend == Backend::Gcs {
            return err(
                "cluster_fallback_config_storage",
                "GCS storage is not implemented in this build yet (use s3://)",
            );
        }

        let export_delay_ms = l.seconds_ms(
            "cluster_fallback_config_export_delay",
            &["KONG_CLUSTER_FALLBACK_CONFIG_EXPORT_DELAY"],
            60,
            86_400,
        )?;

        let (gateway_version, gv_field) = l
            .string("gateway_version", &["CONFIG_BRIDGE_GATEWAY_VERSION"])?
            .ok_or_else(|| ConfigError {
                strict: false,
                field: "gateway_version".into(),
                reason:
                    "is required (it is part of the storage key <prefix>/<version>/config.json)"
                        .into(),
            })?;
        validate_gateway_version(&gateway_version).map_err(|r| ConfigError {
            strict: false,
            field: gv_field,
            reason: r,
        })?;

        let node_id = match l.string("node_id", &["CONFIG_BRIDGE_NODE_ID", "HOSTNAME"])? {
            None => None,
            Some((id, field)) => {
                if id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
                    return err(field, "must be at most 128 visible ASCII characters");
                }
                Some(id)
            }
        };

        let tick_period_ms = l.uint("tick_period_ms", &[], 1000, 10, 600_000)?;
        let call_timeout_ms = l.uint("call_timeout_ms", &[], 10_000, 100, 600_000)?;
        let lease_ttl_ms = l.uint("lease_ttl_ms", &[], 15_000, 1, 3_600_000)?;
        if lease_ttl_ms < 2 * tick_period_ms {
            return err(
                "lease_ttl_ms",
                "must be at least twice tick_period_ms (the holder renews it every tick)",
            );
        }
        let retry_base_ms = l.uint("retry_base_ms", &[], 1000, 1, 3_600_000)?;
        let retry_max_ms = l.uint("retry_max_ms", &[], 60_000, 1, 86_400_000)?;
        if retry_max_ms < retry_base_ms {
            return err("retry_max_ms", "must not be smaller than retry_base_ms");
        }

        let strict_config = l.bool("strict_config", &["CONFIG_BRIDGE_STRICT_CONFIG"], false)?;
        let shared_data_namespace = match l.string("shared_data_namespace", &[])? {
            None => None,
            Some((ns, _)) if ns == "*" => None,
            Some((ns, field)) => {
                if ns.len() > 64
                    || !ns
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
                {
                    return err(
                        field,
                        "must be \"*\" or the name of an shm_kv zone (letters, digits, '_', '-', '.'; at most 64)",
                    );
                }
                Some(ns)
            }
        };
        let (source, loc) = parse_source(l, export)?;
        let s3 = parse_s3(l, export || import)?;
        let storage_upstream = match l.string("storage_upstream", &[])? {
            Some((u, _)) => u,
            None => default_s3_upstream(&s3),
        };

        let cfg = Config {
            export,
            import,
            storage,
            export_delay_ms,
            source,
            gateway_version,
            node_id,
            s3,
            storage_upstream,
            tick_period_ms,
            call_timeout_ms,
            lease_ttl_ms,
            retry_base_ms,
            retry_max_ms,
            strict_config,
            shared_data_namespace,
        };
        Ok((cfg, loc))
    }

    /// The object key the export writes.
    pub fn config_key(&self) -> String {
        self.storage.config_key(&self.gateway_version)
    }
}

fn default_s3_upstream(s3: &S3Settings) -> String {
    match &s3.endpoint {
        Some(e) => e.upstream(),
        None => format!("s3.{}.amazonaws.com:443", s3.region),
    }
}

fn parse_source(l: &Lookup<'_>, export: bool) -> Result<(SourceConfig, PayloadLoc), ConfigError> {
    let kind = l
        .string("config_source", &[])?
        .map(|(s, _)| s)
        .unwrap_or_else(|| "filter".to_string());
    match kind.as_str() {
        "filter" => {
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
                ConfigError {
                strict: false,
                field: "config".into(),
                reason: "expected a JSON object (a Kong declarative configuration) or a JSON string holding one".into(),
            }
            };
            let raw = l.text.get(start..end).unwrap_or_default();
            let loc = match first_byte(raw) {
                Some(b'{') => {
                    // Already validated as JSON with the whole filter configuration.
                    check_format_version(raw).map_err(|r| ConfigError {
                        strict: false,
                        field: "config".into(),
                        reason: r,
                    })?;
                    PayloadLoc::Range(start, end)
                }
                // Kong 3.4 style: the document as a JSON string, unescaped once.
                Some(b'"') => {
                    let doc = json_string(raw).map_err(|_| not_object())?;
                    if first_byte(doc.as_bytes()) != Some(b'{') {
                        return Err(not_object());
                    }
                    validate_declarative_json(doc.as_bytes()).map_err(|r| ConfigError {
                        strict: false,
                        field: "config".into(),
                        reason: r,
                    })?;
                    PayloadLoc::Owned(doc.into_bytes())
                }
                _ => return Err(not_object()),
            };
            Ok((empty, loc))
        }
        "url" => {
            let (raw, field) = l.string("config_url", &[])?.ok_or_else(|| ConfigError {
                strict: false,
                field: "config_url".into(),
                reason: "is required when config_source is \"url\"".into(),
            })?;
            let url = HttpUrl::parse(&raw).map_err(|r| ConfigError {
                field,
                reason: r,
                strict: false,
            })?;
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
        "kong_admin" => err(
            "config_source",
            "\"kong_admin\" is not implemented in this build yet (use \"filter\" or \"url\")",
        ),
        _ => err("config_source", "must be \"filter\" or \"url\""),
    }
}

/// A JSON string value, unescaped.
fn json_string(text: &[u8]) -> Result<String, serde_json::Error> {
    match serde_json::from_slice::<Value>(text)? {
        Value::String(s) => Ok(s),
        _ => Err(serde_json::Error::custom("not a JSON string")),
    }
}

/// Checks that `text` is one valid JSON value, without building anything (`IgnoredAny`).
fn check_json(text: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<IgnoredAny>(text).map(|_| ())
}

/// The first byte that is not JSON whitespace.
fn first_byte(text: &[u8]) -> Option<u8> {
    text.iter().copied().find(|b| !b.is_ascii_whitespace())
}

fn skip_ws(t: &[u8], mut i: usize) -> usize {
    while t.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// `t[i]` opens a string: the index after its closing quote.
fn skip_string(t: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match *t.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// The end of the value starting at `t[i]` (before a following `,`/`}` for scalars, so trailing
/// whitespace may be included).
fn skip_value(t: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *t.get(i)? {
            b'"' => {
                i = skip_string(t, i)?;
                if depth == 0 {
                    return Some(i);
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth <= 1 {
                    return Some(if depth == 0 { i } else { i + 1 });
                }
                depth -= 1;
            }
            b',' if depth == 0 => return Some(i),
            _ => {}
        }
        i += 1;
    }
}

/// The members of a JSON object as (unescaped key, byte range of the raw value), in order; only
/// the keys are decoded. `t` must already be valid JSON (`check_json`); `None`: not an object.
fn object_members(t: &[u8]) -> Option<Vec<(String, usize, usize)>> {
    let mut i = skip_ws(t, 0);
    if t.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(t, i + 1);
    let mut out = Vec::new();
    if t.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        if t.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(t, i)?;
        let key = json_string(t.get(i..key_end)?).ok()?;
        i = skip_ws(t, key_end);
        if t.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(t, i + 1);
        let mut end = skip_value(t, start)?;
        i = skip_ws(t, end);
        while end > start && t.get(end - 1).is_some_and(|b| b.is_ascii_whitespace()) {
            end -= 1;
        }
        out.push((key, start, end));
        match *t.get(i)? {
            b',' => i = skip_ws(t, i + 1),
            b'}' => return Some(out),
            _ => return None,
        }
    }
}

/// The minimum a Kong declarative configuration has (the importer checks the same): a JSON object
/// with a non-empty string `_format_version`. Checked on the JSON text without building a tree
/// (`IgnoredAny`); only `_format_version` is decoded. The reason reads after "the document" /
/// "the answer".
pub fn validate_declarative_json(text: &[u8]) -> Result<(), String> {
    if first_byte(text) != Some(b'{') {
        return Err("is not a JSON object".to_string());
    }
    check_json(text).map_err(|e| format!("is {}", json_syntax_reason(&e)))?;
    check_format_version(text)
}

/// `_format_version` of a valid JSON object text (the last occurrence wins, as in a map).
fn check_format_version(text: &[u8]) -> Result<(), String> {
    let members = object_members(text).ok_or_else(|| "is not a JSON object".to_string())?;
    match members
        .iter()
        .rev()
        .find(|(k, _, _)| k == "_format_version")
    {
        Some((_, start, end)) => {
            match text.get(*start..*end).map(serde_json::from_slice::<Value>) {
                Some(Ok(Value::String(s))) if !s.is_empty() => Ok(()),
                _ => Err("_format_version must be a non-empty string such as \"3.0\"".to_string()),
            }
        }
        None => Err("is not a Kong declarative configuration (no _format_version)".to_string()),
    }
}

fn parse_s3(l: &Lookup<'_>, required: bool) -> Result<S3Settings, ConfigError> {
    let access_key_id = l.secret("aws_access_key_id", &["AWS_ACCESS_KEY_ID"])?;
    let secret_access_key = l.secret("aws_secret_access_key", &["AWS_SECRET_ACCESS_KEY"])?;
    let session_token = l.secret("aws_session_token", &["AWS_SESSION_TOKEN"])?;
    let region = l.string("aws_region", &["AWS_REGION", "AWS_DEFAULT_REGION"])?;
    let endpoint = match l.string("storage_endpoint", &["AWS_CONFIG_STORAGE_ENDPOINT"])? {
        None => None,
        Some((raw, field)) => Some(HttpUrl::parse(&raw).map_err(|r| ConfigError {
            field,
            reason: r,
            strict: false,
        })?),
    };
    let region = match region {
        Some((r, field)) => {
            if !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return err(field, "must contain only letters, digits and '-'");
            }
            r
        }
        None if required => {
            return err(
                "aws_region",
                "S3 region is not configured (set aws_region or AWS_REGION)",
            )
        }
        None => String::new(),
    };
    let (access_key_id, secret_access_key) = match (access_key_id, secret_access_key) {
        (Some(a), Some(s)) => (a, s),
        (None, _) if required => {
            return err(
                "aws_access_key_id",
                "is not configured (set it or AWS_ACCESS_KEY_ID)",
            )
        }
        (_, None) if required => {
            return err(
                "aws_secret_access_key",
                "is not configured (set it or AWS_SECRET_ACCESS_KEY)",
            )
        }
        (a, s) => (
            a.unwrap_or(Secret(String::new())),
            s.unwrap_or(Secret(String::new())),
        ),
    };
    if !access_key_id.0.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return err("aws_access_key_id", "must contain only letters and digits");
    }
    let force_path_style = l.bool("s3_force_path_style", &[], false)?;
    let conditional_writes = l.bool("s3_conditional_writes", &[], true)?;
    let extra_headers = match l.get(
        "cluster_fallback_export_s3_config",
        &["KONG_CLUSTER_FALLBACK_EXPORT_S3_CONFIG"],
    ) {
        None => HeaderList::default(),
        Some(raw) => {
            let field = raw.field.clone();
            let map = object_or_json_string(raw.value).ok_or_else(|| ConfigError {
                strict: false,
                field: field.clone(),
                reason: "expected a JSON object (or a JSON string holding one)".into(),
            })?;
            HeaderList(s3_params_to_headers(
                &map,
                "cluster_fallback_export_s3_config",
            )?)
        }
    };
    Ok(S3Settings {
        access_key_id,
        secret_access_key,
        session_token,
        region,
        endpoint,
        force_path_style,
        conditional_writes,
        extra_headers,
    })
}

/// PutObject parameters (as named in the AWS SDKs, which is what Kong's setting uses) → header.
const S3_PARAMS: &[(&str, &str)] = &[
    ("ACL", "x-amz-acl"),
    (
        "BucketKeyEnabled",
        "x-amz-server-side-encryption-bucket-key-enabled",
    ),
    ("CacheControl", "cache-control"),
    ("ContentDisposition", "content-disposition"),
    ("ContentEncoding", "content-encoding"),
    ("ContentLanguage", "content-language"),
    ("ExpectedBucketOwner", "x-amz-expected-bucket-owner"),
    ("Expires", "expires"),
    ("GrantFullControl", "x-amz-grant-full-control"),
    ("GrantRead", "x-amz-grant-read"),
    ("GrantReadACP", "x-amz-grant-read-acp"),
    ("GrantWriteACP", "x-amz-grant-write-acp"),
    ("ObjectLockLegalHoldStatus", "x-amz-object-lock-legal-hold"),
    ("ObjectLockMode", "x-amz-object-lock-mode"),
    (
        "ObjectLockRetainUntilDate",
        "x-amz-object-lock-retain-until-date",
    ),
    ("RequestPayer", "x-amz-request-payer"),
    (
        "SSECustomerAlgorithm",
        "x-amz-server-side-encryption-customer-algorithm",
    ),
    (
        "SSECustomerKey",
        "x-amz-server-side-encryption-customer-key",
    ),
    (
        "SSECustomerKeyMD5",
        "x-amz-server-side-encryption-customer-key-md5",
    ),
    (
        "SSEKMSEncryptionContext",
        "x-amz-server-side-encryption-context",
    ),
    ("SSEKMSKeyId", "x-amz-server-side-encryption-aws-kms-key-id"),
    ("ServerSideEncryption", "x-amz-server-side-encryption"),
    ("StorageClass", "x-amz-storage-class"),
    ("Tagging", "x-amz-tagging"),
    ("WebsiteRedirectLocation", "x-amz-website-redirect-location"),
];

/// Parameters config-bridge sets itself; allowing them would break signing or integrity checks.
const S3_OWN_PARAMS: &[&str] = &[
    "Body",
    "Bucket",
    "ChecksumAlgorithm",
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "ChecksumSHA1",
    "ChecksumSHA256",
    "ContentLength",
    "ContentMD5",
    "ContentType",
    "IfMatch",
    "IfNoneMatch",
    "Key",
];

/// Closed value sets, checked so that a typo fails at configure time rather than at every upload.
fn allowed_values(param: &str) -> Option<&'static [&'static str]> {
    Some(match param {
        "ACL" => &[
            "private",
            "public-read",
            "public-read-write",
            "authenticated-read",
            "aws-exec-read",
            "bucket-owner-read",
            "bucket-owner-full-control",
        ],
        "ServerSideEncryption" => &["AES256", "aws:kms", "aws:kms:dsse"],
        "StorageClass" => &[
            "STANDARD",
            "REDUCED_REDUNDANCY",
            "STANDARD_IA",
            "ONEZONE_IA",
            "INTELLIGENT_TIERING",
            "GLACIER",
            "DEEP_ARCHIVE",
            "OUTPOSTS",
            "GLACIER_IR",
            "SNOW",
            "EXPRESS_ONEZONE",
        ],
        "ObjectLockMode" => &["GOVERNANCE", "COMPLIANCE"],
        "ObjectLockLegalHoldStatus" => &["ON", "OFF"],
        "RequestPayer" => &["requester"],
        _ => return None,
    })
}

fn header_value_ok(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| (0x20..0x7f).contains(&b))
}

pub fn s3_params_to_headers(
    map: &Map<String, Value>,
    setting: &str,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut headers = Vec::new();
    for (param, value) in map {
        let field = format!("{setting}.{param}");
        if S3_OWN_PARAMS.contains(&param.as_str()) {
            return err(
                field,
                "is set by config-bridge itself and cannot be overridden",
            );
        }
        if param == "Metadata" {
            let Value::Object(meta) = value else {
                return err(field, "expected an object of string values");
            };
            for (k, v) in meta {
                let mfield = format!("{field}.{k}");
                let key = k.to_ascii_lowercase();
                if key.is_empty()
                    || !key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return err(
                        mfield,
                        "metadata keys may only contain letters, digits, '-' and '_'",
                    );
                }
                if RESERVED_METADATA.contains(&key.as_str()) {
                    return err(mfield, "is written by config-bridge itself");
                }
                let Value::String(v) = v else {
                    return err(mfield, "expected a string");
                };
                if !header_value_ok(v) {
                    return err(mfield, "must be non-empty printable US-ASCII");
                }
                headers.push((format!("x-amz-meta-{key}"), v.clone()));
            }
            continue;
        }
        let Some((_, header)) = S3_PARAMS.iter().find(|(p, _)| p == param) else {
            return err(field, "unknown S3 PutObject parameter");
        };
        let text = match (param.as_str(), value) {
            ("Tagging", Value::Object(tags)) => {
                let mut pairs = Vec::new();
                for (k, v) in tags {
                    let Value::String(v) = v else {
                        return err(field, "tag values must be strings");
                    };
                    pairs.push(format!(
                        "{}={}",
                        percent_encode(k, false),
                        percent_encode(v, false)
                    ));
                }
                pairs.join("&")
            }
            ("BucketKeyEnabled", Value::Bool(b)) => b.to_string(),
            ("BucketKeyEnabled", _) => return err(field, "expected a boolean"),
            (_, Value::String(s)) => s.clone(),
            _ => return err(field, "expected a string"),
        };
        if !header_value_ok(&text) {
            return err(field, "must be non-empty printable US-ASCII");
        }
        if let Some(allowed) = allowed_values(param) {
            if !allowed.contains(&text.as_str()) {
                return err(field, format!("must be one of {}", allowed.join(", ")));
            }
        }
        headers.push((header.to_string(), text));
    }
    headers.sort();
    Ok(headers)
}

#[cfg(test)]
mod tests {

    /// The hand-written member scanner against serde_json: every member's byte range must decode
    /// to the value serde_json gives for that key, in order, on awkward but valid JSON.
    #[test]
    fn object_members_agree_with_serde_json() {
        let docs = [
            r#"{}"#,
            r#"  { "a" : 1 , "b":[1,2,{"c":"}]"}] ,"d":{"e":{"f":[]}}}  "#,
            r#"{"s":"quote \" brace } bracket ] comma , backslash \\","n":-1.5e3,"t":true,"z":null}"#,
            r#"{"k\u00e9y":"v","x":[[],[{}],""],"y":{}}"#,
            "{\n\t\"config\" :\n {\"_format_version\": \"3.0\", \"services\": [ {\"name\": \"a,b}\"} ]}\n,\"gateway_version\":\"3.9\"}",
            r#"{"a":"\\","b":"\\\"","c":0}"#,
        ];
        for doc in docs {
            let t = doc.as_bytes();
            let expected: Map<String, Value> = serde_json::from_str(doc).expect(doc);
            let members = object_members(t).expect(doc);
            assert_eq!(members.len(), expected.len(), "{doc}");
            for (k, start, end) in &members {
                let ev = expected
                    .get(k)
                    .unwrap_or_else(|| panic!("{doc}: unknown key {k}"));
                let raw = &t[*start..*end];
                let v: Value = serde_json::from_slice(raw)
                    .unwrap_or_else(|e| panic!("{doc}: member {k} range {raw:?}: {e}"));
                assert_eq!(&v, ev, "{doc}");
                assert!(
                    !raw.first().unwrap().is_ascii_whitespace()
                        && !raw.last().unwrap().is_ascii_whitespace()
                );
            }
        }
        for not_object in [r#"[1,2]"#, r#""{}""#, "3", "null"] {
            assert!(
                object_members(not_object.as_bytes()).is_none(),
                "{not_object}"
            );
        }
    }

    /// The payload is cut out of the buffer exactly as sent (whitespace inside kept, outside not).
    #[test]
    fn parse_owned_keeps_the_inline_payload_byte_for_byte() {
        let payload = "{ \"_format_version\" : \"3.0\",\n  \"services\": [] }";
        let cfg_text = format!(
            "{{\"cluster_fallback_config_export\":\"on\",\"cluster_fallback_config_storage\":\"s3://bkt/p\",\"gateway_version\":\"3.9.1\",\"aws_region\":\"us-east-1\",\"aws_access_key_id\":\"AK\",\"aws_secret_access_key\":\"SK\",\"config\":   {payload}   }}"
        );
        let cfg = Config::parse_owned(cfg_text.into_bytes(), &|_| None).unwrap();
        match &cfg.source {
            SourceConfig::Filter { document } => {
                assert_eq!(document.as_slice(), payload.as_bytes())
            }
            other => panic!("{other:?}"),
        }
    }
    use super::*;
    use std::collections::HashMap;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzSECRETzz";

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "cluster_fallback_config_export": "on",
            "cluster_fallback_config_storage": "s3://my-bucket/kong/",
            "gateway_version": "3.9.1",
            "aws_access_key_id": "AKIDEXAMPLE",
            "aws_secret_access_key": SECRET,
            "aws_region": "eu-west-1",
            "config": {"_format_version": "3.0", "services": []}
        })
    }

    fn parse_with(v: &serde_json::Value, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::parse(v.to_string().as_bytes(), &env_of(env))
    }

    fn field_of(v: serde_json::Value) -> String {
        let e = parse_with(&v, &[]).expect_err("should fail");
        let line = e.to_string();
        assert!(!line.contains('\n'), "one line: {line}");
        assert!(!line.contains(SECRET), "secret leaked: {line}");
        e.field
    }

    fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
        let mut v = base();
        v[key] = value;
        v
    }

    #[test]
    fn parses_a_full_config_with_defaults() {
        let c = parse_with(&base(), &[]).unwrap();
        assert!(c.export && !c.import);
        assert_eq!(c.config_key(), "kong/3.9.1/config.json");
        assert_eq!(c.export_delay_ms, 60_000);
        assert_eq!(c.storage_upstream, "s3.eu-west-1.amazonaws.com:443");
        assert_eq!(c.s3.region, "eu-west-1");
        assert_eq!(c.s3.secret_access_key.expose(), SECRET);
        assert!(c.s3.conditional_writes);
        assert_eq!(c.tick_period_ms, 1000);
        match &c.source {
            SourceConfig::Filter { document } => {
                assert_eq!(
                    document.as_slice(),
                    br#"{"_format_version":"3.0","services":[]}"#
                )
            }
            other => panic!("unexpected source {other:?}"),
        }
        assert!(
            !format!("{c:?}").contains(SECRET),
            "Debug must redact secrets"
        );
        let c = parse_with(
            &with(
                "cluster_fallback_export_s3_config",
                serde_json::json!({"SSECustomerKey": SECRET}),
            ),
            &[],
        )
        .unwrap();
        assert!(
            !format!("{c:?}").contains(SECRET),
            "Debug must redact the SSE-C key"
        );
    }

    #[test]
    fn accepts_a_json_string_holding_the_object_and_booleans() {
        let inner = with("cluster_fallback_config_export", serde_json::json!(true)).to_string();
        let outer = serde_json::Value::String(inner);
        let c = Config::parse(outer.to_string().as_bytes(), &env_of(&[])).unwrap();
        assert!(c.export);
        let c = parse_with(
            &with("config", serde_json::json!("{\"_format_version\":\"3.0\"}")),
            &[],
        )
        .unwrap();
        assert!(matches!(c.source, SourceConfig::Filter { .. }));
    }

    #[test]
    fn environment_fallbacks_fill_missing_settings() {
        let v = serde_json::json!({
            "config": {"_format_version": "3.0"},
            "gateway_version": "3.4.2.0"
        });
        let c = parse_with(
            &v,
            &[
                ("KONG_CLUSTER_FALLBACK_CONFIG_EXPORT", "on"),
                ("KONG_CLUSTER_FALLBACK_CONFIG_STORAGE", "s3://b-1/p"),
                ("KONG_CLUSTER_FALLBACK_CONFIG_EXPORT_DELAY", "5"),
                (
                    "KONG_CLUSTER_FALLBACK_EXPORT_S3_CONFIG",
                    "{\"StorageClass\":\"STANDARD_IA\"}",
                ),
                ("AWS_ACCESS_KEY_ID", "AKID"),
                ("AWS_SECRET_ACCESS_KEY", SECRET),
                ("AWS_SESSION_TOKEN", "tok"),
                ("AWS_DEFAULT_REGION", "us-east-2"),
                ("AWS_CONFIG_STORAGE_ENDPOINT", "http://minio:9000/"),
                ("HOSTNAME", "node-a"),
            ],
        )
        .unwrap();
        assert!(c.export);
        assert_eq!(c.storage.bucket, "b-1");
        assert_eq!(c.export_delay_ms, 5000);
        assert_eq!(c.s3.region, "us-east-2");
        assert_eq!(c.s3.session_token.as_ref().map(|s| s.expose()), Some("tok"));
        assert_eq!(c.storage_upstream, "minio:9000");
        assert_eq!(c.node_id.as_deref(), Some("node-a"));
        assert_eq!(
            c.s3.extra_headers.0,
            vec![("x-amz-storage-class".to_string(), "STANDARD_IA".to_string())]
        );
    }

    #[test]
    fn the_filter_config_wins_over_the_environment() {
        let c = parse_with(
            &base(),
            &[
                ("AWS_REGION", "us-west-2"),
                ("KONG_CLUSTER_FALLBACK_CONFIG_STORAGE", "s3://other/x"),
            ],
        )
        .unwrap();
        assert_eq!(c.s3.region, "eu-west-1");
        assert_eq!(c.storage.bucket, "my-bucket");
    }

    #[test]
    fn every_invalid_input_names_its_field() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (
                with("cluster_fallback_config_export", serde_json::json!("maybe")),
                "cluster_fallback_config_export",
            ),
            (
                with("cluster_fallback_config_export", serde_json::json!("off")),
                "cluster_fallback_config_export",
            ),
            (
                with("cluster_fallback_config_import", serde_json::json!(3)),
                "cluster_fallback_config_import",
            ),
            (
                with(
                    "cluster_fallback_config_storage",
                    serde_json::json!("ftp://x/y"),
                ),
                "cluster_fallback_config_storage",
            ),
            (
                with("cluster_fallback_config_storage", serde_json::json!(12)),
                "cluster_fallback_config_storage",
            ),
            (
                with(
                    "cluster_fallback_config_storage",
                    serde_json::json!("gcs://bucket/p"),
                ),
                "cluster_fallback_config_storage",
            ),
            (
                with(
                    "cluster_fallback_config_export_delay",
                    serde_json::json!(-1),
                ),
                "cluster_fallback_config_export_delay",
            ),
            (
                with(
                    "cluster_fallback_config_export_delay",
                    serde_json::json!("soon"),
                ),
                "cluster_fallback_config_export_delay",
            ),
            (
                with(
                    "cluster_fallback_export_s3_config",
                    serde_json::json!({"Bogus": "x"}),
                ),
                "cluster_fallback_export_s3_config.Bogus",
            ),
            (
                with(
                    "cluster_fallback_export_s3_config",
                    serde_json::json!({"ContentType": "x"}),
                ),
                "cluster_fallback_export_s3_config.ContentType",
            ),
            (
                with(
                    "cluster_fallback_export_s3_config",
                    serde_json::json!({"StorageClass": "FAST"}),
                ),
                "cluster_fallback_export_s3_config.StorageClass",
            ),
            (
                with(
                    "cluster_fallback_export_s3_config",
                    serde_json::json!({"Metadata": {"uploader": "x"}}),
                ),
                "cluster_fallback_export_s3_config.Metadata.uploader",
            ),
            (
                with(
                    "cluster_fallback_export_s3_config",
                    serde_json::json!({"Metadata": {"a b": "x"}}),
                ),
                "cluster_fallback_export_s3_config.Metadata.a b",
            ),
            (
                with(
                    "cluster_fallback_export_s3_config",
                    serde_json::json!("[1]"),
                ),
                "cluster_fallback_export_s3_config",
            ),
            (
                with(
                    "cluster_fallback_export_s3_config",
                    serde_json::json!({"SSECustomerKey": 5.5}),
                ),
                "cluster_fallback_export_s3_config.SSECustomerKey",
            ),
            (
                with("config_source", serde_json::json!("kong_admin")),
                "config_source",
            ),
            (
                with("config_source", serde_json::json!("ftp")),
                "config_source",
            ),
            (
                with("config", serde_json::json!({"services": []})),
                "config",
            ),
            (with("config", serde_json::json!([1])), "config"),
            (with("config", serde_json::json!("{not json")), "config"),
            (
                with("gateway_version", serde_json::json!("3/9")),
                "gateway_version",
            ),
            (
                with("gateway_version", serde_json::json!(3.9)),
                "gateway_version",
            ),
            (with("node_id", serde_json::json!("has space")), "node_id"),
            (
                with("aws_region", serde_json::json!("eu west")),
                "aws_region",
            ),
            (
                with("aws_access_key_id", serde_json::json!("AK/ID")),
                "aws_access_key_id",
            ),
            (
                with("aws_secret_access_key", serde_json::json!(7)),
                "aws_secret_access_key",
            ),
            (
                with("storage_endpoint", serde_json::json!("minio:9000")),
                "storage_endpoint",
            ),
            (
                with("s3_force_path_style", serde_json::json!("perhaps")),
                "s3_force_path_style",
            ),
            (
                with("tick_period_ms", serde_json::json!(0)),
                "tick_period_ms",
            ),
            (
                with("call_timeout_ms", serde_json::json!("x")),
                "call_timeout_ms",
            ),
            (
                with("lease_ttl_ms", serde_json::json!(1500)),
                "lease_ttl_ms",
            ),
            (with("retry_max_ms", serde_json::json!(10)), "retry_max_ms"),
            (with("tpyo_setting", serde_json::json!(1)), "tpyo_setting"),
        ];
        for (value, field) in cases {
            assert_eq!(field_of(value.clone()), field, "for {value}");
        }
    }

    #[test]
    fn missing_required_settings_are_named() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("aws_region");
        let e = parse_with(&v, &[]).unwrap_err();
        assert_eq!(e.field, "aws_region");
        assert!(e.reason.contains("S3 region is not configured"));
        for key in [
            "cluster_fallback_config_storage",
            "gateway_version",
            "aws_access_key_id",
            "aws_secret_access_key",
            "config",
        ] {
            let mut v = base();
            v.as_object_mut().unwrap().remove(key);
            assert_eq!(parse_with(&v, &[]).unwrap_err().field, key);
        }
    }

    #[test]
    fn url_source_settings() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("config");
        v["config_source"] = "url".into();
        assert_eq!(parse_with(&v, &[]).unwrap_err().field, "config_url");
        v["config_url"] = "http://127.0.0.1:8001/config?format=json".into();
        v["config_poll_interval"] = 2.5.into();
        let c = parse_with(&v, &[]).unwrap();
        match c.source {
            SourceConfig::Url {
                url,
                upstream,
                poll_interval_ms,
            } => {
                assert_eq!(url.path_and_query, "/config?format=json");
                assert_eq!(upstream, "127.0.0.1:8001");
                assert_eq!(poll_interval_ms, 2500);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn bad_json_and_secret_values_never_leak() {
        let e = Config::parse(b"{\"aws_secret_access_key\": \"abc", &env_of(&[])).unwrap_err();
        assert_eq!(e.field, "configuration");
        assert!(!e.to_string().contains("abc"));
        let e = Config::parse(b"", &env_of(&[])).unwrap_err();
        assert_eq!(e.field, "configuration");
        let e = Config::parse(b"[1,2]", &env_of(&[])).unwrap_err();
        assert_eq!(e.field, "configuration");
        // A secret placed where a boolean is expected must not be echoed.
        let e = parse_with(
            &with("s3_conditional_writes", serde_json::json!(SECRET)),
            &[],
        )
        .unwrap_err();
        assert!(!e.to_string().contains(SECRET));
        let e = parse_with(
            &with(
                "cluster_fallback_export_s3_config",
                serde_json::json!({"SSECustomerKey": SECRET, "ACL": "nope"}),
            ),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.field, "cluster_fallback_export_s3_config.ACL");
        assert!(!e.to_string().contains(SECRET));
    }

    #[test]
    fn s3_parameters_map_to_headers() {
        let v = with(
            "cluster_fallback_export_s3_config",
            serde_json::json!({
                "ServerSideEncryption": "aws:kms",
                "SSEKMSKeyId": "key-1",
                "StorageClass": "STANDARD_IA",
                "Metadata": {"Environment": "production"},
                "ACL": "bucket-owner-full-control",
                "Tagging": {"team": "api gw"},
                "BucketKeyEnabled": true,
                "CacheControl": "no-cache"
            }),
        );
        let c = parse_with(&v, &[]).unwrap();
        let h: HashMap<_, _> = c.s3.extra_headers.0.iter().cloned().collect();
        assert_eq!(h["x-amz-server-side-encryption"], "aws:kms");
        assert_eq!(h["x-amz-server-side-encryption-aws-kms-key-id"], "key-1");
        assert_eq!(h["x-amz-storage-class"], "STANDARD_IA");
        assert_eq!(h["x-amz-meta-environment"], "production");
        assert_eq!(h["x-amz-acl"], "bucket-owner-full-control");
        assert_eq!(h["x-amz-tagging"], "team=api%20gw");
        assert_eq!(h["x-amz-server-side-encryption-bucket-key-enabled"], "true");
        assert_eq!(h["cache-control"], "no-cache");
        assert_eq!(h.len(), 8);
    }

    #[test]
    fn custom_endpoint_sets_the_default_upstream_and_explicit_upstream_wins() {
        let c = parse_with(
            &with("storage_endpoint", "https://s3.local:8443".into()),
            &[],
        )
        .unwrap();
        assert_eq!(c.storage_upstream, "s3.local:8443");
        let c = parse_with(&with("storage_upstream", "s3_cluster".into()), &[]).unwrap();
        assert_eq!(c.storage_upstream, "s3_cluster");
    }

    #[test]
    fn shipped_examples_are_valid_with_credentials_from_the_environment() {
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ]);
        for (name, text) in [
            (
                "s3-own-config",
                include_str!("../examples/s3-own-config.json"),
            ),
            (
                "minio-url-source",
                include_str!("../examples/minio-url-source.json"),
            ),
            (
                "envoy-cluster-upstream",
                include_str!("../examples/envoy-cluster-upstream.json"),
            ),
        ] {
            if let Err(e) = Config::parse(text.as_bytes(), &env) {
                panic!("{name}: {e}");
            }
        }
    }

    #[test]
    fn settings_md_documents_every_setting() {
        let doc = include_str!("../SETTINGS.md");
        for name in SETTINGS {
            assert!(
                doc.contains(&format!("`{name}`")),
                "{name} missing from SETTINGS.md"
            );
        }
        for (param, _) in S3_PARAMS {
            assert!(doc.contains(param), "{param} missing from SETTINGS.md");
        }
    }

    fn with_all(pairs: &[(&str, serde_json::Value)]) -> serde_json::Value {
        let mut v = base();
        for (k, val) in pairs {
            v[*k] = val.clone();
        }
        v
    }

    #[test]
    fn strict_config_decides_what_an_invalid_configuration_does() {
        // Default: inert (the shell returns true from on_configure).
        let e = parse_with(
            &with_all(&[("cluster_fallback_config_exprot", "on".into())]),
            &[],
        )
        .expect_err("unknown key");
        assert_eq!(e.field, "cluster_fallback_config_exprot");
        assert!(!e.strict);
        // Asked for: every later error carries it.
        for (bad, field) in [
            (
                "cluster_fallback_config_exprot",
                "cluster_fallback_config_exprot",
            ),
            ("aws_region", "aws_region"),
        ] {
            let v = with_all(&[("strict_config", true.into()), (bad, 17.into())]);
            let e = parse_with(&v, &[]).expect_err("invalid");
            assert_eq!(e.field, field);
            assert!(e.strict, "{bad}");
        }
        // "on" works too, and an unreadable value is itself the error (and not strict).
        let v = with_all(&[("strict_config", "on".into()), ("aws_region", 1.into())]);
        assert!(parse_with(&v, &[]).expect_err("invalid").strict);
        let v = with_all(&[("strict_config", "maybe".into())]);
        let e = parse_with(&v, &[]).expect_err("invalid");
        assert_eq!((e.field.as_str(), e.strict), ("strict_config", false));
        // Before any setting can be read (bad JSON), the environment decides.
        let env = env_of(&[("CONFIG_BRIDGE_STRICT_CONFIG", "on")]);
        assert!(
            Config::parse(b"{not json", &env)
                .expect_err("bad json")
                .strict
        );
        assert!(
            !Config::parse(b"{not json", &|_| None)
                .expect_err("bad json")
                .strict
        );
        // A valid configuration keeps the flag.
        let cfg = parse_with(&with_all(&[("strict_config", true.into())]), &[]).expect("valid");
        assert!(cfg.strict_config);
    }

    #[test]
    fn shared_data_namespace_prefixes_every_key() {
        let cfg = parse_with(&base(), &[]).expect("valid");
        assert_eq!(cfg.shared_data_namespace, None);
        assert_eq!(cfg.shared_key("config-bridge/v1/x"), "config-bridge/v1/x");
        let cfg =
            parse_with(&with_all(&[("shared_data_namespace", "*".into())]), &[]).expect("valid");
        assert_eq!(cfg.shared_data_namespace, None);
        let cfg =
            parse_with(&with_all(&[("shared_data_namespace", "kv".into())]), &[]).expect("valid");
        assert_eq!(
            cfg.shared_key("config-bridge/v1/x"),
            "kv/config-bridge/v1/x"
        );
        for bad in ["a/b", "has space", "", "x".repeat(65).as_str()] {
            let v = with_all(&[("shared_data_namespace", bad.into())]);
            if bad.is_empty() {
                // An empty string is "not set".
                assert!(parse_with(&v, &[]).is_ok());
                continue;
            }
            assert_eq!(field_of(v), "shared_data_namespace", "{bad:?}");
        }
    }
}
