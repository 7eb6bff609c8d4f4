//! The verifier against the AWS SigV4 test suite and the S3 documentation's examples.

use std::path::Path;
use std::time::{Duration, SystemTime};

use harness_mocks::sigv4::{self, parse_amz_date, PathRule, SecretKey, SigError, VerifyRules};
use harness_mocks::HttpRequest;

const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// Parses a test-suite `header-signed-request.txt` into a request.
fn parse_request(text: &str) -> HttpRequest {
    let (head, body) = match text.split_once("\n\n") {
        Some((h, b)) => (h, b),
        None => (text.trim_end_matches('\n'), ""),
    };
    let mut lines = head.lines();
    let line = lines.next().unwrap();
    let (method, rest) = line.split_once(' ').unwrap();
    let target = rest.strip_suffix(" HTTP/1.1").unwrap_or(rest);
    let mut req = HttpRequest::new(method, target);
    for l in lines {
        if l.starts_with(' ') || l.starts_with('\t') {
            // A folded header line continues the previous value.
            let last = req.headers.last_mut().unwrap();
            last.1.push('\n');
            last.1.push_str(l);
            continue;
        }
        let (k, v) = l.split_once(':').unwrap();
        req.headers.push((k.to_ascii_lowercase(), v.to_string()));
    }
    req.authority = req.header("host").unwrap_or_default().to_string();
    req.body = body.as_bytes().to_vec();
    req
}

fn suite_now() -> SystemTime {
    parse_amz_date("20150830T123600Z").unwrap()
}

fn suite_lookup(token: Option<String>) -> impl Fn(&str) -> Option<SecretKey> {
    move |ak| {
        (ak == "AKIDEXAMPLE").then(|| SecretKey {
            secret_key: SUITE_SECRET.to_string(),
            session_token: token.clone(),
        })
    }
}

#[test]
fn every_vector_of_the_aws_test_suite_verifies() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3_sigv4_vectors");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let case = entry.unwrap().path();
        if !case.is_dir() {
            continue;
        }
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let ctx: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("context.json")).unwrap())
                .unwrap();
        let req = parse_request(
            &std::fs::read_to_string(case.join("header-signed-request.txt")).unwrap(),
        );
        let normalize = ctx["normalize"].as_bool().unwrap();
        let token = ctx["credentials"]["token"].as_str().map(str::to_string);
        let rules = VerifyRules::generic("us-east-1", "service", normalize, suite_now());
        let expected_canonical =
            std::fs::read_to_string(case.join("header-canonical-request.txt")).unwrap();
        let auth = sigv4::parse_authorization(req.header("authorization").unwrap()).unwrap();
        let payload = req
            .header("x-amz-content-sha256")
            .map(str::to_string)
            .unwrap_or_else(|| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&req.body)));
        let canonical = sigv4::canonical_request(
            &req,
            &auth.signed_headers,
            &payload,
            PathRule::Generic { normalize },
        )
        .unwrap();
        assert_eq!(
            canonical,
            expected_canonical.trim_end_matches('\n'),
            "{name}: canonical request"
        );
        let verified = sigv4::verify(&req, &rules, suite_lookup(token.clone()));
        assert!(verified.is_ok(), "{name}: {verified:?}");

        // The same request with one byte of the secret changed must fail.
        let wrong = sigv4::verify(&req, &rules, |_: &str| {
            Some(SecretKey {
                secret_key: SUITE_SECRET.replace('w', "W"),
                session_token: token.clone(),
            })
        });
        assert!(
            matches!(wrong, Err(SigError::SignatureDoesNotMatch { .. })),
            "{name}: {wrong:?}"
        );
        checked.push(name);
    }
    assert!(checked.len() >= 38, "{checked:?}");
    for must in [
        "get-vanilla",
        "get-vanilla-query-order-key-case",
        "post-x-www-form-urlencoded",
        "get-utf8",
    ] {
        assert!(checked.iter().any(|c| c == must), "{must} missing");
    }
}

fn s3_doc_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    signed: &str,
    sig: &str,
) -> HttpRequest {
    let mut req = HttpRequest::new(method, path).with_body(body.to_vec());
    req.authority = "examplebucket.s3.amazonaws.com".into();
    for (k, v) in headers {
        req = req.with_header(k, v);
    }
    req.with_header(
        "authorization",
        &format!(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders={signed},Signature={sig}"
        ),
    )
}

fn s3_doc_lookup(ak: &str) -> Option<SecretKey> {
    (ak == "AKIAIOSFODNN7EXAMPLE").then(|| SecretKey {
        secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        session_token: None,
    })
}

