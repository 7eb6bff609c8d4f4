//! Mock GCS JSON API: uploads (media, multipart, resumable), metadata, download, listing with
//! pages, delete, generations and preconditions (atomic under threads).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness_mocks::gcs::{MockGcs, SCOPE_READ_WRITE};
use harness_mocks::{CallContext, Handler, HttpRequest, HttpResponse};
use serde_json::{json, Value};

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

struct Client {
    gcs: MockGcs,
    token: String,
}

impl Client {
    fn new() -> Self {
        let gcs = MockGcs::new().with_bucket("bkt");
        let token = gcs.issue_token("w@p.iam.gserviceaccount.com", &[SCOPE_READ_WRITE], t0());
        Client { gcs, token }
    }

    fn send(&self, req: HttpRequest) -> HttpResponse {
        let req = req.with_header("authorization", &format!("Bearer {}", self.token));
        let ctx = CallContext::new(t0(), "n1", "storage.googleapis.com");
        self.gcs.handle(&req, &ctx).response().unwrap().clone()
    }

    fn put(&self, name: &str, data: &[u8], query: &str) -> HttpResponse {
        let path = format!(
            "/upload/storage/v1/b/bkt/o?uploadType=media&name={}{query}",
            urlenc(name)
        );
        self.send(
            HttpRequest::new("POST", &path)
                .with_header("content-type", "application/json")
                .with_body(data),
        )
    }

    fn get(&self, path: &str) -> HttpResponse {
        self.send(HttpRequest::new("GET", path))
    }
}

fn urlenc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn json_of(r: &HttpResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", r.text()))
}

fn generation(r: &HttpResponse) -> i64 {
    json_of(r)["generation"].as_str().unwrap().parse().unwrap()
}

#[test]
fn media_upload_metadata_and_download_agree() {
    let c = Client::new();
    let up = c.put("kong/3.9.1/config.json", b"hello", "");
    assert_eq!(up.status, 200, "{}", up.text());
    let meta = json_of(&up);
    assert_eq!(meta["name"], "kong/3.9.1/config.json");
    assert_eq!(meta["size"], "5");
    assert_eq!(meta["metageneration"], "1");
    // Known digests of "hello": md5 5d41402a..., crc32c 0x9a71bb4c.
    assert_eq!(meta["md5Hash"], "XUFAKrxLKna5cZ2REBfFkg==");
    assert_eq!(meta["crc32c"], "mnG7TA==");

    let enc = "/storage/v1/b/bkt/o/kong%2F3.9.1%2Fconfig.json";
    let got = c.get(enc);
    assert_eq!(got.status, 200);
    assert_eq!(json_of(&got)["generation"], meta["generation"]);
    assert_eq!(json_of(&got)["contentType"], "application/json");

    for path in [
        format!("{enc}?alt=media"),
        format!("/download{enc}?alt=media"),
    ] {
        let media = c.get(&path);
        assert_eq!(media.status, 200);
        assert_eq!(media.body, b"hello");
        assert_eq!(
            media.header("x-goog-generation"),
            meta["generation"].as_str()
        );
        assert_eq!(
            media.header("x-goog-hash"),
            Some("crc32c=mnG7TA==,md5=XUFAKrxLKna5cZ2REBfFkg==")
        );
    }
    let part = c.send(
        HttpRequest::new("GET", &format!("{enc}?alt=media")).with_header("range", "bytes=1-3"),
    );
    assert_eq!((part.status, part.body.as_slice()), (206, &b"ell"[..]));
}

#[test]
fn missing_bucket_and_object_are_404_with_gcs_error_json() {
    let c = Client::new();
    let r = c.get("/storage/v1/b/bkt/o/nope");
    assert_eq!(r.status, 404);
    assert_eq!(json_of(&r)["error"]["errors"][0]["reason"], "notFound");
    let up = c.send(
        HttpRequest::new(
            "POST",
            "/upload/storage/v1/b/other/o?uploadType=media&name=x",
        )
        .with_body("1"),
    );
    assert_eq!(up.status, 404);
    assert_eq!(
        json_of(&up)["error"]["message"],
        "The specified bucket does not exist."
    );
}

fn multipart(meta: &Value, data: &[u8]) -> HttpRequest {
    let mut body = Vec::new();
    body.extend_from_slice(b"--BOUND\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n");
    body.extend_from_slice(meta.to_string().as_bytes());
    body.extend_from_slice(b"\r\n--BOUND\r\ncontent-type: application/json\r\n\r\n");
    body.extend_from_slice(data);
    body.extend_from_slice(b"\r\n--BOUND--\r\n");
    HttpRequest::new("POST", "/upload/storage/v1/b/bkt/o?uploadType=multipart")
        .with_header("content-type", "multipart/related; boundary=\"BOUND\"")
        .with_body(body)
}

