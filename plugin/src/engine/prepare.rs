//! A document on its way to the export: redacted (`redact`: every config-bridge filter
//! configuration in it keeps only its non-secret settings; the same pass finds its newest
//! `updated_at`, `crate::updated_at`), then hashed. Each a slice per tick when the document is
//! large, so no callback does work proportional to its size.
//!
//! Every source goes through here (the filter's own `config`, a URL, a Kong Admin API dump, and
//! the native tool's `export`, which drives the same engine): no secret setting of a
//! config-bridge filter reaches the store by any of them. What leaves is a `Document` of the
//! redacted bytes; signing or encrypting it (docs/sealed-exports.md) happens after this, on the
//! redacted bytes, when the export builds its request.

use std::rc::Rc;

use crate::digest::Digester;
use crate::document::Document;
use crate::redact::{KeyIndex, Redaction, Rewriter, Step, SLICE_BYTES};

#[derive(Debug)]
enum Stage {
    Redacting(Rewriter<Redaction>),
    /// Hashed; its newest `updated_at` (ms) is known from the redaction's pass.
    Digesting(Digester, Option<u64>),
}

/// One document being prepared, and when it was seen.
#[derive(Debug)]
pub(super) struct Prepare {
    stage: Stage,
    seen_at: u64,
}

impl Prepare {
    /// `index`: where the configuration's validation scan found the redaction's keys in
    /// `body`, if it did (`redact::KeyIndex`: the redaction then does not read it again).
    pub(super) fn new(body: Rc<Vec<u8>>, seen_at: u64, index: Option<KeyIndex>) -> Prepare {
        Prepare {
            stage: Stage::Redacting(Rewriter::with_index(body, index)),
            seen_at,
        }
    }

    /// Redacts `redact::SLICE_BYTES` or hashes `digest::SLICE_BYTES` more bytes; `Some` once the
    /// document is ready (or refused: one line saying why, never any of its content).
    pub(super) fn step(&mut self) -> Option<Result<Document, String>> {
        let budget = crate::digest::SLICE_BYTES;
        match &mut self.stage {
            Stage::Redacting(r) => match r.step(SLICE_BYTES) {
                Step::Working => None,
                Step::Failed(why) => Some(Err(format!(
                    "the config is not exported: {why} (its config-bridge filters cannot be checked for secrets)"
                ))),
                Step::Done(done) => {
                    let (body, updated_at_ms) = (done.body, done.updated_at_ms);
                    if body.len() <= SLICE_BYTES {
                        return Some(Ok(Document {
                            updated_at_ms,
                            ..Document::new(body, self.seen_at)
                        }));
                    }
                    self.stage = Stage::Digesting(Digester::new(body), updated_at_ms);
                    None
                }
            },
            Stage::Digesting(d, updated_at_ms) => {
                let sha256 = d.step(budget)?;
                Some(Ok(Document {
                    updated_at_ms: *updated_at_ms,
                    ..Document::with_digest(Rc::clone(d.body()), sha256, self.seen_at)
                }))
            }
        }
    }
}
