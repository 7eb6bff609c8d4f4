//! The filter configuration: parsing, validation and environment fallbacks (plugin/SETTINGS.md).
//!
//! Pure: `Config::parse(bytes, env)` sees the environment only through the `env` lookup, so the
//! shell passes WASI's environment and tests pass a map. Every error names ONE field and the reason
//! in one line, and never quotes a value (values may be secrets: JSON errors carry only a category
//! and a byte offset, `crate::json::scan`).

//!
//! Modules by responsibility: `lookup` (a setting from the filter configuration, else its
//! environment variable), `crate::json::members` (the filter configuration's JSON split into members without
//! decoding the payload), `source` (where the exported config comes from), `s3` (S3 credentials
//! and PutObject parameters), `storage` (the storage URL and key layout). Document checks live in
//! `crate::document`.

pub mod aws;
mod election;
pub mod gcs;
mod history;
mod import;
mod lookup;
mod payload_cut;
pub mod s3;
mod seal;
mod source;
pub mod storage;

use std::fmt;
use std::rc::Rc;

use crate::json::{Map, Value};

use crate::http_url::HttpUrl;
use crate::json::members::{
    check_json, first_byte, json_string, json_syntax_reason, object_members,
};
use crate::json::scan::{Summary, ValueKind};
pub use election::ElectionSettings;
pub use gcs::GcsSettings;
pub use history::HistorySettings;
pub use import::ImportSettings;
use lookup::{parse_bool, Lookup};
use payload_cut::PayloadLoc;
pub use payload_cut::{PayloadCut, StringUnescape, Unescaped};
use s3::{default_s3_upstream, parse_s3};
pub use s3::{s3_params_to_headers, HeaderList, S3Settings, RESERVED_METADATA};
pub use seal::SealSettings;
use source::parse_source;
pub use source::KongAdminSettings;
use storage::{validate_gateway_version, Backend, StorageUrl};
pub use storage::{StorageBackend, StorageSettings};

pub(crate) use crate::secret::Secret;

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

/// How errors travel inside the parse: boxed, so that each of the ~130 `?` of the settings moves
/// a pointer instead of copying a whole `ConfigError` (5.9 KB of the packaged module,
/// BENCHMARKS.md "Issue 25, lean7"). The public functions hand out the `ConfigError` itself.
type Fail = Box<ConfigError>;

/// An `Err` of `fail_of`. The error is built out of line: one copy per kind of arguments
/// (`&str`, `String`, `Field`) instead of one at each of the ~90 call sites, which was 5 KB of
/// the module (BENCHMARKS.md, "Issue 25, lean7").
#[inline(always)]
fn err<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, Fail> {
    Err(fail_of(field, reason))
}

/// A settings error from a field and a reason of any text type.
#[inline(never)]
fn fail_of(field: impl Into<String>, reason: impl Into<String>) -> Fail {
    fail(field.into(), reason.into())
}

