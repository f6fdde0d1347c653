//! `ftslm merge`: folds a LoRA adapter into its base and writes the result in
//! Hugging Face layout; the work is `ftslm_model::merge`.

use std::process::ExitCode;

use anyhow::{bail, Context};
use ftslm_model::merge::{merge_to_dir, MergedDtype};

use crate::cli::{GlobalArgs, MergeArgs, MergeDtype};
use crate::output::note;

pub fn run(global: &GlobalArgs, args: &MergeArgs) -> anyhow::Result<ExitCode> {
    // Checked here as well as in the library so that the message names the flag.
    if args.out.is_file() {
        bail!(
            "--out {} is a file; pass a new directory for the merged model",
            args.out.display()
        );
    }
    if args.out.is_dir() {
        let mut entries = std::fs::read_dir(&args.out)
            .with_context(|| format!("cannot read --out {}", args.out.display()))?;
        if entries.next().is_some() {
            bail!(
                "--out {} is not empty; pass a new directory (or remove this one) — a merge never overwrites files",
                args.out.display()
            );
        }
    }
    let dtype = match args.dtype {
        MergeDtype::Bf16 => MergedDtype::Bf16,
        MergeDtype::F32 => MergedDtype::F32,
    };
    if !global.quiet {
        eprintln!(
            "merging {} into {} (the base is held in f32 while merging)…",
            args.adapter.display(),
            args.model.display()
        );
    }
    let summary =
        merge_to_dir(&args.model, &args.adapter, &args.out, dtype).with_context(|| {
            format!(
                "cannot merge --adapter {} into --model {}",
                args.adapter.display(),
                args.model.display()
            )
        })?;
    for n in &summary.notes {
        note(global.quiet, n);
    }
    println!(
        "wrote {}: {} projections merged, {} tensors, {} parameters in {} ({:.1} MB): {}",
        summary.out.display(),
        summary.merged_projections,
        summary.tensors,
        super::model::grouped(summary.parameters),
        dtype.torch_name(),
        summary.weights_bytes as f64 / 1e6,
        summary.files.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
