//! SHA-512 (FIPS 180-4) for Ed25519 alone, written small: one rolled round loop.
//!
//! Ed25519 hashes only short texts here (a seed, the signed message of `sign.rs`: a few hundred
//! bytes per export or import), so its speed does not matter; sha2's unrolled SHA-512 was 11 KB
//! of the packaged module (BENCHMARKS.md, "Issue 25, lean7"), and sha2 builds its SHA-256 (the
//! export's hot path) and SHA-512 with one backend switch. `sign.rs` passes this type to
//! ed25519-dalek's `hazmat` functions; the tests compare it with sha2 on every length up to
//! three blocks and on FIPS 180-4's examples.

use curve25519_dalek::digest::consts::U64;
use curve25519_dalek::digest::{
    Digest as _, FixedOutput, HashMarker, Output, OutputSizeUser, Update,
};

#[rustfmt::skip]
const K: [u64; 80] = [
    0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc,
    0x3956c25bf348b538, 0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118,
    0xd807aa98a3030242, 0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
    0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235, 0xc19bf174cf692694,
    0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
    0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
    0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4,
    0xc6e00bf33da88fc2, 0xd5a79147930aa725, 0x06ca6351e003826f, 0x142929670a0e6e70,
    0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
    0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
    0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30,
    0xd192e819d6ef5218, 0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8,
    0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8,
    0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3,
    0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
    0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b,
    0xca273eceea26619c, 0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178,
    0x06f067aa72176fba, 0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
    0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc, 0x431d67c49c100d4c,
    0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817,
];

#[rustfmt::skip]
const IV: [u64; 8] = [
    0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
    0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179,
];

/// A SHA-512 computation (ed25519-dalek's `Digest` through the `digest` traits).
#[derive(Clone)]
pub(crate) struct Sha512 {
    state: [u64; 8],
    block: [u8; 128],
    filled: usize,
    /// Message length in bytes.
    len: u128,
}

impl Default for Sha512 {
    fn default() -> Self {
        Sha512 {
            state: IV,
            block: [0; 128],
            filled: 0,
            len: 0,
        }
    }
}

impl Sha512 {
    /// Appends to the message without counting it (padding).
    fn absorb(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = (128 - self.filled).min(data.len());
            let (head, rest) = data.split_at(take);
            if let Some(dst) = self.block.get_mut(self.filled..self.filled + take) {
                dst.copy_from_slice(head);
            }
            self.filled += take;
            data = rest;
            if self.filled == 128 {
                compress(&mut self.state, &self.block);
                self.filled = 0;
            }
        }
    }

    /// The digest of a whole message.
    pub(crate) fn digest(data: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        let mut h = Sha512::default();
        Update::update(&mut h, data);
        out.copy_from_slice(&h.finalize());
        out
    }
}

fn compress(state: &mut [u64; 8], block: &[u8; 128]) {
    let mut w = [0u64; 80];
    for (wi, bytes) in w.iter_mut().zip(block.chunks_exact(8)) {
        *wi = u64::from_be_bytes(bytes.try_into().unwrap_or([0; 8]));
    }
    for t in 16..80 {
        let at = |i: usize| w.get(i).copied().unwrap_or(0);
        let (w2, w15) = (at(t - 2), at(t - 15));
        let s1 = w2.rotate_right(19) ^ w2.rotate_right(61) ^ (w2 >> 6);
        let s0 = w15.rotate_right(1) ^ w15.rotate_right(8) ^ (w15 >> 7);
        let next = s1
            .wrapping_add(at(t - 7))
            .wrapping_add(s0)
            .wrapping_add(at(t - 16));
        if let Some(wt) = w.get_mut(t) {
            *wt = next;
        }
    }
    let mut v = *state;
    for (k, wt) in K.iter().zip(w.iter()) {
        let [a, b, c, d, e, f, g, h] = v;
        let t1 = h
            .wrapping_add(e.rotate_right(14) ^ e.rotate_right(18) ^ e.rotate_right(41))
            .wrapping_add((e & f) ^ (!e & g))
            .wrapping_add(*k)
            .wrapping_add(*wt);
        let t2 = (a.rotate_right(28) ^ a.rotate_right(34) ^ a.rotate_right(39))
            .wrapping_add((a & b) ^ (a & c) ^ (b & c));
        v = [t1.wrapping_add(t2), a, b, c, d.wrapping_add(t1), e, f, g];
    }
    for (s, x) in state.iter_mut().zip(v) {
        *s = s.wrapping_add(x);
    }
}

impl HashMarker for Sha512 {}

impl OutputSizeUser for Sha512 {
    type OutputSize = U64;
}

impl Update for Sha512 {
    fn update(&mut self, data: &[u8]) {
        self.len = self.len.wrapping_add(data.len() as u128);
        self.absorb(data);
    }
}

impl FixedOutput for Sha512 {
    fn finalize_into(mut self, out: &mut Output<Self>) {
        let bits = self.len.wrapping_mul(8);
        self.absorb(&[0x80]);
        while self.filled != 112 {
            self.absorb(&[0]);
        }
        self.absorb(&bits.to_be_bytes());
        for (chunk, s) in out.chunks_exact_mut(8).zip(self.state) {
            chunk.copy_from_slice(&s.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_sha2_on_every_length_up_to_three_blocks() {
        let data: Vec<u8> = (0..400u32).map(|i| (i * 131 + 7) as u8).collect();
        for n in 0..=data.len() {
            let ours = Sha512::digest(&data[..n]);
            let theirs = <sha2::Sha512 as sha2::Digest>::digest(&data[..n]);
            assert_eq!(ours.as_slice(), theirs.as_slice(), "length {n}");
        }
        // Fed in pieces of every size.
        for piece in 1..=130 {
            let mut h = Sha512::default();
            for c in data.chunks(piece) {
                Update::update(&mut h, c);
            }
            let theirs = <sha2::Sha512 as sha2::Digest>::digest(&data);
            assert_eq!(h.finalize().as_slice(), theirs.as_slice(), "piece {piece}");
        }
    }

    /// FIPS 180-4 examples ("abc", the two-block message).
    #[test]
    fn known_answers() {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(&Sha512::digest(b"abc")),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        assert_eq!(
            hex(&Sha512::digest(
                b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
            )),
            "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018\
             501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909"
        );
    }
}
