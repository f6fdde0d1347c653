//! The bash scripts ftslm sends to the instance through SSM `AWS-RunShellScript`:
//! `deploy`, `train`, `checkpoints clean` and `cloud test`. Each script is a
//! static body in `crates/ftslm-cloud/scripts/` (so it can be read, linted and
//! run by itself) behind a header of `readonly NAME=value` lines that this
//! module renders, every value shell-quoted by `shlex`, lists as bash arrays.
//! Nothing secret is rendered: the Hub token is read on the instance from
//! Secrets Manager, and a value that looks like a token is refused.
//!
//! The scripts report progress on stdout as `ftslm-step: <step> ok|skipped|failed`
//! lines (see [`parse_step_line`]) and where a run was archived as
//! `ftslm-run: s3://…/` (see [`parse_run_line`]). Every script cancels a
//! pending shutdown when it starts and schedules `shutdown -h +IDLE_MINUTES`
//! when it ends, unless another ftslm script is still running on the instance.
//!
//! The rendered text starts with `#!/usr/bin/env bash`; SSM writes the
//! commands to a file and executes it, so bash runs it. Long scripts (train)
//! need the command's `executionTimeout` raised above SSM's default hour.

use std::borrow::Cow;

use thiserror::Error;

use crate::aws::{AwsError, CloudTarget};
use crate::secret::redact;

const COMMON: &str = include_str!("../scripts/common.sh");
const DEPLOY: &str = include_str!("../scripts/deploy.sh");
const TRAIN: &str = include_str!("../scripts/train.sh");
const CLEAN: &str = include_str!("../scripts/checkpoints_clean.sh");
const EXTRACT_TEST: &str = include_str!("../scripts/extract_test.sh");

/// The progress line prefix: `ftslm-step: <step> <status>`.
pub const STEP_PREFIX: &str = "ftslm-step: ";
/// The archived-run line prefix: `ftslm-run: s3://BUCKET/PREFIX/TIMESTAMP/`.
pub const RUN_PREFIX: &str = "ftslm-run: ";

/// The steps `deploy.sh` reports, in order (each one `ok`, `skipped` or `failed`).
pub const DEPLOY_STEPS: &[&str] = &[
    "volume-device",
    "volume-filesystem",
    "volume-mount",
    "volume-fstab",
    "volume-dirs",
    "ecr-login",
    "image-pull",
    "gpu-check",
    "output-owner",
];
/// The steps `train.sh` reports, in order.
pub const TRAIN_STEPS: &[&str] = &["hub-token", "train", "upload"];
/// The steps `extract_test.sh` reports, in order.
pub const EXTRACT_TEST_STEPS: &[&str] = &["adapter-pull", "extract"];

/// How a step ended, as a script reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Ok,
    Skipped,
    Failed,
}

/// `Some((step, status))` for an `ftslm-step:` line of a script's output.
pub fn parse_step_line(line: &str) -> Option<(&str, StepStatus)> {
    let rest = line.trim_end().strip_prefix(STEP_PREFIX)?;
    let (step, status) = rest.split_once(' ')?;
    let status = match status {
        "ok" => StepStatus::Ok,
        "skipped" => StepStatus::Skipped,
        "failed" => StepStatus::Failed,
        _ => return None,
    };
    Some((step, status))
}

/// The S3 URI of an `ftslm-run:` line (`s3://BUCKET/PREFIX/TIMESTAMP/`).
pub fn parse_run_line(line: &str) -> Option<&str> {
    line.trim_end().strip_prefix(RUN_PREFIX)
}

