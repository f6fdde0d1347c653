//! The run as a whole: preparing the run directory (debris removal, backup or
//! resume), the initial evaluation, the step loop, and what is written at the
//! end (final evaluation and checkpoint, final_model, run_summary.json).
//!
//! Resume is exact: the checkpoint holds the adapter, the AdamW moments, the
//! step (hence the learning rate), the data position and the log history, and
//! every random choice is a function of the seed, the epoch and the step.
//! `best_model/` is the exception: a killed session may have updated it after
//! its last checkpoint; the resumed run reaches the same evaluation with the
//! same result and writes it again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ftslm_data::TASK_FILE;

use crate::atomic::{copy_dir_atomic, write_atomic, write_json, StagedDir};
use crate::charts;
use crate::checkpoint::Checkpoint;
use crate::data::EpochSource;
use crate::engine::TrainingEngine;
use crate::error::{SettingChange, TrainError};
use crate::history::RunHistory;
use crate::metrics::{write_metrics_jsonl, MetricRecord};
use crate::optimizer::AdamW;
use crate::options::TrainerOptions;
use crate::progress::Progress;
use crate::run_dir::RunDir;
use crate::run_dir::PLOTS_DIR;
use crate::schedule::LrSchedule;
use crate::state::{
    DataPosition, PendingLog, RngState, SchedulerState, TrainerState, STATE_FORMAT,
};
use crate::summary::{peak_rss_bytes, RunSummary};
use crate::tensorboard::EventWriter;

/// Trains `engine` on `data`, evaluating on `eval` (micro-batches, may be
/// empty), writing the run directory `options.output_dir`. Returns what
/// `run_summary.json` holds.
pub fn train<E, D>(
    engine: &mut E,
    options: &TrainerOptions,
    data: &D,
    eval: &[E::Batch],
    progress: &mut dyn Progress,
) -> Result<RunSummary, TrainError>
where
    E: TrainingEngine,
    D: EpochSource<Batch = E::Batch>,
{
    let mut session = Session::start(engine, options, data, eval, progress)?;
    session.run()?;
    session.finish()
}

/// One process's part of a run.
pub(crate) struct Session<'a, E: TrainingEngine, D> {
    pub(crate) engine: &'a mut E,
    pub(crate) options: &'a TrainerOptions,
    pub(crate) data: &'a D,
    pub(crate) eval: &'a [E::Batch],
    pub(crate) progress: &'a mut dyn Progress,
    pub(crate) run: RunDir,
    pub(crate) optimizer: AdamW,
    pub(crate) schedule: LrSchedule,
    pub(crate) state: TrainerState,
    pub(crate) events: EventWriter,
    /// The epoch being read and its micro-batches in order.
    pub(crate) epoch: Option<(u64, Vec<E::Batch>)>,
    pub(crate) started: Instant,
    pub(crate) elapsed_before: f64,
    pub(crate) last_checkpoint: Option<PathBuf>,
}

