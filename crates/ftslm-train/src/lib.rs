//! ftslm-train owns the training loop's machinery, independent of the model
//! math: AdamW, learning-rate schedules, gradient accumulation with per-token
//! normalisation, global-norm clipping, evaluation with best-model tracking and
//! early stopping, and the run directory DESIGN.md describes — atomic
//! checkpoints that resume bit for bit, final_model/ and best_model/,
//! metrics.jsonl, TensorBoard event files and run_summary.json — with a
//! progress bar or log lines. The model is anything implementing
//! [`TrainingEngine`]; the data is any [`EpochSource`].

#![forbid(unsafe_code)]

pub mod atomic;
pub mod bench;
pub mod charts;
pub mod checkpoint;
pub mod clip;
pub mod data;
pub mod engine;
pub mod error;
pub mod history;
pub mod llama_engine;
pub mod metrics;
pub mod optimizer;
pub mod options;
pub mod packed_data;
pub mod plan;
pub mod progress;
pub mod run_checks;
pub mod run_dir;
pub mod run_report;
pub mod run_setup;
pub mod schedule;
pub mod setup_error;
pub mod state;
mod step;
pub mod summary;
pub mod tensorboard;
mod trainer;

pub use checkpoint::Checkpoint;
pub use data::{epoch_rng, EpochSource, ShuffledBatches};
pub use engine::{EngineError, LossSum, ParamView, StepContext, TrainingEngine};
pub use error::TrainError;
pub use metrics::{read_metrics_jsonl, MetricRecord};
pub use optimizer::{AdamW, AdamWConfig};
pub use options::TrainerOptions;
pub use progress::{
    for_stderr, BarProgress, LineProgress, NoProgress, Progress, RecordingProgress,
};
pub use run_dir::RunDir;
pub use schedule::{LrSchedule, LrSchedulerType};
pub use state::TrainerState;
pub use summary::RunSummary;
pub use trainer::train;
