//! The TCP server, driven by a raw HTTP/1.1 client over a socket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness_mocks::faults::{Fault, Faulty};
use harness_mocks::serve::spawn;
use harness_mocks::{CallContext, CallFailure, HttpRequest, HttpResponse, Reply, SharedHandler};

/// Echoes what it saw, so the test can check what the handler was given.
fn echo(seen: Arc<Mutex<Vec<(HttpRequest, CallContext)>>>) -> SharedHandler {
    Arc::new(move |req: &HttpRequest, ctx: &CallContext| {
        seen.lock().unwrap().push((req.clone(), ctx.clone()));
        Reply::now(
            HttpResponse::new(201)
                .with_header("x-b", "2")
                .with_header("x-a", "1")
                .with_body(format!("{} {} {}", req.method, req.path, req.body.len())),
        )
    })
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads until EOF or timeout; returns bytes and whether it ended by EOF/reset (true) or timeout.
fn read_all(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return (out, false)
            }
            Err(_) => return (out, true),
        }
    }
}

#[test]
fn round_trip_keeps_path_headers_and_body() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = spawn(echo(seen.clone()), "127.0.0.1:0").unwrap();
    assert!(server.url().starts_with("http://127.0.0.1:"));
    let mut s = connect(server.addr());
    s.write_all(
        b"PUT /b/a%2Fb%20c?x=1&y=%2F HTTP/1.1\r\nHost: bucket.s3.local:9000\r\nX-Amz-Meta-One: v1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .unwrap();
    let (resp, eof) = read_all(&mut s);
    assert!(eof);
    let text = String::from_utf8(resp).unwrap();
    assert!(text.starts_with("HTTP/1.1 201 Created\r\n"), "{text}");
    let xb = text.find("x-b: 2").unwrap();
    let xa = text.find("x-a: 1").unwrap();
    assert!(xb < xa, "header order kept: {text}");
    assert!(
        text.ends_with("\r\n\r\nPUT /b/a%2Fb%20c?x=1&y=%2F 5"),
        "{text}"
    );
    let seen = seen.lock().unwrap();
    let (req, ctx) = &seen[0];
    assert_eq!(req.authority, "bucket.s3.local:9000");
    assert_eq!(req.header("x-amz-meta-one"), Some("v1"));
    assert!(
        req.headers.iter().any(|(k, _)| k == "x-amz-meta-one"),
        "names lower-cased"
    );
    assert_eq!(req.body, b"hello");
    assert_eq!(ctx.node, s.local_addr().unwrap().to_string());
    assert_eq!(ctx.upstream, server.addr().to_string());
}

