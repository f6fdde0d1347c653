//! Grouped-query causal attention, forward with its saved internals and
//! backward, over one packed row whose examples (segments) never see each
//! other; and the same forward over a KV cache for generation, which shares
//! the projections and RoPE and attends with `Attention::attend`. Per
//! segment and kv head, with
//! the `group` query heads sharing that kv head stacked as rows:
//!
//!   S = Q·Kᵀ·c + causal mask   Q [g·n, d], K [n, d], c = 1/√d
//!   P = softmax(S)             [g·n, n]
//!   C = P·V                    [g·n, d]

use std::ops::Range;

use candle_core::{Tensor, D};

use crate::attention::{causal_mask, softmax_last_dim, Attention, LayerKv};
use crate::error::{ModelError, Result};
use crate::frozen_linear::SharedInput;
use crate::grad::attention_products;
use crate::grad::linear::{sum_inputs, LayerAdapter, LayerGrads, LinearCache};
use crate::grad::rope::rope_backward;
use crate::lora::Projection;
use crate::rope::RopeTables;

/// Saved by the forward for the backward.
#[derive(Debug, Clone)]
pub struct AttentionCache {
    q_proj: LinearCache,
    k_proj: LinearCache,
    v_proj: LinearCache,
    o_proj: LinearCache,
    segments: Vec<SegmentCache>,
}

#[derive(Debug, Clone)]
struct SegmentCache {
    /// rotated queries [kv_heads, group·n, head_dim]
    q: Tensor,
    /// rotated keys [kv_heads, n, head_dim]
    k: Tensor,
    /// [kv_heads, n, head_dim]
    v: Tensor,
    /// softmax probabilities: the kernels' causal blocks, or candle's
    /// [kv_heads, group·n, n] where those did not run
    probs: SavedProbabilities,
}

#[derive(Debug, Clone)]
enum SavedProbabilities {
    Kernels(attention_products::Probabilities),
    Candle(Tensor),
}

/// The projections of x [tokens, hidden] with their LoRA paths, and RoPE:
/// q [tokens, heads, head_dim], k and v [tokens, kv_heads, head_dim], and
/// what the projections' backward needs.
fn project_qkv(
    attn: &Attention,
    lora: &LayerAdapter,
    x: &Tensor,
    rope: &RopeTables,
) -> Result<(Tensor, Tensor, Tensor, [LinearCache; 3])> {
    let tokens = x.dim(0)?;
    let (heads, kv_heads, head_dim) = (attn.num_heads, attn.num_kv_heads, attn.head_dim);
    let shared = SharedInput::default();
    let project = |projection, base| lora.linear(projection, base).forward_shared(x, &shared);
    let (q, q_cache) = project(Projection::Q, &*attn.q_proj)?; // [tokens, heads·head_dim]
    let (k, k_cache) = project(Projection::K, &*attn.k_proj)?; // [tokens, kv_heads·head_dim]
    let (v, v_cache) = project(Projection::V, &*attn.v_proj)?;
    let q = rope.apply(&q.reshape((tokens, heads, head_dim))?)?;
    let k = rope.apply(&k.reshape((tokens, kv_heads, head_dim))?)?;
    let v = v.reshape((tokens, kv_heads, head_dim))?;
    Ok((q, k, v, [q_cache, k_cache, v_cache]))
}