/// A value that cannot go into a script.
#[derive(Debug, Error)]
pub enum ScriptError {
    #[error("{field} contains a NUL byte, which no shell word can hold")]
    Nul { field: &'static str },
    #[error("{field} = {value:?} {problem}")]
    Invalid {
        field: &'static str,
        /// The value, tokens redacted.
        value: String,
        problem: &'static str,
    },
    /// The scripts read the Hub token on the instance; one never travels in a command.
    #[error("{field} looks like it holds a Hugging Face token ({value}); tokens are read on the instance from Secrets Manager and never sent in a command")]
    LooksLikeSecret { field: &'static str, value: String },
}

/// `ftslm cloud deploy`: mount the EBS volume, pull the image, check the GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployScript {
    pub volume_id: String,
    pub mount_path: String,
    pub region: String,
    /// The ECR registry host, `ACCOUNT.dkr.ecr.REGION.amazonaws.com`.
    pub registry: String,
    /// `REGISTRY/REPOSITORY:TAG`.
    pub image: String,
    pub skip_volume: bool,
    pub skip_image: bool,
    pub idle_shutdown_minutes: u64,
}

/// `ftslm cloud train`: `ftslm train` in the image, then the run to S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainScript {
    pub image: String,
    pub mount_path: String,
    pub region: String,
    /// `YYYYmmdd_HHMMSS` (UTC), chosen by the laptop at launch.
    pub run_timestamp: String,
    pub bucket: String,
    /// Without slashes at either end (they are trimmed); may be empty.
    pub prefix: String,
    /// Arguments after `ftslm train --output-dir /workspace/output`.
    pub train_args: Vec<String>,
    /// The name of the Secrets Manager secret holding the Hub token; empty: none.
    pub hf_token_secret: String,
    pub idle_shutdown_minutes: u64,
    /// Stop training (SIGTERM, then SIGKILL 120 s later) after this long.
    pub max_runtime_seconds: Option<u64>,
}

/// `ftslm checkpoints clean`: free the volume of checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanScript {
    pub mount_path: String,
    pub dry_run: bool,
    pub keep_final_model: bool,
    pub idle_shutdown_minutes: u64,
}

/// `ftslm cloud test`: `ftslm extract` on the instance with a run's adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractTestScript {
    pub image: String,
    pub mount_path: String,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
    pub run_timestamp: String,
    pub text: String,
    /// `--model` inside the image; `None`: the adapter's `base_model_name_or_path`.
    pub base_model: Option<String>,
    pub idle_shutdown_minutes: u64,
}

impl DeployScript {
    /// The deploy script for `target`; the volume id and registry are required
    /// only for the parts that are not skipped.
    pub fn for_target(
        target: &CloudTarget,
        skip_volume: bool,
        skip_image: bool,
    ) -> Result<DeployScript, AwsError> {
        let volume_id = if skip_volume {
            String::new()
        } else {
            target.volume_id()?.to_string()
        };
        let (registry, image) = if skip_image {
            (String::new(), String::new())
        } else {
            (target.registry()?.to_string(), target.image()?)
        };
        Ok(DeployScript {
            volume_id,
            mount_path: target.settings.ebs.mount_path.clone(),
            region: target.region().to_string(),
            registry,
            image,
            skip_volume,
            skip_image,
            idle_shutdown_minutes: target.settings.ec2.idle_shutdown_minutes,
        })
    }

    pub fn render(&self) -> Result<String, ScriptError> {
        let mut h = Header::new("deploy");
        if !self.skip_volume {
            check_volume_id(&self.volume_id)?;
        }
        if !self.skip_image {
            require("aws.ecr.registry", &self.registry)?;
            require("image", &self.image)?;
        }
        check_mount_path(&self.mount_path)?;
        h.text("VOLUME_ID", "aws.ebs.volume_id", &self.volume_id)?
            .text("MOUNT_PATH", "aws.ebs.mount_path", &self.mount_path)?
            .text("REGION", "aws.region", &self.region)?
            .text("REGISTRY", "aws.ecr.registry", &self.registry)?
            .text("IMAGE", "image", &self.image)?
            .flag("SKIP_VOLUME", self.skip_volume)
            .flag("SKIP_IMAGE", self.skip_image)
            .number("IDLE_SHUTDOWN_MINUTES", self.idle_shutdown_minutes);
        Ok(h.finish("deploy.sh", DEPLOY))
    }
}

impl TrainScript {
    pub fn for_target(
        target: &CloudTarget,
        run_timestamp: &str,
        train_args: Vec<String>,
        max_runtime_seconds: Option<u64>,
    ) -> Result<TrainScript, AwsError> {
        Ok(TrainScript {
            image: target.image()?,
            mount_path: target.settings.ebs.mount_path.clone(),
            region: target.region().to_string(),
            run_timestamp: run_timestamp.to_string(),
            bucket: target.bucket()?.to_string(),
            prefix: target.prefix().to_string(),
            train_args,
            hf_token_secret: target.settings.secrets_manager.hf_token_secret.clone(),
            idle_shutdown_minutes: target.settings.ec2.idle_shutdown_minutes,
            max_runtime_seconds,
        })
    }

