//! The filter configuration's JSON, split into top-level members (key, byte range) without
//! decoding any value: the `config` payload (up to tens of MB) is located, never parsed into a
//! tree. `scan` validates; these functions only walk already-valid text.

use super::scan::{validate_all, ErrorKind, ScanError};
use super::value::{parse, Value};

/// Why text is not valid JSON: a category and a byte offset, never the input (values may be
/// secrets). Lower case, as the reasons it is part of.
pub(crate) fn json_syntax_reason(e: &ScanError) -> String {
    e.to_string().to_ascii_lowercase()
}

/// A JSON string value, unescaped. Most are keys without escapes (every key of a Kong Admin page):
/// those are copied at once, the others parsed.
pub(crate) fn json_string(text: &[u8]) -> Result<String, ScanError> {
    if let [b'"', inner @ .., b'"'] = text {
        if inner.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\') {
            if let Ok(s) = std::str::from_utf8(inner) {
                return Ok(s.to_string());
            }
        }
    }
    match parse(text)? {
        Value::String(s) => Ok(s),
        _ => Err(ScanError {
            kind: ErrorKind::ExpectedValue,
            offset: 0,
        }),
    }
}

/// Checks that `text` is one valid JSON value, without building anything (`scan`).
pub(crate) fn check_json(text: &[u8]) -> Result<(), ScanError> {
    validate_all(text).map(|_| ())
}

/// The first byte that is not JSON whitespace.
pub(crate) fn first_byte(text: &[u8]) -> Option<u8> {
    text.iter().copied().find(|b| !b.is_ascii_whitespace())
}

pub(crate) fn skip_ws(t: &[u8], mut i: usize) -> usize {
    while t.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// `t[i]` opens a string: the index after its closing quote.
pub(crate) fn skip_string(t: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match *t.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// The end of the value starting at `t[i]` (before a following `,`/`}` for scalars, so trailing
/// whitespace may be included).
pub(crate) fn skip_value(t: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *t.get(i)? {
            b'"' => {
                i = skip_string(t, i)?;
                if depth == 0 {
                    return Some(i);
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth <= 1 {
                    return Some(if depth == 0 { i } else { i + 1 });
                }
                depth -= 1;
            }
            b',' if depth == 0 => return Some(i),
            _ => {}
        }
        i += 1;
    }
}

/// The members of a JSON object as (unescaped key, byte range of the raw value), in order; only
/// the keys are decoded. `t` must already be valid JSON (`check_json`); `None`: not an object.
pub(crate) fn object_members(t: &[u8]) -> Option<Vec<(String, usize, usize)>> {
    let mut i = skip_ws(t, 0);
    if t.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(t, i + 1);
    let mut out = Vec::new();
    if t.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        if t.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(t, i)?;
        let key = json_string(t.get(i..key_end)?).ok()?;
        i = skip_ws(t, key_end);
        if t.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(t, i + 1);
        let mut end = skip_value(t, start)?;
        i = skip_ws(t, end);
        while end > start && t.get(end - 1).is_some_and(|b| b.is_ascii_whitespace()) {
            end -= 1;
        }
        out.push((key, start, end));
        match *t.get(i)? {
            b',' => i = skip_ws(t, i + 1),
            b'}' => return Some(out),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_string_agrees_with_serde_json_with_and_without_escapes() {
        let cases: [&[u8]; 12] = [
            br#""plain key""#,
            br#""""#,
            "\"é € 😀\"".as_bytes(),
            br#""a\"b\\c\/d\u00e9\ud83d\ude00\n""#,
            b"\"raw\x01control\"",
            b"\"bad \xff utf-8\"",
            b"\"\xed\xa0\x80 encoded surrogate\"",
            br#""\ud800 lone""#,
            br#""unterminated"#,
            br#""a" "b""#,
            br#""two"""#,
            b"42",
        ];
        for text in cases {
            let serde = serde_json::from_slice::<String>(text).ok();
            assert_eq!(
                json_string(text).ok(),
                serde,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }
}
