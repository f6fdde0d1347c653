//! Shell scripts run on the instance through Systems Manager: the exact
//! `AWS-RunShellScript` request ([`send_command_request`]), sending it
//! ([`send`]), following it to its end while its CloudWatch output streams
//! to the caller line by line ([`wait`]), and cancelling it ([`cancel`]).
//! This module owns the rule that every remote script runs under bash exactly
//! as written, and that its output reaches the caller with tokens redacted.

mod tail;

use std::time::{Duration, Instant};

use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_sdk_ssm::operation::send_command::builders::SendCommandFluentBuilder;
use aws_sdk_ssm::types::{CloudWatchOutputConfig, CommandInvocationStatus};

use crate::aws::{call_error, nap, Aws, AwsError};
use crate::secret::redact;

pub(crate) use tail::LogTail;
pub use tail::{log_stream_name, LogLine, LogStream};

/// The SSM document every ftslm command uses.
pub const DOCUMENT: &str = "AWS-RunShellScript";
/// Every command ftslm sends carries a comment with this prefix, which is how
/// `cloud logs` finds ftslm's commands among the account's others.
pub const COMMENT_PREFIX: &str = "ftslm ";
/// SSM rejects a longer `Comment`.
pub const MAX_COMMENT_CHARS: usize = 100;
/// `AWS-RunShellScript` accepts an `executionTimeout` of 1 s to 48 h.
pub const MAX_EXECUTION_TIMEOUT: Duration = Duration::from_secs(172_800);
/// How long SSM keeps trying to deliver a command to an instance whose agent is
/// not online yet (just started, or rebooting) before giving up on it
/// (`DeliveryTimedOut`). SSM's minimum is 30 s.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(600);
/// Right after `SendCommand`, `GetCommandInvocation` answers
/// `InvocationDoesNotExist` until SSM has fanned the command out to the
/// instance; after this many polls the answer is taken at its word.
const INVOCATION_GRACE_POLLS: u32 = 6;

/// One script to run on one instance.
#[derive(Debug, Clone)]
pub struct RemoteCommand {
    pub instance_id: String,
    /// Starts with [`COMMENT_PREFIX`], e.g. `ftslm train 20261129_101500`.
    pub comment: String,
    /// A bash script, sent and run verbatim.
    pub script: String,
    /// The agent kills the script after this long (`ExecutionTimedOut`).
    pub execution_timeout: Duration,
    /// CloudWatch Logs group that receives the script's stdout and stderr.
    pub log_group: String,
}

/// The `SendCommand` request for `cmd`, ready to `.send()`. Values out of
/// SSM's ranges are clamped here; [`send`] refuses them first with a message.
pub fn send_command_request(
    client: &aws_sdk_ssm::Client,
    cmd: &RemoteCommand,
) -> SendCommandFluentBuilder {
    let execution_secs = cmd
        .execution_timeout
        .as_secs()
        .clamp(1, MAX_EXECUTION_TIMEOUT.as_secs());
    client
        .send_command()
        .document_name(DOCUMENT)
        .instance_ids(&cmd.instance_id)
        .comment(truncate_comment(&cmd.comment))
        .timeout_seconds(DELIVERY_TIMEOUT.as_secs() as i32)
        .parameters("commands", vec![bash_wrapper(&cmd.script)])
        .parameters("executionTimeout", vec![execution_secs.to_string()])
        .cloud_watch_output_config(
            CloudWatchOutputConfig::builder()
                .cloud_watch_output_enabled(true)
                .cloud_watch_log_group_name(&cmd.log_group)
                .build(),
        )
}

/// Sends `cmd` and returns the command id.
pub fn send(aws: &Aws, cmd: &RemoteCommand) -> Result<String, AwsError> {
    validate(cmd)?;
    let client = aws.ssm();
    let output = aws
        .block_on(send_command_request(&client, cmd).send())?
        .map_err(|e| {
            if e.as_service_error()
                .is_some_and(|s| s.is_invalid_instance_id())
            {
                AwsError::NotFound {
                    what: format!("instance {} (as an SSM managed node)", cmd.instance_id),
                    fix: "check aws.ec2.instance_id, that the instance is running, and that its \
                          role allows Systems Manager (`ftslm cloud status` shows whether its \
                          agent is online)"
                        .to_string(),
                }
            } else {
                call_error("ssm:SendCommand", e)
            }
        })?;
    output
        .command()
        .and_then(|c| c.command_id())
        .map(str::to_string)
        .ok_or_else(|| {
            AwsError::call(
                "ssm:SendCommand",
                "the response has no command id".to_string(),
                "run the command again; if it repeats, check the SSM agent on the instance",
            )
        })
}

