//! OAuth2 access tokens for GCS (docs/gcs.md): a service-account key signs an RS256 JWT that the
//! key's `token_uri` exchanges for a token, or, without a key, the metadata server hands one out
//! (workload identity). The token is cached until shortly before it expires and dropped on a 401.
//!
//! Nothing here ever formats the key, the JWT or the token into a message: errors name the
//! endpoint, the HTTP status and Google's `error` / `error_description` only.

use std::cell::RefCell;
use std::rc::Rc;

use crate::json;
use crate::json::Value;
use crate::rs256::sign::SignJob;

use crate::http::{HttpResponse, OutboundRequest};
use crate::http_url::{percent_encode, HttpUrl};
use crate::secret::Secret;
use crate::settings::gcs::{ServiceAccountKey, TokenProvider};

const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// Google accepts assertions that live at most one hour.
const ASSERTION_LIFETIME_S: u64 = 3600;
/// A half-signed assertion older than this is dropped and signed anew: sent any later, it could
/// reach the token endpoint past its `exp` (one hour after `iat`), given clock skew and the call's
/// own time. A signing at one slice per host tick of up to about 4 minutes still finishes under
/// it (docs/gcs.md, "Signing in slices").
const ASSERTION_MAX_AGE_MS: u64 = (ASSERTION_LIFETIME_S - 5 * 60) * 1000;
/// A token is renewed this long before it expires (capped at half its lifetime), so a request
/// never leaves with a token that dies on the way.
const REFRESH_MARGIN_MS: u64 = 5 * 60 * 1000;
/// After a failed token request the next one waits 1 s, doubling up to 60 s.
const RETRY_BASE_MS: u64 = 1000;
const RETRY_MAX_MS: u64 = 60_000;

/// A JWT grant assertion whose signature is being computed, a slice per call of `step`.
pub struct PendingAssertion {
    input: String,
    job: SignJob,
}

impl PendingAssertion {
    /// The next slice; the whole assertion once the signature is done.
    pub fn step(&mut self) -> Option<Result<String, String>> {
        let signature = self.job.step()?;
        Some(signature.map(|sig| format!("{}.{}", self.input, base64url(&sig))))
    }

    /// Every remaining slice at once.
    pub fn finish(mut self) -> Result<String, String> {
        loop {
            if let Some(answer) = self.step() {
                return answer;
            }
        }
    }
}

impl ServiceAccountKey {
    /// The signed grant assertion: RS256, `kid`, `iss`, `scope`, `aud`, one hour from `now_s`.
    pub fn assertion(&self, scope: &str, aud: &str, now_s: u64) -> Result<String, String> {
        self.start_assertion(scope, aud, now_s)?.finish()
    }

    /// The same assertion, its signature left to `PendingAssertion::step`.
    pub fn start_assertion(
        &self,
        scope: &str,
        aud: &str,
        now_s: u64,
    ) -> Result<PendingAssertion, String> {
        let header = match &self.private_key_id {
            Some(kid) => json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
            None => json!({"alg": "RS256", "typ": "JWT"}),
        };
        let claims = json!({
            "iss": self.client_email,
            "scope": scope,
            "aud": aud,
            "iat": now_s,
            "exp": now_s + ASSERTION_LIFETIME_S,
        });
        let input = format!(
            "{}.{}",
            base64url(crate::json::to_text(&header).as_bytes()),
            base64url(crate::json::to_text(&claims).as_bytes())
        );
        let job = self.signer.start(input.as_bytes())?;
        Ok(PendingAssertion { input, job })
    }
}

#[derive(Clone)]
struct Token {
    value: Secret,
    /// Renew from then on.
    refresh_at: u64,
    /// Unusable from then on.
    expires_at: u64,
}

thread_local! {
    /// Tokens by (provider, scope), shared by every root context of this Wasm instance (one per
    /// worker): a reconfiguration builds a new store, and must not cost a new token (docs/gcs.md).
    static TOKENS: RefCell<Vec<(String, Token)>> = const { RefCell::new(Vec::new()) };
}