impl<'a, E, D> Session<'a, E, D>
where
    E: TrainingEngine,
    D: EpochSource<Batch = E::Batch>,
{
    fn start(
        engine: &'a mut E,
        options: &'a TrainerOptions,
        data: &'a D,
        eval: &'a [E::Batch],
        progress: &'a mut dyn Progress,
    ) -> Result<Self, TrainError> {
        options.validate()?;
        let batches_per_epoch = data.batches_per_epoch();
        if batches_per_epoch == 0 {
            return Err(TrainError::EmptyTrainSet);
        }
        if eval.is_empty() && options.early_stopping_patience.is_some() {
            return Err(TrainError::option(
                "early_stopping_patience",
                "needs an evaluation set; provide validation data or unset it",
            ));
        }
        for file in &options.export_files {
            if !file.is_file() {
                return Err(TrainError::option(
                    "export_files",
                    format!(
                        "{} does not exist (it is copied into final_model/)",
                        file.display()
                    ),
                ));
            }
        }
        let total = options.checked_total_steps(batches_per_epoch)?;
        let schedule = LrSchedule {
            kind: options.lr_scheduler_type,
            base_lr: options.learning_rate,
            warmup_steps: options.warmup_steps,
            total_steps: total,
        };

        let (run, removed) = RunDir::open(&options.output_dir)?;
        for path in removed {
            progress.note(&format!(
                "removed {} left by an interrupted process (it never completed)",
                path.display()
            ));
        }
        if !options.resume {
            if let Some(backup) = run.back_up_previous_run()? {
                progress.note(&format!(
                    "--no-resume: moved the earlier results into {}",
                    backup.display()
                ));
            }
        }
        let latest = if options.resume {
            run.latest_checkpoint()?
        } else {
            None
        };
        let (state, optimizer, last_checkpoint) = match latest {
            Some(ckpt) => {
                let state = resume_state(&ckpt, options, batches_per_epoch, total, progress)?;
                ckpt.load_adapter(engine)?;
                engine
                    .parameters_changed()
                    .map_err(|source| TrainError::Engine {
                        during: "loading the checkpoint's adapter",
                        step: ckpt.step,
                        source,
                    })?;
                let optimizer = ckpt.load_optimizer(options.adamw())?;
                progress.note(&format!(
                    "resuming from {} (step {} of {total})",
                    ckpt.path.display(),
                    state.global_step
                ));
                // A process killed between publishing a checkpoint and
                // rotating left one too many.
                if let Some(limit) = options.save_total_limit {
                    let keep = state
                        .best_model_checkpoint
                        .as_deref()
                        .and_then(Checkpoint::parse_name);
                    for removed in run.rotate(limit, keep)? {
                        progress.note(&format!(
                            "removed {} (beyond save_total_limit {limit}; its process was \
                             stopped before rotating)",
                            removed.display()
                        ));
                    }
                }
                (state, optimizer, Some(ckpt.path))
            }
            None => (
                fresh_state(options, batches_per_epoch, schedule),
                AdamW::new(options.adamw()),
                None,
            ),
        };
        // The checkpoint's history is the truth; drop anything a killed
        // session logged after it.
        write_metrics_jsonl(&run.metrics(), &state.log_history)?;
        let events = EventWriter::create(&run.logs(), &state.log_history)?;
        Ok(Session {
            engine,
            options,
            data,
            eval,
            progress,
            run,
            optimizer,
            schedule: LrSchedule {
                total_steps: state.max_steps,
                ..schedule
            },
            elapsed_before: state.elapsed_seconds,
            state,
            events,
            epoch: None,
            started: Instant::now(),
            last_checkpoint,
        })
    }

    fn run(&mut self) -> Result<(), TrainError> {
        self.progress
            .start(self.state.global_step, self.state.max_steps);
        if self.state.global_step == 0
            && !self.eval.is_empty()
            && self.state.last_eval_step().is_none()
        {
            self.evaluate()?;
        }
        while self.state.global_step < self.state.max_steps && self.state.stopped_early.is_none() {
            let step = self.optimizer_step()?;
            let o = self.options;
            if o.logging_steps > 0 && step % o.logging_steps == 0 {
                self.log_training()?;
            }
            if !self.eval.is_empty() && o.eval_steps > 0 && step % o.eval_steps == 0 {
                self.evaluate()?;
            }
            if o.save_steps > 0 && step % o.save_steps == 0 {
                self.save_checkpoint()?;
            }
            self.progress.step(step);
        }
        Ok(())
    }

    /// Closes the run: last log, last evaluation and checkpoint (each unless
    /// the last step already did it), final_model/, run_summary.json.
    fn finish(mut self) -> Result<RunSummary, TrainError> {
        let step = self.state.global_step;
        if self.state.pending_log.steps > 0 {
            self.log_training()?;
        }
        if !self.eval.is_empty() && self.state.last_eval_step() != Some(step) {
            self.evaluate()?;
        }
        let checkpointed = self
            .run
            .latest_checkpoint()?
            .is_some_and(|c| c.step == step);
        if !checkpointed {
            self.save_checkpoint()?;
        }
        if let Some(reason) = &self.state.stopped_early {
            self.progress.note(reason);
        }
        let best_dir = self.run.best_model();
        let use_best = self.options.load_best_model_at_end
            && self.state.best_global_step.is_some()
            && best_dir.is_dir();
        let final_dir = self.run.final_model();
        if use_best {
            self.engine
                .load_adapter(&best_dir)
                .map_err(|source| TrainError::Engine {
                    during: "loading best_model at the end",
                    step,
                    source,
                })?;
            self.engine
                .parameters_changed()
                .map_err(|source| TrainError::Engine {
                    during: "loading best_model at the end",
                    step,
                    source,
                })?;
            copy_dir_atomic(&best_dir, &final_dir)?;
        } else {
            self.export_adapter(&final_dir)?;
        }
        let summary = self.summary();
        write_json(&self.run.summary(), &summary)?;
        self.write_charts(&summary);
        self.progress.finish();
        Ok(summary)
    }

    /// `plots/`: the run's charts (`ftslm metrics --plot` draws the same), so
    /// a pulled run carries them. The adapter is what the run is for: a
    /// chart that cannot be drawn is a note, not a failed run.
    fn write_charts(&mut self, summary: &RunSummary) {
        let history = RunHistory {
            name: self
                .run
                .root()
                .file_name()
                .map_or_else(|| "run".to_string(), |n| n.to_string_lossy().into_owned()),
            records: self.state.log_history.clone(),
            summary: serde_json::to_value(summary).ok(),
        };
        if let Err(e) = charts::write_charts(&[history], &self.run.root().join(PLOTS_DIR)) {
            self.progress
                .note(&format!("the charts in {PLOTS_DIR}/ were not drawn: {e}"));
        }
    }

    /// Writes the engine's adapter and the export files into `dest` atomically.
    pub(crate) fn export_adapter(&mut self, dest: &Path) -> Result<(), TrainError> {
        let staged = StagedDir::create(dest)?;
        self.engine
            .save_adapter(staged.path())
            .map_err(|source| TrainError::Engine {
                during: "saving the adapter",
                step: self.state.global_step,
                source,
            })?;
        for file in &self.options.export_files {
            let Some(name) = file.file_name() else {
                continue;
            };
            std::fs::copy(file, staged.path().join(name))
                .map_err(|e| TrainError::io("cannot copy", file, e))?;
        }
        if let Some(task) = &self.options.task {
            write_atomic(&staged.path().join(TASK_FILE), task.to_json().as_bytes())?;
        }
        staged.publish()?;
        Ok(())
    }

    /// Adds a record to the history, metrics.jsonl, TensorBoard and the display.
    pub(crate) fn record(&mut self, record: MetricRecord) -> Result<(), TrainError> {
        self.state.log_history.push(record.clone());
        write_metrics_jsonl(&self.run.metrics(), &self.state.log_history)?;
        self.events.append(&record)?;
        self.progress.record(&record);
        Ok(())
    }

    pub(crate) fn elapsed_seconds(&self) -> f64 {
        self.elapsed_before + self.started.elapsed().as_secs_f64()
    }

    fn summary(&self) -> RunSummary {
        let s = &self.state;
        let first_eval = s.log_history.iter().find_map(|r| r.eval_loss);
        let last_eval = s.log_history.iter().rev().find_map(|r| r.eval_loss);
        let last_loss = s.log_history.iter().rev().find_map(|r| r.loss);
        let has_best = s.best_global_step.is_some() && self.run.best_model().is_dir();
        RunSummary {
            initial_eval_loss: s.initial_eval_loss.or(first_eval),
            final_eval_loss: last_eval,
            best_step: s.best_global_step,
            best_eval_loss: s.best_metric,
            final_train_loss: last_loss,
            steps: s.global_step,
            max_steps: s.max_steps,
            epochs: s.epoch,
            tokens_seen: s.tokens_seen,
            wall_time_seconds: self.elapsed_seconds(),
            peak_rss_bytes: peak_rss_bytes(),
            stopped_early: s.stopped_early.clone(),
            final_model: self.run.final_model().display().to_string(),
            best_model: has_best.then(|| self.run.best_model().display().to_string()),
        }
    }
}

