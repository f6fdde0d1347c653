//! `ftslm runs pull`: one run folder copied into a local directory. Every file
//! is cut into byte ranges fetched concurrently (files and ranges alike share
//! one bound), written into `NAME.part` with a record of finished ranges (see
//! [`super::partfile`]), checked against the run's `SHA256SUMS` — or, for a run
//! without one, against the object's ETag where that is an MD5 — and only then
//! renamed into place. A killed pull, run again, fetches only what is missing.

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_s3::Client;
use serde::Serialize;
use tokio::task::JoinSet;

use super::manifest::parse_manifest;
use super::partfile::io_error;
use super::plan::{part_count, part_range, plan, prepare, Pending, Prepared};
use super::s3::{get_small, list_all, run_folders, run_root};
use super::transfer::{fetch_part, verify, Outcome};
use super::{RunSelector, MANIFEST};
use crate::aws::{Aws, AwsError, CloudTarget};

/// A manifest of a few hundred files is kilobytes; cap what is read into memory.
const MANIFEST_LIMIT: u64 = 16 << 20;
/// How many run names a "no such run" error offers.
const SUGGESTED_RUNS: usize = 5;

/// How a pull fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOptions {
    /// Ranged requests in flight at once, across all files.
    pub concurrency: usize,
    /// Bytes per ranged request.
    pub part_size: u64,
    /// Replace files in the way that are not the run's (`--force`).
    pub force: bool,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            concurrency: 8,
            part_size: 8 << 20,
            force: false,
        }
    }
}

/// How a pulled file was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    /// Its SHA-256 matched the run's `SHA256SUMS`.
    Sha256,
    /// No `SHA256SUMS`; its MD5 matched the object's single-part ETag.
    Md5,
    /// No `SHA256SUMS`, and the ETag is not an MD5 of the body (a multipart
    /// upload, or KMS / customer-key encryption): nothing to check against.
    Unverified,
}

/// Progress of a pull, for a progress view. `path` is relative to the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// The run is chosen and checked; `bytes_to_download` excludes what is on
    /// disk already (complete files and finished parts).
    Planned {
        run: String,
        files: usize,
        bytes_to_download: u64,
    },
    /// The file is in place with the right contents already.
    FileSkipped {
        path: String,
    },
    /// Downloading starts (or resumes, when `parts_done` > 0).
    FileStarted {
        path: String,
        size: u64,
        parts: u64,
        parts_done: u64,
    },
    PartDone {
        path: String,
        bytes: u64,
    },
    /// Checked and renamed into place.
    FileDone {
        path: String,
        verification: Verification,
    },
}

/// What a pull did. `files` counts every object of the run, `SHA256SUMS`
/// included; every other file is counted in exactly one of `verified_sha256`,
/// `verified_md5` and `unverified`, whether it was downloaded now or found
/// complete (`skipped_complete`, which counts an identical `SHA256SUMS` too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullReport {
    pub run: String,
    pub out_dir: PathBuf,
    pub files: usize,
    /// Bytes of run files fetched by this pull (the manifest, re-read every
    /// time to check against, is not counted).
    pub bytes_downloaded: u64,
    pub skipped_complete: usize,
    pub verified_sha256: usize,
    pub verified_md5: usize,
    /// Files with nothing to check them against, by relative path.
    pub unverified: Vec<String>,
}

/// Downloads the run chosen by `selector` into `out_dir` (created if needed),
/// keeping the paths below the run folder. Keys that would land outside
/// `out_dir` are refused before anything is written; so is a run whose
/// `SHA256SUMS` and objects disagree (a listed file missing, or a file not
/// listed). A self-entry for `SHA256SUMS` in the manifest is ignored (it cannot
/// hold its own digest), as are zero-byte `NAME/` folder placeholders. A
/// checksum mismatch removes that file's partial download and names the file
/// and both digests. Files already in place with the right size and digest are
/// not fetched again; without a digest to compare (multipart ETag, no
/// manifest) they are.
pub fn pull_run(
    aws: &Aws,
    target: &CloudTarget,
    selector: &RunSelector,
    out_dir: &Path,
    options: &PullOptions,
    progress: &(dyn Fn(PullEvent) + Sync),
) -> Result<PullReport, AwsError> {
    if options.concurrency == 0 {
        return Err(AwsError::Refused(
            "the pull concurrency must be at least 1 (--concurrency)".into(),
        ));
    }
    if options.part_size == 0 {
        return Err(AwsError::Refused(
            "the part size must be at least 1 byte (--part-size)".into(),
        ));
    }
    let bucket = target.bucket()?.to_string();
    let client = aws.s3();
    aws.block_on(pull(
        client, bucket, target, selector, out_dir, options, progress,
    ))?
}

