//! `ftslm metrics`: a run's history for people — a summary read at a
//! glance, CSV, PNG/SVG charts — from a local run directory or from a run
//! archived in S3 (only its `metrics.jsonl` and `run_summary.json` are read,
//! each checked against the run's SHA256SUMS).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use ftslm_cloud::aws::{Aws, CloudTarget};
use ftslm_cloud::runs::{read_run_files, RunSelector};
use ftslm_train::charts::{chart_files, write_charts};
use ftslm_train::history::{render_digest, runs_to_csv, HistoryDigest, RunHistory};
use ftslm_train::run_dir::{METRICS_FILE as METRICS, SUMMARY_FILE as SUMMARY};
use serde::Serialize;

use crate::cli::{GlobalArgs, MetricsArgs};
use crate::output::{note, print_json};

/// Where one run's history comes from.
enum RunSource {
    /// A run directory, named as the user wrote it.
    Local {
        name: String,
        dir: PathBuf,
    },
    S3(RunSelector),
}

impl RunSource {
    fn parse(given: &str) -> anyhow::Result<RunSource> {
        let path = Path::new(given);
        let name = given.trim_end_matches('/').to_string();
        if path.is_file() && path.file_name().is_some_and(|n| n == METRICS) {
            let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            return Ok(RunSource::Local { name, dir });
        }
        if path.is_dir() {
            // A quickstart folder keeps its run in run/.
            for dir in [path.to_path_buf(), path.join("run")] {
                if dir.join(METRICS).is_file() {
                    return Ok(RunSource::Local { name, dir });
                }
            }
            bail!(
                "{given} has no {METRICS} (nor run/{METRICS}), so it is not a run directory; \
                 give the folder `ftslm train --output-dir` wrote, or a run in S3 by its \
                 timestamp or `latest`"
            );
        }
        match given.parse::<RunSelector>() {
            Ok(selector) => Ok(RunSource::S3(selector)),
            Err(_) => bail!(
                "{given} is neither a folder here nor a run in S3 (a timestamp such as \
                 20261201_093000, or `latest`); check the path, or list the archived runs \
                 with `ftslm runs list`"
            ),
        }
    }

    /// The metrics file a local run reads, which no output may replace.
    fn input_file(&self) -> Option<PathBuf> {
        match self {
            RunSource::Local { dir, .. } => Some(dir.join(METRICS)),
            RunSource::S3(_) => None,
        }
    }
}

#[derive(Serialize)]
struct Report<'a> {
    runs: &'a [HistoryDigest],
    #[serde(skip_serializing_if = "Option::is_none")]
    csv: Option<&'a Path>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    plots: Vec<PathBuf>,
}

