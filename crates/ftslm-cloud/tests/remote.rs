//! Remote commands through SSM and their CloudWatch output, against moto's
//! server. moto accepts SendCommand and reports every invocation `Success` at
//! once without running anything, so the CloudWatch streams are written here
//! with PutLogEvents as the SSM agent would, and the script wrapper is run
//! locally with `sh` as the agent would.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_sdk_ec2::types::InstanceType;
use common::sdk_config;
use ftslm_cloud::aws::{Aws, AwsError};
use ftslm_cloud::command_logs::{latest_command, read_command_logs};
use ftslm_cloud::remote::{
    self, log_stream_name, send_command_request, CommandOutcome, LogLine, LogStream, RemoteCommand,
    DELIVERY_TIMEOUT,
};
use ftslm_testkit::moto::MotoServer;

const REGION: &str = "us-east-1";
const LOG_GROUP: &str = "/fine-tune-slm/commands";

fn aws_for(moto: &MotoServer) -> Aws {
    Aws::from_sdk_config(sdk_config(&moto.endpoint_url(), REGION))
        .unwrap()
        .with_poll_interval(Duration::from_millis(20))
}

fn command(instance_id: &str, comment: &str, script: &str) -> RemoteCommand {
    RemoteCommand {
        instance_id: instance_id.to_string(),
        comment: comment.to_string(),
        script: script.to_string(),
        execution_timeout: Duration::from_secs(3600),
        log_group: LOG_GROUP.to_string(),
    }
}

fn run_instance(aws: &Aws) -> String {
    aws.block_on(async {
        aws.ec2()
            .run_instances()
            .image_id("ami-12c6146b")
            .instance_type(InstanceType::G62xlarge)
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .unwrap()
            .instances()[0]
            .instance_id()
            .unwrap()
            .to_string()
    })
    .unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// What the SSM agent does with a command's output: creates the group and the
/// stream if needed and appends events. `at` is each event's millisecond
/// timestamp.
fn put_lines(
    aws: &Aws,
    command_id: &str,
    instance_id: &str,
    stream: LogStream,
    events: &[(i64, &str)],
) {
    let logs = aws.logs();
    let name = log_stream_name(command_id, instance_id, stream);
    aws.block_on(async {
        let _ = logs
            .create_log_group()
            .log_group_name(LOG_GROUP)
            .send()
            .await;
        let _ = logs
            .create_log_stream()
            .log_group_name(LOG_GROUP)
            .log_stream_name(&name)
            .send()
            .await;
        let mut put = logs
            .put_log_events()
            .log_group_name(LOG_GROUP)
            .log_stream_name(&name);
        for (at, message) in events {
            put = put.log_events(
                InputLogEvent::builder()
                    .timestamp(*at)
                    .message(*message)
                    .build()
                    .unwrap(),
            );
        }
        put.send().await.unwrap();
    })
    .unwrap();
}

/// An `on_line` that records every line.
struct Collected(Mutex<Vec<LogLine>>);

impl Collected {
    fn new() -> Collected {
        Collected(Mutex::new(Vec::new()))
    }

    fn push(&self, line: LogLine) {
        self.0.lock().unwrap().push(line);
    }

    fn texts(&self) -> Vec<(LogStream, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|l| (l.stream, l.text.clone()))
            .collect()
    }
}

#[test]
fn the_request_names_the_document_timeouts_and_cloudwatch_output() {
    // The request is built without a server: moto does not echo
    // CloudWatchOutputConfig in ListCommands, so the builder is what shows it.
    let client = aws_sdk_ssm::Client::new(&sdk_config("http://127.0.0.1:9", REGION));
    let cmd = command(
        "i-0123456789abcdef0",
        "ftslm train 20261129_101500",
        "echo training\n",
    );
    let request = send_command_request(&client, &cmd);

    assert_eq!(
        request.get_document_name().as_deref(),
        Some("AWS-RunShellScript")
    );
    assert_eq!(
        request.get_instance_ids().as_deref(),
        Some(&["i-0123456789abcdef0".to_string()][..])
    );
    assert_eq!(
        request.get_comment().as_deref(),
        Some("ftslm train 20261129_101500")
    );
    assert_eq!(
        *request.get_timeout_seconds(),
        Some(DELIVERY_TIMEOUT.as_secs() as i32)
    );
    let params: HashMap<String, Vec<String>> = request.get_parameters().clone().unwrap();
    assert_eq!(params["executionTimeout"], ["3600"]);
    assert_eq!(
        params["commands"].len(),
        1,
        "one element: the whole wrapper"
    );
    assert!(params["commands"][0].contains("\necho training\n"));
    let cloudwatch = request.get_cloud_watch_output_config().clone().unwrap();
    assert!(cloudwatch.cloud_watch_output_enabled());
    assert_eq!(cloudwatch.cloud_watch_log_group_name(), Some(LOG_GROUP));

    // SSM's Comment limit is 100 characters; the cut respects multi-byte ones.
    let long = command("i-1", &format!("ftslm test {}", "é".repeat(200)), "true");
    let comment = send_command_request(&client, &long)
        .get_comment()
        .clone()
        .unwrap();
    assert_eq!(comment.chars().count(), 100);
    assert!(comment.starts_with("ftslm test éé") && comment.ends_with('…'));

    // Out-of-range timeouts are clamped into what AWS-RunShellScript accepts.
    let mut huge = command("i-1", "ftslm x", "true");
    huge.execution_timeout = Duration::from_secs(10 * 24 * 3600);
    let params = send_command_request(&client, &huge)
        .get_parameters()
        .clone()
        .unwrap();
    assert_eq!(params["executionTimeout"], ["172800"]);
}

