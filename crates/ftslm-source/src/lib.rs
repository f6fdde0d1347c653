//! ftslm-source owns finding and opening a model, for every command: which
//! files a model path stands for, how its frozen base is held
//! (`quantization.base`), its tokenizer with the chat template, the tokenizer
//! files copied beside a trained adapter, and its identity (the weights'
//! digest an adapter's task record names). Training, inference, `model
//! inspect` and the quickstart all resolve models here, so a path means the
//! same thing to each of them.
//!
//! A model path is a Hugging Face directory (config.json + safetensors), a
//! `.gguf` file, or a directory holding exactly one `.gguf` (with
//! tokenizer.json and config.json beside it, as the SmolLM2 fixture is).

#![forbid(unsafe_code)]

pub mod bf16_base;
mod describe;

pub use describe::ModelDescription;

pub use ftslm_model::loader::files::ModelFiles;

use std::fmt;
use std::path::{Path, PathBuf};

use candle_core::Device;
use ftslm_config::{QuantizationBase, QuantizationSettings};
use ftslm_data::chat_template::{ChatTemplate, SpecialTokens};
use ftslm_data::task::{weights_sha256, BaseModelIdentity, TaskError};
use ftslm_data::tokenize::{PromptTokenizer, TokenizeError};
use ftslm_model::frozen_nf4::Nf4Format;
use ftslm_model::gguf_tokenizer::GgufTokenizer;
use ftslm_model::loader::gguf::{load_gguf, load_gguf_with_format, GgufBase};
use ftslm_model::{DenseF32, FrozenFormat, LlamaModel, ModelError};

use crate::bf16_base::Bf16Rounded;

/// What can go wrong finding or opening a model; each names the path and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
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

    /// Reading the weights for their digest.
    #[error(transparent)]
    Identity(#[from] TaskError),
}

/// Copied into final_model/ and best_model/ when the model has them.
const TOKENIZER_FILES: [&str; 2] = ["tokenizer.json", "tokenizer_config.json"];

/// How the frozen projections are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrozenBase {
    /// QLoRA's NF4 (bitsandbytes-compatible), optionally double-quantized.
    Nf4 {
        double_quant: bool,
    },
    /// A GGUF file's own quantized blocks.
    Gguf,
    F32,
    /// Values rounded to bf16, held as f32 (see `bf16_base`).
    Bf16,
}

impl FrozenBase {
    /// The `quantization.base` value that selects it.
    pub fn name(&self) -> &'static str {
        match self {
            FrozenBase::Nf4 { .. } => "nf4",
            FrozenBase::Gguf => "gguf",
            FrozenBase::F32 => "f32",
            FrozenBase::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for FrozenBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrozenBase::Nf4 { double_quant: true } => f.write_str("nf4 (double quantization)"),
            FrozenBase::Nf4 {
                double_quant: false,
            } => f.write_str("nf4"),
            FrozenBase::Gguf => f.write_str("gguf (the file's quantized blocks)"),
            FrozenBase::F32 => f.write_str("f32"),
            FrozenBase::Bf16 => f.write_str("bf16 (values rounded to bf16, held as f32)"),
        }
    }
}

/// A located model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSource {
    /// The path as the user gave it.
    pub path: PathBuf,
    pub files: ModelFiles,
}

impl ModelSource {
    /// Works out what `path` is, or says what it should be.
    pub fn locate(path: &Path) -> Result<Self, SourceError> {
        Ok(ModelSource {
            path: path.to_path_buf(),
            files: ModelFiles::locate(path)?,
        })
    }

    pub fn is_gguf(&self) -> bool {
        self.files.is_gguf()
    }

    /// The folder holding the tokenizer and config files.
    pub fn dir(&self) -> &Path {
        self.files.dir()
    }

    /// The weights: the model directory or the GGUF file.
    pub fn weights(&self) -> &Path {
        self.files.weights()
    }

    /// Which model this is, as an adapter's task record names its base: the
    /// path as given and the SHA-256 of the weights (a full read, which the
    /// page cache makes cheap right before or after loading them).
    pub fn identity(&self) -> Result<BaseModelIdentity, SourceError> {
        Ok(BaseModelIdentity {
            name_or_path: self.path.display().to_string(),
            weights_sha256: weights_sha256(self.weights())?,
        })
    }

    /// The frozen base `quantization.base` asks for; `auto` keeps a GGUF's
    /// blocks and quantizes a full-precision checkpoint to NF4 (QLoRA).
    pub fn frozen_base(&self, q: &QuantizationSettings) -> Result<FrozenBase, SourceError> {
        let nf4 = FrozenBase::Nf4 {
            double_quant: q.bnb_4bit_use_double_quant,
        };
        Ok(match (q.base, self.is_gguf()) {
            (QuantizationBase::Auto, true) | (QuantizationBase::Gguf, true) => FrozenBase::Gguf,
            (QuantizationBase::Auto, false) | (QuantizationBase::Nf4, _) => nf4,
            (QuantizationBase::Gguf, false) => {
                return Err(SourceError::GgufBaseNeedsGguf {
                    path: self.path.clone(),
                })
            }
            (QuantizationBase::F32, _) => FrozenBase::F32,
            (QuantizationBase::Bf16, _) => FrozenBase::Bf16,
        })
    }

