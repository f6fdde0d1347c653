//! The trainer's settings, named like transformers' `TrainingArguments` and the
//! `training:` section of training_config.yml, and their validation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ftslm_data::TrainedTask;

use crate::error::TrainError;
use crate::optimizer::AdamWConfig;
use crate::schedule::LrSchedulerType;

/// More optimizer steps than any run could take: a mistake in the settings.
pub const MAX_TOTAL_STEPS: u64 = 1_000_000_000;

/// Settings a resumed run may change (with `--allow-changed KEY`): when
/// to log, evaluate and save, and how long to train. Everything else that
/// defines a run changes what is computed.
pub const SAFE_TO_CHANGE: &[&str] = &[
    "training.max_steps",
    "training.num_train_epochs",
    "training.logging_steps",
    "training.eval_steps",
    "training.save_steps",
    "training.save_total_limit",
    "training.early_stopping_patience",
];

#[derive(Debug, Clone, PartialEq)]
pub struct TrainerOptions {
    /// The run directory (checkpoints, final_model, metrics, logs).
    pub output_dir: PathBuf,
    /// Epochs to train when `max_steps` is not positive; may be fractional.
    pub num_train_epochs: f64,
    /// A positive value overrides `num_train_epochs`; -1 (or 0) means unset.
    pub max_steps: i64,
    /// Recorded in the trainer state; the micro-batches come already formed.
    pub per_device_train_batch_size: usize,
    pub gradient_accumulation_steps: usize,
    pub learning_rate: f64,
    pub warmup_steps: u64,
    pub lr_scheduler_type: LrSchedulerType,
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
    /// Global gradient-norm limit; 0 disables clipping.
    pub max_grad_norm: f64,
    /// Log every N optimizer steps (0: only at the end).
    pub logging_steps: u64,
    /// Evaluate every N steps (0: only before the first and after the last).
    pub eval_steps: u64,
    /// Checkpoint every N steps (0: only at the end).
    pub save_steps: u64,
    /// Checkpoints to keep, the best one kept in addition; `None` keeps all.
    pub save_total_limit: Option<usize>,
    /// Make final_model the best adapter by eval loss instead of the last.
    pub load_best_model_at_end: bool,
    /// Stop after this many evaluations in a row without a lower eval loss.
    pub early_stopping_patience: Option<u64>,
    pub seed: u64,
    /// Continue from the latest complete checkpoint in `output_dir` if there is
    /// one; `false` (`--no-resume`) moves earlier results into `backup_<time>/`.
    pub resume: bool,
    /// Files copied into final_model/ and best_model/ beside the adapter
    /// (tokenizer.json, tokenizer_config.json).
    pub export_files: Vec<PathBuf>,
    /// How the adapter is trained (prompt, fields, base model), written as
    /// `ftslm_task.json` into every checkpoint, best_model/ and final_model/
    /// so inference can prompt as training did.
    pub task: Option<TrainedTask>,
    /// The settings that define the run, by configuration key (model and
    /// data digests, LoRA shape, optimizer, schedule, seed, steps): kept in
    /// every checkpoint, and a resume with any of them changed is refused.
    pub run_settings: BTreeMap<String, String>,
    /// Keys of [`SAFE_TO_CHANGE`] the user lets differ on resume.
    pub allow_changed: Vec<String>,
}