/// A settings error (not yet strict: `parse_text` decides that).
#[inline(never)]
fn fail(field: String, reason: String) -> Fail {
    Box::new(ConfigError {
        strict: false,
        field,
        reason,
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
    /// A Kong Admin API (`/status` probe, entity collections in Kong's flat form).
    KongAdmin(KongAdminSettings),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub export: bool,
    pub import: bool,
    /// Where exports live and how to reach the store.
    pub storage: StorageSettings,
    pub export_delay_ms: u64,
    pub source: SourceConfig,
    /// With `cluster_fallback_config_import` on: how and when to import.
    pub import_settings: Option<ImportSettings>,
    pub gateway_version: String,
    /// `None`: the shell derives a node-wide id (see `node_lock::node_id`).
    pub node_id: Option<String>,
    pub tick_period_ms: u64,
    /// The host's tick period (set once per root context; the engine runs every
    /// `tick_period_ms`, and at every host tick while it has stepwise work).
    pub host_tick_ms: u64,
    pub call_timeout_ms: u64,
    pub lease_ttl_ms: u64,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// An invalid configuration makes `on_configure` return false (the host refuses the filter).
    pub strict_config: bool,
    /// The `shm_kv` zone for shared data (`None`: the default zone `*`). ngx_wasm_module resolves a
    /// key `<zone>/<rest>` in the zone named `<zone>` (docs/host-behaviours.md).
    pub shared_data_namespace: Option<String>,
    /// Which of several exporting nodes uploads (docs/election.md).
    pub election: ElectionSettings,
    /// Signed and encrypted exports (docs/sealed-exports.md).
    pub seal: SealSettings,
    /// Every export also kept as a history object, retention, the import's pin (docs/history.md).
    pub history: HistorySettings,
}

/// The `config` payload's `_format_version` from a scan's nested members (`None`: the payload
/// is not an object, and `parse_source` judges it).
fn scanned_format_version(summary: &Summary, text: &[u8]) -> Option<Result<(), String>> {
    if summary.member("config")?.kind != ValueKind::Object {
        return None;
    }
    let version = summary.nested_member("_format_version");
    Some(match version {
        None => Err("is not a Kong declarative configuration (no _format_version)".to_string()),
        Some(m) => match text.get(m.value.clone()).map(json_string) {
            Some(Ok(v)) if !v.is_empty() => Ok(()),
            _ => Err("_format_version must be a non-empty string such as \"3.0\"".to_string()),
        },
    })
}

impl Config {
    /// The S3 settings when the store is S3 (tests and diagnostics; the core goes through
    /// `store::for_settings`).
    pub fn s3(&self) -> Option<&S3Settings> {
        match &self.storage.backend {
            StorageBackend::S3(s3) => Some(s3),
            StorageBackend::Gcs(_) => None,
        }
    }

    /// A shared-data key in the configured namespace.
    pub fn shared_key(&self, key: &str) -> String {
        match &self.shared_data_namespace {
            Some(ns) => format!("{ns}/{key}"),
            None => key.to_string(),
        }
    }
}

/// Every accepted top-level key; anything else is a configuration error (a typo must not be
/// silently ignored). plugin/SETTINGS.md has a row for each and names no other
/// (`xtask/tests/doc_drift.rs` fails otherwise).
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
    "kong_admin_url",
    "kong_admin_upstream",
    "kong_admin_token",
    "kong_admin_token_header",
    "kong_admin_dump_interval",
    "import_probe_url",
    "import_probe_upstream",
    "import_grace_period",
    "import_check_interval",
    "import_max_bytes",
    "import_refuse_plugins",
    "gateway_version",
    "node_id",
    "election",
    "cluster_fallback_election_interval",
    "cluster_fallback_history",
    "cluster_fallback_history_keep",
    "cluster_fallback_history_max_age",
    "cluster_fallback_import_version",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_region",
    "aws_container_credentials_uri",
    "aws_container_credentials_relative_uri",
    "aws_container_authorization_token",
    "aws_container_credentials_upstream",
    "aws_web_identity_token",
    "aws_role_arn",
    "aws_role_session_name",
    "aws_sts_endpoint",
    "aws_sts_upstream",
    "aws_imds_endpoint",
    "aws_imds_upstream",
    "aws_imds_disabled",
    "storage_endpoint",
    "storage_upstream",
    "s3_force_path_style",
    "s3_conditional_writes",
    "gcp_service_account",
    "gcs_endpoint",
    "gcs_token_uri",
    "gcs_token_upstream",
    "gcs_metadata_url",
    "gcs_metadata_upstream",
    "tick_period_ms",
    "host_tick_ms",
    "call_timeout_ms",
    "lease_ttl_ms",
    "retry_base_ms",
    "retry_max_ms",
    "strict_config",
    "shared_data_namespace",
    "export_signing_key",
    "import_verification_keys",
    "export_encryption_key",
    "import_decryption_keys",
];

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
                ..*e
            }
        })
    }

    fn parse_buffer(bytes: Vec<u8>, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Fail> {
        let not_object = || {
            fail_of(
                "configuration",
                "expected a JSON object or a JSON string holding one",
            )
        };
        let text = match first_byte(&bytes) {
            None => return err("configuration", "is empty (expected a JSON object)"),
            // Kong 3.4 passes the filter configuration as a JSON string: unescape it once.
            Some(b'"') => {
                let s = json_string(&bytes)
                    .map_err(|e| fail_of("configuration", json_syntax_reason(&e)))?;
                drop(bytes);
                if first_byte(s.as_bytes()) != Some(b'{') {
                    return Err(not_object());
                }
                s.into_bytes()
            }
            // Anything else: `parse_text` tells a syntax error from valid JSON that is no object.
            Some(_) => bytes,
        };
        let (cfg, loc) = Config::parse_text(&text, env, None)?;
        Config::with_payload(cfg, loc, text)
    }

    /// `parse_owned` for a filter configuration whose JSON object a resumable scan
    /// (`json::scan::Scanner`, with `config` as its nested member) has already validated and split
    /// in slices: nothing here walks the whole text again. `bytes` must be the scanned text. The
    /// configuration comes without its payload: the caller steps the `PayloadCut` to the end,
    /// then `PayloadCut::finish` hands over the configuration with it.
    pub fn parse_scanned(
        bytes: Vec<u8>,
        summary: &Summary,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Config, PayloadCut), ConfigError> {
        let (cfg, loc) = Config::parse_text(&bytes, env, Some(summary)).map_err(|e| *e)?;
        Ok((cfg, PayloadCut::new(loc, bytes).map_err(|e| *e)?))
    }

    /// Cuts the inline `config` payload out of the configuration text, in place, at once.
    fn with_payload(cfg: Config, loc: PayloadLoc, text: Vec<u8>) -> Result<Config, Fail> {
        Ok(PayloadCut::new(loc, text)?.finish_now(cfg))
    }

    fn parse_text(
        text: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
        scanned: Option<&Summary>,
    ) -> Result<(Config, PayloadLoc), Fail> {
        let (members, config_format_version) = top_level_members(text, scanned)?;
        let SettingsValues {
            obj,
            config,
            first_error,
        } = settings_values(text, members);
        let l = Lookup {
            obj: &obj,
            config,
            text,
            env,
            config_format_version,
        };
        // Read first and leniently: it decides what happens to every other error.
        let strict = l
            .bool("strict_config", &["CONFIG_BRIDGE_STRICT_CONFIG"], false)
            .unwrap_or(false);
        if let Some((field, reason)) = first_error {
            return Err(Box::new(ConfigError {
                field,
                reason,
                strict,
            }));
        }
        Config::parse_settings(&l).map_err(|e| Box::new(ConfigError { strict, ..*e }))
    }

    fn parse_settings(l: &Lookup<'_>) -> Result<(Config, PayloadLoc), Fail> {
        let (export, import) = parse_modes(l)?;
        let location = parse_location(l)?;
        let export_delay_ms = l.seconds_ms(
            "cluster_fallback_config_export_delay",
            &["KONG_CLUSTER_FALLBACK_CONFIG_EXPORT_DELAY"],
            60,
            86_400,
        )?;
        let gateway_version = parse_gateway_version(l)?;
        let node_id = parse_node_id(l)?;
        let timing = parse_timing(l)?;
        let strict_config = l.bool("strict_config", &["CONFIG_BRIDGE_STRICT_CONFIG"], false)?;
        let shared_data_namespace = parse_namespace(l)?;
        let (source, loc) = parse_source(l, export)?;
        let import_settings = if import {
            Some(import::parse_import(l)?)
        } else {
            None
        };
        let election = election::parse_election(l)?;
        let seal = seal::parse_seal(l)?;
        let history = history::parse_history(l)?;
        let storage = parse_storage(l, location, export, import)?;
        let cfg = Config {
            export,
            import,
            storage,
            export_delay_ms,
            source,
            import_settings,
            gateway_version,
            node_id,
            tick_period_ms: timing.tick_period_ms,
            host_tick_ms: timing.host_tick_ms,
            call_timeout_ms: timing.call_timeout_ms,
            lease_ttl_ms: timing.lease_ttl_ms,
            retry_base_ms: timing.retry_base_ms,
            retry_max_ms: timing.retry_max_ms,
            strict_config,
            shared_data_namespace,
            election,
            seal,
            history,
        };
        Ok((cfg, loc))
    }

    /// The object key the export writes.
    pub fn config_key(&self) -> String {
        self.storage.location.config_key(&self.gateway_version)
    }

    /// `<prefix>/<version>/history/`: where every export is also kept (docs/history.md).
    pub fn history_prefix(&self) -> String {
        crate::history::history_prefix(&self.storage.location.prefix, &self.gateway_version)
    }

    /// The object the import downloads: the pinned history object
    /// (`cluster_fallback_import_version`), else `config.json`.
    pub fn import_key(&self) -> String {
        match &self.history.import_version {
            Some(id) => format!("{}{id}.json", self.history_prefix()),
            None => self.config_key(),
        }
    }
}

