//! The byte-level scan of the redaction rewriter (`redact::Rewriter` in the filter): where the
//! values of some member names are, anywhere in a JSON document, a slice at a time, without a
//! tree of the document. It reads every byte of an export, so it lives in this crate, built for
//! speed (BENCHMARKS.md, "Issue 25, speed6"); what to do with a value stays in the filter.
//!
//! It does not validate (the document was validated before, `Scanner`): it follows strings,
//! escapes and nesting exactly, and refuses only what it cannot follow (an unbalanced bracket, a
//! nesting deeper than [`MAX_DEPTH`]).

use crate::{quote_or_backslash, MAX_DEPTH};

/// A member name the scan looks for (its bytes, unescaped), and whether a container value of it
/// is handed over whole ([`Found::Captured`]) or only where it starts ([`Found::Value`]).
#[derive(Clone, Copy, Debug)]
pub struct Wanted<'a> {
    pub name: &'a [u8],
    pub capture: bool,
}

/// Why one [`KeyScan::step`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// The slice is read.
    Slice,
    /// A key holding an escape, outside a captured value: `start..end`, quotes included (the
    /// caller decodes it and tells which wanted name it is with [`KeyScan::key_matched`]).
    EscapedKey { start: usize, end: usize },
    /// The value of the wanted name `want` (not captured) starts at byte `at`.
    Value { want: usize, at: usize },
    /// The whole container value (`start..end`) of the wanted name `want`; keys inside it are
    /// not looked at.
    Captured {
        want: usize,
        start: usize,
        end: usize,
    },
}

/// What the scan cannot follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyScanError {
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A bracket at this byte closes nothing open (or the wrong kind).
    Unbalanced(usize),
}

/// Keys longer than this are no wanted name (never decoded).
pub(crate) const KEY_MAX: usize = 256;

/// The resumable scan (see the module documentation). Outside strings only `"{}[]` matter:
/// a string is a key when `:` follows it, and only a key of a wanted name (or one with an
/// escape) is looked at further, so most bytes are passed over a word or a run at a time.
#[derive(Clone, Debug, Default)]
pub struct KeyScan {
    pos: usize,
    /// Bit `d`: the container at depth `d` is an object.
    objects: u128,
    depth: usize,
    in_string: bool,
    escape: bool,
    /// The current string holds an escape.
    escaped: bool,
    string_start: usize,
    /// A wanted key decoded by the caller ([`KeyScan::key_matched`]), its value not yet seen.
    pending: Option<usize>,
    /// The value being captured: wanted index, first byte, depth outside it.
    capture: Option<(usize, usize, usize)>,
}

