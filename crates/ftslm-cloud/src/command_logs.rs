//! `ftslm cloud logs`: finding ftslm's latest command on the instance and
//! reading its CloudWatch output, once or following it to its end. The
//! following is [`crate::remote::wait`]'s, so `cloud train` and `cloud logs`
//! stream output the same way.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::aws::{call_error, Aws, AwsError};
use crate::remote::{self, CommandOutcome, LogLine, LogTail, COMMENT_PREFIX};

/// `ListCommands` pages (50 commands each) read before giving up on older ones.
const MAX_LIST_PAGES: usize = 40;

/// A command ftslm sent, as `ListCommands` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandInfo {
    pub command_id: String,
    pub comment: String,
    /// SSM's status of the whole command (`Pending`, `InProgress`, `Success`, …).
    pub status: String,
    pub requested: SystemTime,
}

/// ftslm's most recently requested command on `instance_id` (comment starting
/// with `ftslm `), or `None` if SSM's history (30 days) holds none.
pub fn latest_command(aws: &Aws, instance_id: &str) -> Result<Option<CommandInfo>, AwsError> {
    let client = aws.ssm();
    aws.block_on(async {
        let mut latest: Option<CommandInfo> = None;
        let mut token: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let page = client
                .list_commands()
                .instance_id(instance_id)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| call_error("ssm:ListCommands", e))?;
            for command in page.commands() {
                let (Some(id), Some(comment)) = (command.command_id(), command.comment()) else {
                    continue;
                };
                if !comment.starts_with(COMMENT_PREFIX) {
                    continue;
                }
                let requested = command
                    .requested_date_time()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .unwrap_or(UNIX_EPOCH);
                if latest.as_ref().is_some_and(|l| l.requested >= requested) {
                    continue;
                }
                latest = Some(CommandInfo {
                    command_id: id.to_string(),
                    comment: comment.to_string(),
                    status: command
                        .status()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_else(|| "Unknown".to_string()),
                    requested,
                });
            }
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(latest)
    })?
}

/// Passes the output of `command_id` on `instance_id` in `log_group` to
/// `on_line`, from the start. Without `follow`, what the streams hold now,
/// and `Ok(None)`; with it, keeps reading until the command ends (bounded by
/// `limit`, as [`remote::wait`]) and returns how it ended.
pub fn read_command_logs(
    aws: &Aws,
    log_group: &str,
    command_id: &str,
    instance_id: &str,
    follow: bool,
    limit: Duration,
    on_line: &(dyn Fn(LogLine) + Sync),
) -> Result<Option<CommandOutcome>, AwsError> {
    if follow {
        return remote::wait(aws, log_group, command_id, instance_id, limit, on_line).map(Some);
    }
    let logs = aws.logs();
    aws.block_on(async {
        let mut tail = LogTail::new(log_group, command_id, instance_id);
        tail.poll(&logs, on_line).await
    })??;
    Ok(None)
}
