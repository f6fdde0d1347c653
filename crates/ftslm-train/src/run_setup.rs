//! From the resolved configuration (plus command-line overrides) to a run
//! ready to start: trainer options, the model with its frozen base and a new
//! adapter, the tokenized and batched data, and the plan to print.
//!
//! The cheap checks come first (settings, model path, tokenizer, data), so a
//! typo fails in a second instead of after the base model was quantized.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use ftslm_config::{
    DatasetSettings, LoraSettings as LoraConfig, LossOn, QuantizationSettings, ResolvedConfig,
    TrainingSettings,
};
use ftslm_data::batching::{Batch, BatchStrategy};
use ftslm_data::task::{sha256_hex, TrainedTask, TASK_FORMAT};
use ftslm_data::tokenize::PromptTokenizer;
use ftslm_model::inspect::{
    EmbeddingPrecision, LoraPlan, MemoryEstimate, ParameterCounts, TrainingShape,
};
use ftslm_model::{ComputePolicy, LoraAdapter, LoraSettings, Projection};

use crate::data::EpochSource;
use crate::llama_engine::LlamaEngine;
use crate::options::TrainerOptions;
use crate::packed_data::{BatchLayout, EpochBatches, TokenizedSet};
use crate::plan::{TrainingPlan, WeightBytes};
use crate::run_checks::{check_disk_fits, check_plan_fits, repeated_examples, run_settings};
use crate::setup_error::SetupError;
use crate::summary::available_memory_bytes;
use ftslm_source::{FrozenBase, ModelDescription, ModelSource};

/// Seed of the evaluation layout; evaluation order does not affect its loss.
const EVAL_LAYOUT_SEED: u64 = 0;

/// The configuration sections a run reads.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    pub model_name: String,
    pub dataset: DatasetSettings,
    pub lora: LoraConfig,
    pub training: TrainingSettings,
    pub quantization: QuantizationSettings,
}

impl RunSettings {
    pub fn from_config(config: &ResolvedConfig) -> Result<Self, SetupError> {
        Ok(RunSettings {
            model_name: config.model()?.name,
            dataset: config.dataset()?,
            lora: config.lora()?,
            training: config.training()?,
            quantization: config.quantization()?,
        })
    }
}

/// Command-line values that win over the configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOverrides {
    pub model: Option<PathBuf>,
    pub train_data: Option<PathBuf>,
    pub val_data: Option<PathBuf>,
    pub output_dir: Option<PathBuf>,
    pub max_steps: Option<u64>,
    /// `--no-resume`.
    pub no_resume: bool,
    /// `--allow-changed KEY`: settings a resumed run may change.
    pub allow_changed: Vec<String>,
}

/// Maps the `training:` section onto the trainer's options.
pub fn trainer_options(
    t: &TrainingSettings,
    overrides: &RunOverrides,
) -> Result<TrainerOptions, SetupError> {
    if t.metric_for_best_model != "eval_loss" {
        return Err(SetupError::setting(
            "training.metric_for_best_model",
            format!(
                "is `{}`; only eval_loss is computed during training — set it to eval_loss",
                t.metric_for_best_model
            ),
        ));
    }
    if t.greater_is_better {
        return Err(SetupError::setting(
            "training.greater_is_better",
            "is true, but a lower eval_loss is better; set it to false",
        ));
    }
    let mut o = TrainerOptions::new(
        overrides
            .output_dir
            .clone()
            .unwrap_or_else(|| t.output_dir.clone()),
    );
    o.num_train_epochs = t.num_train_epochs;
    o.max_steps = match overrides.max_steps {
        Some(n) => i64::try_from(n).unwrap_or(i64::MAX),
        None => t.max_steps,
    };
    o.per_device_train_batch_size = t.per_device_train_batch_size;
    o.gradient_accumulation_steps = t.gradient_accumulation_steps;
    o.learning_rate = t.learning_rate;
    o.warmup_steps = t.warmup_steps;
    o.lr_scheduler_type = t.lr_scheduler_type;
    o.weight_decay = t.weight_decay;
    o.adam_beta1 = t.adam_beta1;
    o.adam_beta2 = t.adam_beta2;
    o.adam_epsilon = t.adam_epsilon;
    o.max_grad_norm = t.max_grad_norm;
    o.logging_steps = t.logging_steps;
    o.eval_steps = t.eval_steps;
    o.save_steps = t.save_steps;
    o.save_total_limit = t.save_total_limit;
    o.load_best_model_at_end = t.load_best_model_at_end;
    o.early_stopping_patience = t.early_stopping_patience;
    o.seed = t.seed;
    o.resume = !overrides.no_resume;
    Ok(o)
}

