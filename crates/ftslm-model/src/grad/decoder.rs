//! One decoder layer, forward with its saved internals and backward:
//!
//!   mid = x + attention(input_layernorm(x))
//!   out = mid + mlp(post_attention_layernorm(mid))
//!
//! The residual adds pass the gradient through unchanged, so each branch's
//! input gradient is added to it. This is the model's one decoder layer:
//! training, evaluation and generation all run it.

use std::ops::Range;

use candle_core::Tensor;

use crate::attention::LayerKv;
use crate::backend::Backend;
use crate::error::Result;
use crate::grad::attention::{
    attention_backward, attention_forward, attention_forward_cached, AttentionCache,
};
use crate::grad::linear::{LayerAdapter, LayerGrads};
use crate::grad::mlp::{mlp_backward, mlp_forward, MlpCache};
use crate::llama::DecoderLayer;
use crate::rope::RopeTables;

/// Everything the layer's backward reads. Under gradient checkpointing it
/// exists for one layer at a time, rebuilt from the layer's input.
#[derive(Debug, Clone)]
pub struct LayerCache {
    /// x [tokens, hidden]
    input: Tensor,
    attention: AttentionCache,
    /// mid [tokens, hidden]
    mid: Tensor,
    mlp: MlpCache,
}

/// x [tokens, hidden] → out [tokens, hidden] and the cache.
pub fn layer_forward(
    backend: &dyn Backend,
    layer: &DecoderLayer,
    lora: &LayerAdapter,
    x: &Tensor,
    rope: &RopeTables,
    segments: &[Range<usize>],
) -> Result<(Tensor, LayerCache)> {
    let (out, attention, mid, mlp) = decoder_block(backend, layer, lora, x, |normed| {
        attention_forward(backend, &layer.self_attn, lora, normed, rope, segments)
    })?;
    let cache = LayerCache {
        input: x.clone(),
        attention,
        mid,
        mlp,
    };
    Ok((out, cache))
}

/// [`layer_forward`] for generation: the new tokens of sequences whose keys
/// and values sit in `caches` (see `attention_forward_cached`); nothing is
/// kept for a backward.
pub fn layer_forward_cached(
    backend: &dyn Backend,
    layer: &DecoderLayer,
    lora: &LayerAdapter,
    x: &Tensor,
    rope: &RopeTables,
    segments: &[Range<usize>],
    caches: &mut [&mut LayerKv],
) -> Result<Tensor> {
    let (out, ..) = decoder_block(backend, layer, lora, x, |normed| {
        let attended = attention_forward_cached(
            backend,
            &layer.self_attn,
            lora,
            normed,
            rope,
            segments,
            caches,
        )?;
        Ok((attended, ()))
    })?;
    Ok(out)
}

/// The layer's two pre-norm residual blocks around `attend`, which maps the
/// normed x to the attention's output (and what it saves): out, the
/// attention's saved state, mid and the MLP's cache.
fn decoder_block<A>(
    backend: &dyn Backend,
    layer: &DecoderLayer,
    lora: &LayerAdapter,
    x: &Tensor,
    attend: impl FnOnce(&Tensor) -> Result<(Tensor, A)>,
) -> Result<(Tensor, A, Tensor, MlpCache)> {
    let normed = backend.rms_norm(&layer.input_layernorm, x)?;
    let (attended, attention) = attend(&normed)?;
    let mid = (x + attended)?;
    let normed = backend.rms_norm(&layer.post_attention_layernorm, &mid)?;
    let (transformed, mlp) = mlp_forward(backend, &layer.mlp, lora, &normed)?;
    let out = (&mid + transformed)?;
    Ok((out, attention, mid, mlp))
}

/// d_out [tokens, hidden] → (dx [tokens, hidden] unless `want_dx` is false,
/// the layer's LoRA gradients).
#[allow(clippy::too_many_arguments)]
pub fn layer_backward(
    backend: &dyn Backend,
    layer: &DecoderLayer,
    lora: &LayerAdapter,
    rope: &RopeTables,
    segments: &[Range<usize>],
    cache: &LayerCache,
    d_out: &Tensor,
    want_dx: bool,
) -> Result<(Option<Tensor>, LayerGrads)> {
    let mut grads: LayerGrads = Default::default();
    let d_normed = mlp_backward(backend, &layer.mlp, lora, &cache.mlp, d_out, &mut grads)?;
    let d_mid = (d_out
        + backend.rms_norm_backward(&layer.post_attention_layernorm, &cache.mid, &d_normed)?)?;
    let d_normed = attention_backward(
        backend,
        &layer.self_attn,
        lora,
        rope,
        segments,
        &cache.attention,
        &d_mid,
        &mut grads,
        want_dx,
    )?;
    let dx = match d_normed {
        Some(d_normed) => {
            let d_input =
                backend.rms_norm_backward(&layer.input_layernorm, &cache.input, &d_normed)?;
            Some((&d_mid + d_input)?)
        }
        None => None,
    };
    Ok((dx, grads))
}
