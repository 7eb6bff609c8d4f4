//! GCS settings (docs/gcs.md): the service-account key (`gcp_service_account` /
//! `GCP_SERVICE_ACCOUNT`) or, without one, the metadata server; endpoint overrides for emulators
//! and the `dispatch_http_call` upstream of each endpoint.

use crate::json::Value;

use super::lookup::{Field, Lookup};
use super::{err, Fail};
use crate::http_url::HttpUrl;
use crate::rs256::RsaSigner;

pub const SCOPE_READ_WRITE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
pub const SCOPE_READ_ONLY: &str = "https://www.googleapis.com/auth/devstorage.read_only";
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
pub const METADATA_URL: &str = "http://metadata.google.internal";
/// The parts of a service-account JSON key the token flow needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountKey {
    pub client_email: String,
    /// The JWT's `kid`.
    pub private_key_id: Option<String>,
    /// The key's `token_uri` (Google's when absent).
    pub token_uri: Option<String>,
    pub signer: RsaSigner,
}

impl ServiceAccountKey {
    /// The JSON key file as `gcloud iam service-accounts keys create` writes it. The error says
    /// what is wrong without quoting any of it.
    pub fn parse(json: &str) -> Result<ServiceAccountKey, String> {
        let v: Value = crate::json::parse(json.trim().as_bytes())
            .map_err(|_| "is not a JSON service-account key".to_string())?;
        let Value::Object(m) = v else {
            return Err("is not a JSON service-account key (expected an object)".into());
        };
        let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
        if let Some(t) = text("type") {
            if t != "service_account" {
                return Err("has type other than \"service_account\"".into());
            }
        }
        let client_email = text("client_email")
            .filter(|e| !e.is_empty())
            .ok_or("has no client_email")?;
        let pem = text("private_key").ok_or("has no private_key")?;
        let signer = RsaSigner::from_pem(&pem).map_err(|e| format!("private_key {e}"))?;
        let token_uri = text("token_uri").filter(|u| !u.is_empty());
        Ok(ServiceAccountKey {
            client_email,
            private_key_id: text("private_key_id").filter(|k| !k.is_empty()),
            token_uri,
            signer,
        })
    }
}

/// How tokens are obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenProvider {
    /// JWT grant at `token_uri`, reached through `upstream`; `aud`: the token URI exactly as
    /// written (Google compares the string).
    ServiceAccount {
        key: ServiceAccountKey,
        token_uri: HttpUrl,
        aud: String,
        upstream: String,
    },
    /// The metadata server at `url` (its base), reached through `upstream`.
    Metadata { url: HttpUrl, upstream: String },
}

impl TokenProvider {
    pub fn describe(&self) -> String {
        match self {
            TokenProvider::ServiceAccount { token_uri, key, .. } => {
                format!("{token_uri} (for {})", key.client_email)
            }
            TokenProvider::Metadata { url, .. } => {
                format!("the metadata server {}://{}", url.scheme, url.authority())
            }
        }
    }
}

pub const GOOGLE_STORAGE_URL: &str = "https://storage.googleapis.com";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcsSettings {
    /// The JSON API's base URL (`gcs_endpoint`).
    pub endpoint: HttpUrl,
    pub tokens: TokenProvider,
    /// `devstorage.read_write` for exporters, `read_only` for import-only nodes.
    pub scope: &'static str,
}

impl GcsSettings {
    /// The storage API's default upstream (`host:port` of the endpoint).
    pub fn default_upstream(&self) -> String {
        self.endpoint.upstream()
    }
}

fn url(l: &Lookup<'_>, key: &str, env: &[&str], default: &str) -> Result<HttpUrl, Fail> {
    match l.string(key, env)? {
        None => HttpUrl::parse(default).or_else(|r| err(key, r)),
        // GCE_METADATA_HOST and STORAGE_EMULATOR_HOST are often a bare `host:port`.
        Some((raw, field)) if crate::text::find(&raw, "://").is_none() => {
            HttpUrl::parse(&format!("http://{raw}")).or_else(|r| err(field, r))
        }
        Some((raw, field)) => HttpUrl::parse(&raw).or_else(|r| err(field, r)),
    }
}

pub(crate) fn parse_gcs(l: &Lookup<'_>, export: bool) -> Result<GcsSettings, Fail> {
    // Google's client libraries point at an emulator with STORAGE_EMULATOR_HOST.
    let endpoint = url(
        l,
        "gcs_endpoint",
        &["STORAGE_EMULATOR_HOST"],
        GOOGLE_STORAGE_URL,
    )?;
    let scope = if export {
        SCOPE_READ_WRITE
    } else {
        SCOPE_READ_ONLY
    };
    let tokens = match service_account_key(l)? {
        Some((json, field)) => service_account_provider(l, &json, field)?,
        None => metadata_provider(l)?,
    };
    if endpoint.path_and_query.contains('?') {
        return err("gcs_endpoint", "must not have a query string");
    }
    Ok(GcsSettings {
        endpoint,
        tokens,
        scope,
    })
}

/// `gcp_service_account`: the key file's text, or (Kong 3.5+ hands JSON over as JSON) the key
/// as an object; with the field it came from.
fn service_account_key(l: &Lookup<'_>) -> Result<Option<(String, Field<'static>)>, Fail> {
    let Some(r) = l.get("gcp_service_account", &["GCP_SERVICE_ACCOUNT"]) else {
        return Ok(None);
    };
    match r.value {
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Ok(Some((s, r.field))),
        v @ Value::Object(_) => Ok(Some((crate::json::to_text(&v), r.field))),
        _ => err(
            r.field,
            "expected the JSON key file (a string or an object)",
        ),
    }
}

