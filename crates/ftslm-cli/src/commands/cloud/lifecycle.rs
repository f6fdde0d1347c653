//! `ftslm cloud status|start|stop`.

use std::process::ExitCode;
use std::time::Duration;

use ftslm_cloud::instance::{self, StartOptions};

use crate::cli::GlobalArgs;
use crate::output::print_json;

/// Long enough for a cold g6 to boot and pass its checks; a wait past it is a
/// problem worth reporting, not waiting out.
pub const START_LIMIT: Duration = Duration::from_secs(15 * 60);
pub const STOP_LIMIT: Duration = Duration::from_secs(10 * 60);

pub fn status(global: &GlobalArgs, json: bool) -> anyhow::Result<ExitCode> {
    let (aws, target) = super::connect(global)?;
    let status = instance::describe(&aws, target.instance_id()?)?;
    if json {
        print_json(&status)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "instance       {} ({})",
        status.instance_id, status.instance_type
    );
    println!("state          {}", status.state);
    let show = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".to_string());
    println!(
        "status checks  system {}, instance {}",
        show(&status.system_status),
        show(&status.instance_status)
    );
    println!("SSM agent      {}", status.ssm_agent);
    if let Some(hours) = status.hours_since_launch {
        println!("running for    {hours:.2} h");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn start(global: &GlobalArgs, json: bool) -> anyhow::Result<ExitCode> {
    let (aws, target) = super::connect(global)?;
    let progress = super::progress_printer(global.quiet);
    let report = instance::start(
        &aws,
        target.instance_id()?,
        &StartOptions::new(START_LIMIT),
        &progress,
    )?;
    if json {
        print_json(&report)?;
    } else if report.already_running() {
        println!("{} was already running", report.status.instance_id);
    } else {
        println!(
            "{} is running (was {}); SSM agent {}",
            report.status.instance_id, report.previous_state, report.status.ssm_agent
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stop(global: &GlobalArgs, verify_s3: bool, json: bool) -> anyhow::Result<ExitCode> {
    let (aws, target) = super::connect(global)?;
    let progress = super::progress_printer(global.quiet);
    if verify_s3 {
        super::runs::verify_latest_run(&aws, &target, &progress)?;
    }
    let report = instance::stop(
        &aws,
        target.instance_id()?,
        target.settings.ec2.hourly_price_usd,
        STOP_LIMIT,
        &progress,
    )?;
    if json {
        print_json(&report)?;
    } else {
        println!("{}", report.summary());
    }
    Ok(ExitCode::SUCCESS)
}
