//! run_summary.json with what only the real engine knows: which model and
//! frozen base were trained, and the engine's own throughput (forward/backward
//! time only, without evaluation and checkpoint writing).

use std::path::Path;

use serde::Serialize;

use crate::atomic::write_json;
use crate::error::TrainError;
use crate::llama_engine::EngineStats;
use crate::run_dir::SUMMARY_FILE;
use crate::summary::RunSummary;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    #[serde(flatten)]
    pub summary: RunSummary,
    pub model: String,
    /// The `quantization.base` in effect: nf4, gguf, f32 or bf16.
    pub frozen_base: String,
    /// Bytes of the frozen projections as stored.
    pub frozen_base_bytes: u64,
    pub adapter_parameters: u64,
    /// Tokens per second of forward/backward in this session.
    pub train_tokens_per_second: Option<f64>,
    /// Forward/backward seconds per optimizer step in this session.
    pub seconds_per_step: Option<f64>,
}

impl RunReport {
    /// Fills in the throughput from the engine's counters.
    pub fn throughput(&mut self, stats: &EngineStats, gradient_accumulation_steps: usize) {
        self.train_tokens_per_second = stats.train_tokens_per_second();
        self.seconds_per_step = (stats.micro_batches > 0).then(|| {
            stats.train_seconds / stats.micro_batches as f64 * gradient_accumulation_steps as f64
        });
    }

    /// Replaces `output_dir/run_summary.json` (atomically) with this report.
    pub fn write(&self, output_dir: &Path) -> Result<(), TrainError> {
        write_json(&output_dir.join(SUMMARY_FILE), self)
    }
}
