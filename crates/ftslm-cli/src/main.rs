//! The `ftslm` binary: parses the command line and hands each command to its
//! handler in `commands/`. All logic lives in the library crates; this crate
//! only wires them together and turns their errors into messages and exit codes.

mod cli;
mod commands;
mod inference;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
