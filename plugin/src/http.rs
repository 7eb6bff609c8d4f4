//! Plain HTTP requests and responses as the core sees them: what a store, a source or the import
//! builds and parses. The shells turn them into `dispatch_http_call` (filter) or real HTTP
//! (native tool).

use std::fmt;
use std::rc::Rc;

/// A request for `dispatch_http_call`. `authority` becomes `:authority` (the Host header), so
/// `headers` never contains `host`. `Debug` shows only the values of headers known to be harmless
/// ([`PLAIN_HEADERS`]; the signature, session token, Admin API token... are shown as `<redacted>`),
/// the path without its query, and the body's length.
#[derive(Clone, PartialEq, Eq)]
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

/// `Debug` as for requests: the body (a downloaded configuration holds credentials) by length.
#[derive(Clone, PartialEq, Eq)]
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

/// Headers whose values `Debug` shows; every other value (`authorization`,
/// `x-amz-security-token`, the Admin API token under whatever name it is configured,
/// `x-amz-server-side-encryption-customer-key`, ...) is `<redacted>`.
pub const PLAIN_HEADERS: &[&str] = &[
    "accept",
    "content-length",
    "content-type",
    "date",
    "etag",
    "if-match",
    "if-none-match",
    "last-modified",
    "retry-after",
    "x-amz-content-sha256",
    "x-amz-date",
    "x-amz-meta-uploader",
    "x-amz-meta-config-applied-at",
    "x-amz-meta-config-sha256",
    "x-amz-meta-config-sequence",
    "x-amz-meta-config-updated-at",
    "x-amz-meta-config-supersedes",
];

/// Header names with their values shown or `<redacted>`.
struct Headers<'a>(&'a [(String, String)]);

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, v)| {
                let plain = PLAIN_HEADERS.iter().any(|p| k.eq_ignore_ascii_case(p));
                (k.as_str(), if plain { v.as_str() } else { "<redacted>" })
            }))
            .finish()
    }
}

/// A body by its length.
struct Len(usize);

impl fmt::Debug for Len {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

impl fmt::Debug for OutboundRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let query = if self.path.contains('?') { "?…" } else { "" };
        let path = self.path.split('?').next().unwrap_or_default();
        f.debug_struct("OutboundRequest")
            .field("upstream", &self.upstream)
            .field("method", &self.method)
            .field("path", &format_args!("{path}{query}"))
            .field("authority", &self.authority)
            .field("scheme", &self.scheme)
            .field("headers", &Headers(&self.headers))
            .field("body", &Len(self.body.len()))
            .finish()
    }
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("headers", &Headers(&self.headers))
            .field("body", &Len(self.body.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_credentials_or_bodies() {
        let req = OutboundRequest {
            upstream: "s3:443".into(),
            method: "PUT".into(),
            path: "/b/k?X-Amz-Signature=SECRET-SIG".into(),
            authority: "s3".into(),
            scheme: "https".into(),
            headers: vec![
                (
                    "authorization".into(),
                    "AWS4-HMAC-SHA256 Credential=AKIA/SECRET-AUTH".into(),
                ),
                ("x-amz-security-token".into(), "SECRET-SESSION".into()),
                ("Kong-Admin-Token".into(), "SECRET-ADMIN".into()),
                ("my-rbac-header".into(), "SECRET-CUSTOM".into()),
                (
                    "x-amz-server-side-encryption-customer-key".into(),
                    "SECRET-SSEC".into(),
                ),
                ("content-type".into(), "application/json".into()),
            ],
            body: Rc::new(b"{\"aws_secret_access_key\":\"SECRET-BODY\"}".to_vec()),
        };
        let text = format!("{req:?} {req:#?}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("application/json") && text.contains("authorization"));
        assert!(
            text.contains("/b/k?…") && text.contains("<39 bytes>"),
            "{text}"
        );
        let resp = HttpResponse {
            status: 200,
            headers: vec![("set-cookie".into(), "SECRET-COOKIE".into())],
            body: b"SECRET-CONFIG".to_vec(),
        };
        let text = format!("{resp:?}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(
            text.contains("200") && text.contains("set-cookie"),
            "{text}"
        );
    }
}
