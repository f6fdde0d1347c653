//! RMSNorm backward. The norm weight is frozen, so only the input gets a
//! gradient.

use candle_core::{Tensor, D};

use crate::error::Result;
use crate::norm::RmsNorm;

/// x [tokens, hidden], dy [tokens, hidden] → dx [tokens, hidden].
///
/// y = x·r·w with r = (mean(x²) + eps)^(−1/2) per token. With g = dy ⊙ w,
/// ∂r/∂x_j = −r³·x_j/H, so dx = r·g − x·r³·mean(g ⊙ x).
pub fn rms_norm_backward(norm: &RmsNorm, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let mean_square = x.sqr()?.mean_keepdim(D::Minus1)?; // [tokens, 1]
    let inv_rms = (mean_square + norm.eps)?.sqrt()?.recip()?; // r [tokens, 1]
    let g = dy.broadcast_mul(&norm.weight)?; // [tokens, hidden]
    let projection = (&g * x)?.mean_keepdim(D::Minus1)?; // mean(g ⊙ x) [tokens, 1]
    let coefficient = (inv_rms.powf(3.0)? * projection)?; // r³·mean(g ⊙ x) [tokens, 1]
    Ok((g.broadcast_mul(&inv_rms)? - x.broadcast_mul(&coefficient)?)?)
}
