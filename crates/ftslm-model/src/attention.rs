//! Grouped-query causal self-attention over one packed row. Each example of
//! the row (a run of equal segment ids) attends only to itself, so the cost is
//! Σ nᵢ² rather than (Σ nᵢ)² and no mask crosses an example boundary.

use std::ops::Range;

use candle_core::{Device, Tensor, D};

use crate::error::Result;
use crate::frozen_linear::FrozenWeight;
use crate::lora::{LayerLora, Projection};
use crate::rope::RopeTables;

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
    /// x [tokens, hidden] → [tokens, hidden]. `segments` are the token ranges
    /// of the row's examples, in order and covering the row.
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &RopeTables,
        segments: &[Range<usize>],
        lora: &mut LayerLora,
    ) -> Result<Tensor> {
        let tokens = x.dim(0)?;
        let (heads, kv_heads, head_dim) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let group = heads / kv_heads;

        let q = lora.project(Projection::Q, &*self.q_proj, x)?; // [tokens, heads·head_dim]
        let k = lora.project(Projection::K, &*self.k_proj, x)?; // [tokens, kv_heads·head_dim]
        let v = lora.project(Projection::V, &*self.v_proj, x)?;
        let q = rope.apply(&q.reshape((tokens, heads, head_dim))?)?;
        let k = rope.apply(&k.reshape((tokens, kv_heads, head_dim))?)?;
        let v = v.reshape((tokens, kv_heads, head_dim))?;

        let scale = 1.0 / (head_dim as f64).sqrt();
        let mut contexts = Vec::with_capacity(segments.len());
        for segment in segments {
            let (start, n) = (segment.start, segment.len());
            let q = q.narrow(0, start, n)?.transpose(0, 1)?.contiguous()?; // [heads, n, head_dim]
            let k = k.narrow(0, start, n)?.transpose(0, 1)?.contiguous()?; // [kv_heads, n, head_dim]
            let v = v.narrow(0, start, n)?.transpose(0, 1)?.contiguous()?;
            // Query head h uses key/value head h / group (transformers' repeat_kv),
            // so the query heads of one group stack into one matmul against their kv head.
            let q = q.reshape((kv_heads, group * n, head_dim))?;
            let scores = (q.matmul(&k.t()?)? * scale)?; // [kv_heads, group·n, n]
            let scores = scores
                .reshape((kv_heads, group, n, n))?
                .broadcast_add(&causal_mask(n, x.device())?)?;
            let probs = softmax_last_dim(&scores)?.reshape((kv_heads, group * n, n))?;
            let context = probs.matmul(&v)?; // [kv_heads, group·n, head_dim]
            let context = context
                .reshape((heads, n, head_dim))?
                .transpose(0, 1)?
                .reshape((n, heads * head_dim))?;
            contexts.push(context);
        }
        let context = Tensor::cat(&contexts, 0)?; // [tokens, heads·head_dim]
        lora.project(Projection::O, &*self.o_proj, &context)
    }
}

/// [n, n]: 0 where key j ≤ query i, −∞ above the diagonal.
fn causal_mask(n: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| (0..n).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Ok(Tensor::from_vec(mask, (n, n), device)?)
}

/// Every row keeps its diagonal, so the max is finite and no row is all −∞.
fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let exp = x.broadcast_sub(&max)?.exp()?;
    let sum = exp.sum_keepdim(D::Minus1)?;
    Ok(exp.broadcast_div(&sum)?)
}
