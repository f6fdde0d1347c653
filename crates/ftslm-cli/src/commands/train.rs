//! `ftslm train`: QLoRA fine-tuning as the configuration describes it, with
//! the command-line overrides. Prints the plan, trains with a progress bar
//! (log lines when stderr is not a terminal), and prints the summary.
//! `--dry-run` loads and checks everything and runs one forward/backward,
//! writing nothing.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use ftslm_config::TRAINING_FILE_NAMES;
use ftslm_train::data::{epoch_rng, EpochSource};
use ftslm_train::plan::human_bytes;
use ftslm_train::run_report::RunReport;
use ftslm_train::run_setup::{prepare, PreparedRun, RunOverrides, RunSettings};
use ftslm_train::summary::peak_rss_bytes;
use ftslm_train::{NoProgress, Progress, RunSummary, StepContext, TrainingEngine};

use crate::cli::{GlobalArgs, TrainArgs};
use crate::output::note;

pub fn run(global: &GlobalArgs, args: &TrainArgs) -> anyhow::Result<ExitCode> {
    let global = with_training_file(global, args.config.as_deref())?;
    if args.max_steps == Some(0) {
        bail!("--max-steps must be at least 1; leave it out to train training.num_train_epochs");
    }
    let overrides = RunOverrides {
        model: args.model.clone(),
        train_data: args.train_data.clone(),
        val_data: args.val_data.clone(),
        output_dir: args.output_dir.clone(),
        max_steps: args.max_steps.map(|n| n as u64),
        no_resume: args.no_resume,
        allow_changed: args.allow_changed.clone(),
    };
    if args.dry_run {
        let mut prepared = prepare_run(&global, &overrides)?;
        println!("{}", prepared.plan);
        return dry_run(&mut prepared);
    }
    let report = train_run(&global, &overrides)?;
    print_summary(&report);
    Ok(ExitCode::SUCCESS)
}

/// The configuration with the global flags, and the run it describes, loaded.
fn prepare_run(global: &GlobalArgs, overrides: &RunOverrides) -> anyhow::Result<PreparedRun> {
    let config = super::load_config(global, false)?;
    for n in config.notes() {
        note(global.quiet, n);
    }
    if global.verbose > 0 && !global.quiet {
        // -v: where the run's settings came from.
        let files: Vec<String> = config
            .files()
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        eprintln!(
            "config files: {}",
            if files.is_empty() {
                "none (built-in defaults)".to_string()
            } else {
                files.join(", ")
            }
        );
        for v in config.values() {
            let run_key = [
                "model_name",
                "dataset.",
                "lora.",
                "training.",
                "quantization.",
            ]
            .iter()
            .any(|p| v.key().starts_with(p));
            if run_key && v.source != ftslm_config::Source::Default {
                eprintln!("  {} = {} ({})", v.key(), v.value, v.source);
            }
        }
    }
    let settings = RunSettings::from_config(&config)?;
    let quiet = global.quiet;
    Ok(prepare(
        &settings,
        overrides,
        super::device::compute_policy(global)?,
        &mut |line| note(quiet, line),
    )?)
}

/// Prepares and trains a run, printing its plan and writing its report;
/// `ftslm train` and the quickstart share it.
pub fn train_run(global: &GlobalArgs, overrides: &RunOverrides) -> anyhow::Result<RunReport> {
    let prepared = prepare_run(global, overrides)?;
    println!("{}", prepared.plan);
    let mut progress: Box<dyn Progress> = if global.quiet {
        Box::new(NoProgress)
    } else {
        ftslm_train::for_stderr()
    };
    let PreparedRun {
        mut engine,
        train,
        eval,
        options,
        plan,
        frozen_base,
        ..
    } = prepared;
    let summary = ftslm_train::train(&mut engine, &options, &train, &eval, progress.as_mut())
        .context("training stopped")?;
    let mut report = RunReport {
        summary,
        model: plan.model.display().to_string(),
        frozen_base: frozen_base.name().to_string(),
        frozen_base_bytes: plan.weights.projections,
        adapter_parameters: plan.adapter_parameters,
        train_tokens_per_second: None,
        seconds_per_step: None,
    };
    report.throughput(&engine.stats(), options.gradient_accumulation_steps);
    report.write(&options.output_dir)?;
    Ok(report)
}

