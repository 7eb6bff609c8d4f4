//! RS256 (RSASSA-PKCS1-v1_5 with SHA-256, RFC 8017 §8.2) for the GCS service-account JWT, in
//! slices a host can run one per tick (docs/gcs.md, "Signing in slices").
//!
//! The private-key operation is split at its seams: blinding of the base (with an inversion, in
//! slices) and of the exponents, the exponentiation modulo `p`, the one modulo `q` (each in slices
//! of a fixed amount of work), then the CRT recombination with the unblinding and a check of the
//! result. The arithmetic is
//! `plugin/bignum` (hand-written for size, constant time with respect to the key); native tests
//! compare every signature with `rsa`'s own signer.

use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::key::KeyComponents;
use bignum::{Invert, Limbs, Modulus, Pow};

/// DER of DigestInfo { sha256, NULL } up to the digest (RFC 8017 §9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// The work of one slice, in limb operations: a window of an exponentiation over `n` limbs costs
/// ~`10·n²` (five Montgomery products), a step of the inversion ~`12·n`. This is a quarter of an
/// exponentiation modulo a 1024-bit prime with its blinded exponent (1088 bits): a 2048-bit key
/// takes 13 slices (~10–15 ms each in wasm on a loaded machine, BENCHMARKS.md); larger keys take
/// more slices of the same length.
const WORK_PER_SLICE: usize = 68 * 10 * 32 * 32;

/// A two-prime key, its parts checked against each other once, at configuration time.
pub struct SigningKeyParts {
    n: Modulus,
    e: Limbs,
    /// The modulus length in bytes (the signature's length).
    k: usize,
    p: Modulus,
    q: Modulus,
    dp: Limbs,
    dq: Limbs,
    qinv: Limbs,
    /// `p − 1`, `q − 1`: the exponents are blinded with multiples of them.
    p1: Limbs,
    q1: Limbs,
}

fn limbs_for(bytes: &[u8]) -> Option<Limbs> {
    bignum::from_be(bytes, bytes.len().div_ceil(4))
}

impl SigningKeyParts {
    /// `None` unless `n = p·q`, `e` is odd, `e·dP ≡ 1 (mod p−1)`, `e·dQ ≡ 1 (mod q−1)` and
    /// `qInv·q ≡ 1 (mod p)`: the checks `rsa` made, on the CRT values the signature uses.
    pub fn new(c: &KeyComponents) -> Option<SigningKeyParts> {
        // Sizes first: the work below grows with the square of a part's length, so a key with
        // an oversized part must be refused before any of it (no callback may stall a worker).
        // `e` fits in 8 bytes (Google's keys: 65537); `p`, `q` are each at most `n`'s length and
        // together `n`'s length or one byte more; the CRT values are no longer than their prime.
        let parts_fit = c.e.len() <= 8
            && c.p.len() <= c.n.len()
            && c.q.len() <= c.n.len()
            && (c.n.len()..=c.n.len() + 1).contains(&(c.p.len() + c.q.len()))
            && c.dp.len() <= c.p.len()
            && c.dq.len() <= c.q.len()
            && c.qinv.len() <= c.p.len();
        if !parts_fit {
            return None;
        }
        let n = Modulus::new(limbs_for(&c.n)?)?;
        let e = limbs_for(&c.e)?;
        let p = Modulus::new(limbs_for(&c.p)?)?;
        let q = Modulus::new(limbs_for(&c.q)?)?;
        // Padded to their prime's length: the exponentiation's length shows nothing of them.
        let dp = bignum::from_be(&c.dp, p.limbs().len())?;
        let dq = bignum::from_be(&c.dq, q.limbs().len())?;
        let qinv = bignum::from_be(&c.qinv, p.limbs().len())?;
        let one = [1u32];
        let (p1, q1) = (minus_one(&p), minus_one(&q));
        let checks = bignum::same(&bignum::mul(p.limbs(), q.limbs()), n.limbs())
            && e.first().is_some_and(|l| l & 1 == 1)
            && !bignum::same(&e, &one)
            && bignum::same(&bignum::rem(&bignum::mul(&e, &dp), &p1), &one)
            && bignum::same(&bignum::rem(&bignum::mul(&e, &dq), &q1), &one)
            && bignum::same(&bignum::rem(&qinv, p.limbs()), &qinv)
            && bignum::same(&p.mul_mod(&qinv, &bignum::rem(q.limbs(), p.limbs())), &one);
        checks.then_some(SigningKeyParts {
            k: c.n.len(),
            n,
            e,
            p,
            q,
            dp,
            dq,
            qinv,
            p1,
            q1,
        })
    }

