//! The contract between the training loop and the model math.
//!
//! The loop never sees tensors: it hands the engine one micro-batch at a time,
//! gets back a summed loss, and then works on the trainable tensors as flat f32
//! slices (normalising, clipping, AdamW). Gradients are of the *summed* loss so
//! that the loop can normalise per target token across all micro-batches of an
//! optimizer step, which a per-micro-batch mean cannot do when micro-batches
//! hold different numbers of answer tokens.

use std::path::Path;

/// Errors from an engine; any error type converts into it with `?`.
pub type EngineError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A loss summed over target tokens, and how much work it covered.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossSum {
    /// Sum of the per-token cross-entropy over the target (unmasked) tokens.
    pub sum: f64,
    /// Tokens that contributed to `sum`.
    pub target_tokens: u64,
    /// Tokens the model processed (prompt and answer, no padding); used for
    /// throughput and the `tokens seen` count.
    pub input_tokens: u64,
}

impl LossSum {
    pub fn add(&mut self, other: LossSum) {
        self.sum += other.sum;
        self.target_tokens += other.target_tokens;
        self.input_tokens += other.input_tokens;
    }

    /// Mean loss per target token; `None` when there were no target tokens.
    pub fn mean(&self) -> Option<f64> {
        (self.target_tokens > 0).then(|| self.sum / self.target_tokens as f64)
    }
}

/// Where a forward/backward call sits in the run. `seed` is derived from the
/// run's seed, the step and the micro-batch, so an engine that draws random
/// numbers (LoRA dropout) from it reproduces them exactly after a resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepContext {
    /// The optimizer step being computed, from 1.
    pub step: u64,
    /// Index of the micro-batch within the step's gradient accumulation.
    pub micro_batch: usize,
    pub seed: u64,
}

/// One trainable tensor: its value and the gradient accumulated for it.
#[derive(Debug)]
pub struct ParamView<'a> {
    /// Stable name (as in the adapter file); keys the optimizer state.
    pub name: &'a str,
    pub shape: &'a [usize],
    pub value: &'a mut [f32],
    pub grad: &'a mut [f32],
}

/// A model the loop can train. Implemented by the LoRA engine in ftslm-model and
/// by small exact models in tests.
pub trait TrainingEngine {
    type Batch;

    /// Adds the gradients of this micro-batch's summed loss to the gradient
    /// buffers (never overwrites them) and returns the loss.
    fn forward_backward(
        &mut self,
        batch: &Self::Batch,
        ctx: StepContext,
    ) -> Result<LossSum, EngineError>;

    /// The summed loss without touching gradients and without dropout.
    fn eval_loss(&mut self, batch: &Self::Batch) -> Result<LossSum, EngineError>;

    /// The trainable tensors, in the same order and with the same names on every call.
    fn parameters(&mut self) -> Vec<ParamView<'_>>;

    fn zero_grads(&mut self);

    /// Called after the loop changed parameter values (optimizer step), so an
    /// engine that mirrors them elsewhere (device tensors) can refresh once per step.
    fn parameters_changed(&mut self) -> Result<(), EngineError> {
        Ok(())
    }

    /// Writes the adapter (PEFT layout: adapter_config.json, adapter_model.safetensors) into `dir`, which exists.
    fn save_adapter(&self, dir: &Path) -> Result<(), EngineError>;

    /// Replaces the trainable values with the adapter in `dir`.
    fn load_adapter(&mut self, dir: &Path) -> Result<(), EngineError>;
}