    pub fn render(&self) -> Result<String, ScriptError> {
        require("image", &self.image)?;
        check_mount_path(&self.mount_path)?;
        check_timestamp(&self.run_timestamp)?;
        require("aws.s3.bucket", &self.bucket)?;
        if self.max_runtime_seconds == Some(0) {
            return Err(ScriptError::Invalid {
                field: "--timeout",
                value: "0".into(),
                problem: "must be at least one second",
            });
        }
        let max_runtime = self
            .max_runtime_seconds
            .map(|s| s.to_string())
            .unwrap_or_default();
        let mut h = Header::new("train");
        h.text("IMAGE", "image", &self.image)?
            .text("MOUNT_PATH", "aws.ebs.mount_path", &self.mount_path)?
            .text("REGION", "aws.region", &self.region)?
            .text("RUN_TIMESTAMP", "run timestamp", &self.run_timestamp)?
            .text("BUCKET", "aws.s3.bucket", &self.bucket)?
            .text("PREFIX", "aws.s3.prefix", self.prefix.trim_matches('/'))?
            .list("TRAIN_ARGS", "training argument", &self.train_args)?
            .text(
                "HF_TOKEN_SECRET",
                "aws.secrets_manager.hf_token_secret",
                &self.hf_token_secret,
            )?
            .number("IDLE_SHUTDOWN_MINUTES", self.idle_shutdown_minutes)
            .text("MAX_RUNTIME_SECONDS", "--timeout", &max_runtime)?;
        Ok(h.finish("train.sh", TRAIN))
    }
}

impl CleanScript {
    pub fn for_target(target: &CloudTarget, dry_run: bool, keep_final_model: bool) -> CleanScript {
        CleanScript {
            mount_path: target.settings.ebs.mount_path.clone(),
            dry_run,
            keep_final_model,
            idle_shutdown_minutes: target.settings.ec2.idle_shutdown_minutes,
        }
    }

    pub fn render(&self) -> Result<String, ScriptError> {
        check_mount_path(&self.mount_path)?;
        let mut h = Header::new("checkpoints-clean");
        h.text("MOUNT_PATH", "aws.ebs.mount_path", &self.mount_path)?
            .flag("DRY_RUN", self.dry_run)
            .flag("KEEP_FINAL_MODEL", self.keep_final_model)
            .number("IDLE_SHUTDOWN_MINUTES", self.idle_shutdown_minutes);
        Ok(h.finish("checkpoints_clean.sh", CLEAN))
    }
}

impl ExtractTestScript {
    pub fn for_target(
        target: &CloudTarget,
        run_timestamp: &str,
        text: &str,
        base_model: Option<String>,
    ) -> Result<ExtractTestScript, AwsError> {
        Ok(ExtractTestScript {
            image: target.image()?,
            mount_path: target.settings.ebs.mount_path.clone(),
            region: target.region().to_string(),
            bucket: target.bucket()?.to_string(),
            prefix: target.prefix().to_string(),
            run_timestamp: run_timestamp.to_string(),
            text: text.to_string(),
            base_model,
            idle_shutdown_minutes: target.settings.ec2.idle_shutdown_minutes,
        })
    }

    pub fn render(&self) -> Result<String, ScriptError> {
        require("image", &self.image)?;
        check_mount_path(&self.mount_path)?;
        check_timestamp(&self.run_timestamp)?;
        require("aws.s3.bucket", &self.bucket)?;
        require("--text", &self.text)?;
        let mut h = Header::new("extract-test");
        h.text("IMAGE", "image", &self.image)?
            .text("MOUNT_PATH", "aws.ebs.mount_path", &self.mount_path)?
            .text("REGION", "aws.region", &self.region)?
            .text("BUCKET", "aws.s3.bucket", &self.bucket)?
            .text("PREFIX", "aws.s3.prefix", self.prefix.trim_matches('/'))?
            .text("RUN_TIMESTAMP", "run timestamp", &self.run_timestamp)?
            .text("TEXT", "--text", &self.text)?
            .text(
                "BASE_MODEL",
                "--model",
                self.base_model.as_deref().unwrap_or(""),
            )?
            .number("IDLE_SHUTDOWN_MINUTES", self.idle_shutdown_minutes);
        Ok(h.finish("extract_test.sh", EXTRACT_TEST))
    }
}