#[test]
fn send_refuses_a_command_without_the_ftslm_comment_or_with_an_impossible_timeout() {
    // Nothing listens on port 9: these must fail before any call.
    let aws = Aws::from_sdk_config(sdk_config("http://127.0.0.1:9", REGION)).unwrap();
    let err = remote::send(&aws, &command("i-1", "train", "true")).unwrap_err();
    assert!(
        matches!(&err, AwsError::Refused(m) if m.contains("must start with \"ftslm \"")),
        "{err}"
    );
    let mut zero = command("i-1", "ftslm train", "true");
    zero.execution_timeout = Duration::from_millis(500);
    let err = remote::send(&aws, &zero).unwrap_err().to_string();
    assert!(err.contains("1s to 48h"), "{err}");
    let mut days = command("i-1", "ftslm train", "true");
    days.execution_timeout = Duration::from_secs(3 * 24 * 3600);
    let err = remote::send(&aws, &days).unwrap_err().to_string();
    assert!(err.contains("259200s"), "{err}");
}

#[test]
fn the_wrapper_runs_the_script_verbatim_under_bash() {
    let script = r#"#!/bin/bash
set -euo pipefail
cat "$0" > "$RECEIVED"
echo "script file: $0"
names=(alpha beta)
echo "bash array: ${names[1]}"
echo 'single $HOME `not run`' "double \$HOME \`not run\`"
echo "backticks: `echo ran`"
cat <<EOF
inner heredoc with $((1 + 2))
EOF
cat <<'FTSLM_SCRIPT_END'
the wrapper's own delimiter, as a line
FTSLM_SCRIPT_END
read -r from_stdin
echo "stdin: $from_stdin"
exit 7"#;
    let client = aws_sdk_ssm::Client::new(&sdk_config("http://127.0.0.1:9", REGION));
    let request = send_command_request(&client, &command("i-1", "ftslm test", script));
    let commands = request.get_parameters().clone().unwrap()["commands"].clone();

    // What the agent does: the lines into _script.sh, run by sh.
    let dir = tempfile::tempdir().unwrap();
    let agent_script = dir.path().join("_script.sh");
    std::fs::write(&agent_script, commands.join("\n")).unwrap();
    let received = dir.path().join("received.sh");
    let mut child = Command::new("sh")
        .arg(&agent_script)
        .env("RECEIVED", &received)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"caller's input\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);

    assert_eq!(
        out.status.code(),
        Some(7),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&received).unwrap(),
        format!("{script}\n"),
        "the script must arrive byte for byte (plus the final newline)"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[1..],
        [
            "bash array: beta",
            "single $HOME `not run` double $HOME `not run`",
            "backticks: ran",
            "inner heredoc with 3",
            "the wrapper's own delimiter, as a line",
            "stdin: caller's input",
        ]
    );
    // The temporary copy is removed when the script ends.
    let copy = lines[0].strip_prefix("script file: ").unwrap();
    assert!(copy.starts_with("/tmp/ftslm-script."), "{copy}");
    assert!(!std::path::Path::new(copy).exists(), "{copy} left behind");
}

#[test]
fn a_sent_command_is_listed_with_its_comment_document_and_script() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws_for(&moto);
    let instance = run_instance(&aws);
    let script = "set -e\necho \"deploying to $MOUNT\"\n";
    let id = remote::send(&aws, &command(&instance, "ftslm deploy", script)).unwrap();

    let listed = aws
        .block_on(aws.ssm().list_commands().command_id(&id).send())
        .unwrap()
        .unwrap();
    let [listed] = listed.commands() else {
        panic!("expected one command, got {:?}", listed.commands());
    };
    assert_eq!(listed.command_id(), Some(id.as_str()));
    assert_eq!(listed.comment(), Some("ftslm deploy"));
    assert_eq!(listed.document_name(), Some("AWS-RunShellScript"));
    assert_eq!(listed.instance_ids(), std::slice::from_ref(&instance));
    assert_eq!(
        listed.timeout_seconds(),
        Some(DELIVERY_TIMEOUT.as_secs() as i32)
    );
    let params = listed.parameters().unwrap();
    assert!(
        params["commands"][0].contains(script),
        "{:?}",
        params["commands"]
    );
    assert_eq!(params["executionTimeout"], ["3600"]);
}

