//! The CPU backend: each operation on `ftslm-kernels` where its tensors are
//! f32 in CPU memory and the kernels fit their shapes, on candle's own ops
//! otherwise (the f64 gradient tests, tensors on another device).

use candle_core::{Device, Tensor, D};

use super::{Backend, FrozenInputGradient, LoraSaved, SavedProbabilities};
use crate::attention::{causal_mask, softmax_last_dim};
use crate::dropout::{DropoutMask, LoraDropout};
use crate::error::{ModelError, Result};
use crate::frozen_linear::{FrozenWeight, SharedInput};
use crate::grad::cross_entropy::{chunked_cross_entropy_with, LmHead};
use crate::grad::rmsnorm::rms_norm_backward;
use crate::grad::rope::rope_backward;
use crate::grad::{attention_products, lora_products};
use crate::kernel;
use crate::llama::LlamaModel;
use crate::lora::LoraWeights;
use crate::loss::TokenNll;
use crate::norm::RmsNorm;
use crate::rope::RopeTables;
use crate::swiglu::{swiglu, swiglu_backward};

/// `ftslm-kernels` on the CPU, candle's ops elsewhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuBackend;

impl Backend for CpuBackend {
    fn frozen_forward(
        &self,
        weight: &dyn FrozenWeight,
        x: &Tensor,
        shared: &SharedInput,
    ) -> Result<Tensor> {
        weight.forward_shared(x, shared)
    }

    fn frozen_input_gradient(&self, weight: &dyn FrozenWeight, dy: &Tensor) -> Result<Tensor> {
        weight.backward_input(dy)
    }

    fn lora_forward(
        &self,
        y: Tensor,
        x_kept: &Tensor,
        lora: &LoraWeights,
        scale: f64,
    ) -> Result<(Tensor, Tensor)> {
        if let Some(on_kernels) = lora_products::forward(&y, x_kept, lora, scale)? {
            return Ok(on_kernels);
        }
        let down = x_kept.matmul(&lora.a.t()?)?; // [rows, r]
        let up = down.matmul(&lora.b.t()?)?; // [rows, out]
        Ok(((y + up.affine(scale, 0.0)?)?, down))
    }

    fn lora_backward(
        &self,
        dy: &Tensor,
        saved: LoraSaved<'_>,
        lora: &LoraWeights,
        scale: f64,
        frozen: Option<FrozenInputGradient<'_>>,
    ) -> Result<(Option<Tensor>, LoraWeights)> {
        // The kernels add the frozen path's gradient themselves.
        let on_kernels =
            lora_products::backward(dy, saved.x_kept, saved.down, lora, scale, frozen)?;
        if let Some(on_kernels) = on_kernels {
            return Ok(on_kernels);
        }
        // y_lora = s·down·Bᵀ. The scale goes on the rank-r tensors, the smallest.
        let db = dy.t()?.matmul(&saved.down.affine(scale, 0.0)?)?; // [out, r]
        let d_down = dy.matmul(&lora.b)?.affine(scale, 0.0)?; // [rows, r]
        let da = d_down.t()?.matmul(saved.x_kept)?; // [r, in]
        let grads = LoraWeights { a: da, b: db };
        let Some(frozen) = frozen else {
            return Ok((None, grads));
        };
        let d_kept = d_down.matmul(&lora.a)?; // [rows, in]
        let d_kept = match frozen.keep {
            Some(keep) => keep.apply(&d_kept)?,
            None => d_kept,
        };
        Ok((Some((frozen.dx + d_kept)?), grads))
    }

    fn rms_norm(&self, norm: &RmsNorm, x: &Tensor) -> Result<Tensor> {
        norm.forward(x)
    }

    fn rms_norm_backward(&self, norm: &RmsNorm, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
        rms_norm_backward(norm, x, dy)
    }

    fn rope(&self, tables: &RopeTables, x: &Tensor) -> Result<Tensor> {
        tables.apply(x)
    }

    fn rope_backward(&self, tables: &RopeTables, dy: &Tensor) -> Result<Tensor> {
        rope_backward(tables, dy)
    }

