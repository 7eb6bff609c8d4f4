//! The contract between the simulated hosts and whatever answers their `dispatch_http_call`s:
//! in-process mocks (S3, GCS, Kong Admin API), closures, fault injectors and real TCP endpoints.
//!
//! Handlers are synchronous and thread-safe: the simulated world calls them in virtual time, the
//! TCP server (`serve`) calls them from its own threads, and both see the same state.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One HTTP request as a proxy-wasm host hands it to an upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    /// Path and query exactly as sent (the `:path` pseudo-header, or the request target on TCP).
    pub path: String,
    /// The `:authority` (sent as `Host`).
    pub authority: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Regular headers in the order given, names lower-cased, pseudo-headers removed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn new(method: &str, path: &str) -> Self {
        HttpRequest {
            method: method.to_string(),
            path: path.to_string(),
            authority: String::new(),
            scheme: "http".to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// Every value of a header, in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }

    /// The raw query string (without `?`), empty when there is none.
    pub fn query(&self) -> &str {
        self.path.split_once('?').map(|(_, q)| q).unwrap_or("")
    }

    /// Decoded query parameters, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.query().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// First decoded value of a query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// One HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn new(status: u16) -> Self {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A JSON response with `content-type: application/json`.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        HttpResponse::new(status)
            .with_header("content-type", "application/json")
            .with_body(value.to_string())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// The body as UTF-8 (lossy), for assertions and logs.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Who sends a call, and when.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// The sender's wall clock (virtual in a simulated world, real on TCP).
    pub now: SystemTime,
    /// The simulated node that dispatched the call (on TCP: the peer address).
    pub node: String,
    /// The `upstream` argument of `dispatch_http_call` (on TCP: the listening address).
    pub upstream: String,
}

impl CallContext {
    pub fn new(now: SystemTime, node: &str, upstream: &str) -> Self {
        CallContext {
            now,
            node: node.to_string(),
            upstream: upstream.to_string(),
        }
    }
}

/// Why a call ended without a response: the `:dispatch_status` values of ngx_wasm_module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallFailure {
    /// Refused or reset connection.
    BrokenConnection,
    Timeout,
    ResolverFailure,
    TlsHandshakeFailure,
}

impl CallFailure {
    /// The `:dispatch_status` text ngx_wasm_module reports.
    pub fn dispatch_status(self) -> &'static str {
        match self {
            CallFailure::BrokenConnection => "broken connection",
            CallFailure::Timeout => "timeout",
            CallFailure::ResolverFailure => "resolver failure",
            CallFailure::TlsHandshakeFailure => "tls handshake failure",
        }
    }
}

/// What an upstream does with one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A response arrives after `latency`.
    Response {
        response: HttpResponse,
        latency: Duration,
    },
    /// The call fails after `after` (reset, DNS, TLS...).
    Fail {
        failure: CallFailure,
        after: Duration,
    },
    /// The server never answers: the host's own timeout for the call decides what happens.
    Hang,
    /// The host loses the call: no callback is ever delivered, whatever the timeout
    /// (ngx_wasm_module before Kong 3.9 on some failures).
    NoCallback,
}

impl Reply {
    /// An immediate response.
    pub fn now(response: HttpResponse) -> Self {
        Reply::Response {
            response,
            latency: Duration::ZERO,
        }
    }

    /// The response, when this reply carries one.
    pub fn response(&self) -> Option<&HttpResponse> {
        match self {
            Reply::Response { response, .. } => Some(response),
            _ => None,
        }
    }
}

impl From<HttpResponse> for Reply {
    fn from(response: HttpResponse) -> Self {
        Reply::now(response)
    }
}

/// Anything that answers dispatched calls.
pub trait Handler: Send + Sync {
    /// The answer to one request.
    fn handle(&self, req: &HttpRequest, ctx: &CallContext) -> Reply;

    /// Whether answers come from a real server over the wire, with its own framing, connection
    /// and date headers; an in-process handler's answer (the default) has none, and a host that
    /// shows them adds its own.
    fn on_the_wire(&self) -> bool {
        false
    }
}

impl<F> Handler for F
where
    F: Fn(&HttpRequest, &CallContext) -> Reply + Send + Sync,
{
    fn handle(&self, req: &HttpRequest, ctx: &CallContext) -> Reply {
        self(req, ctx)
    }
}

impl<H: Handler + ?Sized> Handler for Arc<H> {
    fn handle(&self, req: &HttpRequest, ctx: &CallContext) -> Reply {
        (**self).handle(req, ctx)
    }

    fn on_the_wire(&self) -> bool {
        (**self).on_the_wire()
    }
}

/// A shareable handler.
pub type SharedHandler = Arc<dyn Handler>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        let r = HttpRequest::new("GET", "/b/o?prefix=a%2Fb&max-keys=2&x");
        assert_eq!(r.path_only(), "/b/o");
        assert_eq!(r.query_param("prefix").as_deref(), Some("a/b"));
        assert_eq!(r.query_param("max-keys").as_deref(), Some("2"));
        assert_eq!(r.query_param("x").as_deref(), Some(""));
        assert_eq!(r.query_param("y"), None);
    }

    #[test]
    fn closures_are_handlers_and_headers_are_case_insensitive() {
        let h: SharedHandler = Arc::new(|req: &HttpRequest, _: &CallContext| {
            Reply::now(HttpResponse::new(200).with_body(req.header("X-A").unwrap_or("none")))
        });
        let ctx = CallContext::new(SystemTime::UNIX_EPOCH, "n1", "up");
        let reply = h.handle(&HttpRequest::new("GET", "/").with_header("x-a", "v"), &ctx);
        assert_eq!(reply.response().map(|r| r.text()), Some("v".to_string()));
    }
}