/// Tokens from a JWT grant signed with the service account's key.
fn service_account_provider(
    l: &Lookup<'_>,
    json: &str,
    field: Field<'_>,
) -> Result<TokenProvider, Fail> {
    // The reason names what is wrong, never a value (the key is a secret).
    let key = ServiceAccountKey::parse(json).or_else(|r| err(field, r))?;
    let (token_uri, aud) = match l.string("gcs_token_uri", &[])? {
        Some((raw, f)) => (HttpUrl::parse(&raw).or_else(|r| err(f, r))?, raw),
        None => {
            let raw = key.token_uri.as_deref().unwrap_or(GOOGLE_TOKEN_URI);
            let url = HttpUrl::parse(raw)
                .or_else(|r| err(field, format!("has an unusable token_uri: {r}")))?;
            (url, raw.trim().to_string())
        }
    };
    let upstream = match l.string("gcs_token_upstream", &[])? {
        Some((u, _)) => u,
        None => token_uri.upstream(),
    };
    Ok(TokenProvider::ServiceAccount {
        key,
        token_uri,
        aud,
        upstream,
    })
}

/// Workload identity: the metadata server of the machine or the GKE node.
fn metadata_provider(l: &Lookup<'_>) -> Result<TokenProvider, Fail> {
    let url = url(l, "gcs_metadata_url", &["GCE_METADATA_HOST"], METADATA_URL)?;
    if url.path_and_query.contains('?') {
        return err("gcs_metadata_url", "must not have a query string");
    }
    let upstream = match l.string("gcs_metadata_upstream", &[])? {
        Some((u, _)) => u,
        None => url.upstream(),
    };
    Ok(TokenProvider::Metadata { url, upstream })
}

#[cfg(test)]
mod tests {
    use super::TokenProvider;
    use crate::settings::{Config, StorageBackend};
    use serde_json::json;

    fn parse(
        v: serde_json::Value,
        env: &[(&str, &str)],
    ) -> Result<Config, crate::settings::ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::parse(v.to_string().as_bytes(), &move |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    fn base(storage: &str) -> serde_json::Value {
        json!({
            "cluster_fallback_config_import": "on",
            "cluster_fallback_config_storage": storage,
            "gateway_version": "3.9.1",
        })
    }

    #[test]
    fn gcs_without_a_key_uses_the_metadata_server_and_read_only_for_importers() {
        for storage in ["gcs://b-1/p", "gs://b-1/p"] {
            let c = parse(base(storage), &[("GCE_METADATA_HOST", "127.0.0.1:8080")]).unwrap();
            assert_eq!(c.storage.upstream, "storage.googleapis.com:443");
            let StorageBackend::Gcs(g) = &c.storage.backend else {
                panic!("not GCS")
            };
            assert_eq!(g.scope, super::SCOPE_READ_ONLY);
            match &g.tokens {
                TokenProvider::Metadata { url, upstream } => {
                    assert_eq!(url.to_string(), "http://127.0.0.1:8080/");
                    assert_eq!(upstream, "127.0.0.1:8080");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn key_errors_name_the_field_and_never_quote_the_key() {
        let mut v = base("gcs://b-1/p");
        v["gcp_service_account"] = json!("{\"private_key\": \"SECRET-PEM-TEXT\"");
        let e = parse(v.clone(), &[]).unwrap_err();
        assert_eq!(e.field, "gcp_service_account");
        assert!(!e.to_string().contains("SECRET-PEM-TEXT"), "{e}");
        v["gcp_service_account"] = json!({"client_email": "a@b", "private_key": "SECRET-PEM-TEXT"});
        let e = parse(v.clone(), &[]).unwrap_err();
        assert_eq!(e.field, "gcp_service_account");
        assert!(
            e.reason.contains("private_key is not a PEM private key"),
            "{e}"
        );
        assert!(!e.to_string().contains("SECRET-PEM-TEXT"), "{e}");
        v.as_object_mut().unwrap().remove("gcp_service_account");
        let e = parse(v, &[("GCP_SERVICE_ACCOUNT", "SECRET-PEM-TEXT")]).unwrap_err();
        assert_eq!(e.field, "gcp_service_account (from GCP_SERVICE_ACCOUNT)");
        assert!(!e.to_string().contains("SECRET-PEM-TEXT"), "{e}");
    }

    #[test]
    fn endpoint_override_and_emulator_variable() {
        let mut v = base("gcs://b-1/p");
        v["gcs_endpoint"] = json!("http://127.0.0.1:4443");
        let c = parse(v, &[]).unwrap();
        assert_eq!(c.storage.upstream, "127.0.0.1:4443");
        let c = parse(
            base("gs://b-1/p"),
            &[("STORAGE_EMULATOR_HOST", "localhost:9023")],
        )
        .unwrap();
        assert_eq!(c.storage.upstream, "localhost:9023");
        let mut v = base("gs://b-1/p");
        v["gcs_endpoint"] = json!("ftp://x");
        assert_eq!(parse(v, &[]).unwrap_err().field, "gcs_endpoint");
    }
}
