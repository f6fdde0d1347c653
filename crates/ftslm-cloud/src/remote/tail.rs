//! Reading a command's CloudWatch output streams incrementally: each poll
//! hands on only the lines that arrived since the previous one. Used by
//! `remote::wait` while a command runs and by `cloud logs`, so there is one
//! implementation of the token bookkeeping.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::aws::{call_error, AwsError};
use crate::secret::redact;

/// `GetLogEvents` may answer empty pages with a fresh token before the end of
/// a stream; this bounds one poll's paging, the next poll carries on.
const MAX_PAGES_PER_POLL: usize = 1000;

/// Which of the script's outputs a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One line of a remote command's output, tokens redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: LogStream,
    pub text: String,
    /// When the agent read the line (CloudWatch's event timestamp).
    pub timestamp: Option<SystemTime>,
}

/// The stream SSM writes a command's `stream` output to:
/// `<command-id>/<instance-id>/aws-runShellScript/stdout` (or `stderr`).
pub fn log_stream_name(command_id: &str, instance_id: &str, stream: LogStream) -> String {
    format!(
        "{command_id}/{instance_id}/aws-runShellScript/{}",
        stream.as_str()
    )
}

/// Where reading left off in both streams of one command.
pub(crate) struct LogTail {
    log_group: String,
    streams: [StreamCursor; 2],
    lines_seen: usize,
}

struct StreamCursor {
    stream: LogStream,
    name: String,
    /// The `nextForwardToken` of the last page read; `None` until the stream
    /// has been read once.
    token: Option<String>,
}

impl LogTail {
    pub(crate) fn new(log_group: &str, command_id: &str, instance_id: &str) -> LogTail {
        let cursor = |stream| StreamCursor {
            stream,
            name: log_stream_name(command_id, instance_id, stream),
            token: None,
        };
        LogTail {
            log_group: log_group.to_string(),
            streams: [cursor(LogStream::Stdout), cursor(LogStream::Stderr)],
            lines_seen: 0,
        }
    }

    pub(crate) fn lines_seen(&self) -> usize {
        self.lines_seen
    }

    /// Reads what arrived since the last poll in both streams and passes it to
    /// `on_line`, ordered by timestamp. A stream (or group) that does not exist
    /// yet has no lines: SSM creates them with the first output.
    pub(crate) async fn poll(
        &mut self,
        client: &aws_sdk_cloudwatchlogs::Client,
        on_line: &(dyn Fn(LogLine) + Sync),
    ) -> Result<(), AwsError> {
        let mut lines = Vec::new();
        for cursor in &mut self.streams {
            cursor.read_new(client, &self.log_group, &mut lines).await?;
        }
        // Stable: lines of one stream with equal timestamps keep their order.
        lines.sort_by_key(|l: &LogLine| l.timestamp);
        self.lines_seen += lines.len();
        for line in lines {
            on_line(line);
        }
        Ok(())
    }
}

impl StreamCursor {
    async fn read_new(
        &mut self,
        client: &aws_sdk_cloudwatchlogs::Client,
        log_group: &str,
        lines: &mut Vec<LogLine>,
    ) -> Result<(), AwsError> {
        for _ in 0..MAX_PAGES_PER_POLL {
            let page = client
                .get_log_events()
                .log_group_name(log_group)
                .log_stream_name(&self.name)
                // Required with a forward token, and the start of a stream otherwise.
                .start_from_head(true)
                .set_next_token(self.token.clone())
                .send()
                .await;
            let page = match page {
                Ok(page) => page,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception()) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(call_error("logs:GetLogEvents", e)),
            };
            for event in page.events() {
                let timestamp = event
                    .timestamp()
                    .and_then(|ms| u64::try_from(ms).ok())
                    .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
                // The agent may batch several lines into one event.
                for text in event.message().unwrap_or("").lines() {
                    lines.push(LogLine {
                        stream: self.stream,
                        text: redact(text),
                        timestamp,
                    });
                }
            }
            let next = page.next_forward_token().map(str::to_string);
            // CloudWatch returns the token it was given once the end is reached.
            let at_end = next.is_none() || next == self.token;
            if next.is_some() {
                self.token = next;
            }
            if at_end {
                return Ok(());
            }
        }
        Ok(())
    }
}
