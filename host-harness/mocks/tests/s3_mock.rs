//! Mock S3 behaviour, driven in process with requests signed by a small test signer built from
//! the verifier's (vector-tested) primitives.

use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use base64::Engine;
use harness_mocks::s3::{MockS3, MockS3Config, S3Credential};
use harness_mocks::sigv4::{self, PathRule};
use harness_mocks::{CallContext, Handler, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

const REGION: &str = "eu-west-1";

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

fn mock() -> MockS3 {
    MockS3::builder()
        .region(REGION)
        .domain("s3.test")
        .bucket("b")
        .credential(S3Credential::new("AKRW", "rw-secret"))
        .credential(S3Credential::new("AKRO", "ro-secret").read_only())
        .credential(S3Credential::new("AKPFX", "pfx-secret").allow_prefixes(&["cfg/"]))
        .credential(S3Credential::new("AKTMP", "tmp-secret").session_token("tok-1"))
        .build()
}

struct Signer {
    ak: &'static str,
    sk: &'static str,
    token: Option<&'static str>,
    at: SystemTime,
    host: &'static str,
}

fn signer(ak: &'static str, sk: &'static str) -> Signer {
    Signer {
        ak,
        sk,
        token: None,
        at: now(),
        host: "s3.test",
    }
}

impl Signer {
    fn sign(&self, mut req: HttpRequest) -> HttpRequest {
        let date = sigv4::format_amz_date(self.at);
        req.authority = self.host.to_string();
        req = req
            .with_header("host", self.host)
            .with_header("x-amz-date", &date);
        if req.header("x-amz-content-sha256").is_none() {
            let h = hex::encode(Sha256::digest(&req.body));
            req = req.with_header("x-amz-content-sha256", &h);
        }
        if let Some(t) = self.token {
            req = req.with_header("x-amz-security-token", t);
        }
        let mut names: Vec<String> = req.headers.iter().map(|(k, _)| k.clone()).collect();
        names.sort();
        names.dedup();
        let payload = req.header("x-amz-content-sha256").unwrap().to_string();
        let canonical = sigv4::canonical_request(&req, &names, &payload, PathRule::S3).unwrap();
        let scope = format!("{}/{REGION}/s3/aws4_request", &date[..8]);
        let sts = sigv4::string_to_sign(&date, &scope, &canonical);
        let key = sigv4::signing_key(self.sk, &date[..8], REGION, "s3");
        let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(&key).unwrap();
        hmac::Mac::update(&mut mac, sts.as_bytes());
        let sig = hex::encode(hmac::Mac::finalize(mac).into_bytes());
        req.with_header(
            "authorization",
            &format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={sig}",
                self.ak,
                names.join(";")
            ),
        )
    }
}

fn call(s3: &MockS3, req: HttpRequest) -> HttpResponse {
    let ctx = CallContext::new(now(), "node-1", "s3");
    s3.handle(&req, &ctx)
        .response()
        .cloned()
        .expect("mock S3 always answers")
}

fn rw() -> Signer {
    signer("AKRW", "rw-secret")
}

fn put(s3: &MockS3, s: &Signer, path: &str, body: &[u8]) -> HttpResponse {
    call(
        s3,
        s.sign(HttpRequest::new("PUT", path).with_body(body.to_vec())),
    )
}

fn get(s3: &MockS3, s: &Signer, path: &str) -> HttpResponse {
    call(s3, s.sign(HttpRequest::new("GET", path)))
}

fn code(r: &HttpResponse) -> String {
    let t = r.text();
    t.split("<Code>")
        .nth(1)
        .and_then(|x| x.split("</Code>").next())
        .unwrap_or("")
        .to_string()
}