/// The `readonly` lines in front of a script body.
struct Header {
    script: &'static str,
    lines: String,
}

impl Header {
    fn new(script: &'static str) -> Header {
        let mut h = Header {
            script,
            lines: String::new(),
        };
        h.raw("SCRIPT_NAME", script);
        h
    }

    fn raw(&mut self, var: &str, word: &str) {
        self.lines.push_str(&format!("readonly {var}={word}\n"));
    }

    fn text(
        &mut self,
        var: &str,
        field: &'static str,
        value: &str,
    ) -> Result<&mut Header, ScriptError> {
        let word = quote(field, value)?;
        self.raw(var, &word);
        Ok(self)
    }

    fn list(
        &mut self,
        var: &str,
        field: &'static str,
        values: &[String],
    ) -> Result<&mut Header, ScriptError> {
        let words = values
            .iter()
            .map(|v| quote(field, v))
            .collect::<Result<Vec<_>, _>>()?;
        self.lines
            .push_str(&format!("readonly -a {var}=({})\n", words.join(" ")));
        Ok(self)
    }

    fn flag(&mut self, var: &str, value: bool) -> &mut Header {
        self.raw(var, if value { "true" } else { "false" });
        self
    }

    fn number(&mut self, var: &str, value: u64) -> &mut Header {
        self.raw(var, &value.to_string());
        self
    }

    fn finish(&self, file: &str, body: &str) -> String {
        format!(
            "#!/usr/bin/env bash\n\
             # ftslm {script}, rendered by ftslm {version}: the inputs, then\n\
             # crates/ftslm-cloud/scripts/common.sh and crates/ftslm-cloud/scripts/{file}.\n\
             set -euo pipefail\n\
             {lines}\n\
             {common}\n\
             {body}",
            script = self.script,
            version = env!("CARGO_PKG_VERSION"),
            lines = self.lines,
            common = without_shebang(COMMON),
            body = without_shebang(body),
        )
    }
}

/// One shell word holding exactly `value`.
fn quote<'a>(field: &'static str, value: &'a str) -> Result<Cow<'a, str>, ScriptError> {
    let redacted = redact(value);
    if redacted != value {
        return Err(ScriptError::LooksLikeSecret {
            field,
            value: redacted,
        });
    }
    shlex::try_quote(value).map_err(|_| ScriptError::Nul { field })
}

fn without_shebang(text: &str) -> &str {
    if text.starts_with("#!") {
        text.split_once('\n').map_or("", |(_, rest)| rest)
    } else {
        text
    }
}

fn require(field: &'static str, value: &str) -> Result<(), ScriptError> {
    if value.trim().is_empty() {
        return Err(ScriptError::Invalid {
            field,
            value: value.to_string(),
            problem: "is empty",
        });
    }
    Ok(())
}

/// An absolute path an fstab line and `rm -rf MOUNT/output/...` can rely on.
fn check_mount_path(path: &str) -> Result<(), ScriptError> {
    let problem = if !path.starts_with('/') {
        Some("must be an absolute path")
    } else if path.trim_end_matches('/').is_empty() {
        Some("must not be the root directory")
    } else if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("must not contain whitespace (it goes into /etc/fstab)")
    } else if path.split('/').any(|part| part == "..") {
        Some("must not contain `..`")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ScriptError::Invalid {
            field: "aws.ebs.mount_path",
            value: redact(path),
            problem,
        }),
        None => Ok(()),
    }
}

/// `vol-` and hex digits: the NVMe serial the device is found by is derived from it.
fn check_volume_id(id: &str) -> Result<(), ScriptError> {
    let ok = id
        .strip_prefix("vol-")
        .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(ScriptError::Invalid {
            field: "aws.ebs.volume_id",
            value: redact(id),
            problem: "is not an EBS volume id (vol- followed by hex digits)",
        })
    }
}

