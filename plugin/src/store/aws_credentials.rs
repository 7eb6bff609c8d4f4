//! AWS credentials for the S3 store (docs/credentials.md): keys from the settings or the
//! environment, else container credentials (ECS, EKS Pod Identity), the EC2 instance metadata
//! service (IMDSv2), or STS `AssumeRoleWithWebIdentity` with a token the filter can read.
//!
//! A sans-IO sub-machine behind the store's prerequisite seam (`ObjectStore::prerequisite`): it
//! hands out one request at a time (IMDSv2 takes three: session token, role name, credentials),
//! takes the answers back, and keeps the credentials until shortly before they expire. Only the
//! node's lease holder fetches; what it fetched is published in shared data (`share`), so a worker
//! that takes the lease over, or another filter of the node using the same provider, starts with
//! them instead of fetching again: one fetch per node per refresh.
//!
//! Nothing here formats a key, a token or an answer body into a message: errors name the
//! endpoint, the HTTP status and the provider's error code only.

use std::rc::Rc;

use crate::json;
use crate::json::Value;

use super::timestamp::{rfc3339_ms, shift, unshift};
use crate::http::{HttpResponse, OutboundRequest};
use crate::http_url::{percent_encode, HttpUrl};
use crate::node_lock::SharedStore;
use crate::secret::Secret;
use crate::settings::aws::{AwsKeys, AwsProvider};

/// IMDSv2 session tokens are asked for this long (AWS's SDKs ask for 6 hours).
pub const IMDS_TOKEN_TTL_S: u64 = 21_600;
const IMDS_TOKEN_PATH: &str = "/latest/api/token";
const IMDS_ROLE_PATH: &str = "/latest/meta-data/iam/security-credentials/";
/// Credentials are renewed this long before they expire (at most half their lifetime).
const REFRESH_MARGIN_MS: u64 = 5 * 60 * 1000;
/// After a failed fetch the next one waits 1 s, doubling up to 60 s.
const RETRY_BASE_MS: u64 = 1000;
const RETRY_MAX_MS: u64 = 60_000;
/// The longest answer read from a credentials endpoint.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Credentials in hand. Times are this node's clock (ms).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Held {
    keys: AwsKeys,
    /// Renew from then on (`None`: never expire).
    refresh_at: Option<u64>,
    /// Unusable from then on.
    expires_at: Option<u64>,
}

/// The request in flight and what its answer means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    ImdsToken,
    ImdsRole,
    Credentials,
}

/// The credentials of one S3 store and their renewal.
pub struct CredentialChain {
    provider: AwsProvider,
    held: Option<Held>,
    /// Fetched here and not yet published to shared data.
    unpublished: bool,
    step: Option<Step>,
    /// IMDSv2 session token and when it stops being usable (this node's clock).
    /// Kept in `IMDS_SESSIONS` (see there) and loaded on first use.
    imds_token: Option<(Secret, u64)>,
    imds_role: Option<String>,
    failures: u32,
    next_attempt_at: u64,
    last_error: Option<String>,
    /// This node's clock subtracted from the store's (ms): expirations are the provider's time.
    skew_ms: i64,
    /// The access key id the store last refused (`invalidate`): never taken back from shared
    /// data, where the worker that fetched it may still have it published.
    rejected: Option<String>,
    /// Requests sent to the provider (diagnostics and tests).
    pub requests: u64,
}

impl CredentialChain {
    pub fn new(provider: AwsProvider) -> CredentialChain {
        let held = match &provider {
            AwsProvider::Static(keys) => Some(Held {
                keys: keys.clone(),
                refresh_at: None,
                expires_at: None,
            }),
            _ => None,
        };
        let session = imds_session(&provider).unwrap_or_default();
        CredentialChain {
            provider,
            held,
            unpublished: false,
            step: None,
            imds_token: session.0,
            imds_role: session.1,
            failures: 0,
            next_attempt_at: 0,
            last_error: None,
            skew_ms: 0,
            rejected: None,
            requests: 0,
        }
    }

    pub fn provider(&self) -> &AwsProvider {
        &self.provider
    }

    pub fn set_clock_skew(&mut self, skew_ms: i64) {
        self.skew_ms = skew_ms;
    }

    fn is_static(&self) -> bool {
        matches!(self.provider, AwsProvider::Static(_))
    }

