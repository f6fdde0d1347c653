//! `ftslm bench train`: the Python baseline's training step, measured here.

use std::process::ExitCode;

use anyhow::Context;
use ftslm_train::bench::{bench_train, BenchSettings};

use crate::cli::{BenchCommand, GlobalArgs};
use crate::output::print_json;

pub fn run(global: &GlobalArgs, cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    let BenchCommand::Train {
        model,
        data,
        steps,
        batch_size,
        threads,
        loss_on,
        json,
    } = cmd;
    if threads == 0 {
        anyhow::bail!("--threads must be at least 1");
    }
    // The baseline's torch.set_num_threads: the engine's rows and products
    // follow the policy; candle's own matmuls (the fallback where a CPU has
    // no AVX-512) size their pool from this variable on first use, which has
    // not happened yet.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    // As `ftslm train` would run: the configuration's (and --set's) choice.
    let gradient_checkpointing = super::load_config(global, false)?
        .training()?
        .gradient_checkpointing;
    let settings = BenchSettings {
        model,
        data,
        steps,
        batch_size,
        loss_on,
        gradient_checkpointing,
        policy: super::device::compute_policy(global)?.with_threads(threads),
    };
    let quiet = global.quiet || json;
    let report = bench_train(&settings, &mut |line| {
        if !quiet {
            eprintln!("{line}");
        }
    })
    .context("bench train")?;
    if json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let show = |v: Option<f64>, unit: &str| {
        v.map_or_else(|| "-".to_string(), |v| format!("{v:.1} {unit}"))
    };
    println!("{} (products in {})", report.stack, report.products);
    println!(
        "tokens/s     {} (non-pad tokens, steps 1..{}, {} threads, batch {}, loss on {}, \
         gradient checkpointing {})",
        show(report.tokens_per_s, ""),
        report.steps,
        report.threads,
        report.batch_size,
        report.loss_on,
        if report.gradient_checkpointing {
            "on"
        } else {
            "off"
        }
    );
    println!("peak RSS     {}", show(report.peak_rss_mb, "MiB"));
    println!(
        "losses       {}",
        report
            .losses
            .iter()
            .map(|l| format!("{l:.4}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "phases       data {:.2}s, forward+backward {:.2}s, optimizer {:.3}s (counted steps); load {:.1}s",
        report.phases.data,
        report.phases.forward_backward,
        report.phases.optimizer,
        report.load_seconds
    );
    Ok(ExitCode::SUCCESS)
}
