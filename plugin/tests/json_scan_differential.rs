//! `json::scan::Scanner` against serde_json: validity against `from_slice::<Value>` (what serde_json
//! accepts when it decodes strings) and `from_slice::<IgnoredAny>` (which skips them), member keys
//! and exact byte ranges against `Value`, on hand-written edge cases, generated documents and
//! mutations of both, each scanned at several budgets (the result must not depend on them).
//!
//! The one deliberate difference from `Value`: numbers are checked for syntax only, so `1e400` is
//! valid here while serde_json refuses it as out of `f64` range. Compared with `IgnoredAny` the
//! scanner is stricter (UTF-8, lone surrogates, nesting limit): it never accepts what `IgnoredAny`
//! refuses.
//!
//! Every input is also read by the filter's own tree (`json::value`, which replaced serde_json's
//! `Value` in the module): it must accept exactly what serde_json's `Value` accepts (numbers out of
//! `f64` range included), and write the same compact text; where serde_json would print a number as
//! the nearest `f64` (`1.50` as `1.5`) the texts must still read back as the same serde value.

// Test code may panic; the crate's no-panic lints (plugin/Cargo.toml) are for the filter.
// `cfg(test)` (always set here) is what brings the whole file, helpers included, under
// clippy.toml's `allow-*-in-tests`: clippy does not see an integration test as test code without it.
#![cfg(test)]
use std::panic::{catch_unwind, AssertUnwindSafe};

use config_bridge::json::scan::{
    validate_all, ErrorKind, Member, Progress, ScanError, Scanner, Summary, ValueKind, MAX_DEPTH,
};
use config_bridge::json::value as tree;
use serde::de::IgnoredAny;
use serde_json::Value;

const NESTED: &str = "config";

/// SplitMix64.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn show(bytes: &[u8]) -> String {
    if bytes.len() > 600 {
        format!(
            "{} bytes starting {:?}",
            bytes.len(),
            String::from_utf8_lossy(&bytes[..300])
        )
    } else {
        format!("{:?}", String::from_utf8_lossy(bytes))
    }
}

/// Scans `text` with steps of `budget` bytes.
fn scan(text: &[u8], budget: usize) -> Result<Summary, ScanError> {
    let mut s = Scanner::new(Some(NESTED));
    let mut steps = 0usize;
    loop {
        let before = s.position();
        match s.step(text, budget) {
            Progress::More => {
                let read = s.position() - before;
                assert!(read > 0 && read <= budget, "step read {read} of {budget}");
            }
            Progress::Done(summary) => {
                assert_eq!(
                    s.step(text, budget),
                    Progress::Invalid(ScanError {
                        kind: ErrorKind::Finished,
                        offset: text.len()
                    })
                );
                return Ok(summary);
            }
            Progress::Invalid(e) => {
                assert_eq!(s.step(text, budget), Progress::Invalid(e));
                assert!(e.offset <= text.len());
                return Err(e);
            }
        }
        steps += 1;
        assert!(steps <= text.len() + 1, "no progress");
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Verdict {
    Valid,
    Invalid,
    /// serde_json stopped at a number out of `f64` range: it says nothing about the rest.
    OutOfRange,
}

fn serde_verdict(text: &[u8]) -> Verdict {
    match serde_json::from_slice::<Value>(text) {
        Ok(_) => Verdict::Valid,
        Err(e) if e.to_string().starts_with("number out of range") => Verdict::OutOfRange,
        Err(_) => Verdict::Invalid,
    }
}

#[derive(Default, Debug)]
struct Counts {
    cases: usize,
    valid: usize,
    invalid: usize,
    out_of_range: usize,
    stricter_than_ignored_any: usize,
    members_checked: usize,
}

/// Every check on one input; returns the scan result.
fn check(text: &[u8], budgets: &[usize], counts: &mut Counts) -> Result<Summary, ScanError> {
    let results: Vec<_> = budgets
        .iter()
        .map(|&b| {
            catch_unwind(AssertUnwindSafe(|| scan(text, b)))
                .unwrap_or_else(|_| panic!("PANIC at budget {b} on {}", show(text)))
        })
        .collect();
    let whole = scan(text, usize::MAX);
    for (b, r) in budgets.iter().zip(&results) {
        assert_eq!(r, &whole, "budget {b} differs on {}", show(text));
    }
    assert_eq!(
        validate_all(text).map(|s| s.root),
        whole.as_ref().map(|s| s.root).map_err(|e| *e)
    );

    let ignored_ok = serde_json::from_slice::<IgnoredAny>(text).is_ok();
    let verdict = serde_verdict(text);
    counts.cases += 1;
    if whole.is_ok() {
        assert!(
            ignored_ok,
            "accepted what IgnoredAny refuses: {}",
            show(text)
        );
    } else if ignored_ok {
        counts.stricter_than_ignored_any += 1;
    }
    check_tree(text, verdict);
    match verdict {
        Verdict::Valid => {
            counts.valid += 1;
            let summary = whole.as_ref().unwrap_or_else(|e| {
                panic!("refused ({e:?}) what serde_json accepts: {}", show(text))
            });
            check_members(text, summary, counts);
        }
        Verdict::Invalid => {
            counts.invalid += 1;
            assert!(
                whole.is_err(),
                "accepted what serde_json refuses ({}): {}",
                serde_json::from_slice::<Value>(text).unwrap_err(),
                show(text)
            );
        }
        Verdict::OutOfRange => counts.out_of_range += 1,
    }
    whole
}

/// Whether a serde value holds a number serde_json keeps as `f64` (printed in its own form).
fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(m) => m.values().any(has_float),
        _ => false,
    }
}

