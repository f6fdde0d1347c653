//! `ftslm cloud run`: start → deploy → train → verify S3 → pull → stop, with
//! one promise above all: once the instance has been started, it is stopped
//! before this returns — after a failed step, a timeout, Ctrl-C (the waits
//! end with `Interrupted`) or a panic (a drop guard) — unless the caller asked
//! to keep it running.

use std::cell::RefCell;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::aws::{clear_interrupt, Aws, AwsError, CloudTarget};
use crate::instance::{self, StartOptions, StopReport};
use crate::remote::{self, LogLine};
use crate::runs::{pull_run, PullOptions, PullReport, RunSelector};
use crate::steps::{self, TrainMode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Start,
    Deploy,
    Train,
    VerifyS3,
    Pull,
    Stop,
}

impl Step {
    pub const ALL: [Step; 6] = [
        Step::Start,
        Step::Deploy,
        Step::Train,
        Step::VerifyS3,
        Step::Pull,
        Step::Stop,
    ];

    pub fn number(self) -> usize {
        Step::ALL.iter().position(|s| *s == self).unwrap_or(0) + 1
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Start => "start",
            Step::Deploy => "deploy",
            Step::Train => "train",
            Step::VerifyS3 => "verify-s3",
            Step::Pull => "pull",
            Step::Stop => "stop",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Ok,
    Failed,
    Interrupted,
    /// Not run: an earlier step failed, or `--keep-running` skips the stop.
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: Step,
    pub state: StepState,
    pub detail: String,
    pub seconds: f64,
}

/// What the pipeline tells its caller as it goes, for a progress view.
#[derive(Debug, Clone)]
pub enum PipelineEvent<'a> {
    StepStarted(Step),
    StepEnded(&'a StepRecord),
    /// A progress line of the current step (state changes, waits).
    Progress(&'a str),
    /// A line of the remote command's output.
    RemoteLine(&'a LogLine),
}

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub mode: TrainMode,
    /// `--set` values passed on to the remote `ftslm train`.
    pub train_sets: Vec<String>,
    pub no_resume: bool,
    /// Where the run is pulled to; the run's timestamp is appended.
    pub out_dir: PathBuf,
    /// Leave the instance running at the end (and after a failure).
    pub keep_running: bool,
    /// The run's name in S3; `None` = now, in UTC.
    pub run_timestamp: Option<String>,
    pub start: StartOptions,
    pub train_limit: Duration,
    pub pull: PullOptions,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    pub run_timestamp: String,
    pub steps: Vec<StepRecord>,
    /// The first step that did not succeed.
    pub failed_step: Option<Step>,
    pub error: Option<String>,
    pub stop: Option<StopReport>,
    pub pulled: Option<PullReport>,
    pub pulled_to: Option<PathBuf>,
    /// True only with `keep_running`, or when stopping itself failed.
    pub instance_left_running: bool,
}

impl PipelineReport {
    pub fn succeeded(&self) -> bool {
        self.failed_step.is_none()
    }
}

/// Stops the instance when dropped while armed: the path a panic takes.
struct StopGuard<'a> {
    aws: &'a Aws,
    instance_id: &'a str,
    armed: bool,
}

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            clear_interrupt();
            if let Err(e) = instance::stop(
                self.aws,
                self.instance_id,
                None,
                STOP_LIMIT,
                &|line: &str| eprintln!("{line}"),
            ) {
                eprintln!(
                    "error: could not stop {} after a crash: {e}; stop it with `ftslm cloud stop`",
                    self.instance_id
                );
            }
        }
    }
}

const STOP_LIMIT: Duration = Duration::from_secs(10 * 60);

