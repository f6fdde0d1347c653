//! RMSNorm as Llama uses it: no mean subtraction and no bias, computed in f32.

use candle_core::{Device, Tensor, D};

use crate::error::Result;
use crate::kernel::norm::rms_norm_rows;
use crate::kernel::with_cpu_f32s;

#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// [hidden]
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn new(weight: Tensor, eps: f64) -> Self {
        RmsNorm { weight, eps }
    }

    /// x [tokens, hidden] → x / sqrt(mean(x²) + eps) · weight
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(y) = self.forward_f32(x)? {
            return Ok(y);
        }
        let mean_square = x.sqr()?.mean_keepdim(D::Minus1)?; // [tokens, 1]
        let inv_rms = (mean_square + self.eps)?.sqrt()?.recip()?;
        Ok(x.broadcast_mul(&inv_rms)?.broadcast_mul(&self.weight)?)
    }

    /// One pass per row over f32 CPU values (what the training step runs);
    /// None for other tensors, or a weight that does not fit the rows.
    fn forward_f32(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let hidden = x.dim(D::Minus1)?;
        let eps = self.eps as f32;
        let values = with_cpu_f32s([x, &self.weight], |[x, w]| {
            (w.len() == hidden && hidden > 0).then(|| rms_norm_rows(x, w, eps))
        })
        .flatten();
        Ok(match values {
            Some(y) => Some(Tensor::from_vec(y, x.shape(), &Device::Cpu)?),
            None => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use candle_core::DType;

    use super::*;
    use crate::test_support::max_diff;

    /// The f32 pass against candle's ops in f64, on rows whose width leaves
    /// a tail after the sixteen-wide chunks.
    #[test]
    fn f32_pass_matches_candle_ops_in_f64() {
        let (tokens, hidden) = (5, 37);
        let x: Vec<f32> = (0..tokens * hidden)
            .map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0)
            .collect();
        let w: Vec<f32> = (0..hidden).map(|i| 0.5 + (i % 9) as f32 / 8.0).collect();
        let x = Tensor::from_vec(x, (tokens, hidden), &Device::Cpu).unwrap();
        let w = Tensor::from_vec(w, hidden, &Device::Cpu).unwrap();
        let ours = RmsNorm::new(w.clone(), 1e-5).forward(&x).unwrap();
        let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        let reference = RmsNorm::new(f64_of(&w), 1e-5)
            .forward(&f64_of(&x))
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        assert!(max_diff(&ours, &reference) < 2e-6);
    }
}
