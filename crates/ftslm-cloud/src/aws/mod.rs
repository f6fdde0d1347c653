//! One place that turns the configured region and the standard AWS environment
//! (credential chain, profiles, `AWS_ENDPOINT_URL`) into SDK clients with
//! ftslm's timeouts and retries, plus the runtime that drives them from
//! synchronous code. Every AWS command builds one [`Aws`] and asks it for the
//! clients it needs.

mod error;
mod target;
mod wait;

use std::future::Future;
use std::sync::OnceLock;
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

/// How long calls may take and how often they are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// A refused or silent endpoint must become an error, not a hang.
    pub connect: Duration,
    /// One HTTP attempt (S3 object bodies: the time between reads).
    pub attempt: Duration,
    pub operation: Duration,
    /// Standard retry mode backs off exponentially, with jitter, on
    /// throttling and transient errors.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
}

impl CallLimits {
    /// The pipeline's commands: five attempts ride out a burst of
    /// `ThrottlingException`.
    pub const STANDARD: CallLimits = CallLimits {
        connect: Duration::from_secs(5),
        attempt: Duration::from_secs(60),
        operation: Duration::from_secs(180),
        max_attempts: 5,
        initial_backoff: Duration::from_millis(500),
    };

    fn timeouts(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.operation)
            .build()
    }

    /// Object bodies stream after the response head, so only the connection
    /// and each read are bounded, not the whole transfer.
    fn s3_timeouts(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .read_timeout(self.attempt)
            .build()
    }

    fn retries(&self) -> RetryConfig {
        RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_initial_backoff(self.initial_backoff)
    }
}

/// A client accessor with the standard timeouts and retries, built on first use.
macro_rules! uniform_client {
    ($field:ident, $krate:ident) => {
        pub fn $field(&self) -> $krate::Client {
            self.clients
                .$field
                .get_or_init(|| {
                    $krate::Client::from_conf(
                        $krate::config::Builder::from(&self.sdk)
                            .timeout_config(self.limits.timeouts())
                            .retry_config(self.limits.retries())
                            .build(),
                    )
                })
                .clone()
        }
    };
}

/// How often waits ask for the state of an instance, a volume or a command.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Each client is built on first use and shared after (cloning one is cheap):
/// waits ask for a client at every poll.
#[derive(Default)]
struct Clients {
    ec2: OnceLock<aws_sdk_ec2::Client>,
    ssm: OnceLock<aws_sdk_ssm::Client>,
    s3: OnceLock<aws_sdk_s3::Client>,
    secrets: OnceLock<aws_sdk_secretsmanager::Client>,
    logs: OnceLock<aws_sdk_cloudwatchlogs::Client>,
    ecr: OnceLock<aws_sdk_ecr::Client>,
    sts: OnceLock<aws_sdk_sts::Client>,
}

/// SDK configuration plus the runtime that runs its futures.
pub struct Aws {
    sdk: SdkConfig,
    limits: CallLimits,
    /// `None` only while dropping.
    runtime: Option<Runtime>,
    poll_interval: Duration,
    clients: Clients,
}

impl Aws {
    /// Clients configured like the AWS CLI (credential chain, `AWS_PROFILE`,
    /// `AWS_ENDPOINT_URL`), in `region`.
    pub fn from_environment(region: &str) -> Result<Aws, AwsError> {
        Aws::from_environment_with(region, CallLimits::STANDARD)
    }

    /// [`Aws::from_environment`] with other limits.
    pub fn from_environment_with(region: &str, limits: CallLimits) -> Result<Aws, AwsError> {
        let runtime = new_runtime()?;
        let loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .timeout_config(limits.timeouts())
            .retry_config(limits.retries());
        let sdk = crate::blocking::block_on(&runtime, loader.load()).ok_or(AwsError::SdkConfig)?;
        Ok(Aws::assemble(sdk, limits, runtime))
    }

    /// Clients from an explicit SDK configuration (tests against an emulator).
    pub fn from_sdk_config(sdk: SdkConfig) -> Result<Aws, AwsError> {
        Aws::from_sdk_config_with(sdk, CallLimits::STANDARD)
    }

    /// [`Aws::from_sdk_config`] with other limits.
    pub fn from_sdk_config_with(sdk: SdkConfig, limits: CallLimits) -> Result<Aws, AwsError> {
        Ok(Aws::assemble(sdk, limits, new_runtime()?))
    }

    fn assemble(sdk: SdkConfig, limits: CallLimits, runtime: Runtime) -> Aws {
        Aws {
            sdk,
            limits,
            runtime: Some(runtime),
            poll_interval: DEFAULT_POLL_INTERVAL,
            clients: Clients::default(),
        }
    }

    /// Why no call can be signed, when none can: the credential chain
    /// (environment, shared profile, SSO, container, instance metadata)
    /// found nothing. One sentence with the fix, instead of each call's
    /// dump of the chain's internals.
    pub fn credentials_problem(&self) -> Option<String> {
        use aws_sdk_sts::config::ProvideCredentials;
        const FIX: &str = "run `aws configure` (or `aws sso login --profile P` with \
                           AWS_PROFILE=P), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; \
                           for an emulator also AWS_ENDPOINT_URL";
        let Some(provider) = self.sdk.credentials_provider() else {
            return Some(format!("no AWS credentials are configured; {FIX}"));
        };
        match self.block_on(provider.provide_credentials()) {
            Ok(Ok(_)) => None,
            Ok(Err(_)) | Err(_) => Some(format!(
                "no AWS credentials were found (tried the environment, the shared profile \
                 ~/.aws, SSO, and the instance metadata service); {FIX}"
            )),
        }
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

    uniform_client!(ec2, aws_sdk_ec2);
    uniform_client!(ssm, aws_sdk_ssm);
    /// Path-style addressing when an endpoint is configured: emulators and
    /// S3-compatible stores do not resolve `BUCKET.host` names.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let l = &self.limits;
        self.clients
            .s3
            .get_or_init(|| {
                aws_sdk_s3::Client::from_conf(
                    aws_sdk_s3::config::Builder::from(&self.sdk)
                        .timeout_config(l.s3_timeouts())
                        .retry_config(l.retries())
                        .force_path_style(self.sdk.endpoint_url().is_some())
                        .build(),
                )
            })
            .clone()
    }

    uniform_client!(secrets, aws_sdk_secretsmanager);
    uniform_client!(logs, aws_sdk_cloudwatchlogs);
    uniform_client!(ecr, aws_sdk_ecr);
    uniform_client!(sts, aws_sdk_sts);
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
