//! The tool's settings are the filter's (plugin/SETTINGS.md): a filter configuration is built
//! from `--settings FILE` (any filter configuration, same keys) and the flags, then parsed by the
//! core (`settings::Config::parse`), which reads the same environment variables as the filter
//! (`KONG_CLUSTER_FALLBACK_*`, `AWS_*`, `CONFIG_BRIDGE_*`, `KONG_ADMIN_TOKEN`). Credentials come
//! only from the environment or the settings file: never from flags (argv is public on a host).

use std::path::Path;

use config_bridge::settings::Config;
use serde_json::{Map, Value};

use crate::args::Common;
use crate::outcome::{Exit, Outcome, Res};

/// Keys the command decides, not a copied filter configuration: what the tool does, and where
/// the document comes from.
const COMMAND_KEYS: &[&str] = &[
    "cluster_fallback_config_export",
    "cluster_fallback_config_import",
    "config",
    "config_source",
    "config_url",
    "config_url_upstream",
    "election",
];

pub struct Settings {
    map: Map<String, Value>,
}

impl Settings {
    /// `--settings` (if any) with the common flags over it.
    pub fn load(common: &Common) -> Res<Settings> {
        let mut map = match &common.settings {
            Some(path) => read_file(path)?,
            None => Map::new(),
        };
        for key in COMMAND_KEYS {
            map.remove(*key);
        }
        let mut s = Settings { map };
        let flags = [
            ("cluster_fallback_config_storage", &common.storage),
            ("gateway_version", &common.gateway_version),
            ("aws_region", &common.region),
            ("storage_endpoint", &common.endpoint),
        ];
        for (key, value) in flags {
            if let Some(v) = value {
                s.set(key, v.as_str());
            }
        }
        Ok(s)
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.map.insert(key.to_string(), value.into());
    }

    /// Sets `key` unless the settings file gave it.
    pub fn set_default(&mut self, key: &str, value: impl Into<Value>) {
        self.map
            .entry(key.to_string())
            .or_insert_with(|| value.into());
    }

    /// Whether the settings file or a flag gave `key`.
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// For commands that only read the storage (import, drill, status): the core needs export
    /// or import on; import needs no source.
    pub fn reading(mut self) -> Settings {
        self.set("cluster_fallback_config_import", true);
        self
    }

    /// The core's `Config`; `inline_config`: the `config` payload, given as JSON text (the
    /// filter's own-config source), so the core checks it exactly as the filter does.
    pub fn parse(&self, inline_config: Option<&[u8]>) -> Res<Config> {
        let env = |name: &str| std::env::var(name).ok();
        // What only a process can read: token files and the shared credentials/config files.
        let mut map = self.map.clone();
        let additions = crate::aws_files::credential_settings(&env, &|k| self.map.contains_key(k))
            .map_err(|e| Outcome::new(Exit::Usage, e))?;
        for (key, value) in additions {
            map.entry(key.to_string()).or_insert(Value::String(value));
        }
        let mut text = serde_json::to_vec(&map).unwrap_or_else(|_| b"{}".to_vec());
        if let Some(doc) = inline_config {
            text.pop();
            if !map.is_empty() {
                text.push(b',');
            }
            text.extend_from_slice(b"\"config\":");
            text.extend_from_slice(doc);
            text.push(b'}');
        }
        // The core's error names the setting (or its environment variable), never a value.
        Config::parse_owned(text, &env).map_err(|e| Outcome::new(Exit::Usage, e.to_string()))
    }
}

fn read_file(path: &Path) -> Res<Map<String, Value>> {
    let what = format!("--settings {}", path.display());
    let bytes = std::fs::read(path)
        .map_err(|e| Outcome::new(Exit::Local, format!("cannot read {what}: {e}")))?;
    let not_object = || {
        Outcome::new(
            Exit::Usage,
            format!("{what}: expected a filter configuration (a JSON object, or a JSON string holding one)"),
        )
    };
    // Never quote serde_json's message: it may echo a value (a secret).
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| not_object())?;
    let value = match value {
        Value::String(s) => serde_json::from_str(&s).map_err(|_| not_object())?,
        v => v,
    };
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(not_object()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let mut s = Settings { map: Map::new() };
        for (k, v) in pairs {
            s.set(k, *v);
        }
        s
    }

    #[test]
    fn an_inline_document_is_given_to_the_core_as_the_config_payload() {
        let mut s = settings(&[
            ("cluster_fallback_config_storage", "s3://bucket-1/p"),
            ("gateway_version", "3.9.1"),
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", "AK"),
            ("aws_secret_access_key", "SK"),
        ]);
        s.set("cluster_fallback_config_export", true);
        let doc = br#"{ "_format_version": "3.0", "services": [] }"#;
        let cfg = s.parse(Some(doc)).unwrap();
        assert_eq!(cfg.config_key(), "p/3.9.1/config.json");
        match &cfg.source {
            config_bridge::settings::SourceConfig::Filter { document } => {
                assert_eq!(document.as_slice(), doc)
            }
            other => panic!("{other:?}"),
        }
        let e = s.parse(Some(b"{\"services\": []}")).unwrap_err();
        assert_eq!(e.exit, Exit::Usage);
        assert!(e.message.contains("_format_version"), "{}", e.message);
    }

    #[test]
    fn errors_name_the_setting_and_never_its_value() {
        let s = settings(&[
            ("cluster_fallback_config_storage", "ftp://secret-bucket/p"),
            ("gateway_version", "3.9.1"),
        ])
        .reading();
        let e = s.parse(None).unwrap_err();
        assert!(e.message.contains("cluster_fallback_config_storage"));
        assert!(!e.message.contains("secret-bucket"));
    }
}
