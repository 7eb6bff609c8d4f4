//! A large filter configuration's buffer turned into what the filter keeps, in place and a slice
//! at a time (no second buffer of its size, no callback proportional to it):
//!
//! * [`StringUnescape`]: Kong 3.4 hands the filter its configuration as a JSON string holding the
//!   object; it is unescaped where it lies (the text only shrinks), then validated like an object.
//! * [`PayloadCut`]: the inline `config` payload moved to the front of the text. One move of a
//!   50 MB payload was ~15 ms of a single callback in wasm (BENCHMARKS.md, "Longest callback").

use std::rc::Rc;

use super::{err, Config, Fail, SourceConfig};

/// Where the `config` payload is: a byte range of the filter configuration text (an object given
/// inline), or its own buffer (a JSON string holding the document, unescaped).
pub(super) enum PayloadLoc {
    None,
    Range(usize, usize),
    Owned(Vec<u8>),
}

/// The payload on its way out of the configuration text: `step` moves it to the front of the
/// buffer a slice at a time (front to back, so a slice never overwrites bytes not yet moved).
pub struct PayloadCut {
    text: Vec<u8>,
    /// The payload's range in `text` while it is moved (`start == 0`: nothing to move).
    start: usize,
    len: usize,
    moved: usize,
}

impl PayloadCut {
    pub(super) fn new(loc: PayloadLoc, text: Vec<u8>) -> Result<PayloadCut, Fail> {
        let whole = |text: Vec<u8>| PayloadCut {
            len: text.len(),
            moved: text.len(),
            start: 0,
            text,
        };
        match loc {
            PayloadLoc::None => Ok(whole(Vec::new())),
            PayloadLoc::Owned(v) => Ok(whole(v)),
            PayloadLoc::Range(start, end) if start <= end && end <= text.len() => Ok(PayloadCut {
                text,
                start,
                len: end - start,
                moved: 0,
            }),
            PayloadLoc::Range(..) => err("config", "could not be located"),
        }
    }

    /// Moves at most `budget` more bytes of the payload; `true` once it is all moved.
    pub fn step(&mut self, budget: usize) -> bool {
        let n = budget.max(1).min(self.len - self.moved);
        if n > 0 && self.start > 0 {
            let from = self.start + self.moved;
            self.text.copy_within(from..from + n, self.moved);
        }
        self.moved += n;
        self.moved >= self.len
    }

    /// The whole cut at once (small configurations).
    pub(super) fn finish_now(mut self, cfg: Config) -> Config {
        while !self.step(usize::MAX) {}
        self.install(cfg)
    }

    /// The configuration with its payload, once `step` returned `true`; `None` before (a cut
    /// not finished never hands over a payload, partial or empty). The text is released beyond
    /// the payload.
    pub fn finish(self, cfg: Config) -> Option<Config> {
        (self.moved >= self.len).then(|| self.install(cfg))
    }

    /// The moved payload into the configuration (every byte of it is moved).
    fn install(mut self, mut cfg: Config) -> Config {
        self.text.truncate(self.len);
        if let SourceConfig::Filter { document } = &mut cfg.source {
            *document = Rc::new(self.text);
        }
        cfg
    }
}

/// A JSON string (the whole buffer, whitespace around it allowed) unescaped in place, front to
/// back: the write position never passes the read position, since every escape is at least as
/// long as what it stands for.
#[derive(Debug, Default)]
pub struct StringUnescape {
    /// Next byte to read (`None`: the opening quote is not found yet).
    read: Option<usize>,
    write: usize,
    done: bool,
}

/// The outcome of one [`StringUnescape::step`].
#[derive(Debug, PartialEq, Eq)]
pub enum Unescaped {
    More,
    /// The buffer now holds the string's content, and nothing else.
    Done,
    /// Not a valid JSON string (why; never any of its content).
    Invalid(&'static str),
}

impl StringUnescape {
    pub fn new() -> StringUnescape {
        StringUnescape::default()
    }

    /// Reads about `budget` more bytes of `text` (the same buffer at every call), writing the
    /// unescaped content over its front; truncates it when the string ends.
    pub fn step(&mut self, text: &mut Vec<u8>, budget: usize) -> Unescaped {
        if self.done {
            return Unescaped::Invalid("already unescaped");
        }
        let mut r = match self.read {
            Some(r) => r,
            None => match text.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(at) if text.get(at) == Some(&b'"') => at + 1,
                _ => return Unescaped::Invalid("not a JSON string"),
            },
        };
        let stop = r.saturating_add(budget.max(1));
        while r < stop {
            // A run of plain bytes is moved at once (most of a configuration).
            let end = stop.min(text.len());
            let rest = text.get(r..end).unwrap_or_default();
            let run = rest
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .unwrap_or(rest.len());
            if run > 0 {
                text.copy_within(r..r + run, self.write);
                self.write += run;
                r += run;
                continue;
            }
            let Some(&b) = text.get(r) else {
                return Unescaped::Invalid("the string does not end");
            };
            match b {
                b'"' => return self.end(text, r + 1),
                b'\\' => {
                    let (ch, len) = match crate::json::escape(text, r + 1) {
                        Some(e) => e,
                        None => return Unescaped::Invalid("an invalid escape"),
                    };
                    let mut buf = [0u8; 4];
                    for &c in ch.encode_utf8(&mut buf).as_bytes() {
                        put(text, &mut self.write, c);
                    }
                    r += 1 + len;
                }
                0..=0x1f => return Unescaped::Invalid("a control character in the string"),
                _ => {
                    put(text, &mut self.write, b);
                    r += 1;
                }
            }
        }
        self.read = Some(r);
        Unescaped::More
    }

