//! Big-integer arithmetic for the one RSA private-key operation of RS256 (the filter's
//! `plugin/src/rs256/sign.rs`, docs/gcs.md):
//! Montgomery multiplication, a fixed-window exponentiation that stops and resumes, a reduction,
//! an inversion and a plain product, on little-endian 32-bit limbs.
//!
//! Hand-written for size: `rsa` + `crypto-bigint` were ~90 KB of the module (BENCHMARKS.md,
//! "Issue 25") for one signature an hour; this is a few KB. Every signature is compared with
//! `rsa`'s own signer in the filter's tests (`rs256/sign.rs`), on many 2048- and 4096-bit keys.
//! A crate of its own so that it is optimised in the test profile (Cargo.toml).
//!
//! Constant time with respect to the key (the primes, the CRT exponents, qInv, the blinding
//! factor): every loop runs a count fixed by public lengths (limb counts), never by a value; no
//! branch and no memory index depends on a secret. A conditional subtraction, addition or swap is
//! computed and then kept or dropped with an all-ones/all-zeros mask; the exponentiation reads all
//! 16 entries of its window table and masks out all but one. Masks pass through `black_box` so
//! the optimiser does not turn them back into branches.

use std::hint::black_box;
use std::iter::repeat;

/// A number as little-endian 32-bit limbs.
pub type Limbs = Vec<u32>;

/// Exponent bits per window of the exponentiation (16 table entries).
const WINDOW: usize = 4;
const WINDOWS_PER_LIMB: usize = 32 / WINDOW;

/// All ones if the low bit of `bit` is 1, else zero.
fn mask(bit: u32) -> u32 {
    black_box(0u32.wrapping_sub(bit & 1))
}

/// 1 if `a == b`, else 0, without a branch.
fn eq_bit(a: u32, b: u32) -> u32 {
    let x = a ^ b;
    ((x | x.wrapping_neg()) >> 31) ^ 1
}

/// `b` padded with zero limbs (so loops over `a` see `b` at `a`'s length).
fn padded(b: &[u32]) -> impl Iterator<Item = u32> + '_ {
    b.iter().copied().chain(repeat(0))
}

/// `x` at exactly `n` limbs (borrowed when it already is).
fn fit(x: &[u32], n: usize) -> std::borrow::Cow<'_, [u32]> {
    if x.len() == n {
        std::borrow::Cow::Borrowed(x)
    } else {
        std::borrow::Cow::Owned(padded(x).take(n).collect())
    }
}

/// `a += b & m`; the carry out.
fn add_masked(a: &mut [u32], b: &[u32], m: u32) -> u32 {
    let mut carry = 0u64;
    for (x, y) in a.iter_mut().zip(padded(b)) {
        let s = u64::from(*x) + u64::from(y & m) + carry;
        *x = s as u32;
        carry = s >> 32;
    }
    carry as u32
}

/// `a += b`; the carry out.
pub fn add(a: &mut [u32], b: &[u32]) -> u32 {
    add_masked(a, b, u32::MAX)
}

/// `a -= b & m`; the borrow out.
fn sub_masked(a: &mut [u32], b: &[u32], m: u32) -> u32 {
    let mut borrow = 0u64;
    for (x, y) in a.iter_mut().zip(padded(b)) {
        let d = u64::from(*x)
            .wrapping_sub(u64::from(y & m))
            .wrapping_sub(borrow);
        *x = d as u32;
        borrow = d >> 63;
    }
    borrow as u32
}

/// `a = b` where `m` is all ones, `a` unchanged where it is zero.
fn select(a: &mut [u32], b: &[u32], m: u32) {
    for (x, y) in a.iter_mut().zip(padded(b)) {
        *x = (*x & !m) | (y & m);
    }
}

/// Swaps `a` and `b` if `m` is all ones.
fn swap_masked(a: &mut [u32], b: &mut [u32], m: u32) {
    for (x, y) in a.iter_mut().zip(b.iter_mut()) {
        let t = (*x ^ *y) & m;
        *x ^= t;
        *y ^= t;
    }
}