#[test]
fn put_get_head_delete_round_trip_with_headers_kept() {
    let s3 = mock();
    let req = HttpRequest::new("PUT", "/b/cfg/3.9/config.json")
        .with_body(b"{\"a\":1}".to_vec())
        .with_header("content-type", "application/json")
        .with_header("x-amz-meta-uploader", "node-1")
        .with_header("x-amz-server-side-encryption", "aws:kms")
        .with_header("x-amz-server-side-encryption-aws-kms-key-id", "k1")
        .with_header("x-amz-storage-class", "STANDARD_IA");
    let r = call(&s3, rw().sign(req));
    assert_eq!(r.status, 200, "{}", r.text());
    let etag = format!(
        "\"{}\"",
        hex::encode(<md5::Md5 as Digest>::digest(b"{\"a\":1}"))
    );
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("x-amz-server-side-encryption"), Some("aws:kms"));
    assert!(r.header("x-amz-request-id").is_some());

    let g = get(&s3, &rw(), "/b/cfg/3.9/config.json");
    assert_eq!(
        (g.status, g.body.as_slice()),
        (200, b"{\"a\":1}".as_slice())
    );
    assert_eq!(g.header("x-amz-meta-uploader"), Some("node-1"));
    assert_eq!(g.header("x-amz-storage-class"), Some("STANDARD_IA"));
    assert_eq!(g.header("content-type"), Some("application/json"));
    assert_eq!(g.header("content-length"), Some("7"));
    assert_eq!(
        g.header("last-modified"),
        Some(httpdate::fmt_http_date(now()).as_str())
    );

    let h = call(
        &s3,
        rw().sign(HttpRequest::new("HEAD", "/b/cfg/3.9/config.json")),
    );
    assert_eq!(
        (h.status, h.body.len(), h.header("content-length")),
        (200, 0, Some("7"))
    );

    let stored = s3.object("b", "cfg/3.9/config.json").unwrap();
    assert_eq!(stored.etag, etag);
    assert_eq!(
        stored.metadata,
        vec![("uploader".to_string(), "node-1".to_string())]
    );
    assert_eq!(stored.last_modified, now());

    assert_eq!(
        call(
            &s3,
            rw().sign(HttpRequest::new("DELETE", "/b/cfg/3.9/config.json"))
        )
        .status,
        204
    );
    let g = get(&s3, &rw(), "/b/cfg/3.9/config.json");
    assert_eq!((g.status, code(&g)), (404, "NoSuchKey".into()));
    let h = call(
        &s3,
        rw().sign(HttpRequest::new("HEAD", "/b/cfg/3.9/config.json")),
    );
    assert_eq!(
        (h.status, h.body.len()),
        (404, 0),
        "HEAD errors carry no body"
    );
}

#[test]
fn authentication_errors_have_s3_codes() {
    let s3 = mock();
    let g = get(&s3, &signer("AKRW", "wrong"), "/b/k");
    assert_eq!((g.status, code(&g)), (403, "SignatureDoesNotMatch".into()));
    assert!(!g.text().contains("wrong"), "no secret in the error");
    let g = get(&s3, &signer("AKNOPE", "x"), "/b/k");
    assert_eq!((g.status, code(&g)), (403, "InvalidAccessKeyId".into()));
    let skewed = Signer {
        at: now() - Duration::from_secs(16 * 60),
        ..rw()
    };
    let g = get(&s3, &skewed, "/b/k");
    assert_eq!((g.status, code(&g)), (403, "RequestTimeTooSkewed".into()));
    let g = call(&s3, HttpRequest::new("GET", "/b/k"));
    assert_eq!(
        (g.status, code(&g)),
        (403, "AccessDenied".into()),
        "anonymous"
    );
    // Session tokens: required for the temporary key, refused when wrong.
    let tmp = Signer {
        token: Some("tok-1"),
        ..signer("AKTMP", "tmp-secret")
    };
    assert_eq!(put(&s3, &tmp, "/b/t", b"x").status, 200);
    let g = get(&s3, &signer("AKTMP", "tmp-secret"), "/b/t");
    assert_eq!((g.status, code(&g)), (400, "InvalidToken".into()));
    let bad = Signer {
        token: Some("tok-2"),
        ..signer("AKTMP", "tmp-secret")
    };
    assert_eq!(code(&get(&s3, &bad, "/b/t")), "InvalidToken");
    // A tampered body after signing.
    let mut req = rw().sign(HttpRequest::new("PUT", "/b/k").with_body(b"good".to_vec()));
    req.body = b"evil".to_vec();
    let r = call(&s3, req);
    assert_eq!(
        (r.status, code(&r)),
        (400, "XAmzContentSHA256Mismatch".into())
    );
    let log = s3.requests();
    assert_eq!(log[0].error_code.as_deref(), Some("SignatureDoesNotMatch"));
    assert_eq!(log[0].access_key, None);
    assert_eq!(log[0].node, "node-1");
}