/// The cached token and the state of its renewal.
pub struct TokenCache {
    provider: TokenProvider,
    scope: &'static str,
    /// This cache's entry in `TOKENS`.
    id: String,
    failures: u32,
    next_attempt_at: u64,
    last_error: Option<String>,
    /// Token requests sent so far and the time the last JWT signature took (diagnostics).
    pub requests: u64,
    /// The assertion being signed, a slice per call of `request` (docs/gcs.md), and when its
    /// signing started (local ms).
    pending: Option<(u64, PendingAssertion)>,
    /// The store's clock minus this node's (ms): the assertion's `iat`/`exp` are Google's time.
    skew_ms: i64,
}

impl TokenCache {
    pub fn new(provider: TokenProvider, scope: &'static str) -> TokenCache {
        let id = format!("{} {scope}", provider.describe());
        TokenCache {
            provider,
            scope,
            id,
            failures: 0,
            next_attempt_at: 0,
            last_error: None,
            requests: 0,
            pending: None,
            skew_ms: 0,
        }
    }

    pub fn set_clock_skew(&mut self, skew_ms: i64) {
        self.skew_ms = skew_ms;
    }

    pub fn provider(&self) -> &TokenProvider {
        &self.provider
    }

    fn token(&self) -> Option<Token> {
        TOKENS.with(|t| {
            t.borrow()
                .iter()
                .find(|(id, _)| *id == self.id)
                .map(|(_, tok)| tok.clone())
        })
    }

    fn set_token(&self, token: Option<Token>) {
        TOKENS.with(|t| {
            let mut t = t.borrow_mut();
            t.retain(|(id, _)| *id != self.id);
            if let Some(token) = token {
                t.push((self.id.clone(), token));
            }
        });
    }

    /// The `authorization` value, or why there is none yet.
    pub fn bearer(&self, now_ms: u64) -> Result<String, String> {
        match &self.token() {
            Some(t) if now_ms < t.expires_at => Ok(format!("Bearer {}", t.value.expose())),
            _ => Err(match &self.last_error {
                Some(e) => format!(
                    "no GCS access token ({e}; next attempt in {} ms)",
                    self.next_attempt_at.saturating_sub(now_ms)
                ),
                None => "no GCS access token yet".to_string(),
            }),
        }
    }

    /// The token request, when a token is missing or due for renewal and no failed attempt is
    /// backing off. Signing the JWT (one RSA-2048 signature) is sliced: each call runs one slice
    /// (a tick each in the filter) and the request comes with the last (`rs256/sign.rs`).
    pub fn request(&mut self, now_ms: u64) -> Option<OutboundRequest> {
        let due = self.token().is_none_or(|t| now_ms >= t.refresh_at);
        if !due || now_ms < self.next_attempt_at {
            // A half-signed assertion is not kept for later (another root context of this
            // worker got the token meanwhile: `TOKENS` is shared): resumed at the next renewal,
            // its `iat` would be about an hour old.
            self.pending = None;
            return None;
        }
        let request = match &self.provider {
            TokenProvider::Metadata { url, upstream } => {
                metadata_request(url, upstream, self.scope)
            }
            TokenProvider::ServiceAccount { .. } => {
                let assertion = self.assertion_step(now_ms)?;
                let TokenProvider::ServiceAccount {
                    token_uri,
                    upstream,
                    ..
                } = &self.provider
                else {
                    return None;
                };
                grant_request(token_uri, upstream, &assertion)
            }
        };
        self.requests += 1;
        Some(request)
    }

