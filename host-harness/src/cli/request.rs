//! `--request 'GET /path -H k:v -d body'` and `--response '404 -H k:v -d body'`: the CLI's
//! HTTP exchanges, and how `run` prints what the filter did with each.
//!
//! Words are split as a POSIX shell splits them, so a value may hold spaces and newlines:
//! `'...'` keeps everything literally, `"..."` keeps everything but `\"` and `\\`, and a
//! backslash outside quotes keeps the next character. `-d @FILE` reads the body from a file,
//! byte for byte (a trailing newline included); a quoted or escaped `-d '@x'` / `-d \@x` sends a
//! literal `@x`.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use crate::world::{HttpExchange, HttpOutcome};

/// One request of the command line, optionally at a virtual time (`@2.5 GET /x`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestSpec {
    /// When to send it (virtual time since the start); `None`: after the previous one.
    pub at: Option<Duration>,
    /// The method (upper-case).
    pub method: String,
    /// Path with its query.
    pub path: String,
    /// Headers in order (`-H`).
    pub headers: Vec<(String, String)>,
    /// The body (`-d`).
    pub body: Vec<u8>,
}

/// One word of a spec as the shell would give it. `quoted`: it starts with a quote or an escape
/// (such a `'@x'` or `\-d` is a literal, not a file name or an option).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Word {
    text: String,
    quoted: bool,
}

/// Splits a spec into words as a POSIX shell does (quotes and backslashes; no expansions).
fn words(spec: &str) -> Result<Vec<Word>> {
    let mut out = Vec::new();
    let mut cur: Option<Word> = None;
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            out.extend(cur.take());
            continue;
        }
        let w = cur.get_or_insert_with(|| Word {
            text: String::new(),
            quoted: false,
        });
        match c {
            '\'' => {
                w.quoted |= w.text.is_empty();
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.text.push(c),
                        None => bail!("unterminated ' in {spec:?}"),
                    }
                }
            }
            '"' => {
                w.quoted |= w.text.is_empty();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        // In double quotes a backslash escapes only `"` and `\` (POSIX also
                        // `$` and `` ` ``, which have no meaning here).
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => w.text.push(c),
                            Some(c) => {
                                w.text.push('\\');
                                w.text.push(c);
                            }
                            None => bail!("unterminated \" in {spec:?}"),
                        },
                        Some(c) => w.text.push(c),
                        None => bail!("unterminated \" in {spec:?}"),
                    }
                }
            }
            '\\' => {
                w.quoted |= w.text.is_empty();
                match chars.next() {
                    Some(c) => w.text.push(c),
                    None => bail!("a trailing \\ in {spec:?} escapes nothing"),
                }
            }
            c => w.text.push(c),
        }
    }
    out.extend(cur);
    Ok(out)
}

/// A `-d` body: the word itself, or with an unquoted `@FILE` the file's bytes.
fn body_of(word: &Word) -> Result<Vec<u8>> {
    match word.text.strip_prefix('@').filter(|_| !word.quoted) {
        Some(file) => std::fs::read(file).map_err(|e| anyhow!("-d @{file}: {e}")),
        None => Ok(word.text.as_bytes().to_vec()),
    }
}

/// Splits `-H k:v` / `-d body` options off the words; returns the rest in order.
fn options(
    words: &[Word],
    headers: &mut Vec<(String, String)>,
    body: &mut Vec<u8>,
) -> Result<Vec<String>> {
    let mut rest = Vec::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.text.as_str() {
            "-H" if !w.quoted => {
                let h = it.next().ok_or_else(|| anyhow!("-H needs NAME:VALUE"))?;
                let (k, v) = h
                    .text
                    .split_once(':')
                    .ok_or_else(|| anyhow!("header {:?} must look like NAME:VALUE", h.text))?;
                // Optional whitespace around a value is not part of it (RFC 9110 5.5).
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            "-d" if !w.quoted => {
                *body = body_of(it.next().ok_or_else(|| anyhow!("-d needs a body"))?)?;
            }
            _ => rest.push(w.text.clone()),
        }
    }
    Ok(rest)
}

impl RequestSpec {
    /// `[@SECONDS] [METHOD] /path [-H NAME:VALUE]... [-d BODY|@FILE]` (words split as a shell
    /// splits them, see the module's docs; a body without a method makes it a POST).
    ///
    /// ```
    /// use host_harness::cli::request::RequestSpec;
    /// let r = RequestSpec::parse(r#"@2 POST /login -H 'X-Note: two words' -d "user=me\n""#)?;
    /// assert_eq!(r.headers, [("X-Note".to_string(), "two words".to_string())]);
    /// assert_eq!(r.body, b"user=me\\n"); // a backslash before `n` stays in double quotes
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn parse(spec: &str) -> Result<RequestSpec> {
        let words = words(spec)?;
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
    /// The status.
    pub status: u16,
    /// Headers in order (`-H`; `content-length` added for a body).
    pub headers: Vec<(String, String)>,
    /// The body (`-d`).
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
    /// `STATUS [-H NAME:VALUE]... [-d BODY|@FILE]`, words split as [`RequestSpec::parse`] splits them.
    pub fn parse(spec: &str) -> Result<ResponseSpec> {
        let words = words(spec)?;
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
    describe_callbacks(&mut out, outcome);
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

/// The phases with their actions, every guest callback with its arguments and result, and
/// whether the exchange failed or stayed stuck.
fn describe_callbacks(out: &mut String, outcome: &HttpOutcome) {
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
    fn quoted_values_keep_spaces_newlines_and_literal_at_signs() {
        let r = RequestSpec::parse(
            "POST /a -H 'X-Note: two  words' -H \"X-Q:say \\\"hi\\\"\" -d 'line one\nline two\n'",
        )
        .unwrap();
        assert_eq!(
            r.headers,
            vec![
                ("X-Note".into(), "two  words".into()),
                ("X-Q".into(), "say \"hi\"".into())
            ]
        );
        assert_eq!(r.body, b"line one\nline two\n");
        // Escaped or quoted, `@` and `-d` are literals.
        assert_eq!(RequestSpec::parse("/a -d \\@x").unwrap().body, b"@x");
        assert_eq!(RequestSpec::parse("/a -d '@x'").unwrap().body, b"@x");
        assert_eq!(RequestSpec::parse("/a -d '-d'").unwrap().body, b"-d");
        assert_eq!(RequestSpec::parse("/a\\ b").unwrap().path, "/a b");
        for bad in ["/a -d 'open", "/a -d \"open", "/a -d x\\"] {
            let e = RequestSpec::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("unterminated") || e.contains("escapes nothing"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn at_file_bodies_are_read_byte_for_byte() {
        let dir = std::env::temp_dir().join(format!("hh-body-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("body with space.json");
        std::fs::write(&file, b"{\"a\": 1}\n").unwrap();
        // A quoted `@` is a literal; an unquoted one names the file, however the name is quoted.
        let spec = format!("PUT /x -d '@{}'", file.display());
        assert!(RequestSpec::parse(&spec).unwrap().body.starts_with(b"@"));
        let spec = format!(
            "PUT /x -d @{}",
            file.display().to_string().replace(' ', "\\ ")
        );
        assert_eq!(RequestSpec::parse(&spec).unwrap().body, b"{\"a\": 1}\n");
        let r = ResponseSpec::parse(&format!("200 -d @\"{}\"", file.display())).unwrap();
        assert_eq!(r.body, b"{\"a\": 1}\n");
        let e = RequestSpec::parse("/x -d @/no/such/file").unwrap_err();
        assert!(e.to_string().contains("/no/such/file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
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
