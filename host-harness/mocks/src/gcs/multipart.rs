//! `multipart/related` bodies of `uploadType=multipart` (a JSON metadata part, then the media).
//! Hand-written: the crates for multipart parse `form-data` asynchronously, while this is one
//! synchronous split of a body already in memory.

/// One part: its lower-cased headers and its bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Part {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The `boundary` parameter of a content type, unquoted.
pub fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Splits `body` at `--boundary` delimiters (RFC 2046: each delimiter is preceded by CRLF,
/// the last one ends with `--`).
pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let mut pos = find(body, d, 0).ok_or("multipart body without its boundary")?;
    let mut parts = Vec::new();
    loop {
        pos += d.len();
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        // Skip the rest of the delimiter line.
        let line_end = find(body, b"\r\n", pos).ok_or("truncated multipart body")?;
        let start = line_end + 2;
        let next = find(body, d, start).ok_or("multipart body without a closing boundary")?;
        // The CRLF before a delimiter belongs to the delimiter.
        let end = if next >= 2 && &body[next - 2..next] == b"\r\n" {
            next - 2
        } else {
            next
        };
        parts.push(parse_part(&body[start..end.max(start)])?);
        pos = next;
    }
}

fn parse_part(raw: &[u8]) -> Result<Part, String> {
    let (head, body) = match find(raw, b"\r\n\r\n", 0) {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        // A part with no headers starts with the empty line itself.
        None if raw.starts_with(b"\r\n") => (&raw[..0], &raw[2..]),
        None => return Err("multipart part without a header/body separator".into()),
    };
    let head = std::str::from_utf8(head).map_err(|_| "multipart part headers are not UTF-8")?;
    let headers = head
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Part {
        headers,
        body: body.to_vec(),
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_two_part_related_body() {
        let ct = "multipart/related; boundary=\"==b==\"";
        let b = boundary(ct).unwrap();
        assert_eq!(b, "==b==");
        let body = b"--==b==\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n{\"name\":\"a\"}\r\n--==b==\r\ncontent-type: text/plain\r\n\r\nhello\r\nworld\r\n--==b==--\r\n";
        let parts = parse(body, &b).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0].header("Content-Type"),
            Some("application/json; charset=UTF-8")
        );
        assert_eq!(parts[0].body, b"{\"name\":\"a\"}");
        assert_eq!(parts[1].body, b"hello\r\nworld");
    }

    #[test]
    fn rejects_a_body_without_closing_boundary() {
        assert!(parse(b"--x\r\n\r\nabc", "x").is_err());
    }
}
