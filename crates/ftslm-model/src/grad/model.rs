//! Loss and adapter gradients of one packed row through the whole model.
//!
//! Normalisation: the gradients are those of the row's *mean* NLL over its
//! target tokens (what transformers' causal-LM loss is for a batch of one),
//! and the returned [`TokenNll`] carries the sum and the count. Gradients are
//! linear in the loss, so a trainer rescales exactly after the fact: for a
//! micro-batch of rows, Σ_rows grads_r · (tokens_r / tokens_micro_batch)
//! is the gradient of the micro-batch's token mean; averaging micro-batches
//! (scale 1/accumulation_steps) gives transformers' classic gradient
//! accumulation, and weighting by tokens_mb / tokens_step instead gives its
//! newer "mean over every token of the optimizer step".

use std::time::Instant;

use candle_core::{Device, Tensor};

use crate::backend::Backend;
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::grad::cross_entropy::DEFAULT_CHUNK_TOKENS;
use crate::grad::decoder::{layer_backward, layer_forward, LayerCache};
use crate::grad::grads::AdapterGrads;
use crate::grad::linear::{LayerAdapter, LayerGrads};
use crate::llama::LlamaModel;
use crate::lora::{LoraAdapter, LoraDropout, Projection};
use crate::loss::TokenNll;

/// One packed row: examples back to back, each with positions from 0 and its
/// own segment id; `target_mask[t]` marks the tokens the loss covers (the
/// answer and end-of-turn tokens, or every non-pad token for `loss_on: all`).
#[derive(Debug, Clone, Copy)]
pub struct TrainingRow<'a> {
    pub input_ids: &'a [u32],
    pub positions: &'a [u32],
    pub segments: &'a [u32],
    pub target_mask: &'a [bool],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GradOptions {
    /// Keep only each decoder layer's input in the forward and recompute
    /// the layer in the backward: activation memory falls from
    /// layers × (everything a layer saves) to layers × [tokens, hidden] plus
    /// one layer's worth, for about one more forward pass of compute.
    pub checkpointing: bool,
    /// Target positions per cross-entropy chunk.
    pub chunk_tokens: usize,
}

impl Default for GradOptions {
    fn default() -> Self {
        GradOptions {
            checkpointing: true,
            chunk_tokens: DEFAULT_CHUNK_TOKENS,
        }
    }
}

/// What the forward keeps of one layer for the backward.
enum Saved<'a> {
    /// Checkpointed: the layer's input and the dropout stream as it stood
    /// before the layer drew its masks, so the recomputation draws them again.
    Input {
        x: Tensor,
        dropout: Option<LoraDropout>,
    },
    Full {
        lora: LayerAdapter<'a>,
        cache: LayerCache,
    },
}

/// Seconds one row spent in each pass of [`loss_and_grads_timed`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PassSeconds {
    /// Embedding and decoder layers.
    pub forward: f64,
    /// Final norm and the LM head's forward and backward, fused chunk by
    /// chunk (the logits never exist for the whole row).
    pub loss_head: f64,
    /// Decoder layers in reverse, recomputation included.
    pub backward: f64,
}

impl PassSeconds {
    pub fn add(&mut self, other: PassSeconds) {
        self.forward += other.forward;
        self.loss_head += other.loss_head;
        self.backward += other.backward;
    }
}

/// The row's summed NLL over its targets, and the gradient of its mean NLL
/// with respect to every LoRA matrix of `adapter`.
///
/// With `dropout`, masks are drawn as [`LlamaModel::forward_training`]
/// draws them, so the loss equals that forward's with an identically seeded
/// stream, and the stream ends in the same state with or without
/// checkpointing. A row with no target tokens returns zero
/// gradients without running the model (and draws no masks).
pub fn loss_and_grads(
    model: &LlamaModel,
    adapter: &LoraAdapter,
    row: &TrainingRow,
    dropout: Option<&mut LoraDropout>,
    options: &GradOptions,
) -> Result<(TokenNll, AdapterGrads)> {
    loss_and_grads_timed(model, adapter, row, dropout, options).map(|(nll, grads, _)| (nll, grads))
}