#[test]
fn wait_streams_the_output_redacted_and_returns_the_exit_status() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws_for(&moto);
    let instance = run_instance(&aws);
    let id = remote::send(
        &aws,
        &command(&instance, "ftslm train 20261129_101500", "x"),
    )
    .unwrap();
    let t = now_ms();
    put_lines(
        &aws,
        &id,
        &instance,
        LogStream::Stdout,
        &[
            (t, "loading model"),
            (t + 2, "login with hf_abcdefghijk\nstep 1/10"),
        ],
    );
    put_lines(
        &aws,
        &id,
        &instance,
        LogStream::Stderr,
        &[(t + 1, "warning: slow disk")],
    );

    let seen = Collected::new();
    let outcome = remote::wait(
        &aws,
        LOG_GROUP,
        &id,
        &instance,
        Duration::from_secs(30),
        &|l| seen.push(l),
    )
    .unwrap();

    assert_eq!(outcome.command_id, id);
    assert_eq!(outcome.status, "Success");
    assert_eq!(outcome.response_code, Some(0));
    assert_eq!(outcome.log_lines, 4);
    // Ordered by timestamp across both streams; one event may hold several lines.
    assert_eq!(
        seen.texts(),
        [
            (LogStream::Stdout, "loading model".to_string()),
            (LogStream::Stderr, "warning: slow disk".to_string()),
            (LogStream::Stdout, "login with hf_***".to_string()),
            (LogStream::Stdout, "step 1/10".to_string()),
        ]
    );
    let first = seen.0.lock().unwrap()[0].timestamp.unwrap();
    assert_eq!(
        first.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64,
        t
    );
    assert!(outcome.into_result().is_ok());
}

#[test]
fn lines_uploaded_just_after_the_final_status_are_not_lost() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    // A long poll interval: the wait drains the streams at the final status
    // and once more an interval later, and the agent's late batch lands
    // between the two.
    let aws = aws_for(&moto).with_poll_interval(Duration::from_millis(800));
    let instance = run_instance(&aws);
    let id = remote::send(&aws, &command(&instance, "ftslm train late", "x")).unwrap();
    let t = now_ms();
    put_lines(&aws, &id, &instance, LogStream::Stdout, &[(t, "training")]);

    let (first_line_seen, wake) = mpsc::channel::<()>();
    let first_line_seen = Mutex::new(first_line_seen);
    let agent = {
        let endpoint = moto.endpoint_url();
        let (id, instance) = (id.clone(), instance.clone());
        std::thread::spawn(move || {
            wake.recv_timeout(Duration::from_secs(20)).unwrap();
            let agent_aws = Aws::from_sdk_config(sdk_config(&endpoint, REGION)).unwrap();
            put_lines(
                &agent_aws,
                &id,
                &instance,
                LogStream::Stdout,
                &[(t + 1, "saved final_model")],
            );
        })
    };
    let seen = Collected::new();
    let outcome = remote::wait(
        &aws,
        LOG_GROUP,
        &id,
        &instance,
        Duration::from_secs(30),
        &|l| {
            let _ = first_line_seen.lock().unwrap().send(());
            seen.push(l)
        },
    )
    .unwrap();
    agent.join().unwrap();

    assert_eq!(outcome.status, "Success");
    assert_eq!(
        seen.texts(),
        [
            (LogStream::Stdout, "training".to_string()),
            (LogStream::Stdout, "saved final_model".to_string()),
        ]
    );
}