#[test]
fn missing_buckets_and_digests() {
    let s3 = mock();
    let g = get(&s3, &rw(), "/nobucket/k");
    assert_eq!((g.status, code(&g)), (404, "NoSuchBucket".into()));
    let md5 =
        base64::engine::general_purpose::STANDARD.encode(<md5::Md5 as Digest>::digest(b"other"));
    let r = call(
        &s3,
        rw().sign(
            HttpRequest::new("PUT", "/b/k")
                .with_body(b"body".to_vec())
                .with_header("content-md5", &md5),
        ),
    );
    assert_eq!((r.status, code(&r)), (400, "BadDigest".into()));
    let crc =
        base64::engine::general_purpose::STANDARD.encode(crc32fast::hash(b"other").to_be_bytes());
    let r = call(
        &s3,
        rw().sign(
            HttpRequest::new("PUT", "/b/k")
                .with_body(b"body".to_vec())
                .with_header("x-amz-checksum-crc32", &crc),
        ),
    );
    assert_eq!((r.status, code(&r)), (400, "BadDigest".into()));
    let good =
        base64::engine::general_purpose::STANDARD.encode(crc32fast::hash(b"body").to_be_bytes());
    let r = call(
        &s3,
        rw().sign(
            HttpRequest::new("PUT", "/b/k")
                .with_body(b"body".to_vec())
                .with_header("x-amz-checksum-crc32", &good),
        ),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-amz-checksum-crc32"), Some(good.as_str()));
    assert!(s3.object("b", "k").is_some());
}

#[test]
fn conditional_writes() {
    let s3 = mock();
    let ifnm = |body: &[u8]| {
        rw().sign(
            HttpRequest::new("PUT", "/b/c")
                .with_body(body.to_vec())
                .with_header("if-none-match", "*"),
        )
    };
    assert_eq!(call(&s3, ifnm(b"1")).status, 200);
    let r = call(&s3, ifnm(b"2"));
    assert_eq!((r.status, code(&r)), (412, "PreconditionFailed".into()));
    let etag = s3.object("b", "c").unwrap().etag;
    let ifm = |tag: &str, body: &[u8]| {
        rw().sign(
            HttpRequest::new("PUT", "/b/c")
                .with_body(body.to_vec())
                .with_header("if-match", tag),
        )
    };
    assert_eq!(
        code(&call(
            &s3,
            ifm("\"00000000000000000000000000000000\"", b"3")
        )),
        "PreconditionFailed"
    );
    assert_eq!(call(&s3, ifm(&etag, b"4")).status, 200);
    assert_eq!(s3.object("b", "c").unwrap().body, b"4");
    let r = call(
        &s3,
        rw().sign(HttpRequest::new("PUT", "/b/missing").with_header("if-match", &etag)),
    );
    assert_eq!((r.status, code(&r)), (404, "NoSuchKey".into()));
    // GET preconditions.
    let e4 = s3.object("b", "c").unwrap().etag;
    let r = call(
        &s3,
        rw().sign(HttpRequest::new("GET", "/b/c").with_header("if-none-match", &e4)),
    );
    assert_eq!(r.status, 304);
    let r = call(
        &s3,
        rw().sign(HttpRequest::new("GET", "/b/c").with_header("if-match", "\"nope\"")),
    );
    assert_eq!(r.status, 412);
}

/// `keep_history`: every version stored by a request under the key, refused writes and other
/// keys left out.
#[test]
fn history_keeps_every_version_stored_under_a_watched_key() {
    let s3 = mock();
    assert_eq!(put(&s3, &rw(), "/b/k", b"before").status, 200);
    s3.keep_history("b", "k");
    for body in [&b"1"[..], b"2", b"1"] {
        assert_eq!(put(&s3, &rw(), "/b/k", body).status, 200);
    }
    assert_eq!(put(&s3, &rw(), "/b/other", b"x").status, 200);
    let refused = rw().sign(
        HttpRequest::new("PUT", "/b/k")
            .with_body(b"3".to_vec())
            .with_header("if-none-match", "*"),
    );
    assert_eq!(call(&s3, refused).status, 412);
    let bodies = |from| -> Vec<Vec<u8>> {
        s3.history("b", "k", from)
            .into_iter()
            .map(|o| o.body)
            .collect()
    };
    assert_eq!(bodies(0), [b"1".to_vec(), b"2".to_vec(), b"1".to_vec()]);
    assert_eq!(bodies(2), [b"1".to_vec()]);
    assert!(bodies(9).is_empty());
    assert!(s3.history("b", "other", 0).is_empty());
}

#[test]
fn exactly_one_concurrent_if_none_match_writer_wins() {
    let s3 = mock();
    let n = 16;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let s3 = s3.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let req = rw().sign(
                    HttpRequest::new("PUT", "/b/leader")
                        .with_body(format!("node-{i}"))
                        .with_header("if-none-match", "*"),
                );
                barrier.wait();
                (i, call(&s3, req).status)
            })
        })
        .collect();
    let results: Vec<(usize, u16)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<usize> = results
        .iter()
        .filter(|(_, s)| *s == 200)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(results.iter().all(|(_, s)| *s == 200 || *s == 412));
    assert_eq!(
        s3.object("b", "leader").unwrap().body,
        format!("node-{}", winners[0]).into_bytes()
    );
}

