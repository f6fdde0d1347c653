//! Llama's gated activation, a = silu(g) ⊙ u with silu(g) = g·σ(g), and its
//! gradient, as one pass over f32 CPU buffers; other tensors take candle's ops.
//!
//! The backward needs σ(g) once per element: with s = σ(g),
//!
//!   ∂a/∂u = g·s,   ∂a/∂g = u · s·(1 + g·(1 − s))
//!
//! candle's version of this made eleven [tokens, intermediate] temporaries
//! and one libm call per element, a tenth of a training step.

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::kernel::{exp, wide_fn, with_cpu_f32s, written_vec};

/// silu(gate) ⊙ up, shaped as `gate`.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    same_shape(gate, up, "up")?;
    let fast = with_cpu_f32s([gate, up], |[g, u]| swiglu_values(g, u));
    match fast {
        Some(values) => Ok(Tensor::from_vec(values, gate.shape(), &Device::Cpu)?),
        None => Ok((gate.silu()? * up)?),
    }
}

/// (∂L/∂gate, ∂L/∂up) from ∂L/∂a and the forward's `gate` and `up`.
pub fn swiglu_backward(
    d_activated: &Tensor,
    gate: &Tensor,
    up: &Tensor,
) -> Result<(Tensor, Tensor)> {
    same_shape(gate, up, "up")?;
    same_shape(gate, d_activated, "the activation's gradient")?;
    let fast = with_cpu_f32s([d_activated, gate, up], |[da, g, u]| {
        swiglu_gradients(da, g, u)
    });
    if let Some((d_gate, d_up)) = fast {
        return Ok((
            Tensor::from_vec(d_gate, gate.shape(), &Device::Cpu)?,
            Tensor::from_vec(d_up, gate.shape(), &Device::Cpu)?,
        ));
    }
    let sigmoid = gate.neg()?.exp()?.affine(1.0, 1.0)?.recip()?;
    let silu = (gate * &sigmoid)?;
    let silu_grad = (&sigmoid * (gate * sigmoid.affine(-1.0, 1.0)?)?.affine(1.0, 1.0)?)?;
    let d_gate = (d_activated * up)?.mul(&silu_grad)?;
    let d_up = (d_activated * silu)?;
    Ok((d_gate, d_up))
}

wide_fn! {
    fn swiglu_values(g: &[f32], u: &[f32]) -> Vec<f32> {
        // A `for` loop, not `map(..).collect()`: `collect` is a function of
        // its own, compiled for the baseline (four wide, with a division).
        assert_eq!(g.len(), u.len());
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
    fn swiglu_gradients(da: &[f32], g: &[f32], u: &[f32]) -> (Vec<f32>, Vec<f32>) {
        assert!(da.len() == g.len() && u.len() == g.len());
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
        // them first is `kernel::written_vec`'s saving.
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

fn same_shape(gate: &Tensor, other: &Tensor, name: &str) -> Result<()> {
    if gate.shape() == other.shape() {
        Ok(())
    } else {
        Err(ModelError::Input(format!(
            "SwiGLU: the gate is {:?} but {name} is {:?}",
            gate.dims(),
            other.dims()
        )))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::DType;

    use super::*;
    use crate::test_support::{max_diff, random_tensor};

    /// The f32 pass against the same math in f64 through candle's ops, over
    /// gates wide enough to reach both saturated ends of σ.
    #[test]
    fn f32_pass_matches_candle_ops_in_f64() {
        let shape = (7, 53);
        let tensor = |seed, spread: f64| random_tensor(shape, seed).affine(spread, 0.0).unwrap();
        let (gate, up, da) = (tensor(1, 100.0), tensor(2, 3.0), tensor(3, 2.0));
        let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        let f32_of = |t: Tensor| t.to_dtype(DType::F32).unwrap();

        // Outputs reach ±300, where an f32 ulp is 3e-5.
        let ours = swiglu(&gate, &up).unwrap();
        let reference = f32_of(swiglu(&f64_of(&gate), &f64_of(&up)).unwrap());
        assert!(max_diff(&ours, &reference) < 2e-4);

        let (d_gate, d_up) = swiglu_backward(&da, &gate, &up).unwrap();
        let (ref_gate, ref_up) =
            swiglu_backward(&f64_of(&da), &f64_of(&gate), &f64_of(&up)).unwrap();
        assert!(max_diff(&d_gate, &f32_of(ref_gate)) < 1e-5);
        assert!(max_diff(&d_up, &f32_of(ref_up)) < 2e-4);
    }

    #[test]
    fn mismatched_shapes_are_an_error_naming_both() {
        let gate = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        let up = Tensor::zeros((3, 2), DType::F32, &Device::Cpu).unwrap();
        let err = swiglu(&gate, &up).unwrap_err().to_string();
        assert!(err.contains("[2, 3]") && err.contains("[3, 2]"), "{err}");
    }
}
