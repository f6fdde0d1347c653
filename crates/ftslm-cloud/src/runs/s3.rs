//! The S3 calls runs are built from: complete (paginated) listings, small
//! whole-object reads, and the mapping of S3's error codes to what the user
//! should do.

use aws_sdk_s3::Client;

use crate::aws::{call_error, AwsError, CloudTarget};

/// One object of a listing.
#[derive(Debug, Clone)]
pub(crate) struct S3Object {
    pub key: String,
    pub size: u64,
    /// As S3 sends it, quotes included (the form `If-Match` wants).
    pub etag: Option<String>,
}

/// `PREFIX/` (or nothing when the prefix is empty): where run folders live.
pub(crate) fn runs_root(target: &CloudTarget) -> String {
    match target.prefix() {
        "" => String::new(),
        p => format!("{p}/"),
    }
}

/// `PREFIX/TIMESTAMP/`.
pub(crate) fn run_root(target: &CloudTarget, timestamp: &str) -> String {
    format!("{}{timestamp}/", runs_root(target))
}

/// Every object under `prefix`, and with a delimiter the common prefixes too,
/// following continuation tokens: one page holds at most 1,000 entries and a
/// long-lived bucket has more runs than that.
pub(crate) async fn list_all(
    client: &Client,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
) -> Result<(Vec<S3Object>, Vec<String>), AwsError> {
    let (mut objects, mut prefixes) = (Vec::new(), Vec::new());
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| bucket_error(bucket, call_error("s3:ListObjectsV2", e)))?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            objects.push(S3Object {
                key: key.to_string(),
                size: u64::try_from(object.size().unwrap_or(0)).unwrap_or(0),
                etag: object.e_tag().map(str::to_string),
            });
        }
        prefixes.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_string)),
        );
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
            _ => break,
        }
    }
    Ok((objects, prefixes))
}

/// The run folders under the prefix, newest first (the names sort by time),
/// and what else is there.
pub(crate) async fn run_folders(
    client: &Client,
    bucket: &str,
    target: &CloudTarget,
) -> Result<(Vec<String>, Vec<super::IgnoredEntry>), AwsError> {
    let root = runs_root(target);
    let (objects, prefixes) = list_all(client, bucket, &root, Some("/")).await?;
    let mut runs = Vec::new();
    let mut ignored = Vec::new();
    for prefix in prefixes {
        let name = prefix[root.len()..].trim_end_matches('/');
        if super::is_run_timestamp(name) {
            runs.push(name.to_string());
        } else {
            ignored.push(super::IgnoredEntry {
                key: prefix.clone(),
                reason: "folder name is not a run timestamp YYYYmmdd_HHMMSS".to_string(),
            });
        }
    }
    for object in objects {
        ignored.push(super::IgnoredEntry {
            key: object.key,
            reason: "an object beside the run folders, not inside one".to_string(),
        });
    }
    runs.sort_unstable_by(|a, b| b.cmp(a));
    Ok((runs, ignored))
}

/// The whole body of a small object (summaries, manifests), refused past
/// `limit` bytes so a wrong key cannot exhaust memory.
pub(crate) async fn get_small(
    client: &Client,
    bucket: &str,
    key: &str,
    limit: u64,
) -> Result<Vec<u8>, AwsError> {
    let response = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| object_error(bucket, key, call_error("s3:GetObject", e)))?;
    if let Some(length) = response.content_length().filter(|&l| l as u64 > limit) {
        return Err(AwsError::Refused(format!(
            "s3://{bucket}/{key} is {length} bytes, more than the {limit} expected of it; \
             is the run folder damaged?"
        )));
    }
    let body = response.body.collect().await.map_err(|e| {
        AwsError::call(
            "s3:GetObject",
            format!("reading s3://{bucket}/{key} broke off: {e}"),
            "run the command again",
        )
    })?;
    Ok(body.into_bytes().to_vec())
}

/// A missing bucket is a configuration problem with a known fix.
pub(crate) fn bucket_error(bucket: &str, error: AwsError) -> AwsError {
    match error.code() {
        Some("NoSuchBucket") => AwsError::NotFound {
            what: format!("bucket s3://{bucket}"),
            fix: format!(
                "check aws.s3.bucket (`ftslm config show`) or create the bucket \
                 (`aws s3 mb s3://{bucket}`)"
            ),
        },
        _ => error,
    }
}

/// A missing object or bucket, named.
pub(crate) fn object_error(bucket: &str, key: &str, error: AwsError) -> AwsError {
    match error.code() {
        Some("NoSuchKey") => AwsError::NotFound {
            what: format!("s3://{bucket}/{key}"),
            fix: "it was listed a moment ago: was the run deleted or replaced? \
                  `ftslm runs list` shows what is there now"
                .to_string(),
        },
        _ => bucket_error(bucket, error),
    }
}