fn keys_of(xml: &str) -> Vec<String> {
    xml.split("<Key>")
        .skip(1)
        .map(|x| x.split("</Key>").next().unwrap().to_string())
        .collect()
}

fn tag(xml: &str, name: &str) -> Option<String> {
    xml.split(&format!("<{name}>"))
        .nth(1)
        .map(|x| x.split(&format!("</{name}>")).next().unwrap().to_string())
}

#[test]
fn list_objects_v2_paginates_with_prefix_start_after_and_delimiter() {
    let s3 = mock();
    for k in [
        "p/e/1",
        "p/e/2",
        "p/e/3",
        "p/e/4",
        "p/e/5",
        "p/config.json",
        "q/x",
    ] {
        s3.put_object_direct("b", k, b"x", now());
    }
    let mut token: Option<String> = None;
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let q = match &token {
            Some(t) => format!("/b?list-type=2&prefix=p%2Fe%2F&max-keys=2&continuation-token={t}"),
            None => "/b?list-type=2&prefix=p%2Fe%2F&max-keys=2".to_string(),
        };
        let r = get(&s3, &rw(), &q);
        assert_eq!(r.status, 200, "{}", r.text());
        let x = r.text();
        pages += 1;
        assert_eq!(
            tag(&x, "KeyCount").unwrap().parse::<usize>().unwrap(),
            keys_of(&x).len()
        );
        all.extend(keys_of(&x));
        if tag(&x, "IsTruncated").as_deref() == Some("false") {
            break;
        }
        token = tag(&x, "NextContinuationToken");
    }
    assert_eq!(all, vec!["p/e/1", "p/e/2", "p/e/3", "p/e/4", "p/e/5"]);
    assert_eq!(pages, 3);
    let x = get(
        &s3,
        &rw(),
        "/b?list-type=2&prefix=p%2F&start-after=p%2Fe%2F3",
    )
    .text();
    assert_eq!(keys_of(&x), vec!["p/e/4", "p/e/5"]);
    let x = get(&s3, &rw(), "/b?list-type=2&prefix=p%2F&delimiter=%2F").text();
    assert_eq!(keys_of(&x), vec!["p/config.json"]);
    assert!(
        x.contains("<CommonPrefixes><Prefix>p/e/</Prefix></CommonPrefixes>"),
        "{x}"
    );
    assert!(x.contains("<ETag>&quot;"), "ETag quoted and escaped: {x}");
    let r = get(&s3, &rw(), "/b?list-type=2&continuation-token=%21%21");
    assert_eq!((r.status, code(&r)), (400, "InvalidArgument".into()));
    assert_eq!(s3.list_keys("b").len(), 7);
}

