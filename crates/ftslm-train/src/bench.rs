//! `ftslm bench train`: the training step of `../shared/bench/hf_qlora_baseline.py`
//! done by this engine, so the two can be compared side by side. Same work:
//! the first `batch_size × (steps + 1)` records in file order, the training
//! chat rendering, one batch per step padded to its longest row, NF4 base with
//! double quantization, LoRA r=16/alpha 32/dropout 0.1 on q,k,v,o, AdamW at
//! 2e-4 (torch's defaults otherwise: betas 0.9/0.999, eps 1e-8, weight decay
//! 0.01, no clipping, no schedule), loss on every non-pad token (`All`) or on
//! the answer, gradient checkpointing as configured (on, as `ftslm train`
//! runs; the baseline's `--gc`). Step 0 warms up and is not counted; tokens/s
//! counts non-pad tokens, as the baseline does. The steps are `ftslm
//! train`'s own: the bench hands the batches, in file order, to the training
//! loop (`trainer::train`, with its normalisation, gradient-norm computation,
//! AdamW, schedule, per-step log and the run directory it writes in a
//! scratch folder), and times each step from the loop's progress reports.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use ftslm_config::{LossOn, LrSchedulerType};
use ftslm_data::batching::{make_batches, Batch, BatchStrategy};
use ftslm_data::SYSTEM_PROMPT;
use ftslm_model::grad::PassSeconds;
use ftslm_model::{ComputePolicy, LoraAdapter, LoraSettings, Projection};
use ftslm_source::{FrozenBase, ModelSource};
use serde::Serialize;

