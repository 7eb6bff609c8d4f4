//! A resumable JSON syntax validator: the filter configuration (which embeds the exported
//! document, up to tens of MB) is checked a slice at a time, so that no single host callback does
//! work proportional to the document's size.
//!
//! The caller keeps the buffer and calls [`Scanner::step`] again with the same buffer; each step
//! reads at most `budget` bytes past where the previous one stopped. On the way the scanner records
//! the members of the top-level object (unescaped key, exact byte range of the raw value, kind of
//! value) and, for one member chosen by name, that member's own members when its value is an
//! object: enough to locate the `config` payload and read its `_format_version` without a second
//! pass.
//!
//! What is accepted is exactly what `serde_json::from_slice::<serde_json::Value>` accepts, except
//! that numbers are only checked for syntax (RFC 8259): `1e400` is valid here, while serde_json
//! refuses to build a `Value` from it (out of `f64` range). Compared with
//! `serde_json::from_slice::<IgnoredAny>` (which skips strings without decoding them and has no
//! recursion limit), this is stricter: strings must be valid UTF-8, `\u` escapes must not be lone
//! surrogates, and nesting deeper than [`MAX_DEPTH`] is refused (as serde_json's default recursion
//! limit does for every type but `IgnoredAny`).
//!
//! With [`Scanner::watch_keys`], the same pass also notes where the values of some member names
//! start, at any depth ([`Summary::found`]), so that the export's redaction (`redact`) need not
//! read the bytes again (BENCHMARKS.md, "Issue 25, speed7"). Also here: [`KeyScan`], the
//! redaction's own scan of a document no validator noted, with its string search
//! [`quote_or_backslash`]. Both read every byte of an export; this crate is built for speed in the
//! shipping profile (Cargo.toml).
//!
//! Errors carry a category and a byte offset, never any of the input (values may be secrets).
//! Memory is bounded: the container stack is a 128-bit set, nothing is allocated per byte, only
//! per recorded member.

use std::fmt;
use std::ops::Range;

mod keys;
pub use keys::{Found, KeyScan, KeyScanError, Wanted};

/// The deepest nesting of arrays and objects accepted: serde_json's default recursion limit (128)
/// refuses the 128th nested container, so 127 is the deepest it parses into a `Value`.
pub const MAX_DEPTH: usize = 127;

/// A JSON string decoder: the string's text, quotes included, to its content.
pub type Unescape = fn(&[u8]) -> Option<String>;

/// The kind of a value, from its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

/// A member of an object: its key (unescaped) and the exact byte range of its raw value (first to
/// last byte, no surrounding whitespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub key: String,
    pub value: Range<usize>,
    pub kind: ValueKind,
}

/// What a successful scan found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The kind of the top-level value.
    pub root: ValueKind,
    /// The top-level object's members in document order, duplicates included (empty unless
    /// `root` is `Object`).
    pub members: Vec<Member>,
    /// The members of the chosen member's value (`Scanner::new`), in document order, when that
    /// value is an object. With duplicate keys the last occurrence decides, as in a map.
    pub nested: Option<Vec<Member>>,
    /// Every member of a name given to [`Scanner::watch_keys`], at any depth, in document order:
    /// (index of the name, first byte of its value). Escaped keys are decoded first.
    pub found: Vec<(usize, usize)>,
}

impl Summary {
    /// The top-level member named `key` (the last one if repeated, as in a map).
    pub fn member(&self, key: &str) -> Option<&Member> {
        self.members.iter().rev().find(|m| m.key == key)
    }

    /// The chosen member's member named `key` (the last one if repeated).
    pub fn nested_member(&self, key: &str) -> Option<&Member> {
        self.nested.as_ref()?.iter().rev().find(|m| m.key == key)
    }
}

/// Why the text is not valid JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input ended inside a value (or is empty / only whitespace).
    UnexpectedEnd,
    ExpectedValue,
    ExpectedColon,
    /// After a value in an array or object: neither `,` nor the matching closing bracket.
    ExpectedCommaOrEnd,
    KeyMustBeString,
    TrailingComma,
    InvalidNumber,
    /// A number beyond `f64`'s range: refused by the filter's `json::value::parse` (as
    /// serde_json's `Value`), not by the scanner.
    NumberOutOfRange,
    /// Not `true`, `false` or `null`.
    InvalidLiteral,
    /// A byte below 0x20 inside a string.
    ControlCharacterInString,
    InvalidEscape,
    /// `\u` not followed by four hex digits.
    InvalidUnicodeEscape,
    /// A `\u` escape of a surrogate that is not half of a high-low pair.
    LoneSurrogate,
    InvalidUtf8,
    /// Nesting deeper than [`MAX_DEPTH`].
    DepthLimitExceeded,
    /// Something other than whitespace after the top-level value.
    TrailingCharacters,
    /// `step` was given a buffer of another length than the first time (a caller bug).
    BufferChanged,
    /// `step` was called again after it returned `Done` (a caller bug).
    Finished,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ErrorKind::UnexpectedEnd => "unexpected end of input",
            ErrorKind::ExpectedValue => "expected a value",
            ErrorKind::ExpectedColon => "expected ':'",
            ErrorKind::ExpectedCommaOrEnd => "expected ',' or a closing bracket",
            ErrorKind::KeyMustBeString => "object key must be a string",
            ErrorKind::TrailingComma => "trailing comma",
            ErrorKind::InvalidNumber => "invalid number",
            ErrorKind::NumberOutOfRange => "number out of range",
            ErrorKind::InvalidLiteral => "invalid literal (expected true, false or null)",
            ErrorKind::ControlCharacterInString => "control character in string",
            ErrorKind::InvalidEscape => "invalid escape in string",
            ErrorKind::InvalidUnicodeEscape => "invalid \\u escape in string",
            ErrorKind::LoneSurrogate => "unpaired surrogate in \\u escape",
            ErrorKind::InvalidUtf8 => "invalid UTF-8 in string",
            ErrorKind::DepthLimitExceeded => "nesting too deep",
            ErrorKind::TrailingCharacters => "trailing characters after the value",
            ErrorKind::BufferChanged => "buffer changed between steps",
            ErrorKind::Finished => "scan already finished",
        }
    }
}

/// A syntax error: its category and the byte offset where it was found. Never quotes the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanError {
    pub kind: ErrorKind,
    pub offset: usize,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not valid JSON ({} at byte {})",
            self.kind.describe(),
            self.offset
        )
    }
}

impl std::error::Error for ScanError {}

/// The outcome of one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Not finished: call `step` again with the same buffer.
    More,
    /// The whole buffer is one valid JSON value (returned once).
    Done(Summary),
    /// The buffer is not valid JSON (returned again by any later step).
    Invalid(ScanError),
}