#[test]
fn expect_continue_and_chunked_bodies_are_read() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = spawn(echo(seen.clone()), "127.0.0.1:0").unwrap();
    let mut s = connect(server.addr());
    s.write_all(b"PUT /k HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"));
    s.write_all(b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n").unwrap();
    let (resp, _) = read_all(&mut s);
    let text = String::from_utf8(resp).unwrap();
    assert!(
        text.contains("201 Created") && text.ends_with("PUT /k 7"),
        "{text}"
    );
    assert_eq!(seen.lock().unwrap()[0].0.body, b"abcdefg");
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = spawn(echo(seen.clone()), "127.0.0.1:0").unwrap();
    let mut s = connect(server.addr());
    s.write_all(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\nGET /two HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (resp, _) = read_all(&mut s);
    let text = String::from_utf8(resp).unwrap();
    assert!(
        text.contains("GET /one 0") && text.contains("GET /two 0"),
        "{text}"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn a_failure_closes_the_connection_without_a_response() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let faulty = Faulty::new(echo(seen.clone()));
    faulty.push(Fault::reset());
    let server = spawn(faulty.shared(), "127.0.0.1:0").unwrap();
    let mut s = connect(server.addr());
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let (resp, eof) = read_all(&mut s);
    assert!(eof, "closed, not held");
    assert!(
        resp.is_empty(),
        "no response bytes: {:?}",
        String::from_utf8_lossy(&resp)
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "inner handler never saw it"
    );
}

#[test]
fn a_timeout_failure_waits_then_closes() {
    let faulty = Faulty::new(echo(Arc::new(Mutex::new(Vec::new()))));
    faulty.push(Fault::Fail {
        failure: CallFailure::Timeout,
        after: Duration::from_millis(300),
    });
    let server = spawn(faulty.shared(), "127.0.0.1:0").unwrap();
    let mut s = connect(server.addr());
    let t = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let (resp, eof) = read_all(&mut s);
    assert!(eof && resp.is_empty());
    assert!(
        t.elapsed() >= Duration::from_millis(290),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn hang_holds_the_connection_until_the_server_stops() {
    let faulty = Faulty::new(echo(Arc::new(Mutex::new(Vec::new()))));
    faulty.push(Fault::Hang);
    faulty.push(Fault::NoCallback);
    let server = spawn(faulty.shared(), "127.0.0.1:0").unwrap();
    let mut a = connect(server.addr());
    let mut b = connect(server.addr());
    for s in [&mut a, &mut b] {
        s.set_read_timeout(Some(Duration::from_millis(400)))
            .unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    }
    for s in [&mut a, &mut b] {
        let (resp, eof) = read_all(s);
        assert!(!eof && resp.is_empty(), "still open, no answer");
    }
    drop(server);
    for s in [&mut a, &mut b] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (resp, eof) = read_all(s);
        assert!(
            eof && resp.is_empty(),
            "stopping the server closes held connections"
        );
    }
}

#[test]
fn latency_delays_the_response() {
    let faulty = Faulty::new(echo(Arc::new(Mutex::new(Vec::new()))));
    faulty.push(Fault::Latency(Duration::from_millis(300)));
    let server = spawn(faulty.shared(), "127.0.0.1:0").unwrap();
    let mut s = connect(server.addr());
    let t = Instant::now();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (resp, _) = read_all(&mut s);
    assert!(String::from_utf8_lossy(&resp).contains("GET /x 0"));
    assert!(t.elapsed() >= Duration::from_millis(290));
}

#[test]
fn a_truncated_body_is_cut_and_the_connection_dropped() {
    let inner: SharedHandler = Arc::new(|_: &HttpRequest, _: &CallContext| {
        Reply::now(HttpResponse::new(200).with_body("0123456789"))
    });
    let faulty = Faulty::new(inner);
    faulty.push(Fault::Truncate { keep: 4 });
    let server = spawn(faulty.shared(), "127.0.0.1:0").unwrap();
    let mut s = connect(server.addr());
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let (resp, eof) = read_all(&mut s);
    let text = String::from_utf8(resp).unwrap();
    assert!(eof, "connection dropped mid-body");
    assert!(text.contains("content-length: 10\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n0123"), "{text}");
}

#[test]
fn head_responses_keep_their_content_length_without_a_body() {
    // Like S3: HEAD advertises the object's length, GET sends it.
    let inner: SharedHandler = Arc::new(|req: &HttpRequest, _: &CallContext| {
        let r = HttpResponse::new(200).with_header("content-length", "42");
        Reply::now(if req.method == "HEAD" {
            r
        } else {
            r.with_body(vec![b'x'; 42])
        })
    });
    let server = spawn(inner, "127.0.0.1:0").unwrap();
    let mut s = connect(server.addr());
    s.write_all(b"HEAD /k HTTP/1.1\r\nHost: h\r\n\r\nGET /k HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (resp, _) = read_all(&mut s);
    let text = String::from_utf8(resp).unwrap();
    assert_eq!(text.matches("content-length: 42").count(), 2, "{text}");
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert_eq!(
        text.matches("HTTP/1.1 200 OK").count(),
        2,
        "HEAD answered, connection still usable: {text}"
    );
}
