//! `ftslm bench train`: the training step of `../shared/bench/hf_qlora_baseline.py`
//! done by this engine, so the two can be compared side by side. Same work:
//! the first `batch_size × (steps + 1)` records in file order, the training
//! chat rendering, one batch per step padded to its longest row, NF4 base with
//! double quantization, LoRA r=16/alpha 32/dropout 0.1 on q,k,v,o, AdamW at
//! 2e-4 (torch's defaults otherwise: betas 0.9/0.999, eps 1e-8, weight decay
//! 0.01, no clipping, no schedule), loss on every non-pad token (`All`) or on
//! the answer, gradient checkpointing as configured (on, as `ftslm train`
//! runs; the baseline's `--gc`). Step 0 warms up and is not counted; tokens/s
//! counts non-pad tokens, as the baseline does. The step itself is the
//! engine `ftslm train` runs; the loop around it is the bench's own (fixed
//! batches in file order, no evaluation or checkpoints).

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use ftslm_config::LossOn;
use ftslm_data::batching::{make_batches, BatchStrategy};
use ftslm_data::SYSTEM_PROMPT;
use ftslm_model::grad::PassSeconds;
use ftslm_model::{ComputePolicy, LoraAdapter, LoraSettings, Projection};
use serde::Serialize;

use crate::clip::scale_grads;
use crate::engine::{StepContext, TrainingEngine};
use crate::llama_engine::LlamaEngine;
use crate::optimizer::{AdamW, AdamWConfig};
use crate::packed_data::TokenizedSet;
use crate::setup_error::SetupError;
use crate::step::step_seed;
use crate::summary::peak_rss_bytes;
use ftslm_source::{FrozenBase, ModelSource};

/// The baseline's settings that a user may change.
#[derive(Debug, Clone)]
pub struct BenchSettings {
    pub model: PathBuf,
    pub data: PathBuf,
    /// Counted steps; one more (step 0) runs first.
    pub steps: usize,
    pub batch_size: usize,
    pub loss_on: LossOn,
    /// Recompute each layer in the backward (`training.gradient_checkpointing`,
    /// on by default as `ftslm train` runs; the baseline's `--gc`).
    pub gradient_checkpointing: bool,
    /// Precision and threads of every pass (the baseline's
    /// torch.set_num_threads is `policy.threads`).
    pub policy: ComputePolicy,
}

/// Seconds spent per phase over the counted steps.
///
/// The engine runs a batch's forward and backward as one call, its rows side
/// by side on the threads, so `forward_backward` is that call's wall time
/// and `forward`, `loss_head` and `backward` split it in the proportion of
/// the rows' own time in each pass.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BenchPhases {
    /// Reading, rendering and tokenizing the records, and laying out batches (once).
    pub data: f64,
    pub forward_backward: f64,
    /// Embedding and decoder layers.
    pub forward: f64,
    /// Final norm and the LM head's forward and backward, fused per chunk.
    pub loss_head: f64,
    /// Decoder layers in reverse.
    pub backward: f64,
    /// Gradient normalisation and the AdamW update.
    pub optimizer: f64,
}

/// One bench run, in the JSON shape of the baseline's line plus detail.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub stack: String,
    /// What the frozen weights' products multiplied: "f32", or "int16
    /// (AVX-512 VNNI)" at `High` precision on a CPU that has it.
    pub products: String,
    pub threads: usize,
    pub batch_size: usize,
    pub steps: usize,
    pub loss_on: String,
    pub gradient_checkpointing: bool,
    /// Non-pad tokens per second over the counted steps (`None` with `steps` = 0).
    pub tokens_per_s: Option<f64>,
    /// Peak resident memory of the process (VmHWM).
    pub peak_rss_mb: Option<f64>,
    /// Mean loss of every step, step 0 first, before its update.
    pub losses: Vec<f64>,
    pub step_seconds: Vec<f64>,
    /// Non-pad tokens of every step.
    pub step_tokens: Vec<u64>,
    /// Padding slots of every step, which the engine strips before computing.
    pub step_padding: Vec<u64>,
    pub phases: BenchPhases,
    pub load_seconds: f64,
}

