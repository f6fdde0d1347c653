//! The model's one decoder layer, forward and hand-written backward, and
//! the loss head. Training, evaluation and generation all run it: the
//! forward keeps what its backward needs (or, for generation, attends over
//! a KV cache instead), and the backward is written out per layer (RMSNorm,
//! RoPE, grouped-query attention, SwiGLU, frozen linear + LoRA, chunked
//! cross-entropy). Frozen weights never join an autograd graph. Every
//! operation on activations goes through the model's `Backend`.
//! [`loss_and_grads`] runs a packed row through the model and returns its
//! loss and the adapter's gradients, recomputing each decoder layer in the
//! backward (gradient checkpointing) unless told not to.
//!
//! Every layer function works in the dtype of its inputs, so the tests check
//! them in f64 against finite differences.

pub mod attention;
pub mod attention_products;
pub mod cross_entropy;
pub mod decoder;
pub mod grads;
pub mod linear;
pub(crate) mod lora_products;
pub mod mlp;
pub mod model;
pub mod rmsnorm;
pub mod rope;

pub use cross_entropy::{
    chunked_cross_entropy, chunked_cross_entropy_with, LmHead, DEFAULT_CHUNK_TOKENS,
};
pub use grads::AdapterGrads;
pub use linear::{AdaptedLinear, LayerAdapter, LayerGrads};
pub use model::{loss_and_grads, loss_and_grads_timed, GradOptions, PassSeconds, TrainingRow};
