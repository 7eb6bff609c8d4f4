//! Puts any `Handler` on a TCP port (HTTP/1.1), so real clients (boto3, aws CLI,
//! google-cloud-storage) can talk to the same mocks the simulated world uses.
//!
//! `spawn(handler, "127.0.0.1:0")` starts a hyper server on its own tokio runtime in a background
//! thread; `ServerHandle::addr()` / `url()` say where; dropping the handle stops it.
//!
//! How a `Reply` becomes TCP:
//! * `Response` — sent after sleeping `latency`; headers in the given order. A response whose
//!   `content-length` is larger than its body (a truncated body, see `faults`) is sent as far as it
//!   goes and then the connection is dropped.
//! * `Fail` — after `after`, the connection is closed without a response.
//! * `Hang` / `NoCallback` — the connection is held open without an answer until the client gives
//!   up or the server stops.
//!
//! The handler sees `CallContext { now: SystemTime::now(), node: peer address, upstream: listening
//! address }`, header names lower-cased (hyper's parser), the request target exactly as sent, and
//! the whole body (hyper decodes chunked bodies and answers `Expect: 100-continue`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use crate::faults::is_truncated;
use crate::http::{CallContext, HttpRequest, HttpResponse, Reply, SharedHandler};

/// A running server; dropping it stops the server and closes every connection.
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits for its thread (same as dropping the handle).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds `addr` (e.g. `127.0.0.1:0`) and serves `handler` on it from a background thread.
pub fn spawn(handler: SharedHandler, addr: &str) -> std::io::Result<ServerHandle> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("mock-serve")
        .build()?;
    let listener = {
        let _guard = rt.enter();
        tokio::net::TcpListener::from_std(std_listener)?
    };
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("mock-serve-{}", local.port()))
        .spawn(move || {
            rt.block_on(accept_loop(listener, handler, local, stop_rx));
            // Drops every connection task, including hanging ones.
            rt.shutdown_background();
        })?;
    Ok(ServerHandle {
        addr: local,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    handler: SharedHandler,
    local: SocketAddr,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                // Out of file descriptors and the like: keep serving the others.
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| serve_one(handler.clone(), req, peer, local));
            // Errors here are the injected failures and client hang-ups: nothing to report.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// An injected failure: returning it from the service makes hyper close the connection without
/// writing a response.
#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}
impl std::error::Error for Dropped {}

async fn serve_one(
    handler: SharedHandler,
    req: hyper::Request<hyper::body::Incoming>,
    peer: SocketAddr,
    local: SocketAddr,
) -> Result<hyper::Response<MockBody>, Dropped> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => return Err(Dropped),
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let authority = parts
        .headers
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let request = HttpRequest {
        method: parts.method.as_str().to_string(),
        path,
        authority,
        scheme: "http".to_string(),
        headers,
        body,
    };
    let ctx = CallContext {
        now: SystemTime::now(),
        node: peer.to_string(),
        upstream: local.to_string(),
    };
    let is_head = request.method == "HEAD";
    // Handlers are synchronous and may block on their mutex: keep them off the I/O threads.
    let reply = tokio::task::spawn_blocking(move || handler.handle(&request, &ctx))
        .await
        .map_err(|_| Dropped)?;
    match reply {
        Reply::Response { response, latency } => {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            Ok(to_hyper(response, is_head))
        }
        Reply::Fail { after, .. } => {
            if !after.is_zero() {
                tokio::time::sleep(after).await;
            }
            Err(Dropped)
        }
        Reply::Hang | Reply::NoCallback => {
            std::future::pending::<()>().await;
            Err(Dropped)
        }
    }
}

fn to_hyper(response: HttpResponse, is_head: bool) -> hyper::Response<MockBody> {
    let truncated = !is_head && is_truncated(&response);
    let mut builder = hyper::Response::builder().status(response.status);
    for (k, v) in &response.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let body = MockBody {
        data: if response.body.is_empty() {
            None
        } else {
            Some(Bytes::from(response.body))
        },
        fail_at_end: truncated,
        flush_pause: None,
    };
    builder.body(body).unwrap_or_else(|_| {
        // The handler produced a header hyper cannot send: tell the client, loudly.
        let mut r = hyper::Response::new(MockBody {
            data: Some(Bytes::from_static(
                b"mock produced an invalid response header",
            )),
            fail_at_end: false,
            flush_pause: None,
        });
        *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// A one-chunk body that can end in an error, which makes hyper abort the connection mid-body.
struct MockBody {
    data: Option<Bytes>,
    fail_at_end: bool,
    /// Before failing, wait a little: hyper only flushes what it buffered when the body is
    /// pending, and a truncated body must reach the client before the connection drops.
    flush_pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        if self.fail_at_end {
            let pause = self
                .flush_pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(50))));
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.fail_at_end = false;
            return Poll::Ready(Some(Err(Box::new(Dropped))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && !self.fail_at_end
    }

    fn size_hint(&self) -> SizeHint {
        if self.fail_at_end {
            return SizeHint::default();
        }
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// Wraps a handler in an `Arc` for `spawn`.
pub fn shared<H: crate::http::Handler + 'static>(h: H) -> SharedHandler {
    Arc::new(h)
}
