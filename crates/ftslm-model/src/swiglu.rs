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
use crate::kernel::swiglu::{swiglu_gradients, swiglu_values};
use crate::kernel::with_cpu_f32s;

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
