//! Minimal `http(s)://host[:port][/path][?query]` parsing for endpoints and source URLs.
//!
//! Hand-written on purpose: the `url` crate pulls in IDNA tables (~100 KB of .wasm) and we only need
//! the scheme, authority and path of operator-supplied ASCII URLs.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or IP literal as written (IPv6 keeps its brackets).
    pub host: String,
    /// Port written in the URL, if any.
    pub explicit_port: Option<u16>,
    /// Path and query, always starting with `/`.
    pub path_and_query: String,
}

impl HttpUrl {
    pub fn parse(input: &str) -> Result<HttpUrl, String> {
        let input = input.trim();
        let (scheme, rest) = crate::text::split_once(input, "://")
            .ok_or_else(|| "must start with http:// or https://".to_string())?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!("unsupported scheme '{scheme}' (use http or https)"));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        // `split` is at a char (an ASCII byte or the end); `split_at_checked` has no panic path.
        let (authority, tail) = rest.split_at_checked(split).unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err("credentials in the URL are not supported".to_string());
        }
        let (host, port) = split_host_port(authority)?;
        if host.is_empty() {
            return Err("host is missing".to_string());
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
        {
            return Err("host contains invalid characters".to_string());
        }
        let path_and_query = if tail.is_empty() {
            "/".to_string()
        } else if tail.starts_with('?') {
            format!("/{tail}")
        } else {
            tail.to_string()
        };
        if path_and_query.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("path contains spaces or control characters".to_string());
        }
        Ok(HttpUrl {
            scheme,
            host,
            explicit_port: port,
            path_and_query,
        })
    }

    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    pub fn port(&self) -> u16 {
        self.explicit_port
            .unwrap_or(if self.is_https() { 443 } else { 80 })
    }

    /// The `Host` / `:authority` value: the port only when it is not the scheme's default.
    pub fn authority(&self) -> String {
        match self.explicit_port {
            Some(p) if p != if self.is_https() { 443 } else { 80 } => format!("{}:{p}", self.host),
            _ => self.host.clone(),
        }
    }

    /// `host:port` as ngx_wasm_module expects for the `dispatch_http_call` upstream.
    pub fn upstream(&self) -> String {
        format!("{}:{}", self.host, self.port())
    }

    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.path_and_query.split('?').next().unwrap_or("/")
    }
}

/// For log lines and messages: the query string (a signed URL's signature, a token) is left out
/// and shown as `?…`. Requests use `path_and_query`, never this.
impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let query = if self.path_and_query.contains('?') {
            "?…"
        } else {
            ""
        };
        write!(
            f,
            "{}://{}{}{query}",
            self.scheme,
            self.authority(),
            self.path()
        )
    }
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    // IPv6 literal: [::1]:9000
    if let Some(rest) = authority.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or("unclosed '[' in host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(parse_port(p)?),
            None if after.is_empty() => None,
            None => return Err("unexpected text after IPv6 host".to_string()),
        };
        return Ok((format!("[{inner}]"), port));
    }
    match crate::text::rsplit_once_ascii(authority, b':') {
        Some((h, p)) => Ok((h.to_ascii_lowercase(), Some(parse_port(p)?))),
        None => Ok((authority.to_ascii_lowercase(), None)),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("port must be a number between 1 and 65535".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displayed_urls_leave_the_query_out() {
        let u =
            HttpUrl::parse("https://cp.example:8443/config?X-Amz-Signature=SECRET&token=SECRET")
                .unwrap();
        assert_eq!(u.to_string(), "https://cp.example:8443/config?…");
        assert_eq!(
            u.path_and_query,
            "/config?X-Amz-Signature=SECRET&token=SECRET"
        );
        let u = HttpUrl::parse("http://h/p").unwrap();
        assert_eq!(u.to_string(), "http://h/p");
    }

    #[test]
    fn parses_custom_endpoint_with_port() {
        let u = HttpUrl::parse("http://MinIO:9000/").unwrap();
        assert_eq!(u.host, "minio");
        assert_eq!(u.port(), 9000);
        assert_eq!(u.authority(), "minio:9000");
        assert_eq!(u.upstream(), "minio:9000");
        assert_eq!(u.path(), "/");
    }

    #[test]
    fn default_ports_and_authority() {
        let u = HttpUrl::parse("https://example.com/a/b?x=1").unwrap();
        assert_eq!(u.port(), 443);
        assert_eq!(u.authority(), "example.com");
        assert_eq!(u.upstream(), "example.com:443");
        assert_eq!(u.path_and_query, "/a/b?x=1");
        assert_eq!(u.path(), "/a/b");
        let u = HttpUrl::parse("http://127.0.0.1:80").unwrap();
        assert_eq!(u.authority(), "127.0.0.1");
        assert_eq!(u.path_and_query, "/");
        let u = HttpUrl::parse("http://[::1]:9000/x").unwrap();
        assert_eq!(u.host, "[::1]");
        assert_eq!(u.upstream(), "[::1]:9000");
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(HttpUrl::parse("ftp://x").is_err());
        assert!(HttpUrl::parse("minio:9000").is_err());
        assert!(HttpUrl::parse("http://:9000").is_err());
        assert!(HttpUrl::parse("http://h:0").is_err());
        assert!(HttpUrl::parse("http://h:99999").is_err());
        assert!(HttpUrl::parse("http://user:pw@h/").is_err());
        assert!(HttpUrl::parse("http://h/a b").is_err());
    }
}

/// RFC 3986 percent-encoding (unreserved characters kept), as SigV4 and S3 object keys need.
/// `keep_slash` keeps `/` so a key can be encoded segment by segment in one pass.
pub fn percent_encode(input: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for b in input.bytes() {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(
                HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'),
            ));
            out.push(char::from(
                HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

#[cfg(test)]
mod encode_tests {
    use super::percent_encode;

    #[test]
    fn encodes_per_rfc3986() {
        assert_eq!(percent_encode("a b/c~d_e.f-g", true), "a%20b/c~d_e.f-g");
        assert_eq!(percent_encode("a b/c", false), "a%20b%2Fc");
        assert_eq!(percent_encode("test$file.text", true), "test%24file.text");
        assert_eq!(percent_encode("é+=&", true), "%C3%A9%2B%3D%26");
    }
}
