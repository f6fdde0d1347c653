//! One `checkpoint-<step>/` directory: the engine's adapter files,
//! `optimizer.safetensors` (AdamW moments) and `trainer_state.json` (step,
//! data position, RNG, scheduler, best metric, log history). It is assembled
//! under `checkpoint-<step>.tmp-<pid>/` and renamed only when complete, so a
//! directory named `checkpoint-<step>` is always whole.

use std::path::{Path, PathBuf};

use ftslm_data::{TrainedTask, TASK_FILE};

use crate::atomic::{write_atomic, write_json, StagedDir};
use crate::engine::TrainingEngine;
use crate::error::TrainError;
use crate::optimizer::{AdamW, AdamWConfig};
use crate::state::{TrainerState, STATE_FORMAT};

pub const STATE_FILE: &str = "trainer_state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// A complete checkpoint on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub step: u64,
    pub path: PathBuf,
}

impl Checkpoint {
    pub fn dir_name(step: u64) -> String {
        format!("checkpoint-{step}")
    }

    /// The step of a directory named exactly `checkpoint-<digits>`.
    pub fn parse_name(name: &str) -> Option<u64> {
        let digits = name.strip_prefix("checkpoint-")?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// Writes a checkpoint of the engine, optimizer and state into `run_dir`,
    /// with the adapter's task record when there is one.
    pub fn save<E: TrainingEngine>(
        run_dir: &Path,
        engine: &E,
        optimizer: &AdamW,
        state: &TrainerState,
        task: Option<&TrainedTask>,
    ) -> Result<Checkpoint, TrainError> {
        let step = state.global_step;
        let dest = run_dir.join(Self::dir_name(step));
        let staged = StagedDir::create(&dest)?;
        engine
            .save_adapter(staged.path())
            .map_err(|source| TrainError::Engine {
                during: "saving the adapter",
                step,
                source,
            })?;
        let moments = optimizer.to_safetensors().map_err(|e| {
            TrainError::checkpoint(staged.path().join(OPTIMIZER_FILE), e.to_string())
        })?;
        write_atomic(&staged.path().join(OPTIMIZER_FILE), &moments)?;
        write_json(&staged.path().join(STATE_FILE), state)?;
        if let Some(task) = task {
            write_atomic(&staged.path().join(TASK_FILE), task.to_json().as_bytes())?;
        }
        let path = staged.publish()?;
        Ok(Checkpoint { step, path })
    }

    /// Reads the trainer state, checking it belongs to this directory.
    pub fn load_state(&self) -> Result<TrainerState, TrainError> {
        let file = self.path.join(STATE_FILE);
        let text = std::fs::read(&file).map_err(|e| TrainError::io("cannot read", &file, e))?;
        let state: TrainerState = serde_json::from_slice(&text).map_err(|e| {
            TrainError::checkpoint(
                &file,
                format!("not a valid trainer state ({e}); delete this checkpoint or start over with --no-resume"),
            )
        })?;
        if state.format != STATE_FORMAT {
            return Err(TrainError::checkpoint(
                &file,
                format!(
                    "state format {} is not {STATE_FORMAT}; start over with --no-resume",
                    state.format
                ),
            ));
        }
        if state.global_step != self.step {
            return Err(TrainError::checkpoint(
                &file,
                format!(
                    "records step {} but the directory is {}",
                    state.global_step,
                    Self::dir_name(self.step)
                ),
            ));
        }
        Ok(state)
    }

    pub fn load_optimizer(&self, config: AdamWConfig) -> Result<AdamW, TrainError> {
        let file = self.path.join(OPTIMIZER_FILE);
        let bytes = std::fs::read(&file).map_err(|e| TrainError::io("cannot read", &file, e))?;
        AdamW::from_safetensors(config, &bytes).map_err(|m| TrainError::checkpoint(&file, m))
    }

    /// Loads the adapter into the engine.
    pub fn load_adapter<E: TrainingEngine>(&self, engine: &mut E) -> Result<(), TrainError> {
        engine
            .load_adapter(&self.path)
            .map_err(|source| TrainError::Engine {
                during: "loading the checkpoint's adapter",
                step: self.step,
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_names_are_checkpoints() {
        assert_eq!(Checkpoint::parse_name("checkpoint-200"), Some(200));
        assert_eq!(Checkpoint::parse_name("checkpoint-200.tmp-77"), None);
        assert_eq!(Checkpoint::parse_name("checkpoint-"), None);
        assert_eq!(Checkpoint::parse_name("checkpoint--1"), None);
        assert_eq!(Checkpoint::parse_name("best_model"), None);
    }
}