/// The filter's tree against serde_json's `Value`: same acceptance, same compact text (or, for
/// `f64` numbers, text that reads back as the same serde value), and its own text reads back as
/// the same tree.
fn check_tree(text: &[u8], verdict: Verdict) {
    let ours = catch_unwind(AssertUnwindSafe(|| tree::parse(text)))
        .unwrap_or_else(|_| panic!("tree PANIC on {}", show(text)));
    let theirs = match (verdict, ours) {
        (Verdict::Valid, Ok(ours)) => ours,
        (Verdict::Valid, Err(e)) => {
            panic!("tree refused ({e}) what serde_json accepts: {}", show(text))
        }
        (_, Ok(_)) => panic!("tree accepted what serde_json refuses: {}", show(text)),
        (_, Err(_)) => return,
    };
    let serde: Value = serde_json::from_slice(text).unwrap();
    let written = tree::to_vec(&theirs);
    let serde_written = serde_json::to_vec(&serde).unwrap();
    if has_float(&serde) {
        let back: Value = serde_json::from_slice(&written).unwrap();
        assert_eq!(back, serde, "{}", show(text));
    } else {
        assert_eq!(
            show(&written),
            show(&serde_written),
            "written from {}",
            show(text)
        );
    }
    assert_eq!(
        tree::parse(&written).as_ref(),
        Ok(&theirs),
        "{}",
        show(text)
    );
}

