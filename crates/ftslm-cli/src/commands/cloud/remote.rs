//! `ftslm cloud deploy|train|logs|test` and `ftslm checkpoints clean`: scripts
//! run on the instance through Systems Manager, their output streamed from
//! CloudWatch Logs as it arrives.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use ftslm_cloud::aws::AwsError;
use ftslm_cloud::command_logs::{latest_command, read_command_logs};
use ftslm_cloud::remote::{LogLine, LogStream};
use ftslm_cloud::runs::{list_runs, RunSelector};
use ftslm_cloud::steps::{self, TrainMode};

use crate::cli::GlobalArgs;
use crate::output::print_json;

/// Remote stdout to stdout, remote stderr to stderr, as if it ran here.
pub(crate) fn print_line(line: LogLine) {
    match line.stream {
        LogStream::Stdout => println!("{}", line.text),
        LogStream::Stderr => eprintln!("{}", line.text),
    }
}

pub fn deploy(
    global: &GlobalArgs,
    skip_volume: bool,
    skip_image: bool,
) -> anyhow::Result<ExitCode> {
    let (aws, target) = super::connect(global)?;
    let progress = super::progress_printer(global.quiet);
    let outcome = steps::deploy(
        &aws,
        &target,
        skip_volume,
        skip_image,
        &progress,
        &print_line,
    )?;
    eprintln!(
        "deploy: {} (command {})",
        outcome.status, outcome.command_id
    );
    Ok(ExitCode::SUCCESS)
}

pub struct TrainFlags {
    pub mode: TrainMode,
    pub no_resume: bool,
    pub background: bool,
    pub timeout: Option<Duration>,
}

pub fn train(global: &GlobalArgs, flags: TrainFlags) -> anyhow::Result<ExitCode> {
    let (aws, target) = super::connect(global)?;
    let limit = flags.timeout.unwrap_or(steps::TRAIN_LIMIT);
    let args = steps::train_args(
        &flags.mode,
        flags.no_resume,
        &steps::training_sets(&global.sets),
    );
    let timestamp = steps::new_run_timestamp();
    let launched = steps::launch_training(&aws, &target, &timestamp, args, limit)?;
    eprintln!(
        "training {} sent as command {}; the run is archived at {}",
        launched.run_timestamp, launched.command_id, launched.s3_uri
    );
    if flags.background {
        print_json(&launched)?;
        eprintln!(
            "follow it with: ftslm cloud logs --follow --command-id {}",
            launched.command_id
        );
        return Ok(ExitCode::SUCCESS);
    }
    match steps::follow_training(&aws, &target, &launched, limit, &print_line) {
        Ok(outcome) => {
            eprintln!(
                "training {} ended {} (exit code 0); archived at {}",
                launched.run_timestamp, outcome.status, launched.s3_uri
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(AwsError::RemoteFailed { status, code, .. }) => {
            eprintln!(
                "error: training {} ended {status}{}; its output: ftslm cloud logs --command-id {}",
                launched.run_timestamp,
                code.map(|c| format!(" with exit code {c}"))
                    .unwrap_or_default(),
                launched.command_id
            );
            // The remote exit code, as far as a process exit code can carry it.
            let code = code.filter(|c| (1..=255).contains(c)).unwrap_or(1);
            Ok(ExitCode::from(code as u8))
        }
        Err(AwsError::Interrupted) => {
            eprintln!(
                "interrupted: training goes on on the instance; follow it with \
                 `ftslm cloud logs --follow --command-id {}`",
                launched.command_id
            );
            Ok(ExitCode::from(130))
        }
        Err(e) => Err(e.into()),
    }
}

pub fn logs(
    global: &GlobalArgs,
    follow: bool,
    command_id: Option<String>,
) -> anyhow::Result<ExitCode> {
    let (aws, target) = super::connect(global)?;
    let instance_id = target.instance_id()?.to_string();
    let command_id = match command_id {
        Some(id) => id,
        None => match latest_command(&aws, &instance_id)? {
            Some(info) => {
                eprintln!("command {} ({}, {})", info.command_id, info.comment, info.status);
                info.command_id
            }
            None => anyhow::bail!(
                "no ftslm command has been sent to {instance_id}; start one with `ftslm cloud deploy` or `ftslm cloud train`"
            ),
        },
    };
    let outcome = read_command_logs(
        &aws,
        &target.settings.cloudwatch.log_group,
        &command_id,
        &instance_id,
        follow,
        steps::TRAIN_LIMIT,
        &print_line,
    )?;
    match outcome {
        Some(o) if !o.succeeded() => {
            eprintln!("command {command_id} ended {}", o.status);
            Ok(ExitCode::FAILURE)
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

pub fn test(global: &GlobalArgs, run: &str, text: &str) -> anyhow::Result<ExitCode> {
    let (aws, target) = super::connect(global)?;
    let selector: RunSelector = run.parse().context("--run")?;
    let timestamp = match selector {
        RunSelector::Timestamp(ts) => ts,
        RunSelector::Latest => list_runs(&aws, &target)?
            .first()
            .map(|r| r.timestamp.clone())
            .context("no run is archived in S3 yet: train one with `ftslm cloud train`")?,
    };
    steps::extract_test(&aws, &target, &timestamp, text, &print_line)?;
    Ok(ExitCode::SUCCESS)
}

pub fn clean(
    global: &GlobalArgs,
    dry_run: bool,
    keep_final_model: bool,
) -> anyhow::Result<ExitCode> {
    let (aws, target) = super::connect(global)?;
    super::install_interrupt_handler();
    steps::clean_checkpoints(&aws, &target, dry_run, keep_final_model, &print_line)?;
    Ok(ExitCode::SUCCESS)
}