/// [`loss_and_grads`], and the seconds it spent in each pass.
pub fn loss_and_grads_timed(
    model: &LlamaModel,
    adapter: &LoraAdapter,
    row: &TrainingRow,
    mut dropout: Option<&mut LoraDropout>,
    options: &GradOptions,
) -> Result<(TokenNll, AdapterGrads, PassSeconds)> {
    let segments = model.check_row(row.input_ids, row.positions, row.segments)?;
    adapter.check_fits(model.config())?;
    let tokens = row.input_ids.len();
    if row.target_mask.len() != tokens {
        return Err(ModelError::Input(format!(
            "the row has {tokens} tokens but {} target mask entries",
            row.target_mask.len()
        )));
    }
    if options.chunk_tokens == 0 {
        return Err(ModelError::Input(
            "the cross-entropy chunk must hold at least one token".into(),
        ));
    }
    if row.target_mask.first() == Some(&true) {
        return Err(ModelError::Input(
            "token 0 is marked as a target, but nothing before it predicts it".into(),
        ));
    }
    if !row.target_mask.contains(&true) {
        let zeros = AdapterGrads::zeros_like(adapter)?;
        return Ok((TokenNll::default(), zeros, PassSeconds::default()));
    }
    let mut seconds = PassSeconds::default();
    let started = Instant::now();

    let config = model.config();
    let device = model.device();
    let backend = model.backend();
    let ids = Tensor::new(row.input_ids, device)?;
    let rope = model.rotary_embedding().tables(row.positions, device)?;

    // Forward, keeping per layer either its input or all its internals.
    let mut h = model.embed_tokens().index_select(&ids, 0)?; // [tokens, hidden]
    let mut saved = Vec::with_capacity(model.layers().len());
    for (index, layer) in model.layers().iter().enumerate() {
        let before = match (&dropout, options.checkpointing) {
            (Some(d), true) => Some((**d).clone()),
            _ => None,
        };
        let lora = layer_adapter(
            backend,
            config,
            adapter,
            index,
            tokens,
            dropout.as_deref_mut(),
            device,
        )?;
        let (out, cache) = layer_forward(backend, layer, &lora, &h, &rope, &segments)?;
        saved.push(if options.checkpointing {
            Saved::Input {
                x: h,
                dropout: before,
            }
        } else {
            Saved::Full { lora, cache }
        });
        h = out;
    }

    seconds.forward = started.elapsed().as_secs_f64();

    // Loss head: final norm, then the LM head chunk by chunk.
    let started = Instant::now();
    let normed = backend.rms_norm(model.final_norm(), &h)?;
    let (nll, d_normed) = backend.cross_entropy(
        &normed,
        model,
        row.input_ids,
        row.target_mask,
        options.chunk_tokens,
    )?;
    let mut dh = backend.rms_norm_backward(model.final_norm(), &h, &d_normed)?;
    seconds.loss_head = started.elapsed().as_secs_f64();
    let started = Instant::now();

    // Backward, last layer first; the first layer's input gradient would only
    // reach the frozen embeddings, so it is not computed.
    let mut grads: Vec<LayerGrads> = vec![Default::default(); model.layers().len()];
    for (index, layer) in model.layers().iter().enumerate().rev() {
        let (lora, cache) = match saved.pop() {
            Some(Saved::Full { lora, cache }) => (lora, cache),
            Some(Saved::Input { x, dropout }) => {
                let mut dropout = dropout;
                let lora = layer_adapter(
                    backend,
                    config,
                    adapter,
                    index,
                    tokens,
                    dropout.as_mut(),
                    device,
                )?;
                let (_, cache) = layer_forward(backend, layer, &lora, &x, &rope, &segments)?;
                (lora, cache)
            }
            None => {
                return Err(ModelError::Input(
                    "internal: a decoder layer's forward state is missing".into(),
                ))
            }
        };
        let (dx, layer_grads) = layer_backward(
            backend,
            layer,
            &lora,
            &rope,
            &segments,
            &cache,
            &dh,
            index > 0,
        )?;
        grads[index] = layer_grads;
        if let Some(dx) = dx {
            dh = dx;
        }
    }
    seconds.backward = started.elapsed().as_secs_f64();
    Ok((nll, AdapterGrads::from_layers(grads), seconds))
}

/// Layer `index` of the adapter with its dropout masks: one [tokens, in]
/// mask per adapted projection, in `Projection::ALL` order.
pub(crate) fn layer_adapter<'a>(
    backend: &dyn Backend,
    config: &LlamaConfig,
    adapter: &'a LoraAdapter,
    index: usize,
    tokens: usize,
    dropout: Option<&mut LoraDropout>,
    device: &Device,
) -> Result<LayerAdapter<'a>> {
    let mut lora = LayerAdapter::from_adapter(adapter, index);
    if let Some(dropout) = dropout {
        for projection in Projection::ALL {
            if lora.weights[projection.index()].is_some() {
                let (_, in_features) = projection.shape(config);
                lora.keep[projection.index()] =
                    backend.dropout_mask(dropout, &[tokens, in_features], device)?;
            }
        }
    }
    Ok(lora)
}