pub fn run(global: &GlobalArgs, args: &MetricsArgs) -> anyhow::Result<ExitCode> {
    let sources = std::iter::once(&args.run)
        .chain(&args.compare)
        .map(|given| RunSource::parse(given))
        .collect::<anyhow::Result<Vec<_>>>()?;
    check_outputs(args, &sources)?;

    let mut cloud: Option<(Aws, CloudTarget)> = None;
    let mut histories = Vec::with_capacity(sources.len());
    for source in &sources {
        histories.push(read_history(global, source, &mut cloud)?);
    }
    let digests: Vec<HistoryDigest> = histories.iter().map(RunHistory::digest).collect();

    if let Some(csv) = &args.csv {
        ftslm_fs::write_atomic(csv, runs_to_csv(&histories).as_bytes())
            .with_context(|| format!("cannot write --csv {}", csv.display()))?;
    }
    let mut plots = Vec::new();
    if let Some(dir) = &args.plot {
        plots = write_charts(&histories, dir)
            .with_context(|| format!("cannot draw the charts into --plot {}", dir.display()))?;
    }

    if args.json {
        print_json(&Report {
            runs: &digests,
            csv: args.csv.as_deref(),
            plots,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    for (digest, history) in digests.iter().zip(&histories) {
        print!("{}", render_digest(digest, history));
    }
    if digests.len() > 1 {
        print!("{}", comparison(&digests));
    }
    if let Some(csv) = &args.csv {
        note(global.quiet, format!("CSV: {}", csv.display()));
    }
    if !plots.is_empty() {
        let names: Vec<String> = plots
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        let dir = args.plot.as_deref().unwrap_or(Path::new("."));
        note(
            global.quiet,
            format!("charts in {}: {}", dir.display(), names.join(", ")),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--csv` and `--plot` are refused before anything is read when they would
/// replace a file without `--force`, or are one of the runs' own files.
fn check_outputs(args: &MetricsArgs, sources: &[RunSource]) -> anyhow::Result<()> {
    let inputs: Vec<PathBuf> = sources.iter().filter_map(RunSource::input_file).collect();
    let input_flags: Vec<(&Path, &str)> = inputs.iter().map(|p| (p.as_path(), "RUN")).collect();
    if let Some(csv) = &args.csv {
        ftslm_fs::check_not_an_input(csv, "--csv", &input_flags)?;
        ftslm_fs::check_replaceable(csv, "--csv", args.force)?;
        let parent = csv.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent {
            if !parent.is_dir() {
                bail!(
                    "--csv {}: the folder {} does not exist; create it or choose another path",
                    csv.display(),
                    parent.display()
                );
            }
        }
    }
    if let Some(dir) = &args.plot {
        ftslm_fs::check_writable_dir(dir)?;
        for file in chart_files() {
            ftslm_fs::check_replaceable(&dir.join(file), "--plot", args.force)?;
        }
    }
    Ok(())
}

fn read_history(
    global: &GlobalArgs,
    source: &RunSource,
    cloud: &mut Option<(Aws, CloudTarget)>,
) -> anyhow::Result<RunHistory> {
    match source {
        RunSource::Local { name, dir } => {
            let mut history = RunHistory::read_dir(dir)?;
            history.name = name.clone();
            Ok(history)
        }
        RunSource::S3(selector) => {
            if cloud.is_none() {
                *cloud = Some(super::cloud::connect(global)?);
            }
            let Some((aws, target)) = cloud.as_ref() else {
                bail!("no AWS connection for the run in S3")
            };
            let read = read_run_files(aws, target, selector, &[METRICS, SUMMARY])?;
            let mut files = read.files.into_iter();
            let (metrics, summary) = (files.next().flatten(), files.next().flatten());
            let bucket = target.bucket().unwrap_or("the bucket");
            let Some(metrics) = metrics else {
                bail!(
                    "run {} in s3://{bucket} has no {METRICS}: it was uploaded before its first \
                     logged step, or not by `ftslm train`",
                    read.run
                );
            };
            let text = |bytes: Vec<u8>, file: &str| {
                String::from_utf8(bytes)
                    .with_context(|| format!("{file} of run {} is not UTF-8 text", read.run))
            };
            let metrics = text(metrics, METRICS)?;
            let summary = summary.map(|s| text(s, SUMMARY)).transpose()?;
            let source = PathBuf::from(format!("s3://{bucket}/…/{}/{METRICS}", read.run));
            Ok(RunHistory::parse(
                &read.run,
                &metrics,
                summary.as_deref(),
                &source,
            )?)
        }
    }
}

/// Compared runs side by side, one line each.
fn comparison(digests: &[HistoryDigest]) -> String {
    let width = digests
        .iter()
        .map(|d| d.name.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let mut out = format!(
        "\n{:<width$}  {:>6}  {:>17}  {:>17}  {:>9}  {:>9}\n",
        "run", "steps", "best eval (step)", "final eval (step)", "tokens/s", "wall time"
    );
    let eval = |e: Option<ftslm_train::history::EvalPoint>| {
        e.map_or("–".to_string(), |e| {
            format!("{:.4} ({})", e.eval_loss, e.step)
        })
    };
    for d in digests {
        out.push_str(&format!(
            "{:<width$}  {:>6}  {:>17}  {:>17}  {:>9}  {:>9}\n",
            d.name,
            d.steps,
            eval(d.best_eval),
            eval(d.final_eval),
            d.tokens_per_second
                .map_or("–".into(), |t| format!("{t:.0}")),
            d.wall_time_seconds
                .map_or("–".into(), |s| format!("{s:.0} s")),
        ));
    }
    out
}
