//! Commands of the contract whose engine is not written yet. They parse their
//! flags like the finished ones will and then say plainly that they cannot run.

use std::process::ExitCode;

/// Prints which command is missing and which part of the work brings it, exit 1.
pub fn not_built(command: &str, arrives_with: &str) -> anyhow::Result<ExitCode> {
    eprintln!(
        "ftslm {command}: not built yet — it arrives with {arrives_with}. \
See README.md for what works today."
    );
    Ok(ExitCode::FAILURE)
}
