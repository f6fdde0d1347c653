//! LoRA dropout masks as bytes: drawing them from a stream of random words,
//! and applying them.

use crate::wide_fn;

/// The factor of one value: `scale` where kept, 0 where dropped.
#[inline(always)]
pub fn factor(kept: u8, scale: f32) -> f32 {
    if kept != 0 {
        scale
    } else {
        0.0
    }
}

wide_fn! {
    /// x ⊙ mask: each value times `scale` where `kept` is 1, 0 where it is 0.
    pub fn masked_values(x: &[f32], kept: &[u8], scale: f32) -> Vec<f32> {
        assert_eq!(x.len(), kept.len(), "dropout: the mask and the values differ in length");
        let mut out = vec![0f32; x.len()];
        for ((o, &x), &k) in out.iter_mut().zip(x).zip(kept) {
            *o = x * factor(k, scale);
        }
        out
    }
}

wide_fn! {
    /// 1 (kept) where a word's top 24 bits reach `threshold`, else 0 (dropped).
    pub fn kept_bytes(words: &[u32], threshold: u32) -> Vec<u8> {
        let mut kept = vec![0u8; words.len()];
        for (k, &w) in kept.iter_mut().zip(words) {
            *k = u8::from(w >> 8 >= threshold);
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_below_the_threshold_drop_and_masks_scale_the_rest() {
        let kept = kept_bytes(&[0, 255, 256, 0xFFFF_FFFF, 511], 1);
        assert_eq!(kept, [0, 0, 1, 1, 1]);
        let out = masked_values(&[1.0, 2.0, 3.0, 4.0, -5.0], &kept, 2.0);
        assert_eq!(out, [0.0, 0.0, 6.0, 8.0, -10.0]);
    }
}
