//! The inline `config` payload cut out of the filter configuration text in place, a slice at a
//! time: one move of a 50 MB payload down its buffer was ~15 ms of a single callback in wasm
//! (BENCHMARKS.md, "Longest callback"). No second payload-sized buffer is allocated.

use std::rc::Rc;

use super::{err, Config, ConfigError, SourceConfig};

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
    pub(super) fn new(loc: PayloadLoc, text: Vec<u8>) -> Result<PayloadCut, ConfigError> {
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

    /// The whole cut at once (small configurations): `finish` after the last step.
    pub(super) fn finish_now(mut self, cfg: Config) -> Config {
        while !self.step(usize::MAX) {}
        self.finish(cfg)
    }

    /// The configuration with its payload, once `step` returned `true`; the text is released
    /// beyond the payload. (Called early it would hand over a partial payload: the shell calls
    /// it only after the last step.)
    pub fn finish(self, mut cfg: Config) -> Config {
        if let SourceConfig::Filter { document } = &mut cfg.source {
            *document = Rc::new(self.payload());
        }
        cfg
    }

    fn payload(mut self) -> Vec<u8> {
        if self.moved < self.len {
            // Not all moved: never a partial document.
            return Vec::new();
        }
        self.text.truncate(self.len);
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                assert_eq!(
                    cut.payload(),
                    &text[start..end],
                    "{start}..{end} by {budget}"
                );
            }
        }
    }

    #[test]
    fn an_unfinished_cut_hands_over_nothing() {
        let text = b"{\"config\":{\"_format_version\":\"3.0\"}}".to_vec();
        let mut cut = PayloadCut::new(PayloadLoc::Range(10, 36), text).unwrap();
        assert!(!cut.step(5));
        assert!(cut.payload().is_empty());
    }

    #[test]
    fn a_range_outside_the_text_is_refused() {
        let e = PayloadCut::new(PayloadLoc::Range(3, 11), vec![0; 10])
            .err()
            .unwrap();
        assert_eq!(e.field, "config");
    }
}