const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[test]
fn the_s3_documentation_examples_verify_with_s3_rules() {
    let now = parse_amz_date("20130524T000000Z").unwrap();
    let rules = VerifyRules::s3("us-east-1", now);
    let get = s3_doc_request(
        "GET",
        "/test.txt",
        &[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY),
            ("x-amz-date", "20130524T000000Z"),
        ],
        b"",
        "host;range;x-amz-content-sha256;x-amz-date",
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    );
    assert_eq!(
        sigv4::verify(&get, &rules, s3_doc_lookup)
            .unwrap()
            .access_key,
        "AKIAIOSFODNN7EXAMPLE"
    );

    // PUT: `$` in the key is sent raw here and encoded by the verifier (single encoding).
    let body = b"Welcome to Amazon S3.";
    let put = s3_doc_request(
        "PUT",
        "/test$file.text",
        &[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            (
                "x-amz-content-sha256",
                "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
            ),
        ],
        body,
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
    );
    let v = sigv4::verify(&put, &rules, s3_doc_lookup).unwrap();
    assert_eq!(
        v.payload_hash,
        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
    );
    let mut encoded = put.clone();
    encoded.path = "/test%24file.text".into();
    assert!(
        sigv4::verify(&encoded, &rules, s3_doc_lookup).is_ok(),
        "encoded path verifies the same"
    );

    let lifecycle = s3_doc_request(
        "GET",
        "/?lifecycle",
        &[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-content-sha256", EMPTY),
        ],
        b"",
        "host;x-amz-content-sha256;x-amz-date",
        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
    );
    assert!(sigv4::verify(&lifecycle, &rules, s3_doc_lookup).is_ok());

    let list = s3_doc_request(
        "GET",
        "/?max-keys=2&prefix=J",
        &[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-content-sha256", EMPTY),
        ],
        b"",
        "host;x-amz-content-sha256;x-amz-date",
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
    );
    assert!(sigv4::verify(&list, &rules, s3_doc_lookup).is_ok());

    // Tampering with a signed header, the path or the query breaks the signature.
    let mut tampered = get.clone();
    tampered.headers.retain(|(k, _)| k != "range");
    tampered = tampered.with_header("range", "bytes=0-10");
    assert!(matches!(
        sigv4::verify(&tampered, &rules, s3_doc_lookup),
        Err(SigError::SignatureDoesNotMatch { .. })
    ));
    let mut moved = list.clone();
    moved.path = "/?max-keys=3&prefix=J".into();
    assert!(matches!(
        sigv4::verify(&moved, &rules, s3_doc_lookup),
        Err(SigError::SignatureDoesNotMatch { .. })
    ));
}

fn suite_get() -> HttpRequest {
    parse_request(
        "GET / HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31\n",
    )
}

#[test]
fn scope_clock_and_token_checks() {
    let req = suite_get();
    let ok = VerifyRules::generic("us-east-1", "service", true, suite_now());
    assert!(sigv4::verify(&req, &ok, suite_lookup(None)).is_ok());

    let late = VerifyRules {
        now: suite_now() + Duration::from_secs(15 * 60 + 1),
        ..ok.clone()
    };
    assert_eq!(
        sigv4::verify(&req, &late, suite_lookup(None)),
        Err(SigError::TooSkewed)
    );
    let early = VerifyRules {
        now: suite_now() - Duration::from_secs(16 * 60),
        ..ok.clone()
    };
    assert_eq!(
        sigv4::verify(&req, &early, suite_lookup(None)),
        Err(SigError::TooSkewed)
    );
    let edge = VerifyRules {
        now: suite_now() + Duration::from_secs(14 * 60),
        ..ok.clone()
    };
    assert!(sigv4::verify(&req, &edge, suite_lookup(None)).is_ok());

    let region = VerifyRules {
        region: "eu-west-1".into(),
        ..ok.clone()
    };
    assert!(matches!(
        sigv4::verify(&req, &region, suite_lookup(None)),
        Err(SigError::WrongRegion { .. })
    ));
    let service = VerifyRules {
        service: "s3".into(),
        ..ok.clone()
    };
    assert!(matches!(
        sigv4::verify(&req, &service, suite_lookup(None)),
        Err(SigError::WrongService { .. })
    ));

    assert_eq!(
        sigv4::verify(&req, &ok, |_: &str| None),
        Err(SigError::UnknownAccessKey)
    );
    // A credential with a session token refuses requests without it.
    assert_eq!(
        sigv4::verify(&req, &ok, suite_lookup(Some("tok".into()))),
        Err(SigError::InvalidToken)
    );
    let with_token = req.clone().with_header("x-amz-security-token", "other");
    assert_eq!(
        sigv4::verify(&with_token, &ok, suite_lookup(None)),
        Err(SigError::InvalidToken)
    );

    let mut no_auth = req.clone();
    no_auth.headers.retain(|(k, _)| k != "authorization");
    assert_eq!(
        sigv4::verify(&no_auth, &ok, suite_lookup(None)),
        Err(SigError::Missing)
    );
    let mut bad_date = req.clone();
    for h in bad_date
        .headers
        .iter_mut()
        .filter(|(k, _)| k == "x-amz-date")
    {
        h.1 = "20150831T123600Z".into();
    }
    let day_later = VerifyRules {
        now: suite_now() + Duration::from_secs(86_400),
        ..ok.clone()
    };
    assert!(matches!(
        sigv4::verify(&bad_date, &day_later, suite_lookup(None)),
        Err(SigError::BadScope(_))
    ));
}

#[test]
fn s3_rules_demand_content_sha256_and_signed_amz_headers() {
    let req = suite_get();
    let s3 = VerifyRules {
        service: "service".into(),
        ..VerifyRules::s3("us-east-1", suite_now())
    };
    assert_eq!(
        sigv4::verify(&req, &s3, suite_lookup(None)),
        Err(SigError::MissingContentSha256)
    );
    let extra = req.clone().with_header("x-amz-meta-a", "1");
    let relaxed = VerifyRules {
        require_content_sha256: false,
        ..s3.clone()
    };
    assert_eq!(
        sigv4::verify(&extra, &relaxed, suite_lookup(None)),
        Err(SigError::HeadersNotSigned(vec!["x-amz-meta-a".into()]))
    );
    let (status, code, _) = SigError::HeadersNotSigned(vec![]).s3_error();
    assert_eq!((status, code), (403, "AccessDenied"));
    let (status, code, _) = SigError::TooSkewed.s3_error();
    assert_eq!((status, code), (403, "RequestTimeTooSkewed"));
}
