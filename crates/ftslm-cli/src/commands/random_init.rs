//! `ftslm model random-init`: a random-weight checkpoint of a Llama
//! config.json; the work is `ftslm_model::random_init`. Every check that can
//! fail (the output, the tokenizer folder, free space) runs before the first
//! value is drawn, and the directory appears whole or not at all.

use std::process::ExitCode;

use anyhow::{bail, Context};
use ftslm_fs::StagedDir;
use ftslm_model::merge::MergedDtype;
use ftslm_model::random_init::{RandomCheckpoint, MAX_SHARD_BYTES};

use crate::cli::{GlobalArgs, MergeDtype, RandomInitArgs};
use crate::output::progress_bar;

pub fn run(global: &GlobalArgs, args: &RandomInitArgs) -> anyhow::Result<ExitCode> {
    let dtype = match args.dtype {
        MergeDtype::Bf16 => MergedDtype::Bf16,
        MergeDtype::F32 => MergedDtype::F32,
    };
    ftslm_fs::check_replaceable(&args.out, "--out", args.force)?;
    ftslm_fs::check_not_an_input(&args.out, "--out", &[(&args.config, "--config")])?;
    if args.out.file_name().is_none() {
        bail!(
            "--out {} does not name a directory; give it a name, e.g. models/llama-random",
            args.out.display()
        );
    }
    if let Some(dir) = &args.tokenizer_from {
        if !dir.is_dir() {
            bail!(
                "--tokenizer-from {} is not a model directory",
                dir.display()
            );
        }
    }
    let plan = RandomCheckpoint::plan(&args.config, dtype)
        .with_context(|| format!("cannot read --config {}", args.config.display()))?;
    ftslm_fs::check_writable_dir(&args.out)?;
    // The old checkpoint stays until the new one is complete, so --force
    // needs room for both.
    ftslm_fs::check_free_space(&args.out, plan.bytes() + (1 << 20), "the checkpoint")?;

    let staged = StagedDir::create(&args.out)?;
    let bar = progress_bar(global.quiet, 0, "tensors");
    let written = plan.write(
        staged.path(),
        args.seed,
        MAX_SHARD_BYTES,
        args.tokenizer_from.as_deref(),
        &mut |done, all| {
            bar.set_length(all as u64);
            bar.set_position(done as u64);
        },
    );
    bar.finish_and_clear();
    let summary = match written {
        Ok(summary) => summary,
        Err(e) => {
            staged.abandon();
            return Err(e).context("cannot write the random checkpoint");
        }
    };
    staged.publish()?;
    println!(
        "wrote {}: {} tensors, {} parameters in {} ({:.1} MB, {} shard{}), seed {}",
        args.out.display(),
        summary.tensors,
        super::model::grouped(summary.parameters),
        dtype.torch_name(),
        summary.bytes as f64 / 1e6,
        summary.shards,
        if summary.shards == 1 { "" } else { "s" },
        args.seed
    );
    Ok(ExitCode::SUCCESS)
}