    /// The keys to sign with now, or why there are none.
    pub fn keys(&self, now_ms: u64) -> Result<&AwsKeys, String> {
        match &self.held {
            Some(h) if h.expires_at.is_none_or(|e| now_ms < e) => Ok(&h.keys),
            _ => Err(match &self.last_error {
                Some(e) => format!(
                    "no AWS credentials ({e}; next attempt in {} ms)",
                    self.next_attempt_at.saturating_sub(now_ms)
                ),
                None => format!("no AWS credentials yet from {}", self.provider.describe()),
            }),
        }
    }

    /// The store rejected the credentials (`ExpiredToken`, `InvalidAccessKeyId`, ...): fetch new
    /// ones now (static keys cannot be renewed).
    pub fn invalidate(&mut self) {
        if !self.is_static() {
            if let Some(h) = self.held.take() {
                self.rejected = Some(h.keys.access_key_id.expose().to_string());
            }
            self.next_attempt_at = 0;
        }
    }

    /// The next request to the provider, when credentials are missing or due for renewal and no
    /// failed attempt is backing off.
    pub fn request(&mut self, now_ms: u64) -> Option<OutboundRequest> {
        let due = self
            .held
            .as_ref()
            .is_none_or(|h| h.refresh_at.is_some_and(|r| now_ms >= r));
        if self.is_static() || !due || now_ms < self.next_attempt_at {
            return None;
        }
        if self.imds_token.is_none() {
            // Another root context of this worker may have opened a session meanwhile.
            if let Some((token, role)) = imds_session(&self.provider) {
                self.imds_token = token;
                self.imds_role = self.imds_role.take().or(role);
            }
        }
        let (step, request) = match &self.provider {
            AwsProvider::Static(_) => return None,
            AwsProvider::Container {
                url,
                upstream,
                authorization,
            } => (
                Step::Credentials,
                container_request(url, upstream, authorization.as_ref()),
            ),
            AwsProvider::Imds { url, upstream } => self.imds_request(url, upstream, now_ms),
            AwsProvider::WebIdentity {
                sts,
                upstream,
                role_arn,
                session_name,
                token,
            } => (
                Step::Credentials,
                web_identity_request(sts, upstream, role_arn, session_name, token),
            ),
        };
        self.step = Some(step);
        self.requests += 1;
        Some(request)
    }

    /// IMDSv2 takes three requests: a session token, the role's name, then its credentials.
    fn imds_request(&self, url: &HttpUrl, upstream: &str, now_ms: u64) -> (Step, OutboundRequest) {
        let base = crate::text::trim_end_ascii(url.path(), b'/');
        let Some((token, until)) = &self.imds_token else {
            return (Step::ImdsToken, imds_token_request(url, upstream, base));
        };
        if now_ms >= *until {
            return (Step::ImdsToken, imds_token_request(url, upstream, base));
        }
        let headers = vec![(
            "x-aws-ec2-metadata-token".to_string(),
            token.expose().to_string(),
        )];
        match &self.imds_role {
            None => (
                Step::ImdsRole,
                get(url, upstream, format!("{base}{IMDS_ROLE_PATH}"), headers),
            ),
            Some(role) => {
                let path = format!("{base}{IMDS_ROLE_PATH}{}", percent_encode(role, false));
                (Step::Credentials, get(url, upstream, path, headers))
            }
        }
    }

    /// The provider's answer to the last request (`Err`: the call failed, with the host's
    /// reason). `Err` returns the log line.
    pub fn answered(
        &mut self,
        answer: Result<HttpResponse, String>,
        now_ms: u64,
    ) -> Result<(), String> {
        let Some(step) = self.step.take() else {
            return Ok(());
        };
        let what = self.provider.describe();
        let resp = match answer {
            Ok(r) => r,
            Err(reason) => {
                let hint = if step == Step::ImdsToken {
                    " (a container more hops away than the instance's metadata hop limit never gets an answer: raise it to 2)"
                } else {
                    ""
                };
                return Err(self.failed(
                    format!("the AWS credentials request to {what} failed: {reason}{hint}"),
                    now_ms,
                ));
            }
        };
        if !(200..=299).contains(&resp.status) {
            if resp.status == 401 && step != Step::ImdsToken {
                // IMDSv2: the session token expired or was refused; get a new one at once.
                self.imds_token = None;
                self.save_imds_session();
            }
            if resp.status == 404 && step == Step::Credentials {
                // IMDS: the instance's role changed.
                self.imds_role = None;
                self.save_imds_session();
            }
            let mut line = format!(
                "the AWS credentials request to {what} was refused: HTTP {}",
                resp.status
            );
            if let Some(code) = provider_error_code(&resp) {
                line.push(' ');
                line.push_str(&code);
            }
            if resp.status == 403 && step == Step::ImdsToken {
                line.push_str(" (IMDSv2 disabled, or this container is more hops away than the instance's metadata hop limit: raise it to 2 for containers)");
            }
            return Err(self.failed(line, now_ms));
        }
        let body = resp.body.get(..MAX_ANSWER_BYTES).unwrap_or(&resp.body);
        let outcome = match step {
            Step::ImdsToken => self.took_imds_token(&resp, body, now_ms),
            Step::ImdsRole => self.took_imds_role(body),
            Step::Credentials => self.took_credentials(body, now_ms),
        };
        outcome.map_err(|line| self.failed(format!("{what} {line}"), now_ms))
    }

