//! Training runs archived in S3. Each run is a folder
//! `s3://BUCKET/PREFIX/<YYYYmmdd_HHMMSS>/` (the UTC launch time) holding
//! final_model/, best_model/, metrics.jsonl, logs/, run_summary.json and a
//! `SHA256SUMS` manifest. This module owns finding those folders and reading
//! their size and losses ([`list_runs`]), choosing one ([`RunSelector`]), and
//! copying one back ([`pull_run`]) with parallel ranged downloads that resume
//! after a kill and never put a file under its final name before its checksum
//! matched.

mod list;
mod manifest;
pub(crate) mod partfile;
mod plan;
mod pull;
mod read;
mod s3;
mod transfer;

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

pub use list::{catalog_runs, list_runs, IgnoredEntry, RunCatalog, RunListing, RunSummary};
pub use partfile::{PART_DONE_SUFFIX, PART_SUFFIX};
pub use pull::{pull_run, PullEvent, PullOptions, PullReport, Verification};
pub use read::{read_run_files, RunFiles};

/// The checksum manifest at the root of every run.
pub const MANIFEST: &str = "SHA256SUMS";
/// The summary `ftslm train` writes at the root of the run.
pub const SUMMARY: &str = "run_summary.json";

/// Which run a command works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunSelector {
    /// The newest run folder under the prefix.
    Latest,
    /// A run by its folder name, `YYYYmmdd_HHMMSS`.
    Timestamp(String),
}

/// A selector that is neither `latest` nor a run timestamp.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("`{given}` names no run: expected `latest` or a run timestamp YYYYmmdd_HHMMSS (UTC, e.g. 20261129_101500); `ftslm runs list` shows them")]
pub struct BadRunSelector {
    pub given: String,
}

impl FromStr for RunSelector {
    type Err = BadRunSelector;

    fn from_str(s: &str) -> Result<RunSelector, BadRunSelector> {
        let trimmed = s.trim().trim_end_matches('/');
        if trimmed.eq_ignore_ascii_case("latest") {
            Ok(RunSelector::Latest)
        } else if is_run_timestamp(trimmed) {
            Ok(RunSelector::Timestamp(trimmed.to_string()))
        } else {
            Err(BadRunSelector {
                given: s.to_string(),
            })
        }
    }
}

impl fmt::Display for RunSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunSelector::Latest => f.write_str("latest"),
            RunSelector::Timestamp(t) => f.write_str(t),
        }
    }
}

/// `YYYYmmdd_HHMMSS` with plausible month, day and time fields: the folder
/// names the launcher makes, and nothing that merely looks numeric.
pub fn is_run_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 15 || b[8] != b'_' {
        return false;
    }
    if !b[..8].iter().chain(&b[9..]).all(u8::is_ascii_digit) {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(u32::MAX);
    (1..=12).contains(&num(4..6))
        && (1..=31).contains(&num(6..8))
        && num(9..11) < 24
        && num(11..13) < 60
        && num(13..15) < 60
}
