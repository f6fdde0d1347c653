//! `ftslm model inspect` (and the dispatch of `model random-init`): architecture, parameter counts, the configured
//! LoRA adapter's size and a QLoRA training memory estimate. A directory
//! holding only config.json is enough, so a model can be sized before it is
//! downloaded; the arithmetic lives in `ftslm_model::inspect`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use ftslm_model::inspect::{
    is_llama31_8b_sized, ArchitectureSummary, EmbeddingPrecision, LoraPlan, MemoryEstimate,
    ParameterCounts, TrainingShape, ORIGINAL_PLAN_8B,
};
use ftslm_model::{Projection, RopeScaling};
use ftslm_source::ModelDescription;
use serde::Serialize;
use serde_json::json;

use super::load_config;
use crate::cli::{GlobalArgs, ModelCommand};
use crate::output::{note, print_json};

pub fn run(global: &GlobalArgs, cmd: ModelCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ModelCommand::Inspect {
            model,
            seq_len,
            batch_size,
            json,
        } => inspect(global, &model, seq_len, batch_size, json),
        ModelCommand::RandomInit(args) => super::random_init::run(global, &args),
    }
}

#[derive(Debug, Serialize)]
struct LoraSummary {
    r: usize,
    target_modules: Vec<&'static str>,
    parameters: u64,
    /// Trainable parameters as a fraction of the base's.
    fraction_of_base: f64,
}