fn fresh_state(
    options: &TrainerOptions,
    batches_per_epoch: usize,
    schedule: LrSchedule,
) -> TrainerState {
    TrainerState {
        format: STATE_FORMAT,
        global_step: 0,
        epoch: 0.0,
        max_steps: schedule.total_steps,
        num_train_epochs: options.num_train_epochs,
        logging_steps: options.logging_steps,
        eval_steps: options.eval_steps,
        save_steps: options.save_steps,
        train_batch_size: options.per_device_train_batch_size,
        gradient_accumulation_steps: options.gradient_accumulation_steps,
        data: DataPosition {
            epoch: 0,
            next_batch: 0,
            batches_per_epoch,
        },
        rng: RngState {
            algorithm: "ChaCha8".to_string(),
            seed: options.seed,
            stream: 0,
        },
        scheduler: SchedulerState {
            schedule,
            updates: 0,
            last_lr: 0.0,
        },
        best_metric: None,
        best_global_step: None,
        best_model_checkpoint: None,
        initial_eval_loss: None,
        evals_without_improvement: 0,
        stopped_early: None,
        tokens_seen: 0,
        elapsed_seconds: 0.0,
        pending_log: PendingLog::default(),
        log_history: Vec::new(),
        settings: options.run_settings.clone(),
    }
}

