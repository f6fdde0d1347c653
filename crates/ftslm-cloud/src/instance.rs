//! The training instance as `cloud status|start|stop` see it: its EC2 state,
//! status checks and Systems Manager agent ([`describe`]), and the bounded
//! waits that take it from stopped to ready for commands ([`start`]) and back,
//! with the hours it ran and what they cost ([`stop`]).
//!
//! Waits poll from synchronous code so that the caller's progress callback
//! (a terminal line, a progress view) need not be thread-safe.

mod lifecycle;

use std::fmt;
use std::future::Future;

use aws_sdk_ec2::types::InstanceStatusSummary;
use aws_sdk_ssm::types::{InstanceInformationStringFilter, PingStatus};
use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use crate::aws::{call_error, Aws, AwsError};

pub use lifecycle::{
    start, stop, wait_for_ssm_online, wait_for_state, StartOptions, StartReport, StopReport,
};

/// An EC2 instance state (`InstanceStateName`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
    /// A name this version of ftslm does not know.
    Other(String),
}

impl InstanceState {
    pub fn parse(name: &str) -> InstanceState {
        match name {
            "pending" => InstanceState::Pending,
            "running" => InstanceState::Running,
            "stopping" => InstanceState::Stopping,
            "stopped" => InstanceState::Stopped,
            "shutting-down" => InstanceState::ShuttingDown,
            "terminated" => InstanceState::Terminated,
            other => InstanceState::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
            InstanceState::Other(name) => name,
        }
    }

    /// States in which EC2 bills the instance's hours.
    pub fn is_billed(&self) -> bool {
        matches!(self, InstanceState::Pending | InstanceState::Running)
    }

    /// A terminated instance never comes back.
    pub fn is_gone(&self) -> bool {
        matches!(
            self,
            InstanceState::ShuttingDown | InstanceState::Terminated
        )
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for InstanceState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The Systems Manager agent of the instance, as `DescribeInstanceInformation`
/// reports its ping status. Every remote step needs it `Online`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SsmAgent {
    Online,
    ConnectionLost,
    Inactive,
    /// Systems Manager does not know the instance: the agent never registered
    /// (no instance profile with `AmazonSSMManagedInstanceCore`, no route to
    /// the SSM endpoints) or has not yet after a start.
    NotRegistered,
    /// A status this version does not know, or why it could not be asked.
    Unknown(String),
}

impl fmt::Display for SsmAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SsmAgent::Online => f.write_str("Online"),
            SsmAgent::ConnectionLost => f.write_str("ConnectionLost"),
            SsmAgent::Inactive => f.write_str("Inactive"),
            SsmAgent::NotRegistered => f.write_str("NotRegistered"),
            SsmAgent::Unknown(why) => write!(f, "Unknown ({why})"),
        }
    }
}