/// Runs the bench; `note` gets progress lines.
pub fn bench_train(
    settings: &BenchSettings,
    note: &mut dyn FnMut(&str),
) -> Result<BenchReport, SetupError> {
    if settings.batch_size == 0 {
        return Err(SetupError::setting("--batch-size", "must be at least 1"));
    }
    let records = settings.batch_size * (settings.steps + 1);
    let source = ModelSource::locate(&settings.model)?;

    let started = Instant::now();
    let tokenizer = source.prompt_tokenizer(SYSTEM_PROMPT)?;
    // The baseline never truncates; neither does the bench.
    let set = TokenizedSet::read(&settings.data, &tokenizer, usize::MAX, Some(records))?;
    if set.examples.len() < records {
        return Err(SetupError::setting(
            "--data",
            format!(
                "{} holds {} records; {} steps of {} (and the uncounted step 0) need {records}",
                settings.data.display(),
                set.examples.len(),
                settings.steps,
                settings.batch_size
            ),
        ));
    }
    let pad_id = tokenizer.pad_id();
    let batches = make_batches(
        &set.examples,
        BatchStrategy::PadToLongest,
        settings.batch_size,
        usize::MAX,
        pad_id,
        0,
    );
    let data_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let base = FrozenBase::Nf4 { double_quant: true };
    note(&format!(
        "loading {} with a {base} frozen base",
        source.weights().display()
    ));
    let device = Device::Cpu;
    let (model, _) = source.load(base, &device)?;
    let lora = LoraSettings {
        r: 16,
        alpha: 32.0,
        dropout: 0.1,
        target_modules: vec![Projection::Q, Projection::K, Projection::V, Projection::O],
        use_rslora: false,
    };
    let adapter = LoraAdapter::new(model.config(), lora, None, 0, &device)?;
    let policy = settings.policy;
    let mut engine = LlamaEngine::new(
        model,
        adapter,
        settings.loss_on,
        settings.gradient_checkpointing,
        policy,
    )?;
    let mut optimizer = AdamW::new(AdamWConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
    });
    let load_seconds = started.elapsed().as_secs_f64();

    let mut report = BenchReport {
        stack: format!("ftslm ({base} base)"),
        products: if policy.run(ftslm_model::kernel::integer_products) {
            "int16 (AVX-512 VNNI)"
        } else {
            "f32"
        }
        .to_string(),
        threads: policy.threads,
        batch_size: settings.batch_size,
        steps: settings.steps,
        loss_on: settings.loss_on.name().to_string(),
        gradient_checkpointing: settings.gradient_checkpointing,
        tokens_per_s: None,
        peak_rss_mb: None,
        losses: Vec::new(),
        step_seconds: Vec::new(),
        step_tokens: Vec::new(),
        step_padding: Vec::new(),
        phases: BenchPhases {
            data: data_seconds,
            ..BenchPhases::default()
        },
        load_seconds,
    };
    let (mut tokens, mut seconds) = (0u64, 0f64);
    let mut passes = PassSeconds::default();
    for (s, batch) in batches.iter().enumerate() {
        let passes_before = engine.stats().passes;
        let step = s as u64 + 1;
        let t0 = Instant::now();
        engine.zero_grads();
        let loss = engine
            .forward_backward(
                batch,
                StepContext {
                    step,
                    micro_batch: 0,
                    seed: step_seed(0, step, 0),
                },
            )
            .map_err(|e| SetupError::setting("bench", format!("step {s}: {e}")))?;
        let t1 = Instant::now();
        let mean = loss.mean().ok_or_else(|| {
            SetupError::setting("bench", format!("step {s} has no target tokens"))
        })?;
        {
            let mut params = engine.parameters();
            scale_grads(&mut params, (1.0 / loss.target_tokens as f64) as f32);
            optimizer
                .step(&mut params, 2e-4)
                .map_err(|e| SetupError::setting("bench", e.to_string()))?;
        }
        engine
            .parameters_changed()
            .map_err(|e| SetupError::setting("bench", e.to_string()))?;
        let t2 = Instant::now();
        let step_seconds = (t2 - t0).as_secs_f64();
        note(&format!(
            "step {s}: loss {mean:.4}, {} tokens, {step_seconds:.2}s{}",
            loss.input_tokens,
            if s == 0 {
                " (warm-up, not counted)"
            } else {
                ""
            }
        ));
        report.losses.push(mean);
        report.step_seconds.push(step_seconds);
        report.step_tokens.push(loss.input_tokens);
        report
            .step_padding
            .push((batch.slots() - batch.real_tokens()) as u64);
        if s > 0 {
            tokens += loss.input_tokens;
            seconds += step_seconds;
            report.phases.forward_backward += (t1 - t0).as_secs_f64();
            let after = engine.stats().passes;
            passes.add(PassSeconds {
                forward: after.forward - passes_before.forward,
                loss_head: after.loss_head - passes_before.loss_head,
                backward: after.backward - passes_before.backward,
            });
            report.phases.optimizer += (t2 - t1).as_secs_f64();
        }
    }
    let row_seconds = passes.forward + passes.loss_head + passes.backward;
    if row_seconds > 0.0 {
        let wall = report.phases.forward_backward / row_seconds;
        report.phases.forward = passes.forward * wall;
        report.phases.loss_head = passes.loss_head * wall;
        report.phases.backward = passes.backward * wall;
    }
    report.tokens_per_s = (seconds > 0.0).then(|| tokens as f64 / seconds);
    report.peak_rss_mb = peak_rss_bytes().map(|b| b as f64 / (1024.0 * 1024.0));
    Ok(report)
}
