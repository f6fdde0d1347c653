//! Starting and stopping the instance: only the calls its state allows, then
//! bounded waits for the state, the status checks and the Systems Manager
//! agent, each reported through the caller's progress callback as it changes.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{describe_ec2, hours_between, run, ssm_agent, InstanceState, InstanceStatus, SsmAgent};
use crate::aws::{call_error, wait_blocking, Aws, AwsError};
use crate::pricing::{hourly_price, PriceSource};

/// A GPU instance is usually running in one or two minutes, its checks pass in
/// a few more, and its agent registers soon after.
pub const DEFAULT_START_LIMIT: Duration = Duration::from_secs(15 * 60);

/// What [`start`] waits for, and for how long in all.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub limit: Duration,
    /// Wait for both EC2 status checks to be `ok`.
    pub wait_for_checks: bool,
    /// Wait for the Systems Manager agent to be `Online`; every remote step needs it.
    pub wait_for_ssm: bool,
}

impl StartOptions {
    /// Waits for everything, within `limit`.
    pub fn new(limit: Duration) -> StartOptions {
        StartOptions {
            limit,
            wait_for_checks: true,
            wait_for_ssm: true,
        }
    }
}

impl Default for StartOptions {
    fn default() -> StartOptions {
        StartOptions::new(DEFAULT_START_LIMIT)
    }
}

/// What [`start`] did and where the instance ended up.
#[derive(Debug, Clone, Serialize)]
pub struct StartReport {
    /// The state before `start` (running: nothing was started).
    pub previous_state: InstanceState,
    /// Whether `StartInstances` was sent.
    pub start_requested: bool,
    #[serde(flatten)]
    pub status: InstanceStatus,
}

impl StartReport {
    pub fn already_running(&self) -> bool {
        self.previous_state == InstanceState::Running
    }
}

/// What [`stop`] did, the hours the instance ran since its last start and what
/// they cost.
#[derive(Debug, Clone, Serialize)]
pub struct StopReport {
    pub instance_id: String,
    pub instance_type: String,
    pub previous_state: InstanceState,
    /// Whether `StopInstances` was sent.
    pub stop_requested: bool,
    /// From the last start to the stop; `None` when it was already stopped.
    pub hours_run: Option<f64>,
    pub hourly_price_usd: Option<f64>,
    pub cost_usd: Option<f64>,
    pub price_source: Option<PriceSource>,
}

impl StopReport {
    /// One line for the terminal.
    pub fn summary(&self) -> String {
        let Some(hours) = self.hours_run else {
            return format!("{} was already stopped", self.instance_id);
        };
        let ran = format!(
            "{} ({}) ran {hours:.2} h since its last start",
            self.instance_id, self.instance_type
        );
        match (self.cost_usd, self.hourly_price_usd, self.price_source) {
            (Some(cost), Some(price), Some(source)) => {
                format!("{ran}: about ${cost:.2} at ${price}/h ({source})")
            }
            _ => format!("{ran}; price unknown: set aws.ec2.hourly_price_usd"),
        }
    }
}