use crate::data::InOrderBatches;
use crate::engine::{EngineError, LossSum, ParamView, StepContext, TrainingEngine};
use crate::llama_engine::LlamaEngine;
use crate::metrics::MetricRecord;
use crate::options::TrainerOptions;
use crate::packed_data::TokenizedSet;
use crate::progress::Progress;
use crate::setup_error::SetupError;
use crate::summary::peak_rss_bytes;
use crate::trainer::train;

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
    let engine = LlamaEngine::new(
        model,
        adapter,
        settings.loss_on,
        settings.gradient_checkpointing,
        policy,
    )?;
    let load_seconds = started.elapsed().as_secs_f64();

    let products = if policy.run(ftslm_model::kernel::integer_products) {
        "int16 (AVX-512 VNNI)"
    } else {
        "f32"
    };
    let scratch = tempfile::Builder::new()
        .prefix("ftslm-bench-")
        .tempdir()
        .map_err(|e| SetupError::setting("bench", format!("a scratch run directory: {e}")))?;
    let options = bench_trainer_options(scratch.path().join("run"), settings);
    let data = InOrderBatches::new(batches);
    let mut timed = TimedEngine {
        engine,
        calls: Vec::new(),
    };
    let mut steps = StepClock::new(note);
    train(&mut timed, &options, &data, &[], &mut steps)
        .map_err(|e| SetupError::setting("bench", e.to_string()))?;
    let StepClock {
        seconds: step_seconds,
        losses,
        ..
    } = steps;
    if timed.calls.len() != step_seconds.len() || losses.len() != step_seconds.len() {
        return Err(SetupError::setting(
            "bench",
            format!(
                "the loop ran {} steps, {} forward/backward calls and logged {} losses; \
                 a bench step is one call, logged",
                step_seconds.len(),
                timed.calls.len(),
                losses.len()
            ),
        ));
    }

    let mut report = BenchReport {
        stack: format!("ftslm ({base} base)"),
        products: products.to_string(),
        threads: policy.threads,
        batch_size: settings.batch_size,
        steps: settings.steps,
        loss_on: settings.loss_on.name().to_string(),
        gradient_checkpointing: settings.gradient_checkpointing,
        tokens_per_s: None,
        peak_rss_mb: None,
        losses,
        step_tokens: timed.calls.iter().map(|c| c.input_tokens).collect(),
        step_padding: timed.calls.iter().map(|c| c.padding).collect(),
        step_seconds,
        phases: BenchPhases {
            data: data_seconds,
            ..BenchPhases::default()
        },
        load_seconds,
    };
    // Step 0 warms up and is not counted.
    let (mut tokens, mut seconds) = (0u64, 0f64);
    let mut passes = PassSeconds::default();
    for (call, &step_seconds) in timed.calls.iter().zip(&report.step_seconds).skip(1) {
        tokens += call.input_tokens;
        seconds += step_seconds;
        report.phases.forward_backward += call.seconds;
        report.phases.optimizer += step_seconds - call.seconds;
        passes.add(call.passes);
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

/// `ftslm train`'s options for the baseline's loop: `steps + 1` steps of one
/// micro-batch, AdamW at a constant 2e-4 with torch's defaults (weight
/// decay 0.01), no clipping, a log line every step, no evaluation and no
/// checkpoint before the end.
fn bench_trainer_options(output_dir: PathBuf, settings: &BenchSettings) -> TrainerOptions {
    let mut options = TrainerOptions::new(output_dir);
    options.max_steps = (settings.steps + 1) as i64;
    options.per_device_train_batch_size = settings.batch_size;
    options.gradient_accumulation_steps = 1;
    options.learning_rate = 2e-4;
    options.warmup_steps = 0;
    options.lr_scheduler_type = LrSchedulerType::Constant;
    options.weight_decay = 0.01;
    options.max_grad_norm = 0.0;
    options.logging_steps = 1;
    options.eval_steps = 0;
    options.save_steps = 0;
    options.save_total_limit = None;
    options.load_best_model_at_end = false;
    options.seed = 0;
    options.resume = false;
    options
}

/// One forward/backward call as the loop made it.
struct EngineCall {
    seconds: f64,
    passes: PassSeconds,
    input_tokens: u64,
    padding: u64,
}

/// The engine `train` drives, with each forward/backward call timed; every
/// other call passes straight through.
struct TimedEngine {
    engine: LlamaEngine,
    calls: Vec<EngineCall>,
}

impl TrainingEngine for TimedEngine {
    type Batch = Batch;

    fn forward_backward(
        &mut self,
        batch: &Batch,
        ctx: StepContext,
    ) -> Result<LossSum, EngineError> {
        let before = self.engine.stats().passes;
        let started = Instant::now();
        let loss = self.engine.forward_backward(batch, ctx)?;
        let seconds = started.elapsed().as_secs_f64();
        let after = self.engine.stats().passes;
        self.calls.push(EngineCall {
            seconds,
            passes: PassSeconds {
                forward: after.forward - before.forward,
                loss_head: after.loss_head - before.loss_head,
                backward: after.backward - before.backward,
            },
            input_tokens: loss.input_tokens,
            padding: (batch.slots() - batch.real_tokens()) as u64,
        });
        Ok(loss)
    }

    fn eval_loss(&mut self, batch: &Batch) -> Result<LossSum, EngineError> {
        self.engine.eval_loss(batch)
    }

    fn parameters(&mut self) -> Vec<ParamView<'_>> {
        self.engine.parameters()
    }

    fn zero_grads(&mut self) {
        self.engine.zero_grads();
    }

    fn parameters_changed(&mut self) -> Result<(), EngineError> {
        self.engine.parameters_changed()
    }

    fn save_adapter(&self, dir: &Path) -> Result<(), EngineError> {
        self.engine.save_adapter(dir)
    }

    fn load_adapter(&mut self, dir: &Path) -> Result<(), EngineError> {
        self.engine.load_adapter(dir)
    }
}

/// The loop's progress as the bench reads it: each step's wall time (from
/// the end of the one before, as a user waits for it) and its logged loss.
struct StepClock<'a> {
    note: &'a mut dyn FnMut(&str),
    last: Instant,
    seconds: Vec<f64>,
    losses: Vec<f64>,
}

impl<'a> StepClock<'a> {
    fn new(note: &'a mut dyn FnMut(&str)) -> Self {
        StepClock {
            note,
            last: Instant::now(),
            seconds: Vec::new(),
            losses: Vec::new(),
        }
    }
}

impl Progress for StepClock<'_> {
    fn start(&mut self, _step: u64, _total: u64) {
        self.last = Instant::now();
    }

    fn step(&mut self, step: u64) {
        let now = Instant::now();
        let seconds = (now - self.last).as_secs_f64();
        self.last = now;
        self.seconds.push(seconds);
        let s = step - 1;
        let loss = self.losses.last().copied().unwrap_or(f64::NAN);
        let warm_up = if s == 0 {
            " (warm-up, not counted)"
        } else {
            ""
        };
        (self.note)(&format!("step {s}: loss {loss:.4}, {seconds:.2}s{warm_up}"));
    }

    fn record(&mut self, record: &MetricRecord) {
        if let Some(loss) = record.loss {
            self.losses.push(loss);
        }
    }

    fn note(&mut self, _message: &str) {}

    fn finish(&mut self) {}
}
