//! What a run is about to do, printed before the first step (and by
//! `--dry-run`): the model and how its base is held, the adapter, the data,
//! the step count and a rough peak-memory figure.
//!
//! The memory figure is `model inspect`'s estimate
//! (`ftslm_model::inspect::MemoryEstimate`, the one formula) for the rows the
//! engine computes side by side, with the frozen projections as the loaded
//! model measures them.

use std::fmt;
use std::path::PathBuf;

use ftslm_model::inspect::MemoryEstimate;
use ftslm_model::{FrozenWeight, LlamaModel};
use serde::Serialize;

const F32: u64 = 4;

/// Bytes of the loaded model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WeightBytes {
    /// The seven projections of every layer, as the frozen base stores them.
    pub projections: u64,
    /// Weights that stay f32: embedding, LM head (unless tied), norms.
    pub dense: u64,
    /// Parameters of the base model.
    pub parameters: u64,
}

impl WeightBytes {
    pub fn of(model: &LlamaModel) -> Self {
        let mut projections = 0u64;
        let mut parameters = 0u64;
        for layer in model.layers() {
            let a = &layer.self_attn;
            let m = &layer.mlp;
            let all: [&dyn FrozenWeight; 7] = [
                &*a.q_proj,
                &*a.k_proj,
                &*a.v_proj,
                &*a.o_proj,
                &*m.gate_proj,
                &*m.up_proj,
                &*m.down_proj,
            ];
            for w in all {
                projections += w.storage_bytes() as u64;
                parameters += (w.out_features() * w.in_features()) as u64;
            }
        }
        let c = model.config();
        let embedding = (c.vocab_size * c.hidden_size) as u64;
        let lm_head = if c.tie_word_embeddings { 0 } else { embedding };
        let norms = ((2 * c.num_hidden_layers + 1) * c.hidden_size) as u64;
        WeightBytes {
            projections,
            dense: (embedding + lm_head + norms) * F32,
            parameters: parameters + embedding + lm_head + norms,
        }
    }
}

/// Everything the plan printout shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainingPlan {
    pub model: PathBuf,
    pub architecture: String,
    pub frozen_base: String,
    pub weights: WeightBytes,
    pub adapter: String,
    pub adapter_parameters: u64,
    pub train_file: PathBuf,
    pub train_records: usize,
    pub train_tokens: usize,
    pub truncated_examples: usize,
    pub eval_file: PathBuf,
    pub eval_records: usize,
    pub layout: String,
    pub micro_batches_per_epoch: usize,
    pub gradient_accumulation_steps: usize,
    pub steps: u64,
    pub epochs: f64,
    /// Mean tokens per optimizer step over an epoch (prompt and answer).
    pub tokens_per_step: f64,
    pub memory: MemoryEstimate,
    pub output_dir: PathBuf,
}

/// Bytes as MiB/GiB for people.
pub fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let b = bytes as f64;
    if b >= 1024.0 * MIB {
        format!("{:.2} GiB", b / (1024.0 * MIB))
    } else if b >= MIB {
        format!("{:.1} MiB", b / MIB)
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

impl fmt::Display for TrainingPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = &self.weights;
        let m = &self.memory;
        writeln!(f, "plan:")?;
        writeln!(
            f,
            "  model          {} ({})",
            self.model.display(),
            self.architecture
        )?;
        writeln!(
            f,
            "  frozen base    {}: projections {}, embedding/head/norms {} (f32), {:.1}M parameters",
            self.frozen_base,
            human_bytes(w.projections),
            human_bytes(w.dense),
            w.parameters as f64 / 1e6
        )?;
        writeln!(
            f,
            "  adapter        {}, {} trainable parameters",
            self.adapter, self.adapter_parameters
        )?;
        writeln!(
            f,
            "  train data     {}: {} records, {} tokens, {} truncated to fit max_seq_length",
            self.train_file.display(),
            self.train_records,
            self.train_tokens,
            self.truncated_examples
        )?;
        writeln!(
            f,
            "  eval data      {}: {} records",
            self.eval_file.display(),
            self.eval_records
        )?;
        writeln!(
            f,
            "  batches        {}; {} micro-batches an epoch × accumulation {}",
            self.layout, self.micro_batches_per_epoch, self.gradient_accumulation_steps
        )?;
        writeln!(
            f,
            "  steps          {} ({:.2} epochs), ~{:.0} tokens a step",
            self.steps, self.epochs, self.tokens_per_step
        )?;
        writeln!(
            f,
            "  memory (rough) {}: weights {}, adapter + AdamW {}, activations {}, cross-entropy {} \
             ({} row(s) of {} tokens in flight; `ftslm model inspect` itemises it)",
            human_bytes(m.total),
            human_bytes(m.weights()),
            human_bytes(m.adapter_and_optimizer()),
            human_bytes(m.activations()),
            human_bytes(m.cross_entropy_chunk),
            m.shape.batch_size,
            m.shape.seq_len
        )?;
        write!(f, "  output         {}", self.output_dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_expect() {
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.00 GiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