/// Starts `instance_id` unless it is already running, then waits for it to be
/// `running`, for its status checks and its SSM agent as `options` ask, all
/// within `options.limit`. A terminated instance is refused.
pub fn start(
    aws: &Aws,
    instance_id: &str,
    options: &StartOptions,
    progress: &dyn Fn(&str),
) -> Result<StartReport, AwsError> {
    let started = Instant::now();
    let limit = options.limit;
    let before = describe_ec2(aws, instance_id)?;
    let previous_state = before.state.clone();
    let mut start_requested = false;
    match &previous_state {
        state if state.is_gone() => {
            return Err(AwsError::Refused(format!(
                "instance {instance_id} is {state} and can never run again: launch a new one and \
                 point aws.ec2.instance_id at it (`ftslm params init --set aws.ec2.instance_id=i-… \
                 --overwrite`)"
            )))
        }
        InstanceState::Running => progress(&format!(
            "instance {instance_id} is already running; not starting it again"
        )),
        InstanceState::Pending => progress(&format!("instance {instance_id} is already starting")),
        state => {
            if *state == InstanceState::Stopping {
                // EC2 refuses to start an instance that is still stopping.
                progress(&format!(
                    "instance {instance_id} is stopping; waiting for it to stop before starting it"
                ));
                wait_state(
                    aws,
                    instance_id,
                    &InstanceState::Stopped,
                    started,
                    limit,
                    progress,
                )?;
            }
            progress(&format!(
                "starting instance {instance_id} ({})",
                before.instance_type
            ));
            let ec2 = aws.ec2();
            run(aws, async {
                ec2.start_instances()
                    .instance_ids(instance_id)
                    .send()
                    .await
                    .map_err(|e| call_error("ec2:StartInstances", e))
            })?;
            start_requested = true;
        }
    }

    let mut status = wait_state(
        aws,
        instance_id,
        &InstanceState::Running,
        started,
        limit,
        progress,
    )?;
    if options.wait_for_checks {
        status = wait_checks(aws, instance_id, started, limit, progress)?;
    }
    status.ssm_agent = if options.wait_for_ssm {
        wait_agent(aws, instance_id, started, limit, progress)?
    } else {
        SsmAgent::Unknown("not checked".to_string())
    };
    progress(&format!("instance {instance_id} is ready"));
    Ok(StartReport {
        previous_state,
        start_requested,
        status,
    })
}

/// Stops `instance_id` unless it is already stopped, waits for `stopped`
/// within `limit`, and reports the hours since its last start and their cost
/// (`hourly_price_override` is `aws.ec2.hourly_price_usd`).
pub fn stop(
    aws: &Aws,
    instance_id: &str,
    hourly_price_override: Option<f64>,
    limit: Duration,
    progress: &dyn Fn(&str),
) -> Result<StopReport, AwsError> {
    let started = Instant::now();
    let before = describe_ec2(aws, instance_id)?;
    let previous_state = before.state.clone();
    let mut stop_requested = false;
    // Billing ends when the instance starts stopping, so that is the end of the run.
    let mut stopped_at: Option<DateTime<Utc>> = None;
    match &previous_state {
        state if state.is_gone() => {
            return Err(AwsError::Refused(format!(
                "instance {instance_id} is {state}: there is nothing to stop, and it cannot be \
                 started again; launch a new one and point aws.ec2.instance_id at it"
            )))
        }
        InstanceState::Stopped => {
            progress(&format!("instance {instance_id} is already stopped"));
        }
        InstanceState::Stopping => {
            progress(&format!("instance {instance_id} is already stopping"));
            stopped_at = Some(Utc::now());
        }
        state => {
            if *state == InstanceState::Pending {
                // EC2 refuses to stop an instance that is still pending.
                progress(&format!(
                    "instance {instance_id} is starting; waiting for it to run before stopping it"
                ));
                wait_state(
                    aws,
                    instance_id,
                    &InstanceState::Running,
                    started,
                    limit,
                    progress,
                )?;
            }
            progress(&format!(
                "stopping instance {instance_id} ({})",
                before.instance_type
            ));
            let ec2 = aws.ec2();
            run(aws, async {
                ec2.stop_instances()
                    .instance_ids(instance_id)
                    .send()
                    .await
                    .map_err(|e| call_error("ec2:StopInstances", e))
            })?;
            stop_requested = true;
            stopped_at = Some(Utc::now());
        }
    }
    wait_state(
        aws,
        instance_id,
        &InstanceState::Stopped,
        started,
        limit,
        progress,
    )?;

    let hours_run = match (before.launch_time, stopped_at) {
        (Some(launched), Some(stopped)) => Some(hours_between(launched, stopped)),
        _ => None,
    };
    let price = hourly_price(&before.instance_type, hourly_price_override);
    let report = StopReport {
        instance_id: instance_id.to_string(),
        instance_type: before.instance_type,
        previous_state,
        stop_requested,
        hours_run,
        hourly_price_usd: price.map(|(p, _)| p),
        cost_usd: hours_run.zip(price).map(|(hours, (p, _))| hours * p),
        price_source: price.map(|(_, source)| source),
    };
    progress(&report.summary());
    Ok(report)
}

