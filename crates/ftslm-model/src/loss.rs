//! Next-token negative log-likelihood over the target tokens of a row, as
//! transformers computes its causal-LM loss: logits at t predict token t+1,
//! and tokens whose label is masked (the prompt) contribute nothing.

use candle_core::{Tensor, D};

use crate::error::{ModelError, Result};

/// Summed NLL and the number of target tokens it covers; sums of rows add up
/// before one division, so a batch's mean weights every token equally.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TokenNll {
    pub total: f64,
    pub tokens: usize,
}

impl TokenNll {
    pub fn mean(&self) -> f64 {
        if self.tokens == 0 {
            0.0
        } else {
            self.total / self.tokens as f64
        }
    }

    pub fn add(&mut self, other: TokenNll) {
        self.total += other.total;
        self.tokens += other.tokens;
    }
}

/// NLL of every token `t` with `target_mask[t]` true, predicted from the
/// logits [tokens, vocab] at `t − 1`. Token 0 has no prediction and must not
/// be a target (the data crate's `answer_mask` never marks it).
pub fn masked_nll(logits: &Tensor, input_ids: &[u32], target_mask: &[bool]) -> Result<TokenNll> {
    let (rows, vocab) = logits.dims2()?;
    if input_ids.len() != rows || target_mask.len() != rows {
        return Err(ModelError::Input(format!(
            "logits cover {rows} tokens but there are {} token ids and {} mask entries",
            input_ids.len(),
            target_mask.len()
        )));
    }
    if target_mask.first() == Some(&true) {
        return Err(ModelError::Input(
            "token 0 is marked as a target, but nothing before it predicts it".into(),
        ));
    }
    let predicting: Vec<u32> = (1..rows)
        .filter(|&t| target_mask[t])
        .map(|t| t as u32 - 1)
        .collect();
    if predicting.is_empty() {
        return Ok(TokenNll::default());
    }
    let targets: Vec<u32> = predicting
        .iter()
        .map(|&t| input_ids[t as usize + 1])
        .collect();
    if let Some(&id) = targets.iter().find(|&&id| id as usize >= vocab) {
        return Err(ModelError::Input(format!(
            "target token id {id} is outside the vocabulary of {vocab}"
        )));
    }
    let device = logits.device();
    let rows_used = logits.index_select(&Tensor::new(predicting.as_slice(), device)?, 0)?; // [n, vocab]
    let log_normalizer = rows_used.log_sum_exp(D::Minus1)?; // [n]
    let target_ids = Tensor::new(targets.as_slice(), device)?.unsqueeze(1)?; // [n, 1]
    let target_logits = rows_used.gather(&target_ids, 1)?.squeeze(1)?; // [n]
    let nll: Vec<f32> = (log_normalizer - target_logits)?.to_vec1()?;
    Ok(TokenNll {
        total: nll.iter().map(|&x| x as f64).sum(),
        tokens: nll.len(),
    })
}

/// Mean NLL of a row (0 when it has no targets).
pub fn masked_mean_nll(logits: &Tensor, input_ids: &[u32], target_mask: &[bool]) -> Result<f64> {
    Ok(masked_nll(logits, input_ids, target_mask)?.mean())
}

/// Summed NLL of the targets, projecting to the vocabulary `chunk` target
/// positions at a time so [tokens, vocab] logits never exist at once.
pub fn chunked_nll(
    hidden: &Tensor,
    lm_head: &Tensor,
    input_ids: &[u32],
    target_mask: &[bool],
    chunk: usize,
) -> Result<TokenNll> {
    let predicting: Vec<u32> = (1..input_ids.len())
        .filter(|&t| target_mask[t])
        .map(|t| t as u32 - 1)
        .collect();
    let device = hidden.device();
    let mut total = TokenNll::default();
    for rows in predicting.chunks(chunk.max(1)) {
        let targets: Vec<u32> = rows.iter().map(|&p| input_ids[p as usize + 1]).collect();
        let h = hidden.index_select(&Tensor::new(rows, device)?, 0)?;
        let logits = h.matmul(&lm_head.t()?)?; // [c, vocab]
        let normalizer = logits.log_sum_exp(D::Minus1)?; // [c]
        let ids = Tensor::new(targets.as_slice(), device)?.unsqueeze(1)?;
        let picked = logits.gather(&ids, 1)?.squeeze(1)?;
        let nll: Vec<f32> = (normalizer - picked)?.to_vec1()?;
        total.add(TokenNll {
            total: nll.iter().map(|&x| f64::from(x)).sum(),
            tokens: nll.len(),
        });
    }
    Ok(total)
}
