//! RS256 (RSASSA-PKCS1-v1_5 with SHA-256, RFC 8017 §8.2) for the GCS service-account JWT, in
//! slices a host can run one per tick (docs/gcs.md, "Signing in slices").
//!
//! One RSA-2048 signature is one callback of ~25–30 ms in wasm with RustCrypto's `rsa`, over the
//! 20 ms a filter may hold a gateway worker. The private-key operation is split at its natural
//! seams instead: blinding, the exponentiation modulo `p`, the one modulo `q`, then the CRT
//! recombination with the unblinding and a check of the result. Each exponentiation is
//! `crypto-bigint`'s constant-time `pow` on the key `rsa` parsed and validated, so the arithmetic is
//! the same as `rsa`'s; only the order of calls is ours. Native tests compare every signature with
//! `rsa`'s own.

use std::rc::Rc;

use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BoxedUint, PrivateKey};
use sha2::{Digest, Sha256};

use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams};
use crypto_bigint::{ConcatenatingMul, NonZero, Resize};

/// DER of DigestInfo { sha256, NULL } up to the digest (RFC 8017 §9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// The parts of a two-prime key the sliced operation uses, taken once from `rsa`'s validated key.
pub struct SigningKeyParts {
    key: PrivateKey,
    p: BoxedMontyParams,
    q: BoxedMontyParams,
    p_nz: NonZero<BoxedUint>,
    q_nz: NonZero<BoxedUint>,
}

impl SigningKeyParts {
    /// `None` for a key without CRT values (multi-prime keys are refused when parsed).
    pub fn new(key: PrivateKey) -> Option<SigningKeyParts> {
        let p: BoxedMontyParams = key.p()?.clone().into();
        let q: BoxedMontyParams = key.q()?.clone().into();
        let p_nz = NonZero::new(p.modulus().clone().get()).into_option()?;
        let q_nz = NonZero::new(q.modulus().clone().get()).into_option()?;
        key.dp()?;
        key.dq()?;
        key.qinv()?;
        Some(SigningKeyParts {
            key,
            p,
            q,
            p_nz,
            q_nz,
        })
    }

    /// The modulus length in bytes (the signature's length).
    fn k(&self) -> usize {
        self.key.size()
    }
}

/// Where a signature is.
enum Stage {
    /// The encoded message, as an integer, not blinded yet.
    Blind {
        em: BoxedUint,
    },
    /// The blinded message; the exponentiation modulo `p` is next.
    ModP {
        blinded: Blinded,
    },
    /// The exponentiation modulo `q` is next.
    ModQ {
        blinded: Blinded,
        m1: BoxedMontyForm,
    },
    /// The CRT recombination, unblinding and check are next.
    Combine {
        blinded: Blinded,
        m1: BoxedMontyForm,
        m2: BoxedUint,
    },
    Done,
}

struct Blinded {
    /// The encoded message (to check the signature against).
    em: BoxedUint,
    /// `em · r^e mod n`.
    c: BoxedUint,
    /// `r⁻¹ mod n`.
    unblinder: BoxedUint,
}

/// One signature in progress: `step` until it answers.
pub struct SignJob {
    key: Rc<SigningKeyParts>,
    stage: Stage,
}

impl SignJob {
    /// Hashes and encodes `message` (cheap); the private-key work is left to `step`.
    pub fn new(key: Rc<SigningKeyParts>, message: &[u8]) -> Result<SignJob, String> {
        let digest = Sha256::digest(message);
        let t_len = SHA256_DIGEST_INFO.len() + digest.len();
        // EM = 0x00 || 0x01 || PS (0xff…, at least 8) || 0x00 || DigestInfo || H
        let ps_len = key
            .k()
            .checked_sub(t_len + 3)
            .filter(|n| *n >= 8)
            .ok_or("RSA key too small for RS256")?;
        let mut em = Vec::with_capacity(key.k());
        em.extend_from_slice(&[0, 1]);
        em.resize(2 + ps_len, 0xff);
        em.push(0);
        em.extend_from_slice(&SHA256_DIGEST_INFO);
        em.extend_from_slice(&digest);
        let bits = key.key.n_bits_precision();
        let em = BoxedUint::from_be_slice(&em, bits)
            .map_err(|_| "RSA signing failed (encoding)".to_string())?;
        Ok(SignJob {
            key,
            stage: Stage::Blind { em },
        })
    }

    /// Runs the next slice; the signature (or why there is none) once the last one has run.
    pub fn step(&mut self) -> Option<Result<Vec<u8>, String>> {
        let key = Rc::clone(&self.key);
        let (next, answer) = match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Blind { em } => match blind(&key, em) {
                Ok(blinded) => (Stage::ModP { blinded }, None),
                Err(e) => (Stage::Done, Some(Err(e))),
            },
            Stage::ModP { blinded } => {
                let m1 = exponentiate(&blinded.c, &key.p, &key.p_nz, key.key.dp());
                match m1 {
                    Some(m1) => (Stage::ModQ { blinded, m1 }, None),
                    None => (Stage::Done, Some(Err(internal()))),
                }
            }
            Stage::ModQ { blinded, m1 } => {
                match exponentiate(&blinded.c, &key.q, &key.q_nz, key.key.dq()) {
                    Some(m2) => (
                        Stage::Combine {
                            blinded,
                            m1,
                            m2: m2.retrieve(),
                        },
                        None,
                    ),
                    None => (Stage::Done, Some(Err(internal()))),
                }
            }
            Stage::Combine { blinded, m1, m2 } => {
                (Stage::Done, Some(combine(&key, &blinded, m1, &m2)))
            }
            Stage::Done => (Stage::Done, Some(Err(internal()))),
        };
        self.stage = next;
        answer
    }

    /// Every slice at once (the native tool, which has no worker to keep free).
    pub fn finish(mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(answer) = self.step() {
                return answer;
            }
        }
    }
}

