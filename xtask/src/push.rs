//! Push an [`Image`] to a registry with the OCI distribution API: blob HEAD (skip what exists),
//! POST + monolithic PUT upload, manifest PUT with its media type. Plain http only for loopback
//! registries. Credentials (optional) come from `OCI_REGISTRY_USERNAME` / `OCI_REGISTRY_PASSWORD`
//! and are used for Basic auth or to fetch a Bearer token; they never appear in output or errors.

use crate::image::{Blob, Image};
use anyhow::{bail, ensure, Context, Result};
use base64::Engine as _;
use std::time::Duration;
use ureq::{http::Response, Agent, Body};

pub const USERNAME_ENV: &str = "OCI_REGISTRY_USERNAME";
pub const PASSWORD_ENV: &str = "OCI_REGISTRY_PASSWORD";

/// `REGISTRY/REPOSITORY:TAG`, e.g. `127.0.0.1:5000/config-bridge:0.1.0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: String,
}

impl Reference {
    pub fn parse(input: &str) -> Result<Reference> {
        let (registry, rest) = input
            .split_once('/')
            .with_context(|| format!("{input:?}: expected REGISTRY/REPOSITORY:TAG"))?;
        ensure!(
            registry.contains('.') || registry.contains(':') || registry == "localhost",
            "{input:?}: the first component must be a registry host (e.g. 127.0.0.1:5000 or ghcr.io)"
        );
        let (repository, tag) = rest
            .rsplit_once(':')
            .filter(|(repo, _)| !repo.is_empty())
            .with_context(|| format!("{input:?}: a tag is required (REGISTRY/REPOSITORY:TAG)"))?;
        ensure!(
            !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                && !tag.starts_with(['.', '-']),
            "{input:?}: invalid tag {tag:?}"
        );
        ensure!(
            repository.split('/').all(|c| !c.is_empty()
                && c.chars().all(|ch| ch.is_ascii_lowercase()
                    || ch.is_ascii_digit()
                    || "._-".contains(ch))),
            "{input:?}: invalid repository name {repository:?} (lower-case, digits, . _ - and /)"
        );
        Ok(Reference {
            registry: registry.into(),
            repository: repository.into(),
            tag: tag.into(),
        })
    }

    /// The same repository under another tag.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: tag.into(),
            ..self.clone()
        }
    }

    fn base_url(&self) -> String {
        format!("{}://{}", scheme_for(&self.registry), self.registry)
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

/// http for loopback registries (test registries, `docker-registry` in CI), https otherwise.
fn scheme_for(registry: &str) -> &'static str {
    let host = match registry.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => registry.split(':').next().unwrap_or(""),
    };
    if host == "localhost" || host == "::1" || host.starts_with("127.") {
        "http"
    } else {
        "https"
    }
}

#[derive(Clone)]
struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    fn from_env() -> Option<Credentials> {
        let username = std::env::var(USERNAME_ENV).ok().filter(|s| !s.is_empty())?;
        let password = std::env::var(PASSWORD_ENV).unwrap_or_default();
        Some(Credentials { username, password })
    }

    fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let mut realm = None;
            let mut service = None;
            let mut scope = None;
            // key="value" pairs; values may contain commas (scopes), so split on `",`.
            for part in params.split("\",") {
                let (k, v) = part.split_once('=')?;
                let v = v.trim().trim_matches('"').to_string();
                match k.trim() {
                    "realm" => realm = Some(v),
                    "service" => service = Some(v),
                    "scope" => scope = Some(v),
                    _ => {}
                }
            }
            Some(Challenge::Bearer {
                realm: realm?,
                service,
                scope,
            })
        }
        _ => None,
    }
}

/// One registry session: the HTTP agent plus whatever authorization the registry asked for.
pub struct Client {
    agent: Agent,
    reference: Reference,
    credentials: Option<Credentials>,
    authorization: Option<String>,
}

impl Client {
    pub fn new(reference: &Reference) -> Client {
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        Client {
            agent,
            reference: reference.clone(),
            credentials: Credentials::from_env(),
            authorization: None,
        }
    }

    /// Push every blob, then the manifest under the reference's tag. Returns the manifest digest
    /// the registry reported (checked against ours).
    pub fn push(&mut self, image: &Image) -> Result<String> {
        for blob in &image.blobs {
            self.push_blob(blob)?;
        }
        let r = &self.reference;
        let url = format!("{}/v2/{}/manifests/{}", r.base_url(), r.repository, r.tag);
        let media_type = image.manifest.descriptor.media_type().to_string();
        let resp = self.send("PUT", &url, Some(&media_type), Some(&image.manifest.bytes))?;
        let status = resp.status().as_u16();
        let reported = header(&resp, "docker-content-digest");
        ensure!(
            status == 201 || status == 200,
            "manifest PUT {url}: HTTP {status}: {}",
            body_text(resp)
        );
        let ours = image.manifest_digest().to_string();
        if let Some(theirs) = reported {
            ensure!(
                theirs == ours,
                "registry stored manifest {theirs}, expected {ours}"
            );
        }
        Ok(ours)
    }

