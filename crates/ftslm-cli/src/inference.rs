//! The `--model/--adapter/--quantize` flags as an `ftslm_infer::LoadedModel`,
//! shared by `generate`, `extract`, `eval` and the quickstart, and evaluation
//! with a progress bar.

use std::time::Instant;

use anyhow::Context;
use ftslm_data::Record;
use ftslm_eval::EvalReport;
use ftslm_infer::{Decoding, LoadedModel, TaskChoice};
use ftslm_model::ComputePolicy;

use crate::cli::{GlobalArgs, ModelArgs, QuantizeArg};
use crate::output::progress_bar;

/// The model the flags name; `system_prompt` and `instruction` override the
/// adapter's task record (`None`: the record's, else the medical task's).
/// With `-v`, what was loaded, how it computes and how long loading took
/// go to stderr.
pub fn load_model(
    global: &GlobalArgs,
    args: &ModelArgs,
    policy: ComputePolicy,
    system_prompt: Option<String>,
    instruction: Option<String>,
) -> anyhow::Result<LoadedModel> {
    let choice = TaskChoice {
        system_prompt,
        instruction,
        allow_other_base: args.allow_other_base,
    };
    let started = Instant::now();
    let loaded = LoadedModel::load(
        &args.model,
        args.adapter.as_deref(),
        args.quantize == QuantizeArg::Nf4,
        &choice,
        policy,
    )
    .with_context(|| match &args.adapter {
        Some(adapter) => format!(
            "cannot load --model {} with --adapter {}",
            args.model.display(),
            adapter.display()
        ),
        None => format!("cannot load --model {}", args.model.display()),
    })?;
    if verbose(global) {
        describe(&loaded, args, started.elapsed().as_secs_f64());
    }
    Ok(loaded)
}

/// Whether `-v` asks for detail (and `-q` does not silence it).
pub fn verbose(global: &GlobalArgs) -> bool {
    global.verbose > 0 && !global.quiet
}

/// `-v`: the model, its frozen base, the adapter, where the prompt came
/// from, the compute policy and the load time.
fn describe(loaded: &LoadedModel, args: &ModelArgs, seconds: f64) {
    let config = loaded.model.config();
    eprintln!(
        "model: {} ({} layers, hidden {}, vocabulary {}), frozen base {:?}",
        args.model.display(),
        config.num_hidden_layers,
        config.hidden_size,
        config.vocab_size,
        loaded.base
    );
    match (&loaded.adapter, &args.adapter) {
        (Some(adapter), Some(path)) => {
            let s = adapter.settings();
            let targets: Vec<&str> = s.target_modules.iter().map(|p| p.module_name()).collect();
            eprintln!(
                "adapter: {} (r {}, alpha {}, on {})",
                path.display(),
                s.r,
                s.alpha,
                targets.join(", ")
            );
        }
        _ => eprintln!("adapter: none (the base model alone)"),
    }
    eprintln!(
        "task: {} fields, prompt from {}",
        loaded.task.fields.len(),
        if loaded.task.recorded.is_some() {
            "the adapter's ftslm_task.json"
        } else {
            "the built-in medical task"
        }
    );
    eprintln!(
        "compute: {} threads, matmul precision {:?}; loaded in {seconds:.1} s",
        loaded.policy.threads, loaded.policy.matmul_precision
    );
}

/// `-v`: how long decoding took and its rate.
pub fn describe_decoding(global: &GlobalArgs, what: &str, tokens: usize, seconds: f64) {
    if verbose(global) {
        eprintln!(
            "{what}: {tokens} tokens in {seconds:.2} s ({:.1} tokens/s)",
            tokens as f64 / seconds.max(1e-9)
        );
    }
}

/// [`LoadedModel::evaluate`] with a progress bar of the records extracted.
pub fn evaluate(
    loaded: &LoadedModel,
    records: &[Record],
    lines: &[usize],
    decoding: &Decoding,
    quiet: bool,
) -> anyhow::Result<EvalReport> {
    let bar = progress_bar(quiet, records.len() as u64, "extracting");
    let report = loaded.evaluate(records, lines, decoding, &mut |done| {
        bar.set_position(done as u64)
    });
    bar.finish_and_clear();
    Ok(report?)
}
