//! Mock GCS OAuth2: the service-account JWT grant, token expiry in virtual time, scopes, and the
//! metadata server.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness_mocks::gcs::token::sign_jwt_with;
use harness_mocks::gcs::{
    MockGcs, ServiceAccountKey, GOOGLE_TOKEN_URI, SCOPE_READ_ONLY, SCOPE_READ_WRITE,
};
use harness_mocks::{CallContext, Handler, HttpRequest, HttpResponse};
use serde_json::{json, Value};

const EMAIL: &str = "exporter@proj.iam.gserviceaccount.com";

/// 2048-bit generation takes seconds in debug builds: one key per role per test binary.
fn key() -> &'static ServiceAccountKey {
    static K: OnceLock<ServiceAccountKey> = OnceLock::new();
    K.get_or_init(|| ServiceAccountKey::generate(EMAIL))
}

fn other_key() -> &'static ServiceAccountKey {
    static K: OnceLock<ServiceAccountKey> = OnceLock::new();
    K.get_or_init(|| ServiceAccountKey::generate("intruder@proj.iam.gserviceaccount.com"))
}

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

fn call(gcs: &MockGcs, req: HttpRequest, now: SystemTime) -> HttpResponse {
    let ctx = CallContext::new(now, "node-1", "storage.googleapis.com");
    gcs.handle(&req, &ctx)
        .response()
        .expect("mock GCS always answers")
        .clone()
}

fn token_request(assertion: &str) -> HttpRequest {
    let body = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
    );
    HttpRequest::new("POST", "/token")
        .with_header("content-type", "application/x-www-form-urlencoded")
        .with_body(body)
}

fn json_of(r: &HttpResponse) -> Value {
    serde_json::from_slice(&r.body).expect("JSON body")
}

fn claims(iat: i64, exp: i64, aud: &str, scope: &str) -> Value {
    json!({"iss": EMAIL, "aud": aud, "scope": scope, "iat": iat, "exp": exp})
}