/// x [tokens, hidden] → [tokens, hidden] and the cache. `segments` are the
/// token ranges of the row's examples, in order and covering the row.
pub fn attention_forward(
    attn: &Attention,
    lora: &LayerAdapter,
    x: &Tensor,
    rope: &RopeTables,
    segments: &[Range<usize>],
) -> Result<(Tensor, AttentionCache)> {
    let tokens = x.dim(0)?;
    let (heads, kv_heads, head_dim) = (attn.num_heads, attn.num_kv_heads, attn.head_dim);
    let group = heads / kv_heads;
    let (q, k, v, [q_cache, k_cache, v_cache]) = project_qkv(attn, lora, x, rope)?;

    let scale = 1.0 / (head_dim as f64).sqrt();
    let mut contexts = Vec::with_capacity(segments.len());
    let mut saved = Vec::with_capacity(segments.len());
    for segment in segments {
        let (start, n) = (segment.start, segment.len());
        let q = head_major(&q, start, n)?.reshape((kv_heads, group * n, head_dim))?;
        let k = head_major(&k, start, n)?; // [kv_heads, n, head_dim]
        let v = head_major(&v, start, n)?;
        let (probs, context) = match attention_products::forward(&q, &k, &v, scale)? {
            Some((context, probs)) => (SavedProbabilities::Kernels(probs), context),
            None => {
                let scores = (q.matmul(&k.t()?)? * scale)?; // [kv_heads, group·n, n]
                let mask = causal_mask(n, n, x.dtype(), x.device())?; // [n, n]
                let scores = scores
                    .reshape((kv_heads, group, n, n))?
                    .broadcast_add(&mask)?;
                let probs = softmax_last_dim(&scores)?.reshape((kv_heads, group * n, n))?;
                let context = probs.matmul(&v)?; // [kv_heads, group·n, head_dim]
                (SavedProbabilities::Candle(probs), context)
            }
        };
        contexts.push(token_major(&context, heads, n, head_dim)?);
        saved.push(SegmentCache { q, k, v, probs });
    }
    let context = Tensor::cat(&contexts, 0)?.reshape((tokens, heads * head_dim))?;
    let (y, o_cache) = lora
        .linear(Projection::O, &*attn.o_proj)
        .forward(&context)?;
    Ok((
        y,
        AttentionCache {
            q_proj: q_cache,
            k_proj: k_cache,
            v_proj: v_cache,
            o_proj: o_cache,
            segments: saved,
        },
    ))
}

/// [`attention_forward`] for the new tokens of sequences whose earlier
/// keys and values sit in `caches` (generation): segment `i` of the row
/// continues the sequence of `caches[i]`, and its keys and values are
/// appended there; `rope` holds each token's absolute position. Nothing is
/// kept for a backward.
pub fn attention_forward_cached(
    attn: &Attention,
    lora: &LayerAdapter,
    x: &Tensor,
    rope: &RopeTables,
    segments: &[Range<usize>],
    caches: &mut [&mut LayerKv],
) -> Result<Tensor> {
    if caches.len() != segments.len() {
        return Err(ModelError::Input(format!(
            "{} sequences but {} caches; give one cache per sequence",
            segments.len(),
            caches.len()
        )));
    }
    let tokens = x.dim(0)?;
    let (heads, head_dim) = (attn.num_heads, attn.head_dim);
    let (q, k, v, _) = project_qkv(attn, lora, x, rope)?;
    let mut contexts = Vec::with_capacity(segments.len());
    for (segment, cache) in segments.iter().zip(caches.iter_mut()) {
        let (start, n) = (segment.start, segment.len());
        let q = head_major(&q, start, n)?; // [heads, n, head_dim]
        let k = k.narrow(0, start, n)?.transpose(0, 1)?; // [kv_heads, n, head_dim]
        let v = v.narrow(0, start, n)?.transpose(0, 1)?;
        let (k, v) = cache.append(&k, &v)?; // [kv_heads, t, head_dim]
        contexts.push(attn.attend(&q, &k, &v)?);
    }
    let context = Tensor::cat(&contexts, 0)?.reshape((tokens, heads * head_dim))?;
    let (y, _) = lora
        .linear(Projection::O, &*attn.o_proj)
        .forward(&context)?;
    Ok(y)
}