    /// One slice of the JWT's signature (the first call only starts it); the assertion once it
    /// is signed. A failure is counted and backs off.
    fn assertion_step(&mut self, now_ms: u64) -> Option<String> {
        let TokenProvider::ServiceAccount { key, aud, .. } = &self.provider else {
            return None;
        };
        if self
            .pending
            .as_ref()
            .is_some_and(|(since, _)| now_ms.saturating_sub(*since) > ASSERTION_MAX_AGE_MS)
        {
            // Its slices waited too long (this worker sent no store request meanwhile: the lease
            // was elsewhere, nothing to export): its `iat` is too old to send.
            self.pending = None;
        }
        let Some((_, pending)) = self.pending.as_mut() else {
            let iat_ms = super::timestamp::shift(now_ms, self.skew_ms);
            match key.start_assertion(self.scope, aud, iat_ms / 1000) {
                Ok(pending) => self.pending = Some((now_ms, pending)),
                Err(e) => {
                    self.failed(e, now_ms);
                }
            }
            return None;
        };
        let signed = pending.step()?;
        self.pending = None;
        match signed {
            Ok(assertion) => Some(assertion),
            Err(e) => {
                self.failed(e, now_ms);
                None
            }
        }
    }

    /// Whether an assertion is half-signed (the next `request` runs its next slice).
    pub fn signing(&self) -> bool {
        self.pending.is_some()
    }

    /// A 401 from the store: the token is no good, get a new one now.
    pub fn invalidate(&mut self) {
        self.set_token(None);
        self.next_attempt_at = 0;
    }

    /// The token endpoint's answer.
    pub fn answered(
        &mut self,
        answer: Result<HttpResponse, String>,
        now_ms: u64,
    ) -> Result<(), String> {
        let resp = match answer {
            Ok(r) => r,
            Err(reason) => {
                let e = format!(
                    "the GCS token request to {} failed: {reason}",
                    self.provider.describe()
                );
                return Err(self.failed(e, now_ms));
            }
        };
        if !(200..=299).contains(&resp.status) {
            let e = format!(
                "the GCS token request to {} was refused: {}",
                self.provider.describe(),
                token_error(&resp)
            );
            return Err(self.failed(e, now_ms));
        }
        let parsed = crate::json::parse(&resp.body).ok();
        let token = parsed
            .as_ref()
            .and_then(|v| v.get("access_token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()));
        let Some(token) = token else {
            let e = format!(
                "the GCS token endpoint {} answered without a usable access_token",
                self.provider.describe()
            );
            return Err(self.failed(e, now_ms));
        };
        // Google issues 3599 s; a missing or absurd value gets a conservative five minutes.
        let lifetime_ms = parsed
            .as_ref()
            .and_then(|v| v.get("expires_in"))
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.trim().parse().ok()))
            .filter(|&s| s > 0)
            .unwrap_or(300)
            .min(86_400)
            * 1000;
        self.set_token(Some(Token {
            value: Secret::new(token),
            refresh_at: now_ms + lifetime_ms - REFRESH_MARGIN_MS.min(lifetime_ms / 2),
            expires_at: now_ms + lifetime_ms,
        }));
        self.failures = 0;
        self.next_attempt_at = 0;
        self.last_error = None;
        Ok(())
    }

    /// Records a failed attempt and schedules the next one; returns the log line.
    fn failed(&mut self, e: String, now_ms: u64) -> String {
        let delay = crate::backoff::doubling_delay_ms(self.failures, RETRY_BASE_MS, RETRY_MAX_MS);
        self.failures = self.failures.saturating_add(1);
        self.next_attempt_at = now_ms.saturating_add(delay);
        self.last_error = Some(e.clone());
        format!("{e}; retrying in {} s", delay / 1000)
    }
}

/// Whether a token endpoint refused the assertion for its times (Google's `invalid_grant`
/// "Check your iat and exp values").
pub fn rejects_assertion_time(resp: &HttpResponse) -> bool {
    resp.status == 400 && {
        let body = String::from_utf8_lossy(&resp.body);
        crate::text::find(&body, "invalid_grant").is_some()
            && crate::text::find(&body, "iat").is_some()
    }
}

