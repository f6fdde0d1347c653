//! The real [`TrainingEngine`]: a frozen Llama with a trainable LoRA adapter,
//! fed micro-batches from ftslm-data.
//!
//! Each row of a micro-batch (padding stripped) goes through
//! `ftslm_model::grad::loss_and_grads`, which returns the gradient of the
//! row's *mean* NLL; multiplied by the row's target count it becomes the
//! gradient of the row's summed NLL, which is what the trainer expects (it
//! divides by the step's target tokens itself). The adapter's matrices are
//! mirrored as host f32 buffers for the optimizer and pushed back into the
//! adapter's tensors once per step. LoRA dropout is drawn from the step
//! seed and the row index, so a resumed run draws the same masks.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use candle_core::{DType, Tensor};
use ftslm_config::LossOn;
use ftslm_data::batching::{Batch, PAD_SEGMENT};
use ftslm_model::grad::{
    loss_and_grads_timed, AdapterGrads, GradOptions, PassSeconds, TrainingRow, DEFAULT_CHUNK_TOKENS,
};
use ftslm_model::{
    chunked_nll, ComputePolicy, LlamaModel, LoraAdapter, LoraDropout, ModelError, Projection,
    TokenNll,
};

use crate::engine::{EngineError, LossSum, ParamView, StepContext, TrainingEngine};

/// Where the engine's time went, for throughput figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EngineStats {
    pub micro_batches: u64,
    /// Seconds in forward/backward.
    pub train_seconds: f64,
    /// Tokens through forward/backward (no padding).
    pub train_tokens: u64,
    pub eval_seconds: f64,
    pub eval_tokens: u64,
    /// Seconds of each pass summed over the rows; rows run side by side,
    /// so these add up to about `train_seconds` × the rows in flight.
    pub passes: PassSeconds,
}