fn inspect(
    global: &GlobalArgs,
    model: &Path,
    seq_len: Option<usize>,
    batch_size: Option<usize>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let source = ModelDescription::read(model)?;
    let settings = load_config(global, false)?;
    let lora_settings = settings.lora()?;
    let lora = LoraPlan {
        r: lora_settings.r,
        target_modules: Projection::parse_targets(&lora_settings.target_modules)
            .map_err(|problem| anyhow::anyhow!("lora.target_modules {problem}"))?,
    };
    if lora.r == 0 {
        bail!("lora.r is 0; set a rank of at least 1 (e.g. --set lora.r=16)");
    }
    let seq_len = match seq_len {
        Some(n) => n,
        None => settings.dataset()?.max_seq_length,
    };
    let training = settings.training()?;
    let batch_size = batch_size.unwrap_or(training.per_device_train_batch_size);
    if seq_len == 0 {
        bail!("--seq-len must be at least 1 (it defaults to dataset.max_seq_length)");
    }
    if batch_size == 0 {
        bail!(
            "--batch-size must be at least 1 (it defaults to training.per_device_train_batch_size)"
        );
    }
    let config = &source.config;
    let shape = TrainingShape {
        batch_size,
        seq_len,
        gradient_checkpointing: training.gradient_checkpointing,
        embedding_precision: EmbeddingPrecision::F32,
    };
    let counts = ParameterCounts::of(config);
    let memory = MemoryEstimate::new(config, &lora, shape);
    let bf16 = MemoryEstimate::new(
        config,
        &lora,
        TrainingShape {
            embedding_precision: EmbeddingPrecision::Bf16,
            ..shape
        },
    );
    let lora_params = lora.parameter_count(config);
    let lora_summary = LoraSummary {
        r: lora.r,
        target_modules: lora
            .target_modules
            .iter()
            .map(|p| p.module_name())
            .collect(),
        parameters: lora_params,
        fraction_of_base: lora_params as f64 / counts.total.max(1) as f64,
    };
    let mut notes = Vec::new();
    if let Some(stored) = &source.safetensors {
        if stored.parameters != counts.total {
            notes.push(format!(
                "the safetensors files hold {} parameters but {} implies {}; does config.json belong to these weights?",
                stored.parameters,
                source.config_file.display(),
                counts.total
            ));
        }
    }
    let original_plan = is_llama31_8b_sized(config).then_some(ORIGINAL_PLAN_8B);

    if json {
        print_json(&json!({
            "model": model,
            "source": &source,
            "architecture": ArchitectureSummary::of(config),
            "parameters": counts,
            "lora": lora_summary,
            "memory": memory,
            "memory_total_with_bf16_embeddings": bf16.total,
            "original_plan": original_plan,
            "notes": notes,
        }))?;
    } else {
        for n in &notes {
            note(global.quiet, n);
        }
        print_report(model, &source, &counts, &lora_summary, &memory, bf16.total);
        if let Some(plan) = original_plan {
            println!("  for comparison: {plan}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(
    model: &Path,
    source: &ModelDescription,
    counts: &ParameterCounts,
    lora: &LoraSummary,
    memory: &MemoryEstimate,
    bf16_total: u64,
) {
    let c = &source.config;
    println!("{}", model.display());
    let weights = match (&source.safetensors, &source.gguf_tensor_types) {
        (Some(s), _) => format!(
            "{} in {} ({})",
            grouped(s.parameters),
            s.files.join(", "),
            s.dtypes.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        (None, Some(types)) => format!(
            "GGUF tensors {}",
            types
                .iter()
                .map(|(t, n)| format!("{n} × {t}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (None, None) => "none present (config only)".into(),
    };
    println!("  config      {}", source.config_file.display());
    println!("  weights     {weights}");
    println!();
    println!("Architecture");
    println!(
        "  size        {} layers, hidden {}, intermediate {}, vocab {}",
        c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.vocab_size
    );
    println!(
        "  attention   {} heads, {} kv heads, head_dim {}",
        c.num_attention_heads, c.num_key_value_heads, c.head_dim
    );
    let scaling = match &c.rope.scaling {
        RopeScaling::None => "no scaling".to_string(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => format!("llama3 scaling (factor {factor}, low {low_freq_factor}, high {high_freq_factor}, original {original_max_position_embeddings})"),
    };
    println!(
        "  RoPE        theta {}, {scaling}, max positions {}",
        c.rope.theta, c.max_position_embeddings
    );
    println!(
        "  LM head     {}",
        if c.tie_word_embeddings {
            "tied to the embedding"
        } else {
            "untied"
        }
    );
    println!();
    println!("Parameters");
    let row = |what: &str, n: u64| println!("  {what:<28}{:>16}", grouped(n));
    row("embedding", counts.embedding);
    row("per layer: attention", counts.attention_per_layer);
    row("per layer: MLP", counts.mlp_per_layer);
    row("per layer: norms", counts.norms_per_layer);
    row(&format!("{} layers", c.num_hidden_layers), counts.layers);
    row("final norm", counts.final_norm);
    row("LM head", counts.lm_head);
    println!(
        "  {:<28}{:>16}  ({})",
        "total",
        grouped(counts.total),
        short_count(counts.total)
    );
    println!(
        "  LoRA r={} on {}: {} trainable ({:.3}% of the base)",
        lora.r,
        lora.target_modules.join(", "),
        grouped(lora.parameters),
        lora.fraction_of_base * 100.0
    );
    println!();
    let s = &memory.shape;
    println!(
        "QLoRA training memory estimate (batch {} × {} tokens, gradient checkpointing {}, f32 compute)",
        s.batch_size,
        s.seq_len,
        if s.gradient_checkpointing { "on" } else { "off" }
    );
    for part in memory.parts() {
        println!("  {:<72}{:>10}", part.what, gib(part.bytes));
    }
    println!("  {:<72}{:>10}", "total", gib(memory.total));
    println!(
        "  {:<72}{:>10}",
        "",
        format!("= {:.2} GB", memory.total as f64 / 1e9)
    );
    println!(
        "  embedding and LM head are counted in f32, as the CPU engine holds them; kept in bf16 as stored the total would be {}",
        gib(bf16_total).trim_start()
    );
}

/// 8030261248 → "8.03 B", 134515008 → "134.5 M"
pub(super) fn short_count(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.2} B", n as f64 / 1e9)
    } else {
        format!("{:.1} M", n as f64 / 1e6)
    }
}

/// 8030261248 → "8,030,261,248"
pub(super) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Binary units, as memory is reported by the allocators and nvidia-smi.
fn gib(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    if bytes as f64 >= GIB {
        format!("{:.2} GiB", bytes as f64 / GIB)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(8_030_261_248), "8,030,261,248");
        assert_eq!(short_count(8_030_261_248), "8.03 B");
        assert_eq!(short_count(134_515_008), "134.5 M");
    }
}
