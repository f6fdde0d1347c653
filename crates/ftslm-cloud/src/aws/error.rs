//! What can go wrong talking to AWS, each variant worded so the user knows what
//! to do next.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::secret::redact;

#[derive(Debug, Error)]
pub enum AwsError {
    #[error("cannot start the async runtime for AWS calls: {0}")]
    Runtime(std::io::Error),
    #[error("the AWS runtime stopped (a call panicked)")]
    RuntimeGone,
    #[error("loading the AWS configuration (region, credentials, endpoint) failed unexpectedly")]
    SdkConfig,
    /// An AWS API call failed; `message` is the SDK's error chain, secrets redacted.
    #[error("{operation} failed: {message}")]
    Call {
        operation: &'static str,
        /// The service's error code (e.g. `InvalidInstanceID.NotFound`), if any.
        code: Option<String>,
        message: String,
    },
    /// A configuration value the command needs has none.
    #[error("{key} is not set (Parameter Store {ssm_param}); set it with `ftslm params init --set {key}=…` or `--set {key}=…`")]
    NotConfigured {
        key: &'static str,
        ssm_param: String,
    },
    /// A resource named in the configuration does not exist.
    #[error("{what} does not exist: {fix}")]
    NotFound { what: String, fix: String },
    /// A wait ran past its limit.
    #[error("timed out after {}s waiting for {what}", waited.as_secs())]
    Timeout { what: String, waited: Duration },
    /// The state of a resource forbids the step (e.g. a volume attached elsewhere).
    #[error("{0}")]
    Refused(String),
    /// A command sent through Systems Manager ended without success.
    #[error("remote command {command_id} ended {status}{}", code.map(|c| format!(" with exit code {c}")).unwrap_or_default())]
    RemoteFailed {
        command_id: String,
        status: String,
        code: Option<i32>,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Ctrl-C while a step was running.
    #[error("interrupted")]
    Interrupted,
}

impl AwsError {
    /// The service's error code of a failed call.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Call { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// An SDK error as an [`AwsError::Call`]: the code and the whole cause chain
/// (the top level alone, e.g. "dispatch failure", does not say what to fix),
/// with anything that looks like a token redacted.
pub fn call_error<E>(operation: &'static str, error: E) -> AwsError
where
    E: aws_sdk_ssm::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = error.code().map(str::to_string);
    let detail = match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => aws_sdk_ssm::error::DisplayErrorContext(&error).to_string(),
    };
    AwsError::Call {
        operation,
        code,
        message: redact(&detail),
    }
}
