//! The remote steps of the pipeline — deploy, train, check the upload, run an
//! extraction, clean checkpoints — each one function shared by its own
//! command (`cloud deploy`, `cloud train`, …) and by `cloud run`.

use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use crate::aws::{call_error, Aws, AwsError, CloudTarget};
use crate::remote::{self, CommandOutcome, LogLine, RemoteCommand};
use crate::scripts::{CleanScript, DeployScript, ExtractTestScript, ScriptError, TrainScript};
use crate::volume;

/// The device name the volume is attached as; on Nitro instances it shows up
/// as an NVMe device, which the deploy script finds by the volume id instead.
pub const VOLUME_DEVICE: &str = "/dev/sdf";
/// Logging in to ECR and pulling a multi-GB CUDA image can take a while.
pub const DEPLOY_LIMIT: Duration = Duration::from_secs(30 * 60);
/// A full 5-epoch run of the flagship task took about 10 h on one L4.
pub const TRAIN_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);
pub const SHORT_COMMAND_LIMIT: Duration = Duration::from_secs(15 * 60);
/// Margin for the laptop's wait beyond the remote execution timeout, so that
/// SSM reports the timeout rather than ftslm giving up first.
const WAIT_MARGIN: Duration = Duration::from_secs(120);

/// `YYYYmmdd_HHMMSS` in UTC: the run's name in S3.
pub fn new_run_timestamp() -> String {
    Utc::now().format("%Y%m%d_%H%M%S").to_string()
}

/// What `cloud train` asks of the remote `ftslm train`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainMode {
    /// `ftslm train --dry-run`: load everything, one step, write nothing.
    DryRun,
    /// A short run that exercises every part: a few steps, saves and evals.
    Test,
    /// The configured run, optionally capped.
    Full { max_steps: Option<usize> },
}

/// The `ftslm train` arguments of a remote run, after the output directory the
/// script adds. `sets` are the caller's `--set KEY=VALUE` for the training
/// sections, passed on so the remote run trains what was asked locally.
pub fn train_args(mode: &TrainMode, no_resume: bool, sets: &[String]) -> Vec<String> {
    let mut args = Vec::new();
    match mode {
        TrainMode::DryRun => args.push("--dry-run".to_string()),
        TrainMode::Test => {
            args.extend(["--max-steps".to_string(), "10".to_string()]);
            for set in [
                "training.eval_steps=5",
                "training.save_steps=5",
                "training.logging_steps=1",
                "dataset.max_eval_samples=16",
            ] {
                args.extend(["--set".to_string(), set.to_string()]);
            }
        }
        TrainMode::Full { max_steps } => {
            if let Some(n) = max_steps {
                args.extend(["--max-steps".to_string(), n.to_string()]);
            }
        }
    }
    if no_resume {
        args.push("--no-resume".to_string());
    }
    for set in sets {
        args.extend(["--set".to_string(), set.clone()]);
    }
    args
}

/// `--set` values that concern the training run rather than AWS, which are
/// the ones worth passing to the remote `ftslm train`.
pub fn training_sets(sets: &[String]) -> Vec<String> {
    const SECTIONS: [&str; 6] = [
        "model.",
        "dataset.",
        "lora.",
        "training.",
        "quantization.",
        "output.hf_repo",
    ];
    sets.iter()
        .filter(|s| SECTIONS.iter().any(|p| s.trim_start().starts_with(p)))
        .cloned()
        .collect()
}

fn script_error(e: ScriptError) -> AwsError {
    AwsError::Refused(format!("cannot write the remote script: {e}"))
}

fn run_remote(
    aws: &Aws,
    target: &CloudTarget,
    comment: String,
    script: String,
    limit: Duration,
    on_line: &(dyn Fn(LogLine) + Sync),
) -> Result<CommandOutcome, AwsError> {
    let instance_id = target.instance_id()?.to_string();
    let log_group = target.settings.cloudwatch.log_group.clone();
    let id = remote::send(
        aws,
        &RemoteCommand {
            instance_id: instance_id.clone(),
            comment,
            script,
            execution_timeout: limit,
            log_group: log_group.clone(),
        },
    )?;
    remote::wait(
        aws,
        &log_group,
        &id,
        &instance_id,
        limit + WAIT_MARGIN,
        on_line,
    )?
    .into_result()
}

/// Attaches the volume (unless skipped), then mounts it, pulls the image and
/// checks the GPU on the instance. Harmless to repeat.
pub fn deploy(
    aws: &Aws,
    target: &CloudTarget,
    skip_volume: bool,
    skip_image: bool,
    progress: &dyn Fn(&str),
    on_line: &(dyn Fn(LogLine) + Sync),
) -> Result<CommandOutcome, AwsError> {
    if !skip_volume {
        let attached = volume::ensure_attached(
            aws,
            target.volume_id()?,
            target.instance_id()?,
            VOLUME_DEVICE,
            volume::DEFAULT_ATTACH_LIMIT,
            progress,
        )?;
        progress(&if attached.already_attached {
            format!("volume {} already attached", attached.volume_id)
        } else {
            format!(
                "volume {} attached as {}",
                attached.volume_id, attached.device
            )
        });
    }
    let script = DeployScript::for_target(target, skip_volume, skip_image)?
        .render()
        .map_err(script_error)?;
    run_remote(
        aws,
        target,
        "ftslm deploy".to_string(),
        script,
        DEPLOY_LIMIT,
        on_line,
    )
}

