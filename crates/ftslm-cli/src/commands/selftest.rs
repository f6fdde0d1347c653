//! `ftslm selftest --device cuda [--json]`: the GPU kernels against the CPU
//! engine, each check with its tolerance and measured error. Exit 1 when a
//! check fails or no GPU can be used.

use std::process::ExitCode;

use crate::cli::GlobalArgs;
use crate::output::print_json;

pub fn run(global: &GlobalArgs, json: bool) -> anyhow::Result<ExitCode> {
    let choice = global.device.unwrap_or_default();
    let report = ftslm_cuda::selftest::run(choice)?;
    if json {
        print_json(&report)?;
    } else {
        println!(
            "{} ({}), driver {}, NVRTC {}, {} kernels loaded",
            report.gpu.name,
            report.gpu.arch(),
            report.driver_version.as_deref().unwrap_or("?"),
            report.nvrtc_version,
            report.kernels_loaded
        );
        for check in &report.checks {
            println!(
                "{} {:<48} {:<32} max |error| {:.3e} ({:.2} of the bound)\n     tolerance: {}",
                if check.passed { "ok  " } else { "FAIL" },
                check.name,
                check.shape,
                check.max_abs_error,
                check.worst_fraction_of_bound,
                check.tolerance
            );
        }
        let failed = report.checks.iter().filter(|c| !c.passed).count();
        println!(
            "{} of {} checks passed in {:.1} s",
            report.checks.len() - failed,
            report.checks.len(),
            report.seconds
        );
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
