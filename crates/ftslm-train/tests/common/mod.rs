//! A tiny exact model for driving the trainer: linear regression
//! `y = w·x + b` with squared error per sample (one "target token" per
//! sample), optional multiplicative "dropout" noise drawn from the step seed,
//! and switches that make it fail or produce NaN at a chosen point.
#![allow(dead_code)]

use std::path::Path;

use ftslm_train::{EngineError, LossSum, ParamView, StepContext, TrainerOptions, TrainingEngine};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: u32,
    pub xs: Vec<[f32; 2]>,
    pub ys: Vec<f32>,
}

struct Param {
    name: String,
    shape: Vec<usize>,
    value: Vec<f32>,
    grad: Vec<f32>,
}

pub struct LinearEngine {
    params: Vec<Param>,
    /// forward_backward calls so far.
    pub calls: usize,
    /// Fail (like a killed process) when `calls` reaches this.
    pub fail_at_call: Option<usize>,
    pub nan_at_step: Option<u64>,
    /// Batch ids in the order forward_backward saw them, with their step.
    pub seen: Vec<(u64, u32)>,
    pub noise: f32,
}

impl LinearEngine {
    pub fn new() -> Self {
        LinearEngine {
            params: vec![
                Param {
                    name: "w".into(),
                    shape: vec![2],
                    value: vec![0.0, 0.0],
                    grad: vec![0.0, 0.0],
                },
                Param {
                    name: "b".into(),
                    shape: vec![1],
                    value: vec![0.0],
                    grad: vec![0.0],
                },
            ],
            calls: 0,
            fail_at_call: None,
            nan_at_step: None,
            seen: Vec::new(),
            noise: 0.05,
        }
    }

    pub fn values(&self) -> Vec<f32> {
        self.params
            .iter()
            .flat_map(|p| p.value.iter().copied())
            .collect()
    }

    fn predict(&self, x: &[f32; 2]) -> f32 {
        let w = &self.params[0].value;
        w[0] * x[0] + w[1] * x[1] + self.params[1].value[0]
    }

    fn loss(&self, batch: &Batch) -> LossSum {
        let sum: f64 = batch
            .xs
            .iter()
            .zip(&batch.ys)
            .map(|(x, y)| ((self.predict(x) - y) as f64).powi(2))
            .sum();
        LossSum {
            sum,
            target_tokens: batch.ys.len() as u64,
            input_tokens: 3 * batch.ys.len() as u64,
        }
    }
}

impl TrainingEngine for LinearEngine {
    type Batch = Batch;

    fn forward_backward(
        &mut self,
        batch: &Batch,
        ctx: StepContext,
    ) -> Result<LossSum, EngineError> {
        self.calls += 1;
        if Some(self.calls) == self.fail_at_call {
            return Err("simulated crash".into());
        }
        self.seen.push((ctx.step, batch.id));
        let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed);
        let mut out = LossSum {
            sum: 0.0,
            target_tokens: batch.ys.len() as u64,
            input_tokens: 3 * batch.ys.len() as u64,
        };
        for (x, y) in batch.xs.iter().zip(&batch.ys) {
            let keep = 1.0 + self.noise * rng.random_range(-1.0f32..1.0);
            let r = (self.predict(x) - y) * keep;
            out.sum += (r as f64).powi(2);
            let g = 2.0 * r * keep;
            self.params[0].grad[0] += g * x[0];
            self.params[0].grad[1] += g * x[1];
            self.params[1].grad[0] += g;
        }
        if Some(ctx.step) == self.nan_at_step {
            out.sum = f64::NAN;
        }
        Ok(out)
    }

    fn eval_loss(&mut self, batch: &Batch) -> Result<LossSum, EngineError> {
        Ok(self.loss(batch))
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

    fn save_adapter(&self, dir: &Path) -> Result<(), EngineError> {
        let bytes: Vec<u8> = self.values().iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.join("adapter_model.bin"), bytes)?;
        std::fs::write(
            dir.join("adapter_config.json"),
            "{\"peft_type\": \"LORA\"}\n",
        )?;
        Ok(())
    }

    fn load_adapter(&mut self, dir: &Path) -> Result<(), EngineError> {
        let bytes = std::fs::read(dir.join("adapter_model.bin"))?;
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if values.len() != 3 {
            return Err(format!("{}: expected 3 values", dir.display()).into());
        }
        self.params[0].value.copy_from_slice(&values[..2]);
        self.params[1].value.copy_from_slice(&values[2..]);
        Ok(())
    }
}

/// `count` micro-batches of 1 to 3 samples of y = 3·x0 − 2·x1 + 0.5 (+ noise).
pub fn batches(count: u32, seed: u64, target: fn(f32, f32) -> f32) -> Vec<Batch> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|id| {
            let n = 1 + (id as usize % 3);
            let xs: Vec<[f32; 2]> = (0..n)
                .map(|_| [rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)])
                .collect();
            let ys = xs
                .iter()
                .map(|x| target(x[0], x[1]) + rng.random_range(-0.05..0.05))
                .collect();
            Batch { id, xs, ys }
        })
        .collect()
}

pub fn line(x0: f32, x1: f32) -> f32 {
    3.0 * x0 - 2.0 * x1 + 0.5
}

pub fn options(dir: &Path) -> TrainerOptions {
    let mut o = TrainerOptions::new(dir);
    o.max_steps = 12;
    o.gradient_accumulation_steps = 2;
    o.learning_rate = 0.4;
    o.warmup_steps = 2;
    o.logging_steps = 1;
    o.eval_steps = 3;
    o.save_steps = 4;
    o.save_total_limit = None;
    o.weight_decay = 0.01;
    o.max_grad_norm = 1.0;
    o.seed = 7;
    o
}
