//! `ftslm params init|list`: the configuration's Parameter Store entries.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};
use ftslm_cloud::aws::Aws;
use ftslm_cloud::param_init::{apply, ParameterPlan};
use ftslm_cloud::param_list::list;

use crate::cli::{GlobalArgs, ParamsCommand};
use crate::commands::load_config;
use crate::output::{note, print_json};

pub fn run(global: &GlobalArgs, cmd: ParamsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ParamsCommand::Init {
            overwrite,
            dry_run,
            yes,
            json,
        } => init(global, overwrite, dry_run, yes, json),
        ParamsCommand::List { json } => list_parameters(global, json),
    }
}

/// The values come from the files, the environment and `--set` — never from
/// Parameter Store itself, which is what is being written.
fn init(
    global: &GlobalArgs,
    overwrite: bool,
    dry_run: bool,
    yes: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(global, false)?;
    let mut plan = ParameterPlan::from_config(&config).context("cannot plan the parameters")?;
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if interactive && !plan.missing_required().is_empty() {
        prompt_for_missing(&mut plan)?;
    }
    let region = config
        .str("aws.region")
        .context("aws.region has no value")?
        .to_string();
    let aws = Aws::from_environment(&region).context("cannot set up the AWS clients")?;
    if !dry_run && !yes && plan.missing_required().is_empty() {
        if !interactive {
            bail!(
                "refusing to write {} parameters without confirmation: pass --yes (or --dry-run to see the plan)",
                plan.parameters().len()
            );
        }
        let preview = apply(&aws, &plan, overwrite, true)?;
        for outcome in &preview {
            eprintln!(
                "  {} = {} ({})",
                outcome.name,
                show(&outcome.value),
                outcome.action
            );
        }
        if preview.iter().all(|o| !o.action.writes()) {
            eprintln!("nothing to write");
            return Ok(ExitCode::SUCCESS);
        }
        if !confirm("write these to Parameter Store?")? {
            eprintln!("nothing written");
            return Ok(ExitCode::FAILURE);
        }
    }
    let outcomes = apply(&aws, &plan, overwrite, dry_run)?;
    if json {
        print_json(&outcomes)?;
    } else {
        let width = outcomes.iter().map(|o| o.name.len()).max().unwrap_or(0);
        for outcome in &outcomes {
            println!(
                "{:width$}  {:<32}  {}",
                outcome.name,
                show(&outcome.value),
                outcome.action
            );
        }
        let written = outcomes.iter().filter(|o| o.action.writes()).count();
        note(
            global.quiet,
            if dry_run {
                format!("dry run: {written} parameters would be written in {region}")
            } else {
                format!("{written} parameters written in {region}")
            },
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("(no value)")
}

fn prompt_for_missing(plan: &mut ParameterPlan) -> anyhow::Result<()> {
    let missing: Vec<(String, String, String)> = plan
        .missing_required()
        .iter()
        .map(|p| (p.name.clone(), p.description.clone(), p.set_hint()))
        .collect();
    let stdin = std::io::stdin();
    for (name, description, hint) in missing {
        eprint!("{name} — {description}\n  value (empty to stop; or later {hint}): ");
        std::io::stderr().flush().ok();
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the answer")?;
        let value = line.trim();
        if value.is_empty() {
            bail!("no value for {name}: nothing written ({hint} gives it without asking)");
        }
        plan.fill(&name, value)
            .with_context(|| format!("the value for {name}"))?;
    }
    Ok(())
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the answer")?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

fn list_parameters(global: &GlobalArgs, json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(global, false)?;
    let region = config
        .str("aws.region")
        .context("aws.region has no value")?
        .to_string();
    let aws = Aws::from_environment(&region).context("cannot set up the AWS clients")?;
    let listed = list(&aws, &config)?;
    if json {
        print_json(&listed)?;
        return Ok(ExitCode::SUCCESS);
    }
    let width = listed.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in &listed {
        let keys = if p.unknown_to_config {
            "(not in the configuration)".to_string()
        } else {
            p.keys.join(", ")
        };
        println!("{:width$}  {:<40}  {keys}", p.name, p.display_value());
    }
    let unset = listed
        .iter()
        .filter(|p| !p.is_set() && !p.unknown_to_config)
        .count();
    if unset > 0 {
        note(
            global.quiet,
            format!("{unset} parameters are not set in {region}: `ftslm params init` creates them"),
        );
    }
    Ok(ExitCode::SUCCESS)
}