async fn pull(
    client: Client,
    bucket: String,
    target: &CloudTarget,
    selector: &RunSelector,
    out_dir: &Path,
    options: &PullOptions,
    progress: &(dyn Fn(PullEvent) + Sync),
) -> Result<PullReport, AwsError> {
    let run = match selector {
        RunSelector::Timestamp(t) if super::is_run_timestamp(t) => t.clone(),
        RunSelector::Timestamp(t) => {
            return Err(AwsError::Refused(
                super::BadRunSelector { given: t.clone() }.to_string(),
            ))
        }
        RunSelector::Latest => {
            let (runs, _) = run_folders(&client, &bucket, target).await?;
            match runs.into_iter().next() {
                Some(newest) => newest,
                None => return Err(no_run(&bucket, target, "latest", &[])),
            }
        }
    };
    let root = run_root(target, &run);
    let (objects, _) = list_all(&client, &bucket, &root, None).await?;
    if objects.is_empty() {
        let (runs, _) = run_folders(&client, &bucket, target).await?;
        return Err(no_run(&bucket, target, &run, &runs));
    }
    let manifest_key = format!("{root}{MANIFEST}");
    let manifest = if objects.iter().any(|o| o.key == manifest_key) {
        let body = get_small(&client, &bucket, &manifest_key, MANIFEST_LIMIT).await?;
        let source = format!("s3://{bucket}/{manifest_key}");
        let text = String::from_utf8(body)
            .map_err(|_| AwsError::Refused(format!("{source} is not UTF-8 text")))?;
        let parsed = parse_manifest(&text, &source).map_err(AwsError::Refused)?;
        Some((text, parsed))
    } else {
        None
    };
    let entries = plan(
        &bucket,
        &root,
        &run,
        &objects,
        manifest.as_ref().map(|m| &m.1),
        out_dir,
    )?;
    let files = entries.len() + usize::from(manifest.is_some());

    if let Some((text, _)) = &manifest {
        let local = out_dir.join(MANIFEST);
        let differs = std::fs::read(&local).is_ok_and(|have| have != text.as_bytes());
        if differs && !options.force {
            return Err(AwsError::Refused(format!(
                "{} holds another run's {MANIFEST}; pass --force to replace that run's files, or \
                 pull into another folder",
                out_dir.display()
            )));
        }
    }
    let part_size = options.part_size;
    let force = options.force;
    let out = out_dir.to_path_buf();
    let prepared = tokio::task::spawn_blocking(move || prepare(&out, entries, part_size, force))
        .await
        .map_err(|_| AwsError::RuntimeGone)??;

    let mut report = PullReport {
        run: run.clone(),
        out_dir: out_dir.to_path_buf(),
        files,
        bytes_downloaded: 0,
        skipped_complete: 0,
        verified_sha256: 0,
        verified_md5: 0,
        unverified: Vec::new(),
    };
    let mut pending: Vec<Arc<Pending>> = Vec::new();
    let mut queue = VecDeque::new();
    let mut remaining = Vec::new();
    let mut bytes_to_download = 0;
    for item in &prepared {
        match item {
            Prepared::Complete(_, _) => {}
            Prepared::Download(file, done) => {
                let index = pending.len();
                let parts = part_count(file.entry.size, part_size);
                for part in (0..parts).filter(|p| !done.contains(p)) {
                    queue.push_back((index, part));
                    bytes_to_download += part_range(file.entry.size, part_size, part).1;
                }
                remaining.push(parts - done.len() as u64);
                pending.push(file.clone());
            }
        }
    }
    progress(PullEvent::Planned {
        run: run.clone(),
        files,
        bytes_to_download,
    });
    for item in prepared {
        match item {
            Prepared::Complete(entry, verification) => {
                report.skipped_complete += 1;
                tally(&mut report, &entry.rel, verification);
                progress(PullEvent::FileSkipped { path: entry.rel });
            }
            Prepared::Download(file, done) => progress(PullEvent::FileStarted {
                path: file.entry.rel.clone(),
                size: file.entry.size,
                parts: part_count(file.entry.size, part_size),
                parts_done: done.len() as u64,
            }),
        }
    }

    let mut tasks = JoinSet::new();
    for (index, file) in pending.iter().enumerate() {
        if remaining[index] == 0 {
            tasks.spawn(verify(client.clone(), bucket.clone(), file.clone(), index));
        }
    }
    let mut parts_in_flight = 0;
    let result = loop {
        while parts_in_flight < options.concurrency {
            let Some((index, part)) = queue.pop_front() else {
                break;
            };
            let file = pending[index].clone();
            tasks.spawn(fetch_part(
                client.clone(),
                bucket.clone(),
                file,
                index,
                part,
            ));
            parts_in_flight += 1;
        }
        let Some(joined) = tasks.join_next().await else {
            break Ok(());
        };
        match joined {
            Err(_) => break Err(AwsError::RuntimeGone),
            Ok(Err(e)) => break Err(e),
            Ok(Ok(Outcome::Part { file, bytes })) => {
                parts_in_flight -= 1;
                report.bytes_downloaded += bytes;
                progress(PullEvent::PartDone {
                    path: pending[file].entry.rel.clone(),
                    bytes,
                });
                remaining[file] -= 1;
                if remaining[file] == 0 {
                    let f = pending[file].clone();
                    tasks.spawn(verify(client.clone(), bucket.clone(), f, file));
                }
            }
            Ok(Ok(Outcome::Verified { file, verification })) => {
                let rel = &pending[file].entry.rel;
                tally(&mut report, rel, verification);
                progress(PullEvent::FileDone {
                    path: rel.clone(),
                    verification,
                });
            }
        }
    };
    if let Err(e) = result {
        // Stop fetching; a part being written still finishes and is recorded,
        // so the next attempt resumes from everything that arrived.
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        return Err(e);
    }
    if let Some((text, _)) = manifest {
        // Written last: a complete SHA256SUMS beside the files means the pull
        // finished, and `sha256sum -c SHA256SUMS` works in the directory.
        if same_or_write(&out_dir.join(MANIFEST), text.as_bytes())? {
            report.skipped_complete += 1;
        }
    }
    report.unverified.sort();
    Ok(report)
}

