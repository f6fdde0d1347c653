//! `ftslm runs list`: the run folders under the configured prefix, newest
//! first, each with its object count, total size and the losses of its
//! run_summary.json.

use aws_sdk_s3::Client;
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinSet;

use super::s3::{list_all, run_folders, run_root, S3Object};
use super::{MANIFEST, SUMMARY};
use crate::aws::{Aws, AwsError, CloudTarget};

/// Runs are sized with this many listings in flight.
const LISTING_CONCURRENCY: usize = 8;
/// A run summary is a few hundred bytes; anything far larger is not one.
const SUMMARY_LIMIT: u64 = 1 << 20;

/// One run folder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunListing {
    /// The folder name, `YYYYmmdd_HHMMSS` (UTC launch time).
    pub timestamp: String,
    /// `s3://BUCKET/PREFIX/TIMESTAMP/`.
    pub uri: String,
    pub objects: u64,
    pub bytes: u64,
    /// Whether the run has its `SHA256SUMS` manifest (a run without one was
    /// cut short while uploading, or uploaded by something other than ftslm).
    pub has_checksums: bool,
    /// `None` when run_summary.json is missing or unreadable; `note` says which.
    pub summary: Option<RunSummary>,
    /// Why `summary` is missing or partial, naming the object.
    pub note: Option<String>,
}

/// The figures of run_summary.json that a listing shows. Each is `None`
/// when the summary has it as null (e.g. no evaluation ran) or lacks it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub final_eval_loss: Option<f64>,
    pub best_eval_loss: Option<f64>,
    pub steps: Option<u64>,
}

/// Something under the prefix that is not a run folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IgnoredEntry {
    pub key: String,
    pub reason: String,
}

/// The run folders and everything else found beside them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunCatalog {
    /// Newest first.
    pub runs: Vec<RunListing>,
    /// Folders whose name is not a `YYYYmmdd_HHMMSS` timestamp, and objects
    /// lying directly under the prefix: not runs, so not listed as runs, but
    /// reported so that nothing in the bucket goes unmentioned.
    pub ignored: Vec<IgnoredEntry>,
}

/// The runs under `s3://BUCKET/PREFIX/`, newest first. Folders whose name is
/// not a run timestamp, and objects beside the folders, are left out; use
/// [`catalog_runs`] to get them too (the CLI prints them as a note).
pub fn list_runs(aws: &Aws, target: &CloudTarget) -> Result<Vec<RunListing>, AwsError> {
    Ok(catalog_runs(aws, target)?.runs)
}

/// The runs under `s3://BUCKET/PREFIX/`, newest first, plus what was found
/// there that is not a run. A missing or unparsable run_summary.json is not an
/// error: that run gets `summary: None` and a note naming the object.
pub fn catalog_runs(aws: &Aws, target: &CloudTarget) -> Result<RunCatalog, AwsError> {
    let bucket = target.bucket()?.to_string();
    let client = aws.s3();
    let target = target.clone();
    aws.block_on(async move {
        let (timestamps, ignored) = run_folders(&client, &bucket, &target).await?;
        let mut pending = timestamps.iter().enumerate();
        let mut tasks = JoinSet::new();
        let mut runs: Vec<Option<RunListing>> = vec![None; timestamps.len()];
        loop {
            while tasks.len() < LISTING_CONCURRENCY {
                let Some((index, timestamp)) = pending.next() else {
                    break;
                };
                let (client, bucket) = (client.clone(), bucket.clone());
                let root = run_root(&target, timestamp);
                let timestamp = timestamp.clone();
                tasks.spawn(async move {
                    let listing = describe_run(&client, &bucket, &root, timestamp).await;
                    (index, listing)
                });
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let (index, listing) = joined.map_err(|_| AwsError::RuntimeGone)?;
            runs[index] = Some(listing?);
        }
        Ok(RunCatalog {
            runs: runs.into_iter().flatten().collect(),
            ignored,
        })
    })?
}

async fn describe_run(
    client: &Client,
    bucket: &str,
    root: &str,
    timestamp: String,
) -> Result<RunListing, AwsError> {
    let (objects, _) = list_all(client, bucket, root, None).await?;
    let has = |name: &str| {
        objects
            .iter()
            .any(|o: &S3Object| o.key == format!("{root}{name}"))
    };
    let summary_key = format!("{root}{SUMMARY}");
    let (summary, note) = if has(SUMMARY) {
        match super::s3::get_small(client, bucket, &summary_key, SUMMARY_LIMIT).await {
            Ok(body) => read_summary(&body, &format!("s3://{bucket}/{summary_key}")),
            // A summary deleted between the listing and the read is as good as absent.
            Err(AwsError::NotFound { .. }) => (None, Some(missing(bucket, &summary_key))),
            Err(AwsError::Refused(why)) => (None, Some(why)),
            Err(other) => return Err(other),
        }
    } else {
        (None, Some(missing(bucket, &summary_key)))
    };
    Ok(RunListing {
        uri: format!("s3://{bucket}/{root}"),
        objects: objects.len() as u64,
        bytes: objects.iter().map(|o| o.size).sum(),
        has_checksums: has(MANIFEST),
        summary,
        note,
        timestamp,
    })
}

fn missing(bucket: &str, key: &str) -> String {
    format!("no s3://{bucket}/{key} (training did not finish, or its upload did not)")
}

/// The listed figures of a summary; a field of the wrong type is noted and
/// left out rather than failing the listing.
fn read_summary(body: &[u8], uri: &str) -> (Option<RunSummary>, Option<String>) {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return (None, Some(format!("{uri} is not valid JSON: {e}"))),
    };
    let Some(fields) = value.as_object() else {
        return (None, Some(format!("{uri} is not a JSON object")));
    };
    let mut wrong = Vec::new();
    let mut number = |name: &'static str| match fields.get(name) {
        None | Some(Value::Null) => None,
        Some(v) => v.as_f64().or_else(|| {
            wrong.push(name);
            None
        }),
    };
    let final_eval_loss = number("final_eval_loss");
    let best_eval_loss = number("best_eval_loss");
    let steps = match fields.get("steps") {
        None | Some(Value::Null) => None,
        Some(v) => v.as_u64().or_else(|| {
            wrong.push("steps");
            None
        }),
    };
    let note = (!wrong.is_empty()).then(|| {
        format!(
            "{uri}: {} not a number, left out",
            wrong
                .iter()
                .map(|w| format!("`{w}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    (
        Some(RunSummary {
            final_eval_loss,
            best_eval_loss,
            steps,
        }),
        note,
    )
}
