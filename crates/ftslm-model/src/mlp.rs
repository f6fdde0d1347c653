//! Llama's SwiGLU feed-forward block: its weights. The forward and
//! backward are `grad::mlp`'s.

use crate::frozen_linear::FrozenWeight;

#[derive(Debug)]
pub struct Mlp {
    /// [intermediate, hidden]
    pub gate_proj: Box<dyn FrozenWeight>,
    /// [intermediate, hidden]
    pub up_proj: Box<dyn FrozenWeight>,
    /// [hidden, intermediate]
    pub down_proj: Box<dyn FrozenWeight>,
}
