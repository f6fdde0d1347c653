//! What the CLI test files share: the binary, kept away from the user's
//! settings, and a small synthetic data set.

// Each test file compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::path::Path;

use assert_cmd::Command;

/// `ftslm` run in `cwd`, with the user's config, FTSLM_* variables and
/// real AWS kept out.
pub fn ftslm(cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("ftslm").unwrap();
    cmd.current_dir(cwd)
        .env_remove("FTSLM_TRAINING__LEARNING_RATE")
        .env_remove("FTSLM_DEVICE")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// 8 training and 4 validation records in `dir/data`.
pub fn synth(dir: &Path) {
    ftslm(dir)
        .args([
            "data",
            "synth",
            "--out",
            "data",
            "--train",
            "8",
            "--validation",
            "4",
        ])
        .assert()
        .success();
}
