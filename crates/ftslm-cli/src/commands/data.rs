//! `ftslm data validate|stats|synth|render`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use ftslm_data::batching::{make_batches, padding_fraction, BatchStrategy};
use ftslm_data::stats::{field_stats, token_stats, ExampleLength, FieldStats, TokenStats};
use ftslm_data::synth::{write_splits, SynthSpec, SYNTH_TRAIN_FILE, SYNTH_VALIDATION_FILE};
use ftslm_data::tokenize::PromptTokenizer;
use ftslm_data::validate::{read_records, validate_files, Schema};
use ftslm_data::TokenizedExample;
use ftslm_source::ModelSource;
use serde::Serialize;
use serde_json::json;

use super::load_config;
use crate::cli::{DataCommand, GlobalArgs, SchemaArg};
use crate::output::print_json;

pub fn run(global: &GlobalArgs, cmd: DataCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DataCommand::Validate {
            files,
            schema,
            json,
        } => validate(&files, schema, json),
        DataCommand::Stats {
            file,
            model,
            max_seq_length,
            batch_size,
            json,
        } => {
            let config = load_config(global, false)?;
            let max_seq_length = match max_seq_length {
                Some(n) => n,
                None => config.dataset()?.max_seq_length,
            };
            let batch_size = match batch_size {
                Some(n) => n,
                None => config.training()?.per_device_train_batch_size,
            };
            let seed = config.training()?.seed;
            let tokenizer = match model.as_deref() {
                Some(m) => Some(prompt_tokenizer(m, &config.dataset()?.system_prompt)?),
                None => None,
            };
            stats(
                &file,
                tokenizer.as_ref(),
                max_seq_length,
                batch_size,
                seed,
                json,
            )
        }
        DataCommand::Synth {
            out,
            train,
            validation,
            seed,
            force,
        } => {
            for name in [SYNTH_TRAIN_FILE, SYNTH_VALIDATION_FILE] {
                ftslm_fs::check_replaceable(&out.join(name), "--out", force)?;
            }
            let summary = write_splits(
                &out,
                &SynthSpec {
                    train,
                    validation,
                    seed,
                },
            )?;
            println!(
                "wrote {} training records to {} and {} validation records to {} (seed {seed})",
                summary.train,
                summary.train_path.display(),
                summary.validation,
                summary.validation_path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Render {
            file,
            model,
            index,
            max_seq_length,
            json,
        } => {
            let dataset = load_config(global, false)?.dataset()?;
            let max_seq_length = max_seq_length.unwrap_or(dataset.max_seq_length);
            let tokenizer = prompt_tokenizer(&model, &dataset.system_prompt)?;
            render(&file, &tokenizer, index, max_seq_length, json)
        }
    }
}

fn validate(
    files: &[std::path::PathBuf],
    schema: SchemaArg,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let schema = match schema {
        SchemaArg::Auto => Schema::Auto,
        SchemaArg::MedicalIe => Schema::MedicalIe,
        SchemaArg::Generic => Schema::Generic,
    };
    let started = Instant::now();
    let report = validate_files(files, schema)?;
    let elapsed = started.elapsed();
    if json {
        print_json(&json!({
            "valid": report.is_valid(),
            "seconds": elapsed.as_secs_f64(),
            "files": report.files.iter().map(|f| json!({
                "path": f.path, "lines": f.lines, "valid": f.valid, "invalid": f.invalid,
                "schema": f.schema.to_string(),
            })).collect::<Vec<_>>(),
            "problems": report.problems.iter().map(|p| json!({
                "path": p.path, "line": p.line, "column": p.column, "problem": p.what, "fix": p.fix,
            })).collect::<Vec<_>>(),
        }))?;
    } else {
        for p in &report.problems {
            println!("{p}");
        }
        for f in &report.files {
            println!(
                "{}: {} records, {} valid, {} invalid (schema {})",
                f.path.display(),
                f.lines,
                f.valid,
                f.invalid,
                f.schema
            );
        }
        let status = if report.is_valid() {
            "all valid"
        } else {
            "INVALID"
        };
        println!(
            "{status}: {} problem(s) in {} file(s), checked in {:.0} ms",
            report.problems.len(),
            report.files.len(),
            elapsed.as_secs_f64() * 1000.0
        );
    }
    Ok(if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Serialize)]
struct PaddingReport {
    batch_size: usize,
    pad_to_longest: f64,
    length_grouped: f64,
    packed: f64,
}

#[derive(Serialize)]
struct StatsReport {
    file: String,
    records: usize,
    fields: Vec<FieldStats>,
    tokens: Option<TokenStats>,
    truncation: Option<String>,
    padding: Option<PaddingReport>,
}

fn stats(
    file: &Path,
    tokenizer: Option<&PromptTokenizer>,
    max_seq_length: usize,
    batch_size: usize,
    seed: u64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let records: Vec<_> = read_records(file)?.into_iter().map(|r| r.record).collect();
    let mut report = StatsReport {
        file: file.display().to_string(),
        records: records.len(),
        fields: field_stats(&records),
        tokens: None,
        truncation: None,
        padding: None,
    };
    if let Some(tok) = tokenizer {
        let mut lengths = Vec::with_capacity(records.len());
        let mut examples: Vec<TokenizedExample> = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            let full = tok.encode(record, usize::MAX).with_context(|| {
                format!("{}: record {} cannot be tokenized", file.display(), i + 1)
            })?;
            lengths.push(ExampleLength {
                prompt: full.prompt_len,
                answer: full.answer_tokens(),
                total: full.len(),
            });
            examples.push(if full.len() > max_seq_length {
                tok.encode(record, max_seq_length).with_context(|| {
                    format!(
                        "{}: record {} does not fit max_seq_length",
                        file.display(),
                        i + 1
                    )
                })?
            } else {
                full
            });
        }
        let t = token_stats(&lengths, max_seq_length);
        report.truncation = Some(format!(
            "{} of {} examples exceed max_seq_length {}; their narrative is shortened from the end \
             (the answer and end-of-turn token are never cut; an answer that cannot fit is an error)",
            t.over_max_seq_length,
            records.len(),
            max_seq_length
        ));
        report.tokens = Some(t);
        let pad_id = tok.pad_id();
        let fraction = |s| {
            padding_fraction(&make_batches(
                &examples,
                s,
                batch_size,
                max_seq_length,
                pad_id,
                seed,
            ))
        };
        report.padding = Some(PaddingReport {
            batch_size,
            pad_to_longest: fraction(BatchStrategy::PadToLongest),
            length_grouped: fraction(BatchStrategy::LengthGrouped),
            packed: fraction(BatchStrategy::Packed),
        });
    }
    if json {
        print_json(&report)?;
    } else {
        print_stats(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// The tokenizer training would use for `model`: resolved as every command
/// resolves a model, with the configuration's system prompt.
fn prompt_tokenizer(model: &Path, system_prompt: &str) -> anyhow::Result<PromptTokenizer> {
    ModelSource::locate(model)
        .and_then(|source| source.prompt_tokenizer(system_prompt))
        .with_context(|| format!("cannot load the tokenizer of {}", model.display()))
}

fn print_stats(r: &StatsReport) {
    println!("{}: {} records", r.file, r.records);
    if !r.fields.is_empty() {
        println!(
            "\n{:<18} {:>8} {:>10} {:>9}",
            "field", "present", "null rate", "distinct"
        );
        for f in &r.fields {
            println!(
                "{:<18} {:>8} {:>9.1}% {:>9}",
                f.field,
                f.present,
                f.null_rate * 100.0,
                f.distinct
            );
        }
    }
    if let Some(t) = &r.tokens {
        println!(
            "\ntokens            {:>6} {:>7} {:>6} {:>6} {:>8}",
            "min", "median", "p95", "max", "mean"
        );
        for (name, s) in [
            ("prompt", &t.prompt),
            ("answer", &t.answer),
            ("whole example", &t.total),
        ] {
            println!(
                "{:<17} {:>6} {:>7} {:>6} {:>6} {:>8.1}",
                name, s.min, s.median, s.p95, s.max, s.mean
            );
        }
    }
    if let Some(note) = &r.truncation {
        println!("\n{note}");
    }
    if let Some(p) = &r.padding {
        println!(
            "\npadding at batch size {}: pad to longest {:.1}%, length-grouped {:.1}%, packed {:.1}%",
            p.batch_size,
            p.pad_to_longest * 100.0,
            p.length_grouped * 100.0,
            p.packed * 100.0
        );
    }
}

fn render(
    file: &Path,
    tok: &PromptTokenizer,
    index: usize,
    max_seq_length: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let records = read_records(file)?;
    let Some(entry) = records.get(index) else {
        bail!(
            "--index {index} is out of range: {} holds {} records (indices 0 to {})",
            file.display(),
            records.len(),
            records.len() - 1
        );
    };
    let rendered = tok.render(&entry.record)?;
    let example = tok.encode(&entry.record, max_seq_length)?;
    let pieces = tok.token_strings(&example.input_ids);
    if json {
        print_json(&json!({
            "file": file, "line": entry.line, "index": index,
            "prompt_text": rendered.prompt_text, "full_text": rendered.full_text,
            "input_ids": example.input_ids, "answer_mask": example.answer_mask, "tokens": pieces,
            "prompt_len": example.prompt_len, "answer_tokens": example.answer_tokens(),
            "truncated_tokens": example.truncated_tokens, "max_seq_length": max_seq_length,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}:{} (record {index}) as rendered by {}:\n",
        file.display(),
        entry.line,
        tok.template().origin()
    );
    println!("{}", rendered.full_text);
    println!(
        "\n{} tokens: {} prompt, {} carry loss (marked *){}",
        example.len(),
        example.prompt_len,
        example.answer_tokens(),
        if example.truncated_tokens > 0 {
            format!(
                ", {} narrative tokens cut to fit max_seq_length {max_seq_length}",
                example.truncated_tokens
            )
        } else {
            String::new()
        }
    );
    for (i, ((id, piece), loss)) in example
        .input_ids
        .iter()
        .zip(&pieces)
        .zip(&example.answer_mask)
        .enumerate()
    {
        println!("{i:>5} {id:>7} {} {piece:?}", if *loss { '*' } else { ' ' });
    }
    Ok(ExitCode::SUCCESS)
}
