//! Everything besides the adapter and the optimizer moments that a resumed run
//! needs to continue exactly where the checkpoint left off; saved as
//! `trainer_state.json` (a superset of the keys transformers writes there).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::metrics::MetricRecord;
use crate::schedule::LrSchedule;

pub const STATE_FORMAT: u32 = 1;

/// Where the next optimizer step starts reading micro-batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPosition {
    /// Epoch being read, from 0.
    pub epoch: u64,
    /// Index in that epoch's order of the next micro-batch.
    pub next_batch: usize,
    pub batches_per_epoch: usize,
}

/// The data-order generator. An epoch's order is drawn from a fresh ChaCha8
/// stream `(seed, stream = epoch)`, so this is all it takes to rebuild it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub algorithm: String,
    pub seed: u64,
    pub stream: u64,
}

/// The schedule and where it stands: `updates` completed, `last_lr` used by
/// the last of them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SchedulerState {
    #[serde(flatten)]
    pub schedule: LrSchedule,
    pub updates: u64,
    pub last_lr: f64,
}

/// Training losses accumulated since the last log line; saved so that a
/// checkpoint between two log steps does not change the next logged mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PendingLog {
    /// Sum of the per-step mean losses.
    pub loss_sum: f64,
    pub steps: u64,
    pub input_tokens: u64,
    pub seconds: f64,
    /// Pre-clip gradient norm of the latest step.
    pub grad_norm: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub format: u32,
    pub global_step: u64,
    pub epoch: f64,
    pub max_steps: u64,
    pub num_train_epochs: f64,
    pub logging_steps: u64,
    pub eval_steps: u64,
    pub save_steps: u64,
    pub train_batch_size: usize,
    pub gradient_accumulation_steps: usize,
    pub data: DataPosition,
    pub rng: RngState,
    pub scheduler: SchedulerState,
    pub best_metric: Option<f64>,
    pub best_global_step: Option<u64>,
    pub best_model_checkpoint: Option<String>,
    pub initial_eval_loss: Option<f64>,
    /// Evaluations in a row without a new best (early-stopping counter).
    pub evals_without_improvement: u64,
    pub stopped_early: Option<String>,
    pub tokens_seen: u64,
    /// Training wall time of all sessions up to this checkpoint.
    pub elapsed_seconds: f64,
    pub pending_log: PendingLog,
    pub log_history: Vec<MetricRecord>,
    /// The settings that define the run (`TrainerOptions::run_settings`),
    /// compared on resume; empty in checkpoints written before they were kept.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

impl TrainerState {
    /// The step of the last evaluation recorded, if any.
    pub fn last_eval_step(&self) -> Option<u64> {
        self.log_history
            .iter()
            .rev()
            .find(|r| r.eval_loss.is_some())
            .map(|r| r.step)
    }

    /// The step of the last training log recorded, if any.
    pub fn last_log_step(&self) -> Option<u64> {
        self.log_history
            .iter()
            .rev()
            .find(|r| r.loss.is_some())
            .map(|r| r.step)
    }
}