impl KeyScan {
    pub fn new() -> KeyScan {
        KeyScan::default()
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Whether the scan stopped inside a string, a container or a captured value (at the end of
    /// the document: not well-formed).
    pub fn inside_a_value(&self) -> bool {
        self.in_string || self.depth != 0 || self.capture.is_some()
    }

    /// The answer to [`Found::EscapedKey`]: the index of the wanted name the key decodes to.
    pub fn key_matched(&mut self, want: Option<usize>) {
        self.pending = want;
    }

    /// Reads on until `end` (at most `t.len()`) or the next thing found. `t` is the whole
    /// document: what follows a key is looked at even past `end`.
    pub fn step(
        &mut self,
        t: &[u8],
        end: usize,
        wanted: &[Wanted<'_>],
    ) -> Result<Found, KeyScanError> {
        let end = end.min(t.len());
        if let Some(want) = self.pending.take() {
            if let Some(found) = self.after_key(t, want, wanted) {
                return Ok(found);
            }
        }
        loop {
            if self.in_string {
                if let Some(found) = self.string(t, end, wanted) {
                    return Ok(found);
                }
                if self.in_string {
                    return Ok(Found::Slice);
                }
            }
            let from = self.pos.min(end);
            let run = t.get(from..end).unwrap_or_default();
            let Some(n) = run
                .iter()
                .position(|&b| matches!(b, b'"' | b'{' | b'}' | b'[' | b']'))
            else {
                self.pos = end.max(self.pos);
                return Ok(Found::Slice);
            };
            let i = from + n;
            self.pos = i + 1;
            match run.get(n) {
                Some(b'"') => {
                    self.in_string = true;
                    self.escaped = false;
                    self.string_start = i;
                }
                Some(&b @ (b'{' | b'[')) => self.open(b == b'{')?,
                Some(&b) => {
                    if let Some(found) = self.close(i, b == b'}')? {
                        return Ok(found);
                    }
                }
                None => {}
            }
        }
    }

    fn in_object(&self) -> bool {
        self.depth
            .checked_sub(1)
            .is_some_and(|d| self.objects >> d & 1 == 1)
    }

    fn open(&mut self, object: bool) -> Result<(), KeyScanError> {
        if self.depth >= MAX_DEPTH {
            return Err(KeyScanError::TooDeep);
        }
        let bit = 1u128 << self.depth;
        if object {
            self.objects |= bit;
        } else {
            self.objects &= !bit;
        }
        self.depth += 1;
        Ok(())
    }

    /// `}` (`object`) or `]` at byte `i`; the captured value, when this closes it.
    fn close(&mut self, i: usize, object: bool) -> Result<Option<Found>, KeyScanError> {
        if self.depth == 0 || self.in_object() != object {
            return Err(KeyScanError::Unbalanced(i));
        }
        self.depth -= 1;
        match self.capture {
            Some((want, start, depth)) if depth == self.depth => {
                self.capture = None;
                let end = i + 1;
                Ok(Some(Found::Captured { want, start, end }))
            }
            _ => Ok(None),
        }
    }

    /// Inside a string: on to its closing quote (or `end`), a quote or backslash at a time
    /// (strings are most of a document); a wanted key, when it was one.
    #[inline(always)]
    fn string(&mut self, t: &[u8], end: usize, wanted: &[Wanted<'_>]) -> Option<Found> {
        let mut i = self.pos;
        if self.escape {
            if i >= end {
                return None;
            }
            self.escape = false;
            i += 1;
        }
        loop {
            let Some(n) = t.get(i..end).and_then(quote_or_backslash) else {
                self.pos = end.max(i);
                return None;
            };
            let at = i + n;
            if t.get(at) == Some(&b'"') {
                self.pos = at + 1;
                self.in_string = false;
                return self.string_end(t, at, wanted);
            }
            self.escaped = true;
            if at + 1 >= end {
                self.pos = end;
                self.escape = true;
                return None;
            }
            i = at + 2;
        }
    }

    /// A string ended at the quote `t[quote]`: a key of a wanted name (outside a captured
    /// value) goes on to its value; one with an escape goes to the caller first.
    fn string_end(&mut self, t: &[u8], quote: usize, wanted: &[Wanted<'_>]) -> Option<Found> {
        if self.capture.is_some() {
            return None;
        }
        let start = self.string_start;
        let inner = t.get(start + 1..quote).unwrap_or_default();
        if !self.escaped {
            let want = wanted.iter().position(|w| w.name == inner)?;
            return self.after_key(t, want, wanted);
        }
        if inner.len() > KEY_MAX || value_after_colon(t, self.pos).is_none() {
            return None;
        }
        Some(Found::EscapedKey {
            start,
            end: quote + 1,
        })
    }

    /// After a string of the wanted name `want` (at `self.pos`): when `:` follows, it was a key,
    /// and its value is captured or reported.
    fn after_key(&mut self, t: &[u8], want: usize, wanted: &[Wanted<'_>]) -> Option<Found> {
        let at = value_after_colon(t, self.pos)?;
        if !wanted.get(want)?.capture {
            return Some(Found::Value { want, at });
        }
        // Its bracket is the next structural byte: the scan opens it one level deeper.
        if matches!(t.get(at), Some(b'{' | b'[')) {
            self.capture = Some((want, at, self.depth));
        }
        None
    }
}

/// Where the value starts when `t[at..]` is whitespace, `:`, whitespace (a string before it was
/// a key); `None` otherwise.
fn value_after_colon(t: &[u8], at: usize) -> Option<usize> {
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let rest = t.get(at..)?;
    let colon = rest.iter().position(|b| !is_ws(b))?;
    if rest.get(colon) != Some(&b':') {
        return None;
    }
    let after = rest.get(colon + 1..)?;
    let value = after.iter().position(|b| !is_ws(b))?;
    Some(at + colon + 1 + value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANTED: &[Wanted<'static>] = &[
        Wanted {
            name: b"chains",
            capture: true,
        },
        Wanted {
            name: b"at",
            capture: false,
        },
    ];

    /// Everything found in `t`, in slices of `budget` bytes; escaped keys decoded by hand.
    fn all(t: &[u8], budget: usize) -> Result<Vec<Found>, KeyScanError> {
        let mut scan = KeyScan::new();
        let mut found = Vec::new();
        while scan.position() < t.len() {
            let end = scan.position() + budget;
            loop {
                match scan.step(t, end, WANTED)? {
                    Found::Slice => break,
                    Found::EscapedKey { start, end } => {
                        let key = t.get(start..end).unwrap_or_default();
                        let m = (key == br#""ch\u0061ins""#).then_some(0);
                        scan.key_matched(m);
                        found.push(Found::EscapedKey { start, end });
                    }
                    other => found.push(other),
                }
            }
        }
        assert!(!scan.inside_a_value());
        Ok(found)
    }

    #[test]
    fn wanted_values_are_found_at_any_depth_and_in_any_slices() {
        let t = br#"{"a":{"at":12,"chains":[{"at":9,"chains":[]}]},"s":"\"at\":1","x":[{"at" :"q"}],"ch\u0061ins": {} }"#;
        let want = vec![
            Found::Value { want: 1, at: 11 },
            Found::Captured {
                want: 0,
                start: 23,
                end: 45,
            },
            Found::Value { want: 1, at: 74 },
            Found::EscapedKey { start: 80, end: 93 },
            Found::Captured {
                want: 0,
                start: 95,
                end: 97,
            },
        ];
        for budget in [1, 2, 3, 7, 64, t.len()] {
            assert_eq!(all(t, budget), Ok(want.clone()), "budget {budget}");
        }
    }

    #[test]
    fn scalars_of_a_captured_name_and_keys_in_strings_or_arrays_are_not_found() {
        let t = br#"{"chains":5,"k":["chains",{"chains":null}],"v":"{\"chains\":[1]}"}"#;
        assert_eq!(all(t, t.len()), Ok(vec![]));
    }

    /// A key is a string that `:` follows, whitespace allowed (here across slice ends), and
    /// only outside a captured value; a string value equal to a wanted name is no key.
    #[test]
    fn keys_are_told_from_values_by_the_colon_after_them() {
        let t = b"{ \"v\" : \"chains\" ,\n \"chains\"\n :\n [ \"at\", {\"at\": 1} ] , \"at\"\t:\tnull }";
        let want = vec![
            Found::Captured {
                want: 0,
                start: 33,
                end: 52,
            },
            Found::Value { want: 1, at: 62 },
        ];
        for budget in [1, 2, 5, t.len()] {
            assert_eq!(all(t, budget), Ok(want.clone()), "budget {budget}");
        }
    }

    #[test]
    fn unbalanced_and_too_deep_documents_are_refused() {
        assert_eq!(all(b"{]", 8), Err(KeyScanError::Unbalanced(1)));
        assert_eq!(all(b"]", 8), Err(KeyScanError::Unbalanced(0)));
        let deep = "[".repeat(MAX_DEPTH + 1);
        assert_eq!(all(deep.as_bytes(), 1000), Err(KeyScanError::TooDeep));
        let mut scan = KeyScan::new();
        assert_eq!(scan.step(br#"{"a":"b"#, 100, WANTED), Ok(Found::Slice));
        assert!(scan.inside_a_value());
    }
}