/// `a = (a << 1) | low`; the bit shifted out.
fn shl1(a: &mut [u32], low: u32) -> u32 {
    let mut carry = low & 1;
    for x in a.iter_mut() {
        let out = *x >> 31;
        *x = (*x << 1) | carry;
        carry = out;
    }
    carry
}

/// `a >>= 1`.
fn shr1(a: &mut [u32]) {
    let mut high = 0;
    for x in a.iter_mut().rev() {
        let out = *x & 1;
        *x = (*x >> 1) | (high << 31);
        high = out;
    }
}

/// 1 if `a < b` (the borrow of `a − b`), without changing either.
fn lt_bit(a: &[u32], b: &[u32]) -> u32 {
    let mut borrow = 0u64;
    for (&x, y) in a.iter().zip(padded(b)) {
        borrow = u64::from(x).wrapping_sub(u64::from(y)).wrapping_sub(borrow) >> 63;
    }
    borrow as u32
}

/// `2a + low` reduced modulo `m`, for `a < m` (the result is below `2m`: one subtraction, which
/// wraps correctly when the doubling carried out of the limbs).
fn double_mod(a: &mut [u32], low: u32, m: &[u32]) {
    let carry = shl1(a, low);
    let subtract = carry | (lt_bit(a, m) ^ 1);
    sub_masked(a, m, mask(subtract));
}

/// A big-endian byte string as `len` limbs; `None` if the number needs more.
pub fn from_be(bytes: &[u8], len: usize) -> Option<Limbs> {
    let mut out = vec![0u32; len];
    let mut slots = out.iter_mut();
    for chunk in bytes.rchunks(4) {
        let limb = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        match slots.next() {
            Some(slot) => *slot = limb,
            None if limb != 0 => return None,
            None => {}
        }
    }
    Some(out)
}

/// The low `len` bytes of `x`, big-endian.
pub fn to_be(x: &[u32], len: usize) -> Vec<u8> {
    let mut out: Vec<u8> = x.iter().flat_map(|l| l.to_le_bytes()).collect();
    out.resize(len, 0);
    out.reverse();
    out
}

/// `x mod m` for any `m > 0`, one bit of `x` at a time (the result has `m`'s length).
pub fn rem(x: &[u32], m: &[u32]) -> Limbs {
    let mut r = vec![0u32; m.len()];
    for limb in x.iter().rev() {
        for bit in (0..32).rev() {
            double_mod(&mut r, limb >> bit, m);
        }
    }
    r
}

/// The plain product `a · b` (`a.len() + b.len()` limbs).
pub fn mul(a: &[u32], b: &[u32]) -> Limbs {
    let mut out = vec![0u32; a.len() + b.len()];
    for (i, &ai) in a.iter().enumerate() {
        let mut carry = 0u64;
        for (o, &bj) in out.iter_mut().skip(i).zip(b) {
            let s = u64::from(*o) + u64::from(ai) * u64::from(bj) + carry;
            *o = s as u32;
            carry = s >> 32;
        }
        if let Some(o) = out.get_mut(i + b.len()) {
            *o = carry as u32;
        }
    }
    out
}

/// Whether `a` and `b` are the same number (lengths may differ). Constant time (every limb is
/// compared, no early exit): besides the key checks and public values, the signing path compares
/// numbers derived from secrets with it (the blinding inverse's GCD with 1 in `Invert::run`, the
/// fault check `s^e = em` in `rs256/sign.rs`).
pub fn same(a: &[u32], b: &[u32]) -> bool {
    let len = a.len().max(b.len());
    let all = padded(a)
        .zip(padded(b))
        .take(len)
        .fold(1u32, |all, (x, y)| all & eq_bit(x, y));
    black_box(all) == 1
}

/// An odd modulus above 1 with its Montgomery constants (`R = 2^(32·limbs)`).
pub struct Modulus {
    m: Limbs,
    /// `−m⁻¹ mod 2³²`.
    m0inv: u32,
    /// `R mod m` (one, in Montgomery form).
    one: Limbs,
    /// `R² mod m`.
    r2: Limbs,
}

