//! The progress line of a long download or upload (issue: "a progress line for long
//! downloads/uploads"): on stderr, for bodies of at least `MIN_BYTES`, when stderr is a terminal
//! (one line rewritten in place) or with `-v` (a line per quarter). Never a header or a URL's
//! query: only the method, the host and byte counts.

use std::io::{IsTerminal, Read, Write};

use crate::outcome::Progress;

/// Smaller bodies finish before a line would help.
pub const MIN_BYTES: u64 = 1 << 20;

#[derive(Clone, Copy, Debug)]
pub struct Meter {
    tty: bool,
    verbose: bool,
}

impl Meter {
    pub fn new(progress: Progress) -> Meter {
        Meter {
            tty: std::io::stderr().is_terminal(),
            verbose: progress.verbosity >= 1,
        }
    }

    /// A reporter for one transfer of `total` bytes (`None`: too small, or nobody to tell).
    pub fn start(&self, what: String, total: u64) -> Option<Report> {
        (total >= MIN_BYTES && (self.tty || self.verbose)).then_some(Report {
            what,
            total,
            done: 0,
            shown_quarter: 0,
            tty: self.tty,
        })
    }
}

pub struct Report {
    what: String,
    total: u64,
    done: u64,
    shown_quarter: u64,
    tty: bool,
}

impl Report {
    pub fn advance(&mut self, n: usize) {
        self.done = self.done.saturating_add(n as u64).min(self.total);
        let quarter = self.done.saturating_mul(4) / self.total.max(1);
        if self.tty {
            eprint!("\r{}", self.line());
            if self.done == self.total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        } else if quarter > self.shown_quarter {
            self.shown_quarter = quarter;
            eprintln!("{}", self.line());
        }
    }

    fn line(&self) -> String {
        format!(
            "config-bridge: {} {:.1} / {:.1} MB ({}%)",
            self.what,
            self.done as f64 / 1e6,
            self.total as f64 / 1e6,
            self.done.saturating_mul(100) / self.total.max(1)
        )
    }
}

/// A reader that reports what passes through it.
pub struct Counting<R> {
    pub inner: R,
    pub report: Report,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.report.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_transfers_and_quiet_runs_get_no_line() {
        let quiet = Meter {
            tty: false,
            verbose: false,
        };
        assert!(quiet.start("downloading".into(), 10 * MIN_BYTES).is_none());
        let verbose = Meter {
            tty: false,
            verbose: true,
        };
        assert!(verbose.start("downloading".into(), MIN_BYTES - 1).is_none());
        let mut r = verbose.start("downloading".into(), 4 * MIN_BYTES).unwrap();
        r.advance(MIN_BYTES as usize);
        assert_eq!(r.shown_quarter, 1);
        assert_eq!(r.line(), "config-bridge: downloading 1.0 / 4.2 MB (25%)");
        r.advance(MIN_BYTES as usize / 2);
        assert_eq!(r.shown_quarter, 1);
    }
}