    /// IMDSv2's session token: kept (and shared) until a minute before its TTL ends.
    fn took_imds_token(
        &mut self,
        resp: &HttpResponse,
        body: &[u8],
        now_ms: u64,
    ) -> Result<(), String> {
        let token = String::from_utf8_lossy(body).trim().to_string();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("answered the token request without a usable token".into());
        }
        let ttl_ms = resp
            .header("x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(IMDS_TOKEN_TTL_S)
            .min(IMDS_TOKEN_TTL_S)
            * 1000;
        // Renewed a minute early, so a request never leaves with a dying token.
        let until = now_ms + ttl_ms - 60_000u64.min(ttl_ms / 2);
        self.imds_token = Some((Secret::new(token), until));
        self.save_imds_session();
        Ok(())
    }

    /// IMDS: the instance's role name (the first non-empty line).
    fn took_imds_role(&mut self, body: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(body);
        match text.lines().map(str::trim).find(|l| !l.is_empty()) {
            Some(role) if role.bytes().all(|b| b.is_ascii_graphic()) => {
                self.imds_role = Some(role.to_string());
                self.save_imds_session();
                Ok(())
            }
            _ => Err("has no IAM role for this instance (attach an instance profile)".into()),
        }
    }

    /// The credentials themselves: JSON (container, IMDS) or STS's XML.
    fn took_credentials(&mut self, body: &[u8], now_ms: u64) -> Result<(), String> {
        let (keys, expiration) = match &self.provider {
            AwsProvider::WebIdentity { .. } => parse_sts_xml(body),
            _ => parse_credentials_json(body),
        }
        .map_err(|e| format!("answered {e}"))?;
        self.store(keys, expiration, now_ms);
        Ok(())
    }

    /// New credentials; `expiration`: the provider's time (ms), `None` for keys that do not
    /// expire.
    fn store(&mut self, keys: AwsKeys, expiration: Option<u64>, now_ms: u64) {
        let expires_at = expiration.map(|e| unshift(e, self.skew_ms));
        self.held = Some(Held {
            keys,
            refresh_at: expires_at.map(|e| refresh_time(now_ms, e)),
            expires_at,
        });
        self.unpublished = true;
        self.failures = 0;
        self.next_attempt_at = 0;
        self.last_error = None;
    }

    fn save_imds_session(&self) {
        let id = self.provider.describe();
        let session = (self.imds_token.clone(), self.imds_role.clone());
        IMDS_SESSIONS.with(|m| {
            let mut m = m.borrow_mut();
            m.retain(|(k, _)| *k != id);
            m.push((id, session));
        });
    }

    /// Records a failed attempt and schedules the next one; returns the log line.
    fn failed(&mut self, e: String, now_ms: u64) -> String {
        let delay = crate::backoff::doubling_delay_ms(self.failures, RETRY_BASE_MS, RETRY_MAX_MS);
        self.failures = self.failures.saturating_add(1);
        self.next_attempt_at = now_ms.saturating_add(delay);
        self.last_error = Some(e.clone());
        format!("{e}; retrying in {} s", delay / 1000)
    }

