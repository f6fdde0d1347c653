//! RMSNorm as Llama uses it, over rows of f32: y = x·r·w with
//! r = (mean(x²) + eps)^(−1/2) per row, and its input gradient (the norm
//! weight is frozen). With g = dy ⊙ w, ∂r/∂x_j = −r³·x_j/H, so
//! dx = r·g − x·r³·mean(g ⊙ x).

use crate::{dot, wide_fn, written_vec};

wide_fn! {
    /// Each row of `x` (rows as long as `w`) normalised and scaled by `w`.
    pub fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
        let hidden = w.len();
        assert!(
            hidden > 0 && x.len().is_multiple_of(hidden),
            "RMSNorm: {} values are not rows of the weight's {hidden}",
            x.len()
        );
        // SAFETY: whole rows of `hidden` values, each written from a row of
        // x and the `hidden` weights, cover every value.
        unsafe {
            written_vec(x.len(), |y| {
                for (y, x) in y.chunks_exact_mut(hidden).zip(x.chunks_exact(hidden)) {
                    let inv_rms = 1.0 / (dot(x, x) / hidden as f32 + eps).sqrt();
                    for ((y, x), w) in y.iter_mut().zip(x).zip(w) {
                        y.write(x * inv_rms * w);
                    }
                }
            })
        }
    }
}

wide_fn! {
    /// dx row by row, for rows of `x` and `dy` as long as `w`.
    pub fn rms_norm_backward_rows(x: &[f32], dy: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
        let hidden = w.len();
        assert!(
            hidden > 0 && x.len().is_multiple_of(hidden) && dy.len() == x.len(),
            "RMSNorm backward: x ({}) and dy ({}) are not the same rows of the weight's {hidden}",
            x.len(),
            dy.len()
        );
        let mut dx = vec![0f32; x.len()];
        let rows = dx.chunks_exact_mut(hidden).zip(x.chunks_exact(hidden));
        for ((dx, x), dy) in rows.zip(dy.chunks_exact(hidden)) {
            let inv_rms = 1.0 / (dot(x, x) / hidden as f32 + eps).sqrt();
            // g = dy ⊙ w, held in dx until the last loop.
            for ((g, dy), w) in dx.iter_mut().zip(dy).zip(w) {
                *g = dy * w;
            }
            let coefficient = inv_rms.powi(3) * dot(dx, x) / hidden as f32;
            for (g, x) in dx.iter_mut().zip(x) {
                *g = *g * inv_rms - x * coefficient;
            }
        }
        dx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forward and backward against the formulas in f64, on rows whose
    /// width leaves a tail after the sixteen-wide chunks.
    #[test]
    fn rows_match_the_formulas_in_f64() {
        let (rows, hidden, eps) = (4usize, 45usize, 1e-5f32);
        let ramp = |len: usize, k: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * k) % 97) as f32 / 20.0 - 2.4)
                .collect()
        };
        let (x, dy, w) = (
            ramp(rows * hidden, 31),
            ramp(rows * hidden, 17),
            ramp(hidden, 13),
        );
        let y = rms_norm_rows(&x, &w, eps);
        let dx = rms_norm_backward_rows(&x, &dy, &w, eps);
        for r in 0..rows {
            let row = |v: &[f32], j: usize| f64::from(v[r * hidden + j]);
            let ms = (0..hidden).map(|j| row(&x, j).powi(2)).sum::<f64>() / hidden as f64;
            let inv = 1.0 / (ms + f64::from(eps)).sqrt();
            let gx = (0..hidden)
                .map(|j| row(&dy, j) * f64::from(w[j]) * row(&x, j))
                .sum::<f64>()
                / hidden as f64;
            for (j, &wj) in w.iter().enumerate() {
                let want_y = row(&x, j) * inv * f64::from(wj);
                let want_dx = row(&dy, j) * f64::from(wj) * inv - row(&x, j) * inv.powi(3) * gx;
                assert!((row(&y, j) - want_y).abs() < 1e-5, "y[{r}, {j}]");
                assert!((row(&dx, j) - want_dx).abs() < 1e-5, "dx[{r}, {j}]");
            }
        }
    }

    #[test]
    #[should_panic(expected = "are not rows")]
    fn a_weight_that_does_not_divide_the_values_is_refused() {
        rms_norm_rows(&[1.0; 10], &[1.0; 3], 1e-5);
    }
}