    /// Windows of an exponentiation modulo `m` per slice, the slices of equal length.
    fn windows(m: &Modulus, exp: &[u32]) -> usize {
        let n = m.limbs().len().max(1);
        let most = (WORK_PER_SLICE / (10 * n * n)).max(1);
        let total = bignum::windows(exp.len());
        total.div_ceil(total.div_ceil(most).max(1))
    }
}

/// `prime − 1` (the prime is odd: its low bit cleared).
fn minus_one(prime: &Modulus) -> Limbs {
    let mut x = prime.limbs().to_vec();
    if let Some(l) = x.first_mut() {
        *l &= !1;
    }
    x
}

/// `d + k·(prime − 1)` for a random 64-bit `k`: the same power modulo the prime (Fermat), a
/// different exponent for every signature (exponent blinding, as `rsa` 0.10 does).
fn blind_exponent(d: &[u32], prime_minus_one: &[u32], k: &[u8]) -> Option<Limbs> {
    let mut x = bignum::mul(&bignum::from_be(k, 2)?, prime_minus_one);
    // Below 2⁶⁴·(prime − 1) + prime − 1: no carry out of the product's limbs.
    bignum::add(&mut x, d);
    Some(x)
}

/// Where a signature is.
enum Stage {
    /// The inverse of the blinding factor `r` is being computed.
    Invert {
        em: Limbs,
        r: Limbs,
        job: Invert,
    },
    /// The blinded message is raised to `dP` modulo `p`.
    ModP {
        blinded: Blinded,
        job: Pow,
    },
    /// … and to `dQ` modulo `q`.
    ModQ {
        blinded: Blinded,
        m1: Limbs,
        job: Pow,
    },
    Done,
}

struct Blinded {
    /// The encoded message (to check the signature against).
    em: Limbs,
    /// `em · r^e mod n`.
    c: Limbs,
    /// `r⁻¹ mod n`.
    unblinder: Limbs,
}

/// One signature in progress: `step` until it answers.
pub struct SignJob {
    key: Rc<SigningKeyParts>,
    /// This signature's blinded CRT exponents.
    dp: Limbs,
    dq: Limbs,
    stage: Stage,
}

impl SignJob {
    /// Hashes and encodes `message`, draws the blinding factor; the private-key work is left to
    /// `step`.
    pub fn new(key: Rc<SigningKeyParts>, message: &[u8]) -> Result<SignJob, String> {
        let digest = Sha256::digest(message);
        let t_len = SHA256_DIGEST_INFO.len() + digest.len();
        // EM = 0x00 || 0x01 || PS (0xff…, at least 8) || 0x00 || DigestInfo || H
        let ps_len = key
            .k
            .checked_sub(t_len + 3)
            .filter(|n| *n >= 8)
            .ok_or("RSA key too small for RS256")?;
        let mut em = Vec::with_capacity(key.k);
        em.extend_from_slice(&[0, 1]);
        em.resize(2 + ps_len, 0xff);
        em.push(0);
        em.extend_from_slice(&SHA256_DIGEST_INFO);
        em.extend_from_slice(&digest);
        let em = bignum::from_be(&em, key.n.limbs().len()).ok_or_else(internal)?;
        // r: 8 bytes more than the modulus (the reduction's bias is below 2^-64); then the two
        // exponent blinds.
        let mut bytes = vec![0u8; key.k + 8 + 16];
        getrandom::fill(&mut bytes)
            .map_err(|_| "RSA signing failed (no randomness from the host?)".to_string())?;
        let (r_bytes, k) = bytes.split_at(key.k + 8);
        let (kp, kq) = k.split_at(8);
        let r = bignum::rem(&limbs_for(r_bytes).ok_or_else(internal)?, key.n.limbs());
        let dp = blind_exponent(&key.dp, &key.p1, kp).ok_or_else(internal)?;
        let dq = blind_exponent(&key.dq, &key.q1, kq).ok_or_else(internal)?;
        let job = Invert::new(&r, &key.n);
        Ok(SignJob {
            key,
            dp,
            dq,
            stage: Stage::Invert { em, r, job },
        })
    }

