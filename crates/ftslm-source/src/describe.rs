//! What `model inspect` reads of a model without loading it: the
//! configuration and what the weights on disk hold. The path is resolved as
//! every command resolves it ([`ModelFiles::locate`]); a directory holding
//! only config.json, or a config.json itself, is enough, so a model can be
//! sized before it is downloaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ftslm_model::inspect::{stored_weights, StoredWeights};
use ftslm_model::loader::gguf::{ConfigSource, GgufFile, GgufMetadata};
use ftslm_model::{LlamaConfig, ModelError};
use serde::Serialize;

use crate::{ModelFiles, SourceError};

/// Where the configuration was read and what the weights on disk hold.
#[derive(Debug, Serialize)]
pub struct ModelDescription {
    /// The file the architecture came from.
    pub config_file: PathBuf,
    /// "huggingface", "gguf" or "config.json".
    pub format: &'static str,
    /// The safetensors of an HF directory; `None` for a configuration alone.
    pub safetensors: Option<StoredWeights>,
    /// Tensors per storage type of a GGUF file.
    pub gguf_tensor_types: Option<BTreeMap<String, usize>>,
    #[serde(skip)]
    pub config: LlamaConfig,
}

impl ModelDescription {
    /// Reads the description of `path`: a model (as [`ModelFiles::locate`]
    /// finds it), a directory with config.json alone, or a config.json.
    pub fn read(path: &Path) -> Result<Self, SourceError> {
        match ModelFiles::locate(path) {
            Ok(ModelFiles::Safetensors { dir }) => Self::hf_dir(&dir),
            Ok(ModelFiles::Gguf { file, .. }) => Self::gguf(&file),
            Err(_) if path.is_dir() && path.join("config.json").is_file() => Self::hf_dir(path),
            Err(_) if path.is_file() && has_extension(path, "json") => Ok(ModelDescription {
                config_file: path.to_path_buf(),
                format: "config.json",
                safetensors: None,
                gguf_tensor_types: None,
                config: LlamaConfig::from_file(path)?,
            }),
            Err(_) if path.is_dir() => Err(ModelError::ModelPath {
                path: path.to_path_buf(),
                problem: "has no config.json; pass a Hugging Face model directory (config.json \
                          alone is enough), a .gguf file or a config.json"
                    .into(),
            }
            .into()),
            Err(e) => Err(e.into()),
        }
    }

    fn hf_dir(dir: &Path) -> Result<Self, SourceError> {
        let config_file = dir.join("config.json");
        Ok(ModelDescription {
            config: LlamaConfig::from_file(&config_file)?,
            config_file,
            format: "huggingface",
            safetensors: stored_weights(dir)?,
            gguf_tensor_types: None,
        })
    }

    fn gguf(file: &Path) -> Result<Self, SourceError> {
        let metadata = GgufMetadata::read(&GgufFile::open(file)?)?;
        let config_file = match &metadata.config_source {
            ConfigSource::ConfigJson(json) => json.clone(),
            ConfigSource::GgufMetadata => file.to_path_buf(),
        };
        Ok(ModelDescription {
            config_file,
            format: "gguf",
            safetensors: None,
            gguf_tensor_types: Some(metadata.dtype_counts),
            config: metadata.config,
        })
    }
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}
