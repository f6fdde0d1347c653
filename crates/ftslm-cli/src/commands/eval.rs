//! `ftslm eval`: how well a model extracts. Generates an answer for each
//! record (as `extract` does), scores it field by field against the record's
//! reference with ftslm-eval, adds the answer loss so the report lines up with
//! training's eval loss, and prints a table, a JSON report or a comparison.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use ftslm_data::validate::read_records;
use ftslm_data::{Record, SYSTEM_PROMPT};
use ftslm_eval::{render_comparison, render_table, EvalReport, RecordMeta, Scorer};

use crate::cli::{EvalArgs, GlobalArgs, QuantizeArg};
use crate::inference::LoadedModel;
use crate::output::{note, print_json, progress_bar};

pub fn run(global: &GlobalArgs, args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let before = match &args.compare {
        Some(path) => Some(EvalReport::read_json(path).context("cannot read --compare")?),
        None => None,
    };
    let mut lines = read_records(&args.data)
        .with_context(|| format!("cannot read --data {}", args.data.display()))?;
    if let Some(limit) = args.limit {
        if limit == 0 {
            bail!("--limit 0 leaves nothing to evaluate; use 1 or more");
        }
        lines.truncate(limit);
    }
    let mut references = Vec::with_capacity(lines.len());
    for l in &lines {
        match l.record.answer_fields() {
            Some(fields) => references.push(fields),
            None => bail!(
                "{}:{}: the answer is not a JSON object, so there are no fields to score — \
                 eval needs extraction records",
                args.data.display(),
                l.line
            ),
        }
    }
    let keys: Vec<String> = references[0].keys().cloned().collect();
    let records: Vec<Record> = lines.iter().map(|l| l.record.clone()).collect();

    let m = &args.model;
    let loaded = LoadedModel::load(
        &m.model,
        m.adapter.as_deref(),
        m.quantize == QuantizeArg::Nf4,
        SYSTEM_PROMPT,
    )?;
    let d = &args.decoding;
    let grammar = if d.unconstrained {
        None
    } else {
        Some(loaded.json_grammar()?)
    };
    let started = Instant::now();
    let bar = progress_bar(global.quiet, records.len() as u64, "generating");
    let extractions = loaded.extract(
        &records,
        &keys,
        grammar.as_ref(),
        d.max_new_tokens,
        d.batch_size,
        &mut |done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    let generation_seconds = started.elapsed().as_secs_f64();
    let answer_loss = loaded.answer_loss(&records, args.max_seq_length)?;

    let mut scorer = Scorer::new(keys);
    scorer.set_generation_seconds(generation_seconds);
    for ((index, line), (reference, extraction)) in lines
        .iter()
        .enumerate()
        .zip(references.iter().zip(&extractions))
    {
        let meta = RecordMeta {
            index,
            id: None,
            line: Some(line.line),
        };
        match &extraction.error {
            Some(e) => scorer.add_failure(reference, Some(&extraction.text), e.clone(), meta),
            None => scorer.add(reference, &extraction.text, meta),
        };
    }
    let report = scorer.finish(Some(answer_loss));
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
