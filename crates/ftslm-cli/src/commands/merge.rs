//! `ftslm merge` (being written).

use std::process::ExitCode;

use crate::cli::{GlobalArgs, MergeArgs};

pub fn run(_global: &GlobalArgs, _args: &MergeArgs) -> anyhow::Result<ExitCode> {
    super::unbuilt::not_built("merge", "the QLoRA training engine")
}
