//! Forward and backward of one projection: a frozen weight W plus an optional
//! LoRA path, as PEFT computes it,
//!
//!   y = x·Wᵀ + s · ((x ⊙ keep)·Aᵀ)·Bᵀ        x [rows, in], y [rows, out]
//!
//! with A [r, in], B [out, r], s the adapter's scale and `keep` the dropout
//! mask (0 or 1/(1−p)). W is only ever applied forward or transposed
//! (`backward_input`), so quantized weights plug in; A and B get gradients.

use candle_core::Tensor;

use crate::dropout::DropoutMask;
use crate::error::{ModelError, Result};
use crate::frozen_linear::{FrozenWeight, SharedInput};
use crate::grad::lora_products::{self, FrozenInputGradient};
use crate::kernel;
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

    pub fn linear<'b>(
        &'b self,
        projection: Projection,
        base: &'b dyn FrozenWeight,
    ) -> AdaptedLinear<'b> {
        AdaptedLinear {
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
        let y = self.base.forward_shared(x, shared)?;
        let Some(lora) = self.lora else {
            return Ok((y, LinearCache { lora: None }));
        };
        let x_kept = match self.keep {
            Some(keep) => keep.apply(x)?,
            None => x.clone(),
        };
        let (y, down) = match lora_products::forward(&y, &x_kept, lora, self.scale)? {
            Some(on_kernels) => on_kernels,
            None => {
                let down = x_kept.matmul(&lora.a.t()?)?; // [rows, r]
                let up = down.matmul(&lora.b.t()?)?; // [rows, out]
                ((y + up.affine(self.scale, 0.0)?)?, down)
            }
        };
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
            Some(self.base.backward_input(dy)?)
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
        // y_lora = s·down·Bᵀ. The scale goes on the rank-r tensors, the smallest.
        let want_dx = dx_base.is_some();
        let frozen = dx_base.as_ref().map(|dx| FrozenInputGradient {
            dx,
            keep: self.keep,
        });
        let on_kernels =
            lora_products::backward(dy, &saved.x_kept, &saved.down, lora, self.scale, frozen)?;
        // The kernels add the frozen path's gradient themselves.
        if let Some((dx, grads)) = on_kernels {
            return Ok((dx, Some(grads)));
        }
        let db = dy.t()?.matmul(&saved.down.affine(self.scale, 0.0)?)?; // [out, r]
        let d_down = dy.matmul(&lora.b)?.affine(self.scale, 0.0)?; // [rows, r]
        let da = d_down.t()?.matmul(&saved.x_kept)?; // [r, in]
        let d_kept = if want_dx {
            Some(d_down.matmul(&lora.a)?) // [rows, in]
        } else {
            None
        };
        let grads = LoraWeights { a: da, b: db };
        let dx = match (dx_base, d_kept) {
            (Some(dx_base), Some(d_kept)) => {
                let d_kept = match self.keep {
                    Some(keep) => keep.apply(&d_kept)?,
                    None => d_kept,
                };
                Some((dx_base + d_kept)?)
            }
            (dx_base, _) => dx_base,
        };
        Ok((dx, Some(grads)))
    }
}

/// dx of several projections that read the same input, summed; None when
/// none was asked for. Three CPU f32 parts of one shape are summed in one
/// pass, as `(a + b) + c` (the same roundings as two candle adds).
pub(crate) fn sum_inputs(parts: [Option<Tensor>; 3]) -> Result<Option<Tensor>> {
    if let [Some(a), Some(b), Some(c)] = &parts {
        if a.dims() == b.dims() && a.dims() == c.dims() {
            let summed = kernel::with_cpu_f32s([a, b, c], |[a, b, c]| {
                let mut sum = vec![0f32; a.len()];
                for (((s, &a), &b), &c) in sum.iter_mut().zip(a).zip(b).zip(c) {
                    *s = (a + b) + c;
                }
                sum
            });
            if let Some(sum) = summed {
                return Ok(Some(Tensor::from_vec(sum, a.shape(), a.device())?));
            }
        }
    }
    let mut total: Option<Tensor> = None;
    for part in parts.into_iter().flatten() {
        total = Some(match total {
            Some(t) => (t + part)?,
            None => part,
        });
    }
    Ok(total)
}
