//! `ftslm model inspect` (being written).

use std::process::ExitCode;

use crate::cli::{GlobalArgs, ModelCommand};

pub fn run(_global: &GlobalArgs, _cmd: ModelCommand) -> anyhow::Result<ExitCode> {
    super::unbuilt::not_built("model inspect", "the QLoRA training engine")
}