#[test]
fn reading_logs_without_follow_shows_what_the_streams_hold_now() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws_for(&moto);
    let instance = run_instance(&aws);
    let id = remote::send(&aws, &command(&instance, "ftslm train", "x")).unwrap();

    // Neither the group nor the streams exist yet: no lines, no error.
    let seen = Collected::new();
    let read = read_command_logs(
        &aws,
        LOG_GROUP,
        &id,
        &instance,
        false,
        Duration::from_secs(5),
        &|l| seen.push(l),
    )
    .unwrap();
    assert_eq!(read, None);
    assert!(seen.texts().is_empty());

    let t = now_ms();
    put_lines(
        &aws,
        &id,
        &instance,
        LogStream::Stderr,
        &[(t, "Traceback: token hf_abcdefghijk rejected")],
    );
    // Only stderr exists: stdout's absence is not an error.
    let seen = Collected::new();
    read_command_logs(
        &aws,
        LOG_GROUP,
        &id,
        &instance,
        false,
        Duration::from_secs(5),
        &|l| seen.push(l),
    )
    .unwrap();
    assert_eq!(
        seen.texts(),
        [(
            LogStream::Stderr,
            "Traceback: token hf_*** rejected".to_string()
        )]
    );

    // Each read starts from the beginning; following returns the outcome too.
    put_lines(&aws, &id, &instance, LogStream::Stdout, &[(t + 1, "done")]);
    let seen = Collected::new();
    let outcome = read_command_logs(
        &aws,
        LOG_GROUP,
        &id,
        &instance,
        true,
        Duration::from_secs(30),
        &|l| seen.push(l),
    )
    .unwrap()
    .unwrap();
    assert_eq!(outcome.status, "Success");
    assert_eq!(seen.texts().len(), 2, "{:?}", seen.texts());

    // Another command's streams do not exist: nothing, and no error.
    let seen = Collected::new();
    read_command_logs(
        &aws,
        LOG_GROUP,
        "00000000-0000-0000-0000-000000000000",
        &instance,
        false,
        Duration::from_secs(5),
        &|l| seen.push(l),
    )
    .unwrap();
    assert!(seen.texts().is_empty());
}

#[test]
fn the_latest_command_is_the_newest_ftslm_one_on_that_instance() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws_for(&moto);
    let instance = run_instance(&aws);
    assert_eq!(latest_command(&aws, &instance).unwrap(), None);

    let pause = || std::thread::sleep(Duration::from_millis(50));
    let older = remote::send(&aws, &command(&instance, "ftslm deploy", "x")).unwrap();
    pause();
    let newest = remote::send(
        &aws,
        &command(&instance, "ftslm train 20261129_101500", "x"),
    )
    .unwrap();
    pause();
    // Newer, but not ftslm's. (Commands for other instances are filtered by
    // ListCommands itself; moto cannot show it, as it fans every command out
    // to all of its instances.)
    let request = send_command_request(&aws.ssm(), &command(&instance, "ftslm x", "x"))
        .comment("patch baseline");
    aws.block_on(request.send()).unwrap().unwrap();

    let latest = latest_command(&aws, &instance).unwrap().unwrap();
    assert_eq!(latest.command_id, newest, "older was {older}");
    assert_eq!(latest.comment, "ftslm train 20261129_101500");
    assert_eq!(latest.status, "Success");
    let age = SystemTime::now().duration_since(latest.requested).unwrap();
    assert!(age < Duration::from_secs(60), "requested {age:?} ago");
}

#[test]
fn waiting_for_an_unknown_command_fails_clearly_and_within_the_limit() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws_for(&moto);
    let instance = run_instance(&aws);
    let unknown = "11111111-2222-3333-4444-555555555555";
    let started = Instant::now();
    let err = remote::wait(
        &aws,
        LOG_GROUP,
        unknown,
        &instance,
        Duration::from_secs(60),
        &|_| {},
    )
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = err.to_string();
    assert!(
        matches!(err, AwsError::NotFound { .. }) && text.contains(unknown),
        "{text}"
    );

    // A real command asked about on an instance it was not sent to.
    let id = remote::send(&aws, &command(&instance, "ftslm train", "x")).unwrap();
    let err = remote::wait(
        &aws,
        LOG_GROUP,
        &id,
        "i-00000000000000000",
        Duration::from_secs(60),
        &|_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("InvocationDoesNotExist"), "{err}");

    // With a limit shorter than the grace SSM gets, the limit wins.
    let slow = aws_for(&moto).with_poll_interval(Duration::from_millis(300));
    let started = Instant::now();
    let err = remote::wait(
        &slow,
        LOG_GROUP,
        unknown,
        &instance,
        Duration::from_millis(500),
        &|_| {},
    )
    .unwrap_err();
    assert!(matches!(err, AwsError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn an_outcome_other_than_success_with_code_zero_is_an_error() {
    let outcome = |status: &str, code| CommandOutcome {
        command_id: "c-1".to_string(),
        status: status.to_string(),
        response_code: code,
        stdout_tail: String::new(),
        stderr_tail: String::new(),
        log_lines: 0,
    };
    assert!(outcome("Success", Some(0)).into_result().is_ok());
    let err = outcome("Failed", Some(3)).into_result().unwrap_err();
    assert!(matches!(err, AwsError::RemoteFailed { code: Some(3), .. }));
    assert_eq!(
        err.to_string(),
        "remote command c-1 ended Failed with exit code 3"
    );
    let err = outcome("DeliveryTimedOut", None).into_result().unwrap_err();
    assert_eq!(err.to_string(), "remote command c-1 ended DeliveryTimedOut");
    assert!(outcome("Success", Some(1)).into_result().is_err());
}
