//! The network half of a pull: ranged GETs written into `.part` files, and the
//! check that turns a complete `.part` into the final file or removes it.

use std::sync::Arc;

use aws_sdk_s3::Client;

use super::partfile::{digest_file, Algorithm};
use super::plan::{part_range, Entry, Expect, Pending};
use super::pull::Verification;
use super::s3::object_error;
use super::MANIFEST;
use crate::aws::{call_error, AwsError};

/// A body that breaks off mid-part is fetched again this many times in all
/// (the SDK itself retries failed requests, not broken bodies).
const BODY_ATTEMPTS: usize = 3;

pub(crate) enum Outcome {
    Part {
        file: usize,
        bytes: u64,
    },
    Verified {
        file: usize,
        verification: Verification,
    },
}

/// One ranged GET, pinned to the listed version of the object by `If-Match`
/// so that parts of two different uploads are never stitched together.
pub(crate) async fn fetch_part(
    client: Client,
    bucket: String,
    file: Arc<Pending>,
    index: usize,
    part: u64,
) -> Result<Outcome, AwsError> {
    let entry = &file.entry;
    let (offset, length) = part_range(entry.size, file.part_size, part);
    let range = format!("bytes={offset}-{}", offset + length - 1);
    let mut attempt = 0;
    let bytes = loop {
        attempt += 1;
        let response = client
            .get_object()
            .bucket(&bucket)
            .key(&entry.key)
            .range(&range)
            .set_if_match(entry.etag.clone())
            .send()
            .await
            .map_err(|e| changed_or(&bucket, entry, call_error("s3:GetObject", e)))?;
        let broke = match response.body.collect().await {
            Ok(body) => {
                let bytes = body.into_bytes();
                if bytes.len() as u64 == length {
                    break bytes;
                }
                format!("{} bytes arrived instead of {length}", bytes.len())
            }
            Err(e) => e.to_string(),
        };
        if attempt >= BODY_ATTEMPTS {
            return Err(AwsError::call(
                "s3:GetObject",
                format!(
                    "s3://{bucket}/{} {range}: {broke} ({attempt} attempts)",
                    entry.key
                ),
                "run the pull again to resume",
            ));
        }
    };
    let writer = file.clone();
    tokio::task::spawn_blocking(move || writer.part.write_part(part, offset, &bytes))
        .await
        .map_err(|_| AwsError::RuntimeGone)??;
    Ok(Outcome::Part {
        file: index,
        bytes: length,
    })
}

pub(crate) fn changed_or(bucket: &str, entry: &Entry, error: AwsError) -> AwsError {
    match error.code() {
        Some("PreconditionFailed") => AwsError::Refused(format!(
            "s3://{bucket}/{} changed while it was being pulled (its ETag is no longer {}); \
             run the pull again to fetch the new version",
            entry.key,
            entry.etag.as_deref().unwrap_or("-")
        )),
        _ => object_error(bucket, &entry.key, error),
    }
}

/// Checks a fully downloaded `.part` and renames it into place, or removes
/// it and names both digests.
pub(crate) async fn verify(
    client: Client,
    bucket: String,
    file: Arc<Pending>,
    index: usize,
) -> Result<Outcome, AwsError> {
    let entry = &file.entry;
    let (algorithm, want) = match &entry.expect {
        Expect::Sha256(d) => (Some(Algorithm::Sha256), d.as_str()),
        Expect::Md5(d) => (Some(Algorithm::Md5), d.as_str()),
        Expect::Nothing => (None, ""),
    };
    let have = match algorithm {
        Some(algorithm) => {
            let f = file.clone();
            let digest =
                tokio::task::spawn_blocking(move || digest_file(&f.part.part_path, algorithm))
                    .await
                    .map_err(|_| AwsError::RuntimeGone)??;
            Some(digest)
        }
        None => None,
    };
    let verification = match (algorithm, have) {
        (Some(Algorithm::Sha256), Some(have)) if have == want => Verification::Sha256,
        (Some(Algorithm::Md5), Some(have)) if have == want => Verification::Md5,
        (Some(Algorithm::Md5), Some(_))
            if etag_is_not_md5(&client, &bucket, &entry.key).await? =>
        {
            Verification::Unverified
        }
        (Some(algorithm), Some(have)) => {
            let f = file.clone();
            tokio::task::spawn_blocking(move || f.part.discard())
                .await
                .map_err(|_| AwsError::RuntimeGone)??;
            let (name, source) = match algorithm {
                Algorithm::Sha256 => ("sha256", format!("the run's {MANIFEST} lists")),
                Algorithm::Md5 => ("md5", "the object's ETag says".to_string()),
            };
            return Err(AwsError::Refused(format!(
                "{} (s3://{bucket}/{}) is damaged: {source} {name} {want}, the download has \
                 {have}; the partial download was removed. Run the pull again; if it fails \
                 the same way the archive in S3 is damaged (re-upload the run from the instance)",
                entry.rel, entry.key
            )));
        }
        _ => Verification::Unverified,
    };
    let f = file.clone();
    tokio::task::spawn_blocking(move || f.part.commit(&f.entry.dest))
        .await
        .map_err(|_| AwsError::RuntimeGone)??;
    Ok(Outcome::Verified {
        file: index,
        verification,
    })
}

/// With KMS or customer-key encryption the ETag of even a single-part upload
/// is not the MD5 of the body, so a mismatch proves nothing.
pub(crate) async fn etag_is_not_md5(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<bool, AwsError> {
    let head = client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| object_error(bucket, key, call_error("s3:HeadObject", e)))?;
    let kms = head
        .server_side_encryption()
        .is_some_and(|s| s.as_str().starts_with("aws:kms"));
    Ok(kms || head.sse_customer_algorithm().is_some())
}
