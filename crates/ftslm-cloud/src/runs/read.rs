//! A few small files of one run read straight from S3 (for `ftslm metrics`:
//! `metrics.jsonl`, `run_summary.json`), each checked against the run's
//! `SHA256SUMS` when it lists the file.

use sha2::{Digest, Sha256};

use super::manifest::parse_manifest;
use super::partfile::hex;
use super::s3::{get_small, list_all, run_folders, run_root};
use super::{RunSelector, MANIFEST};
use crate::aws::{Aws, AwsError, CloudTarget};

/// Bytes one file of this kind may have (a metrics history of a very long
/// run is a few MB).
const FILE_LIMIT: u64 = 64 << 20;

/// Files read from one run folder in S3.
#[derive(Debug, Clone)]
pub struct RunFiles {
    /// The run's timestamp (what `latest` resolved to).
    pub run: String,
    /// The bytes of each file asked for, in the order asked; `None` where the
    /// run has no such file.
    pub files: Vec<Option<Vec<u8>>>,
}

/// The run `selector` names, and the bytes of each of `names` (relative to
/// the run folder).
pub fn read_run_files(
    aws: &Aws,
    target: &CloudTarget,
    selector: &RunSelector,
    names: &[&str],
) -> Result<RunFiles, AwsError> {
    let bucket = target.bucket()?.to_string();
    let client = aws.s3();
    aws.block_on(async {
        let run = match selector {
            RunSelector::Timestamp(t) => t.clone(),
            RunSelector::Latest => {
                let (runs, _) = run_folders(&client, &bucket, target).await?;
                runs.into_iter()
                    .next()
                    .ok_or_else(|| super::pull::no_run(&bucket, target, "latest", &[]))?
            }
        };
        let root = run_root(target, &run);
        let (objects, _) = list_all(&client, &bucket, &root, None).await?;
        if objects.is_empty() {
            let (runs, _) = run_folders(&client, &bucket, target).await?;
            return Err(super::pull::no_run(&bucket, target, &run, &runs));
        }
        let has = |key: &str| objects.iter().any(|o| o.key == key);
        let manifest_key = format!("{root}{MANIFEST}");
        let manifest = if has(&manifest_key) {
            let text = get_small(&client, &bucket, &manifest_key, FILE_LIMIT).await?;
            let source = format!("s3://{bucket}/{manifest_key}");
            let text = String::from_utf8(text)
                .map_err(|_| AwsError::Refused(format!("{source} is not UTF-8 text")))?;
            Some(parse_manifest(&text, &source).map_err(AwsError::Refused)?)
        } else {
            None
        };
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            let key = format!("{root}{name}");
            if !has(&key) {
                files.push(None);
                continue;
            }
            let bytes = get_small(&client, &bucket, &key, FILE_LIMIT).await?;
            if let Some(want) = manifest.as_ref().and_then(|m| m.get(*name)) {
                let have = hex(&Sha256::digest(&bytes));
                if &have != want {
                    return Err(AwsError::Refused(format!(
                        "s3://{bucket}/{key} has SHA-256 {have} but {MANIFEST} lists {want}; \
                         the run folder is damaged"
                    )));
                }
            }
            files.push(Some(bytes));
        }
        Ok(RunFiles { run, files })
    })?
}