#[test]
fn multipart_upload_keeps_metadata_and_checks_declared_checksums() {
    let c = Client::new();
    let ok = c.send(multipart(
        &json!({"name": "a/b.json", "metadata": {"uploader": "node-1"}, "crc32c": "mnG7TA=="}),
        b"hello",
    ));
    assert_eq!(ok.status, 200, "{}", ok.text());
    let obj = c.gcs.object("bkt", "a/b.json").unwrap();
    assert_eq!(obj.data, b"hello");
    assert_eq!(obj.content_type, "application/json");
    assert_eq!(
        obj.metadata.get("uploader").map(String::as_str),
        Some("node-1")
    );

    let bad = c.send(multipart(
        &json!({"name": "c.json", "md5Hash": "AAAAAAAAAAAAAAAAAAAAAA=="}),
        b"hello",
    ));
    assert_eq!(bad.status, 400);
    assert!(c.gcs.object("bkt", "c.json").is_none());
}

#[test]
fn resumable_upload_in_chunks() {
    let c = Client::new();
    let init = c.send(
        HttpRequest::new(
            "POST",
            "/upload/storage/v1/b/bkt/o?uploadType=resumable&ifGenerationMatch=0",
        )
        .with_header("content-type", "application/json")
        .with_body(
            json!({"name": "big.bin", "contentType": "application/octet-stream"}).to_string(),
        ),
    );
    assert_eq!(init.status, 200);
    let loc = init.header("location").unwrap().to_string();
    let path = &loc[loc.find("/upload/").unwrap()..];
    let first = c.send(
        HttpRequest::new("PUT", path)
            .with_header("content-range", "bytes 0-3/*")
            .with_body("abcd"),
    );
    assert_eq!(first.status, 308);
    assert_eq!(first.header("range"), Some("bytes=0-3"));
    let status = c.send(HttpRequest::new("PUT", path).with_header("content-range", "bytes */*"));
    assert_eq!(
        (status.status, status.header("range")),
        (308, Some("bytes=0-3"))
    );
    let last = c.send(
        HttpRequest::new("PUT", path)
            .with_header("content-range", "bytes 4-5/6")
            .with_body("ef"),
    );
    assert_eq!(last.status, 200, "{}", last.text());
    assert_eq!(c.gcs.object("bkt", "big.bin").unwrap().data, b"abcdef");
    // The precondition was taken at initiation: a second session for the same name loses.
    let again = c.send(
        HttpRequest::new(
            "POST",
            "/upload/storage/v1/b/bkt/o?uploadType=resumable&ifGenerationMatch=0&name=big.bin",
        )
        .with_body(""),
    );
    let loc2 = again.header("location").unwrap().to_string();
    let done =
        c.send(HttpRequest::new("PUT", &loc2[loc2.find("/upload/").unwrap()..]).with_body("zz"));
    assert_eq!(done.status, 412);
}

