use super::*;
use crate::node_lock::fake::{CasRules, FakeStore};

const T0: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn url(s: &str) -> HttpUrl {
    HttpUrl::parse(s).unwrap()
}

fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

fn rfc3339(ms: u64) -> String {
    let d = crate::store::sigv4::amz_dates_for_tests(ms);
    // YYYYMMDDTHHMMSSZ → YYYY-MM-DDTHH:MM:SSZ
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &d[0..4],
        &d[4..6],
        &d[6..8],
        &d[9..11],
        &d[11..13],
        &d[13..15]
    )
}

fn creds_json(ak: &str, expires_ms: u64) -> String {
    format!(
        r#"{{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"{ak}","SecretAccessKey":"{SK}","Token":"TOKEN-{ak}","Expiration":"{}"}}"#,
        rfc3339(expires_ms)
    )
}

fn imds() -> CredentialChain {
    CredentialChain::new(AwsProvider::Imds {
        url: url("http://169.254.169.254"),
        upstream: "imds".into(),
    })
}

/// IMDSv2: token PUT with its TTL header, role lookup with the token, credentials GET; then
/// nothing until the refresh time, five minutes before expiry.
#[test]
fn imdsv2_token_role_credentials_then_refresh_before_expiry() {
    let mut c = imds();
    assert!(c.keys(T0).is_err());
    let r = c.request(T0).unwrap();
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("PUT", "/latest/api/token")
    );
    assert_eq!(r.upstream, "imds");
    assert_eq!(
        r.header("x-aws-ec2-metadata-token-ttl-seconds"),
        Some("21600")
    );
    c.answered(Ok(resp(200, &[], "IMDSTOKEN")), T0).unwrap();
    let r = c.request(T0).unwrap();
    assert_eq!(r.path, "/latest/meta-data/iam/security-credentials/");
    assert_eq!(r.header("x-aws-ec2-metadata-token"), Some("IMDSTOKEN"));
    c.answered(Ok(resp(200, &[], "my-role\n")), T0).unwrap();
    let r = c.request(T0).unwrap();
    assert_eq!(r.path, "/latest/meta-data/iam/security-credentials/my-role");
    let exp = T0 + 15 * 60_000;
    c.answered(Ok(resp(200, &[], &creds_json("ASIA1", exp))), T0)
        .unwrap();
    let k = c.keys(T0).unwrap();
    assert_eq!(k.access_key_id.expose(), "ASIA1");
    assert_eq!(k.session_token.as_ref().unwrap().expose(), "TOKEN-ASIA1");
    assert_eq!(c.requests, 3);
    // No request until five minutes before expiry; then straight to the credentials (token and
    // role are kept).
    assert!(c.request(exp - 5 * 60_000 - 1).is_none());
    let r = c.request(exp - 5 * 60_000).unwrap();
    assert_eq!(r.path, "/latest/meta-data/iam/security-credentials/my-role");
    // The old keys stay usable while the refresh is under way.
    assert!(c.keys(exp - 1).is_ok());
    assert!(c.keys(exp).is_err(), "expired keys are never used");
}

#[test]
fn imds_errors_back_off_drop_the_token_and_never_quote_secrets() {
    let mut c = imds();
    c.request(T0).unwrap();
    let e = c.answered(Ok(resp(403, &[], "")), T0).unwrap_err();
    assert!(e.contains("HTTP 403") && e.contains("hop limit"), "{e}");
    assert!(c.request(T0 + 999).is_none(), "backs off 1 s");
    c.request(T0 + 1000).unwrap();
    c.answered(Ok(resp(200, &[], "TOK")), T0 + 1000).unwrap();
    c.request(T0 + 1000).unwrap();
    c.answered(Ok(resp(200, &[], "role")), T0 + 1000).unwrap();
    c.request(T0 + 1000).unwrap();
    // A refused session token: a new one is asked for first.
    let e = c.answered(Ok(resp(401, &[], "")), T0 + 1000).unwrap_err();
    assert!(!e.contains("TOK"), "{e}");
    let r = c.request(T0 + 10_000).unwrap();
    assert_eq!(r.method, "PUT");
    // A body that is not credentials: named, not quoted.
    c.answered(Ok(resp(200, &[], "TOK2")), T0 + 10_000).unwrap();
    c.request(T0 + 10_000).unwrap();
    let e = c
        .answered(
            Ok(resp(200, &[], "{\"SecretAccessKey\":\"S3CR3T\"}")),
            T0 + 10_000,
        )
        .unwrap_err();
    assert!(
        e.contains("without AccessKeyId") && !e.contains("S3CR3T"),
        "{e}"
    );
}

#[test]
fn container_credentials_with_authorization_token() {
    let mut c = CredentialChain::new(AwsProvider::Container {
        url: url("http://169.254.170.23/v1/credentials"),
        upstream: "eks-pod-identity".into(),
        authorization: Some(Secret::new("AUTHTOKEN")),
    });
    let r = c.request(T0).unwrap();
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("GET", "/v1/credentials")
    );
    assert_eq!(r.authority, "169.254.170.23");
    assert_eq!(r.header("authorization"), Some("AUTHTOKEN"));
    // ECS answers without `Code`.
    let body = creds_json("ASIAC", T0 + 60_000).replace("\"Code\":\"Success\",", "");
    c.answered(Ok(resp(200, &[], &body)), T0).unwrap();
    assert_eq!(c.keys(T0).unwrap().access_key_id.expose(), "ASIAC");
    // 60-second credentials are renewed at half their lifetime.
    assert!(c.request(T0 + 29_999).is_none());
    assert!(c.request(T0 + 30_000).is_some());
    let e = c
        .answered(
            Ok(resp(
                401,
                &[],
                "{\"code\":\"AccessDeniedException\",\"message\":\"x\"}",
            )),
            T0 + 30_000,
        )
        .unwrap_err();
    assert!(e.contains("HTTP 401 AccessDeniedException"), "{e}");
    assert!(!format!("{:?}", c.provider()).contains("AUTHTOKEN"));
}

