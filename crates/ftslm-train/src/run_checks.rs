//! The checks a run makes before it starts, each from what is known
//! before the model loads: the settings that define it (kept in every
//! checkpoint, compared on resume), the memory plan against the machine,
//! and repeated or shared examples in its data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ftslm_config::LoraSettings as LoraConfig;
use ftslm_data::task::{sha256_hex, BaseModelIdentity};
use ftslm_model::inspect::{LoraPlan, MemoryEstimate, TrainingShape};
use ftslm_model::{LlamaConfig, LoraSettings};

use crate::options::TrainerOptions;
use crate::packed_data::TokenizedSet;
use crate::run_setup::RunSettings;
use crate::setup_error::SetupError;

/// The settings that define a run, as `key → value` text: the base model's
/// weights, the data files' bytes, and every setting that changes what the
/// steps compute or how many there are. Kept in each checkpoint; a resume
/// compares them (`TrainerOptions::run_settings`).
pub(crate) fn run_settings(
    settings: &RunSettings,
    options: &TrainerOptions,
    base_model: &BaseModelIdentity,
    [train, eval]: [&PathBuf; 2],
    frozen_base: &str,
) -> Result<BTreeMap<String, String>, SetupError> {
    let digest = |path: &PathBuf, key: &'static str| -> Result<String, SetupError> {
        let bytes = std::fs::read(path).map_err(|e| {
            SetupError::setting(key, format!("cannot read {}: {e}", path.display()))
        })?;
        Ok(sha256_hex(&bytes))
    };
    let (ds, l) = (&settings.dataset, &settings.lora);
    let optional = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    let mut s = BTreeMap::new();
    let mut put = |key: &str, value: String| {
        s.insert(key.to_string(), value);
    };
    put("model.weights_sha256", base_model.weights_sha256.clone());
    put("quantization.frozen_base", frozen_base.to_string());
    put(
        "dataset.train_file.sha256",
        digest(train, "dataset.train_path")?,
    );
    put(
        "dataset.validation_file.sha256",
        digest(eval, "dataset.validation_path")?,
    );
    put("dataset.max_seq_length", ds.max_seq_length.to_string());
    put("dataset.packing", ds.packing.to_string());
    put("dataset.loss_on", ds.loss_on.name().to_string());
    put("dataset.system_prompt", ds.system_prompt.clone());
    put("lora.r", l.r.to_string());
    put("lora.lora_alpha", l.lora_alpha.to_string());
    put("lora.lora_dropout", l.lora_dropout.to_string());
    put("lora.target_modules", l.target_modules.join(","));
    put("lora.use_rslora", l.use_rslora.to_string());
    put("training.learning_rate", options.learning_rate.to_string());
    put(
        "training.per_device_train_batch_size",
        options.per_device_train_batch_size.to_string(),
    );
    put(
        "training.gradient_accumulation_steps",
        options.gradient_accumulation_steps.to_string(),
    );
    put("training.warmup_steps", options.warmup_steps.to_string());
    put(
        "training.lr_scheduler_type",
        options.lr_scheduler_type.name().to_string(),
    );
    put("training.weight_decay", options.weight_decay.to_string());
    put("training.adam_beta1", options.adam_beta1.to_string());
    put("training.adam_beta2", options.adam_beta2.to_string());
    put("training.adam_epsilon", options.adam_epsilon.to_string());
    put("training.max_grad_norm", options.max_grad_norm.to_string());
    put("training.seed", options.seed.to_string());
    put("training.max_steps", options.max_steps.to_string());
    put(
        "training.num_train_epochs",
        options.num_train_epochs.to_string(),
    );
    put("training.logging_steps", options.logging_steps.to_string());
    put("training.eval_steps", options.eval_steps.to_string());
    put("training.save_steps", options.save_steps.to_string());
    put(
        "training.save_total_limit",
        optional(options.save_total_limit.map(|n| n.to_string())),
    );
    put(
        "training.early_stopping_patience",
        optional(options.early_stopping_patience.map(|n| n.to_string())),
    );
    Ok(s)
}