#[test]
fn listing_filters_by_prefix_rolls_up_delimiters_and_pages() {
    let c = Client::new();
    for n in [
        "p/a", "p/b", "p/c", "p/d", "p/e", "p/sub/x", "p/sub/y", "q/z",
    ] {
        assert_eq!(c.put(n, b"1", "").status, 200);
    }
    let mut names = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let r = c.get(&format!(
            "/storage/v1/b/bkt/o?prefix=p%2F&maxResults=2&pageToken={}",
            urlenc(&token)
        ));
        assert_eq!(r.status, 200);
        let v = json_of(&r);
        pages += 1;
        for it in v["items"].as_array().into_iter().flatten() {
            names.push(it["name"].as_str().unwrap().to_string());
        }
        match v["nextPageToken"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    assert_eq!(
        names,
        ["p/a", "p/b", "p/c", "p/d", "p/e", "p/sub/x", "p/sub/y"]
    );
    assert_eq!(pages, 4);

    let rolled = json_of(&c.get("/storage/v1/b/bkt/o?prefix=p%2F&delimiter=%2F"));
    assert_eq!(rolled["prefixes"], json!(["p/sub/"]));
    assert_eq!(rolled["items"].as_array().unwrap().len(), 5);
    assert_eq!(c.get("/storage/v1/b/bkt/o?pageToken=%25%25").status, 400);
}

#[test]
fn delete_honours_generation_preconditions() {
    let c = Client::new();
    let g = generation(&c.put("x", b"1", ""));
    let wrong = c.send(HttpRequest::new(
        "DELETE",
        &format!("/storage/v1/b/bkt/o/x?ifGenerationMatch={}", g + 1),
    ));
    assert_eq!(wrong.status, 412);
    assert_eq!(
        json_of(&wrong)["error"]["errors"][0]["reason"],
        "conditionNotMet"
    );
    let ok = c.send(HttpRequest::new(
        "DELETE",
        &format!("/storage/v1/b/bkt/o/x?ifGenerationMatch={g}"),
    ));
    assert_eq!(ok.status, 204);
    assert_eq!(c.get("/storage/v1/b/bkt/o/x").status, 404);
    assert_eq!(
        c.send(HttpRequest::new("DELETE", "/storage/v1/b/bkt/o/x"))
            .status,
        404
    );
}

#[test]
fn generations_increase_and_preconditions_guard_writes() {
    let c = Client::new();
    let g1 = generation(&c.put("cfg", b"v1", "&ifGenerationMatch=0"));
    assert_eq!(c.put("cfg", b"dup", "&ifGenerationMatch=0").status, 412);
    let g2 = generation(&c.put("cfg", b"v2", &format!("&ifGenerationMatch={g1}")));
    assert!(g2 > g1);
    assert_eq!(
        c.put("cfg", b"stale", &format!("&ifGenerationMatch={g1}"))
            .status,
        412
    );
    assert_eq!(
        c.put("cfg", b"same", &format!("&ifGenerationNotMatch={g2}"))
            .status,
        412
    );
    assert_eq!(
        c.put("cfg", b"v3", &format!("&ifGenerationNotMatch={g1}"))
            .status,
        200
    );
    assert_eq!(c.gcs.object("bkt", "cfg").unwrap().data, b"v3");

    // Reads: a generation that no longer matches is 412, a not-match that holds is 304.
    let cur = c.gcs.object("bkt", "cfg").unwrap().generation;
    assert_eq!(
        c.get(&format!(
            "/storage/v1/b/bkt/o/cfg?alt=media&ifGenerationMatch={g1}"
        ))
        .status,
        412
    );
    assert_eq!(
        c.get(&format!(
            "/storage/v1/b/bkt/o/cfg?alt=media&ifGenerationNotMatch={cur}"
        ))
        .status,
        304
    );
    assert_eq!(c.put("cfg", b"x", "&ifGenerationMatch=abc").status, 400);
}

#[test]
fn patch_bumps_metageneration_and_checks_it() {
    let c = Client::new();
    let g = generation(&c.put("m", b"1", ""));
    let p = c.send(
        HttpRequest::new("PATCH", "/storage/v1/b/bkt/o/m?ifMetagenerationMatch=1")
            .with_body(json!({"metadata": {"k": "v"}}).to_string()),
    );
    assert_eq!(p.status, 200, "{}", p.text());
    let v = json_of(&p);
    assert_eq!(v["metageneration"], "2");
    assert_eq!(v["generation"], g.to_string());
    assert_eq!(v["metadata"]["k"], "v");
    let stale = c.send(
        HttpRequest::new("PATCH", "/storage/v1/b/bkt/o/m?ifMetagenerationMatch=1").with_body("{}"),
    );
    assert_eq!(stale.status, 412);
}

#[test]
fn exactly_one_of_many_concurrent_creators_wins() {
    let c = Arc::new(Client::new());
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                c.put(
                    "election/leader",
                    format!("node-{i}").as_bytes(),
                    "&ifGenerationMatch=0",
                )
                .status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        15,
        "{statuses:?}"
    );
}

#[test]
fn compare_and_swap_increments_are_never_lost() {
    let c = Arc::new(Client::new());
    c.put("counter", b"0", "");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                let mut retries = 0;
                for _ in 0..25 {
                    loop {
                        let meta = json_of(&c.get("/storage/v1/b/bkt/o/counter"));
                        let g = meta["generation"].as_str().unwrap().to_string();
                        let cur: u32 = String::from_utf8(
                            c.get(&format!(
                                "/storage/v1/b/bkt/o/counter?alt=media&generation={g}"
                            ))
                            .body,
                        )
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(u32::MAX); // the generation moved on between the two reads
                        if cur == u32::MAX {
                            retries += 1;
                            continue;
                        }
                        let r = c.put(
                            "counter",
                            (cur + 1).to_string().as_bytes(),
                            &format!("&ifGenerationMatch={g}"),
                        );
                        if r.status == 200 {
                            break;
                        }
                        assert_eq!(r.status, 412);
                        retries += 1;
                    }
                }
                retries
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(c.gcs.object("bkt", "counter").unwrap().data, b"100");
}

#[test]
fn buckets_can_be_created_once() {
    let c = Client::new();
    let mk = || {
        c.send(
            HttpRequest::new("POST", "/storage/v1/b?project=p")
                .with_body(json!({"name": "nb"}).to_string()),
        )
    };
    assert_eq!(mk().status, 200);
    assert_eq!(mk().status, 409);
    assert_eq!(c.get("/storage/v1/b/nb").status, 200);
    assert_eq!(c.get("/storage/v1/b/missing").status, 404);
}
