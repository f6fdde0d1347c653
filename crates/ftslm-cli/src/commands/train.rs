//! `ftslm train` (being written).

use std::process::ExitCode;

use crate::cli::{GlobalArgs, TrainArgs};

pub fn run(_global: &GlobalArgs, _args: &TrainArgs) -> anyhow::Result<ExitCode> {
    super::unbuilt::not_built("train", "the QLoRA training engine")
}
