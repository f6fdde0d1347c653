//! `ftslm eval`: how well a model extracts. Generates an answer for each
//! record (as `extract` does), scores it field by field against the record's
//! reference with ftslm-eval, adds the answer loss so the report lines up with
//! training's eval loss, and prints a table, a JSON report or a comparison.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use ftslm_data::validate::read_records;
use ftslm_data::Record;
use ftslm_eval::{render_comparison, render_table, EvalReport};

use crate::cli::{EvalArgs, GlobalArgs};
use ftslm_infer::Decoding;

use crate::inference::{evaluate, load_model, verbose};
use crate::output::{note, print_json};

pub fn run(global: &GlobalArgs, args: &EvalArgs) -> anyhow::Result<ExitCode> {
    if let Some(out) = &args.out {
        check_report_path(out, args)?;
    }
    let before = match &args.compare {
        Some(path) => Some(EvalReport::read_json(path).context("cannot read --compare")?),
        None => None,
    };
    let started = std::time::Instant::now();
    let mut lines = read_records(&args.data)
        .with_context(|| format!("cannot read --data {}", args.data.display()))?;
    if verbose(global) {
        eprintln!(
            "data: {} records read from {} in {:.2} s",
            lines.len(),
            args.data.display(),
            started.elapsed().as_secs_f64()
        );
    }
    if let Some(limit) = args.limit {
        if limit == 0 {
            bail!("--limit 0 leaves nothing to evaluate; use 1 or more");
        }
        lines.truncate(limit);
    }
    let records: Vec<Record> = lines.iter().map(|l| l.record.clone()).collect();
    let line_numbers: Vec<usize> = lines.iter().map(|l| l.line).collect();

    let loaded = load_model(
        global,
        &args.model,
        super::device::compute_policy(global)?,
        args.system_prompt.clone(),
        None,
    )?;
    for n in &loaded.notes {
        note(global.quiet, n);
    }
    let d = &args.decoding;
    let grammar = loaded.grammar_unless(d.unconstrained)?;
    let decoding = Decoding {
        grammar: grammar.as_ref(),
        max_new_tokens: d.max_new_tokens,
        batch: d.batch_size,
        max_seq_length: args.max_seq_length,
    };
    let report = evaluate(&loaded, &records, &line_numbers, &decoding, global.quiet)
        .with_context(|| format!("cannot evaluate on --data {}", args.data.display()))?;
    let generation_seconds = report.summary.generation_seconds.unwrap_or_default();
    if verbose(global) {
        eprintln!(
            "evaluated {} records: {generation_seconds:.1} s generating, {:.1} s in all",
            report.summary.records,
            started.elapsed().as_secs_f64()
        );
    }
    if let Some(out) = &args.out {
        report.write_json(out)?;
    }
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "{} on {} records of {} ({}, {} decoding, {:.1} s generating)",
            describe(args),
            report.summary.records,
            args.data.display(),
            loaded.base,
            if d.unconstrained {
                "unconstrained"
            } else {
                "constrained"
            },
            generation_seconds
        );
        print!("{}", render_table(&report.summary));
        if let Some(before) = &before {
            println!();
            println!(
                "compared with {}:",
                args.compare
                    .as_deref()
                    .unwrap_or_else(|| std::path::Path::new(""))
                    .display()
            );
            print!("{}", render_comparison(&before.summary, &report.summary));
        }
    }
    if let Some(out) = &args.out {
        note(global.quiet, format!("report written to {}", out.display()));
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(args: &EvalArgs) -> String {
    match &args.model.adapter {
        Some(a) => format!("{} + adapter {}", args.model.model.display(), a.display()),
        None => format!("{} (no adapter)", args.model.model.display()),
    }
}

/// Before any work: the report goes to a folder that exists, never over an
/// input, and over an existing file only with --force.
fn check_report_path(out: &Path, args: &EvalArgs) -> anyhow::Result<()> {
    let mut inputs = vec![
        (args.data.as_path(), "--data"),
        (args.model.model.as_path(), "--model"),
    ];
    if let Some(compare) = &args.compare {
        inputs.push((compare.as_path(), "--compare"));
    }
    ftslm_fs::check_not_an_input(out, "--out", &inputs)?;
    ftslm_fs::check_replaceable(out, "--out", args.force)?;
    let folder = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        bail!(
            "--out {}: the folder {} does not exist; create it first",
            out.display(),
            folder.display()
        );
    }
    Ok(())
}
