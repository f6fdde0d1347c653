//! Deciding what a pull does before it does anything: which objects are run
//! files and where each lands (refusing keys that would escape the output
//! directory, and a manifest that disagrees with the listing), what each is
//! checked against, which are complete on disk already, and which parts of the
//! others are still missing.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::manifest::{safe_relative_path, Manifest};
use super::partfile::{
    digest_file, header, io_error, Algorithm, PartFile, PART_DONE_SUFFIX, PART_SUFFIX,
};
use super::pull::Verification;
use super::s3::S3Object;
use super::MANIFEST;
use crate::aws::AwsError;

/// What a file is checked against.
#[derive(Debug, Clone)]
pub(crate) enum Expect {
    Sha256(String),
    Md5(String),
    Nothing,
}

/// One file of the run.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) rel: String,
    pub(crate) key: String,
    pub(crate) dest: PathBuf,
    pub(crate) size: u64,
    pub(crate) etag: Option<String>,
    pub(crate) expect: Expect,
}

/// A file being downloaded.
pub(crate) struct Pending {
    pub(crate) entry: Entry,
    pub(crate) part: PartFile,
    pub(crate) part_size: u64,
}

/// The files of the run with what each is checked against, after refusing
/// keys that would escape `out_dir` and a manifest that disagrees with the
/// listing. Nothing is written yet.
pub(crate) fn plan(
    bucket: &str,
    root: &str,
    run: &str,
    objects: &[S3Object],
    manifest: Option<&Manifest>,
    out_dir: &Path,
) -> Result<Vec<Entry>, AwsError> {
    let mut entries = Vec::new();
    for object in objects {
        let rel = &object.key[root.len()..];
        // Zero-byte `NAME/` keys are the folder placeholders the S3 console makes.
        let placeholder = (rel.is_empty() || rel.ends_with('/')) && object.size == 0;
        if rel == MANIFEST || placeholder {
            continue;
        }
        let path = safe_relative_path(rel).map_err(|why| {
            AwsError::Refused(format!(
                "refusing to pull s3://{bucket}/{}: {why}, so it could be written outside {}; \
                 a run folder made by ftslm never holds such a key (remove it from the bucket)",
                object.key,
                out_dir.display()
            ))
        })?;
        let expect = match manifest {
            Some(m) => match m.get(rel) {
                Some(digest) => Expect::Sha256(digest.clone()),
                None => {
                    return Err(AwsError::Refused(format!(
                        "s3://{bucket}/{} is not listed in the run's {MANIFEST}, so it cannot be \
                         verified; the run folder was changed after its upload (remove the \
                         object, or re-upload the run from the instance)",
                        object.key
                    )))
                }
            },
            None => match object.etag.as_deref().map(|e| e.trim_matches('"')) {
                Some(e) if e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    Expect::Md5(e.to_ascii_lowercase())
                }
                _ => Expect::Nothing,
            },
        };
        entries.push(Entry {
            rel: rel.to_string(),
            key: object.key.clone(),
            dest: out_dir.join(path),
            size: object.size,
            etag: object.etag.clone(),
            expect,
        });
    }
    if let Some(m) = manifest {
        for listed in m.keys().filter(|k| k.as_str() != MANIFEST) {
            if !entries.iter().any(|e| &e.rel == listed) {
                return Err(AwsError::NotFound {
                    what: format!("s3://{bucket}/{root}{listed} (listed in {MANIFEST})"),
                    fix: format!(
                        "the upload of run {run} is incomplete: upload it again from the \
                         instance, or pull another run"
                    ),
                });
            }
        }
    }
    for entry in &entries {
        for suffix in [PART_SUFFIX, PART_DONE_SUFFIX] {
            let clash = format!("{}{suffix}", entry.rel);
            if entries.iter().any(|e| e.rel == clash) {
                return Err(AwsError::Refused(format!(
                    "the run holds both {} and {clash}, and a pull keeps its partial download \
                     of the first under the second's name; rename one in the bucket",
                    entry.rel
                )));
            }
        }
    }
    Ok(entries)
}

pub(crate) enum Prepared {
    Complete(Entry, Verification),
    Download(Arc<Pending>, BTreeSet<u64>),
}

/// Checks which files are in place already and opens (or resumes) the
/// `.part` of each other one. A file in the way that is not the run's
/// (another run's, or one the user changed) is replaced only with `force`:
/// without it the pull is refused before anything is written.
pub(crate) fn prepare(
    out_dir: &Path,
    entries: Vec<Entry>,
    part_size: u64,
    force: bool,
) -> Result<Vec<Prepared>, AwsError> {
    let mut checked = Vec::with_capacity(entries.len());
    for entry in entries {
        let complete = already_complete(&entry)?;
        checked.push((entry, complete));
    }
    // A file without a digest to compare (multipart ETag, no manifest) is
    // taken as this run's when its size is the object's: it is fetched again
    // as before, which replaces it with the same bytes.
    let in_the_way: Vec<&Entry> = checked
        .iter()
        .filter(|(entry, complete)| {
            complete.is_none()
                && fs::symlink_metadata(&entry.dest).is_ok_and(|m| {
                    !(matches!(entry.expect, Expect::Nothing)
                        && m.is_file()
                        && m.len() == entry.size)
                })
        })
        .map(|(entry, _)| entry)
        .collect();
    if !force {
        if let Some(first) = in_the_way.first() {
            return Err(AwsError::Refused(format!(
                "{} already holds {} file(s) that are not this run's ({}{}); pass --force to \
                 replace them, or pull into another folder",
                out_dir.display(),
                in_the_way.len(),
                first.rel,
                if in_the_way.len() > 1 { ", ..." } else { "" }
            )));
        }
    }
    fs::create_dir_all(out_dir).map_err(io_error(out_dir))?;
    let mut prepared = Vec::with_capacity(checked.len());
    for (entry, complete) in checked {
        if let Some(verification) = complete {
            prepared.push(Prepared::Complete(entry, verification));
            continue;
        }
        let parts = part_count(entry.size, part_size);
        let head = header(entry.size, part_size, entry.etag.as_deref());
        let (part, done) = PartFile::open(&entry.dest, &head, entry.size, parts)?;
        let pending = Pending {
            entry,
            part,
            part_size,
        };
        prepared.push(Prepared::Download(Arc::new(pending), done));
    }
    Ok(prepared)
}

/// `Some` when the final file exists with the expected size and digest.
pub(crate) fn already_complete(entry: &Entry) -> Result<Option<Verification>, AwsError> {
    let (algorithm, want, verification) = match &entry.expect {
        Expect::Sha256(d) => (Algorithm::Sha256, d, Verification::Sha256),
        Expect::Md5(d) => (Algorithm::Md5, d, Verification::Md5),
        Expect::Nothing => return Ok(None),
    };
    match fs::metadata(&entry.dest) {
        Ok(m) if m.is_file() && m.len() == entry.size => {}
        _ => return Ok(None),
    }
    let have = digest_file(&entry.dest, algorithm)?;
    Ok((&have == want).then_some(verification))
}

pub(crate) fn part_count(size: u64, part_size: u64) -> u64 {
    size.div_ceil(part_size)
}

/// (offset, length) of part `index`.
pub(crate) fn part_range(size: u64, part_size: u64, index: u64) -> (u64, u64) {
    let start = index * part_size;
    (start, part_size.min(size - start))
}
