//! Import settings (`cluster_fallback_config_import`): the node's Admin API (shared with the
//! `kong_admin` source), an optional probe of the source of truth, the grace period and limits.

use super::lookup::Lookup;
use super::source::parse_kong_admin;
use super::{err, ConfigError};
use crate::engine::source::kong_admin::KongAdminSettings;
use crate::http_url::HttpUrl;

/// What the import sub-machine needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportSettings {
    /// The node's own Admin API: `/status`, the bootstrap check, `POST /config`.
    pub admin: KongAdminSettings,
    /// The source of truth (a CP, an ingress controller): reachable means "do not import".
    pub probe: Option<(HttpUrl, String)>,
    /// How long the probe must fail (or, without a probe, the node stay empty) before importing.
    pub grace_ms: u64,
    /// How often the node and the probe are checked.
    pub check_interval_ms: u64,
    /// The largest object accepted.
    pub max_bytes: u64,
}

pub(crate) fn parse_import(l: &Lookup<'_>) -> Result<ImportSettings, ConfigError> {
    let admin = parse_kong_admin(l)?;
    let probe = match l.string("import_probe_url", &["CONFIG_BRIDGE_IMPORT_PROBE_URL"])? {
        None => None,
        Some((raw, field)) => {
            let url = HttpUrl::parse(&raw).map_err(|reason| ConfigError {
                field,
                reason,
                strict: false,
            })?;
            let upstream = l
                .string("import_probe_upstream", &[])?
                .map(|(u, _)| u)
                .unwrap_or_else(|| url.upstream());
            Some((url, upstream))
        }
    };
    let grace_ms = l.seconds_ms("import_grace_period", &[], 30, 86_400)?;
    let check_interval_ms = l.seconds_ms("import_check_interval", &[], 5, 3_600)?;
    if check_interval_ms < 100 {
        return err("import_check_interval", "must be at least 0.1 seconds");
    }
    let max_bytes = l.uint(
        "import_max_bytes",
        &[],
        128 * 1024 * 1024,
        1024,
        1024 * 1024 * 1024,
    )?;
    Ok(ImportSettings {
        admin,
        probe,
        grace_ms,
        check_interval_ms,
        max_bytes,
    })
}
