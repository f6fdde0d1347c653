//! `ftslm quickstart`: the whole promise on a laptop. Today it runs the data
//! stage (demo model lookup, synthetic data, validation, token statistics) and
//! says which later stages are not built yet.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use ftslm_data::synth::{write_splits, SynthSpec};
use ftslm_data::tokenize::PromptTokenizer;
use ftslm_data::validate::{validate_files, Schema};

use crate::cli::{GlobalArgs, QuickstartArgs};

const DEMO_MODEL_DIR: &str = "models/smollm2-135m-instruct";

/// Where the demo model is: `--model`, else the shared fixtures beside the checkout.
fn find_model(args: &QuickstartArgs) -> Option<(PathBuf, &'static str)> {
    if let Some(m) = &args.model {
        return Some((m.clone(), "--model"));
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("FTSLM_SHARED") {
        candidates.push(PathBuf::from(dir).join(DEMO_MODEL_DIR));
    }
    candidates.push(Path::new("../shared").join(DEMO_MODEL_DIR));
    candidates
        .into_iter()
        .find(|p| p.join("tokenizer.json").exists())
        .map(|p| (p, "../shared fixtures"))
}

pub fn run(global: &GlobalArgs, args: &QuickstartArgs) -> anyhow::Result<ExitCode> {
    let say = |s: String| {
        if !global.quiet {
            println!("{s}");
        }
    };
    say(format!("quickstart → {}", args.out.display()));

    let model = find_model(args);
    match &model {
        Some((path, source)) => say(format!("[1/5] model: {} (from {source})", path.display())),
        None => say(
            "[1/5] model: the demo model is not here (../shared absent); downloading SmolLM2 from \
             PyPI is not built yet — pass --model DIR"
                .into(),
        ),
    }

    let (train, val) = match (&args.train_data, &args.val_data) {
        (Some(t), Some(v)) => {
            say(format!("[2/5] data: {} and {}", t.display(), v.display()));
            (t.clone(), v.clone())
        }
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
            say(format!(
                "[2/5] data: {} synthetic training and {} validation records in {}",
                s.train,
                s.validation,
                dir.display()
            ));
            (s.train_path, s.validation_path)
        }
    };

    let report = validate_files(&[train.clone(), val.clone()], Schema::Auto)?;
    if !report.is_valid() {
        for p in &report.problems {
            eprintln!("{p}");
        }
        anyhow::bail!(
            "the data has {} problem(s); fix them (listed above) and rerun",
            report.problems.len()
        );
    }
    say(format!(
        "[3/5] validated: {} records, no problems",
        report.files.iter().map(|f| f.valid).sum::<usize>()
    ));

    if let Some((path, _)) = &model {
        let tok = PromptTokenizer::from_model_path(path)
            .with_context(|| format!("cannot load the tokenizer of {}", path.display()))?;
        let records = ftslm_data::validate::read_records(&train)?;
        let mut longest = 0;
        let mut total = 0;
        for r in &records {
            let ex = tok.encode(&r.record, usize::MAX)?;
            longest = longest.max(ex.len());
            total += ex.len();
        }
        say(format!(
            "[4/5] tokenized with {}: {} training tokens, longest example {} tokens",
            tok.template().origin(),
            total,
            longest
        ));
    }

    say(format!(
        "[5/5] not built yet: QLoRA training ({} steps), before/after extraction scores. \
         The data stage above is complete; training arrives with the engine.",
        args.steps
            .map_or_else(|| "default".to_string(), |s| s.to_string())
    ));
    Ok(ExitCode::SUCCESS)
}
