//! One-line descriptions of a filter configuration for the log: what a configured filter does,
//! and why an invalid one stays inert. Never quotes a credential.

use crate::settings::storage::Backend;
use crate::settings::{Config, ConfigError, SourceConfig};

/// `export s3://b/p/3.9.1/config.json (delay 60 s, source: the filter's config) via upstream h:p`.
pub fn summary(cfg: &Config) -> String {
    let scheme = match cfg.storage.location.backend {
        Backend::S3 => "s3",
        Backend::Gcs => "gcs",
    };
    let mut jobs = Vec::new();
    if cfg.export {
        jobs.push("export");
    }
    if cfg.import {
        jobs.push("import");
    }
    let source = match &cfg.source {
        SourceConfig::Filter { document } if document.is_empty() => "none".to_string(),
        SourceConfig::Filter { document } => {
            format!("the filter's config ({} bytes)", document.len())
        }
        SourceConfig::Url { url, .. } => format!("{url}"),
        SourceConfig::KongAdmin(k) => format!(
            "the Kong Admin API at {}{}",
            k.url,
            if k.auth.is_some() {
                " with a token"
            } else {
                ""
            }
        ),
    };
    let credentials = match cfg.s3() {
        Some(s3) => format!(", AWS credentials: {}", s3.credentials.describe()),
        None => String::new(),
    };
    if !cfg.export {
        let admin = cfg
            .import_settings
            .as_ref()
            .map(|i| format!(" into the Admin API at {}", i.admin.url))
            .unwrap_or_default();
        return format!(
            "import {scheme}://{}/{}{admin} via upstream {}{credentials}",
            cfg.storage.location.bucket,
            // The pinned history object, if any (docs/history.md).
            cfg.import_key(),
            cfg.storage.upstream
        );
    }
    format!(
        "{} {scheme}://{}/{} (delay {} ms, source: {source}) via upstream {}{credentials}{}",
        crate::text::join(&jobs, "+"),
        cfg.storage.location.bucket,
        cfg.config_key(),
        cfg.export_delay_ms,
        cfg.storage.upstream,
        match &cfg.shared_data_namespace {
            Some(ns) => format!(", shared data in shm_kv zone {ns}"),
            None => String::new(),
        }
    )
}

/// The error line of an inert filter (`reminder`: the periodic repeat).
pub fn inert_line(error: &ConfigError, reminder: bool) -> String {
    let when = if reminder { "still " } else { "" };
    format!(
        "{error}; this filter instance is {when}inert (no export, no import) until its configuration is fixed"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_the_job_the_object_and_the_upstream_but_no_secret() {
        let text = serde_json::json!({
            "cluster_fallback_config_export": "on",
            "cluster_fallback_config_storage": "s3://bkt/p",
            "gateway_version": "3.9.1",
            "aws_region": "us-east-1",
            "aws_access_key_id": "AKIDSUMMARY",
            "aws_secret_access_key": "SECRET-SUMMARY",
            "storage_endpoint": "http://127.0.0.1:9000",
            "shared_data_namespace": "kv",
            "config": {"_format_version": "3.0"}
        })
        .to_string();
        let cfg = Config::parse(text.as_bytes(), &|_| None).expect("valid");
        let line = summary(&cfg);
        assert!(
            line.starts_with("export s3://bkt/p/3.9.1/config.json"),
            "{line}"
        );
        assert!(line.contains("via upstream 127.0.0.1:9000"), "{line}");
        assert!(line.contains("shm_kv zone kv"), "{line}");
        assert!(
            !line.contains("SECRET-SUMMARY") && !line.contains("AKIDSUMMARY"),
            "{line}"
        );
    }

    #[test]
    fn the_inert_line_names_the_field_and_says_what_happens() {
        let e = ConfigError {
            field: "cluster_fallback_config_exprot".into(),
            reason: "unknown setting".into(),
            strict: false,
        };
        let first = inert_line(&e, false);
        assert!(
            first.starts_with(
                "invalid configuration: cluster_fallback_config_exprot: unknown setting"
            ),
            "{first}"
        );
        assert!(first.contains("is inert (no export, no import)"), "{first}");
        assert!(inert_line(&e, true).contains("still inert"));
    }
}