    /// Runs the next slice; the signature (or why there is none) once the last one has run.
    pub fn step(&mut self) -> Option<Result<Vec<u8>, String>> {
        let key = Rc::clone(&self.key);
        let (next, answer) = match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Invert { em, r, mut job } => {
                let n = key.n.limbs().len().max(1);
                match job.run(&key.n, WORK_PER_SLICE / (12 * n)) {
                    None => (Stage::Invert { em, r, job }, None),
                    // r shares a factor with n (one of the primes): probability ~2^-1000.
                    Some(None) => (Stage::Done, Some(Err(internal()))),
                    Some(Some(unblinder)) => {
                        let blinded = blind(&key, em, &r, unblinder);
                        let job = Pow::new(
                            &bignum::rem(&blinded.c, key.p.limbs()),
                            self.dp.len(),
                            &key.p,
                        );
                        (Stage::ModP { blinded, job }, None)
                    }
                }
            }
            Stage::ModP { blinded, mut job } => {
                match job.run(&self.dp, &key.p, SigningKeyParts::windows(&key.p, &self.dp)) {
                    None => (Stage::ModP { blinded, job }, None),
                    Some(m1) => {
                        let job = Pow::new(
                            &bignum::rem(&blinded.c, key.q.limbs()),
                            self.dq.len(),
                            &key.q,
                        );
                        (Stage::ModQ { blinded, m1, job }, None)
                    }
                }
            }
            Stage::ModQ {
                blinded,
                m1,
                mut job,
            } => match job.run(&self.dq, &key.q, SigningKeyParts::windows(&key.q, &self.dq)) {
                None => (Stage::ModQ { blinded, m1, job }, None),
                Some(m2) => (Stage::Done, Some(combine(&key, &blinded, &m1, &m2))),
            },
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

/// `em · r^e mod n` (base blinding, as `rsa` blinds).
fn blind(key: &SigningKeyParts, em: Limbs, r: &[u32], unblinder: Limbs) -> Blinded {
    let r_e = bignum::pow(r, &key.e, &key.n);
    let c = key.n.mul_mod(&em, &r_e);
    Blinded { em, c, unblinder }
}

/// Garner's recombination `m = m2 + q · (qInv · (m1 − m2) mod p)`, the unblinding, and the check
/// `s^e = em` that keeps a faulty computation from leaking the key.
fn combine(
    key: &SigningKeyParts,
    blinded: &Blinded,
    m1: &[u32],
    m2: &[u32],
) -> Result<Vec<u8>, String> {
    let n_len = key.n.limbs().len();
    let diff = key.p.sub_mod(m1, &bignum::rem(m2, key.p.limbs()));
    let h = key.p.mul_mod(&key.qinv, &diff);
    let mut m = bignum::mul(key.q.limbs(), &h);
    // m2 + q·h < q·p = n: the limbs above n's are zero.
    let carry = bignum::add(&mut m, m2);
    let top_clear = carry == 0 && m.iter().skip(n_len).all(|&l| l == 0);
    m.truncate(n_len);
    let signature = key.n.mul_mod(&m, &blinded.unblinder);
    let check = bignum::pow(&signature, &key.e, &key.n);
    if !top_clear || !bignum::same(&check, &blinded.em) {
        return Err(internal());
    }
    Ok(bignum::to_be(&signature, key.k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::SigningKey;
    use rsa::signature::{SignatureEncoding, Signer};
    use rsa::traits::{PrivateKeyParts, PublicKeyParts};
    use rsa::{BoxedUint, PrivateKey};

    fn be(x: &BoxedUint) -> Vec<u8> {
        let bytes = x.to_be_bytes();
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        bytes[start..].to_vec()
    }

    /// `rsa`'s key as our components (its own CRT values, not read from a PEM).
    fn components(key: &PrivateKey) -> KeyComponents {
        let primes = key.primes();
        KeyComponents {
            n: be(key.n()),
            e: be(key.e()),
            p: be(primes[0].as_ref()),
            q: be(primes[1].as_ref()),
            dp: be(key.dp().unwrap()),
            dq: be(key.dq().unwrap()),
            qinv: be(&key.qinv().unwrap().retrieve()),
        }
    }

    fn sliced(parts: &Rc<SigningKeyParts>, message: &[u8]) -> (Vec<u8>, usize) {
        let mut job = SignJob::new(Rc::clone(parts), message).unwrap();
        let mut steps = 0;
        loop {
            steps += 1;
            if let Some(answer) = job.step() {
                return (answer.unwrap(), steps);
            }
        }
    }

    /// Keys from the GCS mock's generator (`rsa` 0.9, an independent PKCS#8 PEM writer), read by
    /// `key.rs`; the reference signer is `rsa` 0.10's on the same primes.
    #[test]
    fn every_signature_is_rsas_own_2048_from_pem() {
        for (i, message) in [&b""[..], b"a", b"header.claims", &[0u8; 1000], &[0xff; 64]]
            .into_iter()
            .enumerate()
        {
            let generated =
                harness_mocks::gcs::ServiceAccountKey::generate("a@p.iam.gserviceaccount.com");
            let json = generated.to_json("https://oauth2.googleapis.com/token");
            let pem = json["private_key"].as_str().unwrap();
            let (c, _) = super::super::key::private_key_from_pem(pem).unwrap();
            let parts = Rc::new(SigningKeyParts::new(&c).unwrap());
            let reference = PrivateKey::from_p_q(
                BoxedUint::from_be_slice_vartime(&c.p),
                BoxedUint::from_be_slice_vartime(&c.q),
                BoxedUint::from_be_slice_vartime(&c.e),
            )
            .unwrap();
            let (sig, steps) = sliced(&parts, message);
            assert_eq!(
                steps, 13,
                "inversion (5 slices), mod p (4), mod q (4, the last recombines)"
            );
            let expect = SigningKey::<Sha256>::new(reference).sign(message).to_vec();
            assert_eq!(sig, expect, "key {i}");
        }
    }

    /// Keys generated by `rsa` 0.10 itself, 2048 and 4096 bits, several messages each.
    #[test]
    fn every_signature_is_rsas_own_2048_and_4096() {
        for bits in [2048, 2048, 2048, 4096, 4096] {
            let key = PrivateKey::new(&mut getrandom::SysRng, bits).unwrap();
            let parts = Rc::new(SigningKeyParts::new(&components(&key)).unwrap());
            let reference = SigningKey::<Sha256>::new(key);
            for message in [
                &b"x"[..],
                b"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJhIn0",
                &[7u8; 300],
            ] {
                let (sig, steps) = sliced(&parts, message);
                assert_eq!(sig.len(), bits / 8);
                assert_eq!(sig, reference.sign(message).to_vec(), "{bits} bits");
                assert!(steps >= 4);
            }
        }
    }

    #[test]
    fn inconsistent_parts_are_refused() {
        let key = PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
        let good = components(&key);
        assert!(SigningKeyParts::new(&good).is_some());
        let fields: [fn(&mut KeyComponents) -> &mut Vec<u8>; 7] = [
            |c| &mut c.n,
            |c| &mut c.e,
            |c| &mut c.p,
            |c| &mut c.q,
            |c| &mut c.dp,
            |c| &mut c.dq,
            |c| &mut c.qinv,
        ];
        for (i, field) in fields.iter().enumerate() {
            let mut c = components(&key);
            *field(&mut c).last_mut().unwrap() ^= 2;
            assert!(SigningKeyParts::new(&c).is_none(), "part {i}");
        }
        // An oversized part (64 KB: ~10^11 limb operations if it reached the arithmetic, so
        // this test would not finish) is refused by its size alone.
        for (i, field) in fields.iter().enumerate().skip(1) {
            let mut c = components(&key);
            let part = field(&mut c);
            let mut big = vec![0x7f; 65_536];
            big.extend_from_slice(part);
            *part = big;
            assert!(SigningKeyParts::new(&c).is_none(), "oversized part {i}");
        }
    }

    #[test]
    fn a_finished_job_answers_an_error_not_a_panic() {
        let key = PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
        let parts = Rc::new(SigningKeyParts::new(&components(&key)).unwrap());
        let mut job = SignJob::new(parts, b"m").unwrap();
        while job.step().is_none() {}
        assert!(matches!(job.step(), Some(Err(_))));
    }
}
