//! The compute-backend seam: every operation the layer code (`grad::*`)
//! runs on activations, as one trait. The layer code — the decoder layer's
//! forward and backward, its recomputation under gradient checkpointing, the
//! loss head and generation's KV-cache forward — is written once against
//! [`Backend`]; a backend decides how each operation runs on its device.
//!
//! Buffers are candle tensors, because candle runs on CPU and CUDA alike
//! (f32 or bf16, on the tensor's device); what an operation keeps for its
//! backward ([`SavedProbabilities`]) is the backend's own. The frozen
//! weights (`FrozenWeight`: dense, NF4, GGUF blocks) and the dropout masks
//! are handed over as they are stored, so a backend may read their codes.
//! The AdamW update and the copies between host and device are the
//! training engine's (`ftslm-train`), on the flat f32 values of the LoRA
//! matrices.
//!
//! [`CpuBackend`] is the one backend today: `ftslm-kernels` on f32 CPU
//! tensors, candle's own ops for anything else (other dtypes, as in the f64
//! gradient tests, or other devices).

mod cpu;

use std::fmt::Debug;

use candle_core::{Device, Tensor};

pub use cpu::CpuBackend;

use crate::dropout::{DropoutMask, LoraDropout};
use crate::error::Result;
use crate::frozen_linear::{FrozenWeight, SharedInput};
use crate::grad::attention_products::Probabilities;
use crate::llama::LlamaModel;
use crate::lora::LoraWeights;
use crate::loss::TokenNll;
use crate::norm::RmsNorm;
use crate::rope::RopeTables;

/// The operations of the layer code. Shapes: x [rows, in], y [rows, out];
/// attention per segment with the `g` query heads of a kv head stacked as
/// rows, q [kv_heads, g·n, d], k and v [kv_heads, n, d].
pub trait Backend: Debug + Send + Sync {
    /// y = x·Wᵀ. `shared` keeps what W prepares from x for the other
    /// weights that multiply the same x (q, k, v; gate, up).
    fn frozen_forward(
        &self,
        weight: &dyn FrozenWeight,
        x: &Tensor,
        shared: &SharedInput,
    ) -> Result<Tensor>;

    /// dx = dy·W.
    fn frozen_input_gradient(&self, weight: &dyn FrozenWeight, dy: &Tensor) -> Result<Tensor>;

    /// (y + s·(x̃·Aᵀ)·Bᵀ, down = x̃·Aᵀ [rows, r]) for the frozen output `y`
    /// and the input after dropout x̃.
    fn lora_forward(
        &self,
        y: Tensor,
        x_kept: &Tensor,
        lora: &LoraWeights,
        scale: f64,
    ) -> Result<(Tensor, Tensor)>;

    /// (dx, dA, dB) from dy and the forward's x̃ and down. dx, only when
    /// `frozen` is given, is the frozen path's dx plus the LoRA path's
    /// through the dropout mask.
    fn lora_backward(
        &self,
        dy: &Tensor,
        saved: LoraSaved<'_>,
        lora: &LoraWeights,
        scale: f64,
        frozen: Option<FrozenInputGradient<'_>>,
    ) -> Result<(Option<Tensor>, LoraWeights)>;

    /// x [tokens, hidden] normalised and scaled, RMSNorm as Llama has it.
    fn rms_norm(&self, norm: &RmsNorm, x: &Tensor) -> Result<Tensor>;

    /// dx of [`Backend::rms_norm`] (the norm weight is frozen).
    fn rms_norm_backward(&self, norm: &RmsNorm, x: &Tensor, dy: &Tensor) -> Result<Tensor>;

    /// x [tokens, heads, head_dim] rotated by each token's angles.
    fn rope(&self, tables: &RopeTables, x: &Tensor) -> Result<Tensor>;

    /// dy rotated back (the rotation's transpose).
    fn rope_backward(&self, tables: &RopeTables, dy: &Tensor) -> Result<Tensor>;

    /// One segment's causal attention: C = softmax(Q·Kᵀ·c + mask)·V and
    /// what the backward needs of the probabilities.
    fn causal_attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        scale: f64,
    ) -> Result<(Tensor, SavedProbabilities)>;

    /// (dQ, dK, dV) of one segment from dC [kv_heads, g·n, d].
    fn causal_attention_backward(
        &self,
        qkv: [&Tensor; 3],
        probabilities: &SavedProbabilities,
        d_context: &Tensor,
        scale: f64,
    ) -> Result<(Tensor, Tensor, Tensor)>;

    /// The new tokens' attention over a sequence's KV cache: q [heads, n, d]
    /// are the last n of the t positions k, v [kv_heads, t, d] hold; returns
    /// the context [n, heads·d].
    fn cached_attention(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor>;

    /// silu(gate) ⊙ up.
    fn swiglu(&self, gate: &Tensor, up: &Tensor) -> Result<Tensor>;

    /// (∂L/∂gate, ∂L/∂up) from ∂L/∂(silu(gate) ⊙ up).
    fn swiglu_backward(
        &self,
        d_activated: &Tensor,
        gate: &Tensor,
        up: &Tensor,
    ) -> Result<(Tensor, Tensor)>;

    /// The row's summed NLL over its targets and the gradient of its mean
    /// with respect to `hidden`, through `model`'s LM head a chunk of target
    /// positions at a time (the logits never exist for the whole row).
    fn cross_entropy(
        &self,
        hidden: &Tensor,
        model: &LlamaModel,
        input_ids: &[u32],
        target_mask: &[bool],
        chunk_tokens: usize,
    ) -> Result<(TokenNll, Tensor)>;

    /// The next dropout mask of `dims` from the seeded stream (None at p = 0).
    fn dropout_mask(
        &self,
        dropout: &mut LoraDropout,
        dims: &[usize],
        device: &Device,
    ) -> Result<Option<DropoutMask>>;

    /// x ⊙ mask.
    fn apply_dropout(&self, mask: &DropoutMask, x: &Tensor) -> Result<Tensor>;

    /// The sum of the input gradients of projections that read one input
    /// (q, k, v; gate, up); None when none was computed.
    fn sum_input_gradients(&self, parts: [Option<Tensor>; 3]) -> Result<Option<Tensor>>;
}

/// What a LoRA projection's forward kept: x̃ [rows, in] and down [rows, r].
#[derive(Debug, Clone, Copy)]
pub struct LoraSaved<'a> {
    pub x_kept: &'a Tensor,
    pub down: &'a Tensor,
}

/// The frozen path's input gradient and the dropout mask (None: no
/// dropout), to which the LoRA path adds its own.
#[derive(Debug, Clone, Copy)]
pub struct FrozenInputGradient<'a> {
    pub dx: &'a Tensor,
    pub keep: Option<&'a DropoutMask>,
}

/// The softmax probabilities an attention forward keeps for its backward.
#[derive(Debug, Clone)]
pub enum SavedProbabilities {
    /// `ftslm-kernels`' causal blocks (f32, CPU).
    Kernels(Probabilities),
    /// [kv_heads, g·n, n] on the tensors' device.
    Tensor(Tensor),
}

/// The backend for tensors on `device`.
pub fn for_device(device: &Device) -> &'static dyn Backend {
    // Every device runs the CPU backend today: off the CPU its operations
    // are candle's own. The CUDA backend (issue 15) is chosen here.
    let _ = device;
    &CpuBackend
}
