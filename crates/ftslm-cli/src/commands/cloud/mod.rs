//! `ftslm cloud …`: the AWS training instance driven through Systems Manager.
//! Each handler connects with the configured region and resources, calls the
//! library, and prints a table or `--json`.

mod doctor;
mod lifecycle;
mod pipeline;
mod remote;
pub(crate) mod runs;

use std::process::ExitCode;

use anyhow::Context;
use ftslm_cloud::aws::{Aws, CloudTarget};
use ftslm_cloud::steps::TrainMode;

use crate::cli::{CloudCommand, GlobalArgs};
use crate::commands::load_config;
use crate::output::note;

pub fn run(global: &GlobalArgs, cmd: CloudCommand) -> anyhow::Result<ExitCode> {
    install_interrupt_handler();
    match cmd {
        CloudCommand::Doctor { json } => doctor::run(global, json),
        CloudCommand::Status { json } => lifecycle::status(global, json),
        CloudCommand::Start { json } => lifecycle::start(global, json),
        CloudCommand::Stop { verify_s3, json } => lifecycle::stop(global, verify_s3, json),
        CloudCommand::Deploy {
            skip_volume,
            skip_image,
        } => remote::deploy(global, skip_volume, skip_image),
        CloudCommand::Train {
            dry_run,
            test,
            max_steps,
            no_resume,
            background,
            timeout,
        } => remote::train(
            global,
            remote::TrainFlags {
                mode: train_mode(dry_run, test, max_steps),
                no_resume,
                background,
                timeout,
            },
        ),
        CloudCommand::Logs { follow, command_id } => remote::logs(global, follow, command_id),
        CloudCommand::Test { run, text } => remote::test(global, &run, &text),
        CloudCommand::Run {
            max_steps,
            test,
            stop_after: _,
            keep_running,
            out,
            no_resume,
            timeout,
            json,
        } => pipeline::run(
            global,
            pipeline::RunFlags {
                mode: train_mode(false, test, max_steps),
                keep_running,
                out,
                no_resume,
                timeout,
                json,
            },
        ),
    }
}

/// The configuration with Parameter Store resolved, and clients in its region.
pub(crate) fn connect(global: &GlobalArgs) -> anyhow::Result<(Aws, CloudTarget)> {
    let config = load_config(global, true)?;
    for n in config.notes() {
        note(global.quiet, n);
    }
    let target =
        CloudTarget::from_config(&config).context("the aws section of the configuration")?;
    let aws = Aws::from_environment(target.region()).context("cannot set up the AWS clients")?;
    Ok((aws, target))
}

/// Progress lines on stderr, `--quiet` silences them.
pub(crate) fn progress_printer(quiet: bool) -> impl Fn(&str) + Sync {
    move |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    }
}

fn train_mode(dry_run: bool, test: bool, max_steps: Option<usize>) -> TrainMode {
    if dry_run {
        TrainMode::DryRun
    } else if test {
        TrainMode::Test
    } else {
        TrainMode::Full { max_steps }
    }
}

/// Ctrl-C ends the wait in progress (instead of the process), so that the
/// command can clean up — `cloud run` stops the instance — and say what is
/// still going on remotely. A second Ctrl-C during that clean-up ends a wait
/// again; the instance's own idle shutdown is the last line of defence.
pub(crate) fn install_interrupt_handler() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        if let Err(e) = ctrlc::set_handler(|| {
            eprintln!("\ninterrupt: finishing the current call, then cleaning up …");
            ftslm_cloud::aws::request_interrupt();
        }) {
            eprintln!("note: Ctrl-C cannot be caught ({e}); it will end ftslm at once");
        }
    });
}

pub(crate) fn checkpoints(
    global: &GlobalArgs,
    cmd: crate::cli::CheckpointsCommand,
) -> anyhow::Result<ExitCode> {
    match cmd {
        crate::cli::CheckpointsCommand::Clean {
            dry_run,
            keep_final_model,
        } => remote::clean(global, dry_run, keep_final_model),
    }
}
