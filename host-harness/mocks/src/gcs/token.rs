//! Google OAuth2 for the mock: service-account keys, verification of the RS256 JWT bearer grant
//! (`POST /token`), the metadata server's token endpoint, and the access tokens both issue.
//!
//! Rejections use Google's token-endpoint error JSON (`{"error","error_description"}`) and never
//! echo the assertion, a signature or a token.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePublicKey, EncodePrivateKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use sha2::Sha256;

/// The audience Google's token endpoint requires (and what google-auth always sends).
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

pub const SCOPE_READ_ONLY: &str = "https://www.googleapis.com/auth/devstorage.read_only";
pub const SCOPE_READ_WRITE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
pub const SCOPE_FULL_CONTROL: &str = "https://www.googleapis.com/auth/devstorage.full_control";
pub const SCOPE_CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Google refuses assertions that live longer than one hour.
const MAX_ASSERTION_LIFETIME_SECS: i64 = 3600;

/// A complete service-account key: what `gcloud iam service-accounts keys create` hands out.
#[derive(Clone)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key_id: String,
    pub project_id: String,
    pub private_key: RsaPrivateKey,
}

impl std::fmt::Debug for ServiceAccountKey {
    // The private key never goes into a log line or an assertion message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// A fresh 2048-bit key (slow in debug builds: generate once per test binary and reuse).
    pub fn generate(client_email: &str) -> Self {
        let private_key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
            .expect("RSA key generation cannot fail for 2048 bits");
        ServiceAccountKey {
            client_email: client_email.to_string(),
            private_key_id: random_hex(20),
            project_id: project_of(client_email),
            private_key,
        }
    }

    pub fn public_key(&self) -> RsaPublicKey {
        self.private_key.to_public_key()
    }

    /// The public half as a SubjectPublicKeyInfo PEM (what `POST /_mock/service-accounts` takes).
    pub fn public_key_pem(&self) -> String {
        use rsa::pkcs8::EncodePublicKey;
        self.public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("PEM encoding of an RSA public key cannot fail")
    }

    /// The JSON key file, with `token_uri` pointing where the token requests should go.
    pub fn to_json(&self, token_uri: &str) -> Value {
        let pem = self
            .private_key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 encoding of an RSA key cannot fail");
        json!({
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": pem.as_str(),
            "client_email": self.client_email,
            "client_id": "100000000000000000000",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        })
    }

    /// Signs `claims` as an RS256 JWT with this key's `kid`: what a client sends to `/token`.
    pub fn sign_jwt(&self, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.private_key_id});
        sign_jwt_with(&self.private_key, &header, claims)
    }

    /// A standard grant assertion for `scope`, issued at `now`, valid one hour, for `aud`.
    pub fn grant_assertion(&self, scope: &str, aud: &str, now: SystemTime) -> String {
        let iat = unix_secs(now);
        self.sign_jwt(&json!({
            "iss": self.client_email,
            "scope": scope,
            "aud": aud,
            "iat": iat,
            "exp": iat + 3600,
        }))
    }
}

/// Signs any header + claims with `key` (tests use it to forge bad tokens).
pub fn sign_jwt_with(key: &RsaPrivateKey, header: &Value, claims: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signer = SigningKey::<Sha256>::new(key.clone());
    let sig = signer.sign(signing_input.as_bytes());
    format!(
        "{}.{}",
        signing_input,
        URL_SAFE_NO_PAD.encode(sig.to_bytes())
    )
}

/// Parses a public key PEM: SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`) or PKCS#1.
pub fn parse_public_key_pem(pem: &str) -> Result<RsaPublicKey, String> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
        .map_err(|_| "not an RSA public key PEM".to_string())
}

/// What an access token allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub client_email: String,
    pub scopes: Vec<String>,
    pub expires_at: SystemTime,
}

impl Grant {
    pub fn can_read(&self) -> bool {
        self.scopes.iter().any(|s| {
            matches!(
                s.as_str(),
                SCOPE_READ_ONLY | SCOPE_READ_WRITE | SCOPE_FULL_CONTROL | SCOPE_CLOUD_PLATFORM
            )
        })
    }

    pub fn can_write(&self) -> bool {
        self.scopes.iter().any(|s| {
            matches!(
                s.as_str(),
                SCOPE_READ_WRITE | SCOPE_FULL_CONTROL | SCOPE_CLOUD_PLATFORM
            )
        })
    }
}

/// A token-endpoint rejection, rendered as Google's error JSON with status 400 (401 for clients).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantError {
    pub error: &'static str,
    pub description: String,
}

impl GrantError {
    fn new(error: &'static str, description: &str) -> Self {
        GrantError {
            error,
            description: description.to_string(),
        }
    }

    fn invalid_grant(description: &str) -> Self {
        GrantError::new("invalid_grant", description)
    }

    pub fn to_json(&self) -> Value {
        json!({"error": self.error, "error_description": self.description})
    }
}

struct RegisteredKey {
    client_email: String,
    public_key: RsaPublicKey,
}

