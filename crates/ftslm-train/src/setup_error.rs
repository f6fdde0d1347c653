//! What can stop a run before its first step: the model path, the frozen-base
//! choice, the data files, tokenization and the configuration. Each variant
//! names the file, line or key at fault and the fix.

use std::path::PathBuf;

use ftslm_config::ConfigError;
use ftslm_data::tokenize::TokenizeError;
use ftslm_data::validate::DataError;
use ftslm_model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The model path is missing or is not a model this crate can open.
    #[error("model {}: {problem}", path.display())]
    ModelPath { path: PathBuf, problem: String },

    #[error(
        "quantization.base is `gguf`, but {} is a full-precision checkpoint, not a GGUF file; \
         set quantization.base to auto, nf4, f32 or bf16 (--set quantization.base=nf4)",
        path.display()
    )]
    GgufBaseNeedsGguf { path: PathBuf },

    #[error(transparent)]
    Model(#[from] ModelError),

    #[error("tokenizer of {}: {source}", model.display())]
    Tokenizer {
        model: PathBuf,
        #[source]
        source: TokenizeError,
    },

    #[error("{}:{line}: {source}", path.display())]
    Encode {
        path: PathBuf,
        line: usize,
        #[source]
        source: TokenizeError,
    },

    #[error(transparent)]
    Data(#[from] DataError),

    #[error(transparent)]
    Config(#[from] ConfigError),

    /// A configuration value this engine cannot honour.
    #[error("configuration key `{key}`: {message}")]
    Setting { key: &'static str, message: String },
}

impl SetupError {
    pub(crate) fn model_path(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        SetupError::ModelPath {
            path: path.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn setting(key: &'static str, message: impl Into<String>) -> Self {
        SetupError::Setting {
            key,
            message: message.into(),
        }
    }
}
