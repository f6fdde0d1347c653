//! e^x for the softmaxes of the hot path (the LM head's 49k-wide rows and
//! attention's rows), written so that a loop over a slice vectorises: libm's
//! expf is a call per element and was a twentieth of a training step.
//!
//! Cephes' expf: x = n·ln 2 + r with |r| ≤ ln 2 / 2 (ln 2 split in two so
//! n·ln 2 is exact), e^r by a degree-7 polynomial, 2^n put into the exponent
//! bits. Within 2 ulp of the true value over the range softmaxes use.

const LOG2_E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 · 2^23: adding and subtracting it rounds an f32 to the nearest integer.
const ROUND: f32 = 12_582_912.0;
/// Below this e^x is under f32's smallest normal value.
const UNDERFLOW: f32 = -87.0;
const OVERFLOW: f32 = 88.0;

/// e^x; 0 below −87 (where the result would be subnormal), +∞ above 88.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let clamped = x.clamp(UNDERFLOW, OVERFLOW);
    // n + 1.5·2^23 holds the integer n in its low mantissa bits, so n's bits
    // come from the float's bits: `n as i32` (a saturating conversion) does
    // not vectorise and made the loops around this one lane at a time.
    let shifted = clamped * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // n ∈ [−126, 127] after the clamp, so 2^n is a normal float.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    let value = y * scale;
    if x < UNDERFLOW {
        0.0
    } else if x > OVERFLOW {
        f32::INFINITY
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the standard library's exp in f64 over the softmax range,
    /// in ulps of the f32 result.
    #[test]
    fn within_two_ulp_of_the_true_exponential() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            let ulp = f64::from(f32::EPSILON) * want.abs().max(f64::from(f32::MIN_POSITIVE));
            worst = worst.max((got - want).abs() / ulp);
            x += 0.000_731;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(100.0).is_infinite());
    }
}
