//! `ftslm extract`: narratives in, one JSON object per narrative out. The
//! prompt is rendered by the trainer's function, and decoding is constrained
//! to the task's JSON object unless `--unconstrained`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use ftslm_data::validate::read_lines;
use ftslm_data::Record;
use serde_json::{json, Value};

use crate::cli::{ExtractArgs, GlobalArgs};
use ftslm_infer::extraction_record;

use crate::inference::load_model;
use crate::output::{note, progress_bar};

/// One narrative to extract from, and where it came from.
struct Input {
    line: Option<usize>,
    id: Option<Value>,
    /// The line's own instruction; `None` takes the task's.
    instruction: Option<String>,
    narrative: String,
}

pub fn run(global: &GlobalArgs, args: &ExtractArgs) -> anyhow::Result<ExitCode> {
    let d = &args.decoding;
    // The inputs are read before the model so a bad line fails in a moment;
    // a line without an instruction takes the adapter's task's.
    let inputs = match (&args.text, &args.file) {
        (Some(text), _) => vec![Input {
            line: None,
            id: None,
            instruction: None,
            narrative: text.clone(),
        }],
        (None, Some(file)) => read_inputs(file)?,
        (None, None) => bail!("give --text TEXT or --file FILE.jsonl"),
    };
    let loaded = load_model(
        global,
        &args.model,
        super::device::compute_policy(global)?,
        args.system_prompt.clone(),
        args.instruction.clone(),
    )?;
    for n in &loaded.notes {
        note(global.quiet, n);
    }
    // Decoding allows exactly the fields the adapter was trained to answer.
    let keys = loaded.task.fields.clone();
    let grammar = loaded.grammar_unless(d.unconstrained)?;
    let records: Vec<Record> = inputs
        .iter()
        .map(|i| {
            let instruction = i.instruction.as_deref();
            extraction_record(
                instruction.unwrap_or(&loaded.task.instruction),
                &i.narrative,
            )
        })
        .collect();
    if global.verbose > 0 && !global.quiet {
        if let Some(first) = records.first() {
            let rendered = loaded.tokenizer.render(first)?;
            eprintln!("prompt of the first input:\n{}", rendered.prompt_text);
        }
    }
    let started = std::time::Instant::now();
    let bar = progress_bar(global.quiet, records.len() as u64, "extracting");
    let extractions = loaded.extract(
        &records,
        &keys,
        grammar.as_ref(),
        d.max_new_tokens,
        d.batch_size,
        &mut |done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    if global.verbose > 0 && !global.quiet {
        eprintln!(
            "extracted {} input(s) in {:.2} s (batches of {})",
            records.len(),
            started.elapsed().as_secs_f64(),
            d.batch_size
        );
    }

    let mut failed = 0;
    for (input, extraction) in inputs.iter().zip(&extractions) {
        let parsed = ftslm_eval::parse_output(&extraction.text, &keys);
        let object: Option<Value> = serde_json::from_str::<Value>(extraction.text.trim())
            .ok()
            .filter(Value::is_object);
        let error = extraction.error.clone().or_else(|| {
            (!parsed.json_valid).then(|| {
                parsed
                    .error
                    .clone()
                    .unwrap_or_else(|| "the answer is not a JSON object".into())
            })
        });
        if error.is_some() {
            failed += 1;
        }
        if args.json {
            let mut line = serde_json::Map::new();
            if let Some(n) = input.line {
                line.insert("line".into(), json!(n));
            }
            if let Some(id) = &input.id {
                line.insert("id".into(), id.clone());
            }
            line.insert("extraction".into(), object.unwrap_or(Value::Null));
            line.insert("text".into(), json!(extraction.text));
            line.insert("error".into(), json!(error));
            println!("{}", Value::Object(line));
        } else {
            let origin = match (&input.line, &input.id) {
                (Some(n), Some(id)) => format!("line {n} ({id}): "),
                (Some(n), None) => format!("line {n}: "),
                _ => String::new(),
            };
            match &error {
                None => println!("{origin}{}", extraction.text.trim()),
                Some(e) => println!(
                    "{origin}error: {e}; the model wrote: {}",
                    extraction.text.trim()
                ),
            }
        }
    }
    if failed > 0 {
        note(
            global.quiet,
            format!(
                "{failed} of {} inputs have no valid extraction",
                inputs.len()
            ),
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads `{"input": ..., "id"?: ..., "instruction"?: ...}` lines; training
/// records work too (their answer is ignored).
fn read_inputs(path: &Path) -> anyhow::Result<Vec<Input>> {
    let lines =
        read_lines(path).with_context(|| format!("cannot read --file {}", path.display()))?;
    let mut inputs = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in lines {
        let line = match line {
            Ok(line) => line,
            Err(problem) => {
                problems.push(problem.to_string());
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!(
                    "{}:{n}: invalid JSON: {e} — each line must be one JSON object",
                    path.display()
                ));
                continue;
            }
        };
        let input = value.get("input").and_then(Value::as_str);
        let instruction = value.get("instruction").and_then(Value::as_str);
        match input {
            Some(input) if !input.trim().is_empty() => inputs.push(Input {
                line: Some(n),
                id: value.get("id").cloned(),
                instruction: instruction.map(str::to_string),
                narrative: input.to_string(),
            }),
            _ => problems.push(format!(
                "{}:{n}: no \"input\" string — each line needs the narrative as \"input\"",
                path.display()
            )),
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        bail!(
            "{} has {} bad line(s), listed above; fix them and rerun",
            path.display(),
            problems.len()
        );
    }
    if inputs.is_empty() {
        bail!(
            "{} has no inputs; give one JSON object per line with an \"input\"",
            path.display()
        );
    }
    Ok(inputs)
}