/// `--config FILE`: the configuration loader reads a config folder, so the
/// file's folder becomes `--config-dir` (an AWS config beside it is read too).
fn with_training_file(global: &GlobalArgs, file: Option<&Path>) -> anyhow::Result<GlobalArgs> {
    let Some(file) = file else {
        return Ok(global.clone());
    };
    if !file.is_file() {
        bail!(
            "--config {}: no such file; pass a training YAML file such as config/training_config.yml",
            file.display()
        );
    }
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !TRAINING_FILE_NAMES.contains(&name) {
        bail!(
            "--config {}: the training file must be named {} or {} (it is read from its folder \
             with the AWS config beside it); rename it, or use --config-dir DIR",
            file.display(),
            TRAINING_FILE_NAMES[0],
            TRAINING_FILE_NAMES[1]
        );
    }
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if let Some(given) = &global.config_dir {
        if given.canonicalize().ok() != dir.canonicalize().ok() {
            bail!(
                "--config {} and --config-dir {} name different folders; give one of them",
                file.display(),
                given.display()
            );
        }
    }
    note(
        global.quiet,
        format!(
            "--config {}: reading the configuration folder {}",
            file.display(),
            dir.display()
        ),
    );
    let mut global = global.clone();
    global.config_dir = Some(dir);
    Ok(global)
}

/// One forward/backward on the first micro-batch of the first epoch.
fn dry_run(prepared: &mut PreparedRun) -> anyhow::Result<ExitCode> {
    let seed = prepared.options.seed;
    let batches = prepared
        .train
        .epoch_batches(0, &mut epoch_rng(seed, 0))
        .map_err(|e| anyhow::anyhow!("cannot lay out the first epoch: {e}"))?;
    let Some(batch) = batches.first() else {
        bail!("the training data produced no micro-batch");
    };
    let ctx = StepContext {
        step: 1,
        micro_batch: 0,
        seed,
    };
    let started = Instant::now();
    let loss = prepared
        .engine
        .forward_backward(batch, ctx)
        .map_err(|e| anyhow::anyhow!("the dry-run forward/backward failed: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let mean = loss
        .mean()
        .map_or("n/a (no target tokens)".to_string(), |m| format!("{m:.4}"));
    println!(
        "dry run: one forward/backward on {} row(s), {} tokens: loss {mean} over {} target tokens \
         in {seconds:.2}s ({:.0} tokens/s)",
        batch.rows,
        loss.input_tokens,
        loss.target_tokens,
        loss.input_tokens as f64 / seconds.max(1e-9)
    );
    if let Some(rss) = peak_rss_bytes() {
        println!("dry run: peak resident memory {}", human_bytes(rss));
    }
    println!("dry run: nothing was written");
    Ok(ExitCode::SUCCESS)
}

pub fn print_summary(report: &RunReport) {
    let s: &RunSummary = &report.summary;
    let loss = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    println!("summary:");
    println!(
        "  steps          {} of {} ({:.2} epochs), {} tokens",
        s.steps, s.max_steps, s.epochs, s.tokens_seen
    );
    println!(
        "  eval loss      {} → {}",
        loss(s.initial_eval_loss),
        loss(s.final_eval_loss)
    );
    if let Some(step) = s.best_step {
        println!(
            "  best           step {step}, eval loss {}",
            loss(s.best_eval_loss)
        );
    }
    println!(
        "  train loss     {} (last logged interval)",
        loss(s.final_train_loss)
    );
    if let (Some(tps), Some(sps)) = (report.train_tokens_per_second, report.seconds_per_step) {
        println!("  throughput     {tps:.0} tokens/s, {sps:.2}s a step (forward/backward)");
    }
    if let Some(rss) = s.peak_rss_bytes {
        println!("  peak memory    {}", human_bytes(rss));
    }
    println!("  wall time      {:.1}s", s.wall_time_seconds);
    if let Some(reason) = &s.stopped_early {
        println!("  stopped early  {reason}");
    }
    println!("  final model    {}", s.final_model);
}
