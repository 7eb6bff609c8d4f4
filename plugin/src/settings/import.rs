//! Import settings (`cluster_fallback_config_import`): the node's Admin API (shared with the
//! `kong_admin` source), an optional probe of the source of truth, the grace period and limits.

use crate::json::Value;

use super::err;
use super::lookup::Lookup;
use super::source::parse_kong_admin;
use super::{Fail, KongAdminSettings};
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
    /// `import_refuse_plugins`: a document holding a plugin of one of these names anywhere (top
    /// level or nested) is not applied.
    pub refuse_plugins: Vec<String>,
}

pub(crate) fn parse_import(l: &Lookup<'_>) -> Result<ImportSettings, Fail> {
    let admin = parse_kong_admin(l)?;
    let probe = match l.string("import_probe_url", &["CONFIG_BRIDGE_IMPORT_PROBE_URL"])? {
        None => None,
        Some((raw, field)) => {
            let url = HttpUrl::parse(&raw).or_else(|r| err(field, r))?;
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
    let refuse_plugins = parse_plugin_names(l)?;
    Ok(ImportSettings {
        admin,
        probe,
        grace_ms,
        check_interval_ms,
        max_bytes,
        refuse_plugins,
    })
}

/// `import_refuse_plugins`: an array of plugin names, or a comma-separated string (its
/// environment variable). Kong's plugin names: letters, digits, `-`, `_`.
fn parse_plugin_names(l: &Lookup<'_>) -> Result<Vec<String>, Fail> {
    let Some(raw) = l.get(
        "import_refuse_plugins",
        &["CONFIG_BRIDGE_IMPORT_REFUSE_PLUGINS"],
    ) else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = match &raw.value {
        Value::String(s) => s.split(',').map(|n| n.trim().to_string()).collect(),
        Value::Array(a) => {
            let mut names = Vec::with_capacity(a.len());
            for v in a {
                match v {
                    Value::String(s) => names.push(s.trim().to_string()),
                    _ => return err(raw.field, "expected an array of plugin names"),
                }
            }
            names
        }
        _ => return err(raw.field, "expected an array of plugin names"),
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names.into_iter().filter(|n| !n.is_empty()) {
        let valid = name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return err(
                raw.field,
                "plugin names are letters, digits, '-' and '_' (at most 128)",
            );
        }
        out.push(name);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::settings::Config;

    fn parse(extra: serde_json::Value, env: &[(&str, &str)]) -> Result<Vec<String>, String> {
        let mut v = json!({
            "cluster_fallback_config_import": "on",
            "cluster_fallback_config_storage": "s3://my-bucket/kong/",
            "gateway_version": "3.9.1",
            "aws_access_key_id": "AKIDEXAMPLE",
            "aws_secret_access_key": "x",
            "aws_region": "eu-west-1"
        });
        if let Some(p) = extra.as_object() {
            for (k, x) in p {
                v[k] = x.clone();
            }
        }
        let env: std::collections::BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::parse(v.to_string().as_bytes(), &move |k: &str| {
            env.get(k).cloned()
        })
        .map(|c| c.import_settings.unwrap().refuse_plugins)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn import_refuse_plugins_is_a_list_or_a_comma_separated_string() {
        assert_eq!(parse(json!({}), &[]).unwrap(), Vec::<String>::new());
        assert_eq!(
            parse(
                json!({"import_refuse_plugins": ["pre-function", " post-function "]}),
                &[]
            )
            .unwrap(),
            ["pre-function", "post-function"]
        );
        assert_eq!(
            parse(
                json!({}),
                &[(
                    "CONFIG_BRIDGE_IMPORT_REFUSE_PLUGINS",
                    "pre-function, post-function,"
                )]
            )
            .unwrap(),
            ["pre-function", "post-function"]
        );
        for bad in [
            json!({"import_refuse_plugins": [1]}),
            json!({"import_refuse_plugins": ["a b"]}),
            json!({"import_refuse_plugins": {"x": 1}}),
        ] {
            let e = parse(bad, &[]).unwrap_err();
            assert!(e.contains("import_refuse_plugins"), "{e}");
        }
    }
}
