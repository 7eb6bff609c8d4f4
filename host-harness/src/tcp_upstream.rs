//! A handler that forwards dispatched calls to a real HTTP/1.1 server over TCP, so a filter in the
//! harness can talk to s3s-fs, moto, fake-gcs-server or a real gateway's Admin API.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use crate::http::{CallContext, CallFailure, Handler, HttpRequest, HttpResponse, Reply};

/// Forwards every request to `addr` (`host:port`), as the gateway would. Plain HTTP only.
pub struct TcpUpstream {
    addr: String,
    timeout: Duration,
    runtime: tokio::runtime::Runtime,
}

impl TcpUpstream {
    pub fn new(addr: &str) -> std::io::Result<Self> {
        Ok(TcpUpstream {
            addr: addr.to_string(),
            timeout: Duration::from_secs(30),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    /// How long to wait for a whole response before failing the call with a timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn exchange(&self, req: &HttpRequest) -> Result<HttpResponse, CallFailure> {
        let stream = match tokio::net::TcpStream::connect(&self.addr).await {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(CallFailure::BrokenConnection)
            }
            Err(_) => return Err(CallFailure::ResolverFailure),
        };
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| CallFailure::BrokenConnection)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut builder = hyper::Request::builder()
            .method(req.method.as_str())
            .uri(req.path.as_str())
            .header("host", req.authority.as_str());
        for (k, v) in &req.headers {
            if !k.eq_ignore_ascii_case("host") {
                builder = builder.header(k.as_str(), v.as_str());
            }
        }
        let request = builder
            .body(Full::new(Bytes::from(req.body.clone())))
            .map_err(|_| CallFailure::BrokenConnection)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| CallFailure::BrokenConnection)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| CallFailure::BrokenConnection)?
            .to_bytes()
            .to_vec();
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

impl Handler for TcpUpstream {
    fn handle(&self, req: &HttpRequest, _ctx: &CallContext) -> Reply {
        let started = Instant::now();
        let result = self
            .runtime
            .block_on(async { tokio::time::timeout(self.timeout, self.exchange(req)).await });
        let after = started.elapsed();
        match result {
            Ok(Ok(response)) => Reply::Response {
                response,
                latency: after,
            },
            Ok(Err(failure)) => Reply::Fail { failure, after },
            Err(_) => Reply::Fail {
                failure: CallFailure::Timeout,
                after,
            },
        }
    }
}