/// A setting's name and what is wrong with it.
type FieldError = (String, String);

/// The configuration's members, sorted out: each known setting's value, the payload's range.
struct SettingsValues {
    obj: Map,
    config: Option<(usize, usize)>,
    first_error: Option<FieldError>,
}

/// An object's members: (unescaped key, start and end of the raw value).
type MemberRanges = Vec<(String, usize, usize)>;

/// Settings as (key, raw value's byte range), and the payload's `_format_version` when a sliced
/// scan already read it; validated as JSON without a tree. The `config` payload is located, never
/// decoded.
fn top_level_members(
    text: &[u8],
    scanned: Option<&Summary>,
) -> Result<(MemberRanges, Option<Result<(), String>>), Fail> {
    let not_object = || {
        fail_of(
            "configuration",
            "expected a JSON object or a JSON string holding one",
        )
    };
    // Validated as JSON without a tree, then split into members (byte ranges): the `config`
    // payload is located, never decoded; the other settings are small and become `Value`s.
    Ok(match scanned {
        Some(summary) => {
            if summary.root != ValueKind::Object {
                return Err(not_object());
            }
            let members = summary
                .members
                .iter()
                .map(|m| (m.key.clone(), m.value.start, m.value.end))
                .collect::<Vec<_>>();
            (members, scanned_format_version(summary, text))
        }
        None => {
            check_json(text).map_err(|e| fail_of("configuration", json_syntax_reason(&e)))?;
            (object_members(text).ok_or_else(not_object)?, None)
        }
    })
}

