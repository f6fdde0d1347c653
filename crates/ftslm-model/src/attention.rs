//! Grouped-query causal self-attention: the layer's weights and the keys
//! and values a generated sequence has seen (`LayerKv`). Each example of a
//! row (a run of equal segment ids) attends only to itself, so the cost is
//! Σ nᵢ² rather than (Σ nᵢ)² and no mask crosses an example boundary. The
//! forward, with its backward and its KV-cache variant, is
//! `grad::attention`'s, on the model's `Backend`.

use candle_core::{Device, Tensor, D};

use crate::error::Result;
use crate::frozen_linear::FrozenWeight;

#[derive(Debug)]
pub struct Attention {
    /// [heads·head_dim, hidden]
    pub q_proj: Box<dyn FrozenWeight>,
    /// [kv_heads·head_dim, hidden]
    pub k_proj: Box<dyn FrozenWeight>,
    /// [kv_heads·head_dim, hidden]
    pub v_proj: Box<dyn FrozenWeight>,
    /// [hidden, heads·head_dim]
    pub o_proj: Box<dyn FrozenWeight>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

/// The keys and values one decoder layer has seen of one sequence,
/// [kv_heads, t, head_dim] each, after RoPE.
#[derive(Debug, Clone, Default)]
pub struct LayerKv {
    keys: Option<Tensor>,
    values: Option<Tensor>,
}

impl LayerKv {
    /// Appends k, v [kv_heads, n, head_dim] and returns the whole cache.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let join = |old: &Option<Tensor>, new: &Tensor| -> Result<Tensor> {
            Ok(match old {
                Some(old) => Tensor::cat(&[old, new], 1)?,
                None => new.contiguous()?,
            })
        };
        let keys = join(&self.keys, k)?;
        let values = join(&self.values, v)?;
        self.keys = Some(keys.clone());
        self.values = Some(values.clone());
        Ok((keys, values))
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.keys.as_ref().map_or(0, |k| k.dims()[1])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// [n, t]: query i is position t − n + i and sees keys 0..=t − n + i;
/// 0 where it may look, −∞ where it may not.
pub(crate) fn causal_mask(
    n: usize,
    t: usize,
    dtype: candle_core::DType,
    device: &Device,
) -> Result<Tensor> {
    let offset = t - n;
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| {
            (0..t).map(move |j| {
                if j <= offset + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (n, t), device)?.to_dtype(dtype)?)
}

/// Every row keeps its diagonal, so the max is finite and no row is all −∞.
pub(crate) fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let exp = x.broadcast_sub(&max)?.exp()?;
    let sum = exp.sum_keepdim(D::Minus1)?;
    Ok(exp.broadcast_div(&sum)?)
}