impl Modulus {
    /// `None` if `m` is even or below 2.
    pub fn new(m: Limbs) -> Option<Modulus> {
        let m0 = *m.first()?;
        if m0 & 1 == 0 || same(&m, &[1]) {
            return None;
        }
        // Newton's iteration doubles the correct low bits each step: 1, 2, 4, 8, 16, 32.
        let mut inv = 1u32;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(m0.wrapping_mul(inv)));
        }
        let mut x = vec![0u32; m.len()];
        if let Some(l) = x.first_mut() {
            *l = 1;
        }
        for _ in 0..32 * m.len() {
            double_mod(&mut x, 0, &m);
        }
        let one = x.clone();
        for _ in 0..32 * m.len() {
            double_mod(&mut x, 0, &m);
        }
        Some(Modulus {
            m,
            m0inv: inv.wrapping_neg(),
            one,
            r2: x,
        })
    }

    /// The modulus itself.
    pub fn limbs(&self) -> &[u32] {
        &self.m
    }

    /// Montgomery product `a · b · R⁻¹ mod m` for `a, b < m` (FIOS: a limb of `a` times `b` and
    /// a reduction step in one pass over the limbs).
    fn mont_mul(&self, a: &[u32], b: &[u32]) -> Limbs {
        let n = self.m.len();
        let (a, b) = (fit(a, n), fit(b, n));
        let (Some((&b0, b_rest)), Some((&m0, m_rest))) = (b.split_first(), self.m.split_first())
        else {
            return Vec::new();
        };
        let mut t = vec![0u32; n];
        let mut next = vec![0u32; n];
        // Limb n of t (t < 2m after each pass: 0 or 1).
        let mut hi = 0u64;
        for &ai in a.iter() {
            let ai = u64::from(ai);
            let (t0, t_rest) = t.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
            let s = u64::from(t0) + ai * u64::from(b0);
            let u = u64::from((s as u32).wrapping_mul(self.m0inv));
            // The low limb of s + u·m is zero: dropped (the division by 2³²).
            let r = u64::from(s as u32) + u * u64::from(m0);
            let (mut c1, mut c2) = (s >> 32, r >> 32);
            for ((o, &tj), (&bj, &mj)) in next.iter_mut().zip(t_rest).zip(b_rest.iter().zip(m_rest))
            {
                let s = u64::from(tj) + ai * u64::from(bj) + c1;
                c1 = s >> 32;
                let r = u64::from(s as u32) + u * u64::from(mj) + c2;
                c2 = r >> 32;
                *o = r as u32;
            }
            let s = hi + c1 + c2;
            if let Some(o) = next.last_mut() {
                *o = s as u32;
            }
            hi = s >> 32;
            std::mem::swap(&mut t, &mut next);
        }
        // t < 2m: subtract m unless that borrows (and the bit above t is clear).
        next.copy_from_slice(&t);
        let borrow = sub_masked(&mut next, &self.m, u32::MAX);
        select(&mut t, &next, mask(hi as u32 | (borrow ^ 1)));
        t
    }

    /// `a · b mod m` for `a, b < m`, in ordinary form.
    pub fn mul_mod(&self, a: &[u32], b: &[u32]) -> Limbs {
        self.mont_mul(&self.mont_mul(a, b), &self.r2)
    }

    /// `(a − b) mod m` for `a, b < m`.
    pub fn sub_mod(&self, a: &[u32], b: &[u32]) -> Limbs {
        let mut d = a.to_vec();
        d.resize(self.m.len(), 0);
        let borrow = sub_masked(&mut d, b, u32::MAX);
        add_masked(&mut d, &self.m, mask(borrow));
        d
    }
}

/// `x⁻¹ mod m` in slices: a binary extended GCD with a fixed count of steps (each shortens `a`
/// and `b` together by a bit at least, so `2 · bits(m)` steps end it). Invariants `a ≡ u·x`,
/// `b ≡ v·x (mod m)`; `b` ends as the GCD, `v` as the inverse.
pub struct Invert {
    a: Limbs,
    b: Limbs,
    u: Limbs,
    v: Limbs,
    /// `(m + 1) / 2`: halving an odd `u` modulo `m` is `(u >> 1) + (m + 1) / 2`.
    half: Limbs,
    steps_left: usize,
}