fn kind_of(v: &Value) -> ValueKind {
    match v {
        Value::Object(_) => ValueKind::Object,
        Value::Array(_) => ValueKind::Array,
        Value::String(_) => ValueKind::String,
        Value::Number(_) => ValueKind::Number,
        Value::Bool(_) => ValueKind::Bool,
        Value::Null => ValueKind::Null,
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ws(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ws(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// The members of the object `text[object]` are exactly `members`: between consecutive value
/// ranges there is only `{`/`,`, the key as a JSON string and `:`, with whitespace; each value is
/// a whole JSON value equal to the object's entry (last occurrence wins).
fn check_object(text: &[u8], object: std::ops::Range<usize>, members: &[Member]) {
    let value: Value = serde_json::from_slice(&text[object.clone()]).unwrap();
    let Value::Object(map) = value else {
        panic!("not an object")
    };
    let mut prev = object.start;
    for (i, m) in members.iter().enumerate() {
        let gap = trim(&text[prev..m.value.start]);
        let (opener, gap) = gap.split_first().expect("opener");
        assert_eq!(*opener, if i == 0 { b'{' } else { b',' });
        let (colon, key) = gap.split_last().expect("colon");
        assert_eq!(*colon, b':');
        let key: String = serde_json::from_slice(trim(key)).expect("key string");
        assert_eq!(key, m.key);
        let raw = &text[m.value.clone()];
        assert_eq!(trim(raw), raw, "range with whitespace");
        let v: Value = serde_json::from_slice(raw).expect("member value");
        assert_eq!(kind_of(&v), m.kind);
        if members[i + 1..].iter().all(|later| later.key != m.key) {
            assert_eq!(map.get(&m.key), Some(&v), "member {:?}", m.key);
        }
        prev = m.value.end;
    }
    let close: &[u8] = if members.is_empty() { b"{}" } else { b"}" };
    assert!(
        trim(&text[prev..object.end])
            .iter()
            .filter(|b| !is_ws(**b))
            .eq(close),
        "after the last member"
    );
    let mut keys: Vec<&str> = members.iter().map(|m| m.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert!(keys.iter().copied().eq(map.keys().map(String::as_str)));
}

fn check_members(text: &[u8], summary: &Summary, counts: &mut Counts) {
    let value: Value = serde_json::from_slice(text).unwrap();
    assert_eq!(kind_of(&value), summary.root);
    if summary.root != ValueKind::Object {
        assert!(summary.members.is_empty() && summary.nested.is_none());
        return;
    }
    let start = text.iter().position(|b| !is_ws(*b)).unwrap();
    let end = text.iter().rposition(|b| !is_ws(*b)).unwrap() + 1;
    check_object(text, start..end, &summary.members);
    counts.members_checked += summary.members.len();
    match (summary.member(NESTED), &summary.nested) {
        (Some(m), Some(nested)) if m.kind == ValueKind::Object => {
            check_object(text, m.value.clone(), nested);
            counts.members_checked += nested.len();
        }
        (Some(m), None) => assert_ne!(m.kind, ValueKind::Object),
        (None, None) => {}
        (m, n) => panic!("chosen member {m:?} but nested {n:?}"),
    }
}

const BUDGETS: &[usize] = &[1, 7, 4096, usize::MAX];

fn deep(open: &str, inner: &str, close: &str, n: usize) -> Vec<u8> {
    format!("{}{}{}", open.repeat(n), inner, close.repeat(n)).into_bytes()
}

/// Hand-written cases with the expected verdict; serde_json must agree except where noted.
fn edge_cases() -> Vec<(Vec<u8>, bool)> {
    let mut cases: Vec<(Vec<u8>, bool)> = Vec::new();
    let mut add = |t: &[u8], ok: bool| cases.push((t.to_vec(), ok));
    // Escapes.
    add(br#""\" \\ \/ \b \f \n \r \t""#, true);
    add(
        br#"{"\" \\ \/ \b \f \n \r \t \u0000 \u001F \u00e9 \uFFFF \uABcd":1}"#,
        true,
    );
    add(br#""\a""#, false);
    add(br#""\'""#, false);
    add(br#""\U0041""#, false);
    add(br#""\u004""#, false);
    add(br#""\u00G1""#, false);
    add(br#""\"#, false);
    add(br#""\u"#, false);
    // Surrogates: pairs valid, lone halves not (as serde_json decoding a string).
    add(br#""\uD83D\uDE00""#, true);
    add(br#"{"\ud83d\ude00":"\uDBFF\uDFFF"}"#, true);
    add(br#""\uD83D""#, false);
    add(br#""\uDE00""#, false);
    add(br#""\uD83Dx""#, false);
    add(br#""\uD83D\n""#, false);
    add(br#""\uD83D\u0041""#, false);
    add(br#""\uD83D\uD83D\uDE00""#, false);
    add(br#""\uDE00\uD83D""#, false);
    add(br#"{"\uD800":1}"#, false);
    // The edges of the surrogate ranges.
    for (esc, ok) in [
        ("\\uD7FF", true),
        ("\\uE000", true),
        ("\\uD800", false),
        ("\\uDBFF", false),
        ("\\uDC00", false),
        ("\\uDFFF", false),
        ("\\uD800\\uDC00", true),
        ("\\uDBFF\\uDFFF", true),
        ("\\uD800\\uDBFF", false),
        ("\\uDBFF\\uE000", false),
        ("\\uD800\\uD7FF", false),
        ("\\udbff\\udc00", true),
    ] {
        add(format!("\"{esc}\"").as_bytes(), ok);
        add(format!("{{\"{esc}\":\"{esc}\"}}").as_bytes(), ok);
    }
    // Numbers.
    for n in [
        "0",
        "-0",
        "1",
        "-1",
        "10",
        "1e5",
        "1E5",
        "1e+5",
        "1e-5",
        "1.5",
        "-0.0",
        "0e0",
        "0.0e-0",
        "123456789012345678901234567890",
        "1.7976931348623157e308",
        "5e-324",
        "1e-400",
    ] {
        add(n.as_bytes(), true);
        add(format!("[{n}]").as_bytes(), true);
        add(format!("{{\"a\":{n} }}").as_bytes(), true);
    }
    for n in [
        "01",
        "-01",
        "00",
        "1.",
        "-",
        "+1",
        ".5",
        "1e",
        "1e+",
        "1E-",
        "1.e5",
        "-.5",
        "0x10",
        "1_0",
        "NaN",
        "Infinity",
        "-Infinity",
        "1.5.5",
        "1e5e5",
        "--1",
        "0-",
    ] {
        add(n.as_bytes(), false);
        add(format!("[{n}]").as_bytes(), false);
        add(format!("{{\"a\":{n}}}").as_bytes(), false);
    }
    // Literals.
    for (t, ok) in [
        ("true", true),
        ("false", true),
        ("null", true),
        ("tru", false),
        ("nul", false),
        ("truee", false),
        ("True", false),
        ("nulL", false),
        ("[true false]", false),
        ("[null,false,true]", true),
    ] {
        add(t.as_bytes(), ok);
    }
    // Structure.
    for (t, ok) in [
        ("", false),
        (" \t\r\n ", false),
        ("{}", true),
        ("[]", true),
        (" { } ", true),
        ("[1,]", false),
        ("{\"a\":1,}", false),
        ("[,]", false),
        ("{,}", false),
        ("[1,,2]", false),
        ("{\"a\" 1}", false),
        ("{\"a\":}", false),
        ("{\"a\"}", false),
        ("{a:1}", false),
        ("{1:1}", false),
        ("{\"a\":1 \"b\":2}", false),
        ("[1}", false),
        ("{\"a\":1]", false),
        ("[", false),
        ("{", false),
        ("]", false),
        ("}", false),
        ("{}{}", false),
        ("1 2", false),
        ("[] x", false),
        ("{\"a\":1,\"a\":2}", true),
        ("{\"config\":1,\"config\":{\"x\":[]}}", true),
        ("{\"config\":{\"a\":1},\"config\":\"{}\"}", true),
        ("\u{feff}{}", false),
        ("\"\u{feff}\"", true),
        ("\x0c{}", false),
        ("{}\x0b", false),
        ("\u{a0}{}", false),
        ("/* c */ {}", false),
        ("{} // c", false),
    ] {
        add(t.as_bytes(), ok);
    }
    // Control characters in strings: all refused; DEL is not one.
    for c in 0u8..0x20 {
        add(&[b'"', b'a', c, b'"'], false);
        add(&[b'{', b'"', c, b'"', b':', b'1', b'}'], false);
    }
    add(b"\"\x7f\"", true);
    // UTF-8 inside strings.
    for (t, ok) in [
        (
            &b"\"\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \xef\xbf\xbf\""[..],
            true,
        ),
        (b"\"\xc3\"", false),
        (b"\"\xc3", false),
        (b"\"\xe4\xb8\"", false),
        (b"\"\xf0\x9f\x98\"", false),
        (b"\"\x80\"", false),
        (b"\"\xbf\"", false),
        (b"\"\xc0\x80\"", false),
        (b"\"\xc1\xbf\"", false),
        (b"\"\xe0\x80\x80\"", false),
        (b"\"\xe0\x9f\xbf\"", false),
        (b"\"\xed\xa0\x80\"", false),
        (b"\"\xed\xbf\xbf\"", false),
        (b"\"\xf0\x80\x80\x80\"", false),
        (b"\"\xf0\x8f\xbf\xbf\"", false),
        (b"\"\xf4\x90\x80\x80\"", false),
        (b"\"\xf5\x80\x80\x80\"", false),
        (b"\"\xff\"", false),
        (b"{\"\xc3\xa9\":\"\xe2\x82\xac\"}", true),
        (b"{\"\xe9\":1}", false),
        (b"\xff", false),
        (b"[1]\xff", false),
    ] {
        add(t, ok);
    }
    // Nesting: at and over the limit, arrays, objects and mixed.
    for n in [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 2, 1000] {
        let ok = n <= MAX_DEPTH;
        add(&deep("[", "", "]", n), ok);
        add(&deep("[", "1", "]", n), ok);
        add(&deep("{\"a\":", "1", "}", n), ok);
        add(&deep("{\"a\":", "{}", "}", n - 1), ok);
        add(&deep("[{\"a\":", "[]", "}]", n / 2), n / 2 * 2 < MAX_DEPTH);
        add(&deep("[", "", "", n), false);
    }
    cases
}

#[test]
fn hand_written_edge_cases() {
    let mut counts = Counts::default();
    let cases = edge_cases();
    for (text, ok) in &cases {
        let r = check(text, BUDGETS, &mut counts);
        assert_eq!(r.is_ok(), *ok, "{}: {r:?}", show(text));
        // Every prefix too: a valid document cut short is not valid (except a number).
        for cut in 0..text.len().min(200) {
            let _ = check(&text[..cut], &[1, 3], &mut counts);
        }
    }
    println!("edge cases: {} hand-written, {counts:?}", cases.len());
    assert!(counts.stricter_than_ignored_any > 0);
}

#[test]
fn deliberate_differences() {
    // Out of f64 range: syntactically valid, refused by serde_json's `Value`, skipped by
    // `IgnoredAny`.
    for t in ["1e400", "[-1e400]", "{\"a\":1.5E+999999999999999999999}"] {
        assert!(validate_all(t.as_bytes()).is_ok(), "{t}");
        assert_eq!(serde_verdict(t.as_bytes()), Verdict::OutOfRange, "{t}");
        assert!(serde_json::from_slice::<IgnoredAny>(t.as_bytes()).is_ok());
    }
    // Stricter than `IgnoredAny`, as `Value`: UTF-8, lone surrogates, nesting.
    let deeper = deep("[", "", "]", MAX_DEPTH + 1);
    for t in [
        &b"\"\xff\""[..],
        b"{\"\xc0\x80\":1}",
        br#""\uD800""#,
        br#"{"\uDC00":1}"#,
        &deeper,
    ] {
        assert!(serde_json::from_slice::<IgnoredAny>(t).is_ok());
        assert!(serde_json::from_slice::<Value>(t).is_err());
        assert!(validate_all(t).is_err());
    }
}

/// Writes random JSON with random whitespace, escapes, UTF-8 and number forms.
struct Gen<'a> {
    rng: &'a mut Prng,
    out: Vec<u8>,
}

const KEYS: &[&str] = &[
    "_format_version",
    "services",
    "routes",
    "config",
    "name",
    "id",
    "host",
    "port",
    "paths",
    "tags",
    "",
    "a",
];

impl Gen<'_> {
    fn ws(&mut self) {
        if self.rng.chance(70) {
            return;
        }
        for _ in 0..self.rng.below(4) {
            let c = *self.rng.pick(b" \t\n\r");
            self.out.push(c);
        }
    }

    fn string(&mut self) {
        self.out.push(b'"');
        for _ in 0..self.rng.below(12) {
            match self.rng.below(16) {
                0 => {
                    let e = *self
                        .rng
                        .pick(&["\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t"]);
                    self.out.extend_from_slice(e.as_bytes());
                }
                1 => {
                    // A BMP code point that is no surrogate, as an escape in either case.
                    let mut c = self.rng.below(0x1_0000) as u32;
                    if (0xD800..0xE000).contains(&c) {
                        c -= 0x800;
                    }
                    let s = if self.rng.chance(50) {
                        format!("\\u{c:04x}")
                    } else {
                        format!("\\u{c:04X}")
                    };
                    self.out.extend_from_slice(s.as_bytes());
                }
                2 => {
                    let c = 0x1_0000 + self.rng.below(0x10_0000) as u32;
                    let hi = 0xD800 + ((c - 0x1_0000) >> 10);
                    let lo = 0xDC00 + ((c - 0x1_0000) & 0x3FF);
                    self.out
                        .extend_from_slice(format!("\\u{hi:04x}\\u{lo:04X}").as_bytes());
                }
                3 => {
                    let s = *self
                        .rng
                        .pick(&["é", "中", "😀", "\u{7f}", "\u{10ffff}", "ß"]);
                    self.out.extend_from_slice(s.as_bytes());
                }
                _ => {
                    let s = *self.rng.pick(&[
                        "kong",
                        "a",
                        " ",
                        "0",
                        "-",
                        "{",
                        "}",
                        "[",
                        "]",
                        ":",
                        ",",
                        "abcdefghij",
                        "/path",
                        "true",
                        "*",
                    ]);
                    self.out.extend_from_slice(s.as_bytes());
                }
            }
        }
        self.out.push(b'"');
    }

    fn key(&mut self) {
        if self.rng.chance(60) {
            let k = *self.rng.pick(KEYS);
            self.out.push(b'"');
            self.out.extend_from_slice(k.as_bytes());
            self.out.push(b'"');
        } else {
            self.string();
        }
    }

    fn number(&mut self) {
        let mut s = String::new();
        if self.rng.chance(30) {
            s.push('-');
        }
        if self.rng.chance(20) {
            s.push('0');
        } else {
            s.push_str(&(1 + self.rng.below(9)).to_string());
            for _ in 0..self.rng.below(18) {
                s.push_str(&self.rng.below(10).to_string());
            }
        }
        if self.rng.chance(30) {
            s.push('.');
            for _ in 0..1 + self.rng.below(6) {
                s.push_str(&self.rng.below(10).to_string());
            }
        }
        if self.rng.chance(20) {
            s.push(*self.rng.pick(&['e', 'E']));
            if self.rng.chance(60) {
                s.push(*self.rng.pick(&['+', '-']));
            }
            s.push_str(&self.rng.below(100).to_string());
        }
        self.out.extend_from_slice(s.as_bytes());
    }

    fn value(&mut self, depth: usize) {
        self.ws();
        let leaf = depth >= 6 || self.rng.chance(40 + 10 * depth as u64);
        if leaf {
            match self.rng.below(6) {
                0 | 1 => self.string(),
                2 | 3 => self.number(),
                4 => {
                    let w = *self.rng.pick(&["true", "false"]);
                    self.out.extend_from_slice(w.as_bytes());
                }
                _ => self.out.extend_from_slice(b"null"),
            }
        } else if self.rng.chance(50) {
            self.object(depth);
        } else {
            self.out.push(b'[');
            let n = self.rng.below(5);
            for i in 0..n {
                if i > 0 {
                    self.out.push(b',');
                }
                self.value(depth + 1);
            }
            self.ws();
            self.out.push(b']');
        }
        self.ws();
    }

    fn object(&mut self, depth: usize) {
        self.out.push(b'{');
        let n = self.rng.below(6);
        for i in 0..n {
            if i > 0 {
                self.out.push(b',');
            }
            self.ws();
            self.key();
            self.ws();
            self.out.push(b':');
            self.value(depth + 1);
        }
        self.ws();
        self.out.push(b'}');
    }

    /// A document: mostly an object with a `config` member holding an object.
    fn document(&mut self) -> Vec<u8> {
        self.out.clear();
        self.ws();
        if self.rng.chance(85) {
            self.out.push(b'{');
            let n = self.rng.below(5);
            let config_at = self.rng.below(n + 1);
            for i in 0..=n {
                if i > 0 {
                    self.out.push(b',');
                }
                self.ws();
                if i == config_at {
                    self.out.extend_from_slice(b"\"config\"");
                    self.ws();
                    self.out.push(b':');
                    self.ws();
                    if self.rng.chance(80) {
                        self.object(1);
                    } else {
                        self.value(1);
                    }
                } else {
                    self.key();
                    self.ws();
                    self.out.push(b':');
                    self.value(1);
                }
                self.ws();
            }
            self.out.push(b'}');
        } else if self.rng.chance(10) {
            // Deep, around the limit.
            let n = MAX_DEPTH - 3 + self.rng.below(6);
            for _ in 0..n {
                self.out.extend_from_slice(if self.rng.chance(50) {
                    b"["
                } else {
                    b"{\"a\":"
                });
            }
            let inner = self.out.clone();
            self.value(6);
            for &b in inner.iter().rev() {
                match b {
                    b'[' => self.out.push(b']'),
                    b'{' => self.out.push(b'}'),
                    _ => {}
                }
            }
        } else {
            self.value(0);
        }
        self.ws();
        std::mem::take(&mut self.out)
    }
}

fn generated(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut rng = Prng(seed);
    let mut g = Gen {
        rng: &mut rng,
        out: Vec::new(),
    };
    (0..n).map(|_| g.document()).collect()
}

#[test]
fn generated_documents_agree_at_every_budget() {
    let mut counts = Counts::default();
    let docs = generated(0x5EED_0001, 3000);
    let mut bytes = 0;
    for doc in &docs {
        bytes += doc.len();
        if let Err(e) = check(doc, BUDGETS, &mut counts) {
            // The generator writes valid JSON (no out-of-range exponents), sometimes nested
            // deeper than the limit.
            assert_eq!(e.kind, ErrorKind::DepthLimitExceeded, "{}", show(doc));
        }
    }
    println!(
        "generated: {} documents, {bytes} bytes, {counts:?}",
        docs.len()
    );
    assert!(counts.valid > docs.len() * 9 / 10 && counts.invalid > 0);
    assert!(counts.members_checked > 10_000);
}

fn mutate(rng: &mut Prng, doc: &[u8]) -> Vec<u8> {
    let mut d = doc.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(d.len() + 1);
        match rng.below(7) {
            0 if at < d.len() => d[at] ^= 1 << rng.below(8),
            1 if at < d.len() => d[at] = rng.next() as u8,
            2 if at < d.len() => {
                d[at] = *rng.pick(b"\"\\{}[],:0-+.eE \t\x00\x1f\x7f\x80\xc3\xed\xf0\xff")
            }
            3 => d.truncate(at),
            4 if at < d.len() => {
                d.remove(at);
            }
            5 => {
                let b = *rng.pick(b"\"\\{}[],:01-.eEu \n\xc3\xa9");
                d.insert(at, b);
            }
            _ => {
                let end = (at + rng.below(8)).min(d.len());
                let chunk = d[at..end].to_vec();
                d.splice(at..at, chunk);
            }
        }
    }
    d
}

#[test]
fn mutated_documents_never_panic_and_agree() {
    let mut counts = Counts::default();
    let mut rng = Prng(0x5EED_0002);
    let mut seeds = generated(0x5EED_0003, 1500);
    seeds.extend(edge_cases().into_iter().map(|(t, _)| t));
    let mut n = 0;
    for seed in &seeds {
        for _ in 0..4 {
            let m = mutate(&mut rng, seed);
            let _ = check(&m, &[1, 7, usize::MAX], &mut counts);
            n += 1;
        }
    }
    println!("mutated: {n} documents, {counts:?}");
    assert!(counts.invalid > n / 4 && counts.valid > n / 20);
}

#[test]
fn truncations_of_a_document_are_all_refused_but_numbers() {
    let mut counts = Counts::default();
    let docs = generated(0x5EED_0004, 200);
    for doc in &docs {
        for cut in 0..doc.len() {
            let r = check(&doc[..cut], &[1, 4096], &mut counts);
            if let Ok(s) = r {
                assert!(
                    s.root == ValueKind::Number || trim(&doc[cut..]).is_empty(),
                    "{}",
                    show(&doc[..cut])
                );
            }
        }
    }
    println!("truncations: {counts:?}");
}

#[test]
fn tree_number_range_escapes_and_fixtures() {
    // serde_json's `Value` refuses a number that rounds past `f64::MAX`; so does the tree.
    for t in [
        "1e400",
        "[-1e400]",
        "{\"a\":1.5E+999999999999999999999}",
        "1.7976931348623159e308",
        &format!("17976931348623159{}", "0".repeat(292)),
        "0.0001797693134862316e312",
    ] {
        assert_eq!(serde_verdict(t.as_bytes()), Verdict::OutOfRange, "{t}");
        let e = tree::parse(t.as_bytes()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NumberOutOfRange, "{t}");
    }
    for t in [
        "1.7976931348623157e308",
        "0e999999999999999999999",
        "0.000e400",
        "1e-400",
        "-0",
        "18446744073709551616",
        "-9223372036854775809",
        "[1.50, 1E2, 0.1e1]",
    ] {
        assert_eq!(serde_verdict(t.as_bytes()), Verdict::Valid, "{t}");
        check_tree(t.as_bytes(), Verdict::Valid);
        // The text of a number is kept as it was read.
        let kept = String::from_utf8(tree::to_vec(&tree::parse(t.as_bytes()).unwrap())).unwrap();
        assert_eq!(kept, t.replace(' ', ""));
    }
    // The one difference: the tree's bound is exact (what rounds to `f64::MAX` is in range), while
    // serde_json's default float parsing overflows up to an ulp below it. Its verdict is not
    // asserted: with its `float_roundtrip` feature (on in `cargo test --workspace`, where a test
    // dependency, jsonschema, enables it) it parses this exactly too.
    let t = b"-1.7976931348623158e308";
    assert!(tree::parse(t).is_ok());
    assert_eq!("-1.7976931348623158e308".parse::<f64>(), Ok(-f64::MAX));
    // Integers within `u64`/`i64` print exactly as serde_json prints them.
    for t in [
        "0",
        "-1",
        "18446744073709551615",
        "-9223372036854775808",
        "[1,-2,{\"a\":3}]",
    ] {
        let serde: Value = serde_json::from_slice(t.as_bytes()).unwrap();
        assert_eq!(
            tree::to_vec(&tree::parse(t.as_bytes()).unwrap()),
            serde_json::to_vec(&serde).unwrap()
        );
    }
    // Every escape and control character, surrogate pairs, non-ASCII, `/` and DEL.
    let mut s = String::from("\"");
    for c in 0u32..0x80 {
        s.push_str(&format!("\\u{c:04x}"));
    }
    s.push_str("\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\\\"\\\\ é € 😀 \u{2028}\"");
    let serde: Value = serde_json::from_slice(s.as_bytes()).unwrap();
    let ours = tree::parse(s.as_bytes()).unwrap();
    assert_eq!(ours.as_str(), serde.as_str());
    assert_eq!(tree::to_vec(&ours), serde_json::to_vec(&serde).unwrap());
    // The repository's JSON fixtures and examples, written back as serde_json writes them.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = 0;
    for dir in [
        "tests/fixtures/kong",
        "examples/kong/3.4",
        "examples/kong/3.5",
        "examples/kong/3.6",
        "examples/kong/3.7-3.9",
        "examples/iam",
        "examples/envoy",
    ] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read(&path).unwrap();
                check_tree(&text, serde_verdict(&text));
                files += 1;
            }
        }
    }
    assert!(files >= 9, "{files} fixtures");
}
