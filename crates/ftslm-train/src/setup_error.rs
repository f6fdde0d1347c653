//! What can stop a run before its first step: the model path, the frozen-base
//! choice, the data files, tokenization and the configuration. Each variant
//! names the file, line or key at fault and the fix.

use std::path::PathBuf;

use ftslm_config::ConfigError;
use ftslm_data::tokenize::TokenizeError;
use ftslm_data::validate::DataError;
use ftslm_model::ModelError;
use ftslm_source::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Finding or opening the model: its path, frozen base or tokenizer.
    #[error(transparent)]
    Source(#[from] SourceError),

    #[error(transparent)]
    Model(#[from] ModelError),

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
    pub(crate) fn setting(key: &'static str, message: impl Into<String>) -> Self {
        SetupError::Setting {
            key,
            message: message.into(),
        }
    }
}