    fn causal_attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        scale: f64,
    ) -> Result<(Tensor, SavedProbabilities)> {
        if let Some((context, probs)) = attention_products::forward(q, k, v, scale)? {
            return Ok((context, SavedProbabilities::Kernels(probs)));
        }
        let (kv_heads, rows, _) = q.dims3()?;
        let n = k.dim(1)?;
        let group = rows / n.max(1);
        let scores = (q.matmul(&k.t()?)? * scale)?; // [kv_heads, group·n, n]
        let mask = causal_mask(n, n, q.dtype(), q.device())?; // [n, n]
        let scores = scores
            .reshape((kv_heads, group, n, n))?
            .broadcast_add(&mask)?;
        let probs = softmax_last_dim(&scores)?.reshape((kv_heads, group * n, n))?;
        let context = probs.matmul(v)?; // [kv_heads, group·n, head_dim]
        Ok((context, SavedProbabilities::Tensor(probs)))
    }

    fn causal_attention_backward(
        &self,
        [q, k, v]: [&Tensor; 3],
        probabilities: &SavedProbabilities,
        d_context: &Tensor,
        scale: f64,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let probs = match probabilities {
            SavedProbabilities::Tensor(probs) => probs,
            SavedProbabilities::Kernels(probs) => {
                return attention_products::backward(q, k, v, probs, d_context, scale)?
                    .ok_or_else(|| {
                        ModelError::Input(
                            "internal: attention's forward ran on the CPU kernels but its backward cannot"
                                .into(),
                        )
                    });
            }
        };
        let dp = d_context.matmul(&v.t()?)?; // [kv_heads, group·n, n]
                                             // Contracting over the group·n rows sums the group's query heads, the
                                             // GQA reduction onto their shared kv head.
        let dv = probs.t()?.matmul(d_context)?; // [kv_heads, n, head_dim]
                                                // Softmax backward: dS = P ⊙ (dP − Σ_j dP⊙P). Masked entries have
                                                // P = 0, so they get no gradient.
        let row_dot = (&dp * probs)?.sum_keepdim(D::Minus1)?; // [kv_heads, group·n, 1]
        let ds = (probs * dp.broadcast_sub(&row_dot)?)?.affine(scale, 0.0)?;
        let dq = ds.matmul(k)?; // [kv_heads, group·n, head_dim]
        let dk = ds.t()?.matmul(q)?; // [kv_heads, n, head_dim]
        Ok((dq, dk, dv))
    }

    fn cached_attention(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let (heads, n, head_dim) = q.dims3()?;
        let (kv_heads, t, _) = k.dims3()?;
        if kv_heads == 0 || heads % kv_heads != 0 || t < n {
            return Err(ModelError::Input(format!(
                "attention over a cache: {heads} query heads over {kv_heads} kv heads, {n} new of {t} positions"
            )));
        }
        let group = heads / kv_heads;
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

    fn swiglu(&self, gate: &Tensor, up: &Tensor) -> Result<Tensor> {
        swiglu(gate, up)
    }

    fn swiglu_backward(
        &self,
        d_activated: &Tensor,
        gate: &Tensor,
        up: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        swiglu_backward(d_activated, gate, up)
    }

    fn cross_entropy(
        &self,
        hidden: &Tensor,
        model: &LlamaModel,
        input_ids: &[u32],
        target_mask: &[bool],
        chunk_tokens: usize,
    ) -> Result<(TokenNll, Tensor)> {
        // The head's 16-bit integer copy where products run at `High`
        // precision on a CPU with VNNI; the f32 head otherwise.
        #[cfg(target_arch = "x86_64")]
        let head = match model.quantised_lm_head() {
            Some(q) => LmHead::Quantised(model.lm_head(), q),
            None => LmHead::F32(model.lm_head()),
        };
        #[cfg(not(target_arch = "x86_64"))]
        let head = LmHead::F32(model.lm_head());
        chunked_cross_entropy_with(hidden, head, input_ids, target_mask, chunk_tokens)
    }

    fn dropout_mask(
        &self,
        dropout: &mut LoraDropout,
        dims: &[usize],
        device: &Device,
    ) -> Result<Option<DropoutMask>> {
        dropout.dropout_mask(dims, device)
    }

    fn apply_dropout(&self, mask: &DropoutMask, x: &Tensor) -> Result<Tensor> {
        mask.apply(x)
    }

    fn sum_input_gradients(&self, parts: [Option<Tensor>; 3]) -> Result<Option<Tensor>> {
        // Three CPU f32 parts of one shape are summed in one pass, as
        // `(a + b) + c` (the same roundings as two candle adds).
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
}
