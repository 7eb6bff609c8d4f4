//! Plain HTTP requests and responses as the core sees them: what a store, a source or the import
//! builds and parses. The shells turn them into `dispatch_http_call` (filter) or real HTTP
//! (native tool).

use std::rc::Rc;

/// A request for `dispatch_http_call`. `authority` becomes `:authority` (the Host header), so
/// `headers` never contains `host`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundRequest {
    /// `host:port` (ngx) or a cluster name (Envoy).
    pub upstream: String,
    pub method: String,
    pub path: String,
    pub authority: String,
    pub scheme: String,
    pub headers: Vec<(String, String)>,
    /// Shared with the exported document: the shell passes it to the host as a slice.
    pub body: Rc<Vec<u8>>,
}

impl OutboundRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
}

pub fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