fn tally(report: &mut PullReport, rel: &str, verification: Verification) {
    match verification {
        Verification::Sha256 => report.verified_sha256 += 1,
        Verification::Md5 => report.verified_md5 += 1,
        Verification::Unverified => report.unverified.push(rel.to_string()),
    }
}

pub(crate) fn no_run(
    bucket: &str,
    target: &CloudTarget,
    wanted: &str,
    newest: &[String],
) -> AwsError {
    let root = super::s3::runs_root(target);
    let fix = if newest.is_empty() {
        format!(
            "there are no run folders (YYYYmmdd_HHMMSS) under s3://{bucket}/{root}: train one \
             with `ftslm cloud train`, or check aws.s3.bucket and aws.s3.prefix"
        )
    } else {
        let shown = &newest[..newest.len().min(SUGGESTED_RUNS)];
        format!(
            "the newest runs are {}{}; `ftslm runs list` shows them all",
            shown.join(", "),
            if newest.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        )
    };
    AwsError::NotFound {
        what: format!("run {wanted} (s3://{bucket}/{root}{wanted}/)"),
        fix,
    }
}

/// Writes `bytes` to `path` atomically unless it holds them already; returns
/// `true` when it did (so nothing was written).
fn same_or_write(path: &Path, bytes: &[u8]) -> Result<bool, AwsError> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(true);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_error(dir))?;
    tmp.write_all(bytes).map_err(io_error(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io_error(path))?;
    tmp.persist(path).map_err(|e| io_error(path)(e.error))?;
    Ok(false)
}