impl Invert {
    /// For `x < m`.
    pub fn new(x: &[u32], m: &Modulus) -> Invert {
        let n = m.m.len();
        let mut a = x.to_vec();
        a.resize(n, 0);
        let mut u = vec![0u32; n];
        if let Some(l) = u.first_mut() {
            *l = 1;
        }
        let mut half = m.m.clone();
        shr1(&mut half);
        add_masked(&mut half, &[1], u32::MAX);
        Invert {
            a,
            b: m.m.clone(),
            u,
            v: vec![0u32; n],
            half,
            steps_left: 64 * n,
        }
    }

    /// Runs up to `steps` more steps; once all have run, `Some(inverse)`, or `Some(None)` if
    /// `x` and `m` share a factor.
    pub fn run(&mut self, m: &Modulus, steps: usize) -> Option<Option<Limbs>> {
        let Invert {
            a, b, u, v, half, ..
        } = self;
        for _ in 0..steps.min(self.steps_left) {
            let odd = mask(a.first().copied().unwrap_or(0));
            let swap = odd & mask(lt_bit(a, b));
            swap_masked(a, b, swap);
            swap_masked(u, v, swap);
            sub_masked(a, b, odd);
            let borrow = sub_masked(u, v, odd);
            add_masked(u, &m.m, mask(borrow));
            shr1(a);
            let u_odd = mask(u.first().copied().unwrap_or(0));
            shr1(u);
            add_masked(u, half, u_odd);
        }
        self.steps_left = self.steps_left.saturating_sub(steps);
        (self.steps_left == 0).then(|| same(&self.b, &[1]).then(|| self.v.clone()))
    }
}

/// `base^exp mod m` in slices: `run` a number of windows at a time until it answers.
pub struct Pow {
    /// `base^i` in Montgomery form, `i` in 0..16.
    table: Vec<Limbs>,
    acc: Limbs,
    /// Windows of the exponent still to apply, the most significant first.
    windows_left: usize,
}

impl Pow {
    /// For `base < m` and an exponent of `exp_limbs` limbs (the count is public; a secret
    /// exponent is padded to its modulus's length, so its own length does not show).
    pub fn new(base: &[u32], exp_limbs: usize, m: &Modulus) -> Pow {
        let b = m.mont_mul(base, &m.r2);
        let mut table = vec![m.one.clone()];
        let mut last = m.one.clone();
        for _ in 1..1 << WINDOW {
            last = m.mont_mul(&last, &b);
            table.push(last.clone());
        }
        Pow {
            table,
            acc: m.one.clone(),
            windows_left: windows(exp_limbs),
        }
    }

    /// Applies up to `windows` more windows of `exp`; the result once all are applied.
    pub fn run(&mut self, exp: &[u32], m: &Modulus, windows: usize) -> Option<Limbs> {
        for _ in 0..windows {
            let Some(w) = self.windows_left.checked_sub(1) else {
                break;
            };
            self.windows_left = w;
            for _ in 0..WINDOW {
                self.acc = m.mont_mul(&self.acc, &self.acc);
            }
            // The limb and shift come from the window's position (public); the digit is secret.
            let limb = exp.get(w / WINDOWS_PER_LIMB).copied().unwrap_or(0);
            let digit = (limb >> (WINDOW * (w % WINDOWS_PER_LIMB))) & 0xf;
            let entry = self.entry(digit);
            self.acc = m.mont_mul(&self.acc, &entry);
        }
        (self.windows_left == 0).then(|| m.mont_mul(&self.acc, &[1]))
    }

    /// `table[digit]`, reading every entry.
    fn entry(&self, digit: u32) -> Limbs {
        let mut out = vec![0u32; self.acc.len()];
        for (i, e) in (0u32..).zip(&self.table) {
            let m = mask(eq_bit(i, digit));
            for (o, &x) in out.iter_mut().zip(e) {
                *o |= x & m;
            }
        }
        out
    }
}

/// The windows of an exponent of `limbs` limbs.
pub fn windows(limbs: usize) -> usize {
    WINDOWS_PER_LIMB * limbs
}

