//! Next-token cross-entropy computed a chunk of target positions at a time,
//! so [tokens, vocab] logits never exist at once: only [chunk, vocab] does.
//! Conventions are `crate::loss`'s: logits at t − 1 predict token t, and
//! only tokens with `target_mask[t]` count.

use candle_core::{DType, Tensor, D};

use crate::error::{ModelError, Result};
use crate::kernel;
use crate::kernel::softmax::softmax_minus_onehot_rows;
use crate::loss::TokenNll;

/// Target positions per chunk by default: [128, vocab] f32 logits are 25 MB
/// for SmolLM2's 49k vocabulary, 66 MB for Llama 3's 128k (256 was no
/// faster and held twice that per row in flight).
pub const DEFAULT_CHUNK_TOKENS: usize = 128;

/// The row's summed NLL with its target count, and the gradient of the
/// *mean* NLL (total / tokens) with respect to `hidden`.
///
/// hidden [tokens, hidden] (after the final norm), lm_head [vocab, hidden].
/// For target token t predicted at row p = t − 1, with z = h_p·Wᵀ:
///   nll = logsumexp(z) − z[id_t],   d(nll)/dz = softmax(z) − onehot(id_t),
/// so dh_p = (softmax(z) − onehot)·W / N. Rows that predict nothing get 0.
pub fn chunked_cross_entropy(
    hidden: &Tensor,
    lm_head: &Tensor,
    input_ids: &[u32],
    target_mask: &[bool],
    chunk_tokens: usize,
) -> Result<(TokenNll, Tensor)> {
    chunked_cross_entropy_with(
        hidden,
        LmHead::F32(lm_head),
        input_ids,
        target_mask,
        chunk_tokens,
    )
}

/// The LM head's weight as the products read it.
#[derive(Clone, Copy)]
pub enum LmHead<'a> {
    /// [vocab, hidden], any dtype and device.
    F32(&'a Tensor),
    /// The same weight and its 16-bit integer copy, used while products run
    /// at `High` precision (`crate::kernel::MatmulPrecision`).
    #[cfg(target_arch = "x86_64")]
    Quantised(&'a Tensor, &'a kernel::QuantisedMatrix),
}

impl<'a> LmHead<'a> {
    fn weight(self) -> &'a Tensor {
        match self {
            LmHead::F32(w) => w,
            #[cfg(target_arch = "x86_64")]
            LmHead::Quantised(w, _) => w,
        }
    }
}

/// [`chunked_cross_entropy`] with the head's integer copy where it has one.
pub fn chunked_cross_entropy_with(
    hidden: &Tensor,
    head: LmHead<'_>,
    input_ids: &[u32],
    target_mask: &[bool],
    chunk_tokens: usize,
) -> Result<(TokenNll, Tensor)> {
    let lm_head = head.weight();
    let rows = hidden.dim(0)?;
    let vocab = lm_head.dim(0)?;
    if input_ids.len() != rows || target_mask.len() != rows {
        return Err(ModelError::Input(format!(
            "hidden states cover {rows} tokens but there are {} token ids and {} mask entries",
            input_ids.len(),
            target_mask.len()
        )));
    }
    if target_mask.first() == Some(&true) {
        return Err(ModelError::Input(
            "token 0 is marked as a target, but nothing before it predicts it".into(),
        ));
    }
    if chunk_tokens == 0 {
        return Err(ModelError::Input(
            "the cross-entropy chunk must hold at least one token".into(),
        ));
    }
    let predicting: Vec<u32> = (1..rows)
        .filter(|&t| target_mask[t])
        .map(|t| t as u32 - 1)
        .collect();
    let targets: Vec<u32> = predicting
        .iter()
        .map(|&p| input_ids[p as usize + 1])
        .collect();
    if let Some(&id) = targets.iter().find(|&&id| id as usize >= vocab) {
        return Err(ModelError::Input(format!(
            "target token id {id} is outside the vocabulary of {vocab}"
        )));
    }
    let d_hidden = hidden.zeros_like()?;
    if predicting.is_empty() {
        return Ok((TokenNll::default(), d_hidden));
    }

    let inv_count = 1.0 / predicting.len() as f64;
    let device = hidden.device();
    if let Some((total, d_hidden)) =
        fused_cross_entropy(hidden, head, &predicting, &targets, chunk_tokens, inv_count)?
    {
        return Ok((
            TokenNll {
                total,
                tokens: predicting.len(),
            },
            d_hidden,
        ));
    }
    let mut total = 0.0;
    let mut d_rows = Vec::with_capacity(predicting.len().div_ceil(chunk_tokens));
    for (rows_at, ids) in predicting
        .chunks(chunk_tokens)
        .zip(targets.chunks(chunk_tokens))
    {
        let h = hidden.index_select(&Tensor::new(rows_at, device)?, 0)?; // [c, hidden]
        let ids = Tensor::new(ids, device)?.unsqueeze(1)?; // [c, 1]
        let (nll_sum, d_logits) = chunk_nll(&h, lm_head, &ids)?;
        total += nll_sum;
        d_rows.push(d_logits.matmul(lm_head)?.affine(inv_count, 0.0)?); // [c, hidden]
    }
    let d_rows = Tensor::cat(&d_rows, 0)?; // [N, hidden]
    let at = Tensor::new(predicting.as_slice(), device)?;
    let d_hidden = d_hidden.index_add(&at, &d_rows, 0)?;
    Ok((
        TokenNll {
            total,
            tokens: predicting.len(),
        },
        d_hidden,
    ))
}

