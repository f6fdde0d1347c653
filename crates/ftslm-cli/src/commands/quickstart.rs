//! `ftslm quickstart`: the whole promise on a laptop. Finds the demo model
//! (`--model`, the shared fixtures, or the PyPI wheel), synthesizes data,
//! scores the base model's extractions on validation records, trains a short
//! QLoRA run, scores again and prints the before/after table.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use ftslm_cloud::demo_model::{demo_model, shared_fixture_roots};
use ftslm_cloud::model_fetch::{FetchOptions, FetchProgress};
use ftslm_data::synth::{write_splits, SynthSpec};
use ftslm_data::validate::{read_records, validate_files, Schema};
use ftslm_data::Record;
use ftslm_eval::{render_comparison, render_table, EvalReport};
use ftslm_infer::{Decoding, LoadedModel, TaskChoice};
use ftslm_train::run_setup::RunOverrides;

use crate::cli::{GlobalArgs, QuickstartArgs};
use crate::inference::evaluate;
use crate::output::{note, progress_bar};

/// Training settings of the demo run: four records a step with no
/// accumulation, so that a few minutes of CPU buy tens of optimizer steps.
/// The frozen base is f32: on SmolLM2's Q4_1 file it holds exactly the values
/// the GGUF blocks decode to (the same losses, step for step), runs ~18% faster
/// than decoding the blocks in every matmul, and re-quantizing to NF4 starts
/// from a worse loss (README, "Which frozen base"). A `--model` of the user's
/// keeps the configured choice (`auto`: NF4 for full-precision checkpoints).
const DEMO_BASE: &str = "quantization.base=f32";
const DEMO_SETTINGS: [&str; 8] = [
    "dataset.packing=false",
    "dataset.max_eval_samples=32",
    "training.per_device_train_batch_size=4",
    "training.gradient_accumulation_steps=1",
    "training.learning_rate=0.0004",
    "training.warmup_steps=3",
    "training.logging_steps=5",
    "training.save_total_limit=1",
];

