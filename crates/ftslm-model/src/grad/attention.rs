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

use candle_core::Tensor;

use crate::attention::{Attention, LayerKv};
use crate::backend::{Backend, SavedProbabilities};
use crate::error::{ModelError, Result};
use crate::frozen_linear::SharedInput;
use crate::grad::linear::{LayerAdapter, LayerGrads, LinearCache};
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
    /// softmax probabilities, as the backend keeps them
    probs: SavedProbabilities,
}

/// The projections of x [tokens, hidden] with their LoRA paths, and RoPE:
/// q [tokens, heads, head_dim], k and v [tokens, kv_heads, head_dim], and
/// what the projections' backward needs.
fn project_qkv(
    backend: &dyn Backend,
    attn: &Attention,
    lora: &LayerAdapter,
    x: &Tensor,
    rope: &RopeTables,
) -> Result<(Tensor, Tensor, Tensor, [LinearCache; 3])> {
    let tokens = x.dim(0)?;
    let (heads, kv_heads, head_dim) = (attn.num_heads, attn.num_kv_heads, attn.head_dim);
    let shared = SharedInput::default();
    let project = |projection, base| {
        lora.linear(backend, projection, base)
            .forward_shared(x, &shared)
    };
    let (q, q_cache) = project(Projection::Q, &*attn.q_proj)?; // [tokens, heads·head_dim]
    let (k, k_cache) = project(Projection::K, &*attn.k_proj)?; // [tokens, kv_heads·head_dim]
    let (v, v_cache) = project(Projection::V, &*attn.v_proj)?;
    let q = backend.rope(rope, &q.reshape((tokens, heads, head_dim))?)?;
    let k = backend.rope(rope, &k.reshape((tokens, kv_heads, head_dim))?)?;
    let v = v.reshape((tokens, kv_heads, head_dim))?;
    Ok((q, k, v, [q_cache, k_cache, v_cache]))
}

/// x [tokens, hidden] → [tokens, hidden] and the cache. `segments` are the
/// token ranges of the row's examples, in order and covering the row.
pub fn attention_forward(
    backend: &dyn Backend,
    attn: &Attention,
    lora: &LayerAdapter,
    x: &Tensor,
    rope: &RopeTables,
    segments: &[Range<usize>],
) -> Result<(Tensor, AttentionCache)> {
    let tokens = x.dim(0)?;
    let (heads, kv_heads, head_dim) = (attn.num_heads, attn.num_kv_heads, attn.head_dim);
    let group = heads / kv_heads;
    let (q, k, v, [q_cache, k_cache, v_cache]) = project_qkv(backend, attn, lora, x, rope)?;

    let scale = 1.0 / (head_dim as f64).sqrt();
    let mut contexts = Vec::with_capacity(segments.len());
    let mut saved = Vec::with_capacity(segments.len());
    for segment in segments {
        let (start, n) = (segment.start, segment.len());
        let q = head_major(&q, start, n)?.reshape((kv_heads, group * n, head_dim))?;
        let k = head_major(&k, start, n)?; // [kv_heads, n, head_dim]
        let v = head_major(&v, start, n)?;
        let (context, probs) = backend.causal_attention(&q, &k, &v, scale)?;
        contexts.push(token_major(&context, heads, n, head_dim)?);
        saved.push(SegmentCache { q, k, v, probs });
    }
    let context = Tensor::cat(&contexts, 0)?.reshape((tokens, heads * head_dim))?;
    let (y, o_cache) = lora
        .linear(backend, Projection::O, &*attn.o_proj)
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
    backend: &dyn Backend,
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
    let (q, k, v, _) = project_qkv(backend, attn, lora, x, rope)?;
    let mut contexts = Vec::with_capacity(segments.len());
    for (segment, cache) in segments.iter().zip(caches.iter_mut()) {
        let (start, n) = (segment.start, segment.len());
        let q = head_major(&q, start, n)?; // [heads, n, head_dim]
        let k = k.narrow(0, start, n)?.transpose(0, 1)?; // [kv_heads, n, head_dim]
        let v = v.narrow(0, start, n)?.transpose(0, 1)?;
        let (k, v) = cache.append(&k, &v)?; // [kv_heads, t, head_dim]
        contexts.push(backend.cached_attention(&q, &k, &v)?);
    }
    let context = Tensor::cat(&contexts, 0)?.reshape((tokens, heads * head_dim))?;
    let (y, _) = lora
        .linear(backend, Projection::O, &*attn.o_proj)
        .forward(&context)?;
    Ok(y)
}

/// dy [tokens, hidden] → dx [tokens, hidden] (None unless `want_dx`), writing
/// the q/k/v/o LoRA gradients into `grads`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    backend: &dyn Backend,
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

    let (d_context, d_lora) = lora
        .linear(backend, Projection::O, &*attn.o_proj)
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
        let (dq, dk, dv) = backend.causal_attention_backward(
            [&saved.q, &saved.k, &saved.v],
            &saved.probs,
            &dc,
            scale,
        )?;
        dqs.push(token_major(&dq, heads, n, head_dim)?);
        dks.push(dk.transpose(0, 1)?); // [n, kv_heads, head_dim]
        dvs.push(dv.transpose(0, 1)?);
    }
    let dq = backend.rope_backward(
        rope,
        &Tensor::cat(&dqs, 0)?.reshape((tokens, heads, head_dim))?,
    )?;
    let dk = backend.rope_backward(rope, &Tensor::cat(&dks, 0)?)?;
    let dv = Tensor::cat(&dvs, 0)?;

    let (dx_q, grad_q) = lora
        .linear(backend, Projection::Q, &*attn.q_proj)
        .backward(
            &cache.q_proj,
            &dq.reshape((tokens, heads * head_dim))?,
            want_dx,
        )?;
    let (dx_k, grad_k) = lora
        .linear(backend, Projection::K, &*attn.k_proj)
        .backward(
            &cache.k_proj,
            &dk.reshape((tokens, kv_heads * head_dim))?,
            want_dx,
        )?;
    let (dx_v, grad_v) = lora
        .linear(backend, Projection::V, &*attn.v_proj)
        .backward(
            &cache.v_proj,
            &dv.reshape((tokens, kv_heads * head_dim))?,
            want_dx,
        )?;
    grads[Projection::Q.index()] = grad_q;
    grads[Projection::K.index()] = grad_k;
    grads[Projection::V.index()] = grad_v;
    backend.sum_input_gradients([dx_q, dx_k, dx_v])
}

/// Rows start..start+n of t [tokens, h, d] as a contiguous [h, n, d].
fn head_major(t: &Tensor, start: usize, n: usize) -> Result<Tensor> {
    Ok(t.narrow(0, start, n)?.transpose(0, 1)?.contiguous()?)
}

/// [kv_heads, group·n, d] (query head = kv_head·group + g) → [n, heads, d].
fn token_major(t: &Tensor, heads: usize, n: usize, head_dim: usize) -> Result<Tensor> {
    Ok(t.reshape((heads, n, head_dim))?.transpose(0, 1)?)
}
