//! Rotary position embeddings in Hugging Face's `rotate_half` convention:
//! each head's two halves rotate as (x1, x2) pairs by its token's angles.

use crate::wide_fn;

wide_fn! {
    /// Every head of every token of `x` [tokens, heads, head_dim] turned by
    /// its token's row of `cos` and `sin` [tokens, head_dim]: forward,
    /// y = x ⊙ cos + R(x) ⊙ sin with R(x1, x2) = (−x2, x1), or `back`, by −θ
    /// (the forward's transpose, its gradient). The products and the sum
    /// are candle's in the same order, so the values are the same.
    pub fn rotate_heads(x: &[f32], cos: &[f32], sin: &[f32], head_dim: usize, back: bool) -> Vec<f32> {
        assert!(
            head_dim > 0 && head_dim.is_multiple_of(2) && cos.len() == sin.len(),
            "RoPE: head_dim {head_dim} is not even, or cos ({}) and sin ({}) differ",
            cos.len(),
            sin.len()
        );
        let tokens = cos.len() / head_dim;
        assert!(
            tokens > 0
                && cos.len() == tokens * head_dim
                && x.len().is_multiple_of(tokens)
                && (x.len() / tokens).is_multiple_of(head_dim),
            "RoPE: {} values are not [{tokens}, heads, {head_dim}]",
            x.len()
        );
        let half = head_dim / 2;
        let per_token = x.len() / tokens;
        let mut y = vec![0f32; x.len()];
        let rows = y.chunks_exact_mut(per_token).zip(x.chunks_exact(per_token));
        for ((y, x), (cos, sin)) in rows.zip(cos.chunks_exact(head_dim).zip(sin.chunks_exact(head_dim))) {
            let ((c1, c2), (s1, s2)) = (cos.split_at(half), sin.split_at(half));
            for (y, x) in y.chunks_exact_mut(head_dim).zip(x.chunks_exact(head_dim)) {
                let ((y1, y2), (x1, x2)) = (y.split_at_mut(half), x.split_at(half));
                let pairs = y1.iter_mut().zip(y2.iter_mut()).zip(x1.iter().zip(x2));
                let tables = c1.iter().zip(c2).zip(s1.iter().zip(s2));
                for (((y1, y2), (&x1, &x2)), ((&c1, &c2), (&s1, &s2))) in pairs.zip(tables) {
                    if back {
                        *y1 = x1 * c1 + x2 * s2;
                        *y2 = x2 * c2 - x1 * s1;
                    } else {
                        *y1 = x1 * c1 - x2 * s1;
                        *y2 = x2 * c2 + x1 * s2;
                    }
                }
            }
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Back undoes forward (the rotation is orthogonal), and a pair turns
    /// as the 2-D rotation by its angle.
    #[test]
    fn back_undoes_forward_and_pairs_rotate_by_their_angle() {
        let (tokens, heads, head_dim) = (3, 2, 4);
        let angles: Vec<f32> = (0..tokens * head_dim / 2).map(|i| i as f32 * 0.7).collect();
        let mut cos = Vec::new();
        let mut sin = Vec::new();
        for t in 0..tokens {
            let row = &angles[t * head_dim / 2..(t + 1) * head_dim / 2];
            for _ in 0..2 {
                cos.extend(row.iter().map(|a| a.cos()));
                sin.extend(row.iter().map(|a| a.sin()));
            }
        }
        let x: Vec<f32> = (0..tokens * heads * head_dim)
            .map(|i| i as f32 / 5.0 - 2.0)
            .collect();
        let y = rotate_heads(&x, &cos, &sin, head_dim, false);
        let back = rotate_heads(&y, &cos, &sin, head_dim, true);
        for (a, b) in x.iter().zip(&back) {
            assert!((a - b).abs() < 1e-5);
        }
        // Token 1, head 1, pair 0: (x[12], x[14]) by angle[2].
        let (x1, x2, a) = (x[12], x[14], angles[2]);
        assert!((y[12] - (x1 * a.cos() - x2 * a.sin())).abs() < 1e-6);
        assert!((y[14] - (x2 * a.cos() + x1 * a.sin())).abs() < 1e-6);
    }

    #[test]
    #[should_panic(expected = "are not")]
    fn values_that_are_not_whole_heads_are_refused() {
        rotate_heads(&[0.0; 10], &[1.0; 8], &[0.0; 8], 4, false);
    }
}
