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
    /// An AWS API call failed, in one sentence: the service and operation,
    /// the AWS error code, what went wrong and the fix. `detail` is the
    /// SDK's whole error chain (secrets redacted), for `-vv`.
    #[error("{}", call_sentence(operation, code.as_deref(), message, fix))]
    Call {
        operation: &'static str,
        /// The service's error code (e.g. `InvalidInstanceID.NotFound`), if any.
        code: Option<String>,
        message: String,
        fix: String,
        detail: Option<String>,
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

    /// The SDK's whole error chain of a failed call (for `-vv`).
    pub fn sdk_detail(&self) -> Option<&str> {
        match self {
            AwsError::Call { detail, .. } => detail.as_deref(),
            _ => None,
        }
    }

    /// A failed call that is not the SDK's (a response missing a field, a
    /// body that broke off), with its fix.
    pub fn call(operation: &'static str, message: String, fix: &str) -> AwsError {
        AwsError::Call {
            operation,
            code: None,
            message,
            fix: fix.to_string(),
            detail: None,
        }
    }
}

fn call_sentence(operation: &str, code: Option<&str>, message: &str, fix: &str) -> String {
    let code = code.map(|c| format!(" ({c})")).unwrap_or_default();
    if fix.is_empty() {
        format!("{operation} failed{code}: {message}")
    } else {
        format!("{operation} failed{code}: {message}; {fix}")
    }
}

/// An SDK error as an [`AwsError::Call`]: the service's code and message
/// when it answered, else the innermost cause (the top level, e.g.
/// "dispatch failure", does not say what to fix), the fix for that code,
/// and the whole chain kept for `-vv`; anything that looks like a token
/// redacted.
pub fn call_error<E>(operation: &'static str, error: E) -> AwsError
where
    E: aws_sdk_ssm::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = error.code().map(str::to_string);
    let message = match error.message() {
        Some(message) if code.is_some() => message.to_string(),
        _ => innermost_cause(&error),
    };
    let fix = fix_for(operation, code.as_deref());
    AwsError::Call {
        operation,
        code,
        message: redact(first_line(&message)),
        fix,
        detail: Some(redact(
            &aws_sdk_ssm::error::DisplayErrorContext(&error).to_string(),
        )),
    }
}

/// The deepest error of a chain: "connection refused", "dns error: ...".
fn innermost_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest = error;
    while let Some(next) = deepest.source() {
        deepest = next;
    }
    deepest.to_string()
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text).trim()
}

/// What to do about a failed call, by its AWS error code.
pub fn fix_for(operation: &str, code: Option<&str>) -> String {
    let service = operation.split(':').next().unwrap_or(operation);
    let Some(code) = code else {
        return "AWS could not be reached: check the network, aws.region, and \
                AWS_ENDPOINT_URL if you use an emulator (-vv shows the SDK's detail)"
            .into();
    };
    match code {
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "UnauthorizedAccess"
        | "Forbidden" => format!(
            "the credentials' IAM policy does not allow {operation}; add it (docs/aws-setup.md \
             lists the policy ftslm needs)"
        ),
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" | "TokenRefreshRequired" => {
            "the credentials have expired; refresh them (`aws sso login`, or new keys in \
             `aws configure`)"
                .into()
        }
        "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "SignatureDoesNotMatch"
        | "AuthFailure"
        | "InvalidAccessKeyId"
        | "IncompleteSignature" => {
            "the credentials are not valid for this account; check AWS_ACCESS_KEY_ID and its \
             secret, or AWS_PROFILE"
                .into()
        }
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "SlowDown" => {
            "AWS is throttling these calls; wait a minute and run the command again".into()
        }
        "NoSuchBucket" => "the bucket does not exist; check output.s3_bucket (or \
                           /fine-tune-slm/s3/bucket in Parameter Store)"
            .into(),
        "ParameterNotFound" => {
            "the parameter is not in Parameter Store; run `ftslm params init`".into()
        }
        "InvalidInstanceID.NotFound" | "InvalidInstanceID.Malformed" | "InvalidInstanceId" => {
            "check aws.ec2.instance_id (Parameter Store /fine-tune-slm/ec2/instance-id)".into()
        }
        "InvalidVolume.NotFound" | "InvalidVolumeID.Malformed" => {
            "check aws.ebs.volume_id (Parameter Store /fine-tune-slm/ebs/volume-id)".into()
        }
        "ResourceNotFoundException" | "RepositoryNotFoundException" | "NoSuchKey" | "NotFound" => {
            format!("the {service} resource does not exist; check the configuration (`ftslm config show`)")
        }
        "IncorrectInstanceState" | "IncorrectState" => {
            "the instance is not in a state that allows this; `ftslm cloud status` shows it".into()
        }
        _ => format!("see the {service} documentation for {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_code_gets_its_own_fix_in_one_sentence() {
        let denied = fix_for("ssm:SendCommand", Some("AccessDeniedException"));
        assert!(
            denied.contains("IAM policy does not allow ssm:SendCommand"),
            "{denied}"
        );
        assert!(fix_for("sts:GetCallerIdentity", Some("ExpiredToken")).contains("expired"));
        assert!(fix_for("s3:ListObjectsV2", Some("NoSuchBucket")).contains("output.s3_bucket"));
        assert!(fix_for("ec2:StartInstances", None).contains("could not be reached"));
        assert_eq!(
            fix_for("logs:GetLogEvents", Some("WeirdNewError")),
            "see the logs documentation for WeirdNewError"
        );
        let error = AwsError::Call {
            operation: "ec2:DescribeInstances",
            code: Some("UnauthorizedOperation".into()),
            message: "You are not authorized to perform this operation.".into(),
            fix: fix_for("ec2:DescribeInstances", Some("UnauthorizedOperation")),
            detail: Some("UnauthorizedOperation(...)".into()),
        };
        let sentence = error.to_string();
        assert!(
            sentence.starts_with(
                "ec2:DescribeInstances failed (UnauthorizedOperation): You are not authorized"
            ),
            "{sentence}"
        );
        assert!(
            !sentence.contains('\n') && !sentence.contains("(...)"),
            "{sentence}"
        );
    }
}
