//! One place that turns the configured region and the standard AWS environment
//! (credential chain, profiles, `AWS_ENDPOINT_URL`) into SDK clients with
//! ftslm's timeouts and retries, plus the runtime that drives them from
//! synchronous code. Every AWS command builds one [`Aws`] and asks it for the
//! clients it needs.

mod error;
mod target;
mod wait;

use std::future::Future;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use tokio::runtime::Runtime;

pub use error::{call_error, AwsError};
pub use target::CloudTarget;
pub use wait::{
    clear_interrupt, interrupt_requested, nap, poll_until, request_interrupt, wait_blocking,
};

/// A refused or silent endpoint must become an error, not a hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One HTTP attempt of an ordinary call (S3 object bodies are streamed after it).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(180);
/// Standard retry mode backs off exponentially, with jitter, on throttling and
/// transient errors; five attempts ride out a burst of `ThrottlingException`.
const MAX_ATTEMPTS: u32 = 5;
/// How often waits ask for the state of an instance, a volume or a command.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// SDK configuration plus the runtime that runs its futures.
pub struct Aws {
    sdk: SdkConfig,
    /// `None` only while dropping.
    runtime: Option<Runtime>,
    poll_interval: Duration,
}

impl Aws {
    /// Clients configured like the AWS CLI (credential chain, `AWS_PROFILE`,
    /// `AWS_ENDPOINT_URL`), in `region`.
    pub fn from_environment(region: &str) -> Result<Aws, AwsError> {
        let runtime = new_runtime()?;
        let loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .timeout_config(timeouts())
            .retry_config(retries());
        let sdk = crate::blocking::block_on(&runtime, loader.load()).ok_or(AwsError::SdkConfig)?;
        Ok(Aws {
            sdk,
            runtime: Some(runtime),
            poll_interval: DEFAULT_POLL_INTERVAL,
        })
    }

    /// Clients from an explicit SDK configuration (tests against an emulator).
    pub fn from_sdk_config(sdk: SdkConfig) -> Result<Aws, AwsError> {
        Ok(Aws {
            sdk,
            runtime: Some(new_runtime()?),
            poll_interval: DEFAULT_POLL_INTERVAL,
        })
    }

    /// How often waits poll; an emulator answers at once, AWS takes seconds.
    pub fn with_poll_interval(mut self, interval: Duration) -> Aws {
        self.poll_interval = interval;
        self
    }

    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    pub fn region(&self) -> Option<&str> {
        self.sdk.region().map(|r| r.as_ref())
    }

    pub fn endpoint_url(&self) -> Option<&str> {
        self.sdk.endpoint_url()
    }

    /// Runs `future` to completion from synchronous code (also from inside
    /// another runtime). A panic inside the future is reported, not propagated.
    pub fn block_on<F>(&self, future: F) -> Result<F::Output, AwsError>
    where
        F: Future + Send,
        F::Output: Send,
    {
        let runtime = self.runtime.as_ref().ok_or(AwsError::RuntimeGone)?;
        crate::blocking::block_on(runtime, future).ok_or(AwsError::RuntimeGone)
    }

    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::config::Builder::from(&self.sdk)
                .timeout_config(timeouts())
                .retry_config(retries())
                .build(),
        )
    }

    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::from_conf(
            aws_sdk_ssm::config::Builder::from(&self.sdk)
                .timeout_config(timeouts())
                .retry_config(retries())
                .build(),
        )
    }

    /// Path-style addressing when an endpoint is configured: emulators and
    /// S3-compatible stores do not resolve `BUCKET.host` names.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&self.sdk)
                .timeout_config(s3_timeouts())
                .retry_config(retries())
                .force_path_style(self.sdk.endpoint_url().is_some())
                .build(),
        )
    }

    pub fn secrets(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&self.sdk)
                .timeout_config(timeouts())
                .retry_config(retries())
                .build(),
        )
    }

    pub fn logs(&self) -> aws_sdk_cloudwatchlogs::Client {
        aws_sdk_cloudwatchlogs::Client::from_conf(
            aws_sdk_cloudwatchlogs::config::Builder::from(&self.sdk)
                .timeout_config(timeouts())
                .retry_config(retries())
                .build(),
        )
    }

    pub fn ecr(&self) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::from_conf(
            aws_sdk_ecr::config::Builder::from(&self.sdk)
                .timeout_config(timeouts())
                .retry_config(retries())
                .build(),
        )
    }

    pub fn sts(&self) -> aws_sdk_sts::Client {
        aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(&self.sdk)
                .timeout_config(timeouts())
                .retry_config(retries())
                .build(),
        )
    }
}

impl Drop for Aws {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which tokio forbids inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Two workers: parallel S3 transfers and a log tail next to a command wait.
fn new_runtime() -> Result<Runtime, AwsError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(AwsError::Runtime)
}

fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// Object bodies stream after the response head, so only the connection and
/// the head are bounded; a stalled body is caught by the read timeout.
fn s3_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(ATTEMPT_TIMEOUT)
        .build()
}

fn retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(500))
}
