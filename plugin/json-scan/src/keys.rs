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
const KEY_MAX: usize = 256;

/// The resumable scan (see the module documentation).
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
    string_is_key: bool,
    /// After `{` or `,` in an object: the next string is a key.
    expect_key: bool,
    /// A wanted key just read, before its `:`.
    pending: Option<usize>,
    /// After the `:` of a wanted key: its value is next.
    value_key: Option<usize>,
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

    /// Reads on until `end` (at most `t.len()`) or the next thing found.
    pub fn step(
        &mut self,
        t: &[u8],
        end: usize,
        wanted: &[Wanted<'_>],
    ) -> Result<Found, KeyScanError> {
        let end = end.min(t.len());
        if self.in_string {
            if let Some(found) = self.string(t, end, wanted) {
                return Ok(found);
            }
        }
        while let Some(&b) = t.get(self.pos).filter(|_| self.pos < end) {
            let i = self.pos;
            self.pos = i + 1;
            if let Some(found) = self.structural(i, b, wanted)? {
                return Ok(found);
            }
            if self.in_string {
                if let Some(found) = self.string(t, end, wanted) {
                    return Ok(found);
                }
            }
        }
        Ok(Found::Slice)
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
                return self.key_end(t, at, wanted);
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

    fn in_object(&self) -> bool {
        self.depth
            .checked_sub(1)
            .is_some_and(|d| self.objects >> d & 1 == 1)
    }

    #[inline(always)]
    fn structural(
        &mut self,
        i: usize,
        b: u8,
        wanted: &[Wanted<'_>],
    ) -> Result<Option<Found>, KeyScanError> {
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'"' => {
                self.string_is_key = self.expect_key && self.in_object();
                self.expect_key = false;
                self.in_string = true;
                self.escaped = false;
                self.string_start = i;
                if !self.string_is_key {
                    return Ok(self.value_start(i, b, wanted));
                }
            }
            b'{' | b'[' => {
                let found = self.value_start(i, b, wanted);
                if self.depth >= MAX_DEPTH {
                    return Err(KeyScanError::TooDeep);
                }
                let bit = 1u128 << self.depth;
                if b == b'{' {
                    self.objects |= bit;
                } else {
                    self.objects &= !bit;
                }
                self.depth += 1;
                self.expect_key = b == b'{';
                return Ok(found);
            }
            b'}' | b']' => {
                if self.depth == 0 || self.in_object() != (b == b'}') {
                    return Err(KeyScanError::Unbalanced(i));
                }
                self.depth -= 1;
                self.expect_key = false;
                self.value_key = None;
                if let Some((want, start, depth)) = self.capture {
                    if depth == self.depth {
                        self.capture = None;
                        let end = i + 1;
                        return Ok(Some(Found::Captured { want, start, end }));
                    }
                }
            }
            b',' => {
                self.expect_key = self.in_object();
                self.value_key = None;
            }
            b':' => {
                self.value_key = self.pending.take();
                self.expect_key = false;
            }
            _ => return Ok(self.value_start(i, b, wanted)),
        }
        Ok(None)
    }

    /// A value starts at `i` (its first byte `b`): a wanted name's value is captured (a
    /// container of a capturing name) or reported (a name that is not captured).
    #[inline(always)]
    fn value_start(&mut self, i: usize, b: u8, wanted: &[Wanted<'_>]) -> Option<Found> {
        let want = self.value_key.take()?;
        let capture = wanted.get(want)?.capture;
        if !capture {
            return Some(Found::Value { want, at: i });
        }
        if self.capture.is_none() && (b == b'{' || b == b'[') {
            self.capture = Some((want, i, self.depth));
        }
        None
    }

    /// A string ended at the quote `t[i]`: when it was a key outside a captured value, whether
    /// it is a wanted name.
    fn key_end(&mut self, t: &[u8], i: usize, wanted: &[Wanted<'_>]) -> Option<Found> {
        if !std::mem::take(&mut self.string_is_key) {
            return None;
        }
        self.pending = None;
        let start = self.string_start;
        let inner_len = i.saturating_sub(start + 1);
        if self.capture.is_some() || inner_len > KEY_MAX {
            return None;
        }
        if self.escaped {
            return Some(Found::EscapedKey { start, end: i + 1 });
        }
        let inner = t.get(start + 1..i).unwrap_or_default();
        self.pending = wanted.iter().position(|w| w.name == inner);
        None
    }
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