/// A remote training run that has been sent.
#[derive(Debug, Clone, Serialize)]
pub struct LaunchedTraining {
    pub command_id: String,
    pub run_timestamp: String,
    /// Where the run is archived when it ends.
    pub s3_uri: String,
}

/// Sends the training script; [`follow_training`] waits for it.
pub fn launch_training(
    aws: &Aws,
    target: &CloudTarget,
    run_timestamp: &str,
    args: Vec<String>,
    limit: Duration,
) -> Result<LaunchedTraining, AwsError> {
    let script = TrainScript::for_target(target, run_timestamp, args, Some(limit.as_secs()))?
        .render()
        .map_err(script_error)?;
    let command_id = remote::send(
        aws,
        &RemoteCommand {
            instance_id: target.instance_id()?.to_string(),
            comment: format!("ftslm train {run_timestamp}"),
            script,
            execution_timeout: limit + WAIT_MARGIN,
            log_group: target.settings.cloudwatch.log_group.clone(),
        },
    )?;
    Ok(LaunchedTraining {
        command_id,
        s3_uri: run_uri(target, run_timestamp)?,
        run_timestamp: run_timestamp.to_string(),
    })
}

/// Streams a launched run's output until it ends; an error unless it
/// succeeded with exit code 0.
pub fn follow_training(
    aws: &Aws,
    target: &CloudTarget,
    launched: &LaunchedTraining,
    limit: Duration,
    on_line: &(dyn Fn(LogLine) + Sync),
) -> Result<CommandOutcome, AwsError> {
    remote::wait(
        aws,
        &target.settings.cloudwatch.log_group,
        &launched.command_id,
        target.instance_id()?,
        limit + 2 * WAIT_MARGIN,
        on_line,
    )?
    .into_result()
}

/// `s3://BUCKET/PREFIX/TIMESTAMP/`.
pub fn run_uri(target: &CloudTarget, run_timestamp: &str) -> Result<String, AwsError> {
    Ok(format!(
        "s3://{}/{}/{run_timestamp}/",
        target.bucket()?,
        target.prefix()
    ))
}

/// The objects of an archived run that prove the upload completed.
#[derive(Debug, Clone, Serialize)]
pub struct UploadedRun {
    pub s3_uri: String,
    pub objects: usize,
    pub bytes: i64,
}

/// Checks that the run's upload finished: the training script writes
/// `SHA256SUMS` last, and the adapter must be there.
pub fn verify_uploaded(
    aws: &Aws,
    target: &CloudTarget,
    run_timestamp: &str,
) -> Result<UploadedRun, AwsError> {
    const REQUIRED: [&str; 3] = [
        "SHA256SUMS",
        "final_model/adapter_config.json",
        "final_model/adapter_model.safetensors",
    ];
    let bucket = target.bucket()?.to_string();
    let prefix = format!("{}/{run_timestamp}/", target.prefix());
    let client = aws.s3();
    let keys = aws.block_on(async {
        let mut keys: Vec<(String, i64)> = Vec::new();
        let mut pages = client
            .list_objects_v2()
            .bucket(&bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| call_error("s3:ListObjectsV2", e))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    keys.push((key.to_string(), object.size().unwrap_or(0)));
                }
            }
        }
        Ok::<_, AwsError>(keys)
    })??;
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|rel| !keys.iter().any(|(k, _)| k == &format!("{prefix}{rel}")))
        .collect();
    let uri = format!("s3://{bucket}/{prefix}");
    if !missing.is_empty() {
        return Err(AwsError::NotFound {
            what: format!(
                "a complete upload at {uri} (missing {})",
                missing.join(", ")
            ),
            fix: "the run's upload did not finish: see its output with `ftslm cloud logs`; the \
                  run directory stays on the volume, and `ftslm cloud train` resumes it"
                .to_string(),
        });
    }
    Ok(UploadedRun {
        s3_uri: uri,
        objects: keys.len(),
        bytes: keys.iter().map(|(_, size)| size).sum(),
    })
}

/// Runs `ftslm extract` on the instance against an archived run's adapter.
pub fn extract_test(
    aws: &Aws,
    target: &CloudTarget,
    run_timestamp: &str,
    text: &str,
    on_line: &(dyn Fn(LogLine) + Sync),
) -> Result<CommandOutcome, AwsError> {
    let script = ExtractTestScript::for_target(target, run_timestamp, text, None)?
        .render()
        .map_err(script_error)?;
    run_remote(
        aws,
        target,
        format!("ftslm test {run_timestamp}"),
        script,
        SHORT_COMMAND_LIMIT,
        on_line,
    )
}

/// Removes checkpoints on the instance's volume (or lists them, `dry_run`).
pub fn clean_checkpoints(
    aws: &Aws,
    target: &CloudTarget,
    dry_run: bool,
    keep_final_model: bool,
    on_line: &(dyn Fn(LogLine) + Sync),
) -> Result<CommandOutcome, AwsError> {
    let script = CleanScript::for_target(target, dry_run, keep_final_model)
        .render()
        .map_err(script_error)?;
    run_remote(
        aws,
        target,
        format!(
            "ftslm checkpoints clean{}",
            if dry_run { " --dry-run" } else { "" }
        ),
        script,
        SHORT_COMMAND_LIMIT,
        on_line,
    )
}
