//! What can stop a training run, each variant naming the file, step or option at
//! fault and what to do about it.

use std::path::PathBuf;

use crate::engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid training option `{key}`: {message}")]
    Option { key: &'static str, message: String },

    #[error("the training set is empty: provide at least one micro-batch of training data")]
    EmptyTrainSet,

    #[error(
        "the evaluation set has no target tokens: every answer token was masked or truncated; \
         check the validation file and max_seq_length"
    )]
    EmptyEvalSet,

    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A crash-safe write or directory step (ftslm-fs).
    #[error(transparent)]
    Fs(#[from] ftslm_fs::FsError),

    /// The output directory is another live process's run.
    #[error(transparent)]
    Locked(#[from] ftslm_fs::LockError),

    #[error("{}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },

    #[error(
        "{}: checkpoint was written with {key} = {saved}, this run has {now}; \
         restore the setting, or start over with --no-resume",
        path.display()
    )]
    ResumeMismatch {
        path: PathBuf,
        key: &'static str,
        saved: String,
        now: String,
    },

    #[error(
        "{} was written by a run with other settings; resuming would mix two runs:\n{}\n\
         start over with --no-resume (the old results move to a backup folder), restore the \
         settings, or write to another --output-dir{}",
        path.display(),
        changed.iter().map(|c| format!("  {}: {} → {}", c.key, c.saved, c.now)).collect::<Vec<_>>().join("\n"),
        allowable_hint(changed)
    )]
    SettingsChanged {
        path: PathBuf,
        changed: Vec<SettingChange>,
    },

    #[error("the model failed during {during} at step {step}: {source}")]
    Engine {
        during: &'static str,
        step: u64,
        #[source]
        source: EngineError,
    },

    #[error(
        "training diverged at step {step}: {what} is {value}; lower learning_rate, raise \
         warmup_steps or max_grad_norm clipping, or check the data{}",
        resume_hint(last_checkpoint)
    )]
    NonFinite {
        step: u64,
        what: &'static str,
        value: f64,
        last_checkpoint: Option<PathBuf>,
    },

    #[error(
        "step {step} has no target tokens in its {micro_batches} micro-batch(es): every answer \
         token was masked or truncated; raise max_seq_length or drop such examples"
    )]
    NoTargetTokens { step: u64, micro_batches: usize },

    #[error(
        "trainable tensor `{name}` has {actual} values but the optimizer state has {expected}; \
         the adapter's shape changed since the checkpoint (different LoRA r or target_modules?)"
    )]
    ParameterShape {
        name: String,
        expected: usize,
        actual: usize,
    },
}

fn resume_hint(last: &Option<PathBuf>) -> String {
    match last {
        Some(p) => format!(" (the last good checkpoint is {})", p.display()),
        None => String::new(),
    }
}

impl TrainError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        TrainError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        TrainError::Checkpoint {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn option(key: &'static str, message: impl Into<String>) -> Self {
        TrainError::Option {
            key,
            message: message.into(),
        }
    }
}

/// One setting that differs between a checkpoint's run and this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingChange {
    pub key: String,
    pub saved: String,
    pub now: String,
}

/// The `--allow-changed` hint when every change is one that may be allowed.
fn allowable_hint(changed: &[SettingChange]) -> String {
    let safe = |c: &SettingChange| crate::options::SAFE_TO_CHANGE.contains(&c.key.as_str());
    if changed.iter().all(safe) {
        let flags: Vec<String> = changed
            .iter()
            .map(|c| format!("--allow-changed {}", c.key))
            .collect();
        format!(", or continue with {}", flags.join(" "))
    } else {
        String::new()
    }
}