/// Google's token-endpoint error (`{"error","error_description"}`), or the storage API's JSON
/// error shape, or the status alone. Never the body as a whole (it could echo the request).
fn token_error(resp: &HttpResponse) -> String {
    let v = crate::json::parse(&resp.body).unwrap_or(Value::Null);
    let error = v.get("error");
    let (code, description) = match error {
        Some(Value::String(code)) => (
            code.clone(),
            v.get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ),
        Some(Value::Object(o)) => (
            o.get("status")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            o.get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ),
        _ => (String::new(), String::new()),
    };
    let mut line = format!("HTTP {}", resp.status);
    for part in [code, description] {
        let part = super::log_safe(&part, 200);
        if !part.is_empty() {
            line.push(' ');
            line.push_str(&part);
        }
    }
    line
}

/// Base64url without padding (RFC 7515's JWS encoding): the standard alphabet's two symbols
/// swapped and the padding dropped.
/// The JWT grant: the signed assertion exchanged at the key's token URI.
fn grant_request(token_uri: &HttpUrl, upstream: &str, assertion: &str) -> OutboundRequest {
    let body = format!(
        "grant_type={}&assertion={assertion}",
        percent_encode(JWT_BEARER_GRANT, false)
    );
    OutboundRequest {
        upstream: upstream.to_string(),
        method: "POST".into(),
        path: token_uri.path_and_query.clone(),
        authority: token_uri.authority(),
        scheme: token_uri.scheme.clone(),
        headers: vec![
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            ("content-length".into(), body.len().to_string()),
            ("accept".into(), "application/json".into()),
        ],
        body: Rc::new(body.into_bytes()),
    }
}

/// The metadata server's token for the default service account, for `scope`.
fn metadata_request(url: &HttpUrl, upstream: &str, scope: &str) -> OutboundRequest {
    let base = crate::text::trim_end_ascii(url.path(), b'/');
    OutboundRequest {
        upstream: upstream.to_string(),
        method: "GET".into(),
        path: format!(
            "{base}{METADATA_TOKEN_PATH}?scopes={}",
            percent_encode(scope, false)
        ),
        authority: url.authority(),
        scheme: url.scheme.clone(),
        headers: vec![("metadata-flavor".into(), "Google".into())],
        body: Rc::default(),
    }
}

