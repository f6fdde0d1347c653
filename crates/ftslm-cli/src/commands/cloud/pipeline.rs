//! `ftslm cloud run`: the whole pipeline with a step-by-step view; the exit
//! code and the last line say which step failed.

use std::process::ExitCode;
use std::time::Duration;

use ftslm_cloud::instance::StartOptions;
use ftslm_cloud::pipeline::{run_pipeline, PipelineEvent, PipelineOptions, Step, StepState};
use ftslm_cloud::runs::PullOptions;
use ftslm_cloud::steps::{self, TrainMode};

use crate::cli::GlobalArgs;
use crate::output::print_json;

pub struct RunFlags {
    pub mode: TrainMode,
    pub keep_running: bool,
    pub out: std::path::PathBuf,
    pub no_resume: bool,
    pub timeout: Option<Duration>,
    pub json: bool,
}

/// Exit codes: 0 success; 10 + the failed step's number (11 start … 16 stop),
/// so scripts can tell a failed training from a failed stop; 130 on Ctrl-C.
pub fn run(global: &GlobalArgs, flags: RunFlags) -> anyhow::Result<ExitCode> {
    let (aws, target) = super::connect(global)?;
    super::install_interrupt_handler();
    let options = PipelineOptions {
        mode: flags.mode,
        train_sets: steps::training_sets(&global.sets),
        no_resume: flags.no_resume,
        out_dir: flags.out,
        keep_running: flags.keep_running,
        run_timestamp: None,
        start: StartOptions::new(super::lifecycle::START_LIMIT),
        train_limit: flags.timeout.unwrap_or(steps::TRAIN_LIMIT),
        pull: PullOptions::default(),
    };
    let quiet = global.quiet;
    let report = run_pipeline(&aws, &target, &options, &|event| match event {
        PipelineEvent::StepStarted(step) => {
            if !quiet {
                eprintln!("[{}/{}] {step} …", step.number(), Step::ALL.len());
            }
        }
        PipelineEvent::StepEnded(record) => {
            if !quiet || record.state != StepState::Ok {
                eprintln!(
                    "[{}/{}] {} {:?} ({:.0} s): {}",
                    record.step.number(),
                    Step::ALL.len(),
                    record.step,
                    record.state,
                    record.seconds,
                    record.detail
                );
            }
        }
        PipelineEvent::Progress(line) => {
            if !quiet {
                eprintln!("      {line}");
            }
        }
        PipelineEvent::RemoteLine(line) => super::remote::print_line(line.clone()),
    });
    if flags.json {
        print_json(&report)?;
    }
    let Some(step) = report.failed_step else {
        if let Some(to) = &report.pulled_to {
            eprintln!("run {} pulled into {}", report.run_timestamp, to.display());
        }
        return Ok(ExitCode::SUCCESS);
    };
    let stopped = if report.instance_left_running {
        "the instance is STILL RUNNING: stop it with `ftslm cloud stop`".to_string()
    } else if let Some(stop) = &report.stop {
        format!("the instance was stopped ({})", stop.summary())
    } else {
        "the instance was not started".to_string()
    };
    eprintln!(
        "error: step {} ({step}) failed: {}; {stopped}",
        step.number(),
        report.error.as_deref().unwrap_or("unknown error")
    );
    let interrupted = report
        .steps
        .iter()
        .any(|r| r.state == StepState::Interrupted);
    Ok(ExitCode::from(if interrupted {
        130
    } else {
        10 + step.number() as u8
    }))
}