/// Each known setting's value decoded (they are small), the `config` payload's range, and the
/// first bad member (reported once `strict_config` has been read).
fn settings_values(text: &[u8], members: MemberRanges) -> SettingsValues {
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
        match crate::json::parse(raw) {
            Ok(value) => {
                obj.insert(k, value);
            }
            Err(e) => {
                first_error.get_or_insert((k, json_syntax_reason(&e)));
            }
        }
    }
    SettingsValues {
        obj,
        config,
        first_error,
    }
}

/// `cluster_fallback_config_export` and `_import`: at least one must be on.
fn parse_modes(l: &Lookup<'_>) -> Result<(bool, bool), Fail> {
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
    Ok((export, import))
}

/// `cluster_fallback_config_storage`: required, `s3://` or `gcs://`/`gs://`.
fn parse_location(l: &Lookup<'_>) -> Result<StorageUrl, Fail> {
    let (storage_raw, storage_field) = l
        .string(
            "cluster_fallback_config_storage",
            &["KONG_CLUSTER_FALLBACK_CONFIG_STORAGE"],
        )?
        .ok_or_else(|| {
            fail_of(
                "cluster_fallback_config_storage",
                "is required when export or import is on",
            )
        })?;
    StorageUrl::parse(&storage_raw).or_else(|r| err(storage_field, r))
}

/// `gateway_version`: required, part of the storage key.
fn parse_gateway_version(l: &Lookup<'_>) -> Result<String, Fail> {
    let (gateway_version, gv_field) = l
        .string("gateway_version", &["CONFIG_BRIDGE_GATEWAY_VERSION"])?
        .ok_or_else(|| {
            fail_of(
                "gateway_version",
                "is required (it is part of the storage key <prefix>/<version>/config.json)",
            )
        })?;
    validate_gateway_version(&gateway_version).or_else(|r| err(gv_field, r))?;
    Ok(gateway_version)
}