/// Runs the whole pipeline; see the module documentation for the stop rule.
/// Errors are in the report (which step, why), never returned early.
pub fn run_pipeline(
    aws: &Aws,
    target: &CloudTarget,
    options: &PipelineOptions,
    events: &(dyn Fn(PipelineEvent) + Sync),
) -> PipelineReport {
    let run_timestamp = options
        .run_timestamp
        .clone()
        .unwrap_or_else(steps::new_run_timestamp);
    let mut report = PipelineReport {
        run_timestamp: run_timestamp.clone(),
        steps: Vec::new(),
        failed_step: None,
        error: None,
        stop: None,
        pulled: None,
        pulled_to: None,
        instance_left_running: false,
    };
    let instance_id = match target.instance_id() {
        Ok(id) => id.to_string(),
        Err(e) => {
            fail(&mut report, Step::Start, Instant::now(), &e, events);
            return report;
        }
    };
    let progress = |line: &str| events(PipelineEvent::Progress(line));
    let on_line = |line: LogLine| events(PipelineEvent::RemoteLine(&line));
    let mut guard = StopGuard {
        aws,
        instance_id: &instance_id,
        armed: false,
    };

    // Start: from its first call on, the instance may be billing.
    let started = begin(Step::Start, events);
    guard.armed = !options.keep_running;
    match instance::start(aws, &instance_id, &options.start, &progress) {
        Ok(r) => ok(
            &mut report,
            Step::Start,
            started,
            format!("{} {}", instance_id, r.status.state),
            events,
        ),
        Err(e) => fail(&mut report, Step::Start, started, &e, events),
    }

    if report.succeeded() {
        let started = begin(Step::Deploy, events);
        match steps::deploy(aws, target, false, false, &progress, &on_line) {
            Ok(_) => ok(
                &mut report,
                Step::Deploy,
                started,
                "volume mounted, image pulled, GPU seen".into(),
                events,
            ),
            Err(e) => fail(&mut report, Step::Deploy, started, &e, events),
        }
    }

    if report.succeeded() {
        let started = begin(Step::Train, events);
        let args = steps::train_args(&options.mode, options.no_resume, &options.train_sets);
        let launched = RefCell::new(None);
        let result = steps::launch_training(aws, target, &run_timestamp, args, options.train_limit)
            .and_then(|l| {
                progress(&format!(
                    "command {} sent; archive {}",
                    l.command_id, l.s3_uri
                ));
                let outcome =
                    steps::follow_training(aws, target, &l, options.train_limit, &on_line);
                *launched.borrow_mut() = Some(l);
                outcome
            });
        match result {
            Ok(outcome) => ok(
                &mut report,
                Step::Train,
                started,
                format!("command {} ended {}", outcome.command_id, outcome.status),
                events,
            ),
            Err(e) => {
                // An abandoned wait must not leave the run going on the instance.
                if matches!(e, AwsError::Interrupted | AwsError::Timeout { .. }) {
                    if let Some(l) = launched.borrow().as_ref() {
                        clear_interrupt();
                        if let Err(c) = remote::cancel(aws, &l.command_id) {
                            progress(&format!("could not cancel command {}: {c}", l.command_id));
                        }
                    }
                }
                fail(&mut report, Step::Train, started, &e, events)
            }
        }
    }

    if report.succeeded() {
        let started = begin(Step::VerifyS3, events);
        match steps::verify_uploaded(aws, target, &run_timestamp) {
            Ok(u) => ok(
                &mut report,
                Step::VerifyS3,
                started,
                format!("{} objects, {} bytes at {}", u.objects, u.bytes, u.s3_uri),
                events,
            ),
            Err(e) => fail(&mut report, Step::VerifyS3, started, &e, events),
        }
    }

    if report.succeeded() {
        let started = begin(Step::Pull, events);
        let out = options.out_dir.join(&run_timestamp);
        let selector = RunSelector::Timestamp(run_timestamp.clone());
        match pull_run(aws, target, &selector, &out, &options.pull, &|_| {}) {
            Ok(pulled) => {
                ok(
                    &mut report,
                    Step::Pull,
                    started,
                    format!("{} files into {}", pulled.files, out.display()),
                    events,
                );
                report.pulled = Some(pulled);
                report.pulled_to = Some(out);
            }
            Err(e) => fail(&mut report, Step::Pull, started, &e, events),
        }
    }

    let started = begin(Step::Stop, events);
    if options.keep_running {
        report.instance_left_running = true;
        record(
            &mut report,
            Step::Stop,
            StepState::Skipped,
            started,
            format!("--keep-running: {instance_id} left running"),
            events,
        );
        return report;
    }
    // A Ctrl-C that ended an earlier step must not also end the stop's wait.
    clear_interrupt();
    guard.armed = false;
    match instance::stop(
        aws,
        &instance_id,
        target.settings.ec2.hourly_price_usd,
        STOP_LIMIT,
        &progress,
    ) {
        Ok(stop) => {
            let detail = stop.summary();
            report.stop = Some(stop);
            record(
                &mut report,
                Step::Stop,
                StepState::Ok,
                started,
                detail,
                events,
            );
        }
        Err(e) => {
            report.instance_left_running = true;
            fail(&mut report, Step::Stop, started, &e, events);
        }
    }
    report
}

fn begin(step: Step, events: &(dyn Fn(PipelineEvent) + Sync)) -> Instant {
    events(PipelineEvent::StepStarted(step));
    Instant::now()
}

fn ok(
    report: &mut PipelineReport,
    step: Step,
    started: Instant,
    detail: String,
    events: &(dyn Fn(PipelineEvent) + Sync),
) {
    record(report, step, StepState::Ok, started, detail, events);
}

fn fail(
    report: &mut PipelineReport,
    step: Step,
    started: Instant,
    error: &AwsError,
    events: &(dyn Fn(PipelineEvent) + Sync),
) {
    let state = if matches!(error, AwsError::Interrupted) {
        StepState::Interrupted
    } else {
        StepState::Failed
    };
    if report.failed_step.is_none() {
        report.failed_step = Some(step);
        report.error = Some(error.to_string());
    }
    record(report, step, state, started, error.to_string(), events);
}

fn record(
    report: &mut PipelineReport,
    step: Step,
    state: StepState,
    started: Instant,
    detail: String,
    events: &(dyn Fn(PipelineEvent) + Sync),
) {
    report.steps.push(StepRecord {
        step,
        state,
        detail,
        seconds: started.elapsed().as_secs_f64(),
    });
    if let Some(last) = report.steps.last() {
        events(PipelineEvent::StepEnded(last));
    }
}