/// `YYYYmmdd_HHMMSS`, the run directory name in S3 and on the volume.
fn check_timestamp(ts: &str) -> Result<(), ScriptError> {
    let b = ts.as_bytes();
    let ok = b.len() == 15
        && b[8] == b'_'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 8 || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ScriptError::Invalid {
            field: "run timestamp",
            value: redact(ts),
            problem: "is not YYYYmmdd_HHMMSS",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_and_run_lines_parse() {
        assert_eq!(
            parse_step_line("ftslm-step: volume-mount ok\n"),
            Some(("volume-mount", StepStatus::Ok))
        );
        assert_eq!(
            parse_step_line("ftslm-step: gpu-check failed"),
            Some(("gpu-check", StepStatus::Failed))
        );
        assert_eq!(parse_step_line("ftslm-step: x maybe"), None);
        assert_eq!(parse_step_line("ftslm: note"), None);
        assert_eq!(
            parse_run_line("ftslm-run: s3://b/p/20260101_000000/"),
            Some("s3://b/p/20260101_000000/")
        );
    }

    fn target(volume_id: Option<&str>, bucket: Option<&str>) -> CloudTarget {
        use ftslm_config::*;
        CloudTarget::new(AwsSettings {
            region: "eu-west-1".into(),
            ec2: Ec2Settings {
                instance_id: Some("i-0abc".into()),
                instance_type: "g6.2xlarge".into(),
                hourly_price_usd: None,
                idle_shutdown_minutes: 25,
            },
            ebs: EbsSettings {
                volume_id: volume_id.map(str::to_string),
                mount_path: "/mnt/training".into(),
                volume_type: "gp3".into(),
                size_gb: 100,
            },
            s3: S3Settings {
                bucket: bucket.map(str::to_string),
                prefix: "/runs/".into(),
            },
            ecr: EcrSettings {
                repository: "ftslm".into(),
                registry: Some("1.dkr.ecr.eu-west-1.amazonaws.com".into()),
                image_tag: "abc123".into(),
            },
            secrets_manager: SecretsManagerSettings {
                hf_token_secret: "hf-token".into(),
                aws_credentials_secret: String::new(),
                docker_token_secret: String::new(),
            },
            cloudwatch: CloudWatchSettings {
                log_group: "/ftslm".into(),
                log_stream_prefix: "ftslm".into(),
            },
        })
    }

    #[test]
    fn scripts_take_their_values_from_the_configured_target() {
        let t = target(Some("vol-0abc"), Some("bucket"));
        let d = DeployScript::for_target(&t, false, false).unwrap();
        assert_eq!(
            (
                d.volume_id.as_str(),
                d.image.as_str(),
                d.idle_shutdown_minutes
            ),
            (
                "vol-0abc",
                "1.dkr.ecr.eu-west-1.amazonaws.com/ftslm:abc123",
                25
            )
        );
        let tr = TrainScript::for_target(&t, "20260101_000000", vec![], Some(60)).unwrap();
        assert_eq!(
            (tr.prefix.as_str(), tr.hf_token_secret.as_str()),
            ("runs", "hf-token")
        );
        assert!(tr
            .render()
            .unwrap()
            .contains("readonly MAX_RUNTIME_SECONDS=60\n"));

        // A missing volume id matters only when the volume part runs.
        let t = target(None, None);
        let err = DeployScript::for_target(&t, false, true).unwrap_err();
        assert!(err.to_string().contains("aws.ebs.volume_id"), "{err}");
        assert!(DeployScript::for_target(&t, true, false).is_ok());
        let err = TrainScript::for_target(&t, "20260101_000000", vec![], None).unwrap_err();
        assert!(err.to_string().contains("aws.s3.bucket"), "{err}");
    }

    #[test]
    fn values_are_checked_before_they_reach_a_script() {
        assert!(check_volume_id("vol-0123abcd").is_ok());
        assert!(check_volume_id("vol-").is_err());
        assert!(check_volume_id("vol-12; rm").is_err());
        assert!(check_mount_path("/mnt/training").is_ok());
        for bad in ["mnt", "/", "//", "/mnt/a b", "/mnt/../etc"] {
            assert!(check_mount_path(bad).is_err(), "{bad}");
        }
        assert!(check_timestamp("20261129_101500").is_ok());
        for bad in ["2026112_101500", "20261129-101500", "20261129_10150x"] {
            assert!(check_timestamp(bad).is_err(), "{bad}");
        }
    }
}