pub fn base64url(data: &[u8]) -> String {
    crate::document::base64(data)
        .chars()
        .filter_map(|c| match c {
            '+' => Some('-'),
            '/' => Some('_'),
            '=' => None,
            c => Some(c),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::gcs::{GOOGLE_TOKEN_URI, SCOPE_READ_ONLY};

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(
            crate::rs256::key::base64_decode("Zm9v\nYmFy").unwrap(),
            b"foobar"
        );
        assert_eq!(
            crate::rs256::key::base64_decode("Zm9vYg==").unwrap(),
            b"foob"
        );
        assert_eq!(crate::rs256::key::base64_decode("Zm9v*"), None);
    }

    /// The assertion verified by an independent RS256 implementation (the mock's, RustCrypto
    /// `rsa`), with its `kid`, `iss`, `aud`, scope and lifetime checks.
    #[test]
    fn assertions_verify_against_the_keys_public_half() {
        use harness_mocks::gcs::token::TokenAuthority;
        let generated =
            harness_mocks::gcs::ServiceAccountKey::generate("a@p.iam.gserviceaccount.com");
        let file = generated.to_json(GOOGLE_TOKEN_URI).to_string();
        let key = ServiceAccountKey::parse(&file).unwrap();
        assert_eq!(
            key.private_key_id.as_deref(),
            Some(generated.private_key_id.as_str())
        );
        assert!(
            !format!("{key:?}").contains("PRIVATE"),
            "Debug hides the key"
        );
        let mut authority = TokenAuthority::default();
        authority.register_key(
            &generated.client_email,
            &generated.private_key_id,
            generated.public_key(),
        );
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let jwt = key
            .assertion(SCOPE_READ_ONLY, GOOGLE_TOKEN_URI, 1_700_000_000)
            .unwrap();
        let (email, scopes) = authority
            .verify_assertion(&jwt, &[GOOGLE_TOKEN_URI.to_string()], now)
            .unwrap();
        assert_eq!(email, "a@p.iam.gserviceaccount.com");
        assert_eq!(scopes, [SCOPE_READ_ONLY]);
        // Another audience is refused: `aud` is part of what is signed.
        assert!(authority
            .verify_assertion(&jwt, &["https://elsewhere/token".to_string()], now)
            .is_err());
    }

    const T0: u64 = 1_700_000_000_000;

    fn service_account() -> TokenProvider {
        let generated =
            harness_mocks::gcs::ServiceAccountKey::generate("a@p.iam.gserviceaccount.com");
        let file = generated.to_json(GOOGLE_TOKEN_URI).to_string();
        TokenProvider::ServiceAccount {
            key: ServiceAccountKey::parse(&file).unwrap(),
            token_uri: HttpUrl::parse(GOOGLE_TOKEN_URI).unwrap(),
            aud: GOOGLE_TOKEN_URI.to_string(),
            upstream: "google".into(),
        }
    }

    /// Calls `request` every `step` ms from `now` until the grant leaves: when it left, and its
    /// assertion's `iat`.
    fn grant_sent(cache: &mut TokenCache, now: u64, step: u64) -> (u64, u64) {
        let (at, request) = (0..100)
            .map(|i| now + i * step)
            .find_map(|at| cache.request(at).map(|r| (at, r)))
            .expect("a grant request within 100 calls");
        let body = String::from_utf8(request.body.to_vec()).unwrap();
        let assertion = body.split("assertion=").nth(1).unwrap();
        let claims = assertion.split('.').nth(1).unwrap();
        let claims = crate::rs256::key::base64_decode(&claims.replace('-', "+").replace('_', "/"));
        let claims: Value = crate::json::parse(&claims.unwrap()).unwrap();
        (at, claims["iat"].as_u64().unwrap())
    }

    /// A signing whose slices stopped for two hours (no store request meanwhile) starts again
    /// rather than send an assertion past its `exp`.
    #[test]
    fn a_signing_resumed_too_late_starts_again_with_a_fresh_iat() {
        let mut cache = TokenCache::new(service_account(), SCOPE_READ_ONLY);
        assert!(
            cache.request(T0).is_none() && cache.signing(),
            "signing started"
        );
        assert!(cache.request(T0 + 1000).is_none(), "one slice");
        let later = T0 + 2 * 3600 * 1000;
        assert_eq!(grant_sent(&mut cache, later, 1000).1, later / 1000);
        // A signing at one slice a minute (13 slices) still sends its first `iat`.
        let mut slow = TokenCache::new(service_account(), SCOPE_READ_ONLY);
        let (sent_at, iat) = grant_sent(&mut slow, later, 60_000);
        assert!(
            sent_at - later > 10 * 60_000,
            "the test needs a long signing"
        );
        assert_eq!(iat, later / 1000);
    }

    /// A token another root context of the worker got meanwhile (the cache is shared) ends a
    /// half-done signing: at the next renewal the signing starts anew.
    #[test]
    fn a_signing_is_dropped_when_a_shared_token_arrives() {
        let provider = service_account();
        let mut cache = TokenCache::new(provider.clone(), SCOPE_READ_ONLY);
        let mut other = TokenCache::new(provider, SCOPE_READ_ONLY);
        assert!(cache.request(T0).is_none() && cache.signing());
        let token = HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: br#"{"access_token":"t","expires_in":1200}"#.to_vec(),
        };
        other.answered(Ok(token), T0 + 1000).unwrap();
        assert!(cache.request(T0 + 2000).is_none(), "not due");
        assert!(!cache.signing(), "the half-done signing is dropped");
        // Renewal after 20 min - 5 min.
        let renewal = T0 + 1000 + 15 * 60 * 1000;
        assert!(cache.request(renewal - 1).is_none());
        assert_eq!(grant_sent(&mut cache, renewal, 1000).1, renewal / 1000);
    }
}
