//! A handler that forwards dispatched calls to a real HTTP/1.1 server over TCP, so a filter in the
//! harness can talk to s3s-fs, moto, fake-gcs-server or a real gateway's Admin API.
//!
//! The client is a small HTTP/1.1 one of its own: header names keep the case the server sent, as
//! ngx_wasm_module hands them to the filter (docs/host-behaviours.md, "Hostcall rules of
//! ngx_wasm_module"); a general-purpose client lower-cases them. The Envoy profile lower-cases
//! them itself, as Envoy does.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::http::{CallContext, CallFailure, Handler, HttpRequest, HttpResponse, Reply};

/// Forwards every request to `addr` (`host:port`), as the gateway would. Plain HTTP only; one
/// connection per call, `Connection: close` (as ngx_wasm_module sends it).
///
/// ```no_run
/// use std::sync::Arc;
/// use host_harness::{tcp_upstream::TcpUpstream, HostProfile, World};
/// let mut world = World::new(HostProfile::ngx_wasm_module());
/// world.route("127.0.0.1:9000", Arc::new(TcpUpstream::new("127.0.0.1:9000")?));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct TcpUpstream {
    addr: String,
    timeout: Duration,
}

impl TcpUpstream {
    /// A client of `addr` (`host:port`) with a 30 s timeout per call. (The `Result` is kept
    /// for callers of the earlier, runtime-based client; this one cannot fail here.)
    pub fn new(addr: &str) -> std::io::Result<Self> {
        Ok(TcpUpstream {
            addr: addr.to_string(),
            timeout: Duration::from_secs(30),
        })
    }

    /// How long to wait for a whole response before failing the call with a timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn connect(&self, deadline: Instant) -> Result<TcpStream, CallFailure> {
        let addrs: Vec<SocketAddr> = self
            .addr
            .to_socket_addrs()
            .map_err(|_| CallFailure::ResolverFailure)?
            .collect();
        let mut failure = CallFailure::ResolverFailure;
        for a in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CallFailure::Timeout);
            }
            match TcpStream::connect_timeout(&a, left) {
                Ok(s) => return Ok(s),
                Err(e) if e.kind() == ErrorKind::TimedOut => failure = CallFailure::Timeout,
                Err(_) => failure = CallFailure::BrokenConnection,
            }
        }
        Err(failure)
    }

    fn exchange(&self, req: &HttpRequest) -> Result<HttpResponse, CallFailure> {
        let deadline = Instant::now() + self.timeout;
        let mut stream = self.connect(deadline)?;
        stream
            .write_all(&request_bytes(req))
            .map_err(|_| CallFailure::BrokenConnection)?;
        let head_only = req.method.eq_ignore_ascii_case("HEAD");
        let mut raw = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CallFailure::Timeout);
            }
            let _ = stream.set_read_timeout(Some(left));
            match stream.read(&mut chunk) {
                Ok(0) => {
                    return parse_response(&raw, head_only, true)
                        .ok_or(CallFailure::BrokenConnection)
                }
                Ok(n) => {
                    raw.extend_from_slice(&chunk[..n]);
                    if let Some(r) = parse_response(&raw, head_only, false) {
                        return Ok(r);
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(CallFailure::Timeout)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(CallFailure::BrokenConnection),
            }
        }
    }
}

/// The request on the wire: `Host` from the authority, the headers as given (case kept),
/// `Connection: close` and a `Content-Length` for a body unless the filter set them.
fn request_bytes(req: &HttpRequest) -> Vec<u8> {
    let has = |n: &str| req.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        req.method, req.path, req.authority
    );
    for (k, v) in req
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
    {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    if !req.body.is_empty() && !has("content-length") && !has("transfer-encoding") {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&req.body);
    bytes
}

/// A complete HTTP/1.x response in `raw` with its header names as sent, or `None` while more
/// bytes are needed (`closed`: the server closed the connection, so a body without a length
/// ends here). Bodies: `Transfer-Encoding: chunked`, `Content-Length`, or up to the close;
/// none for `head_only`, 1xx, 204 and 304.
///
/// ```
/// use host_harness::tcp_upstream::parse_response;
/// let raw = b"HTTP/1.1 200 OK\r\nX-Call: yes\r\nContent-Length: 2\r\n\r\nhi";
/// let r = parse_response(raw, false, false).unwrap();
/// assert_eq!((r.status, r.headers[0].0.as_str(), r.body.as_slice()), (200, "X-Call", &b"hi"[..]));
/// assert!(parse_response(&raw[..raw.len() - 1], false, false).is_none());
/// ```
pub fn parse_response(raw: &[u8], head_only: bool, closed: bool) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = String::from_utf8_lossy(&raw[..split]);
    let mut lines = text.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let rest = &raw[split + 4..];
    let bodyless = head_only || status < 200 || status == 204 || status == 304;
    let body = if bodyless {
        Vec::new()
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest.get(..len)?.to_vec()
    } else if closed {
        rest.to_vec()
    } else {
        return None;
    };
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

/// A chunked body, or `None` while it is incomplete (trailers are skipped).
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

impl Handler for TcpUpstream {
    fn handle(&self, req: &HttpRequest, _ctx: &CallContext) -> Reply {
        let started = Instant::now();
        let result = self.exchange(req);
        let after = started.elapsed();
        match result {
            Ok(response) => Reply::Response {
                response,
                latency: after,
            },
            Err(failure) => Reply::Fail { failure, after },
        }
    }

    fn on_the_wire(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_with_their_framing_and_header_case() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let r = parse_response(chunked, false, false).unwrap();
        assert_eq!(r.body, b"abcde");
        assert_eq!(r.headers[1], ("X-A".to_string(), "1".to_string()));
        assert!(parse_response(&chunked[..chunked.len() - 6], false, false).is_none());
        let until_close = b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nall of it";
        assert!(parse_response(until_close, false, false).is_none());
        assert_eq!(
            parse_response(until_close, false, true).unwrap().body,
            b"all of it"
        );
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert!(parse_response(head, true, false).unwrap().body.is_empty());
        assert!(parse_response(b"HTTP/1.1 2x0 OK\r\n\r\n", false, true).is_none());
    }

    #[test]
    fn requests_keep_header_case_and_close_the_connection() {
        let req = HttpRequest::new("PUT", "/k?x=1")
            .with_header("X-Amz-Date", "1")
            .with_header("host", "ignored")
            .with_body("ab");
        let mut req = req;
        req.authority = "s3.test:9000".into();
        let text = String::from_utf8(request_bytes(&req)).unwrap();
        assert_eq!(
            text,
            "PUT /k?x=1 HTTP/1.1\r\nHost: s3.test:9000\r\nx-amz-date: 1\r\nConnection: close\r\nContent-Length: 2\r\n\r\nab"
        );
    }
}
