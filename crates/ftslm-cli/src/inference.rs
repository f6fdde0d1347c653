//! The `--model/--adapter/--quantize` flags as an `ftslm_infer::LoadedModel`,
//! shared by `generate`, `extract`, `eval` and the quickstart, and evaluation
//! with a progress bar.

use anyhow::Context;
use ftslm_data::Record;
use ftslm_eval::EvalReport;
use ftslm_infer::{Decoding, LoadedModel, TaskChoice};
use ftslm_model::ComputePolicy;

use crate::cli::{ModelArgs, QuantizeArg};
use crate::output::progress_bar;

/// The model the flags name; `system_prompt` and `instruction` override the
/// adapter's task record (`None`: the record's, else the medical task's).
pub fn load_model(
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
    LoadedModel::load(
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
    })
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
