//! Grouped-query causal self-attention: the layer's weights, the keys and
//! values a generated sequence has seen (`LayerKv`), and attention over them
//! for generation. Each example of a row (a run of equal segment ids)
//! attends only to itself, so the cost is Σ nᵢ² rather than (Σ nᵢ)² and no
//! mask crosses an example boundary. The forward itself, with its backward,
//! is `grad::attention`'s.

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

impl Attention {
    /// One example's attention: q [heads, n, head_dim] are the last n of the
    /// t positions whose keys and values k, v [kv_heads, t, head_dim] hold;
    /// returns the context [n, heads·head_dim].
    pub(crate) fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let (heads, kv_heads, head_dim) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let group = heads / kv_heads;
        let n = q.dim(1)?;
        let t = k.dim(1)?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        // Query head h uses key/value head h / group (transformers' repeat_kv),
        // so the query heads of one group stack into one matmul against their kv head.
        let q = q.reshape((kv_heads, group * n, head_dim))?;
        let scores = (q.matmul(&k.t()?)? * scale)?; // [kv_heads, group·n, t]
        let scores = scores
            .reshape((kv_heads, group, n, t))?
            .broadcast_add(&causal_mask(n, t, q.dtype(), q.device())?)?;
        let probs = softmax_last_dim(&scores)?.reshape((kv_heads, group * n, t))?;
        let context = probs.matmul(v)?; // [kv_heads, group·n, head_dim]
        Ok(context
            .reshape((heads, n, head_dim))?
            .transpose(0, 1)?
            .reshape((n, heads * head_dim))?)
    }
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
