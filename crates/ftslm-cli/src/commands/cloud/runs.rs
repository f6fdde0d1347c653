//! `ftslm runs list|pull`: the runs archived in S3.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use ftslm_cloud::aws::{Aws, AwsError, CloudTarget};
use ftslm_cloud::runs::{catalog_runs, pull_run, PullEvent, PullOptions, RunSelector};
use ftslm_cloud::steps::{verify_uploaded, UploadedRun};

use crate::cli::{GlobalArgs, RunsCommand};
use crate::output::{note, print_json, progress_bar};

pub fn run(global: &GlobalArgs, cmd: RunsCommand) -> anyhow::Result<ExitCode> {
    let (aws, target) = super::connect(global)?;
    super::install_interrupt_handler();
    match cmd {
        RunsCommand::List { json } => list(global, &aws, &target, json),
        RunsCommand::Pull {
            run,
            out,
            concurrency,
            force,
            json,
        } => {
            let selector: RunSelector = run.parse().context("the run to pull")?;
            let bar = progress_bar(global.quiet || json, 0, "pull");
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} {bar:30} {bytes}/{total_bytes} [{elapsed} < {eta}]",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let done = AtomicU64::new(0);
            let options = PullOptions {
                concurrency,
                force,
                ..PullOptions::default()
            };
            let report = pull_run(
                &aws,
                &target,
                &selector,
                &out,
                &options,
                &|event| match event {
                    PullEvent::Planned {
                        run,
                        files,
                        bytes_to_download,
                    } => {
                        bar.set_length(bytes_to_download);
                        bar.set_message(format!("{run}: {files} files"));
                    }
                    PullEvent::PartDone { bytes, .. } => {
                        bar.set_position(done.fetch_add(bytes, Ordering::SeqCst) + bytes);
                    }
                    _ => {}
                },
            )?;
            bar.finish_and_clear();
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "{}: {} files in {} ({} bytes downloaded, {} already complete); {} verified by SHA-256, {} by MD5",
                    report.run,
                    report.files,
                    report.out_dir.display(),
                    report.bytes_downloaded,
                    report.skipped_complete,
                    report.verified_sha256,
                    report.verified_md5
                );
                if !report.unverified.is_empty() {
                    note(
                        global.quiet,
                        format!(
                            "{} files had nothing to check them against (no SHA256SUMS, multipart ETag): {}",
                            report.unverified.len(),
                            report.unverified.join(", ")
                        ),
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn list(
    global: &GlobalArgs,
    aws: &Aws,
    target: &CloudTarget,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let catalog = catalog_runs(aws, target)?;
    if json {
        print_json(&catalog)?;
        return Ok(ExitCode::SUCCESS);
    }
    if catalog.runs.is_empty() {
        println!(
            "no runs under s3://{}/{}/",
            target.bucket()?,
            target.prefix()
        );
    } else {
        println!(
            "{:<16} {:>10} {:>8} {:>10} {:>10} {:>6}",
            "run", "size", "objects", "final eval", "best eval", "steps"
        );
    }
    let loss = |l: Option<f64>| l.map_or_else(|| "-".to_string(), |l| format!("{l:.4}"));
    for run in &catalog.runs {
        let summary = run.summary.as_ref();
        println!(
            "{:<16} {:>10} {:>8} {:>10} {:>10} {:>6}",
            run.timestamp,
            human_bytes(run.bytes),
            run.objects,
            loss(summary.and_then(|s| s.final_eval_loss)),
            loss(summary.and_then(|s| s.best_eval_loss)),
            summary
                .and_then(|s| s.steps)
                .map_or_else(|| "-".to_string(), |s| s.to_string()),
        );
        if let Some(n) = &run.note {
            note(global.quiet, format!("{}: {n}", run.timestamp));
        }
    }
    for ignored in &catalog.ignored {
        note(
            global.quiet,
            format!("ignored {}: {}", ignored.key, ignored.reason),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `cloud stop --verify-s3`: the newest run must be completely uploaded before
/// the instance (and the volume's only other copy of the run) is stopped.
pub fn verify_latest_run(
    aws: &Aws,
    target: &CloudTarget,
    progress: &dyn Fn(&str),
) -> Result<UploadedRun, AwsError> {
    let runs = ftslm_cloud::runs::list_runs(aws, target)?;
    let latest = runs.first().ok_or_else(|| AwsError::NotFound {
        what: format!(
            "a run under s3://{}/{}/",
            target.bucket().unwrap_or("?"),
            target.prefix()
        ),
        fix: "nothing to verify: stop without --verify-s3, or train first".to_string(),
    })?;
    let uploaded = verify_uploaded(aws, target, &latest.timestamp)?;
    progress(&format!(
        "verified {}: {} objects, {} bytes",
        uploaded.s3_uri, uploaded.objects, uploaded.bytes
    ));
    Ok(uploaded)
}
