//! Next-token cross-entropy computed a chunk of target positions at a time,
//! so [tokens, vocab] logits never exist at once: only [chunk, vocab] does.
//! Conventions are `crate::loss`'s: logits at t − 1 predict token t, and
//! only tokens with `target_mask[t]` count.

use candle_core::{DType, Tensor, D};

use crate::error::{ModelError, Result};
use crate::loss::TokenNll;

/// Target positions per chunk by default: [256, vocab] f32 logits are 50 MB
/// for SmolLM2's 49k vocabulary, 131 MB for Llama 3's 128k.
pub const DEFAULT_CHUNK_TOKENS: usize = 256;

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