/// `base^exp mod m` at once (for the public exponent).
pub fn pow(base: &[u32], exp: &[u32], m: &Modulus) -> Limbs {
    let mut p = Pow::new(base, exp.len(), m);
    p.run(exp, m, usize::MAX).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(x: u128) -> Limbs {
        from_be(&x.to_be_bytes(), 4).unwrap()
    }

    fn val(x: &[u32]) -> u128 {
        u128::from_be_bytes(to_be(x, 16).try_into().unwrap())
    }

    /// Small cases against u128 arithmetic (the RSA-sized ones are checked through `sign.rs`).
    #[test]
    fn small_numbers_agree_with_u128() {
        // 2^127 − 1 is prime: every nonzero residue has an inverse.
        let m = (1u128 << 127) - 1;
        let modulus = Modulus::new(num(m)).unwrap();
        let xs = [0u128, 1, 2, 3, 0xdead_beef, m - 1, m / 3, 1 << 100];
        for &a in &xs {
            assert_eq!(val(&rem(&num(a), &num(m))), a % m);
            for &b in &xs {
                let (a, b) = (a % m, b % m);
                let prod = mul(&num(a), &num(b));
                assert_eq!(val(&rem(&prod, &num(m))), mulmod(a, b, m), "{a} {b}");
                assert_eq!(val(&modulus.mul_mod(&num(a), &num(b))), mulmod(a, b, m));
                assert_eq!(val(&modulus.sub_mod(&num(a), &num(b))), (a + (m - b)) % m);
            }
            let a = a % m;
            if a != 0 {
                let mut job = Invert::new(&num(a), &modulus);
                let mut inv = None;
                while inv.is_none() {
                    inv = job.run(&modulus, 7);
                }
                assert_eq!(mulmod(val(&inv.unwrap().unwrap()), a, m), 1);
            }
            assert_eq!(
                val(&pow(&num(a), &num(65537), &modulus)),
                powmod(a, 65537, m)
            );
            assert_eq!(
                val(&pow(&num(a), &num(m - 2), &modulus)),
                powmod(a, m - 2, m)
            );
        }
        assert_eq!(
            Invert::new(&num(0), &modulus).run(&modulus, 1000),
            Some(None)
        );
        // A composite modulus: 3 shares a factor with it.
        let composite = Modulus::new(num(3 * 5 * 7 * ((1u128 << 61) - 1))).unwrap();
        assert_eq!(
            Invert::new(&num(3), &composite).run(&composite, 1000),
            Some(None)
        );
        assert!(Modulus::new(num(10)).is_none());
        assert!(Modulus::new(num(1)).is_none());
    }

    #[test]
    fn same_compares_values_across_lengths() {
        assert!(same(&[5], &[5, 0, 0]));
        assert!(same(&[], &[0, 0]));
        assert!(!same(&[5, 0, 1], &[5]));
        assert!(!same(&[1, 2], &[1, 3]));
        assert!(!same(&[2, 2], &[1, 2]));
        assert!(same(&[u32::MAX, 7], &[u32::MAX, 7]));
    }

    #[test]
    fn bytes_round_trip_and_overflow_is_refused() {
        assert_eq!(from_be(&[1, 2, 3, 4, 5], 2), Some(vec![0x0203_0405, 1]));
        assert_eq!(from_be(&[1, 2, 3, 4, 5], 1), None);
        assert_eq!(from_be(&[0, 0, 0, 0, 5], 1), Some(vec![5]));
        assert_eq!(to_be(&[0x0203_0405, 1], 6), vec![0, 1, 2, 3, 4, 5]);
    }

    fn mulmod(a: u128, b: u128, m: u128) -> u128 {
        // Double and add: exact for operands below m < 2^127.
        let (mut r, mut a, mut b) = (0u128, a % m, b);
        while b > 0 {
            if b & 1 == 1 {
                r = (r + a) % m;
            }
            a = (a + a) % m;
            b >>= 1;
        }
        r
    }

    fn powmod(mut b: u128, mut e: u128, m: u128) -> u128 {
        let mut r = 1 % m;
        b %= m;
        while e > 0 {
            if e & 1 == 1 {
                r = mulmod(r, b, m);
            }
            b = mulmod(b, b, m);
            e >>= 1;
        }
        r
    }
}
