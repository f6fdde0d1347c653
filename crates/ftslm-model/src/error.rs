//! The one error type of the crate. Every variant names the file, key or
//! tensor at fault so that a user can fix the checkpoint without a debugger.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot access {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{} is not valid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A key of a JSON file (config.json, adapter_config.json, an index) is
    /// missing, has the wrong type or an invalid value.
    #[error("{}: `{key}` {problem}", path.display())]
    Field {
        path: PathBuf,
        key: String,
        problem: String,
    },

    /// A model path that is not a model (missing, not a .gguf, ambiguous).
    #[error("model {}: {problem}", path.display())]
    ModelPath { path: PathBuf, problem: String },

    /// The file is well formed but describes something this crate does not run.
    #[error("{}: {problem}", path.display())]
    Unsupported { path: PathBuf, problem: String },

    #[error(
        "tensor `{name}` in {location} holds {value} at index {index}; the weights are corrupt \
         (a broken download, or a merge of a diverged adapter) — get the model again"
    )]
    NonFiniteWeight {
        name: String,
        location: String,
        index: usize,
        value: f32,
    },

    #[error("tensor `{name}` is missing from {location}{hint}")]
    MissingTensor {
        name: String,
        location: String,
        hint: String,
    },

    #[error("tensor `{name}` in {location} has shape {got:?}, expected {expected:?}{hint}")]
    TensorShape {
        name: String,
        location: String,
        expected: Vec<usize>,
        got: Vec<usize>,
        hint: &'static str,
    },

    #[error("tensor `{name}` in {location} is stored as {dtype}; only bf16, f16 and f32 weights can be loaded")]
    TensorDtype {
        name: String,
        location: String,
        dtype: String,
    },

    #[error("cannot read safetensors file {}: {source}", path.display())]
    Safetensors {
        path: PathBuf,
        #[source]
        source: Box<candle_core::Error>,
    },

    /// A GGUF file is truncated or corrupt, or its metadata or tokenizer does
    /// not describe a model this crate can build; `problem` names the key or
    /// tensor at fault.
    #[error("GGUF file {}: {problem}", path.display())]
    Gguf { path: PathBuf, problem: String },

    /// The adapter directory does not describe a LoRA adapter this crate can apply.
    #[error("adapter {}: {problem}", path.display())]
    Adapter { path: PathBuf, problem: String },

    /// Token ids, positions or segment ids passed to a forward pass are inconsistent.
    #[error("invalid model input: {0}")]
    Input(String),

    /// Boxed: candle's error is large and would bloat every `Result` here.
    #[error("tensor operation failed: {0}")]
    Tensor(Box<candle_core::Error>),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl From<candle_core::Error> for ModelError {
    fn from(error: candle_core::Error) -> Self {
        ModelError::Tensor(Box::new(error))
    }
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
}
