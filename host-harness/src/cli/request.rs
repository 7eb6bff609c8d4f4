//! `--request 'GET /path -H k:v -d body'` and `--response '404 -H k:v -d body'`: the CLI's
//! HTTP exchanges, and how `run` prints what the filter did with each.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use crate::world::{HttpExchange, HttpOutcome};

/// One request of the command line, optionally at a virtual time (`@2.5 GET /x`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestSpec {
    /// When to send it (virtual time since the start); `None`: after the previous one.
    pub at: Option<Duration>,
    pub method: String,
    /// Path with its query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Splits `-H k:v` / `-d body` options off the words; returns the rest in order.
fn options(
    words: &[&str],
    headers: &mut Vec<(String, String)>,
    body: &mut Vec<u8>,
) -> Result<Vec<String>> {
    let mut rest = Vec::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match *w {
            "-H" => {
                let h = it.next().ok_or_else(|| anyhow!("-H needs NAME:VALUE"))?;
                let (k, v) = h
                    .split_once(':')
                    .ok_or_else(|| anyhow!("header {h:?} must look like NAME:VALUE"))?;
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            "-d" => {
                *body = it
                    .next()
                    .ok_or_else(|| anyhow!("-d needs a body"))?
                    .as_bytes()
                    .to_vec()
            }
            w => rest.push(w.to_string()),
        }
    }
    Ok(rest)
}

impl RequestSpec {
    /// `[@SECONDS] [METHOD] /path [-H NAME:VALUE]... [-d BODY]` (words split on whitespace; a
    /// body without a method makes it a POST).
    pub fn parse(spec: &str) -> Result<RequestSpec> {
        let words: Vec<&str> = spec.split_whitespace().collect();
        let (mut headers, mut body) = (Vec::new(), Vec::new());
        let mut rest = options(&words, &mut headers, &mut body)?
            .into_iter()
            .peekable();
        let at = match rest.peek().and_then(|w| w.strip_prefix('@')) {
            Some(t) => {
                let secs: f64 = t
                    .trim_end_matches('s')
                    .parse()
                    .map_err(|_| anyhow!("bad time {t:?} in {spec:?} (use @SECONDS)"))?;
                if !(secs >= 0.0 && secs.is_finite()) {
                    bail!("bad time {t:?} in {spec:?}");
                }
                rest.next();
                Some(Duration::from_secs_f64(secs))
            }
            None => None,
        };
        let first = rest
            .next()
            .ok_or_else(|| anyhow!("empty request {spec:?}"))?;
        let (method, path) = if first.starts_with('/') {
            (
                if body.is_empty() { "GET" } else { "POST" }.to_string(),
                first,
            )
        } else {
            let path = rest
                .next()
                .filter(|p| p.starts_with('/'))
                .ok_or_else(|| anyhow!("no /path in {spec:?}"))?;
            (first.to_ascii_uppercase(), path)
        };
        if let Some(extra) = rest.next() {
            bail!("unexpected {extra:?} in {spec:?}");
        }
        Ok(RequestSpec {
            at,
            method,
            path,
            headers,
            body,
        })
    }

    /// The exchange: pseudo-headers, then the given headers; `response` is what the upstream
    /// answers (`:status` first).
    pub fn exchange(&self, response: &ResponseSpec) -> HttpExchange {
        let mut ex = HttpExchange::get(&self.path);
        ex.request_headers = vec![
            (":method".into(), self.method.clone()),
            (":path".into(), self.path.clone()),
            (":authority".into(), "example.test".into()),
            (":scheme".into(), "http".into()),
        ];
        ex.request_headers.extend(self.headers.iter().cloned());
        if !self.body.is_empty() {
            ex.request_headers
                .push(("content-length".into(), self.body.len().to_string()));
        }
        ex.request_body = self.body.clone();
        ex.response_headers = vec![(":status".into(), response.status.to_string())];
        ex.response_headers.extend(response.headers.iter().cloned());
        ex.response_body = response.body.clone();
        ex
    }
}