impl Serialize for SsmAgent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What `cloud status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatus {
    pub instance_id: String,
    pub state: InstanceState,
    pub instance_type: String,
    pub availability_zone: Option<String>,
    /// The last start (EC2 resets it at every start), RFC 3339 in JSON.
    #[serde(serialize_with = "rfc3339")]
    pub launch_time: Option<DateTime<Utc>>,
    /// `ok`, `initializing`, `impaired`, `not-applicable` (not running) …
    pub system_status: Option<String>,
    pub instance_status: Option<String>,
    pub ssm_agent: SsmAgent,
    /// Hours since the last start, while the instance is billed.
    pub hours_since_launch: Option<f64>,
}

fn rfc3339<S: Serializer>(time: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => serializer.collect_str(&time.to_rfc3339()),
        None => serializer.serialize_none(),
    }
}

/// The state, checks and agent of `instance_id`. Unlike [`start`], a failed
/// Systems Manager query does not fail the whole status: the agent is then
/// [`SsmAgent::Unknown`] with the reason, so the EC2 part is still shown.
pub fn describe(aws: &Aws, instance_id: &str) -> Result<InstanceStatus, AwsError> {
    let mut status = describe_ec2(aws, instance_id)?;
    status.ssm_agent = match ssm_agent(aws, instance_id) {
        Ok(agent) => agent,
        Err(error) => SsmAgent::Unknown(error.to_string()),
    };
    Ok(status)
}

/// The Systems Manager agent of `instance_id`.
pub fn ssm_agent(aws: &Aws, instance_id: &str) -> Result<SsmAgent, AwsError> {
    let ssm = aws.ssm();
    run(aws, async {
        let filter = InstanceInformationStringFilter::builder()
            .key("InstanceIds")
            .values(instance_id)
            .build()
            .map_err(|e| AwsError::Refused(format!("ssm:DescribeInstanceInformation: {e}")))?;
        let output = ssm
            .describe_instance_information()
            .filters(filter)
            .send()
            .await
            .map_err(|e| call_error("ssm:DescribeInstanceInformation", e))?;
        let info = output
            .instance_information_list()
            .iter()
            .find(|info| info.instance_id() == Some(instance_id));
        Ok(match info.and_then(|info| info.ping_status()) {
            None if info.is_none() => SsmAgent::NotRegistered,
            None => SsmAgent::Unknown("no ping status".to_string()),
            Some(PingStatus::Online) => SsmAgent::Online,
            Some(PingStatus::ConnectionLost) => SsmAgent::ConnectionLost,
            Some(PingStatus::Inactive) => SsmAgent::Inactive,
            Some(other) => SsmAgent::Unknown(other.as_str().to_string()),
        })
    })
}

/// Everything EC2 says about the instance; the agent is left unasked.
pub(crate) fn describe_ec2(aws: &Aws, instance_id: &str) -> Result<InstanceStatus, AwsError> {
    let ec2 = aws.ec2();
    let region = aws.region().unwrap_or("the configured region").to_string();
    run(aws, async {
        let output = ec2
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| {
                instance_error(call_error("ec2:DescribeInstances", e), instance_id, &region)
            })?;
        let instance = output
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id))
            .ok_or_else(|| not_found(instance_id, &region))?;
        let state = InstanceState::parse(
            instance
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str())
                .unwrap_or("unknown"),
        );
        let launch_time = instance
            .launch_time()
            .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()));

        let checks = ec2
            .describe_instance_status()
            .instance_ids(instance_id)
            .include_all_instances(true)
            .send()
            .await
            .map_err(|e| call_error("ec2:DescribeInstanceStatus", e))?;
        let check = checks
            .instance_statuses()
            .iter()
            .find(|s| s.instance_id() == Some(instance_id));
        let summary = |s: Option<&InstanceStatusSummary>| {
            s.and_then(|s| s.status()).map(|s| s.as_str().to_string())
        };

        let hours_since_launch = match (state.is_billed(), launch_time) {
            (true, Some(launched)) => Some(hours_between(launched, Utc::now())),
            _ => None,
        };
        Ok(InstanceStatus {
            instance_id: instance_id.to_string(),
            state,
            instance_type: instance
                .instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            availability_zone: instance
                .placement()
                .and_then(|p| p.availability_zone())
                .map(str::to_string),
            launch_time,
            system_status: summary(check.and_then(|c| c.system_status())),
            instance_status: summary(check.and_then(|c| c.instance_status())),
            ssm_agent: SsmAgent::Unknown("not asked".to_string()),
            hours_since_launch,
        })
    })
}

/// EC2 answers an unknown or malformed id with an error code, not an empty list.
fn instance_error(error: AwsError, instance_id: &str, region: &str) -> AwsError {
    match error.code() {
        Some("InvalidInstanceID.NotFound" | "InvalidInstanceID.Malformed") => {
            not_found(instance_id, region)
        }
        _ => error,
    }
}

fn not_found(instance_id: &str, region: &str) -> AwsError {
    AwsError::NotFound {
        what: format!("EC2 instance {instance_id} (region {region})"),
        fix: "check aws.ec2.instance_id and aws.region (`ftslm params list`); \
              `aws ec2 describe-instances` lists the instances of the region"
            .to_string(),
    }
}

/// Non-negative hours from `from` to `to` (clocks of laptop and AWS differ a little).
pub(crate) fn hours_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    let seconds = (to - from).num_milliseconds() as f64 / 1000.0;
    (seconds / 3600.0).max(0.0)
}

/// Runs one AWS future from synchronous code.
pub(crate) fn run<T, F>(aws: &Aws, future: F) -> Result<T, AwsError>
where
    F: Future<Output = Result<T, AwsError>> + Send,
    T: Send,
{
    aws.block_on(future)?
}