#[test]
fn web_identity_posts_the_token_in_the_body_and_reads_sts_xml() {
    let mut c = CredentialChain::new(AwsProvider::WebIdentity {
        sts: url("https://sts.eu-west-1.amazonaws.com"),
        upstream: "sts".into(),
        role_arn: "arn:aws:iam::123456789012:role/cb".into(),
        session_name: "config-bridge".into(),
        token: Secret::new("eyJ.JWT.sig"),
    });
    let r = c.request(T0).unwrap();
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/"));
    let body = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(body.starts_with("Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fcb&RoleSessionName=config-bridge&WebIdentityToken=eyJ.JWT.sig"), "{body}");
    let xml = format!(
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
         <AccessKeyId>ASIAW</AccessKeyId><SecretAccessKey>{SK}</SecretAccessKey>\
         <SessionToken>ST</SessionToken><Expiration>{}</Expiration></Credentials>\
         </AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
        rfc3339(T0 + 3_600_000)
    );
    c.answered(Ok(resp(200, &[], &xml)), T0).unwrap();
    assert_eq!(
        c.keys(T0).unwrap().session_token.as_ref().unwrap().expose(),
        "ST"
    );
    // STS errors: the code only.
    c.invalidate();
    c.request(T0).unwrap();
    let e = c
        .answered(
            Ok(resp(
                403,
                &[],
                "<ErrorResponse><Error><Code>InvalidIdentityToken</Code><Message>eyJ.JWT.sig bad</Message></Error></ErrorResponse>",
            )),
            T0,
        )
        .unwrap_err();
    assert!(
        e.contains("InvalidIdentityToken") && !e.contains("eyJ"),
        "{e}"
    );
}

/// The lease holder publishes what it fetched; another worker (a new holder) takes it over
/// instead of fetching: one fetch per node per refresh.
#[test]
fn credentials_are_shared_through_shared_data() {
    let mut shared = FakeStore::new(CasRules::Ngx);
    let key = "config-bridge/v1/store-credentials";
    let mut a = imds();
    let mut b = imds();
    for (status, body) in [
        (200, "TOK".to_string()),
        (200, "role".to_string()),
        (200, creds_json("ASIA1", T0 + 900_000)),
    ] {
        a.request(T0).unwrap();
        a.answered(Ok(resp(status, &[], &body)), T0).unwrap();
    }
    a.share(key, &mut shared, T0);
    let stored = String::from_utf8(shared.get(key).unwrap().0.unwrap()).unwrap();
    assert!(stored.contains("ASIA1"));
    b.share(key, &mut shared, T0 + 1000);
    assert_eq!(b.keys(T0 + 1000).unwrap().access_key_id.expose(), "ASIA1");
    assert!(b.request(T0 + 1000).is_none(), "no fetch of its own");
    // At the refresh time b (now the holder) fetches, publishes, and a takes the new keys.
    let refresh = T0 + 600_000;
    // The worker's IMDSv2 session (token, role) is kept: straight to the credentials.
    let r = b.request(refresh).unwrap();
    assert_eq!(r.path, "/latest/meta-data/iam/security-credentials/role");
    b.answered(
        Ok(resp(200, &[], &creds_json("ASIA2", T0 + 1_800_000))),
        refresh,
    )
    .unwrap();
    b.share(key, &mut shared, refresh);
    a.share(key, &mut shared, refresh);
    assert_eq!(a.keys(refresh).unwrap().access_key_id.expose(), "ASIA2");
    assert!(a.request(refresh).is_none());
    // Keys the store refused (ExpiredToken) are not taken back from shared data.
    a.invalidate();
    a.share(key, &mut shared, refresh + 1);
    assert!(a.keys(refresh + 1).is_err());
    assert!(a.request(refresh + 1).is_some(), "fetches new ones");
    // Another provider's entry is not taken.
    let mut other = CredentialChain::new(AwsProvider::Imds {
        url: url("http://127.0.0.1:1338"),
        upstream: "x".into(),
    });
    other.share(key, &mut shared, refresh);
    assert!(other.keys(refresh).is_err());
}

/// Expirations are the provider's time: with this node 20 minutes behind, credentials that the
/// provider says expire in 15 minutes are renewed on the node's clock accordingly.
#[test]
fn expiry_follows_the_store_clock() {
    let mut c = imds();
    let skew = 20 * 60_000;
    c.set_clock_skew(skew);
    let local = T0 - skew as u64;
    for body in [
        "TOK".to_string(),
        "role".into(),
        creds_json("ASIA1", T0 + 900_000),
    ] {
        c.request(local).unwrap();
        c.answered(Ok(resp(200, &[], &body)), local).unwrap();
    }
    assert!(c.keys(local).is_ok(), "not taken as expired");
    assert!(c.request(local + 599_999).is_none());
    assert!(c.request(local + 600_000).is_some());
}

#[test]
fn static_keys_need_nothing() {
    let mut c = CredentialChain::new(AwsProvider::Static(AwsKeys {
        access_key_id: Secret::new("AK"),
        secret_access_key: Secret::new(SK),
        session_token: None,
    }));
    assert!(c.request(T0).is_none());
    c.invalidate();
    assert!(c.keys(T0).is_ok());
}