/// Validates `text` in one step (small inputs), recording the top-level members only.
pub fn validate_all(text: &[u8]) -> Result<Summary, ScanError> {
    match Scanner::new(None).step(text, usize::MAX) {
        Progress::Done(summary) => Ok(summary),
        Progress::Invalid(e) => Err(e),
        // A step with an unlimited budget always reaches the end of the buffer.
        Progress::More => Err(ScanError {
            kind: ErrorKind::UnexpectedEnd,
            offset: text.len(),
        }),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl Num {
    /// Whether a number may end in this state.
    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Esc {
    /// Ordinary string content.
    None,
    /// After `\`.
    Backslash,
    /// Inside `\uXXXX`: `digits` read so far, their value; `high` is the pending high surrogate
    /// when this is the second half of a pair (0 otherwise).
    Hex { digits: u8, acc: u16, high: u16 },
    /// After a high surrogate: `\` must follow.
    PairBackslash { high: u16 },
    /// After a high surrogate and `\`: `u` must follow.
    PairU { high: u16 },
    /// Inside a multi-byte UTF-8 sequence of `size` bytes: `need` continuation bytes left, the
    /// next in `lo..=hi`.
    Utf8 { need: u8, lo: u8, hi: u8, size: u8 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StrRole {
    Value,
    Key,
    /// A key that is recorded (a top-level member or a member of the chosen member): decoded.
    RecordedKey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// A value is expected (the top level, after `:`).
    Value,
    /// After `[`: a value or `]`.
    ArrayFirst,
    /// After `,` in an array: a value (`]` is a trailing comma).
    ArrayNext,
    /// After `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key (`}` is a trailing comma).
    ObjectNext,
    /// After a key: `:`.
    Colon,
    /// After a value inside a container: `,` or the closing bracket.
    After,
    Str {
        role: StrRole,
        esc: Esc,
    },
    Num(Num),
    /// Inside `true`/`false`/`null`: the word and how many of its bytes matched.
    Lit {
        word: &'static [u8],
        matched: u8,
    },
    /// After the top-level value: only whitespace may follow.
    End,
}

#[derive(Clone, Debug)]
enum Outcome {
    Running,
    Done,
    Failed(ScanError),
}

/// The resumable validator (see the module documentation).
#[derive(Clone, Debug)]
pub struct Scanner {
    nested_name: Option<String>,
    /// The buffer's length, fixed by the first step.
    len: Option<usize>,
    pos: usize,
    state: State,
    depth: usize,
    /// Bit `i` set: the container at depth `i + 1` is an object.
    objects: u128,
    root: Option<ValueKind>,
    members: Vec<Member>,
    nested: Option<Vec<Member>>,
    /// The current top-level member is the chosen one.
    at_chosen: bool,
    /// The chosen member's object is open (it is the container at depth 2).
    in_chosen: bool,
    /// The recorded key being decoded (a step at a time, never re-read as a whole).
    key: String,
    outcome: Outcome,
    /// The names looked for at any depth (`watch_keys`), and what was found of them.
    wanted: &'static [&'static [u8]],
    found: Vec<(usize, usize)>,
    /// Decodes a key with an escape (quotes included), for `wanted`.
    unescape: Option<Unescape>,
    /// The opening quote of the key being read, and whether it holds an escape so far.
    key_start: usize,
    escaped: bool,
    /// A wanted key was read: its value is the next to begin.
    pending: Option<usize>,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

/// String content that needs no attention: printable ASCII other than `"` and `\`.
fn is_plain(b: u8) -> bool {
    (0x20..0x80).contains(&b) && b != b'"' && b != b'\\'
}

fn hex_value(b: u8) -> Option<u16> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u16::try_from(d).ok())
}

/// The number of bytes from the start of `rest` that are plain string content. Eight bytes at a
/// time while possible (the bit tricks of serde_json's `skip_to_escape`).
fn plain_run(rest: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut n = 0;
    let mut chunks = rest.chunks_exact(8);
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        // A high bit set in a lane where the byte is < 0x20, '"', '\\' or >= 0x80.
        let control = w.wrapping_sub(ONES * 0x20);
        let quote = (w ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES);
        let backslash = (w ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES);
        let mask = (control | quote | backslash | w) & HIGH;
        if mask != 0 {
            // The lowest flagged lane is exact (borrows only propagate upwards).
            return n + (mask.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + chunks
        .remainder()
        .iter()
        .position(|&b| !is_plain(b))
        .unwrap_or(chunks.remainder().len())
}

/// The first `"` or `\\` in `t`, eight bytes at a time (wasm has no `memchr`; strings are most
/// of a document, and this search most of the rewriter's time in them).
pub fn quote_or_backslash(t: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A high bit in each lane of `w` that is zero: exact for the lowest such lane (a borrow only
    // runs upwards), which is the one taken.
    let zero_lanes = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let mut chunks = t.chunks_exact(8);
    let mut n = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let mask =
            zero_lanes(w ^ (ONES * u64::from(b'"'))) | zero_lanes(w ^ (ONES * u64::from(b'\\')));
        if mask != 0 {
            return Some(n + (mask.trailing_zeros() / 8) as usize);
        }
        n += 8;
    }
    let rest = chunks.remainder();
    rest.iter()
        .position(|&c| c == b'"' || c == b'\\')
        .map(|p| n + p)
}

impl Scanner {
    /// A scanner that also records the members of the top-level member named `nested` when its
    /// value is an object.
    pub fn new(nested: Option<&str>) -> Scanner {
        Scanner {
            nested_name: nested.map(str::to_string),
            len: None,
            pos: 0,
            state: State::Value,
            depth: 0,
            objects: 0,
            root: None,
            members: Vec::new(),
            nested: None,
            at_chosen: false,
            in_chosen: false,
            key: String::new(),
            outcome: Outcome::Running,
            wanted: &[],
            found: Vec::new(),
            unescape: None,
            key_start: 0,
            escaped: false,
            pending: None,
        }
    }

    /// Also notes where the values of the members named `wanted` start, at any depth
    /// ([`Summary::found`]); a key with an escape is decoded by `unescape` (the caller's JSON
    /// string decoder: the filter has one) before it is compared.
    pub fn watch_keys(&mut self, wanted: &'static [&'static [u8]], unescape: Unescape) {
        self.wanted = wanted;
        self.unescape = Some(unescape);
    }

    /// How many bytes have been read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Reads at most `budget` more bytes of `text` (the same buffer at every call). `Done` is
    /// returned once, in the step that reads the last byte; an error is returned again by any later
    /// step; a step after `Done` is `Invalid(Finished)`. A budget of 0 reads nothing (`More`,
    /// unless the buffer is already fully read).
    pub fn step(&mut self, text: &[u8], budget: usize) -> Progress {
        match &self.outcome {
            Outcome::Running => {}
            Outcome::Done => {
                return Progress::Invalid(ScanError {
                    kind: ErrorKind::Finished,
                    offset: self.pos,
                })
            }
            Outcome::Failed(e) => return Progress::Invalid(*e),
        }
        let len = *self.len.get_or_insert(text.len());
        let result = if len != text.len() || self.pos > len {
            Err(ScanError {
                kind: ErrorKind::BufferChanged,
                offset: self.pos,
            })
        } else {
            let limit = self.pos.saturating_add(budget).min(len);
            self.run(text, limit).and_then(|()| {
                if self.pos == len {
                    self.finish(len).map(Some)
                } else {
                    Ok(None)
                }
            })
        };
        match result {
            Ok(None) => Progress::More,
            Ok(Some(summary)) => {
                self.outcome = Outcome::Done;
                Progress::Done(summary)
            }
            Err(e) => {
                self.outcome = Outcome::Failed(e);
                Progress::Invalid(e)
            }
        }
    }

    fn error(&self, kind: ErrorKind) -> ScanError {
        ScanError {
            kind,
            offset: self.pos,
        }
    }

    /// The end of the buffer has been reached without an error.
    fn finish(&mut self, len: usize) -> Result<Summary, ScanError> {
        match self.state {
            State::Num(n) if self.depth == 0 => {
                if !n.complete() {
                    return Err(self.error(ErrorKind::InvalidNumber));
                }
            }
            State::Num(_) => return Err(self.error(ErrorKind::UnexpectedEnd)),
            State::End => {}
            _ => return Err(self.error(ErrorKind::UnexpectedEnd)),
        }
        let root = self.root.ok_or(ScanError {
            kind: ErrorKind::UnexpectedEnd,
            offset: len,
        })?;
        Ok(Summary {
            root,
            members: std::mem::take(&mut self.members),
            nested: self.nested.take(),
            found: std::mem::take(&mut self.found),
        })
    }

    /// Whether the innermost open container is an object.
    fn in_object(&self) -> bool {
        let below = self
            .depth
            .checked_sub(1)
            .and_then(|d| u32::try_from(d).ok());
        below.is_some_and(|d| self.objects.checked_shr(d).unwrap_or(0) & 1 == 1)
    }

    /// The member list a value or key at the current depth belongs to, if it is recorded.
    fn recorded(&mut self) -> Option<&mut Vec<Member>> {
        if self.depth == 1 && self.in_object() {
            Some(&mut self.members)
        } else if self.depth == 2 && self.in_chosen {
            self.nested.as_mut()
        } else {
            None
        }
    }

    /// `b` (at `self.pos`) starts a value.
    fn begin_value(&mut self, b: u8) -> Result<(), ScanError> {
        let kind = match b {
            b'{' => ValueKind::Object,
            b'[' => ValueKind::Array,
            b'"' => ValueKind::String,
            b'-' | b'0'..=b'9' => ValueKind::Number,
            b't' | b'f' => ValueKind::Bool,
            b'n' => ValueKind::Null,
            _ => return Err(self.error(ErrorKind::ExpectedValue)),
        };
        if let Some(want) = self.pending.take() {
            self.found.push((want, self.pos));
        }
        // Deeper than the recorded members (most values of a document): nothing to note.
        if self.depth <= 2 {
            self.note_value(kind);
        }
        self.state = match b {
            b'{' | b'[' => self.open_container(b == b'{')?,
            b'"' => State::Str {
                role: StrRole::Value,
                esc: Esc::None,
            },
            b'-' => State::Num(Num::Minus),
            b'0' => State::Num(Num::Zero),
            b'1'..=b'9' => State::Num(Num::Int),
            b't' => State::Lit {
                word: b"true",
                matched: 1,
            },
            b'f' => State::Lit {
                word: b"false",
                matched: 1,
            },
            _ => State::Lit {
                word: b"null",
                matched: 1,
            },
        };
        self.pos += 1;
        Ok(())
    }

    /// A value of `kind` starts at `self.pos` at depth 0 to 2: the root's kind, a recorded
    /// member's value.
    fn note_value(&mut self, kind: ValueKind) {
        let pos = self.pos;
        if self.root.is_none() {
            self.root = Some(kind);
        }
        if let Some(m) = self.recorded().and_then(|v| v.last_mut()) {
            m.value = pos..pos;
            m.kind = kind;
        }
        if self.depth == 1 && self.at_chosen {
            // The last occurrence of the chosen key decides.
            self.nested = (kind == ValueKind::Object).then(Vec::new);
        }
    }

    /// A key ended just before `self.pos` (its opening quote at `self.key_start`): the index of
    /// the wanted name it is. Most keys of a document: a length or two compared; one holding an
    /// escape (rare) is decoded first.
    #[inline(never)]
    fn wanted_key(&self, text: &[u8]) -> Option<usize> {
        let quoted = text.get(self.key_start..self.pos)?;
        let decoded;
        let key = if self.escaped {
            if quoted.len() > keys::KEY_MAX {
                return None;
            }
            decoded = (self.unescape?)(quoted)?;
            decoded.as_bytes()
        } else {
            quoted.get(1..quoted.len().saturating_sub(1))?
        };
        self.wanted.iter().position(|&w| w == key)
    }

    /// `{` or `[` opens a container one level deeper: the state after it.
    fn open_container(&mut self, object: bool) -> Result<State, ScanError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(ErrorKind::DepthLimitExceeded));
        }
        let bit = 1u128.checked_shl(self.depth as u32).unwrap_or(0);
        if object {
            self.objects |= bit;
        } else {
            self.objects &= !bit;
        }
        self.depth += 1;
        if self.depth == 2 && self.at_chosen && object {
            self.in_chosen = true;
        }
        Ok(if object {
            State::ObjectFirst
        } else {
            State::ArrayFirst
        })
    }

    /// A value at the current depth ended just before `end`.
    fn end_value(&mut self, end: usize) {
        if let Some(m) = self.recorded().and_then(|v| v.last_mut()) {
            m.value.end = end;
        }
        self.state = if self.depth == 0 {
            State::End
        } else {
            State::After
        };
    }

    /// `b` (at `self.pos`) closes the innermost container.
    fn close(&mut self, b: u8) -> Result<(), ScanError> {
        if self.in_object() != (b == b'}') {
            return Err(self.error(ErrorKind::ExpectedCommaOrEnd));
        }
        if self.depth == 2 {
            self.in_chosen = false;
        }
        self.depth = self.depth.saturating_sub(1);
        self.pos += 1;
        self.end_value(self.pos);
        Ok(())
    }

    /// `"` (at `self.pos`) opens a key.
    fn begin_key(&mut self) {
        self.key_start = self.pos;
        self.escaped = false;
        let role = if self.recorded().is_some() {
            self.key.clear();
            StrRole::RecordedKey
        } else {
            StrRole::Key
        };
        self.state = State::Str {
            role,
            esc: Esc::None,
        };
        self.pos += 1;
    }

    /// The closing quote of a string (at `self.pos`); then what follows, if within reach.
    fn end_string(&mut self, text: &[u8], limit: usize, role: StrRole) -> Result<(), ScanError> {
        self.pos += 1;
        if role != StrRole::Value && !self.wanted.is_empty() {
            self.pending = self.wanted_key(text);
        }
        match role {
            StrRole::Value => {
                self.end_value(self.pos);
                return self.scalar_done(text, limit);
            }
            StrRole::Key => self.state = State::Colon,
            StrRole::RecordedKey => {
                let key = std::mem::take(&mut self.key);
                if self.depth == 1 {
                    self.at_chosen = self.nested_name.as_deref() == Some(key.as_str());
                }
                let pos = self.pos;
                if let Some(v) = self.recorded() {
                    v.push(Member {
                        key,
                        value: pos..pos,
                        kind: ValueKind::Null,
                    });
                }
                self.state = State::Colon;
            }
        }
        match self.peek(text, limit) {
            Some(b) => self.colon(text, limit, b),
            None => Ok(()),
        }
    }

    fn push_key_char(&mut self, c: u32) -> Result<(), ScanError> {
        let c = char::from_u32(c).ok_or(self.error(ErrorKind::LoneSurrogate))?;
        self.key.push(c);
        Ok(())
    }

    /// Skips whitespace up to `limit`: the next byte, if within reach.
    fn peek(&mut self, text: &[u8], limit: usize) -> Option<u8> {
        while self.pos < limit {
            let b = *text.get(self.pos)?;
            if !is_ws(b) {
                return Some(b);
            }
            self.pos += 1;
        }
        None
    }

    /// `b` follows `,` in an array.
    fn array_next(&mut self, b: u8) -> Result<(), ScanError> {
        match b {
            b']' => Err(self.error(ErrorKind::TrailingComma)),
            _ => self.begin_value(b),
        }
    }

    /// `b` follows `,` in an object.
    fn object_next(&mut self, b: u8) -> Result<(), ScanError> {
        match b {
            b'"' => {
                self.begin_key();
                Ok(())
            }
            b'}' => Err(self.error(ErrorKind::TrailingComma)),
            _ => Err(self.error(ErrorKind::KeyMustBeString)),
        }
    }

    /// `b` follows a key: it must be `:`; then the value starts if within reach. (Transitions
    /// are chained where the next byte is nearly always the expected one: fewer trips through
    /// the dispatch in `run`, better-predicted branches.)
    fn colon(&mut self, text: &[u8], limit: usize, b: u8) -> Result<(), ScanError> {
        if b != b':' {
            return Err(self.error(ErrorKind::ExpectedColon));
        }
        self.pos += 1;
        self.state = State::Value;
        match self.peek(text, limit) {
            Some(b) => self.begin_value(b),
            None => Ok(()),
        }
    }

    /// `b` follows a value in a container: `,` (then the next key or value if within reach) or
    /// the closing bracket.
    fn after(&mut self, text: &[u8], limit: usize, b: u8) -> Result<(), ScanError> {
        match b {
            b',' => {
                self.pos += 1;
                let object = self.in_object();
                self.state = if object {
                    State::ObjectNext
                } else {
                    State::ArrayNext
                };
                match self.peek(text, limit) {
                    Some(b) if object => self.object_next(b),
                    Some(b) => self.array_next(b),
                    None => Ok(()),
                }
            }
            b']' | b'}' => self.close(b),
            _ => Err(self.error(ErrorKind::ExpectedCommaOrEnd)),
        }
    }

    /// Reads up to `limit` (at most the buffer's length).
    fn run(&mut self, text: &[u8], limit: usize) -> Result<(), ScanError> {
        while self.pos < limit {
            let Some(&b) = text.get(self.pos) else {
                return Err(self.error(ErrorKind::BufferChanged));
            };
            match self.state {
                State::Str { role, esc } => self.string(text, limit, role, esc)?,
                State::Num(n) => self.number(text, limit, n)?,
                State::Lit { word, matched } => self.literal(text, limit, word, matched)?,
                _ if is_ws(b) => self.pos += 1,
                State::Value => self.begin_value(b)?,
                State::ArrayFirst => match b {
                    b']' => self.close(b)?,
                    _ => self.begin_value(b)?,
                },
                State::ArrayNext => self.array_next(b)?,
                State::ObjectFirst => match b {
                    b'"' => self.begin_key(),
                    b'}' => self.close(b)?,
                    _ => return Err(self.error(ErrorKind::KeyMustBeString)),
                },
                State::ObjectNext => self.object_next(b)?,
                State::Colon => self.colon(text, limit, b)?,
                State::After => self.after(text, limit, b)?,
                State::End => return Err(self.error(ErrorKind::TrailingCharacters)),
            }
        }
        Ok(())
    }

    /// Reads the rest of `true`/`false`/`null` (`matched` bytes of `word` already read).
    fn literal(
        &mut self,
        text: &[u8],
        limit: usize,
        word: &'static [u8],
        matched: u8,
    ) -> Result<(), ScanError> {
        let mut matched = usize::from(matched);
        while self.pos < limit && matched < word.len() {
            if text.get(self.pos) != word.get(matched) {
                return Err(self.error(ErrorKind::InvalidLiteral));
            }
            self.pos += 1;
            matched += 1;
        }
        if matched < word.len() {
            self.state = State::Lit {
                word,
                matched: u8::try_from(matched).unwrap_or(u8::MAX),
            };
            return Ok(());
        }
        self.end_value(self.pos);
        self.scalar_done(text, limit)
    }

    /// After a scalar inside a container: what follows, if within reach.
    fn scalar_done(&mut self, text: &[u8], limit: usize) -> Result<(), ScanError> {
        if self.depth == 0 {
            return Ok(());
        }
        match self.peek(text, limit) {
            Some(b) => self.after(text, limit, b),
            None => Ok(()),
        }
    }

    /// Reads number bytes from `self.pos` up to `limit`; ends the number at the first byte that
    /// cannot continue it (that byte is left for the next state).
    fn number(&mut self, text: &[u8], limit: usize, mut n: Num) -> Result<(), ScanError> {
        while self.pos < limit {
            let Some(&b) = text.get(self.pos) else {
                break;
            };
            let next = match (n, b) {
                (Num::Minus, b'0') => Num::Zero,
                (Num::Minus, b'1'..=b'9') => Num::Int,
                (Num::Int, b'0'..=b'9') => Num::Int,
                // There can be only one leading zero.
                (Num::Zero, b'0'..=b'9') => return Err(self.error(ErrorKind::InvalidNumber)),
                (Num::Zero | Num::Int, b'.') => Num::Dot,
                (Num::Dot | Num::Frac, b'0'..=b'9') => Num::Frac,
                (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::Exp,
                (Num::Exp, b'+' | b'-') => Num::ExpSign,
                (Num::Exp | Num::ExpSign | Num::ExpDigits, b'0'..=b'9') => Num::ExpDigits,
                _ if n.complete() => {
                    self.end_value(self.pos);
                    return self.scalar_done(text, limit);
                }
                _ => return Err(self.error(ErrorKind::InvalidNumber)),
            };
            n = next;
            self.pos += 1;
        }
        self.state = State::Num(n);
        Ok(())
    }

    /// Reads string bytes from `self.pos` up to `limit`, until the string ends.
    fn string(
        &mut self,
        text: &[u8],
        limit: usize,
        mut role: StrRole,
        mut esc: Esc,
    ) -> Result<(), ScanError> {
        let mut record = role == StrRole::RecordedKey;
        while self.pos < limit {
            if esc == Esc::None {
                self.skip_plain_run(text, limit, record);
                if self.pos >= limit {
                    break;
                }
            }
            let Some(&b) = text.get(self.pos) else {
                break;
            };
            if esc == Esc::None && b == b'"' {
                self.end_string(text, limit, role)?;
                // Often the next string (key, then value) has already begun.
                match self.state {
                    State::Str { role: r, esc: e } => {
                        (role, esc, record) = (r, e, r == StrRole::RecordedKey);
                        continue;
                    }
                    _ => return Ok(()),
                }
            }
            esc = self.string_byte(text, b, esc, record)?;
            self.pos += 1;
        }
        self.state = State::Str { role, esc };
        Ok(())
    }

    /// Consumes the run of plain printable ASCII at `self.pos` (recording it into the key).
    fn skip_plain_run(&mut self, text: &[u8], limit: usize, record: bool) {
        let rest = text.get(self.pos..limit).unwrap_or_default();
        let run = plain_run(rest);
        if record {
            // Printable ASCII: one char per byte.
            let plain = rest.get(..run).unwrap_or_default();
            self.key.extend(plain.iter().map(|&b| char::from(b)));
        }
        self.pos += run;
    }

    /// One byte of string content other than a closing quote, in state `esc`: the next state.
    fn string_byte(
        &mut self,
        text: &[u8],
        b: u8,
        esc: Esc,
        record: bool,
    ) -> Result<Esc, ScanError> {
        match esc {
            Esc::None => self.plain_byte(b, record),
            Esc::Utf8 { need, lo, hi, size } => {
                if !(lo..=hi).contains(&b) {
                    return Err(self.error(ErrorKind::InvalidUtf8));
                }
                if need > 1 {
                    return Ok(Esc::Utf8 {
                        need: need - 1,
                        lo: 0x80,
                        hi: 0xbf,
                        size,
                    });
                }
                if record {
                    self.record_utf8(text, size)?;
                }
                Ok(Esc::None)
            }
            Esc::Backslash => self.escape_byte(b, record),
            Esc::Hex { digits, acc, high } => self.hex_byte(b, digits, acc, high, record),
            Esc::PairBackslash { high } if b == b'\\' => Ok(Esc::PairU { high }),
            Esc::PairU { high } if b == b'u' => Ok(Esc::Hex {
                digits: 0,
                acc: 0,
                high,
            }),
            Esc::PairBackslash { .. } | Esc::PairU { .. } => {
                Err(self.error(ErrorKind::LoneSurrogate))
            }
        }
    }

    /// A byte outside any escape or multi-byte sequence (not `"`, which ends the string).
    fn plain_byte(&mut self, b: u8, record: bool) -> Result<Esc, ScanError> {
        match b {
            b'\\' => {
                self.escaped = true;
                Ok(Esc::Backslash)
            }
            0..=0x1f => Err(self.error(ErrorKind::ControlCharacterInString)),
            0x80.. => {
                let (need, lo, hi) = match b {
                    0xc2..=0xdf => (1, 0x80, 0xbf),
                    0xe0 => (2, 0xa0, 0xbf),
                    0xed => (2, 0x80, 0x9f),
                    0xe1..=0xef => (2, 0x80, 0xbf),
                    0xf0 => (3, 0x90, 0xbf),
                    0xf1..=0xf3 => (3, 0x80, 0xbf),
                    0xf4 => (3, 0x80, 0x8f),
                    // 0x80..=0xc1 and 0xf5..: never a valid first byte.
                    _ => return Err(self.error(ErrorKind::InvalidUtf8)),
                };
                Ok(Esc::Utf8 {
                    need,
                    lo,
                    hi,
                    size: need + 1,
                })
            }
            // Plain bytes are consumed a run at a time; one here is still plain.
            _ => {
                if record {
                    self.key.push(char::from(b));
                }
                Ok(Esc::None)
            }
        }
    }

    /// Records the multi-byte sequence ending at `self.pos` (now validated), perhaps begun in an
    /// earlier step: the buffer is the same.
    fn record_utf8(&mut self, text: &[u8], size: u8) -> Result<(), ScanError> {
        let start = (self.pos + 1).saturating_sub(usize::from(size));
        let c = text
            .get(start..=self.pos)
            .and_then(|seq| std::str::from_utf8(seq).ok())
            .ok_or(self.error(ErrorKind::InvalidUtf8))?;
        self.key.push_str(c);
        Ok(())
    }

    /// The byte after a backslash.
    fn escape_byte(&mut self, b: u8, record: bool) -> Result<Esc, ScanError> {
        let decoded = match b {
            b'"' | b'\\' | b'/' => b,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                return Ok(Esc::Hex {
                    digits: 0,
                    acc: 0,
                    high: 0,
                })
            }
            _ => return Err(self.error(ErrorKind::InvalidEscape)),
        };
        if record {
            self.key.push(char::from(decoded));
        }
        Ok(Esc::None)
    }

    /// A hex digit of a `\u` escape; `high` is the pending high surrogate, or 0.
    fn hex_byte(
        &mut self,
        b: u8,
        digits: u8,
        acc: u16,
        high: u16,
        record: bool,
    ) -> Result<Esc, ScanError> {
        let d = hex_value(b).ok_or(self.error(ErrorKind::InvalidUnicodeEscape))?;
        let acc = (acc << 4) | d;
        if digits < 3 {
            return Ok(Esc::Hex {
                digits: digits + 1,
                acc,
                high,
            });
        }
        if high != 0 {
            // The second half of a pair must be a low surrogate.
            if !(0xdc00..=0xdfff).contains(&acc) {
                return Err(self.error(ErrorKind::LoneSurrogate));
            }
            if record {
                let c = 0x1_0000 + ((u32::from(high) - 0xd800) << 10) + (u32::from(acc) - 0xdc00);
                self.push_key_char(c)?;
            }
            return Ok(Esc::None);
        }
        match acc {
            0xd800..=0xdbff => Ok(Esc::PairBackslash { high: acc }),
            0xdc00..=0xdfff => Err(self.error(ErrorKind::LoneSurrogate)),
            _ => {
                if record {
                    self.push_key_char(u32::from(acc))?;
                }
                Ok(Esc::None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &[u8], nested: Option<&str>, budget: usize) -> Result<Summary, ScanError> {
        let mut s = Scanner::new(nested);
        let mut steps = 0usize;
        loop {
            let before = s.position();
            match s.step(text, budget) {
                Progress::More => {
                    assert!(s.position() > before, "a step made no progress");
                    assert!(s.position() - before <= budget, "a step overran its budget");
                }
                Progress::Done(summary) => return Ok(summary),
                Progress::Invalid(e) => return Err(e),
            }
            steps += 1;
            assert!(steps <= text.len() + 1);
        }
    }

    fn m(key: &str, value: Range<usize>, kind: ValueKind) -> Member {
        Member {
            key: key.into(),
            value,
            kind,
        }
    }

    const DOC: &str = r#" { "a" : 1 , "config":{"_format_version" :"3.0","x\u00e9\"y":[1,{"k":2}] ,"n": null}, "s":"v\n", "t" : true,"o":{"p":-1.5e+3}} "#;

    #[test]
    fn members_and_nested_members_have_exact_ranges() {
        let s = scan(DOC.as_bytes(), Some("config"), usize::MAX).unwrap();
        let at = |needle: &str| DOC.find(needle).unwrap();
        let r = |needle: &str| at(needle)..at(needle) + needle.len();
        let config = &DOC[at("{\"_format")..at(", \"s\"")];
        assert_eq!(s.root, ValueKind::Object);
        assert_eq!(
            s.members,
            vec![
                m("a", r("1 ,").start..r("1 ,").start + 1, ValueKind::Number),
                m(
                    "config",
                    at(config)..at(config) + config.len(),
                    ValueKind::Object
                ),
                m("s", r("\"v\\n\""), ValueKind::String),
                m("t", r("true"), ValueKind::Bool),
                m("o", r("{\"p\":-1.5e+3}"), ValueKind::Object),
            ]
        );
        assert_eq!(
            s.nested,
            Some(vec![
                m("_format_version", r("\"3.0\""), ValueKind::String),
                m("xé\"y", r("[1,{\"k\":2}]"), ValueKind::Array),
                m("n", r("null"), ValueKind::Null),
            ])
        );
        assert_eq!(s.member("t").map(|m| m.kind), Some(ValueKind::Bool));
        assert_eq!(
            s.nested_member("_format_version")
                .map(|m| &DOC[m.value.clone()]),
            Some("\"3.0\"")
        );
        // The same without a chosen member; another chosen member.
        let plain = scan(DOC.as_bytes(), None, usize::MAX).unwrap();
        assert_eq!((plain.members, plain.nested), (s.members.clone(), None));
        let o = scan(DOC.as_bytes(), Some("o"), usize::MAX).unwrap();
        assert_eq!(
            o.nested,
            Some(vec![m("p", r("-1.5e+3"), ValueKind::Number)])
        );
    }

    #[test]
    fn the_result_does_not_depend_on_the_budget() {
        let text = DOC.as_bytes();
        let whole = scan(text, Some("config"), usize::MAX);
        assert!(whole.is_ok());
        for budget in 1..=text.len() + 1 {
            assert_eq!(scan(text, Some("config"), budget), whole, "budget {budget}");
        }
        let bad = br#"{"a":[1,2,{"b":"\ud800x"}]}"#;
        let err = scan(bad, None, usize::MAX).unwrap_err();
        assert_eq!(err.kind, ErrorKind::LoneSurrogate);
        for budget in 1..=bad.len() {
            assert_eq!(scan(bad, None, budget), Err(err), "budget {budget}");
        }
    }

    #[test]
    fn done_is_returned_once_and_errors_stick() {
        let mut s = Scanner::new(None);
        assert_eq!(s.step(b"[1, 2]", 3), Progress::More);
        assert_eq!(s.position(), 3);
        assert!(matches!(s.step(b"[1, 2]", 3), Progress::Done(_)));
        assert_eq!(
            s.step(b"[1, 2]", 3),
            Progress::Invalid(ScanError {
                kind: ErrorKind::Finished,
                offset: 6
            })
        );
        let mut s = Scanner::new(None);
        let e = ScanError {
            kind: ErrorKind::TrailingComma,
            offset: 3,
        };
        assert_eq!(s.step(b"[1,]", 10), Progress::Invalid(e));
        assert_eq!(s.step(b"[1,]", 10), Progress::Invalid(e));
    }

    #[test]
    fn done_comes_with_the_last_byte_and_budget_zero_reads_nothing() {
        let mut s = Scanner::new(None);
        assert_eq!(s.step(b"12", 0), Progress::More);
        assert_eq!(s.position(), 0);
        assert_eq!(s.step(b"12", 1), Progress::More);
        let Progress::Done(summary) = s.step(b"12", 1) else {
            panic!("not done")
        };
        assert_eq!(summary.root, ValueKind::Number);
        assert!(summary.members.is_empty());
        // An empty buffer: nothing to read, finished at once.
        assert_eq!(
            Scanner::new(None).step(b"", 0),
            Progress::Invalid(ScanError {
                kind: ErrorKind::UnexpectedEnd,
                offset: 0
            })
        );
    }

    #[test]
    fn a_changed_buffer_is_refused() {
        let mut s = Scanner::new(None);
        assert_eq!(s.step(b"[1, 2]", 2), Progress::More);
        assert_eq!(
            s.step(b"[1]", 2),
            Progress::Invalid(ScanError {
                kind: ErrorKind::BufferChanged,
                offset: 2
            })
        );
    }

    #[test]
    fn the_last_occurrence_of_the_chosen_member_decides() {
        let t = br#"{"c":{"a":1},"c":{"b":2}}"#;
        let s = validate_nested(t, "c");
        assert_eq!(s.nested, Some(vec![m("b", 22..23, ValueKind::Number)]));
        assert_eq!(s.members.len(), 2);
        let s = validate_nested(br#"{"c":{"a":1},"c":"{}"}"#, "c");
        assert_eq!(s.nested, None);
        let s = validate_nested(br#"{"c":"{}","c":{}}"#, "c");
        assert_eq!(s.nested, Some(vec![]));
        // Only a top-level member is chosen; arrays and deeper objects are not.
        let s = validate_nested(br#"{"x":{"c":{"a":1}},"c":[{"a":1}]}"#, "c");
        assert_eq!(s.nested, None);
        let s = validate_nested(br#"[{"c":{"a":1}}]"#, "c");
        assert_eq!(
            (s.root, s.members, s.nested),
            (ValueKind::Array, vec![], None)
        );
    }

    fn validate_nested(t: &[u8], name: &str) -> Summary {
        scan(t, Some(name), usize::MAX).unwrap()
    }

    #[test]
    fn keys_are_unescaped_across_step_boundaries() {
        let t = r#"{"\"\\\/\b\f\n\r\t\u0041\u00e9\ud83d\ude00é😀\u0000":0}"#.as_bytes();
        for budget in [1, 2, 3, 5, usize::MAX] {
            let s = scan(t, None, budget).unwrap();
            assert_eq!(s.members[0].key, "\"\\/\u{8}\u{c}\n\r\tAé😀é😀\0");
        }
    }

    #[test]
    fn nesting_is_limited_to_max_depth() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(validate_all(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(
            validate_all(deep.as_bytes()),
            Err(ScanError {
                kind: ErrorKind::DepthLimitExceeded,
                offset: MAX_DEPTH
            })
        );
        let objects = format!("{}1{}", r#"{"a":"#.repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert!(validate_all(objects.as_bytes()).is_ok());
    }

    #[test]
    fn errors_name_a_category_and_offset_only() {
        let secret = b"{\"aws_secret_access_key\": \"wJalrXUtnFEMI\x01\"}";
        let e = validate_all(secret).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ControlCharacterInString);
        assert_eq!(e.offset, secret.len() - 3);
        assert_eq!(
            e.to_string(),
            "not valid JSON (control character in string at byte 40)"
        );
    }

    #[test]
    fn categories() {
        let cases: &[(&[u8], ErrorKind, usize)] = &[
            (b"", ErrorKind::UnexpectedEnd, 0),
            (b" \n", ErrorKind::UnexpectedEnd, 2),
            (b"{", ErrorKind::UnexpectedEnd, 1),
            (b"\"abc", ErrorKind::UnexpectedEnd, 4),
            (b"[1", ErrorKind::UnexpectedEnd, 2),
            (b"tru", ErrorKind::UnexpectedEnd, 3),
            (b"]", ErrorKind::ExpectedValue, 0),
            (b"[,1]", ErrorKind::ExpectedValue, 1),
            (b"{\"a\" 1}", ErrorKind::ExpectedColon, 5),
            (b"[1 2]", ErrorKind::ExpectedCommaOrEnd, 3),
            (b"[1}", ErrorKind::ExpectedCommaOrEnd, 2),
            (b"{\"a\":1]", ErrorKind::ExpectedCommaOrEnd, 6),
            (b"{1:2}", ErrorKind::KeyMustBeString, 1),
            (b"{\"a\":1,}", ErrorKind::TrailingComma, 7),
            (b"01", ErrorKind::InvalidNumber, 1),
            (b"1.", ErrorKind::InvalidNumber, 2),
            (b"1.e5", ErrorKind::InvalidNumber, 2),
            (b"[-]", ErrorKind::InvalidNumber, 2),
            (b"1e+", ErrorKind::InvalidNumber, 3),
            (b"trUe", ErrorKind::InvalidLiteral, 2),
            (b"\"\\x\"", ErrorKind::InvalidEscape, 2),
            (b"\"\\u12g4\"", ErrorKind::InvalidUnicodeEscape, 5),
            (b"\"\\udc00\"", ErrorKind::LoneSurrogate, 6),
            (b"\"\\ud800\\n\"", ErrorKind::LoneSurrogate, 8),
            (b"\"\\ud800\\ud800\"", ErrorKind::LoneSurrogate, 12),
            (b"\"\xc0\x80\"", ErrorKind::InvalidUtf8, 1),
            (b"\"\xed\xa0\x80\"", ErrorKind::InvalidUtf8, 2),
            (b"\"\xe2\x82\"", ErrorKind::InvalidUtf8, 3),
            (b"1 2", ErrorKind::TrailingCharacters, 2),
            (b"\xef\xbb\xbf{}", ErrorKind::ExpectedValue, 0),
        ];
        for (text, kind, offset) in cases {
            assert_eq!(
                validate_all(text),
                Err(ScanError {
                    kind: *kind,
                    offset: *offset
                }),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn scalars_at_the_top_level() {
        for (t, kind) in [
            (&b"-0"[..], ValueKind::Number),
            (b" 1e+5 ", ValueKind::Number),
            (b"0.5E-3", ValueKind::Number),
            (b"\"\"", ValueKind::String),
            (b"false", ValueKind::Bool),
            (b"null\n", ValueKind::Null),
            (b"[]", ValueKind::Array),
        ] {
            assert_eq!(validate_all(t).map(|s| s.root), Ok(kind));
        }
    }

    const NAMES: &[&[u8]] = &[b"filter_chains", b"updated_at"];

    /// The same names for a `KeyScan`, none captured: it then reports every member as well.
    const WANTED: &[Wanted<'static>] = &[
        Wanted {
            name: b"filter_chains",
            capture: false,
        },
        Wanted {
            name: b"updated_at",
            capture: false,
        },
    ];

    /// A key's decoder for the tests (the filter gives its own).
    fn unescape_quoted(quoted: &[u8]) -> Option<String> {
        serde_json::from_slice(quoted).ok()
    }

    /// What a `KeyScan` of the whole text finds (escaped keys decoded), in slices of `budget`.
    fn key_scan(t: &[u8], budget: usize) -> Vec<(usize, usize)> {
        let mut scan = KeyScan::new();
        let mut found = Vec::new();
        while scan.position() < t.len() {
            let end = scan.position().saturating_add(budget);
            loop {
                match scan.step(t, end, WANTED).unwrap() {
                    Found::Slice => break,
                    Found::EscapedKey { start, end } => {
                        let key = unescape_quoted(&t[start..end]).unwrap();
                        scan.key_matched(NAMES.iter().position(|&n| n == key.as_bytes()));
                    }
                    Found::Value { want, at } => found.push((want, at)),
                    other => panic!("{other:?}"),
                }
            }
        }
        found
    }

    fn scan_keys(t: &[u8], budget: usize) -> Vec<(usize, usize)> {
        let mut s = Scanner::new(Some("config"));
        s.watch_keys(NAMES, unescape_quoted);
        loop {
            match s.step(t, budget) {
                Progress::More => {}
                Progress::Done(summary) => return summary.found,
                Progress::Invalid(e) => panic!("{e}"),
            }
        }
    }

    /// Escaped keys (a surrogate pair, `\u005f`, `\/`), nested and repeated names, look-alike
    /// strings and keys, names as values, whitespace, the chosen member's own keys: in any
    /// slices, every member of a wanted name, exactly as a key scan finds them.
    #[test]
    fn every_member_of_a_wanted_name_is_noted_in_any_slices() {
        let t = br#" {"config": {"filter\u005fchains" : [{"updated_at":1,"filter_chains":[2]}],
            "a":{"updated_at" :	3,"filter_chains":{"x":"}"}},"updated_at\u0000":4,
            "filter_chain":[5],"filter_chainsX":[6],"\ud83d\ude00updated_at":7,"s":"\"updated_at\":8",
            "v":["filter_chains",{"filter_chains":9,"upd\u0061ted_at":"ten"}],
            "filter_chains":"{}","x":{"filter_chains":[]},"f\/":1,"updated_at":null},
            "updated_at": 11, "filter_chains": [{}] } "#;
        let at = |needle: &str| {
            let t = std::str::from_utf8(t).unwrap();
            t.find(needle).unwrap()
        };
        let want = vec![
            (0, at(r#"[{"updated_at":1"#)),
            (1, at(r#"1,"filter_chains":[2]"#)),
            (0, at("[2]")),
            (1, at("3,")),
            (0, at(r#"{"x":"}"}"#)),
            (0, at("9,")),
            (1, at(r#""ten""#)),
            (0, at(r#""{}""#)),
            (0, at("[]}")),
            (1, at("null}")),
            (1, at("11,")),
            (0, at("[{}] }")),
        ];
        for budget in [1, 2, 3, 5, 7, 64, usize::MAX] {
            assert_eq!(scan_keys(t, budget), want, "budget {budget}");
            assert_eq!(key_scan(t, budget), want, "budget {budget}");
        }
        // Without names, nothing is noted.
        let plain = scan(t, Some("config"), 5).unwrap();
        assert!(plain.found.is_empty());
    }

    /// Random documents (escaped keys, look-alikes, nesting, whitespace) in random slices: the
    /// validator's notes and the key scan agree.
    #[test]
    fn found_keys_agree_with_the_key_scan_on_random_documents() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut found = 0;
        for round in 0..500 {
            let mut text = String::new();
            random_value(&mut seed, 0, &mut text);
            let t = text.as_bytes();
            let budget = [1, 2, 5, 13, 100, usize::MAX][round % 6];
            let got = scan_keys(t, budget);
            assert_eq!(got, key_scan(t, usize::MAX), "{text}");
            found += got.len();
        }
        assert!(found > 500, "only {found} found: the documents test little");
    }

    fn next(seed: &mut u64, n: u64) -> usize {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % n) as usize
    }

    fn random_value(seed: &mut u64, depth: usize, out: &mut String) {
        const KEYS: &[&str] = &[
            r#""filter_chains""#,
            r#""filter\u005fchains""#,
            r#""\u0066ilter_chains""#,
            r#""updated_at""#,
            r#""updated\u005Fat""#,
            r#""updated_at ""#,
            r#""filter_chain""#,
            r#""name""#,
            r#""a\"b""#,
            r#""\\updated_at""#,
        ];
        const SCALARS: &[&str] = &[
            "1",
            "-2.5e3",
            "true",
            "null",
            r#""filter_chains""#,
            r#""\"updated_at\":1""#,
            r#""{[\\""#,
            r#""\u00e9\ud83d\ude00""#,
        ];
        const WS: &[&str] = &["", " ", "\n ", "\t"];
        match next(seed, if depth > 4 { 2 } else { 5 }) {
            0 | 1 => out.push_str(SCALARS[next(seed, SCALARS.len() as u64)]),
            2 => {
                out.push('[');
                for i in 0..next(seed, 4) {
                    out.push_str(if i > 0 { "," } else { "" });
                    out.push_str(WS[next(seed, 4)]);
                    random_value(seed, depth + 1, out);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..next(seed, 5) {
                    out.push_str(if i > 0 { "," } else { "" });
                    out.push_str(KEYS[next(seed, KEYS.len() as u64)]);
                    out.push_str(WS[next(seed, 4)]);
                    out.push(':');
                    out.push_str(WS[next(seed, 4)]);
                    random_value(seed, depth + 1, out);
                }
                out.push('}');
            }
        }
    }

    #[test]
    fn plain_runs_stop_at_the_first_special_byte() {
        let base = b"abcdefghijklmnopqrstuvwxyz0123456789";
        for special in [b'"', b'\\', 0x00, 0x1f, 0x80, 0xff] {
            for at in 0..base.len() {
                let mut t = base.to_vec();
                t[at] = special;
                // Specials later on must not matter.
                if at + 3 < t.len() {
                    t[at + 3] = 0x01;
                }
                assert_eq!(plain_run(&t), at, "{special:#x} at {at}");
            }
        }
        assert_eq!(plain_run(base), base.len());
        assert_eq!(plain_run(b" ~\x7f"), 3);
    }

    #[test]
    fn the_word_at_a_time_search_finds_what_a_byte_search_finds() {
        let alphabet = [
            b'a',
            b'"',
            b'\\',
            0x80,
            0xff,
            0x22 ^ 0x80,
            0x5c ^ 0x01,
            0x00,
        ];
        let mut seed = 7u64;
        for len in 0..70 {
            for _ in 0..40 {
                let t: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        // Mostly plain bytes, so matches land anywhere.
                        let pick = (seed >> 33) as usize % 40;
                        alphabet.get(pick).copied().unwrap_or(b'x')
                    })
                    .collect();
                let naive = t.iter().position(|&c| c == b'"' || c == b'\\');
                assert_eq!(quote_or_backslash(&t), naive, "{t:?}");
            }
        }
    }
}