impl EngineStats {
    pub fn train_tokens_per_second(&self) -> Option<f64> {
        (self.train_seconds > 0.0).then(|| self.train_tokens as f64 / self.train_seconds)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Matrix {
    A,
    B,
}

/// One LoRA matrix as the optimizer sees it.
#[derive(Debug)]
struct HostParam {
    name: String,
    layer: usize,
    projection: Projection,
    matrix: Matrix,
    shape: [usize; 2],
    value: Vec<f32>,
    grad: Vec<f32>,
}

pub struct LlamaEngine {
    model: LlamaModel,
    adapter: LoraAdapter,
    params: Vec<HostParam>,
    targets: LossOn,
    grad_options: GradOptions,
    /// Device, matmul precision and threads of every pass.
    policy: ComputePolicy,
    /// Rows of a micro-batch run at once; None: one per policy thread.
    parallel_rows: Option<usize>,
    stats: EngineStats,
}

impl LlamaEngine {
    /// `gradient_checkpointing` recomputes each layer in the backward
    /// (`training.gradient_checkpointing`); `policy` says how every pass
    /// computes (precision, threads: one row per thread).
    pub fn new(
        model: LlamaModel,
        adapter: LoraAdapter,
        targets: LossOn,
        gradient_checkpointing: bool,
        policy: ComputePolicy,
    ) -> Result<Self, ModelError> {
        adapter.check_fits(model.config())?;
        let params = host_params(&adapter)?;
        Ok(LlamaEngine {
            model,
            adapter,
            params,
            targets,
            grad_options: GradOptions {
                checkpointing: gradient_checkpointing,
                chunk_tokens: DEFAULT_CHUNK_TOKENS,
            },
            policy,
            parallel_rows: None,
            stats: EngineStats::default(),
        })
    }

    /// How many rows of a micro-batch run side by side (default: one per
    /// thread). Each running row holds its own activations, so 1 gives the
    /// smallest memory and the slowest steps; the gradients are the same.
    pub fn set_parallel_rows(&mut self, rows: usize) {
        self.parallel_rows = Some(rows.max(1));
    }

    pub fn policy(&self) -> ComputePolicy {
        self.policy
    }

    pub fn model(&self) -> &LlamaModel {
        &self.model
    }

    pub fn adapter(&self) -> &LoraAdapter {
        &self.adapter
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// The eval loss of `batch`'s rows, one after another (products threaded).
    fn eval_loss_rows(&mut self, batch: &Batch) -> Result<LossSum, EngineError> {
        let started = Instant::now();
        let mut loss = LossSum::default();
        for row in self.rows(batch)? {
            let nll = if row.target_mask.contains(&true) {
                let hidden = self.model.final_hidden(
                    &row.input_ids,
                    &row.positions,
                    &row.segments,
                    Some(&self.adapter),
                    None,
                )?;
                chunked_nll(
                    &hidden,
                    self.model.lm_head(),
                    &row.input_ids,
                    &row.target_mask,
                    self.grad_options.chunk_tokens,
                )?
            } else {
                TokenNll::default()
            };
            loss.add(LossSum {
                sum: nll.total,
                target_tokens: nll.tokens as u64,
                input_tokens: row.input_ids.len() as u64,
            });
        }
        self.stats.eval_seconds += started.elapsed().as_secs_f64();
        self.stats.eval_tokens += loss.input_tokens;
        Ok(loss)
    }

    /// The rows of `batch` with padding stripped and the target mask chosen.
    fn rows(&self, batch: &Batch) -> Result<Vec<Row>, EngineError> {
        let mut rows = Vec::with_capacity(batch.rows);
        for r in 0..batch.rows {
            let span = r * batch.seq_len..(r + 1) * batch.seq_len;
            let segments = &batch.segment_ids[span.clone()];
            let len = segments
                .iter()
                .rposition(|&s| s != PAD_SEGMENT)
                .map_or(0, |i| i + 1);
            if segments[..len].contains(&PAD_SEGMENT) {
                return Err(format!(
                    "row {r} of a micro-batch has padding between examples; \
                     batches must pad only at the end of a row"
                )
                .into());
            }
            if len == 0 {
                continue;
            }
            let span = span.start..span.start + len;
            let segments = batch.segment_ids[span.clone()].to_vec();
            let target_mask = match self.targets {
                LossOn::Answer => batch.answer_mask[span.clone()].to_vec(),
                LossOn::All => (0..len)
                    .map(|t| t > 0 && segments[t - 1] == segments[t])
                    .collect(),
            };
            rows.push(Row {
                input_ids: batch.input_ids[span.clone()].to_vec(),
                positions: batch.position_ids[span].to_vec(),
                segments,
                target_mask,
            });
        }
        Ok(rows)
    }

    /// Each row's loss and gradients, in row order. With several rows and
    /// threads, rows run side by side, one per thread with its products kept
    /// on that thread: every phase of a row (the element-wise ops included)
    /// then keeps a core busy. Each row's dropout stream is seeded by its
    /// index and the gradients are summed in row order afterwards, so the
    /// result does not depend on which thread ran which row.
    fn rows_loss_and_grads(
        &self,
        rows: &[Row],
        seed: u64,
    ) -> Vec<Result<(TokenNll, AdapterGrads, PassSeconds), ModelError>> {
        let p = self.adapter.settings().dropout;
        let run = |index: usize| {
            let mut dropout = (p > 0.0).then(|| LoraDropout::new(p, row_seed(seed, index)));
            loss_and_grads_timed(
                &self.model,
                &self.adapter,
                &rows[index].view(),
                dropout.as_mut(),
                &self.grad_options,
            )
        };
        let policy = self.policy;
        let workers = self.parallel_rows.unwrap_or(policy.threads).min(rows.len());
        if workers <= 1 {
            return policy.run(|| (0..rows.len()).map(run).collect());
        }
        // Longest rows first, so that no core is left with a long row at the end.
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&index| std::cmp::Reverse(rows[index].input_ids.len()));
        let next = AtomicUsize::new(0);
        let slots: Vec<Mutex<Option<_>>> = rows.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    while let Some(&index) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let result = policy.run_on_this_thread(|| run(index));
                        if let Ok(mut slot) = slots[index].lock() {
                            *slot = Some(result);
                        }
                    }
                });
            }
        });
        slots
            .into_iter()
            .map(|slot| {
                slot.into_inner().ok().flatten().unwrap_or_else(|| {
                    Err(ModelError::Input(
                        "internal: a row's worker stopped without a result".into(),
                    ))
                })
            })
            .collect()
    }

    /// Adds `factor` × the gradients to the host buffers.
    fn accumulate(&mut self, grads: &AdapterGrads, factor: f32) -> Result<(), EngineError> {
        for p in &mut self.params {
            let g = grads.get(p.layer, p.projection).ok_or_else(|| {
                format!(
                    "the backward returned no gradient for {}",
                    p.projection.module_path(p.layer)
                )
            })?;
            let t = match p.matrix {
                Matrix::A => &g.a,
                Matrix::B => &g.b,
            };
            let values = t.flatten_all()?.to_vec1::<f32>()?;
            for (acc, v) in p.grad.iter_mut().zip(values) {
                *acc += v * factor;
            }
        }
        Ok(())
    }
}

/// One row of a micro-batch without its padding.
struct Row {
    input_ids: Vec<u32>,
    positions: Vec<u32>,
    segments: Vec<u32>,
    target_mask: Vec<bool>,
}

impl Row {
    fn view(&self) -> TrainingRow<'_> {
        TrainingRow {
            input_ids: &self.input_ids,
            positions: &self.positions,
            segments: &self.segments,
            target_mask: &self.target_mask,
        }
    }
}

impl TrainingEngine for LlamaEngine {
    type Batch = Batch;