    /// Publishes credentials fetched here to shared data under `key`, or takes over newer ones a
    /// worker of this node published there. Shared data failures are not fatal: the worker then
    /// fetches for itself.
    pub fn share(&mut self, key: &str, shared: &mut dyn SharedStore, now_ms: u64) {
        if self.is_static() {
            return;
        }
        let id = self.provider.describe();
        let (current, cas) = match shared.get(key) {
            Ok((value, cas)) => (value.and_then(|v| SharedCredentials::decode(&v, &id)), cas),
            Err(_) => return,
        };
        let mine = self.held.as_ref().map(|h| h.expires_at.unwrap_or(u64::MAX));
        if self.unpublished {
            if let Some(held) = &self.held {
                let entry = SharedCredentials {
                    keys: held.keys.clone(),
                    expires_store_ms: held.expires_at.map(|e| shift(e, self.skew_ms)),
                    refresh_store_ms: held.refresh_at.map(|r| shift(r, self.skew_ms)),
                };
                if shared.set(key, &entry.encode(&id), cas).unwrap_or(false) {
                    self.unpublished = false;
                }
            }
            return;
        }
        let Some(theirs) = current else { return };
        if self.rejected.as_deref() == Some(theirs.keys.access_key_id.expose()) {
            return;
        }
        let theirs_expire = theirs.expires_store_ms.map(|e| unshift(e, self.skew_ms));
        let newer = mine.is_none_or(|m| theirs_expire.unwrap_or(u64::MAX) > m);
        if newer && theirs_expire.is_none_or(|e| now_ms < e) {
            // The renewal time the fetching worker chose (from the full lifetime), not one
            // computed from what is left of it.
            let refresh_at = match theirs.refresh_store_ms {
                Some(r) => Some(unshift(r, self.skew_ms)),
                None => theirs_expire.map(|e| refresh_time(now_ms, e)),
            };
            self.held = Some(Held {
                keys: theirs.keys,
                refresh_at,
                expires_at: theirs_expire,
            });
            self.failures = 0;
            self.next_attempt_at = 0;
            self.last_error = None;
        }
    }
}

/// An IMDSv2 session: the token (and until when it is usable) and the instance's role.
type ImdsSession = (Option<(Secret, u64)>, Option<String>);