fn now_s() -> i64 {
    t0().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn mock_with_key() -> MockGcs {
    let gcs = MockGcs::new().with_bucket("bkt");
    gcs.register_key(key());
    gcs
}

fn upload(token: &str, name: &str) -> HttpRequest {
    HttpRequest::new(
        "POST",
        &format!("/upload/storage/v1/b/bkt/o?uploadType=media&name={name}"),
    )
    .with_header("authorization", &format!("Bearer {token}"))
    .with_header("content-type", "application/json")
    .with_body("{}")
}

fn exchange(gcs: &MockGcs, assertion: &str, now: SystemTime) -> HttpResponse {
    call(gcs, token_request(assertion), now)
}

#[test]
fn a_valid_assertion_gets_a_bearer_token_that_authorizes_uploads() {
    let gcs = mock_with_key();
    let r = exchange(
        &gcs,
        &key().grant_assertion(SCOPE_READ_WRITE, GOOGLE_TOKEN_URI, t0()),
        t0(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = json_of(&r);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    let token = body["access_token"].as_str().unwrap();
    let up = call(&gcs, upload(token, "a.json"), t0());
    assert_eq!(up.status, 200, "{}", up.text());
    assert_eq!(gcs.object("bkt", "a.json").unwrap().uploader, EMAIL);
}

fn assert_grant_error(r: &HttpResponse, error: &str, description_part: &str) {
    assert_eq!(r.status, 400, "{}", r.text());
    let body = json_of(r);
    assert_eq!(body["error"], error, "{body}");
    let d = body["error_description"].as_str().unwrap();
    assert!(
        d.contains(description_part),
        "{d:?} lacks {description_part:?}"
    );
}

#[test]
fn a_jwt_signed_by_another_key_is_refused() {
    let gcs = mock_with_key();
    // Right kid and iss, wrong private key.
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": key().private_key_id});
    let forged = sign_jwt_with(
        &other_key().private_key,
        &header,
        &claims(now_s(), now_s() + 3600, GOOGLE_TOKEN_URI, SCOPE_READ_WRITE),
    );
    assert_grant_error(
        &exchange(&gcs, &forged, t0()),
        "invalid_grant",
        "Invalid JWT Signature",
    );
}

#[test]
fn an_unknown_kid_is_refused_and_a_removed_key_stops_working() {
    let gcs = mock_with_key();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "0123456789abcdef"});
    let jwt = sign_jwt_with(
        &key().private_key,
        &header,
        &claims(now_s(), now_s() + 3600, GOOGLE_TOKEN_URI, SCOPE_READ_WRITE),
    );
    assert_grant_error(
        &exchange(&gcs, &jwt, t0()),
        "invalid_grant",
        "Invalid JWT Signature",
    );

    let good = key().grant_assertion(SCOPE_READ_WRITE, GOOGLE_TOKEN_URI, t0());
    assert_eq!(exchange(&gcs, &good, t0()).status, 200);
    assert!(gcs.remove_key(&key().private_key_id));
    assert_eq!(exchange(&gcs, &good, t0()).status, 400);
}

#[test]
fn an_unregistered_account_is_not_found() {
    let gcs = mock_with_key();
    let jwt = other_key().grant_assertion(SCOPE_READ_WRITE, GOOGLE_TOKEN_URI, t0());
    assert_grant_error(
        &exchange(&gcs, &jwt, t0()),
        "invalid_grant",
        "account not found",
    );
}

#[test]
fn expired_future_and_overlong_assertions_are_refused() {
    let gcs = mock_with_key();
    let n = now_s();
    for (iat, exp) in [
        (n - 7200, n - 3600),
        (n + 600, n + 1200),
        (n, n + 7200),
        (n, n),
    ] {
        let jwt = key().sign_jwt(&claims(iat, exp, GOOGLE_TOKEN_URI, SCOPE_READ_WRITE));
        assert_grant_error(&exchange(&gcs, &jwt, t0()), "invalid_grant", "iat and exp");
    }
    // Within the tolerated skew it passes.
    let jwt = key().sign_jwt(&claims(
        n + 30,
        n + 1800,
        GOOGLE_TOKEN_URI,
        SCOPE_READ_WRITE,
    ));
    assert_eq!(exchange(&gcs, &jwt, t0()).status, 200);
}

#[test]
fn audience_must_be_googles_token_uri_or_the_mocks_own() {
    let gcs = mock_with_key();
    let wrong = key().grant_assertion(SCOPE_READ_WRITE, "https://example.com/token", t0());
    assert_grant_error(&exchange(&gcs, &wrong, t0()), "invalid_grant", "audience");

    gcs.set_base_url("http://127.0.0.1:9999/");
    assert_eq!(gcs.token_uri(), "http://127.0.0.1:9999/token");
    let own = key().grant_assertion(SCOPE_READ_WRITE, "http://127.0.0.1:9999/token", t0());
    assert_eq!(exchange(&gcs, &own, t0()).status, 200);
}

#[test]
fn malformed_requests_are_refused_with_googles_errors() {
    let gcs = mock_with_key();
    // alg none: unsigned token.
    let header = json!({"alg": "none", "kid": key().private_key_id});
    let none = sign_jwt_with(
        &key().private_key,
        &header,
        &claims(now_s(), now_s() + 60, GOOGLE_TOKEN_URI, SCOPE_READ_WRITE),
    );
    assert_grant_error(&exchange(&gcs, &none, t0()), "invalid_grant", "RS256");
    assert_grant_error(&exchange(&gcs, "not.a-jwt", t0()), "invalid_grant", "JWT");
    let no_scope = key().sign_jwt(&claims(now_s(), now_s() + 60, GOOGLE_TOKEN_URI, ""));
    assert_grant_error(&exchange(&gcs, &no_scope, t0()), "invalid_scope", "scope");
    let wrong_grant = HttpRequest::new("POST", "/token").with_body("grant_type=client_credentials");
    assert_grant_error(
        &call(&gcs, wrong_grant, t0()),
        "unsupported_grant_type",
        "grant_type",
    );
}

#[test]
fn errors_never_echo_the_assertion() {
    let gcs = mock_with_key();
    let jwt = key().sign_jwt(&claims(
        now_s(),
        now_s() + 60,
        "https://wrong/",
        SCOPE_READ_WRITE,
    ));
    let r = exchange(&gcs, &jwt, t0());
    let sig = jwt.rsplit('.').next().unwrap();
    assert!(!r.text().contains(sig));
}

#[test]
fn tokens_expire_in_virtual_time() {
    let gcs = mock_with_key();
    let r = exchange(
        &gcs,
        &key().grant_assertion(SCOPE_READ_WRITE, GOOGLE_TOKEN_URI, t0()),
        t0(),
    );
    let token = json_of(&r)["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        call(&gcs, upload(&token, "x"), t0() + Duration::from_secs(3598)).status,
        200
    );
    let late = call(&gcs, upload(&token, "x"), t0() + Duration::from_secs(3599));
    assert_eq!(late.status, 401);
    assert_eq!(json_of(&late)["error"]["errors"][0]["reason"], "authError");
}

#[test]
fn read_only_scope_reads_but_cannot_write() {
    let gcs = mock_with_key();
    gcs.put_object("bkt", "cfg", b"{}", "application/json", t0());
    let r = exchange(
        &gcs,
        &key().grant_assertion(SCOPE_READ_ONLY, GOOGLE_TOKEN_URI, t0()),
        t0(),
    );
    let token = json_of(&r)["access_token"].as_str().unwrap().to_string();
    let read = HttpRequest::new("GET", "/storage/v1/b/bkt/o/cfg?alt=media")
        .with_header("authorization", &format!("Bearer {token}"));
    assert_eq!(call(&gcs, read, t0()).status, 200);
    let w = call(&gcs, upload(&token, "cfg"), t0());
    assert_eq!(w.status, 403);
    assert_eq!(json_of(&w)["error"]["code"], 403);
    let del = HttpRequest::new("DELETE", "/storage/v1/b/bkt/o/cfg")
        .with_header("authorization", &format!("Bearer {token}"));
    assert_eq!(call(&gcs, del, t0()).status, 403);
    assert!(gcs.object("bkt", "cfg").is_some());
}

#[test]
fn missing_or_unknown_tokens_get_401() {
    let gcs = mock_with_key();
    let none = HttpRequest::new("GET", "/storage/v1/b/bkt/o");
    assert_eq!(call(&gcs, none, t0()).status, 401);
    let bogus = HttpRequest::new("GET", "/storage/v1/b/bkt/o")
        .with_header("authorization", "Bearer ya29.nope");
    assert_eq!(call(&gcs, bogus, t0()).status, 401);
    let token = gcs.issue_token(EMAIL, &[SCOPE_READ_WRITE], t0());
    gcs.revoke_tokens();
    assert_eq!(call(&gcs, upload(&token, "x"), t0()).status, 401);
}

#[test]
fn metadata_server_needs_its_header_and_issues_usable_tokens() {
    let gcs = MockGcs::new().with_bucket("bkt");
    let path = "/computeMetadata/v1/instance/service-accounts/default/token";
    assert_eq!(call(&gcs, HttpRequest::new("GET", path), t0()).status, 403);
    let r = call(
        &gcs,
        HttpRequest::new("GET", path).with_header("Metadata-Flavor", "Google"),
        t0(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("metadata-flavor"), Some("Google"));
    let token = json_of(&r)["access_token"].as_str().unwrap().to_string();
    assert_eq!(call(&gcs, upload(&token, "wi"), t0()).status, 200);

    // Narrowed to read-only by `?scopes=`.
    let ro = call(
        &gcs,
        HttpRequest::new("GET", &format!("{path}?scopes={SCOPE_READ_ONLY}"))
            .with_header("Metadata-Flavor", "Google"),
        t0(),
    );
    let ro_token = json_of(&ro)["access_token"].as_str().unwrap().to_string();
    assert_eq!(call(&gcs, upload(&ro_token, "wi"), t0()).status, 403);

    gcs.set_metadata_identity(None);
    let off = call(
        &gcs,
        HttpRequest::new("GET", path).with_header("Metadata-Flavor", "Google"),
        t0(),
    );
    assert_eq!(off.status, 404);
}

#[test]
fn a_generated_key_file_is_complete_and_works() {
    use rsa::pkcs8::DecodePrivateKey;
    let gcs = MockGcs::new().with_bucket("bkt");
    let file = gcs.new_service_account_key("fresh@proj.iam.gserviceaccount.com");
    for field in [
        "type",
        "project_id",
        "private_key_id",
        "private_key",
        "client_email",
        "token_uri",
    ] {
        assert!(file[field].is_string(), "{field} missing");
    }
    assert_eq!(file["type"], "service_account");
    assert_eq!(file["project_id"], "proj");
    assert_eq!(file["token_uri"], GOOGLE_TOKEN_URI);
    let pem = file["private_key"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let reloaded = ServiceAccountKey {
        client_email: file["client_email"].as_str().unwrap().to_string(),
        private_key_id: file["private_key_id"].as_str().unwrap().to_string(),
        project_id: "proj".into(),
        private_key: rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap(),
    };
    let r = exchange(
        &gcs,
        &reloaded.grant_assertion(SCOPE_READ_WRITE, GOOGLE_TOKEN_URI, t0()),
        t0(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!format!("{reloaded:?}").contains("PRIVATE"));
}

#[test]
fn the_control_endpoint_registers_a_public_key() {
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    let gcs = MockGcs::new();
    let pem = other_key()
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let reg = HttpRequest::new("POST", "/_mock/service-accounts").with_body(
        json!({"client_email": other_key().client_email, "private_key_id": other_key().private_key_id,
               "public_key_pem": pem})
        .to_string(),
    );
    assert_eq!(call(&gcs, reg, t0()).status, 201);
    let r = exchange(
        &gcs,
        &other_key().grant_assertion(SCOPE_READ_WRITE, GOOGLE_TOKEN_URI, t0()),
        t0(),
    );
    assert_eq!(r.status, 200);
    let bad = HttpRequest::new("POST", "/_mock/service-accounts").with_body(
        json!({"client_email": "a", "private_key_id": "b", "public_key_pem": "junk"}).to_string(),
    );
    assert_eq!(call(&gcs, bad, t0()).status, 400);
}

#[test]
fn every_request_is_logged_with_its_status() {
    let gcs = mock_with_key();
    call(&gcs, HttpRequest::new("GET", "/storage/v1/b/bkt/o"), t0());
    exchange(
        &gcs,
        &key().grant_assertion(SCOPE_READ_WRITE, GOOGLE_TOKEN_URI, t0()),
        t0(),
    );
    let log = gcs.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].status, log[0].request.path.as_str()),
        (401, "/storage/v1/b/bkt/o")
    );
    assert_eq!((log[1].status, log[1].node.as_str()), (200, "node-1"));
    gcs.clear_requests();
    assert!(gcs.requests().is_empty());
}