impl TrainerOptions {
    /// The defaults of training_config.yml for a run in `output_dir`.
    pub fn new(output_dir: impl Into<PathBuf>) -> Self {
        TrainerOptions {
            output_dir: output_dir.into(),
            num_train_epochs: 5.0,
            max_steps: -1,
            per_device_train_batch_size: 4,
            gradient_accumulation_steps: 4,
            learning_rate: 2e-4,
            warmup_steps: 100,
            lr_scheduler_type: LrSchedulerType::Linear,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            max_grad_norm: 1.0,
            logging_steps: 10,
            eval_steps: 100,
            save_steps: 200,
            save_total_limit: Some(3),
            load_best_model_at_end: true,
            early_stopping_patience: None,
            seed: 42,
            resume: true,
            export_files: Vec::new(),
            task: None,
            run_settings: BTreeMap::new(),
            allow_changed: Vec::new(),
        }
    }

    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            beta1: self.adam_beta1,
            beta2: self.adam_beta2,
            eps: self.adam_epsilon,
            weight_decay: self.weight_decay,
        }
    }

    /// Optimizer steps per epoch: micro-batches grouped by the accumulation,
    /// a trailing partial group being a (smaller) step of its own.
    pub fn steps_per_epoch(&self, batches_per_epoch: usize) -> u64 {
        batches_per_epoch.div_ceil(self.gradient_accumulation_steps.max(1)) as u64
    }

    /// Total optimizer steps: `max_steps` when positive, else
    /// ceil(num_train_epochs × steps per epoch) as transformers computes it.
    pub fn total_steps(&self, batches_per_epoch: usize) -> u64 {
        if self.max_steps > 0 {
            return self.max_steps as u64;
        }
        (self.num_train_epochs * self.steps_per_epoch(batches_per_epoch) as f64).ceil() as u64
    }

    /// [`TrainerOptions::total_steps`], refusing a count no run could
    /// reach ([`MAX_TOTAL_STEPS`]): `num_train_epochs = 1e300` made
    /// 18446744073709551615 steps.
    pub fn checked_total_steps(&self, batches_per_epoch: usize) -> Result<u64, TrainError> {
        if self.max_steps > 0 {
            if self.max_steps as u64 > MAX_TOTAL_STEPS {
                return Err(TrainError::option(
                    "max_steps",
                    format!(
                        "is {}; at most {MAX_TOTAL_STEPS} steps are allowed",
                        self.max_steps
                    ),
                ));
            }
            return Ok(self.max_steps as u64);
        }
        let per_epoch = self.steps_per_epoch(batches_per_epoch);
        let steps = self.num_train_epochs * per_epoch as f64;
        if steps.is_nan() || steps > MAX_TOTAL_STEPS as f64 {
            return Err(TrainError::option(
                "num_train_epochs",
                format!(
                    "{} epochs of {per_epoch} steps make {steps:.3e} optimizer steps; at most \
                     {MAX_TOTAL_STEPS} are allowed — lower num_train_epochs or set max_steps",
                    self.num_train_epochs
                ),
            ));
        }
        Ok(self.total_steps(batches_per_epoch))
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        let finite_pos = |key, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(TrainError::option(
                    key,
                    format!("must be a positive number, found {v}"),
                ))
            }
        };
        let finite_nonneg = |key, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(TrainError::option(
                    key,
                    format!("must be zero or positive, found {v}"),
                ))
            }
        };
        if self.gradient_accumulation_steps == 0 {
            return Err(TrainError::option(
                "gradient_accumulation_steps",
                "must be at least 1",
            ));
        }
        if self.max_steps <= 0 {
            finite_pos("num_train_epochs", self.num_train_epochs)?;
        }
        finite_pos("learning_rate", self.learning_rate)?;
        finite_nonneg("weight_decay", self.weight_decay)?;
        finite_nonneg("max_grad_norm", self.max_grad_norm)?;
        finite_pos("adam_epsilon", self.adam_epsilon)?;
        for (key, beta) in [
            ("adam_beta1", self.adam_beta1),
            ("adam_beta2", self.adam_beta2),
        ] {
            if !(0.0..1.0).contains(&beta) {
                return Err(TrainError::option(
                    key,
                    format!("must be in [0, 1), found {beta}"),
                ));
            }
        }
        if let Some(key) = self
            .allow_changed
            .iter()
            .find(|k| !SAFE_TO_CHANGE.contains(&k.as_str()))
        {
            return Err(TrainError::option(
                "allow_changed",
                format!(
                    "`{key}` cannot change within a run (only {} can); start over with --no-resume",
                    SAFE_TO_CHANGE.join(", ")
                ),
            ));
        }
        if self.save_total_limit == Some(0) {
            return Err(TrainError::option(
                "save_total_limit",
                "must be at least 1; leave it unset (null) to keep every checkpoint",
            ));
        }
        if self.early_stopping_patience == Some(0) {
            return Err(TrainError::option(
                "early_stopping_patience",
                "must be at least 1; leave it unset (null) to never stop early",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_counts_follow_epochs_unless_max_steps_is_set() {
        let mut o = TrainerOptions::new("/tmp/x");
        o.gradient_accumulation_steps = 4;
        o.num_train_epochs = 5.0;
        // 4,500 records / batch 4 = 1,125 micro-batches -> 282 steps an epoch.
        assert_eq!(o.steps_per_epoch(1125), 282);
        assert_eq!(o.total_steps(1125), 1410);
        o.num_train_epochs = 0.5;
        assert_eq!(o.total_steps(1125), 141);
        o.max_steps = 7;
        assert_eq!(o.total_steps(1125), 7);
    }

    #[test]
    fn validation_names_the_option() {
        let mut o = TrainerOptions::new("/tmp/x");
        assert!(o.validate().is_ok());
        o.gradient_accumulation_steps = 0;
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("gradient_accumulation_steps"));
        o.gradient_accumulation_steps = 1;
        o.learning_rate = f64::NAN;
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("learning_rate"));
        o.learning_rate = 1e-4;
        o.save_total_limit = Some(0);
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("save_total_limit"));
    }
}
