//! RMSNorm as Llama uses it: no mean subtraction and no bias, computed in f32.

use candle_core::{Tensor, D};

use crate::error::Result;

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
        let mean_square = x.sqr()?.mean_keepdim(D::Minus1)?; // [tokens, 1]
        let inv_rms = (mean_square + self.eps)?.sqrt()?.recip()?;
        Ok(x.broadcast_mul(&inv_rms)?.broadcast_mul(&self.weight)?)
    }
}