pub fn run(global: &GlobalArgs, args: &QuickstartArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    if args.steps == 0 || args.eval_records == 0 {
        bail!("--steps and --eval-records must be at least 1");
    }
    let say = |s: String| {
        if !global.quiet {
            println!("{s}");
        }
    };
    say(format!("quickstart → {}", args.out.display()));
    if prepare_out(&args.out, args.force)? == OutDir::Interrupted {
        note(
            global.quiet,
            format!(
                "continuing the unfinished quickstart in {} (its run resumes from its last checkpoint)",
                args.out.display()
            ),
        );
    }

    // Before the model download and the base model's scoring: the reports
    // are written into --out.
    ftslm_fs::check_writable_dir(&args.out)
        .with_context(|| format!("--out {}", args.out.display()))?;

    let model = find_model(args, global.quiet)?;
    say(format!("[1/5] model: {} ({})", model.0.display(), model.1));
    let model = model.0;

    let (train, val) = match (&args.train_data, &args.val_data) {
        (Some(t), Some(v)) => (t.clone(), v.clone()),
        _ => {
            let dir = args.out.join("data");
            let s = write_splits(
                &dir,
                &SynthSpec {
                    train: 4500,
                    validation: 500,
                    seed: 42,
                },
            )?;
            (s.train_path, s.validation_path)
        }
    };
    let report = validate_files(&[train.clone(), val.clone()], Schema::Auto)?;
    if !report.is_valid() {
        for p in &report.problems {
            eprintln!("{p}");
        }
        bail!(
            "the data has {} problem(s); fix them (listed above) and rerun",
            report.problems.len()
        );
    }
    say(format!(
        "[2/5] data: {} and {} ({} valid records)",
        train.display(),
        val.display(),
        report.files.iter().map(|f| f.valid).sum::<usize>()
    ));

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create --out {}", args.out.display()))?;
    let mut lines = read_records(&val)?;
    lines.truncate(args.eval_records);
    let records: Vec<Record> = lines.iter().map(|l| l.record.clone()).collect();
    let line_numbers: Vec<usize> = lines.iter().map(|l| l.line).collect();

    say(format!(
        "[3/5] scoring the base model on {} validation records…",
        records.len()
    ));
    let before = score(global, &model, None, &records, &line_numbers)?;
    before.write_json(&args.out.join("eval_before.json"))?;

    let run_dir = args.out.join("run");
    say(format!(
        "[4/5] QLoRA: {} steps of 4 records into {}",
        args.steps,
        run_dir.display()
    ));
    let mut run_global = global.clone();
    let mut sets: Vec<String> = DEMO_SETTINGS.iter().map(|s| s.to_string()).collect();
    if args.model.is_none() {
        sets.push(DEMO_BASE.into());
    }
    sets.push(format!("training.eval_steps={}", args.steps.div_ceil(2)));
    sets.push(format!("training.save_steps={}", args.steps.div_ceil(2)));
    // The user's own --set flags come last and win.
    sets.extend(global.sets.iter().cloned());
    run_global.sets = sets;
    run_global.no_ssm = true;
    let overrides = RunOverrides {
        model: Some(model.clone()),
        train_data: Some(train),
        val_data: Some(val),
        output_dir: Some(run_dir.clone()),
        max_steps: Some(args.steps as u64),
        no_resume: false,
        allow_changed: Vec::new(),
    };
    let run = super::train::train_run(&run_global, &overrides)?;
    super::train::print_summary(&run);

    let adapter = run_dir.join("final_model");
    say(format!(
        "[5/5] scoring the fine-tuned model on the same {} records…",
        records.len()
    ));
    let after = score(global, &model, Some(&adapter), &records, &line_numbers)?;
    after.write_json(&args.out.join("eval_after.json"))?;

    println!();
    println!("after fine-tuning:");
    print!("{}", render_table(&after.summary));
    println!();
    println!("before → after:");
    print!("{}", render_comparison(&before.summary, &after.summary));
    println!();
    println!("adapter:  {}", adapter.display());
    println!("metrics:  {}", run_dir.join("metrics.jsonl").display());
    println!(
        "reports:  {} and {}",
        args.out.join("eval_before.json").display(),
        args.out.join("eval_after.json").display()
    );
    println!(
        "try it:   ftslm extract --model {} --adapter {} --text \"...\"",
        model.display(),
        adapter.display()
    );
    println!(
        "quickstart finished in {:.1} min",
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(ExitCode::SUCCESS)
}

/// Constrained extraction and field scores of `records`, with answer loss.
fn score(
    global: &GlobalArgs,
    model: &Path,
    adapter: Option<&Path>,
    records: &[Record],
    lines: &[usize],
) -> anyhow::Result<EvalReport> {
    // The trained adapter's ftslm_task.json gives the prompt training used;
    // the base model's scores use the same (the medical task's) defaults.
    let loaded = LoadedModel::load(
        model,
        adapter,
        false,
        &TaskChoice::default(),
        super::device::compute_policy(global)?,
    )?;
    let grammar = loaded.json_grammar()?;
    let decoding = Decoding {
        grammar: Some(&grammar),
        max_new_tokens: 512,
        batch: 8,
        max_seq_length: 2048,
    };
    evaluate(&loaded, records, lines, &decoding, global.quiet)
}

/// The demo model and where it came from: `--model`, else the library's
/// choice (shared fixtures, PyPI wheel, Hub), with a progress bar.
fn find_model(args: &QuickstartArgs, quiet: bool) -> anyhow::Result<(PathBuf, String)> {
    if let Some(m) = &args.model {
        return Ok((m.clone(), "from --model".into()));
    }
    let bar = progress_bar(quiet, 0, "downloading");
    let found = demo_model(
        &shared_fixture_roots(),
        &FetchOptions::default(),
        &mut |line| {
            if !quiet {
                eprintln!("{line}");
            }
        },
        &mut |p: FetchProgress| {
            if let Some(total) = p.total {
                bar.set_length(total);
            }
            bar.set_position(p.done);
        },
    )?;
    bar.finish_and_clear();
    Ok((found.path, found.origin))
}

/// What quickstart writes in --out.
const OWN_ENTRIES: [&str; 4] = ["data", "run", "eval_before.json", "eval_after.json"];

#[derive(Debug, PartialEq, Eq)]
enum OutDir {
    /// Absent or empty, or emptied by --force.
    Fresh,
    /// A quickstart that did not finish: it goes on (the run resumes).
    Interrupted,
}

/// Never replaces a user's files: --out may be new, empty, or a quickstart's
/// own folder; a finished quickstart is started over only with --force, and
/// a folder holding anything else is refused (--force or not: those files
/// are not quickstart's to replace).
fn prepare_out(out: &Path, force: bool) -> anyhow::Result<OutDir> {
    if !out.exists() {
        return Ok(OutDir::Fresh);
    }
    if !out.is_dir() {
        bail!(
            "--out {} is a file; quickstart needs a folder",
            out.display()
        );
    }
    let mut foreign = Vec::new();
    let mut own = Vec::new();
    for entry in
        std::fs::read_dir(out).with_context(|| format!("cannot read --out {}", out.display()))?
    {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if OWN_ENTRIES.contains(&name.as_str()) {
            own.push(name);
        } else {
            foreign.push(name);
        }
    }
    if !foreign.is_empty() {
        foreign.sort();
        bail!(
            "--out {} holds files quickstart did not write ({}); choose a new folder for --out",
            out.display(),
            foreign.join(", ")
        );
    }
    if own.is_empty() {
        return Ok(OutDir::Fresh);
    }
    let finished = out.join("eval_after.json").exists();
    match (finished, force) {
        (true, false) => bail!(
            "--out {} holds a finished quickstart; pass --force to run it again from scratch \
             (replacing its data/, run/ and eval_*.json), or choose another --out",
            out.display()
        ),
        (_, true) => {
            for name in own {
                let path = out.join(&name);
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.with_context(|| format!("cannot remove {}", path.display()))?;
            }
            Ok(OutDir::Fresh)
        }
        (false, false) => Ok(OutDir::Interrupted),
    }
}
