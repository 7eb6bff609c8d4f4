//! Capped exponential backoff with jitter, from a seeded non-cryptographic PRNG (the host's
//! `random_get` is not cryptographic anyway, and a seed makes tests deterministic).

/// SplitMix64: tiny, fast and good enough to spread retries of several workers and nodes.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max` (the modulo bias is irrelevant for retry spreading).
    pub fn below_or_eq(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        self.next_u64() % (max + 1)
    }
}

/// The delay before credential attempt `failures + 1` (GCS tokens, AWS credentials): `base_ms`
/// doubling per failure up to `max_ms`, without jitter (one fetch per node, nothing to spread).
pub fn doubling_delay_ms(failures: u32, base_ms: u64, max_ms: u64) -> u64 {
    base_ms.saturating_mul(1u64 << failures.min(16)).min(max_ms)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base_ms: u64,
    pub max_ms: u64,
}

impl Backoff {
    /// The un-jittered delay before retry number `attempt` (1 = first retry): base·2^(attempt−1), capped.
    pub fn ceiling(&self, attempt: u32) -> u64 {
        let shift = attempt.saturating_sub(1).min(40);
        self.base_ms.saturating_mul(1u64 << shift).min(self.max_ms)
    }

    /// "Equal jitter": half the ceiling plus a random part of the other half, so retries never
    /// come sooner than half the ceiling and never later than the cap.
    pub fn delay(&self, attempt: u32, rng: &mut Rng) -> u64 {
        let c = self.ceiling(attempt);
        c / 2 + rng.below_or_eq(c - c / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_and_caps() {
        let b = Backoff {
            base_ms: 1000,
            max_ms: 60_000,
        };
        let got: Vec<u64> = (1..=9).map(|a| b.ceiling(a)).collect();
        assert_eq!(
            got,
            [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]
        );
        assert_eq!(b.ceiling(u32::MAX), 60_000);
    }

    #[test]
    fn jittered_delays_stay_within_bounds_and_vary() {
        let b = Backoff {
            base_ms: 1000,
            max_ms: 60_000,
        };
        let mut rng = Rng::new(42);
        for attempt in 1..=12 {
            let c = b.ceiling(attempt);
            let mut seen = std::collections::HashSet::new();
            for _ in 0..200 {
                let d = b.delay(attempt, &mut rng);
                assert!(
                    d >= c / 2 && d <= c,
                    "attempt {attempt}: {d} not in [{}, {c}]",
                    c / 2
                );
                seen.insert(d);
            }
            assert!(seen.len() > 10, "jitter must spread retries");
        }
    }

    #[test]
    fn same_seed_same_sequence_different_seed_differs() {
        let (mut a, mut b, mut c) = (Rng::new(7), Rng::new(7), Rng::new(8));
        let sa: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let sb: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        let sc: Vec<u64> = (0..5).map(|_| c.next_u64()).collect();
        assert_eq!(sa, sb);
        assert_ne!(sa, sc);
    }
}
