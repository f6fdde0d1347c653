//! Llama's gated activation, a = silu(g) ⊙ u with silu(g) = g·σ(g), and its
//! gradient, one pass over f32 values each. The backward needs σ(g) once
//! per element: with s = σ(g),
//!
//!   ∂a/∂u = g·s,   ∂a/∂g = u · s·(1 + g·(1 − s))

use crate::{exp, wide_fn, written_vec};

wide_fn! {
    /// silu(g) ⊙ u for `g` and `u` of one length.
    pub fn swiglu_values(g: &[f32], u: &[f32]) -> Vec<f32> {
        // A `for` loop, not `map(..).collect()`: `collect` is a function of
        // its own, compiled for the baseline (four wide, with a division).
        assert_eq!(g.len(), u.len(), "SwiGLU: gate and up differ in length");
        // SAFETY: the zip of three slices of one length writes every value.
        unsafe {
            written_vec(g.len(), |a| {
                for ((a, &g), &u) in a.iter_mut().zip(g).zip(u) {
                    a.write(g * sigmoid(g) * u);
                }
            })
        }
    }
}

wide_fn! {
    /// (∂L/∂g, ∂L/∂u) from ∂L/∂a, g and u of equal lengths.
    pub fn swiglu_gradients(da: &[f32], g: &[f32], u: &[f32]) -> (Vec<f32>, Vec<f32>) {
        assert!(
            da.len() == g.len() && u.len() == g.len(),
            "SwiGLU backward: the gradient, gate and up differ in length"
        );
        let (mut d_gate, mut d_up) = (Vec::with_capacity(g.len()), Vec::with_capacity(g.len()));
        let outputs = d_gate.spare_capacity_mut()[..g.len()]
            .iter_mut()
            .zip(&mut d_up.spare_capacity_mut()[..g.len()]);
        for ((d_gate, d_up), ((&da, &g), &u)) in outputs.zip(da.iter().zip(g).zip(u)) {
            let s = sigmoid(g);
            d_up.write(da * g * s);
            d_gate.write(da * u * s * (1.0 + g * (1.0 - s)));
        }
        // SAFETY: the loop ran over all g.len() values (the lengths are
        // equal, asserted above) and wrote both outputs at each; not zeroing
        // them first is `written_vec`'s saving.
        unsafe {
            d_gate.set_len(g.len());
            d_up.set_len(g.len());
        }
        (d_gate, d_up)
    }
}

/// σ(g) = 1 / (1 + e^(−g)); e^(−g) is +∞ below g = −88, giving 0 as it should.
#[inline(always)]
fn sigmoid(g: f32) -> f32 {
    1.0 / (1.0 + exp(-g))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the formulas in f64, over gates wide enough to reach both
    /// saturated ends of σ.
    #[test]
    fn values_and_gradients_match_the_formulas_in_f64() {
        let n = 371;
        let g: Vec<f32> = (0..n).map(|i| (i as f32 * 0.731).sin() * 100.0).collect();
        let u: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).cos() * 3.0).collect();
        let da: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).sin() * 2.0).collect();
        let a = swiglu_values(&g, &u);
        let (d_gate, d_up) = swiglu_gradients(&da, &g, &u);
        for i in 0..n {
            let (g, u, da) = (f64::from(g[i]), f64::from(u[i]), f64::from(da[i]));
            let s = 1.0 / (1.0 + (-g).exp());
            assert!((f64::from(a[i]) - g * s * u).abs() < 2e-4, "a[{i}]");
            assert!((f64::from(d_up[i]) - da * g * s).abs() < 2e-4, "d_up[{i}]");
            let want = da * u * s * (1.0 + g * (1.0 - s));
            assert!((f64::from(d_gate[i]) - want).abs() < 1e-5, "d_gate[{i}]");
        }
    }

    #[test]
    #[should_panic(expected = "differ in length")]
    fn unequal_lengths_are_refused() {
        swiglu_values(&[1.0; 3], &[1.0; 2]);
    }
}