/// Refuses, before the model loads, a run whose output folder has less free
/// space than it will write: the checkpoints kept (`save_total_limit`, at
/// least one) and the one being written — each the f32 adapter, AdamW's two
/// moments and the tokenizer files — plus `best_model/` and `final_model/`.
pub(crate) fn check_disk_fits(
    output_dir: &Path,
    save_total_limit: Option<usize>,
    adapter_parameters: u64,
    tokenizer_bytes: u64,
) -> Result<(), SetupError> {
    let adapter = adapter_parameters.saturating_mul(4);
    let checkpoint = adapter.saturating_mul(3).saturating_add(tokenizer_bytes);
    let model = adapter.saturating_add(tokenizer_bytes);
    let kept = save_total_limit.unwrap_or(1).max(1) as u64;
    let needed = (kept + 1)
        .saturating_mul(checkpoint)
        .saturating_add(model.saturating_mul(2));
    ftslm_fs::check_free_space(output_dir, needed, "the run's checkpoints and models").map_err(
        |e| {
            SetupError::setting(
                "training.output_dir",
                format!("{e} (training.save_total_limit keeps fewer checkpoints)"),
            )
        },
    )
}

/// Refuses, before any allocation, a LoRA rank above the matrices it adapts
/// and a plan larger than the memory the machine has (`available`, when
/// known), naming the setting that drives the largest part.
pub(crate) fn check_plan_fits(
    config: &LlamaConfig,
    lora_config: &LoraConfig,
    lora: &LoraSettings,
    shape: TrainingShape,
    available: Option<u64>,
) -> Result<(), SetupError> {
    for projection in &lora.target_modules {
        let (out_features, in_features) = projection.shape(config);
        let smallest = out_features.min(in_features);
        if lora.r > smallest {
            return Err(SetupError::setting(
                "lora.r",
                format!(
                    "is {}, above the rank of {} ({out_features} × {in_features}); \
                     a rank above {smallest} adds nothing — use {smallest} or less (16 is usual)",
                    lora_config.r,
                    projection.module_name()
                ),
            ));
        }
    }
    let Some(available) = available else {
        return Ok(());
    };
    let plan = LoraPlan {
        r: lora.r,
        target_modules: lora.target_modules.clone(),
    };
    let estimate = MemoryEstimate::new(config, &plan, shape);
    if estimate.total <= available {
        return Ok(());
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let parts = [
        (
            estimate.adapter_and_optimizer(),
            "lora.r",
            "the adapter, its gradients and AdamW's moments",
        ),
        (
            estimate.activations(),
            "training.per_device_train_batch_size / dataset.max_seq_length",
            "activations",
        ),
        (estimate.weights(), "model_name", "the frozen weights"),
    ];
    let (bytes, key, what) = parts
        .into_iter()
        .max_by_key(|(bytes, ..)| *bytes)
        .unwrap_or((estimate.total, "training", "the run"));
    Err(SetupError::setting(
        key,
        format!(
            "the run needs about {:.1} GiB ({what}: {:.1} GiB) but {:.1} GiB of memory is available; \
             lower {key}, or use a machine with more memory",
            gib(estimate.total),
            gib(bytes),
            gib(available)
        ),
    ))
}

/// A warning when the training data repeats examples, or the validation
/// data shares them (its loss then measures memorisation): `data validate`
/// refuses both, training goes on with counts.
pub(crate) fn repeated_examples(
    train: &TokenizedSet,
    eval: &TokenizedSet,
    train_path: &Path,
    eval_path: &Path,
) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    let duplicates = train
        .narratives
        .iter()
        .filter(|n| !seen.insert(n.as_str()))
        .count();
    let shared = eval
        .narratives
        .iter()
        .filter(|n| seen.contains(n.as_str()))
        .count();
    if duplicates == 0 && shared == 0 {
        return None;
    }
    let mut parts = Vec::new();
    if duplicates > 0 {
        parts.push(format!(
            "{duplicates} training record(s) repeat another's narrative"
        ));
    }
    if shared > 0 {
        parts.push(format!(
            "{shared} of {} validation record(s) also appear in the training data, so eval_loss \
             partly measures memorisation",
            eval.narratives.len()
        ));
    }
    Some(format!(
        "warning: {}; `ftslm data validate {} {}` lists them",
        parts.join(", and "),
        train_path.display(),
        eval_path.display()
    ))
}

#[cfg(test)]
mod disk_tests {
    use super::*;

    #[test]
    fn a_run_needing_more_disk_than_its_output_folder_has_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        check_disk_fits(dir.path(), Some(3), 1_000_000, 10_000_000).unwrap();
        let err = check_disk_fits(&dir.path().join("run"), Some(3), 1 << 50, 0).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("training.output_dir"), "{message}");
        assert!(
            message.contains("the run's checkpoints and models needs"),
            "{message}"
        );
        assert!(message.contains("save_total_limit"), "{message}");
    }
}
