//! `ftslm config show`, and loading the configuration for every other command.

use std::process::ExitCode;

use anyhow::Context;
use ftslm_config::{ConfigLoader, ResolvedConfig};

use crate::cli::{ConfigCommand, GlobalArgs};
use crate::output::{note, print_json};

/// The configuration as the global flags ask for it. Commands that need no AWS
/// value pass `use_parameter_store = false` so they never wait on the network.
pub fn load_config(
    global: &GlobalArgs,
    use_parameter_store: bool,
) -> anyhow::Result<ResolvedConfig> {
    let loader = ConfigLoader::new()
        .config_dir(global.config_dir.as_deref())
        .sets(&global.sets)
        .env_from_process();
    ftslm_cloud::load_config(&loader, use_parameter_store && !global.no_ssm)
        .context("cannot load the configuration")
}

pub fn run(global: &GlobalArgs, cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Show { resolve: _, json } => {
            let config = load_config(global, true)?;
            for n in config.notes() {
                note(global.quiet, n);
            }
            if json {
                print_json(&config.to_json())?;
            } else {
                print!("{}", config.render_table());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
