//! SHA-256 of a shared body, a slice at a time: hashing a 50 MB document takes hundreds of
//! milliseconds, too long for one host callback. The hex form is `crate::document::hex`.

use std::rc::Rc;

use sha2::{Digest, Sha256};

/// Bytes of a document hashed per tick: a larger one is hashed across ticks, so no callback does
/// work proportional to a large configuration (docs/architecture.md).
pub const SLICE_BYTES: usize = 1024 * 1024;

/// An incremental SHA-256 over a body it shares (never copies).
#[derive(Clone, Debug)]
pub struct Digester {
    body: Rc<Vec<u8>>,
    pos: usize,
    hasher: Sha256,
    digest: Option<[u8; 32]>,
}

impl Digester {
    pub fn new(body: Rc<Vec<u8>>) -> Digester {
        Digester {
            body,
            pos: 0,
            hasher: Sha256::new(),
            digest: None,
        }
    }

    /// Hashes at most `budget` more bytes; `Some(digest)` once the whole body is hashed (in the
    /// step that hashes the last byte, and again at every later step). A budget of 0 hashes
    /// nothing (an empty body is finished at the first step).
    pub fn step(&mut self, budget: usize) -> Option<[u8; 32]> {
        if self.digest.is_none() {
            let end = self.pos.saturating_add(budget).min(self.body.len());
            if let Some(chunk) = self.body.get(self.pos..end) {
                self.hasher.update(chunk);
            }
            self.pos = end.max(self.pos);
            if self.pos >= self.body.len() {
                self.digest = Some(std::mem::take(&mut self.hasher).finalize().into());
            }
        }
        self.digest
    }

    /// How many bytes have been hashed.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The body being hashed.
    pub fn body(&self) -> &Rc<Vec<u8>> {
        &self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    fn run(body: &Rc<Vec<u8>>, budget: usize) -> ([u8; 32], usize) {
        let mut d = Digester::new(body.clone());
        let mut steps = 0;
        loop {
            steps += 1;
            if let Some(h) = d.step(budget) {
                return (h, steps);
            }
            assert!(steps <= body.len() + 1, "no progress");
        }
    }

    #[test]
    fn every_budget_gives_the_one_shot_digest() {
        let body: Rc<Vec<u8>> = Rc::new((0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect());
        for budget in [1, 2, 63, 64, 65, 127, 128, 999, 1000, 1001, usize::MAX] {
            let (h, steps) = run(&body, budget);
            assert_eq!(h, whole(&body), "budget {budget}");
            assert_eq!(steps, body.len().div_ceil(budget).max(1), "budget {budget}");
        }
    }

    #[test]
    fn empty_body_finishes_at_the_first_step() {
        let mut d = Digester::new(Rc::new(Vec::new()));
        assert_eq!(d.step(0), Some(whole(b"")));
        assert_eq!(
            crate::document::hex(&whole(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn finished_digest_is_returned_again_and_budget_zero_makes_no_progress() {
        let body = Rc::new(b"{}".to_vec());
        let mut d = Digester::new(body.clone());
        assert_eq!(d.step(0), None);
        assert_eq!(d.position(), 0);
        assert_eq!(d.step(1), None);
        assert_eq!(d.position(), 1);
        let h = d.step(1);
        assert_eq!(h, Some(whole(b"{}")));
        assert_eq!(d.step(1), h);
        assert_eq!(d.step(usize::MAX), h);
        assert!(Rc::ptr_eq(d.body(), &body));
    }
}