    fn forward_backward(
        &mut self,
        batch: &Batch,
        ctx: StepContext,
    ) -> Result<LossSum, EngineError> {
        let started = Instant::now();
        let rows = self.rows(batch)?;
        let mut loss = LossSum::default();
        for (row, result) in rows.iter().zip(self.rows_loss_and_grads(&rows, ctx.seed)) {
            let (nll, grads, seconds) = result?;
            self.stats.passes.add(seconds);
            if nll.tokens > 0 {
                self.accumulate(&grads, nll.tokens as f32)?;
            }
            loss.add(LossSum {
                sum: nll.total,
                target_tokens: nll.tokens as u64,
                input_tokens: row.input_ids.len() as u64,
            });
        }
        self.stats.micro_batches += 1;
        self.stats.train_seconds += started.elapsed().as_secs_f64();
        self.stats.train_tokens += loss.input_tokens;
        Ok(loss)
    }

    fn eval_loss(&mut self, batch: &Batch) -> Result<LossSum, EngineError> {
        let policy = self.policy;
        policy.run(|| self.eval_loss_rows(batch))
    }

    fn parameters(&mut self) -> Vec<ParamView<'_>> {
        self.params
            .iter_mut()
            .map(|p| ParamView {
                name: &p.name,
                shape: &p.shape,
                value: &mut p.value,
                grad: &mut p.grad,
            })
            .collect()
    }

    fn zero_grads(&mut self) {
        for p in &mut self.params {
            p.grad.fill(0.0);
        }
    }

    fn parameters_changed(&mut self) -> Result<(), EngineError> {
        let device = self.model.device().clone();
        for p in &self.params {
            let tensor = Tensor::from_slice(&p.value, (p.shape[0], p.shape[1]), &device)?;
            let weights = self
                .adapter
                .get_mut(p.layer, p.projection)
                .ok_or_else(|| format!("the adapter lost {}", p.projection.module_path(p.layer)))?;
            match p.matrix {
                Matrix::A => weights.a = tensor,
                Matrix::B => weights.b = tensor,
            }
        }
        Ok(())
    }

    fn save_adapter(&self, dir: &Path) -> Result<(), EngineError> {
        self.adapter.save_peft(dir)?;
        Ok(())
    }

    fn load_adapter(&mut self, dir: &Path) -> Result<(), EngineError> {
        let loaded = LoraAdapter::load_peft(dir, self.model.config(), self.model.device())?;
        let (mine, theirs) = (self.adapter.settings(), loaded.settings());
        let differs = |key: &str, saved: String, now: String| -> EngineError {
            format!(
                "{}: the adapter has {key} = {saved} but this run has {now}; restore the setting \
                 or start over with --no-resume",
                dir.display()
            )
            .into()
        };
        if mine.r != theirs.r {
            return Err(differs("r", theirs.r.to_string(), mine.r.to_string()));
        }
        if mine.scale() != theirs.scale() {
            return Err(differs(
                "lora_alpha / r scaling",
                theirs.scale().to_string(),
                mine.scale().to_string(),
            ));
        }
        let mut targets = theirs.target_modules.clone();
        let mut ours = mine.target_modules.clone();
        targets.sort();
        ours.sort();
        if targets != ours {
            return Err(differs(
                "target_modules",
                format!("{targets:?}"),
                format!("{ours:?}"),
            ));
        }
        for p in &mut self.params {
            let w = loaded.get(p.layer, p.projection).ok_or_else(|| {
                format!(
                    "{}: the adapter has no {}",
                    dir.display(),
                    p.projection.module_path(p.layer)
                )
            })?;
            let t = match p.matrix {
                Matrix::A => &w.a,
                Matrix::B => &w.b,
            };
            p.value = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        }
        // The loaded tensors replace ours; dropout and the base name stay this run's.
        for (layer, projection, w) in loaded.iter() {
            if let Some(weights) = self.adapter.get_mut(layer, projection) {
                weights.a = w.a.clone();
                weights.b = w.b.clone();
            }
        }
        Ok(())
    }
}

/// The host mirror of every adapter matrix, A then B per projection, in the
/// adapter's order; names are the module paths (stable across runs).
fn host_params(adapter: &LoraAdapter) -> Result<Vec<HostParam>, ModelError> {
    let mut params = Vec::new();
    for (layer, projection, w) in adapter.iter() {
        for (matrix, tensor, suffix) in [(Matrix::A, &w.a, "lora_A"), (Matrix::B, &w.b, "lora_B")] {
            let (rows, cols) = tensor.dims2()?;
            let value = tensor
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            params.push(HostParam {
                name: format!("{}.{suffix}.weight", projection.module_path(layer)),
                layer,
                projection,
                matrix,
                shape: [rows, cols],
                grad: vec![0.0; value.len()],
                value,
            });
        }
    }
    Ok(params)
}

/// A per-row dropout seed from the step seed (SplitMix64 finaliser).
fn row_seed(step_seed: u64, row: usize) -> u64 {
    let mut z = step_seed ^ (row as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_seeds_differ_per_row_and_step() {
        assert_eq!(row_seed(7, 0), row_seed(7, 0));
        assert_ne!(row_seed(7, 0), row_seed(7, 1));
        assert_ne!(row_seed(7, 0), row_seed(8, 0));
    }
}
