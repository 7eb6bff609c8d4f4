//! A downloaded declarative configuration checked a slice at a time before it is imported
//! (docs/architecture.md, "Import"): JSON syntax (the resumable `json::scan::Scanner`), a
//! non-empty `_format_version`, and the SHA-256 of the bytes against the `config-sha256` metadata.
//! An object may be up to `import_max_bytes` (128 MiB by default); checked whole it was one
//! callback proportional to its size, so each step either scans `CHECK_SLICE_BYTES` or hashes
//! `digest::SLICE_BYTES`.

use crate::json::Value;
use sha2::{Digest, Sha256};

use crate::digest::SLICE_BYTES as HASH_SLICE;
use crate::json::scan::{ErrorKind, Progress, Scanner, Summary, ValueKind, MAX_DEPTH};

/// Bytes scanned per step: scanning 1 MiB was 11-12 ms of guest CPU in wasm at load 2-4 on 2
/// cores, hashing it 6 ms (BENCHMARKS.md, issue 25, speed5). A step that hashes hashes
/// `digest::SLICE_BYTES`.
pub const CHECK_SLICE_BYTES: usize = 512 * 1024;

/// Where a check is.
#[derive(Debug, PartialEq, Eq)]
pub enum CheckStep {
    /// Not finished: call `step` again with the same bytes.
    Working,
    /// The bytes are a declarative configuration whose hash matches (when one was expected).
    Valid,
    /// Why not (never quoting the document).
    Invalid(String),
}

/// One check in progress (see the module documentation).
#[derive(Debug)]
pub struct DocumentCheck {
    scanner: Scanner,
    summary: Option<Summary>,
    hasher: Sha256,
    hashed: usize,
    expected_sha256_hex: Option<String>,
}

impl DocumentCheck {
    /// A check; `expected_sha256_hex`: the object's `config-sha256` metadata, when it has one.
    pub fn new(expected_sha256_hex: Option<String>) -> DocumentCheck {
        DocumentCheck {
            scanner: Scanner::new(None),
            summary: None,
            hasher: Sha256::new(),
            hashed: 0,
            expected_sha256_hex,
        }
    }

    /// The next slice of `text` (the same bytes at every step): a slice of the scan or one of
    /// the hash, whichever is behind, so a step costs one slice, not two (BENCHMARKS.md,
    /// issue 25, speed5).
    pub fn step(&mut self, text: &[u8]) -> CheckStep {
        let hashing = self.expected_sha256_hex.is_some() && self.hashed < text.len();
        if self.summary.is_none() && (!hashing || self.scanner.position() <= self.hashed) {
            if let Err(why) = self.scan_slice(text) {
                return CheckStep::Invalid(why);
            }
        } else if hashing {
            let end = text.len().min(self.hashed.saturating_add(HASH_SLICE));
            if let Some(slice) = text.get(self.hashed..end) {
                self.hasher.update(slice);
            }
            self.hashed = end;
        }
        let hashed = self.expected_sha256_hex.is_none() || self.hashed >= text.len();
        match &self.summary {
            Some(summary) if hashed => self.verdict(text, summary),
            _ => CheckStep::Working,
        }
    }

    /// One slice of the syntax check: `Err` says why the text is refused.
    fn scan_slice(&mut self, text: &[u8]) -> Result<(), String> {
        match self.scanner.step(text, CHECK_SLICE_BYTES) {
            Progress::More => Ok(()),
            Progress::Done(summary) => {
                self.summary = Some(summary);
                Ok(())
            }
            Progress::Invalid(e) => Err(if text.trim_ascii_start().first() != Some(&b'{') {
                "is not a JSON object".into()
            } else if e.kind == ErrorKind::DepthLimitExceeded {
                // In the words of the rewriter, which used to meet such documents first.
                format!("is nested deeper than {MAX_DEPTH} levels")
            } else {
                format!("is {e}").to_ascii_lowercase()
            }),
        }
    }