/// `node_id` (or `HOSTNAME`): visible ASCII, no `/`.
fn parse_node_id(l: &Lookup<'_>) -> Result<Option<String>, Fail> {
    let Some((id, field)) = l.string("node_id", &["CONFIG_BRIDGE_NODE_ID", "HOSTNAME"])? else {
        return Ok(None);
    };
    if id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return err(field, "must be at most 128 visible ASCII characters");
    }
    // It names the node's election registration (`<time>-<id>` on S3, `<id>` on GCS): a `/`
    // would put it in a sub-folder the other nodes skip (docs/election.md).
    if id.contains('/') {
        return err(
            field,
            "must not contain '/' (it names the election registration)",
        );
    }
    Ok(Some(id))
}

/// The timers and retry bounds, with the rules that tie them together.
struct Timing {
    tick_period_ms: u64,
    host_tick_ms: u64,
    call_timeout_ms: u64,
    lease_ttl_ms: u64,
    retry_base_ms: u64,
    retry_max_ms: u64,
}

fn parse_timing(l: &Lookup<'_>) -> Result<Timing, Fail> {
    let tick_period_ms = l.uint("tick_period_ms", &[], 1000, 10, 600_000)?;
    let host_tick_ms = l.uint("host_tick_ms", &[], tick_period_ms.min(50), 10, 600_000)?;
    if host_tick_ms > tick_period_ms {
        return err("host_tick_ms", "must not be larger than tick_period_ms");
    }
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
    Ok(Timing {
        tick_period_ms,
        host_tick_ms,
        call_timeout_ms,
        lease_ttl_ms,
        retry_base_ms,
        retry_max_ms,
    })
}

/// `shared_data_namespace`: `*` (the default zone) or an shm_kv zone's name.
fn parse_namespace(l: &Lookup<'_>) -> Result<Option<String>, Fail> {
    match l.string("shared_data_namespace", &[])? {
        None => Ok(None),
        Some((ns, _)) if ns == "*" => Ok(None),
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
            Ok(Some(ns))
        }
    }
}

