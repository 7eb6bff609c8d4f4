//! Decimal numbers in text (`30`, `1.5`, `1700000000.123`, `2e3`) read exactly, without the float
//! parser: core's `str::parse::<f64>` and its tables were ~15 KB of the module for two call sites
//! (BENCHMARKS.md, "Module size"). The grammar is that of a finite `f64`: an optional sign,
//! digits with an optional fraction (`1.`, `.5`), an optional exponent.

use std::cmp::Ordering;

/// Significant digits kept (10^38 < u128::MAX); later ones are dropped (a sub-1e-38 relative
/// error, far below the milliseconds these numbers are rounded to).
const MAX_DIGITS: u32 = 38;
/// Exponents are clamped here: anything further is 0 or out of every range used.
const MAX_EXPONENT: i32 = 10_000;

/// `mantissa × 10^exponent`, negated when `negative`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    mantissa: u128,
    exponent: i32,
}

fn pow10(n: u32) -> Option<u128> {
    10u128.checked_pow(n)
}

/// Reads `text` whole; `None` unless it is a decimal number.
pub fn parse(text: &str) -> Option<Decimal> {
    let bytes = text.as_bytes();
    let (negative, mut rest) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, bytes),
    };
    let mut mantissa = 0u128;
    let mut exponent = 0i32;
    let mut kept = 0u32;
    let mut digits = 0usize;
    let mut in_fraction = false;
    while let Some((&c, tail)) = rest.split_first() {
        match c {
            b'0'..=b'9' => {
                digits += 1;
                if mantissa == 0 && c == b'0' {
                    // Leading zeros are not significant.
                } else if kept < MAX_DIGITS {
                    mantissa = mantissa * 10 + u128::from(c - b'0');
                    kept += 1;
                } else {
                    exponent = exponent.saturating_add(1);
                }
                if in_fraction {
                    exponent = exponent.saturating_sub(1);
                }
            }
            b'.' if !in_fraction => in_fraction = true,
            _ => break,
        }
        rest = tail;
    }
    if digits == 0 {
        return None;
    }
    match rest.split_first() {
        None => {}
        Some((b'e' | b'E', tail)) => exponent = exponent.saturating_add(exponent_part(tail)?),
        Some(_) => return None,
    }
    Some(Decimal {
        negative: negative && mantissa != 0,
        mantissa,
        exponent: exponent.clamp(-MAX_EXPONENT, MAX_EXPONENT),
    })
}

/// The digits after `e`/`E` (with an optional sign), to the end of the text; clamped.
fn exponent_part(text: &[u8]) -> Option<i32> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', t)) => (true, t),
        Some((b'+', t)) => (false, t),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let e = digits.iter().fold(0i32, |e, d| {
        e.saturating_mul(10)
            .saturating_add(i32::from(d - b'0'))
            .min(MAX_EXPONENT)
    });
    Some(if negative { -e } else { e })
}

impl Decimal {
    /// The number × 1000 rounded half away from zero (as `f64::round`), when it is not negative
    /// and fits in a `u64`.
    pub fn milli(&self) -> Option<u64> {
        if self.mantissa == 0 {
            return Some(0);
        }
        if self.negative {
            return None;
        }
        let e = self.exponent.saturating_add(3);
        let value = if e >= 0 {
            self.mantissa.checked_mul(pow10(e.unsigned_abs())?)?
        } else {
            match pow10(e.unsigned_abs()) {
                // Below 10^-38 of the unit: under half a millisecond.
                None => 0,
                Some(div) => {
                    let (q, r) = (self.mantissa / div, self.mantissa % div);
                    if r >= div - r {
                        q + 1
                    } else {
                        q
                    }
                }
            }
        };
        u64::try_from(value).ok()
    }

    /// The number compared with `n`, exactly.
    pub fn cmp_int(&self, n: u64) -> Ordering {
        if self.mantissa == 0 {
            return 0.cmp(&n);
        }
        if self.negative {
            return Ordering::Less;
        }
        let n = u128::from(n);
        if self.exponent >= 0 {
            match pow10(self.exponent.unsigned_abs()).and_then(|p| self.mantissa.checked_mul(p)) {
                Some(v) => v.cmp(&n),
                None => Ordering::Greater,
            }
        } else {
            match pow10(self.exponent.unsigned_abs()).and_then(|p| n.checked_mul(p)) {
                Some(scaled) => self.mantissa.cmp(&scaled),
                // n × 10^k beyond u128 is beyond the mantissa; with n = 0 the number is above.
                None if n == 0 => Ordering::Greater,
                None => Ordering::Less,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> Option<u64> {
        parse(text)?.milli()
    }

    /// What the call sites computed before: `f64` parse, × 1000, `round`.
    fn float_ms(text: &str) -> Option<u64> {
        let f: f64 = text.parse().ok()?;
        let m = (f * 1000.0).round();
        (m.is_finite() && (0.0..1.8e19).contains(&m)).then_some(m as u64)
    }

    #[test]
    fn the_same_milliseconds_as_the_float_parser_on_kong_and_settings_numbers() {
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "+1",
            "1.",
            ".5",
            "0.0005",
            "0.0015",
            "1.5",
            "30",
            "86400",
            "2e3",
            "2E-3",
            "1.25e1",
            "1700000000",
            "1700000050.123",
            "1700000200.125",
            "253402300799",
            "007",
            "1e0",
            "0.000",
            "12345678901234567890123456789012345678901234567890",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for i in (0..2_000_000_000u64).step_by(99_999_989) {
            for frac in ["", ".1", ".25", ".999", ".5004", ".0626"] {
                texts.push(format!("{i}{frac}"));
            }
        }
        for t in &texts {
            assert_eq!(ms(t), float_ms(t), "{t}");
        }
    }

    #[test]
    fn not_numbers_and_out_of_range() {
        for t in [
            "", "-", "+", ".", "e5", "1e", "1e+", "1.2.3", "1x", " 1", "inf", "NaN", "0x10", "1_0",
        ] {
            assert_eq!(parse(t), None, "{t}");
        }
        assert_eq!(ms("-1"), None);
        assert_eq!(ms("-0.0001"), None);
        assert_eq!(ms("1e400"), None);
        assert_eq!(ms("1e-400"), Some(0));
        assert_eq!(ms("18446744073709551.615"), Some(u64::MAX));
        assert_eq!(ms("18446744073709551.616"), None);
    }

    #[test]
    fn exact_comparison_with_an_integer() {
        let c = |t: &str, n| parse(t).map(|d| d.cmp_int(n));
        assert_eq!(c("10", 10), Some(Ordering::Equal));
        assert_eq!(c("10.0000001", 10), Some(Ordering::Greater));
        assert_eq!(c("9.9999999", 10), Some(Ordering::Less));
        assert_eq!(c("1e1", 10), Some(Ordering::Equal));
        assert_eq!(c("-0", 0), Some(Ordering::Equal));
        assert_eq!(c("-5", 0), Some(Ordering::Less));
        assert_eq!(c("1e400", u64::MAX), Some(Ordering::Greater));
        assert_eq!(c("1e-400", 0), Some(Ordering::Greater));
        assert_eq!(c("1e-400", 1), Some(Ordering::Less));
    }
}
