//! One handler per command; `run` dispatches to them.

mod bench;
pub(crate) mod cloud;
mod config;
mod data;
mod device;
mod env;
mod eval;
mod extract;
mod generate;
mod merge;
mod metrics;
mod model;
mod params;
mod push;
mod quickstart;
mod random_init;
mod selftest;
mod train;

use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, Command};
pub use config::load_config;

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = cli.global;
    match cli.command {
        Command::Quickstart(args) => quickstart::run(&global, &args),
        Command::Data(cmd) => data::run(&global, cmd),
        Command::Config(cmd) => config::run(&global, cmd),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ftslm", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Model(cmd) => model::run(&global, cmd),
        Command::Train(args) => train::run(&global, &args),
        Command::Merge(args) => merge::run(&global, &args),
        Command::Generate(args) => generate::run(&global, &args),
        Command::Extract(args) => extract::run(&global, &args),
        Command::Eval(args) => eval::run(&global, &args),
        Command::Bench(cmd) => bench::run(&global, cmd),
        Command::Params(cmd) => params::run(&global, cmd),
        Command::Cloud(cmd) => cloud::run(&global, cmd),
        Command::Runs(cmd) => cloud::runs::run(&global, cmd),
        Command::Checkpoints(cmd) => cloud::checkpoints(&global, cmd),
        Command::Env { json } => env::run(json),
        Command::Selftest { json } => selftest::run(&global, json),
        Command::Push(args) => push::run(&global, &args),
        Command::Metrics(args) => metrics::run(&global, &args),
    }
}