/// Waits, within `limit`, for `instance_id` to be in state `want`.
pub fn wait_for_state(
    aws: &Aws,
    instance_id: &str,
    want: &InstanceState,
    limit: Duration,
    progress: &dyn Fn(&str),
) -> Result<InstanceStatus, AwsError> {
    wait_state(aws, instance_id, want, Instant::now(), limit, progress)
}

/// Waits, within `limit`, for the Systems Manager agent of `instance_id` to be
/// `Online`.
pub fn wait_for_ssm_online(
    aws: &Aws,
    instance_id: &str,
    limit: Duration,
    progress: &dyn Fn(&str),
) -> Result<SsmAgent, AwsError> {
    wait_agent(aws, instance_id, Instant::now(), limit, progress)
}

fn wait_state(
    aws: &Aws,
    instance_id: &str,
    want: &InstanceState,
    started: Instant,
    limit: Duration,
    progress: &dyn Fn(&str),
) -> Result<InstanceStatus, AwsError> {
    let mut last: Option<InstanceState> = None;
    wait_blocking(
        aws,
        &format!("instance {instance_id} to be {want}"),
        started,
        limit,
        || {
            let status = describe_ec2(aws, instance_id)?;
            if last.as_ref() != Some(&status.state) {
                progress(&format!("instance {instance_id}: {}", status.state));
                last = Some(status.state.clone());
            }
            if status.state == *want {
                return Ok(Some(status));
            }
            if status.state.is_gone() && !want.is_gone() {
                return Err(AwsError::Refused(format!(
                    "instance {instance_id} became {} while ftslm waited for it to be {want}; \
                     `aws ec2 describe-instances --instance-ids {instance_id}` shows the state \
                     reason",
                    status.state
                )));
            }
            Ok(None)
        },
    )
}

fn wait_checks(
    aws: &Aws,
    instance_id: &str,
    started: Instant,
    limit: Duration,
    progress: &dyn Fn(&str),
) -> Result<InstanceStatus, AwsError> {
    let mut last = None;
    wait_blocking(
        aws,
        &format!("the status checks of instance {instance_id} to be ok"),
        started,
        limit,
        || {
            let status = describe_ec2(aws, instance_id)?;
            let show = |s: &Option<String>| s.clone().unwrap_or_else(|| "unknown".to_string());
            let checks = (show(&status.system_status), show(&status.instance_status));
            if last.as_ref() != Some(&checks) {
                progress(&format!(
                    "status checks of {instance_id}: system {}, instance {}",
                    checks.0, checks.1
                ));
                last = Some(checks.clone());
            }
            if status.state != InstanceState::Running {
                return Err(AwsError::Refused(format!(
                    "instance {instance_id} became {} while ftslm waited for its status checks",
                    status.state
                )));
            }
            if checks.0 == "impaired" || checks.1 == "impaired" {
                return Err(AwsError::Refused(format!(
                    "the status checks of instance {instance_id} failed (system {}, instance {}): \
                     `aws ec2 describe-instance-status --instance-ids {instance_id}` says which; \
                     stopping and starting it moves it to other hardware",
                    checks.0, checks.1
                )));
            }
            Ok((checks.0 == "ok" && checks.1 == "ok").then_some(status))
        },
    )
}

fn wait_agent(
    aws: &Aws,
    instance_id: &str,
    started: Instant,
    limit: Duration,
    progress: &dyn Fn(&str),
) -> Result<SsmAgent, AwsError> {
    let mut last: Option<SsmAgent> = None;
    let waited = wait_blocking(
        aws,
        &format!("the SSM agent of instance {instance_id} to be Online"),
        started,
        limit,
        || {
            let agent = ssm_agent(aws, instance_id)?;
            if last.as_ref() != Some(&agent) {
                progress(&format!("SSM agent of {instance_id}: {agent}"));
                last = Some(agent.clone());
            }
            Ok((agent == SsmAgent::Online).then_some(agent))
        },
    );
    waited.map_err(|error| match error {
        AwsError::Timeout { what, waited } => AwsError::Timeout {
            what: format!(
                "{what} (last seen: {}; the instance needs an instance profile with the \
                 AmazonSSMManagedInstanceCore policy and a route to the ssm, ssmmessages and \
                 ec2messages endpoints)",
                last.as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "nothing".to_string())
            ),
            waited,
        },
        other => other,
    })
}
