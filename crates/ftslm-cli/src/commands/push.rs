//! `ftslm push`: the adapter, its tokenizer, task, run record and model card
//! to a Hugging Face Hub repository. `--dry-run` shows every file (size,
//! SHA-256, LFS or inline) and the model card; the upload itself is not
//! built yet and says so.

use std::process::ExitCode;

use anyhow::{bail, Context};
use ftslm_cloud::push::{plan, PushSource};

use crate::cli::{GlobalArgs, PushArgs};
use crate::output::{note, print_json};

pub fn run(global: &GlobalArgs, args: &PushArgs) -> anyhow::Result<ExitCode> {
    let source = PushSource::locate(&args.adapter, args.eval_report.as_deref())?;
    let repo = match &args.repo {
        Some(repo) => repo.clone(),
        None => {
            let config = super::load_config(global, true)?;
            config
                .output()
                .context("the output section of the configuration")?
                .hf_repo
                .context(
                    "no Hub repository: pass --repo OWNER/NAME or set output.hf_repo \
                     (Parameter Store /fine-tune-slm/output/hf-repo)",
                )?
        }
    };
    let plan = plan(&source, &repo, args.base_model.as_deref())?;
    if !args.dry_run {
        for warning in &plan.warnings {
            note(global.quiet, warning);
        }
        bail!(
            "uploading to the Hub is not built yet; `ftslm push {} --repo {repo} --dry-run` \
             shows the files and the model card it would send",
            args.adapter.display()
        );
    }
    if args.json {
        let mut value = serde_json::to_value(&plan)?;
        value["card"] = serde_json::Value::String(plan.card.clone());
        print_json(&value)?;
        return Ok(ExitCode::SUCCESS);
    }
    for warning in &plan.warnings {
        note(global.quiet, format!("warning: {warning}"));
    }
    println!(
        "dry run: a commit to https://huggingface.co/{} (base model {}), nothing sent",
        plan.repo,
        plan.base_model.as_deref().unwrap_or("unknown")
    );
    let width = plan.files.iter().map(|f| f.path.len()).max().unwrap_or(4);
    for f in &plan.files {
        println!(
            "  {:<width$}  {:>12} bytes  {}  sha256 {}  {}",
            f.path,
            f.size,
            if f.lfs { "LFS   " } else { "inline" },
            &f.sha256[..16],
            f.from
                .as_ref()
                .map_or("(written by ftslm)".to_string(), |p| p
                    .display()
                    .to_string())
        );
    }
    println!("\nREADME.md (the model card):\n");
    print!("{}", plan.card);
    Ok(ExitCode::SUCCESS)
}
