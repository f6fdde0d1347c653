//! What happens at one optimizer step and at the points the schedule calls for:
//! gradient accumulation, per-token normalisation, clipping and the AdamW
//! update; the training log; evaluation with best-model tracking and early
//! stopping; checkpointing with rotation.
//!
//! Normalisation: the step's loss is the sum of token losses over all its
//! micro-batches divided by their total number of target tokens, and the
//! gradients are divided by the same count. Every answer token of the step
//! weighs the same, however the tokens fall into micro-batches (transformers
//! averages per micro-batch first, which over-weights short answers).

use std::time::Instant;

use crate::checkpoint::Checkpoint;
use crate::clip::{clip_grad_norm, scale_grads};
use crate::data::{epoch_rng, EpochSource};
use crate::engine::{LossSum, StepContext, TrainingEngine};
use crate::error::TrainError;
use crate::metrics::MetricRecord;
use crate::trainer::Session;

/// A per-(step, micro-batch) seed for the engine's random draws (SplitMix64).
pub fn step_seed(seed: u64, step: u64, micro_batch: usize) -> u64 {
    let mut z = seed
        ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (micro_batch as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl<E, D> Session<'_, E, D>
where
    E: TrainingEngine,
    D: EpochSource<Batch = E::Batch>,
{
    /// The index of the next micro-batch, loading the epoch at the data
    /// position and moving to the next epoch when it is used up.
    fn next_batch_index(&mut self) -> Result<usize, TrainError> {
        loop {
            let pos = self.state.data;
            match &self.epoch {
                Some((e, batches)) if *e == pos.epoch => {
                    if pos.next_batch < batches.len() {
                        return Ok(pos.next_batch);
                    }
                    self.state.data.epoch += 1;
                    self.state.data.next_batch = 0;
                }
                _ => {
                    let batches = self
                        .data
                        .epoch_batches(pos.epoch, &mut epoch_rng(self.options.seed, pos.epoch))
                        .map_err(|source| TrainError::Engine {
                            during: "building the epoch's batches",
                            step: self.state.global_step + 1,
                            source,
                        })?;
                    if batches.is_empty() {
                        return Err(TrainError::EmptyTrainSet);
                    }
                    self.state.rng.stream = pos.epoch;
                    self.epoch = Some((pos.epoch, batches));
                }
            }
        }
    }

    /// Runs one optimizer step and returns its number.
    pub(crate) fn optimizer_step(&mut self) -> Result<u64, TrainError> {
        let t0 = Instant::now();
        let step = self.state.global_step + 1;
        self.engine.zero_grads();
        let mut total = LossSum::default();
        let mut micro = 0usize;
        while micro < self.options.gradient_accumulation_steps {
            let at_epoch_end = self.epoch.as_ref().is_some_and(|(e, b)| {
                *e == self.state.data.epoch && self.state.data.next_batch >= b.len()
            });
            // A trailing partial group ends the epoch as a smaller step.
            if at_epoch_end && micro > 0 {
                break;
            }
            let index = self.next_batch_index()?;
            let Some((_, batches)) = &self.epoch else {
                return Err(TrainError::EmptyTrainSet);
            };
            let ctx = StepContext {
                step,
                micro_batch: micro,
                seed: step_seed(self.options.seed, step, micro),
            };
            let loss = self
                .engine
                .forward_backward(&batches[index], ctx)
                .map_err(|source| TrainError::Engine {
                    during: "forward/backward",
                    step,
                    source,
                })?;
            if !loss.sum.is_finite() {
                return Err(self.non_finite(step, "the loss", loss.sum));
            }
            total.add(loss);
            self.state.data.next_batch += 1;
            micro += 1;
        }
        let Some(mean) = total.mean() else {
            return Err(TrainError::NoTargetTokens {
                step,
                micro_batches: micro,
            });
        };
        let lr = self.schedule.lr(step - 1);
        let norm = {
            let mut params = self.engine.parameters();
            scale_grads(&mut params, (1.0 / total.target_tokens as f64) as f32);
            let norm = clip_grad_norm(&mut params, self.options.max_grad_norm);
            if !norm.is_finite() {
                drop(params);
                return Err(self.non_finite(step, "the gradient norm", norm));
            }
            self.optimizer.step(&mut params, lr)?;
            norm
        };
        self.engine
            .parameters_changed()
            .map_err(|source| TrainError::Engine {
                during: "the parameter update",
                step,
                source,
            })?;

        let s = &mut self.state;
        s.global_step = step;
        s.scheduler.updates = step;
        s.scheduler.last_lr = lr;
        s.tokens_seen += total.input_tokens;
        let len = self.epoch.as_ref().map_or(1, |(_, b)| b.len().max(1));
        s.epoch = s.data.epoch as f64 + s.data.next_batch as f64 / len as f64;
        let p = &mut s.pending_log;
        p.loss_sum += mean;
        p.steps += 1;
        p.input_tokens += total.input_tokens;
        p.seconds += t0.elapsed().as_secs_f64();
        p.grad_norm = norm;
        Ok(step)
    }

    fn non_finite(&self, step: u64, what: &'static str, value: f64) -> TrainError {
        TrainError::NonFinite {
            step,
            what,
            value,
            last_checkpoint: self.last_checkpoint.clone(),
        }
    }

    /// Logs the mean loss of the steps since the last log.
    pub(crate) fn log_training(&mut self) -> Result<(), TrainError> {
        let p = std::mem::take(&mut self.state.pending_log);
        if p.steps == 0 {
            return Ok(());
        }
        let tps = if p.seconds > 0.0 {
            p.input_tokens as f64 / p.seconds
        } else {
            0.0
        };
        let s = &self.state;
        let record = MetricRecord::train(
            s.global_step,
            s.epoch,
            p.loss_sum / p.steps as f64,
            s.scheduler.last_lr,
            p.grad_norm,
            tps,
        );
        self.record(record)
    }

    /// Eval loss per target token over the whole evaluation set.
    fn eval_loss(&mut self) -> Result<f64, TrainError> {
        let step = self.state.global_step;
        let mut total = LossSum::default();
        for batch in self.eval {
            let loss = self
                .engine
                .eval_loss(batch)
                .map_err(|source| TrainError::Engine {
                    during: "evaluation",
                    step,
                    source,
                })?;
            total.add(loss);
        }
        let mean = total.mean().ok_or(TrainError::EmptyEvalSet)?;
        if !mean.is_finite() {
            return Err(self.non_finite(step, "the eval loss", mean));
        }
        Ok(mean)
    }

    /// Evaluates, records, and updates the best model and early stopping. The
    /// evaluation before the first step is the baseline only: best_model and
    /// the patience count start with the first trained adapter.
    pub(crate) fn evaluate(&mut self) -> Result<(), TrainError> {
        let loss = self.eval_loss()?;
        let step = self.state.global_step;
        self.record(MetricRecord::eval(step, self.state.epoch, loss))?;
        if step == 0 {
            self.state.initial_eval_loss = Some(loss);
            return Ok(());
        }
        let improved = self.state.best_metric.is_none_or(|best| loss < best);
        if improved {
            self.state.best_metric = Some(loss);
            self.state.best_global_step = Some(step);
            self.state.evals_without_improvement = 0;
            let dest = self.run.best_model();
            self.export_adapter(&dest)?;
            return Ok(());
        }
        self.state.evals_without_improvement += 1;
        if let Some(patience) = self.options.early_stopping_patience {
            if self.state.evals_without_improvement >= patience {
                let (best, at) = (
                    self.state.best_metric.unwrap_or(f64::NAN),
                    self.state.best_global_step.unwrap_or(0),
                );
                self.state.stopped_early = Some(format!(
                    "early stopping at step {step}: eval_loss did not improve for {patience} evaluation(s) \
                     (best {best:.4} at step {at})"
                ));
            }
        }
        Ok(())
    }

    /// Writes checkpoint-<step> and deletes old ones beyond save_total_limit.
    pub(crate) fn save_checkpoint(&mut self) -> Result<(), TrainError> {
        let step = self.state.global_step;
        self.state.elapsed_seconds = self.elapsed_seconds();
        if self.state.best_global_step == Some(step) {
            self.state.best_model_checkpoint = Some(Checkpoint::dir_name(step));
        }
        let ckpt = Checkpoint::save(
            self.run.root(),
            &*self.engine,
            &self.optimizer,
            &self.state,
            self.options.task.as_ref(),
        )?;
        self.last_checkpoint = Some(ckpt.path);
        if let Some(limit) = self.options.save_total_limit {
            let keep = self
                .state
                .best_model_checkpoint
                .as_deref()
                .and_then(Checkpoint::parse_name);
            self.run.rotate(limit, keep)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_seeds_differ_per_step_and_micro_batch() {
        let a = step_seed(42, 1, 0);
        assert_eq!(a, step_seed(42, 1, 0));
        assert_ne!(a, step_seed(42, 2, 0));
        assert_ne!(a, step_seed(42, 1, 1));
        assert_ne!(a, step_seed(43, 1, 0));
    }
}