#[test]
fn virtual_hosted_addressing_uses_the_host() {
    let s3 = mock();
    let vh = Signer {
        host: "b.s3.test",
        ..rw()
    };
    assert_eq!(put(&s3, &vh, "/dir/obj", b"v").status, 200);
    assert_eq!(s3.object("b", "dir/obj").unwrap().body, b"v");
    assert_eq!(
        get(&s3, &rw(), "/b/dir/obj").body,
        b"v",
        "same object path-style"
    );
    let x = get(&s3, &vh, "/?list-type=2").text();
    assert_eq!(keys_of(&x), vec!["dir/obj"]);
    let other = Signer {
        host: "nobucket.s3.test",
        ..rw()
    };
    assert_eq!(code(&get(&s3, &other, "/k")), "NoSuchBucket");
}

#[test]
fn policies_limit_writes_and_prefixes() {
    let s3 = mock();
    assert_eq!(put(&s3, &rw(), "/b/cfg/a", b"1").status, 200);
    let ro = signer("AKRO", "ro-secret");
    assert_eq!(get(&s3, &ro, "/b/cfg/a").status, 200);
    let r = put(&s3, &ro, "/b/cfg/a", b"2");
    assert_eq!((r.status, code(&r)), (403, "AccessDenied".into()));
    assert_eq!(
        code(&call(&s3, ro.sign(HttpRequest::new("DELETE", "/b/cfg/a")))),
        "AccessDenied"
    );
    assert_eq!(s3.object("b", "cfg/a").unwrap().body, b"1");
    let pfx = signer("AKPFX", "pfx-secret");
    assert_eq!(put(&s3, &pfx, "/b/cfg/b", b"1").status, 200);
    assert_eq!(code(&put(&s3, &pfx, "/b/other/b", b"1")), "AccessDenied");
    assert_eq!(get(&s3, &pfx, "/b?list-type=2&prefix=cfg%2F").status, 200);
    assert_eq!(code(&get(&s3, &pfx, "/b?list-type=2")), "AccessDenied");
}

#[test]
fn config_struct_builds_the_same_mock() {
    let cfg: MockS3Config = serde_json::from_str(
        r#"{"region":"eu-west-1","buckets":["b"],"credentials":[{"access_key":"AKRW","secret_key":"rw-secret"},
            {"access_key":"AKRO","secret_key":"ro-secret","read_only":true}]}"#,
    )
    .unwrap();
    let s3 = MockS3::from_config(&cfg);
    assert_eq!(put(&s3, &rw(), "/b/k", b"1").status, 200);
    assert_eq!(
        code(&put(&s3, &signer("AKRO", "ro-secret"), "/b/k", b"1")),
        "AccessDenied"
    );
    assert!(
        !format!("{:?}", cfg).contains("rw-secret"),
        "Debug hides secrets"
    );
}

#[test]
fn served_over_tcp_with_a_raw_client() {
    use std::io::{Read, Write};
    let s3 = mock();
    let server = harness_mocks::serve::spawn(Arc::new(s3.clone()), "127.0.0.1:0").unwrap();
    // Signed for a fresh clock: the TCP server uses the real time.
    let s = Signer {
        at: SystemTime::now(),
        ..rw()
    };
    let req = s.sign(HttpRequest::new("PUT", "/b/tcp%20key").with_body(b"hello".to_vec()));
    let mut wire = format!("PUT {} HTTP/1.1\r\n", req.path);
    for (k, v) in &req.headers {
        wire.push_str(&format!("{k}: {v}\r\n"));
    }
    wire.push_str("content-length: 5\r\nconnection: close\r\n\r\nhello");
    let mut sock = std::net::TcpStream::connect(server.addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.write_all(wire.as_bytes()).unwrap();
    let mut out = String::new();
    sock.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(
        out.contains("etag: \"5d41402abc4b2a76b9719d911017c592\""),
        "{out}"
    );
    assert_eq!(s3.object("b", "tcp key").unwrap().body, b"hello");
    assert!(s3.requests()[0].node.starts_with("127.0.0.1:"));
}