thread_local! {
    /// IMDSv2 sessions by provider, shared by every root context of this Wasm instance (one per
    /// worker): a reconfiguration builds a new store, and must not cost a new session token and
    /// role lookup (credentials themselves are shared node-wide through shared data).
    static IMDS_SESSIONS: std::cell::RefCell<Vec<(String, ImdsSession)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn imds_session(provider: &AwsProvider) -> Option<ImdsSession> {
    if !matches!(provider, AwsProvider::Imds { .. }) {
        return None;
    }
    let id = provider.describe();
    IMDS_SESSIONS.with(|m| {
        m.borrow()
            .iter()
            .find(|(k, _)| *k == id)
            .map(|(_, s)| s.clone())
    })
}

/// When to renew credentials that expire at `expires_at`, seen at `now_ms`.
fn refresh_time(now_ms: u64, expires_at: u64) -> u64 {
    let lifetime = expires_at.saturating_sub(now_ms);
    expires_at.saturating_sub(REFRESH_MARGIN_MS.min(lifetime / 2))
}

/// `GET` the container credentials endpoint, with its authorization token if there is one.
fn container_request(
    url: &HttpUrl,
    upstream: &str,
    authorization: Option<&Secret>,
) -> OutboundRequest {
    let mut headers = vec![("accept".to_string(), "application/json".to_string())];
    if let Some(token) = authorization {
        headers.push(("authorization".into(), token.expose().to_string()));
    }
    get(url, upstream, url.path_and_query.clone(), headers)
}

/// IMDSv2's `PUT` for a session token.
fn imds_token_request(url: &HttpUrl, upstream: &str, base: &str) -> OutboundRequest {
    let mut req = get(
        url,
        upstream,
        format!("{base}{IMDS_TOKEN_PATH}"),
        vec![(
            "x-aws-ec2-metadata-token-ttl-seconds".to_string(),
            IMDS_TOKEN_TTL_S.to_string(),
        )],
    );
    req.method = "PUT".into();
    req.headers.push(("content-length".into(), "0".into()));
    req
}

/// STS `AssumeRoleWithWebIdentity` (unsigned). The token goes in the body, not the URL: it must
/// not reach an access log.
fn web_identity_request(
    sts: &HttpUrl,
    upstream: &str,
    role_arn: &str,
    session_name: &str,
    token: &Secret,
) -> OutboundRequest {
    let body = format!(
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={}&RoleSessionName={}&WebIdentityToken={}",
        percent_encode(role_arn, false),
        percent_encode(session_name, false),
        percent_encode(token.expose(), false)
    );
    let mut req = get(
        sts,
        upstream,
        sts.path_and_query.clone(),
        vec![
            (
                "content-type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("content-length".into(), body.len().to_string()),
            ("accept".into(), "application/xml".into()),
        ],
    );
    req.method = "POST".into();
    req.body = Rc::new(body.into_bytes());
    req
}

fn get(
    url: &HttpUrl,
    upstream: &str,
    path: String,
    headers: Vec<(String, String)>,
) -> OutboundRequest {
    OutboundRequest {
        upstream: upstream.to_string(),
        method: "GET".into(),
        path,
        authority: url.authority(),
        scheme: url.scheme.clone(),
        headers,
        body: Rc::default(),
    }
}

/// Credentials as the container-credentials endpoint and IMDS answer them:
/// `{"AccessKeyId","SecretAccessKey","Token","Expiration"}` (IMDS adds `"Code":"Success"`).
fn parse_credentials_json(body: &[u8]) -> Result<(AwsKeys, Option<u64>), String> {
    let v: Value = crate::json::parse(body).map_err(|_| "no JSON credentials".to_string())?;
    if let Some(code) = v.get("Code").and_then(Value::as_str) {
        if code != "Success" {
            return Err(format!("Code {}", super::log_safe(code, 64)));
        }
    }
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    keys_from(
        text("AccessKeyId"),
        text("SecretAccessKey"),
        text("Token"),
        text("Expiration").as_deref(),
    )
}

/// STS's `AssumeRoleWithWebIdentityResponse` XML.
fn parse_sts_xml(body: &[u8]) -> Result<(AwsKeys, Option<u64>), String> {
    let xml = String::from_utf8_lossy(body);
    let el = |k: &str| super::s3::xml_element(&xml, k).filter(|s| !s.trim().is_empty());
    keys_from(
        el("AccessKeyId"),
        el("SecretAccessKey"),
        el("SessionToken"),
        el("Expiration").as_deref(),
    )
}

fn keys_from(
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    token: Option<String>,
    expiration: Option<&str>,
) -> Result<(AwsKeys, Option<u64>), String> {
    let (Some(access_key_id), Some(secret_access_key)) = (access_key_id, secret_access_key) else {
        return Err("without AccessKeyId and SecretAccessKey".to_string());
    };
    // AWS issues letters and digits; emulators (moto: `test-key`) other visible characters. What
    // the signature's credential scope cannot carry (`/`, `,`, spaces) is refused.
    let scope_safe = |b: u8| b.is_ascii_graphic() && b != b'/' && b != b',';
    if access_key_id.is_empty() || !access_key_id.bytes().all(scope_safe) {
        return Err("an AccessKeyId a signature cannot carry".to_string());
    }
    let expiration = match expiration {
        None => None,
        Some(e) => Some(rfc3339_ms(e.trim()).ok_or("an unreadable Expiration")?),
    };
    Ok((
        AwsKeys {
            access_key_id: Secret::new(access_key_id.trim()),
            secret_access_key: Secret::new(secret_access_key.trim()),
            session_token: token.map(|t| Secret::new(t.trim())),
        },
        expiration,
    ))
}

/// The provider's error code (container endpoint JSON `code`/`Code`, IMDS `Code`, STS XML
/// `<Code>`), log-safe; never the body as a whole.
fn provider_error_code(resp: &HttpResponse) -> Option<String> {
    let from_json = crate::json::parse(&resp.body).ok().and_then(|v| {
        ["Code", "code", "error"]
            .iter()
            .find_map(|k| v.get(k).and_then(Value::as_str).map(str::to_string))
    });
    let code = from_json
        .or_else(|| super::s3::xml_element(&String::from_utf8_lossy(&resp.body), "Code"))?;
    let code = super::log_safe(&code, 64);
    (!code.is_empty()).then_some(code)
}

/// Credentials as one worker publishes them for the others of its node.
struct SharedCredentials {
    keys: AwsKeys,
    /// The provider's expiration (store time, ms).
    expires_store_ms: Option<u64>,
    /// When the fetching worker renews them (store time, ms).
    refresh_store_ms: Option<u64>,
}

impl SharedCredentials {
    fn encode(&self, id: &str) -> Vec<u8> {
        crate::json::to_text(&json!({
            "provider": id,
            "access_key_id": self.keys.access_key_id.expose(),
            "secret_access_key": self.keys.secret_access_key.expose(),
            "session_token": self.keys.session_token.as_ref().map(Secret::expose),
            "expires": self.expires_store_ms,
            "refresh": self.refresh_store_ms,
        }))
        .into_bytes()
    }

    /// The entry, if it is one of `id`'s.
    fn decode(bytes: &[u8], id: &str) -> Option<SharedCredentials> {
        let v: Value = crate::json::parse(bytes).ok()?;
        if v.get("provider")?.as_str()? != id {
            return None;
        }
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(Secret::new);
        Some(SharedCredentials {
            keys: AwsKeys {
                access_key_id: text("access_key_id")?,
                secret_access_key: text("secret_access_key")?,
                session_token: text("session_token"),
            },
            expires_store_ms: v.get("expires").and_then(Value::as_u64),
            refresh_store_ms: v.get("refresh").and_then(Value::as_u64),
        })
    }
}

#[cfg(test)]
mod tests;
