//! ftslm-model owns the frozen base model and its adapter: the Llama
//! architecture on candle tensors, checkpoint loaders (Hugging Face safetensors
//! and GGUF), LoRA adapters in PEFT's on-disk format, the hand-written
//! backward, merge, the memory estimate, and generation with a KV cache and
//! constrained decoding. Its arithmetic on CPU values is `ftslm-kernels`'
//! (reached through [`kernel`]); NF4 ([`nf4`]) is that crate's too.

#![forbid(unsafe_code)]

pub mod adapter_io;
pub mod attention;
pub mod backend;
pub mod compute;
pub mod config;
pub mod dropout;
pub mod error;
pub mod frozen_gguf;
pub mod frozen_linear;
pub mod frozen_nf4;
pub mod generate;
pub mod gguf_tokenizer;
pub mod grad;
pub mod inspect;
mod json_fields;
pub mod kernel;
pub mod llama;
pub mod loader;
pub mod lora;
pub mod loss;
pub mod merge;
pub mod mlp;
pub mod random_init;
pub use ftslm_kernels::nf4;
pub mod norm;
pub mod rope;
pub mod swiglu;
#[cfg(test)]
mod test_support;

pub use backend::{Backend, CpuBackend};
pub use compute::{ComputeDevice, ComputePolicy};
pub use config::{GenerationConfig, LlamaConfig, RopeConfig, RopeScaling};
pub use dropout::{DropoutMask, LoraDropout};
pub use error::{ModelError, Result};
pub use frozen_linear::{DenseF32, DenseWeight, FrozenFormat, FrozenWeight, SharedInput};
pub use llama::{DecoderLayer, KvCache, LlamaModel};
pub use loader::{NamedTensors, SafetensorsCheckpoint, WeightSource};
pub use lora::{LoraAdapter, LoraSettings, LoraWeights, Projection};
pub use loss::{chunked_nll, masked_mean_nll, masked_nll, TokenNll};
