//! Forward and backward of one projection: a frozen weight W plus an optional
//! LoRA path, as PEFT computes it,
//!
//!   y = x·Wᵀ + s · ((x ⊙ keep)·Aᵀ)·Bᵀ        x [rows, in], y [rows, out]
//!
//! with A [r, in], B [out, r], s the adapter's scale and `keep` the dropout
//! mask (0 or 1/(1−p)). W is only ever applied forward or transposed
//! (`backward_input`), so quantized weights plug in; A and B get gradients.

use candle_core::Tensor;

use crate::backend::{Backend, FrozenInputGradient, LoraSaved};
use crate::dropout::DropoutMask;
use crate::error::{ModelError, Result};
use crate::frozen_linear::{FrozenWeight, SharedInput};
use crate::lora::{LoraAdapter, LoraWeights, Projection};

/// The LoRA matrices, scale and dropout masks of one decoder layer, indexed
/// by `Projection::index()`. The masks are drawn before the layer runs so a
/// checkpointed recomputation can be handed exactly the same ones.
#[derive(Debug, Clone)]
pub struct LayerAdapter<'a> {
    pub weights: [Option<&'a LoraWeights>; 7],
    pub scale: f64,
    /// [rows, in] per adapted projection; None means no dropout.
    pub keep: [Option<DropoutMask>; 7],
}

impl<'a> LayerAdapter<'a> {
    /// No adapter at all: every projection is its frozen weight alone.
    pub fn none() -> Self {
        LayerAdapter {
            weights: Default::default(),
            scale: 0.0,
            keep: Default::default(),
        }
    }

    /// Layer `layer` of `adapter`, without dropout masks.
    pub fn from_adapter(adapter: &'a LoraAdapter, layer: usize) -> Self {
        let mut weights: [Option<&LoraWeights>; 7] = Default::default();
        for projection in Projection::ALL {
            weights[projection.index()] = adapter.get(layer, projection);
        }
        LayerAdapter {
            weights,
            scale: adapter.scale(),
            keep: Default::default(),
        }
    }

    /// One projection of the layer, computed on `backend`.
    pub fn linear<'b>(
        &'b self,
        backend: &'b dyn Backend,
        projection: Projection,
        base: &'b dyn FrozenWeight,
    ) -> AdaptedLinear<'b> {
        AdaptedLinear {
            backend,
            base,
            lora: self.weights[projection.index()],
            scale: self.scale,
            keep: self.keep[projection.index()].as_ref(),
        }
    }
}

/// The gradients of one layer's LoRA matrices, indexed like `LayerAdapter`:
/// `a` holds dL/dA [r, in] and `b` dL/dB [out, r].
pub type LayerGrads = [Option<LoraWeights>; 7];

/// One projection as the backward pass sees it.
#[derive(Debug, Clone, Copy)]
pub struct AdaptedLinear<'a> {
    pub backend: &'a dyn Backend,
    pub base: &'a dyn FrozenWeight,
    pub lora: Option<&'a LoraWeights>,
    pub scale: f64,
    /// [rows, in]
    pub keep: Option<&'a DropoutMask>,
}

/// What the backward needs from the forward. The frozen path needs nothing
/// (dx = dy·W does not depend on x); the LoRA path needs its masked input
/// and the rank-r intermediate, both small next to W.
#[derive(Debug, Clone)]
pub struct LinearCache {
    lora: Option<LoraCache>,
}

#[derive(Debug, Clone)]
struct LoraCache {
    /// x ⊙ keep [rows, in]; the same storage as x when there is no dropout.
    x_kept: Tensor,
    /// (x ⊙ keep)·Aᵀ [rows, r]
    down: Tensor,
}

impl AdaptedLinear<'_> {
    /// x [rows, in] → y [rows, out]
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, LinearCache)> {
        self.forward_shared(x, &SharedInput::default())
    }

    /// [`AdaptedLinear::forward`] of an input other projections read too.
    pub fn forward_shared(
        &self,
        x: &Tensor,
        shared: &SharedInput,
    ) -> Result<(Tensor, LinearCache)> {
        let y = self.backend.frozen_forward(self.base, x, shared)?;
        let Some(lora) = self.lora else {
            return Ok((y, LinearCache { lora: None }));
        };
        let x_kept = match self.keep {
            Some(keep) => self.backend.apply_dropout(keep, x)?,
            None => x.clone(),
        };
        let (y, down) = self.backend.lora_forward(y, &x_kept, lora, self.scale)?;
        Ok((
            y,
            LinearCache {
                lora: Some(LoraCache { x_kept, down }),
            },
        ))
    }

    /// dy [rows, out] → dx [rows, in] (None when `want_dx` is false: the
    /// first layer's input leads only to the frozen embeddings) and, when the
    /// projection is adapted, (dA [r, in], dB [out, r]).
    pub fn backward(
        &self,
        cache: &LinearCache,
        dy: &Tensor,
        want_dx: bool,
    ) -> Result<(Option<Tensor>, Option<LoraWeights>)> {
        let dx_base = if want_dx {
            Some(self.backend.frozen_input_gradient(self.base, dy)?)
        } else {
            None
        };
        let (lora, saved) =
            match (self.lora, &cache.lora) {
                (None, _) => return Ok((dx_base, None)),
                (Some(lora), Some(saved)) => (lora, saved),
                (Some(_), None) => return Err(ModelError::Input(
                    "a LoRA projection's backward was given the cache of a forward without LoRA"
                        .into(),
                )),
            };
        let frozen = dx_base.as_ref().map(|dx| FrozenInputGradient {
            dx,
            keep: self.keep,
        });
        let saved = LoraSaved {
            x_kept: &saved.x_kept,
            down: &saved.down,
        };
        let (dx, grads) = self
            .backend
            .lora_backward(dy, saved, lora, self.scale, frozen)?;
        Ok((dx, Some(grads)))
    }
}