fn internal() -> String {
    "RSA signing failed".to_string()
}

/// `em · r^e mod n` for a fresh random `r` invertible mod `n` (base blinding, as `rsa` does).
fn blind(key: &SigningKeyParts, em: BoxedUint) -> Result<Blinded, String> {
    let n = key.key.n();
    let bits = key.key.n_bits_precision();
    for _ in 0..8 {
        // 8 bytes more than the modulus: the reduction's bias is below 2^-64.
        let mut bytes = vec![0u8; key.k() + 8];
        getrandom::fill(&mut bytes)
            .map_err(|_| "RSA signing failed (no randomness from the host?)".to_string())?;
        let wide = BoxedUint::from_be_slice(&bytes, bits + 64 + 64).map_err(|_| internal())?;
        let r = wide
            .rem(&n.resize_unchecked(wide.bits_precision()))
            .resize_unchecked(bits);
        let Some(unblinder) = r.invert_mod(n).into_option() else {
            continue;
        };
        let e = key.key.e();
        let r_e = BoxedMontyForm::new(r, key.key.n_params())
            .pow_bounded_exp(e, e.bit_width())
            .retrieve();
        let c = em.mul_mod(&r_e, n);
        return Ok(Blinded { em, c, unblinder });
    }
    Err(internal())
}

/// `c^d mod prime` in Montgomery form, `c` reduced modulo the prime first.
fn exponentiate(
    c: &BoxedUint,
    prime: &BoxedMontyParams,
    prime_nz: &NonZero<BoxedUint>,
    d: Option<&BoxedUint>,
) -> Option<BoxedMontyForm> {
    let d = d?;
    let bits = prime.bits_precision();
    let reduced = c
        .rem(&prime_nz.resize_unchecked(c.bits_precision()))
        .resize_unchecked(bits);
    Some(BoxedMontyForm::new(reduced, prime).pow(d))
}

/// Garner's recombination `m = m2 + q · (qInv · (m1 − m2) mod p)`, the unblinding, and the check
/// `m^e = c` that keeps a faulty computation from leaking the key.
fn combine(
    key: &SigningKeyParts,
    blinded: &Blinded,
    m1: BoxedMontyForm,
    m2: &BoxedUint,
) -> Result<Vec<u8>, String> {
    let n = key.key.n();
    let bits = key.key.n_bits_precision();
    let qinv = key.key.qinv().ok_or_else(internal)?;
    let m2_mod_p = m2
        .rem(&(&key.p_nz).resize_unchecked(m2.bits_precision()))
        .resize_unchecked(key.p.bits_precision());
    let diff = m1 - BoxedMontyForm::new(m2_mod_p, &key.p);
    let h = (qinv * &diff).retrieve();
    let hq = h
        .concatenating_mul(key.q_nz.as_ref())
        .resize_unchecked(bits);
    let m = m2.clone().resize_unchecked(bits).wrapping_add(&hq);
    let signature = m.mul_mod(&blinded.unblinder, n);
    let e = key.key.e();
    let check = BoxedMontyForm::new(signature.clone(), key.key.n_params())
        .pow_bounded_exp(e, e.bit_width())
        .retrieve();
    if check != blinded.em {
        return Err(internal());
    }
    let bytes = signature.to_be_bytes();
    let k = key.k();
    // The buffer is limb-aligned; the signature is the modulus's length (leading zeros kept).
    let start = bytes.len().checked_sub(k).ok_or_else(internal)?;
    Ok(bytes.get(start..).ok_or_else(internal)?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::SigningKey;
    use rsa::signature::{SignatureEncoding, Signer};

    /// A fresh key from the GCS mock's generator (an independent key writer).
    fn key() -> PrivateKey {
        let generated =
            harness_mocks::gcs::ServiceAccountKey::generate("a@p.iam.gserviceaccount.com");
        let json = generated.to_json("https://oauth2.googleapis.com/token");
        let pem = json["private_key"].as_str().unwrap();
        super::super::key::private_key_from_pem(pem).unwrap().0
    }

    #[test]
    fn every_signature_is_rsas_own() {
        for message in [&b""[..], b"a", b"header.claims", &[0u8; 1000]] {
            // A key per message: the comparison covers several moduli and blinding factors.
            let key = key();
            let parts = Rc::new(SigningKeyParts::new(key.clone()).unwrap());
            let reference = SigningKey::<Sha256>::new(key);
            let mut job = SignJob::new(Rc::clone(&parts), message).unwrap();
            let mut steps = 0;
            let sig = loop {
                steps += 1;
                if let Some(answer) = job.step() {
                    break answer.unwrap();
                }
            };
            assert_eq!(steps, 4, "blind, mod p, mod q, combine");
            assert_eq!(sig, reference.sign(message).to_vec());
        }
    }

    #[test]
    fn a_finished_job_answers_an_error_not_a_panic() {
        let parts = Rc::new(SigningKeyParts::new(key()).unwrap());
        let mut job = SignJob::new(parts, b"m").unwrap();
        while job.step().is_none() {}
        assert!(matches!(job.step(), Some(Err(_))));
    }
}