/// The `lora:` section as the model crate's settings.
pub fn lora_settings(l: &LoraConfig) -> Result<LoraSettings, SetupError> {
    let target_modules = Projection::parse_targets(&l.target_modules)
        .map_err(|problem| SetupError::setting("lora.target_modules", problem))?;
    let settings = LoraSettings {
        r: l.r,
        alpha: l.lora_alpha,
        dropout: l.lora_dropout,
        target_modules,
        use_rslora: l.use_rslora,
    };
    if let Some(problem) = settings.problem() {
        return Err(SetupError::setting("lora", problem));
    }
    Ok(settings)
}

/// A run ready for [`crate::train`].
pub struct PreparedRun {
    pub source: ModelSource,
    pub frozen_base: FrozenBase,
    pub engine: LlamaEngine,
    pub train: EpochBatches,
    pub eval: Vec<Batch>,
    pub options: TrainerOptions,
    pub plan: TrainingPlan,
    pub tokenizer: PromptTokenizer,
}

/// Loads everything a run needs, to compute as `policy` says; `note`
/// receives progress lines (which stage is running, loader notes) as they
/// happen.
pub fn prepare(
    settings: &RunSettings,
    overrides: &RunOverrides,
    policy: ComputePolicy,
    note: &mut dyn FnMut(&str),
) -> Result<PreparedRun, SetupError> {
    let mut options = trainer_options(&settings.training, overrides)?;
    options
        .validate()
        .map_err(|e| SetupError::setting("training", e.to_string()))?;
    // An output folder that cannot be written fails now, not after the
    // model has loaded (minutes, for an 8B base).
    ftslm_fs::check_writable_dir(&options.output_dir).map_err(|e| {
        SetupError::setting(
            "training.output_dir",
            format!("{e}; choose a writable folder"),
        )
    })?;
    let lora = lora_settings(&settings.lora)?;
    let ds = &settings.dataset;
    let model_path = overrides
        .model
        .clone()
        .unwrap_or_else(|| PathBuf::from(&settings.model_name));
    let source = ModelSource::locate(&model_path)?;
    let base = source.frozen_base(&settings.quantization)?;
    let tokenizer = source.prompt_tokenizer(&ds.system_prompt)?;

    let train_path = overrides
        .train_data
        .clone()
        .unwrap_or(ds.train_path.clone());
    let eval_path = overrides
        .val_data
        .clone()
        .unwrap_or(ds.validation_path.clone());
    let started = Instant::now();
    let train_set = TokenizedSet::read(&train_path, &tokenizer, ds.max_seq_length, None)?;
    let eval_set = TokenizedSet::read(
        &eval_path,
        &tokenizer,
        ds.max_seq_length,
        ds.max_eval_samples,
    )?;
    for n in train_set.notes.iter().chain(&eval_set.notes) {
        note(n);
    }
    if let Some(warning) = repeated_examples(&train_set, &eval_set, &train_path, &eval_path) {
        note(&warning);
    }
    note(&format!(
        "tokenized {} training and {} evaluation records in {:.1}s",
        train_set.examples.len(),
        eval_set.examples.len(),
        started.elapsed().as_secs_f64()
    ));

    let pad_id = tokenizer.pad_id();
    let layout = BatchLayout::new(
        ds.packing,
        settings.training.per_device_train_batch_size,
        ds.max_seq_length,
        pad_id,
    );
    let eval_layout = BatchLayout {
        batch_size: settings.training.per_device_eval_batch_size,
        ..layout
    };
    let eval = eval_layout.batches(&eval_set.examples, EVAL_LAYOUT_SEED);
    let longest_example = train_set
        .examples
        .iter()
        .map(|e| e.len())
        .max()
        .unwrap_or(0);
    let train_tokens = train_set.tokens();
    let train_records = train_set.examples.len();
    let truncated = train_set.truncated;
    let train_shape = train_set.shape.clone();
    let train = EpochBatches::new(train_set.examples, layout);

    // The plan, from the model's configuration alone, before anything is
    // allocated: a setting that cannot fit stops here, not after minutes
    // of loading (or with the allocator's abort).
    let description = ModelDescription::read(&model_path)?;
    check_plan_fits(
        &description.config,
        &settings.lora,
        &lora,
        TrainingShape {
            batch_size: policy
                .threads
                .min(settings.training.per_device_train_batch_size.max(1)),
            seq_len: match layout.strategy {
                BatchStrategy::Packed => ds.max_seq_length.max(longest_example),
                _ => longest_example,
            },
            gradient_checkpointing: settings.training.gradient_checkpointing,
            embedding_precision: EmbeddingPrecision::F32,
        },
        available_memory_bytes(),
    )?;
    let tokenizer_bytes = source
        .tokenizer_files()
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let adapter_parameters = LoraPlan {
        r: lora.r,
        target_modules: lora.target_modules.clone(),
    }
    .parameter_count(&description.config);
    check_disk_fits(
        &options.output_dir,
        options.save_total_limit,
        adapter_parameters,
        tokenizer_bytes,
    )?;
    note(&format!(
        "loading {} with a {} frozen base",
        source.weights().display(),
        base
    ));
    let started = Instant::now();
    let device = Device::Cpu;
    let (model, loader_notes) = source.load(base, &device)?;
    for n in &loader_notes {
        note(n);
    }
    note(&format!(
        "model loaded in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    let adapter = LoraAdapter::new(
        model.config(),
        lora,
        Some(model_path.display().to_string()),
        settings.training.seed,
        &device,
    )?;
    options.export_files = source.tokenizer_files();
    let base_model = source.identity()?;
    options.allow_changed = overrides.allow_changed.clone();
    options.run_settings = run_settings(
        settings,
        &options,
        &base_model,
        [&train_path, &eval_path],
        &base.to_string(),
    )?;
    options.task = Some(TrainedTask {
        format: TASK_FORMAT,
        system_prompt: ds.system_prompt.clone(),
        instruction: train_shape.instruction,
        fields: train_shape.fields,
        chat_template_sha256: sha256_hex(tokenizer.template().source().as_bytes()),
        max_seq_length: ds.max_seq_length,
        base_model,
    });

    let weights = WeightBytes::of(&model);
    let adapter_parameters = adapter.parameter_count() as u64;
    let row_tokens = match layout.strategy {
        BatchStrategy::Packed => ds.max_seq_length.max(longest_example),
        _ => longest_example,
    };
    let rows_in_flight = policy
        .threads
        .min(settings.training.per_device_train_batch_size.max(1));
    // `model inspect`'s formula, for the rows computed side by side, with
    // the projections as loaded (not every base is NF4).
    let lora_plan = LoraPlan {
        r: adapter.settings().r,
        target_modules: adapter.settings().target_modules.clone(),
    };
    let shape = TrainingShape {
        batch_size: rows_in_flight,
        seq_len: row_tokens,
        gradient_checkpointing: settings.training.gradient_checkpointing,
        embedding_precision: EmbeddingPrecision::F32,
    };
    let memory = MemoryEstimate::new(model.config(), &lora_plan, shape).with_frozen_projections(
        base.to_string(),
        weights.projections,
        ParameterCounts::of(model.config()).projections,
    );
    let batches_per_epoch = train.batches_per_epoch();
    let steps = options
        .checked_total_steps(batches_per_epoch)
        .map_err(|e| SetupError::setting("training", e.to_string()))?;
    let steps_per_epoch = options.steps_per_epoch(batches_per_epoch).max(1);
    let c = model.config();
    let plan = TrainingPlan {
        model: model_path.clone(),
        architecture: format!(
            "{} layers, hidden {}, {} heads / {} kv, vocab {}",
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.vocab_size
        ),
        frozen_base: base.to_string(),
        weights,
        adapter: describe_adapter(adapter.settings()),
        adapter_parameters,
        train_file: train_path,
        train_records,
        train_tokens,
        truncated_examples: truncated,
        eval_file: eval_path,
        eval_records: eval_set.examples.len(),
        layout: describe_layout(layout, ds),
        micro_batches_per_epoch: batches_per_epoch,
        gradient_accumulation_steps: options.gradient_accumulation_steps,
        steps,
        epochs: steps as f64 / steps_per_epoch as f64,
        tokens_per_step: train_tokens as f64 / steps_per_epoch as f64,
        memory,
        output_dir: options.output_dir.clone(),
    };
    let engine = LlamaEngine::new(
        model,
        adapter,
        ds.loss_on,
        settings.training.gradient_checkpointing,
        policy,
    )?;
    Ok(PreparedRun {
        source,
        frozen_base: base,
        engine,
        train,
        eval,
        options,
        plan,
        tokenizer,
    })
}

fn describe_adapter(s: &LoraSettings) -> String {
    let targets: Vec<&str> = s.target_modules.iter().map(|p| p.module_name()).collect();
    format!(
        "LoRA r={} alpha={} dropout={} on {}{}",
        s.r,
        s.alpha,
        s.dropout,
        targets.join(","),
        if s.use_rslora { " (rsLoRA)" } else { "" }
    )
}

fn describe_layout(layout: BatchLayout, ds: &DatasetSettings) -> String {
    let loss = match ds.loss_on {
        LossOn::Answer => "loss on answers",
        LossOn::All => "loss on all tokens",
    };
    match layout.strategy {
        BatchStrategy::Packed => format!(
            "packed rows of up to {} tokens, {} rows a micro-batch, {loss}",
            layout.max_seq_length, layout.batch_size
        ),
        _ => format!(
            "length-grouped, {} examples a micro-batch (max {} tokens), {loss}",
            layout.batch_size, layout.max_seq_length
        ),
    }
}