/// Asks SSM to stop the command; the agent kills the script (status
/// `Cancelled`). Returns once SSM accepted the request, not once it stopped.
pub fn cancel(aws: &Aws, command_id: &str) -> Result<(), AwsError> {
    let client = aws.ssm();
    aws.block_on(client.cancel_command().command_id(command_id).send())?
        .map_err(|e| call_error("ssm:CancelCommand", e))?;
    Ok(())
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    pub command_id: String,
    /// The most specific terminal status SSM reports: `Success`, `Failed`,
    /// `Cancelled`, `TimedOut`, `DeliveryTimedOut`, `ExecutionTimedOut`,
    /// `Undeliverable` or `Terminated`.
    pub status: String,
    /// The script's exit code; `None` when it never ran or SSM has none.
    pub response_code: Option<i32>,
    /// The end of the script's stdout as SSM keeps it (its first 24,000
    /// characters, despite the name SSM gives it), redacted; what to show when
    /// CloudWatch received nothing.
    pub stdout_tail: String,
    /// The same for stderr.
    pub stderr_tail: String,
    /// How many log lines reached `on_line` from CloudWatch.
    pub log_lines: usize,
}

impl CommandOutcome {
    pub fn succeeded(&self) -> bool {
        self.status == "Success" && self.response_code == Some(0)
    }

    /// `Ok(self)` if the script ran and exited 0, else [`AwsError::RemoteFailed`].
    pub fn into_result(self) -> Result<CommandOutcome, AwsError> {
        if self.succeeded() {
            Ok(self)
        } else {
            Err(AwsError::RemoteFailed {
                command_id: self.command_id,
                status: self.status,
                code: self.response_code,
            })
        }
    }
}

/// Follows the command on `instance_id` until it ends, passing every new line
/// of its CloudWatch stdout and stderr streams in `log_group` to `on_line`
/// (redacted, stdout and stderr interleaved by timestamp), and returns how it
/// ended. Polls every [`Aws::poll_interval`].
///
/// Past `limit` this returns [`AwsError::Timeout`] and leaves the command
/// running: the caller decides whether to [`cancel`] it (a training run may be
/// meant to outlive the laptop's wait) or to follow it again later.
pub fn wait(
    aws: &Aws,
    log_group: &str,
    command_id: &str,
    instance_id: &str,
    limit: Duration,
    on_line: &(dyn Fn(LogLine) + Sync),
) -> Result<CommandOutcome, AwsError> {
    let ssm = aws.ssm();
    let logs = aws.logs();
    let interval = aws.poll_interval();
    aws.block_on(async {
        let mut tail = LogTail::new(log_group, command_id, instance_id);
        let started = Instant::now();
        let mut missing_polls = 0;
        loop {
            let invocation = ssm
                .get_command_invocation()
                .command_id(command_id)
                .instance_id(instance_id)
                .send()
                .await;
            match invocation {
                Ok(inv) => {
                    if let Some(status) = terminal_status(&inv) {
                        // The agent uploads its last CloudWatch batch around the
                        // time it reports the status, sometimes just after: read
                        // the streams now and once more a poll later.
                        tail.poll(&logs, on_line).await?;
                        nap(interval).await?;
                        tail.poll(&logs, on_line).await?;
                        return Ok(CommandOutcome {
                            command_id: command_id.to_string(),
                            status,
                            response_code: Some(inv.response_code()).filter(|c| *c >= 0),
                            stdout_tail: redact(inv.standard_output_content().unwrap_or("")),
                            stderr_tail: redact(inv.standard_error_content().unwrap_or("")),
                            log_lines: tail.lines_seen(),
                        });
                    }
                }
                Err(e)
                    if e.as_service_error().is_some_and(|s| {
                        s.is_invocation_does_not_exist() || s.is_invalid_command_id()
                    }) =>
                {
                    missing_polls += 1;
                    if missing_polls > INVOCATION_GRACE_POLLS {
                        return Err(AwsError::NotFound {
                            what: format!("command {command_id} on instance {instance_id}"),
                            fix: format!(
                                "SSM still answers {} after {missing_polls} checks; check the \
                                 command id (`ftslm cloud logs` follows the latest ftslm command) \
                                 and that it was sent to this instance",
                                e.code().unwrap_or("InvocationDoesNotExist")
                            ),
                        });
                    }
                }
                Err(e) => return Err(call_error("ssm:GetCommandInvocation", e)),
            }
            tail.poll(&logs, on_line).await?;
            if started.elapsed() >= limit {
                return Err(AwsError::Timeout {
                    what: format!(
                        "command {command_id} on instance {instance_id} to finish (it may still \
                         be running: `ftslm cloud logs --follow --command-id {command_id}`)"
                    ),
                    waited: started.elapsed(),
                });
            }
            nap(interval).await?;
        }
    })?
}