/// Loads a checkpoint's state and checks that this run can continue it exactly.
fn resume_state(
    ckpt: &Checkpoint,
    options: &TrainerOptions,
    batches_per_epoch: usize,
    total: u64,
    progress: &mut dyn Progress,
) -> Result<TrainerState, TrainError> {
    let mut state = ckpt.load_state()?;
    check_settings_unchanged(ckpt, &state.settings, options, progress)?;
    if !options.run_settings.is_empty() {
        state.settings = options.run_settings.clone();
    }
    let mismatch = |key, saved: String, now: String| TrainError::ResumeMismatch {
        path: ckpt.path.clone(),
        key,
        saved,
        now,
    };
    if state.rng.seed != options.seed {
        return Err(mismatch(
            "seed",
            state.rng.seed.to_string(),
            options.seed.to_string(),
        ));
    }
    if state.gradient_accumulation_steps != options.gradient_accumulation_steps {
        return Err(mismatch(
            "gradient_accumulation_steps",
            state.gradient_accumulation_steps.to_string(),
            options.gradient_accumulation_steps.to_string(),
        ));
    }
    if state.data.batches_per_epoch != batches_per_epoch {
        return Err(mismatch(
            "micro-batches per epoch (training data or per_device_train_batch_size)",
            state.data.batches_per_epoch.to_string(),
            batches_per_epoch.to_string(),
        ));
    }
    if state.max_steps != total {
        progress.note(&format!(
            "the run now has {total} steps instead of {}; the learning-rate schedule changes accordingly",
            state.max_steps
        ));
        state.max_steps = total;
        state.scheduler.schedule.total_steps = total;
    }
    Ok(state)
}

/// Refuses to resume a checkpoint whose run was defined by other settings
/// (other data, model, learning rate, LoRA shape...): continuing would mix
/// two runs. Keys the user allowed to change (`allow_changed`, only those
/// of [`crate::options::SAFE_TO_CHANGE`]) pass with a note. A checkpoint that recorded no
/// settings (older ones), or a run that defines none, is not compared.
fn check_settings_unchanged(
    ckpt: &Checkpoint,
    saved: &BTreeMap<String, String>,
    options: &TrainerOptions,
    progress: &mut dyn Progress,
) -> Result<(), TrainError> {
    if saved.is_empty() || options.run_settings.is_empty() {
        return Ok(());
    }
    let mut changed = Vec::new();
    let keys: std::collections::BTreeSet<&String> =
        saved.keys().chain(options.run_settings.keys()).collect();
    for key in keys {
        let (old, new) = (saved.get(key), options.run_settings.get(key));
        if old == new {
            continue;
        }
        let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(not set)".into());
        let change = SettingChange {
            key: key.clone(),
            saved: show(old),
            now: show(new),
        };
        if options.allow_changed.iter().any(|k| k == key) {
            progress.note(&format!(
                "resuming with {} changed: {} → {} (--allow-changed)",
                change.key, change.saved, change.now
            ));
        } else {
            changed.push(change);
        }
    }
    if changed.is_empty() {
        return Ok(());
    }
    Err(TrainError::SettingsChanged {
        path: ckpt.path.clone(),
        changed,
    })
}
