//! The `ftslm` binary: parses the command line and hands each command to its
//! handler in `commands/`. All logic lives in the library crates; this crate
//! only wires them together and turns their errors into messages and exit codes.
//! It sets two process-wide settings no library may: candle's element-wise
//! threads and the allocator policy for training.

#![forbid(unsafe_code)]

mod cli;
mod commands;
mod inference;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // candle hands its element-wise ops to a pool whose caller spins until
    // the other threads finish; on a few cores that spinning took a third of
    // a training step (docs/performance.md). The products, where threads pay,
    // are threaded by ftslm's own kernels and candle's matmul, which read
    // RAYON_NUM_THREADS instead. A value the user set is kept.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    ftslm_kernels::allocator::tune_for_training();
    let cli = cli::Cli::parse();
    let verbose = cli.global.verbose;
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", output::error_chain(&err));
            if verbose >= 2 {
                for detail in output::sdk_details(&err) {
                    eprintln!("AWS SDK detail: {detail}");
                }
            }
            ExitCode::FAILURE
        }
    }
}