    fn verdict(&self, text: &[u8], summary: &Summary) -> CheckStep {
        if summary.root != ValueKind::Object {
            return CheckStep::Invalid("is not a JSON object".into());
        }
        let version = summary
            .member("_format_version")
            .and_then(|m| text.get(m.value.clone()));
        match version.map(crate::json::parse) {
            None => {
                return CheckStep::Invalid(
                    "is not a Kong declarative configuration (no _format_version)".into(),
                )
            }
            Some(Ok(Value::String(s))) if !s.is_empty() => {}
            Some(_) => {
                return CheckStep::Invalid(
                    "_format_version must be a non-empty string such as \"3.0\"".into(),
                )
            }
        }
        if let Some(expected) = &self.expected_sha256_hex {
            let digest: [u8; 32] = self.hasher.clone().finalize().into();
            if *expected != crate::document::hex(&digest) {
                return CheckStep::Invalid(
                    "its content does not match its config-sha256 metadata (corrupt or truncated)"
                        .into(),
                );
            }
        }
        CheckStep::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{sha256_hex, validate_declarative_json};

    fn run(text: &[u8], sha: Option<String>) -> (CheckStep, usize) {
        let mut check = DocumentCheck::new(sha);
        let mut steps = 0;
        loop {
            steps += 1;
            match check.step(text) {
                CheckStep::Working => assert!(steps < 10_000, "no progress"),
                done => return (done, steps),
            }
        }
    }

    /// A configuration of about `mb` MiB.
    fn big(mb: usize) -> Vec<u8> {
        let services: Vec<Value> = (0..mb * 4000)
            .map(|i| crate::json!({"name": format!("svc-{i}"), "url": "http://a:80/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}))
            .collect();
        crate::json::to_vec(&crate::json!({"_format_version": "3.0", "services": services}))
    }

    #[test]
    fn agrees_with_the_whole_check_and_takes_a_step_per_slice() {
        let doc = big(5);
        let sha = sha256_hex(&doc);
        let (verdict, steps) = run(&doc, Some(sha.clone()));
        assert_eq!(verdict, CheckStep::Valid);
        assert!(validate_declarative_json(&doc).is_ok());
        // A step scans or hashes a slice, never both.
        let slices = doc.len().div_ceil(CHECK_SLICE_BYTES);
        let hashes = doc.len().div_ceil(HASH_SLICE);
        assert_eq!(steps, slices + hashes, "{steps} steps, {slices} slices");
        let (verdict, steps) = run(&doc, None);
        assert_eq!(verdict, CheckStep::Valid);
        assert_eq!(steps, slices);
        // The same document under another's hash, and truncated under its own.
        let other = sha256_hex(b"{}");
        assert!(
            matches!(run(&doc, Some(other)).0, CheckStep::Invalid(w) if w.contains("config-sha256"))
        );
        let half = &doc[..doc.len() / 2];
        assert!(
            matches!(run(half, Some(sha)).0, CheckStep::Invalid(w) if w.contains("not valid json"))
        );
    }

    #[test]
    fn refuses_what_the_whole_check_refuses_with_the_same_reasons() {
        let cases: [(&[u8], &str); 6] = [
            (b"<html>gateway timeout</html>", "is not a JSON object"),
            (b"[1, 2]", "is not a JSON object"),
            (b"", "is not a JSON object"),
            (b"{\"services\": []}", "no _format_version"),
            (b"{\"_format_version\": 3}", "_format_version must be"),
            (b"{\"_format_version\": \"3.0\",}", "not valid json"),
        ];
        for (text, reason) in cases {
            let (verdict, _) = run(text, Some(sha256_hex(text)));
            let CheckStep::Invalid(why) = verdict else {
                panic!("{text:?} accepted")
            };
            assert!(why.contains(reason), "{text:?}: {why}");
            let whole = validate_declarative_json(text).unwrap_err();
            assert!(whole.contains(reason), "{text:?}: whole check says {whole}");
        }
        // Deeper than the rewriter follows: refused here already, in the rewriter's words.
        let deep = format!(
            r#"{{"_format_version":"3.0","tags":{}1{}}}"#,
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        let (verdict, _) = run(deep.as_bytes(), None);
        assert_eq!(
            verdict,
            CheckStep::Invalid(format!("is nested deeper than {MAX_DEPTH} levels"))
        );
    }
}
