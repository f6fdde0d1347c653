//! The softmaxes of training: attention's causal softmax and its score
//! gradient, and the LM head's softmax minus the one-hot target (the
//! cross-entropy's gradient with respect to the logits).

use crate::{dot, exp, flush_subnormal, max, sum, wide_fn};

wide_fn! {
    /// Softmaxes rows of `width` scores in place, row r at position
    /// `first_position + r` seeing scores `..=position`; each visible score
    /// is multiplied by `scale` first, the masked rest set to 0, as the
    /// additive −∞ mask then softmax do.
    pub fn causal_softmax_rows(p: &mut [f32], width: usize, first_position: usize, scale: f32) {
        assert!(
            width > 0 && p.len().is_multiple_of(width) && first_position + p.len() / width <= width,
            "causal softmax: {} scores are not rows of {width} from position {first_position}",
            p.len()
        );
        for (position, row) in (first_position..).zip(p.chunks_exact_mut(width)) {
            causal_softmax(row, position, scale);
        }
    }
}

#[inline(always)]
fn causal_softmax(row: &mut [f32], last: usize, scale: f32) {
    let (visible, masked) = row.split_at_mut(last + 1);
    for s in visible.iter_mut() {
        *s *= scale;
    }
    let max = max(visible);
    for s in visible.iter_mut() {
        *s = exp(*s - max);
    }
    let sum = sum(visible);
    for s in visible.iter_mut() {
        *s = flush_subnormal(*s / sum);
    }
    masked.fill(0.0);
}

wide_fn! {
    /// dP → dS = P ⊙ (dP − rowsum(dP ⊙ P))·c in place, rows of `width`.
    pub fn score_gradients(ds: &mut [f32], p: &[f32], width: usize, scale: f32) {
        assert!(
            width > 0 && ds.len() == p.len() && p.len().is_multiple_of(width),
            "score gradients: dP ({}) and P ({}) are not the same rows of {width}",
            ds.len(),
            p.len()
        );
        for (ds_row, p_row) in ds.chunks_exact_mut(width).zip(p.chunks_exact(width)) {
            let row_dot = dot(ds_row, p_row);
            for (g, &p) in ds_row.iter_mut().zip(p_row) {
                *g = flush_subnormal(p * (*g - row_dot) * scale);
            }
        }
    }
}

wide_fn! {
    /// [`softmax_minus_onehot`] over rows of `vocab` logits, one target id
    /// each; the rows' nll summed.
    pub fn softmax_minus_onehot_rows(logits: &mut [f32], vocab: usize, ids: &[u32], scale: f32) -> f64 {
        assert!(
            logits.len() == ids.len() * vocab && ids.iter().all(|&id| (id as usize) < vocab),
            "cross-entropy: {} logits are not {} rows of {vocab}, or a target is outside the vocabulary",
            logits.len(),
            ids.len()
        );
        // A `for` loop, not `map(..).sum()`: the iterator's `fold` is a
        // function of its own, compiled for the baseline, not inlined here.
        let mut total = 0.0;
        for (z, &id) in logits.chunks_exact_mut(vocab).zip(ids) {
            total += softmax_minus_onehot(z, id as usize, scale);
        }
        total
    }
}

/// Overwrites the logits `z` of one row with `scale · (softmax(z) − onehot(id))`
/// and returns that row's nll = logsumexp(z) − z[id]. Sums run in f64.
#[inline(always)]
fn softmax_minus_onehot(z: &mut [f32], id: usize, scale: f32) -> f64 {
    let max = max(z);
    let target = z[id];
    for v in z.iter_mut() {
        *v = exp(*v - max);
    }
    // Eight running sums so the loop vectorises; f64 keeps 49k terms exact enough.
    let mut lanes = [0.0f64; 8];
    let mut chunks = z.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f64::from(v);
        }
    }
    let sum = lanes.iter().sum::<f64>()
        + chunks
            .remainder()
            .iter()
            .map(|&v| f64::from(v))
            .sum::<f64>();
    let inv = scale / sum as f32;
    for v in z.iter_mut() {
        *v = flush_subnormal(*v * inv);
    }
    z[id] -= scale;
    sum.ln() - f64::from(target - max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_rows_sum_to_one_over_what_they_see() {
        let width = 5;
        let mut p: Vec<f32> = (0..3 * width).map(|i| (i as f32 * 0.9).sin()).collect();
        causal_softmax_rows(&mut p, width, 2, 0.5);
        for (r, row) in p.chunks_exact(width).enumerate() {
            let visible = &row[..=2 + r];
            assert!((visible.iter().sum::<f32>() - 1.0).abs() < 1e-6, "row {r}");
            assert!(row[3 + r..].iter().all(|&v| v == 0.0), "row {r}");
        }
    }

    #[test]
    fn cross_entropy_rows_give_the_nll_and_its_gradient() {
        let vocab = 37;
        let mut z: Vec<f32> = (0..2 * vocab)
            .map(|i| (i as f32 * 0.3).cos() * 4.0)
            .collect();
        let original = z.clone();
        let nll = softmax_minus_onehot_rows(&mut z, vocab, &[3, 30], 1.0);
        let mut want = 0.0;
        for (r, id) in [(0, 3), (1, 30)] {
            let row: Vec<f64> = original[r * vocab..(r + 1) * vocab]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
            want += lse - row[id];
            let grad = &z[r * vocab..(r + 1) * vocab];
            assert!(grad.iter().map(|&g| f64::from(g)).sum::<f64>().abs() < 1e-5);
            assert!((f64::from(grad[id]) - ((row[id] - lse).exp() - 1.0)).abs() < 1e-5);
        }
        assert!((nll - want).abs() < 1e-4);
    }

    #[test]
    #[should_panic(expected = "outside the vocabulary")]
    fn a_target_outside_the_vocabulary_is_refused() {
        softmax_minus_onehot_rows(&mut [0.0; 8], 4, &[1, 4], 1.0);
    }
}