/// dy [tokens, hidden] → dx [tokens, hidden] (None unless `want_dx`), writing
/// the q/k/v/o LoRA gradients into `grads`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    attn: &Attention,
    lora: &LayerAdapter,
    rope: &RopeTables,
    segments: &[Range<usize>],
    cache: &AttentionCache,
    dy: &Tensor,
    grads: &mut LayerGrads,
    want_dx: bool,
) -> Result<Option<Tensor>> {
    let tokens = dy.dim(0)?;
    let (heads, kv_heads, head_dim) = (attn.num_heads, attn.num_kv_heads, attn.head_dim);
    let group = heads / kv_heads;
    let scale = 1.0 / (head_dim as f64).sqrt();

    let (d_context, d_lora) =
        lora.linear(Projection::O, &*attn.o_proj)
            .backward(&cache.o_proj, dy, true)?;
    grads[Projection::O.index()] = d_lora;
    let d_context = d_context
        .ok_or_else(|| ModelError::Input("o_proj's backward gave no input gradient".into()))?
        .reshape((tokens, heads, head_dim))?;

    let mut dqs = Vec::with_capacity(segments.len());
    let mut dks = Vec::with_capacity(segments.len());
    let mut dvs = Vec::with_capacity(segments.len());
    for (segment, saved) in segments.iter().zip(&cache.segments) {
        let (start, n) = (segment.start, segment.len());
        let dc = head_major(&d_context, start, n)?.reshape((kv_heads, group * n, head_dim))?;
        let (dq, dk, dv) = match &saved.probs {
            SavedProbabilities::Candle(probs) => candle_backward(saved, probs, &dc, scale)?,
            SavedProbabilities::Kernels(probs) => {
                attention_products::backward(&saved.q, &saved.k, &saved.v, probs, &dc, scale)?
                    .ok_or_else(|| {
                        ModelError::Input(
                    "internal: attention's forward ran on the CPU kernels but its backward cannot"
                        .into(),
                )
                    })?
            }
        };
        dqs.push(token_major(&dq, heads, n, head_dim)?);
        dks.push(dk.transpose(0, 1)?); // [n, kv_heads, head_dim]
        dvs.push(dv.transpose(0, 1)?);
    }
    let dq = rope_backward(
        rope,
        &Tensor::cat(&dqs, 0)?.reshape((tokens, heads, head_dim))?,
    )?;
    let dk = rope_backward(rope, &Tensor::cat(&dks, 0)?)?;
    let dv = Tensor::cat(&dvs, 0)?;

    let (dx_q, grad_q) = lora.linear(Projection::Q, &*attn.q_proj).backward(
        &cache.q_proj,
        &dq.reshape((tokens, heads * head_dim))?,
        want_dx,
    )?;
    let (dx_k, grad_k) = lora.linear(Projection::K, &*attn.k_proj).backward(
        &cache.k_proj,
        &dk.reshape((tokens, kv_heads * head_dim))?,
        want_dx,
    )?;
    let (dx_v, grad_v) = lora.linear(Projection::V, &*attn.v_proj).backward(
        &cache.v_proj,
        &dv.reshape((tokens, kv_heads * head_dim))?,
        want_dx,
    )?;
    grads[Projection::Q.index()] = grad_q;
    grads[Projection::K.index()] = grad_k;
    grads[Projection::V.index()] = grad_v;
    sum_inputs([dx_q, dx_k, dx_v])
}

/// dC [kv_heads, group·n, d] → (dQ, dK, dV) of one segment with candle's ops.
fn candle_backward(
    saved: &SegmentCache,
    probs: &Tensor,
    dc: &Tensor,
    scale: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dp = dc.matmul(&saved.v.t()?)?; // [kv_heads, group·n, n]
                                        // Contracting over the group·n rows sums the group's query heads, the
                                        // GQA reduction onto their shared kv head.
    let dv = probs.t()?.matmul(dc)?; // [kv_heads, n, head_dim]
                                     // Softmax backward: dS = P ⊙ (dP − Σ_j dP⊙P). Masked entries have
                                     // P = 0, so they get no gradient.
    let row_dot = (&dp * probs)?.sum_keepdim(D::Minus1)?; // [kv_heads, group·n, 1]
    let ds = (probs * dp.broadcast_sub(&row_dot)?)?.affine(scale, 0.0)?;
    let dq = ds.matmul(&saved.k)?; // [kv_heads, group·n, head_dim]
    let dk = ds.t()?.matmul(&saved.q)?; // [kv_heads, n, head_dim]
    Ok((dq, dk, dv))
}

/// Rows start..start+n of t [tokens, h, d] as a contiguous [h, n, d].
fn head_major(t: &Tensor, start: usize, n: usize) -> Result<Tensor> {
    Ok(t.narrow(0, start, n)?.transpose(0, 1)?.contiguous()?)
}

/// [kv_heads, group·n, d] (query head = kv_head·group + g) → [n, heads, d].
fn token_major(t: &Tensor, heads: usize, n: usize, head_dim: usize) -> Result<Tensor> {
    Ok(t.reshape((heads, n, head_dim))?.transpose(0, 1)?)
}