/// The backend's own settings and the upstream its calls go to.
fn parse_storage(
    l: &Lookup<'_>,
    location: StorageUrl,
    export: bool,
    import: bool,
) -> Result<StorageSettings, Fail> {
    let (backend, default_upstream) = match location.backend {
        Backend::S3 => {
            let s3 = parse_s3(l, export || import)?;
            let u = default_s3_upstream(&s3);
            (StorageBackend::S3(s3), u)
        }
        Backend::Gcs => {
            let g = gcs::parse_gcs(l, export)?;
            let u = g.default_upstream();
            (StorageBackend::Gcs(g), u)
        }
    };
    let upstream = match l.string("storage_upstream", &[])? {
        Some((u, _)) => u,
        None => default_upstream,
    };
    Ok(StorageSettings {
        location,
        upstream,
        backend,
    })
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
            let expected: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(doc).expect(doc);
            let members = object_members(t).expect(doc);
            assert_eq!(members.len(), expected.len(), "{doc}");
            for (k, start, end) in &members {
                let ev = expected
                    .get(k)
                    .unwrap_or_else(|| panic!("{doc}: unknown key {k}"));
                let raw = &t[*start..*end];
                let v: serde_json::Value = serde_json::from_slice(raw)
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
        assert_eq!(c.storage.upstream, "s3.eu-west-1.amazonaws.com:443");
        assert_eq!(c.s3().unwrap().region, "eu-west-1");
        assert_eq!(
            c.s3().unwrap().keys().unwrap().secret_access_key.expose(),
            SECRET
        );
        assert!(c.s3().unwrap().conditional_writes);
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
        assert_eq!(c.storage.location.bucket, "b-1");
        assert_eq!(c.export_delay_ms, 5000);
        assert_eq!(c.s3().unwrap().region, "us-east-2");
        assert_eq!(
            c.s3()
                .unwrap()
                .keys()
                .unwrap()
                .session_token
                .as_ref()
                .map(|s| s.expose()),
            Some("tok")
        );
        assert_eq!(c.storage.upstream, "minio:9000");
        assert_eq!(c.node_id.as_deref(), Some("node-a"));
        assert_eq!(
            c.s3().unwrap().extra_headers.0,
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
        assert_eq!(c.s3().unwrap().region, "eu-west-1");
        assert_eq!(c.storage.location.bucket, "my-bucket");
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
                // The Kong Admin API is the source: the filter's own `config` is a mistake.
                with("config_source", serde_json::json!("kong_admin")),
                "config",
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
            (with("node_id", serde_json::json!("dc1/node-a")), "node_id"),
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
        let h: HashMap<_, _> = c.s3().unwrap().extra_headers.0.iter().cloned().collect();
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
        assert_eq!(c.storage.upstream, "s3.local:8443");
        let c = parse_with(&with("storage_upstream", "s3_cluster".into()), &[]).unwrap();
        assert_eq!(c.storage.upstream, "s3_cluster");
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
                include_str!("../../examples/s3-own-config.json"),
            ),
            (
                "minio-url-source",
                include_str!("../../examples/minio-url-source.json"),
            ),
            (
                "envoy-cluster-upstream",
                include_str!("../../examples/envoy-cluster-upstream.json"),
            ),
        ] {
            if let Err(e) = Config::parse(text.as_bytes(), &env) {
                panic!("{name}: {e}");
            }
        }
    }

    #[test]
    fn settings_md_documents_every_setting() {
        let doc = include_str!("../../SETTINGS.md");
        for name in SETTINGS {
            assert!(
                doc.contains(&format!("`{name}`")),
                "{name} missing from SETTINGS.md"
            );
        }
        for (param, _) in s3::S3_PARAMS {
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

    /// A scan done in slices (`json::scan`) gives the same configuration, or the same error field,
    /// as the one-pass parse, for every shipped example and every invalid case.
    #[test]
    fn parsing_a_sliced_scan_agrees_with_the_one_pass_parse() {
        use crate::json::scan::{Progress, Scanner};
        let scan = |text: &[u8]| {
            let mut scanner = Scanner::new(Some("config"));
            loop {
                match scanner.step(text, 7) {
                    Progress::More => continue,
                    Progress::Done(summary) => return Some(summary),
                    Progress::Invalid(_) => return None,
                }
            }
        };
        let mut cases: Vec<serde_json::Value> = vec![
            base(),
            with_all(&[("config", serde_json::json!({"services": []}))]),
            with_all(&[("config", serde_json::json!({"_format_version": ""}))]),
            with_all(&[("config", serde_json::json!({"_format_version": 3}))]),
            with_all(&[("config", serde_json::json!("{\"_format_version\":\"3.0\"}"))]),
            with_all(&[("strict_config", true.into()), ("aws_region", 1.into())]),
            with_all(&[("cluster_fallback_config_exprot", "on".into())]),
        ];
        cases.extend(
            [
                include_str!("../../examples/s3-own-config.json"),
                include_str!("../../examples/minio-url-source.json"),
                include_str!("../../examples/envoy-cluster-upstream.json"),
            ]
            .iter()
            .map(|t| serde_json::from_str::<serde_json::Value>(t).unwrap()),
        );
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            ("AWS_REGION", "us-east-1"),
        ]);
        for case in cases {
            let text = case.to_string().into_bytes();
            let summary = scan(&text).expect("valid JSON");
            let sliced =
                Config::parse_scanned(text.clone(), &summary, &env).map(|(cfg, mut cut)| {
                    while !cut.step(7) {}
                    cut.finish(cfg)
                });
            let whole = Config::parse_owned(text, &env);
            match (sliced, whole) {
                (Ok(a), Ok(b)) => assert_eq!(a, Some(b), "{case}"),
                (Err(a), Err(b)) => assert_eq!((a.field, a.strict), (b.field, b.strict), "{case}"),
                (a, b) => panic!("{case}: sliced {a:?} vs whole {b:?}"),
            }
        }
    }
}