/// Registered keys and issued tokens.
pub struct TokenAuthority {
    /// `private_key_id` → key.
    keys: HashMap<String, RegisteredKey>,
    /// access token → grant.
    tokens: HashMap<String, Grant>,
    pub token_lifetime: Duration,
    pub clock_skew: Duration,
}

impl Default for TokenAuthority {
    fn default() -> Self {
        TokenAuthority {
            keys: HashMap::new(),
            tokens: HashMap::new(),
            token_lifetime: Duration::from_secs(3599),
            clock_skew: Duration::from_secs(60),
        }
    }
}

impl TokenAuthority {
    pub fn register_key(&mut self, client_email: &str, private_key_id: &str, key: RsaPublicKey) {
        self.keys.insert(
            private_key_id.to_string(),
            RegisteredKey {
                client_email: client_email.to_string(),
                public_key: key,
            },
        );
    }

    /// Deletes a key (as `gcloud ... keys delete`): its assertions are refused from now on.
    pub fn remove_key(&mut self, private_key_id: &str) -> bool {
        self.keys.remove(private_key_id).is_some()
    }

    pub fn issue(
        &mut self,
        client_email: &str,
        scopes: Vec<String>,
        now: SystemTime,
    ) -> (String, u64) {
        let token = format!("ya29.mock-{}", random_hex(32));
        self.tokens.insert(
            token.clone(),
            Grant {
                client_email: client_email.to_string(),
                scopes,
                expires_at: now + self.token_lifetime,
            },
        );
        (token, self.token_lifetime.as_secs())
    }

    /// The grant behind a live token.
    pub fn lookup(&self, token: &str, now: SystemTime) -> Option<&Grant> {
        self.tokens.get(token).filter(|g| now < g.expires_at)
    }

    pub fn revoke_all(&mut self) {
        self.tokens.clear();
    }

    /// Verifies a JWT bearer assertion; `audiences` lists the accepted `aud` values.
    /// Returns the account and its scopes.
    pub fn verify_assertion(
        &self,
        assertion: &str,
        audiences: &[String],
        now: SystemTime,
    ) -> Result<(String, Vec<String>), GrantError> {
        let mut parts = assertion.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(GrantError::invalid_grant(
                "Invalid JWT: not a JWS compact serialization.",
            ));
        };
        let header = decode_json_segment(h)
            .ok_or_else(|| GrantError::invalid_grant("Invalid JWT: malformed header."))?;
        let claims = decode_json_segment(c)
            .ok_or_else(|| GrantError::invalid_grant("Invalid JWT: malformed claim set."))?;
        if header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err(GrantError::invalid_grant("Invalid JWT: alg must be RS256."));
        }
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        if !self.keys.values().any(|k| k.client_email == iss) {
            return Err(GrantError::invalid_grant(
                "Invalid grant: account not found",
            ));
        }
        // Google checks the signature against the key named by `kid`; an unknown or deleted
        // key, or one that belongs to another account, fails like a bad signature.
        let key = header
            .get("kid")
            .and_then(Value::as_str)
            .and_then(|kid| self.keys.get(kid))
            .filter(|k| k.client_email == iss)
            .ok_or_else(|| GrantError::invalid_grant("Invalid JWT Signature."))?;
        let sig_bytes = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| GrantError::invalid_grant("Invalid JWT Signature."))?;
        let sig = Signature::try_from(sig_bytes.as_slice())
            .map_err(|_| GrantError::invalid_grant("Invalid JWT Signature."))?;
        let signing_input = &assertion[..h.len() + 1 + c.len()];
        VerifyingKey::<Sha256>::new(key.public_key.clone())
            .verify(signing_input.as_bytes(), &sig)
            .map_err(|_| GrantError::invalid_grant("Invalid JWT Signature."))?;

        let aud = claims.get("aud").and_then(Value::as_str).unwrap_or("");
        if !audiences.iter().any(|a| a == aud) {
            return Err(GrantError::invalid_grant(
                "Invalid JWT: Failed audience check.",
            ));
        }
        let (Some(iat), Some(exp)) = (
            claims.get("iat").and_then(Value::as_i64),
            claims.get("exp").and_then(Value::as_i64),
        ) else {
            return Err(GrantError::invalid_grant(
                "Invalid JWT: iat and exp are required.",
            ));
        };
        let now_s = unix_secs(now);
        let skew = self.clock_skew.as_secs() as i64;
        if exp <= iat
            || exp - iat > MAX_ASSERTION_LIFETIME_SECS
            || iat > now_s + skew
            || exp < now_s - skew
        {
            return Err(GrantError::invalid_grant(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
                 timeframe. Check your iat and exp values in the JWT claim.",
            ));
        }
        let scopes: Vec<String> = claims
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if scopes.is_empty() {
            return Err(GrantError::new(
                "invalid_scope",
                "Invalid OAuth scope or ID token audience provided.",
            ));
        }
        Ok((iss.to_string(), scopes))
    }
}

fn decode_json_segment(segment: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
}

pub fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// `svc@my-project.iam.gserviceaccount.com` → `my-project`.
fn project_of(email: &str) -> String {
    email
        .split_once('@')
        .and_then(|(_, d)| d.split('.').next())
        .filter(|p| !p.is_empty())
        .unwrap_or("mock-project")
        .to_string()
}
