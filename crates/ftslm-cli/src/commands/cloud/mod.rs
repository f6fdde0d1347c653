//! `ftslm cloud …`: the AWS training instance driven through Systems Manager.
//! Each handler connects with the configured region and resources, calls the
//! library, and prints a table or `--json`.

mod doctor;

use std::process::ExitCode;

use anyhow::Context;
use ftslm_cloud::aws::{Aws, CloudTarget};

use crate::cli::{CloudCommand, GlobalArgs};
use crate::commands::load_config;
use crate::output::note;

pub fn run(global: &GlobalArgs, cmd: CloudCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CloudCommand::Doctor { json } => doctor::run(global, json),
        _ => crate::commands::unbuilt::not_built("cloud", "the AWS pipeline"),
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
