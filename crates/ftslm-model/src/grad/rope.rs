//! RoPE backward: the rotation is orthogonal, so its gradient is the inverse
//! rotation (by −θ) of the output gradient.

use candle_core::{Tensor, D};

use crate::error::Result;
use crate::rope::{RopeTables, Turn};

/// dy [tokens, heads, head_dim] → dx [tokens, heads, head_dim].
///
/// Forward: y = x ⊙ cos + R(x) ⊙ sin with R(x1, x2) = (−x2, x1). R is linear
/// with transpose Rᵀ(z1, z2) = (z2, −z1), so dx = dy ⊙ cos + Rᵀ(dy ⊙ sin).
pub fn rope_backward(tables: &RopeTables, dy: &Tensor) -> Result<Tensor> {
    if let Some(dx) = tables.rotate_f32(dy, Turn::Back)? {
        return Ok(dx);
    }
    let half = dy.dim(D::Minus1)? / 2;
    let cos = tables.cos.unsqueeze(1)?; // [tokens, 1, head_dim]
    let sin = tables.sin.unsqueeze(1)?;
    let z = dy.broadcast_mul(&sin)?;
    let z1 = z.narrow(D::Minus1, 0, half)?;
    let z2 = z.narrow(D::Minus1, half, half)?;
    let transposed = Tensor::cat(&[&z2, &z1.neg()?], D::Minus1)?;
    Ok((dy.broadcast_mul(&cos)? + transposed)?)
}