    fn push_blob(&mut self, blob: &Blob) -> Result<()> {
        let r = self.reference.clone();
        let digest = blob.descriptor.digest().to_string();
        let head = format!("{}/v2/{}/blobs/{}", r.base_url(), r.repository, digest);
        let resp = self.send("HEAD", &head, None, None)?;
        if resp.status().as_u16() == 200 {
            return Ok(());
        }
        let start = format!("{}/v2/{}/blobs/uploads/", r.base_url(), r.repository);
        let resp = self.send("POST", &start, None, Some(&[]))?;
        let status = resp.status().as_u16();
        let location = header(&resp, "location");
        ensure!(
            status == 202,
            "blob upload POST {start}: HTTP {status}: {}",
            body_text(resp)
        );
        let location = location.context("registry gave no upload Location")?;
        let mut upload = resolve(&r.base_url(), &location);
        upload.push(if upload.contains('?') { '&' } else { '?' });
        upload.push_str("digest=");
        upload.push_str(&digest.replace(':', "%3A"));
        let resp = self.send(
            "PUT",
            &upload,
            Some("application/octet-stream"),
            Some(&blob.bytes),
        )?;
        let status = resp.status().as_u16();
        ensure!(
            status == 201,
            "blob {digest} upload PUT: HTTP {status}: {}",
            body_text(resp)
        );
        Ok(())
    }

    /// Send a request; on a 401 answer the registry's challenge once and resend.
    fn send(
        &mut self,
        method: &str,
        url: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Response<Body>> {
        let first = self.send_once(method, url, content_type, body)?;
        if first.status().as_u16() != 401 || self.authorization.is_some() {
            return Ok(first);
        }
        let challenge = header(&first, "www-authenticate")
            .and_then(|h| parse_challenge(&h))
            .with_context(|| {
                format!("{method} {url}: HTTP 401 without a usable WWW-Authenticate challenge")
            })?;
        self.authorization = Some(self.authorize(challenge)?);
        self.send_once(method, url, content_type, body)
    }

    fn send_once(
        &self,
        method: &str,
        url: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Response<Body>> {
        let auth = self.authorization.as_deref();
        let result = match method {
            "HEAD" => with_headers(self.agent.head(url), auth, content_type).call(),
            "GET" => with_headers(self.agent.get(url), auth, content_type).call(),
            "POST" => with_headers(self.agent.post(url), auth, content_type)
                .send(body.unwrap_or_default()),
            "PUT" => {
                with_headers(self.agent.put(url), auth, content_type).send(body.unwrap_or_default())
            }
            other => bail!("unsupported method {other}"),
        };
        result.with_context(|| format!("{method} {url}"))
    }

    fn authorize(&self, challenge: Challenge) -> Result<String> {
        match challenge {
            Challenge::Basic => {
                let creds = self.credentials.as_ref().with_context(|| {
                    format!("registry wants Basic auth: set {USERNAME_ENV} and {PASSWORD_ENV}")
                })?;
                Ok(creds.basic())
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                // Anonymous token requests work for public pushes on some registries.
                let scope = scope.unwrap_or_else(|| {
                    format!("repository:{}:pull,push", self.reference.repository)
                });
                let mut req = self.agent.get(&realm).query("scope", &scope);
                if let Some(service) = &service {
                    req = req.query("service", service);
                }
                if let Some(creds) = &self.credentials {
                    req = req.header("authorization", &creds.basic());
                }
                let mut resp = req
                    .call()
                    .with_context(|| format!("token request to {realm}"))?;
                let status = resp.status().as_u16();
                ensure!(status == 200, "token request to {realm}: HTTP {status}");
                let json: serde_json::Value =
                    serde_json::from_slice(&resp.body_mut().read_to_vec()?)
                        .context("token response is not JSON")?;
                let token = json
                    .get("token")
                    .or_else(|| json.get("access_token"))
                    .and_then(|t| t.as_str())
                    .context("token response has no token")?;
                Ok(format!("Bearer {token}"))
            }
        }
    }
}

fn with_headers<B>(
    mut req: ureq::RequestBuilder<B>,
    auth: Option<&str>,
    content_type: Option<&str>,
) -> ureq::RequestBuilder<B> {
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req
}

fn header(resp: &Response<Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The registry's error body, cut short: it names the failing check (e.g. DIGEST_INVALID).
fn body_text(mut resp: Response<Body>) -> String {
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    text.chars().take(500).collect()
}

/// Upload locations may be absolute URLs or paths relative to the registry.
fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!(
            "{base}{}",
            if location.starts_with('/') {
                location.to_string()
            } else {
                format!("/{location}")
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_with_registry_repository_and_tag() {
        let r = Reference::parse("127.0.0.1:5000/team/config-bridge:0.1.0-compat").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/config-bridge");
        assert_eq!(r.tag, "0.1.0-compat");
        assert_eq!(r.base_url(), "http://127.0.0.1:5000");
        assert_eq!(
            Reference::parse("ghcr.io/o/cb:1").unwrap().base_url(),
            "https://ghcr.io"
        );
        assert_eq!(
            Reference::parse("localhost/cb:1").unwrap().base_url(),
            "http://localhost"
        );
        assert_eq!(
            Reference::parse("[::1]:5000/cb:1").unwrap().base_url(),
            "http://[::1]:5000"
        );
        for bad in [
            "config-bridge:1",
            "ghcr.io/cb",
            "ghcr.io/cb:",
            "ghcr.io/CB:1",
            "ghcr.io/cb:-x",
            "ghcr.io/:1",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert_eq!(
            r.with_tag("x").to_string(),
            "127.0.0.1:5000/team/config-bridge:x"
        );
    }

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge("Basic realm=\"Registry\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/cb:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://ghcr.io/token".into(),
                service: Some("ghcr.io".into()),
                scope: Some("repository:o/cb:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge("Bearer service=\"x\""),
            None,
            "realm is required"
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn upload_locations_resolve_against_the_registry() {
        assert_eq!(
            resolve("http://r:1", "/v2/x/blobs/uploads/u?s=1"),
            "http://r:1/v2/x/blobs/uploads/u?s=1"
        );
        assert_eq!(resolve("http://r:1", "https://cdn/u"), "https://cdn/u");
    }

    #[test]
    fn basic_credentials_are_base64_of_user_colon_password() {
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        assert_eq!(c.basic(), "Basic dTpwOnc=");
    }
}