/// The outcome's status if the invocation has ended. `StatusDetails` names the
/// reason (`ExecutionTimedOut`, `Undeliverable`, …) where `Status` only says
/// `TimedOut` or `Failed`, so it wins when it is a terminal one.
fn terminal_status(
    inv: &aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput,
) -> Option<String> {
    const TERMINAL_DETAILS: [&str; 8] = [
        "Success",
        "Failed",
        "Cancelled",
        "TimedOut",
        "DeliveryTimedOut",
        "ExecutionTimedOut",
        "Undeliverable",
        "Terminated",
    ];
    // SSM spells the detail "Canceled".
    let details = inv.status_details().map(|d| match d {
        "Canceled" => "Cancelled",
        other => other,
    });
    if let Some(d) = details.filter(|d| TERMINAL_DETAILS.contains(d)) {
        return Some(d.to_string());
    }
    match inv.status()? {
        CommandInvocationStatus::Success
        | CommandInvocationStatus::Failed
        | CommandInvocationStatus::Cancelled
        | CommandInvocationStatus::TimedOut => inv.status().map(|s| s.as_str().to_string()),
        _ => None,
    }
}

/// SSM's `Comment` limit, cut on a character boundary with an ellipsis.
fn truncate_comment(comment: &str) -> String {
    if comment.chars().count() <= MAX_COMMENT_CHARS {
        return comment.to_string();
    }
    let mut cut: String = comment.chars().take(MAX_COMMENT_CHARS - 1).collect();
    cut.push('…');
    cut
}

fn validate(cmd: &RemoteCommand) -> Result<(), AwsError> {
    if !cmd.comment.starts_with(COMMENT_PREFIX) {
        return Err(AwsError::Refused(format!(
            "remote command comment {:?} must start with {COMMENT_PREFIX:?}: `ftslm cloud logs` \
             finds ftslm's commands by it",
            cmd.comment
        )));
    }
    if cmd.execution_timeout < Duration::from_secs(1)
        || cmd.execution_timeout > MAX_EXECUTION_TIMEOUT
    {
        return Err(AwsError::Refused(format!(
            "execution timeout of {}s for {:?} is outside what AWS-RunShellScript accepts \
             (1s to 48h); choose a --timeout in that range",
            cmd.execution_timeout.as_secs(),
            cmd.comment
        )));
    }
    if cmd.log_group.trim().is_empty() {
        return Err(AwsError::NotConfigured {
            key: "aws.cloudwatch.log_group",
            ssm_param: "see `ftslm config show`".to_string(),
        });
    }
    Ok(())
}

/// The one `commands` element that runs `script` under bash, verbatim.
///
/// The agent joins the `commands` lines into a file `_script.sh` and starts it
/// through `sh -c` (dash on Ubuntu images), so a `#!/bin/bash` first line is
/// honoured or not depending on the agent version and file mode. The wrapper
/// is therefore plain POSIX sh: it writes the script through a quoted heredoc
/// (no expansion of `$`, backticks or quotes) into a private `mktemp` file and
/// runs `bash` on that file, exiting with bash's code so SSM's `ResponseCode`
/// is the script's (125 if the file cannot be written: a half-written script
/// must not run). A heredoc rather than base64 keeps the script readable in
/// the console and in `ListCommands`; its one hazard, a script line equal to
/// the delimiter, is avoided by choosing a delimiter that does not occur in the
/// script at all. A file rather than `bash -s` leaves the script's stdin alone,
/// and rather than `bash -c` keeps the script out of process arguments.
fn bash_wrapper(script: &str) -> String {
    let mut delimiter = "FTSLM_SCRIPT_END".to_string();
    let mut n = 0;
    while script.contains(&delimiter) {
        n += 1;
        delimiter = format!("FTSLM_SCRIPT_END_{n}");
    }
    let newline = if script.ends_with('\n') || script.is_empty() {
        ""
    } else {
        "\n"
    };
    format!(
        "ftslm_script=\"$(mktemp /tmp/ftslm-script.XXXXXX)\" || exit 125\n\
         trap 'rm -f \"$ftslm_script\"' EXIT\n\
         cat > \"$ftslm_script\" <<'{delimiter}' || exit 125\n\
         {script}{newline}\
         {delimiter}\n\
         bash \"$ftslm_script\"\n\
         exit $?\n"
    )
}
