//! Runs the scripts ftslm sends to the instance, rendered by
//! `ftslm_cloud::scripts`, with bash in a temp directory. PATH holds only
//! stand-ins for what touches the machine or AWS (docker, aws, mount,
//! mountpoint, findmnt, blkid, mkfs, chown, shutdown) and links to harmless
//! real tools (coreutils, sha256sum, timeout, python3...), so a call to
//! anything else fails instead of reaching the real system. Each stand-in
//! appends its argv to a log; state (what is formatted, what is mounted) lives
//! in files, so a second run sees what the first did; `aws s3 cp` copies into a
//! local "bucket" directory.
//!
//! Layout: sandbox.rs (the harness), standin.sh (the stand-ins), one module per
//! script.

mod clean;
mod deploy;
mod extract;
mod render;
mod sandbox;
mod train;

use ftslm_cloud::scripts::{CleanScript, DeployScript, ExtractTestScript, StepStatus, TrainScript};

use sandbox::{s, Sandbox};

pub const VOLUME: &str = "vol-0123456789abcdef0";
pub const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
pub const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ftslm:latest";
pub const TS: &str = "20261129_101500";
pub const BUCKET: &str = "ftslm-runs";
pub const PREFIX: &str = "runs/medical";
pub const TOKEN: &str = "hf_SandboxTokenValue0123456789";
pub const SECRET_NAME: &str = "fine-tune-slm/hf-token";
/// A value that a shell would split, unquote, expand or execute if it were not
/// quoted exactly: spaces, both quotes, `$(...)`, backticks, `;`, a newline.
pub const NASTY: &str = "it's \"quoted\" $(touch PWNED) `touch PWNED2`; echo $HOME\n\\n end";
pub const IDLE: u64 = 17;

fn deploy(sb: &Sandbox) -> DeployScript {
    DeployScript {
        volume_id: VOLUME.into(),
        mount_path: sb.mount_str(),
        region: "us-east-1".into(),
        registry: REGISTRY.into(),
        image: IMAGE.into(),
        skip_volume: false,
        skip_image: false,
        idle_shutdown_minutes: IDLE,
    }
}

fn train(sb: &Sandbox, train_args: Vec<String>) -> TrainScript {
    TrainScript {
        image: IMAGE.into(),
        mount_path: sb.mount_str(),
        region: "us-east-1".into(),
        run_timestamp: TS.into(),
        bucket: BUCKET.into(),
        prefix: format!("/{PREFIX}/"),
        train_args,
        hf_token_secret: SECRET_NAME.into(),
        idle_shutdown_minutes: IDLE,
        max_runtime_seconds: None,
    }
}

fn extract(sb: &Sandbox, text: &str, base_model: Option<&str>) -> ExtractTestScript {
    ExtractTestScript {
        image: IMAGE.into(),
        mount_path: sb.mount_str(),
        region: "us-east-1".into(),
        bucket: BUCKET.into(),
        prefix: PREFIX.into(),
        run_timestamp: TS.into(),
        text: text.into(),
        base_model: base_model.map(str::to_string),
        idle_shutdown_minutes: IDLE,
    }
}

fn clean(sb: &Sandbox, dry_run: bool, keep_final_model: bool) -> CleanScript {
    CleanScript {
        mount_path: sb.mount_str(),
        dry_run,
        keep_final_model,
        idle_shutdown_minutes: IDLE,
    }
}

/// The idle-shutdown rule: a pending shutdown cancelled first, one scheduled last.
fn assert_idle_shutdown(sb: &Sandbox) {
    let calls = sb.calls();
    assert_eq!(
        calls.first().map(|c| c.to_vec()),
        Some(s(&["shutdown", "-c"]))
    );
    assert_eq!(
        calls.last().map(|c| c.to_vec()),
        Some(s(&["shutdown", "-h", &format!("+{IDLE}")]))
    );
}

fn all_ok(steps: &[&str]) -> Vec<(String, StepStatus)> {
    steps
        .iter()
        .map(|s| (s.to_string(), StepStatus::Ok))
        .collect()
}