/// What the upstream answers every request: `STATUS [-H NAME:VALUE]... [-d BODY]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseSpec {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Default for ResponseSpec {
    fn default() -> Self {
        ResponseSpec {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

impl ResponseSpec {
    pub fn parse(spec: &str) -> Result<ResponseSpec> {
        let words: Vec<&str> = spec.split_whitespace().collect();
        let (mut headers, mut body) = (Vec::new(), Vec::new());
        let rest = options(&words, &mut headers, &mut body)?;
        let status = match rest.as_slice() {
            [s] => s
                .parse()
                .map_err(|_| anyhow!("bad status {s:?} in {spec:?}"))?,
            _ => bail!("--response must look like 'STATUS -H NAME:VALUE -d BODY', got {spec:?}"),
        };
        if !body.is_empty()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            headers.push(("content-length".into(), body.len().to_string()));
        }
        Ok(ResponseSpec {
            status,
            headers,
            body,
        })
    }
}

fn show_body(body: &[u8]) -> String {
    const MAX: usize = 512;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]).into_owned();
    if body.len() > MAX {
        format!("{text:?}... ({} bytes)", body.len())
    } else {
        format!("{text:?}")
    }
}

fn show_headers(out: &mut String, title: &str, headers: &[(String, String)]) {
    let _ = writeln!(out, "  {title}:");
    for (k, v) in headers {
        let _ = writeln!(out, "    {k}: {v}");
    }
}

/// The exchange as the CLI prints it: phases and actions, the request as the filter left it, and
/// the response the client gets (the local response when the filter sent one).
pub fn describe(n: usize, at: Duration, req: &RequestSpec, outcome: &HttpOutcome) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "=== request {n} at {:.3}s: {} {} (context {})",
        at.as_secs_f64(),
        req.method,
        req.path,
        outcome.context_id
    );
    let phases: Vec<String> = outcome
        .actions
        .iter()
        .map(|(phase, action)| format!("{phase}={action:?}"))
        .collect();
    let _ = writeln!(out, "  phases: {}", phases.join(" "));
    // Every guest callback of the exchange with its arguments (count or size, end of stream).
    for c in &outcome.callbacks {
        let result = c.result.map(|r| format!(" -> {r}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "  callback {}#{}{:?}{result}",
            c.name, c.context, c.args
        );
    }
    if outcome.failed {
        let _ = writeln!(
            out,
            "  FAILED: the filter trapped or the worker died (see the traps below)"
        );
    }
    if outcome.stuck {
        let _ = writeln!(
            out,
            "  STUCK: a phase stayed paused past the exchange's max pause"
        );
    }
    let m = &outcome.data.messages;
    show_headers(
        &mut out,
        "request headers (as the filter left them)",
        &m.request_headers,
    );
    if !m.request_body.is_empty() {
        let _ = writeln!(out, "  request body: {}", show_body(&m.request_body));
    }
    // After a local response the exchange's response is the local one, as it went through the
    // response phases (the host's own headers added).
    if let Some(lr) = outcome.local_response() {
        let _ = writeln!(
            out,
            "  local response {} {:?} sent by the filter with {} header(s)",
            lr.status,
            lr.details,
            lr.headers.len()
        );
    }
    show_headers(
        &mut out,
        "response headers (as the client gets them)",
        &m.response_headers,
    );
    let _ = writeln!(out, "  response body: {}", show_body(&m.response_body));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        let r = RequestSpec::parse("@2.5 get /a?b=1 -H X-A:1 -H y:two -d hello").unwrap();
        assert_eq!(r.at, Some(Duration::from_millis(2500)));
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/a?b=1"));
        assert_eq!(
            r.headers,
            vec![("X-A".into(), "1".into()), ("y".into(), "two".into())]
        );
        assert_eq!(r.body, b"hello");
        assert_eq!(RequestSpec::parse("/p -d x").unwrap().method, "POST");
        assert_eq!(RequestSpec::parse("/p").unwrap().method, "GET");
        for bad in ["", "GET", "GET /a extra", "/a -H novalue", "@x /a", "/a -d"] {
            assert!(RequestSpec::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn responses_parse() {
        let r = ResponseSpec::parse("404 -H X-B:2 -d gone").unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(
            r.headers,
            vec![
                ("X-B".into(), "2".into()),
                ("content-length".into(), "4".into())
            ]
        );
        assert!(ResponseSpec::parse("-d x").is_err());
    }
}
