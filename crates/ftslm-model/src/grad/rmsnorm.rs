//! RMSNorm backward. The norm weight is frozen, so only the input gets a
//! gradient.

use candle_core::{Device, Tensor, D};

use crate::error::Result;
use crate::kernel::norm::rms_norm_backward_rows;
use crate::kernel::with_cpu_f32s;
use crate::norm::RmsNorm;

/// x [tokens, hidden], dy [tokens, hidden] → dx [tokens, hidden].
///
/// y = x·r·w with r = (mean(x²) + eps)^(−1/2) per token. With g = dy ⊙ w,
/// ∂r/∂x_j = −r³·x_j/H, so dx = r·g − x·r³·mean(g ⊙ x).
pub fn rms_norm_backward(norm: &RmsNorm, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    if let Some(dx) = backward_f32(norm, x, dy)? {
        return Ok(dx);
    }
    let mean_square = x.sqr()?.mean_keepdim(D::Minus1)?; // [tokens, 1]
    let inv_rms = (mean_square + norm.eps)?.sqrt()?.recip()?; // r [tokens, 1]
    let g = dy.broadcast_mul(&norm.weight)?; // [tokens, hidden]
    let projection = (&g * x)?.mean_keepdim(D::Minus1)?; // mean(g ⊙ x) [tokens, 1]
    let coefficient = (inv_rms.powf(3.0)? * projection)?; // r³·mean(g ⊙ x) [tokens, 1]
    Ok((g.broadcast_mul(&inv_rms)? - x.broadcast_mul(&coefficient)?)?)
}

/// The same per row in one pass over f32 CPU values; None for other
/// tensors or shapes, which take candle's ops above.
fn backward_f32(norm: &RmsNorm, x: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
    let hidden = x.dim(D::Minus1)?;
    if dy.shape() != x.shape() || hidden == 0 {
        return Ok(None);
    }
    let eps = norm.eps as f32;
    let values = with_cpu_f32s([x, dy, &norm.weight], |[x, dy, w]| {
        (w.len() == hidden).then(|| rms_norm_backward_rows(x, dy, w, eps))
    })
    .flatten();
    Ok(match values {
        Some(dx) => Some(Tensor::from_vec(dx, x.shape(), &Device::Cpu)?),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use candle_core::DType;

    use super::*;
    use crate::test_support::max_diff;

    #[test]
    fn f32_pass_matches_candle_ops_in_f64() {
        let (tokens, hidden) = (4, 45);
        let ramp = |len: usize, k: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * k) % 97) as f32 / 20.0 - 2.4)
                .collect()
        };
        let x =
            Tensor::from_vec(ramp(tokens * hidden, 31), (tokens, hidden), &Device::Cpu).unwrap();
        let dy =
            Tensor::from_vec(ramp(tokens * hidden, 17), (tokens, hidden), &Device::Cpu).unwrap();
        let w = Tensor::from_vec(ramp(hidden, 13), hidden, &Device::Cpu).unwrap();
        let ours = rms_norm_backward(&RmsNorm::new(w.clone(), 1e-5), &x, &dy).unwrap();
        let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        let reference =
            rms_norm_backward(&RmsNorm::new(f64_of(&w), 1e-5), &f64_of(&x), &f64_of(&dy))
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
        assert!(max_diff(&ours, &reference) < 1e-5);
    }
}