/// h [c, hidden], ids [c, 1] → (Σ nll, softmax − onehot [c, vocab]). The
/// blocks let each [c, vocab] temporary go as soon as the next one exists.
fn chunk_nll(h: &Tensor, lm_head: &Tensor, ids: &Tensor) -> Result<(f64, Tensor)> {
    let (exp, sum, nll) = {
        let shifted = {
            let logits = h.matmul(&lm_head.t()?)?; // [c, vocab]
            let max = logits.max_keepdim(D::Minus1)?; // [c, 1]
            logits.broadcast_sub(&max)?
        };
        let exp = shifted.exp()?;
        let sum = exp.sum_keepdim(D::Minus1)?; // [c, 1]
        let nll = (sum.log()? - shifted.gather(ids, D::Minus1)?)?; // [c, 1]
        (exp, sum, nll)
    };
    let nll_sum: f64 = nll
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?
        .into_iter()
        .sum();
    let d_logits = exp.broadcast_div(&sum)?;
    let minus_one = Tensor::full(-1f32, (ids.dim(0)?, 1), h.device())?.to_dtype(h.dtype())?;
    d_logits.scatter_add_set(ids, &minus_one, D::Minus1)?;
    Ok((nll_sum, d_logits))
}

/// The same loss and gradient on the CPU kernels, one chunk of predicting
/// rows at a time through a single reused [chunk, vocab] buffer: logits, then
/// in place softmax − onehot, then back through the head. None where the
/// head is not f32 in CPU memory or the CPU has no fast kernel.
fn fused_cross_entropy(
    hidden: &Tensor,
    head: LmHead<'_>,
    predicting: &[u32],
    targets: &[u32],
    chunk_tokens: usize,
    inv_count: f64,
) -> Result<Option<(f64, Tensor)>> {
    let lm_head = head.weight();
    if !lm_head.device().is_cpu() || hidden.dtype() != DType::F32 {
        return Ok(None);
    }
    let (rows, width) = hidden.dims2()?;
    let vocab = lm_head.dim(0)?;
    let h = hidden.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let shape = [vocab, width];
    let chunk = chunk_tokens.min(predicting.len());
    let mut d_hidden = vec![0f32; rows * width];
    let total = kernel::with_cpu_f32(lm_head, |w| {
        let mut h_rows = vec![0f32; chunk * width];
        let mut logits = vec![0f32; chunk * vocab];
        let mut d_rows = vec![0f32; chunk * width];
        let mut total = 0.0;
        for (rows_at, ids) in predicting.chunks(chunk).zip(targets.chunks(chunk)) {
            let c = rows_at.len();
            for (dst, &p) in h_rows.chunks_exact_mut(width).zip(rows_at) {
                let p = p as usize;
                dst.copy_from_slice(&h[p * width..(p + 1) * width]);
            }
            let logits = &mut logits[..c * vocab];
            let d_rows = &mut d_rows[..c * width];
            let h_rows = &h_rows[..c * width];
            match head {
                #[cfg(target_arch = "x86_64")]
                LmHead::Quantised(_, q) if kernel::integer_products() => {
                    q.matmul_t(h_rows, c, logits);
                    total += softmax_minus_onehot_rows(logits, vocab, ids, inv_count as f32);
                    q.matmul(logits, c, d_rows);
                }
                _ => {
                    if !kernel::dense_matmul_t(w, shape, h_rows, c, logits) {
                        return None;
                    }
                    total += softmax_minus_onehot_rows(logits, vocab, ids, inv_count as f32);
                    if !kernel::dense_matmul(w, shape, logits, c, d_rows) {
                        return None;
                    }
                }
            }
            for (d, &p) in d_rows.chunks_exact(width).zip(rows_at) {
                let p = p as usize;
                for (acc, v) in d_hidden[p * width..(p + 1) * width].iter_mut().zip(d) {
                    *acc += v;
                }
            }
        }
        Some(total)
    })
    .flatten();
    let Some(total) = total else {
        return Ok(None);
    };
    let d_hidden = Tensor::from_vec(d_hidden, (rows, width), hidden.device())?;
    Ok(Some((total, d_hidden)))
}
