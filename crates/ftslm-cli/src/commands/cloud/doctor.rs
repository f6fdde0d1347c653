//! `ftslm cloud doctor`.

use std::process::ExitCode;

use ftslm_cloud::doctor::{run_doctor, CheckState};

use crate::cli::GlobalArgs;
use crate::output::print_json;

/// Exit 0 when every check passes, 1 otherwise (so scripts can gate on it).
pub fn run(global: &GlobalArgs, json: bool) -> anyhow::Result<ExitCode> {
    let (aws, target) = super::connect(global)?;
    let report = run_doctor(&aws, &target);
    if json {
        print_json(&report)?;
    } else {
        println!("region {}", report.region);
        for check in &report.checks {
            let mark = match check.state {
                CheckState::Ok => "ok     ",
                CheckState::Missing => "MISSING",
                CheckState::Failed => "FAILED ",
                CheckState::Skipped => "skipped",
            };
            println!("{mark} {}: {}", check.name, check.detail);
            if let Some(fix) = &check.fix {
                println!("        fix: {fix}");
            }
        }
    }
    Ok(if report.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