    /// Loads the model with its projections held as `base` says, and any
    /// notes the loader has (config.json settling GGUF metadata).
    pub fn load(
        &self,
        base: FrozenBase,
        device: &Device,
    ) -> Result<(LlamaModel, Vec<String>), SourceError> {
        let format: &dyn FrozenFormat = match base {
            FrozenBase::Nf4 { double_quant } => &Nf4Format { double_quant },
            FrozenBase::F32 => &DenseF32,
            FrozenBase::Bf16 => &Bf16Rounded,
            FrozenBase::Gguf => &DenseF32, // unused: GGUF blocks have their own loader
        };
        match &self.files {
            ModelFiles::Safetensors { dir } => {
                if base == FrozenBase::Gguf {
                    return Err(SourceError::GgufBaseNeedsGguf { path: dir.clone() });
                }
                Ok((LlamaModel::load_hf(dir, format, device)?, Vec::new()))
            }
            ModelFiles::Gguf { file, .. } => {
                let (model, metadata) = match base {
                    FrozenBase::Gguf => load_gguf(file, GgufBase::Blocks, device)?,
                    FrozenBase::F32 => load_gguf(file, GgufBase::F32, device)?,
                    _ => load_gguf_with_format(file, format, device)?,
                };
                Ok((model, metadata.notes))
            }
        }
    }

    /// The prompt tokenizer with `system_prompt`: from tokenizer.json (and
    /// tokenizer_config.json's chat template) beside the weights, else from
    /// the GGUF file's metadata.
    pub fn prompt_tokenizer(&self, system_prompt: &str) -> Result<PromptTokenizer, SourceError> {
        let wrap = |source| SourceError::Tokenizer {
            model: self.path.clone(),
            source,
        };
        if self.dir().join("tokenizer.json").is_file() || !self.is_gguf() {
            let beside = PromptTokenizer::from_model_path(self.weights()).map_err(wrap)?;
            return PromptTokenizer::with_end_of_turn_ids(
                beside.tokenizer().clone(),
                beside.template().clone(),
                system_prompt,
                beside.end_of_turn_ids(),
            )
            .map_err(wrap);
        }
        let gguf = GgufTokenizer::from_gguf(self.weights())?;
        let origin = format!("{} (tokenizer.chat_template)", self.weights().display());
        let mut specials = SpecialTokens::default();
        for (name, token) in [
            ("bos_token", &gguf.bos_token),
            ("eos_token", &gguf.eos_token),
        ] {
            if let Some(token) = token {
                specials = specials.with(name, token);
            }
        }
        let template = match &gguf.chat_template {
            Some(source) => {
                ChatTemplate::from_source(source, &origin, specials).map_err(|e| wrap(e.into()))?
            }
            None => ChatTemplate::llama31(),
        };
        let extra: Vec<u32> = gguf.eos_token_id.into_iter().collect();
        PromptTokenizer::with_end_of_turn_ids(gguf.tokenizer, template, system_prompt, &extra)
            .map_err(wrap)
    }

    /// tokenizer.json and tokenizer_config.json, where the model has them.
    pub fn tokenizer_files(&self) -> Vec<PathBuf> {
        TOKENIZER_FILES
            .iter()
            .map(|name| self.dir().join(name))
            .filter(|p| p.is_file())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(base: QuantizationBase) -> QuantizationSettings {
        QuantizationSettings {
            load_in_4bit: true,
            bnb_4bit_compute_dtype: "float16".into(),
            bnb_4bit_quant_type: "nf4".into(),
            bnb_4bit_use_double_quant: true,
            base,
        }
    }

    #[test]
    fn auto_keeps_gguf_blocks_and_quantizes_full_precision_to_nf4() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        std::fs::write(dir.path().join("model.safetensors"), "").unwrap();
        let hf = ModelSource::locate(dir.path()).unwrap();
        assert!(!hf.is_gguf());
        assert_eq!(
            hf.frozen_base(&settings(QuantizationBase::Auto)).unwrap(),
            FrozenBase::Nf4 { double_quant: true }
        );
        let err = hf
            .frozen_base(&settings(QuantizationBase::Gguf))
            .unwrap_err()
            .to_string();
        assert!(err.contains("quantization.base"), "{err}");

        let gdir = tempfile::tempdir().unwrap();
        std::fs::write(gdir.path().join("m.gguf"), "").unwrap();
        let g = ModelSource::locate(gdir.path()).unwrap();
        assert_eq!(g.weights(), gdir.path().join("m.gguf"));
        assert_eq!(
            g.frozen_base(&settings(QuantizationBase::Auto)).unwrap(),
            FrozenBase::Gguf
        );
        assert_eq!(
            g.frozen_base(&settings(QuantizationBase::Bf16)).unwrap(),
            FrozenBase::Bf16
        );
    }
}