    /// The closing quote is read: only whitespace may follow.
    fn end(&mut self, text: &mut Vec<u8>, after: usize) -> Unescaped {
        let rest = text.get(after..).unwrap_or_default();
        if !rest.iter().all(u8::is_ascii_whitespace) {
            return Unescaped::Invalid("more after the string");
        }
        self.done = true;
        text.truncate(self.write);
        Unescaped::Done
    }
}

/// Writes `b` at `*w` (behind the read position) and advances.
fn put(text: &mut [u8], w: &mut usize, b: u8) {
    if let Some(slot) = text.get_mut(*w) {
        *slot = b;
    }
    *w += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration whose source is the filter's own `config` (its document replaced by a cut).
    fn config() -> Config {
        let text = br#"{"cluster_fallback_config_export":"on","cluster_fallback_config_storage":"s3://bucket/p","gateway_version":"3.9.1","aws_region":"r","aws_access_key_id":"AK","aws_secret_access_key":"SK","config":{"_format_version":"3.0"}}"#;
        Config::parse(text, &|_| None).unwrap()
    }

    fn document(cfg: &Config) -> &[u8] {
        match &cfg.source {
            SourceConfig::Filter { document } => document,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_cut_in_any_slices_equals_the_range() {
        let text: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for (start, end) in [
            (0, 10_000),
            (1, 9_999),
            (7, 7),
            (4_000, 9_000),
            (9_999, 10_000),
        ] {
            for budget in [1, 3, 64, 4_096, usize::MAX] {
                let mut cut = PayloadCut::new(PayloadLoc::Range(start, end), text.clone()).unwrap();
                let mut steps = 0;
                while !cut.step(budget) {
                    steps += 1;
                    assert!(steps <= text.len());
                }
                let cfg = cut.finish(config()).unwrap();
                assert_eq!(
                    document(&cfg),
                    &text[start..end],
                    "{start}..{end} by {budget}"
                );
            }
        }
    }

    #[test]
    fn an_unfinished_cut_hands_over_nothing() {
        let text = b"{\"config\":{\"_format_version\":\"3.0\"}}".to_vec();
        let mut cut = PayloadCut::new(PayloadLoc::Range(10, 35), text.clone()).unwrap();
        assert!(!cut.step(5));
        assert!(cut.finish(config()).is_none());
        // Finished, the same cut hands over the whole payload.
        let mut cut = PayloadCut::new(PayloadLoc::Range(10, 35), text).unwrap();
        while !cut.step(5) {}
        let cfg = cut.finish(config()).unwrap();
        assert_eq!(document(&cfg), b"{\"_format_version\":\"3.0\"}");
    }

    /// Unescaped in `budget` slices: the content, or the reason.
    fn unescape(text: &[u8], budget: usize) -> Result<Vec<u8>, &'static str> {
        let mut buf = text.to_vec();
        let mut u = StringUnescape::new();
        for _ in 0..=text.len() {
            match u.step(&mut buf, budget) {
                Unescaped::More => {}
                Unescaped::Done => return Ok(buf),
                Unescaped::Invalid(why) => return Err(why),
            }
        }
        panic!("no progress");
    }

    #[test]
    fn a_string_unescaped_in_any_slices_is_serde_jsons() {
        let inner = serde_json::json!({
            "a": "quote \" backslash \\ slash / tab \t nl \n cr \r bs \u{8} ff \u{c} nul \u{0}",
            "é": "\u{e9}\u{1F600}\u{10FFFF}\u{7f}",
            "config": {"_format_version": "3.0", "k": ["x\"y"]}
        })
        .to_string();
        let mut outer = serde_json::to_vec(&serde_json::Value::String(inner.clone())).unwrap();
        // Escapes serde does not write: `\/`, `\u` for plain and astral characters.
        outer.extend_from_slice(b"  ");
        outer.splice(1..1, br#"\/\u0041\ud83d\ude00\u00e9"#.iter().copied());
        let expected = format!("/A\u{1F600}\u{e9}{inner}");
        for budget in [1, 2, 5, 11, 64, usize::MAX] {
            let got = unescape(&outer, budget).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), expected, "budget {budget}");
        }
        assert_eq!(unescape(b" \"\" ", 1).unwrap(), b"");
    }

    #[test]
    fn what_is_not_one_json_string_is_refused() {
        for bad in [
            &b"{}"[..],
            b"",
            b"\"abc",
            b"\"a\"x",
            b"\"a\\qb\"",
            b"\"a\\u12\"",
            b"\"\\ud800\"",
            b"\"\\ud800\\u0041\"",
            b"\"\\udc00\\udc00\"",
            b"\"a\nb\"",
            b"\"a\\",
        ] {
            for budget in [1, 3, usize::MAX] {
                assert!(
                    unescape(bad, budget).is_err(),
                    "{} by {budget}",
                    String::from_utf8_lossy(bad)
                );
                let serde = serde_json::from_slice::<String>(bad);
                assert!(serde.is_err(), "{}", String::from_utf8_lossy(bad));
            }
        }
    }

    #[test]
    fn a_range_outside_the_text_is_refused() {
        let e = PayloadCut::new(PayloadLoc::Range(3, 11), vec![0; 10])
            .err()
            .unwrap();
        assert_eq!(e.field, "config");
    }
}
