//! Llama's SwiGLU feed-forward block.

use candle_core::Tensor;

use crate::error::Result;
use crate::frozen_linear::FrozenWeight;
use crate::lora::{LayerLora, Projection};
use crate::swiglu::swiglu;

#[derive(Debug)]
pub struct Mlp {
    /// [intermediate, hidden]
    pub gate_proj: Box<dyn FrozenWeight>,
    /// [intermediate, hidden]
    pub up_proj: Box<dyn FrozenWeight>,
    /// [hidden, intermediate]
    pub down_proj: Box<dyn FrozenWeight>,
}

impl Mlp {
    /// x [tokens, hidden] → down(silu(gate(x)) ⊙ up(x)) [tokens, hidden]
    pub fn forward(&self, x: &Tensor, lora: &mut LayerLora) -> Result<Tensor> {
        let gate = lora.project(Projection::Gate, &*self.gate_proj, x)?; // [tokens, intermediate]
        let up = lora.project(Projection::Up, &*self.up_proj, x)?;
        let activated = swiglu(&gate, &up)?;
        lora.project(Projection::Down, &*self.down_proj, &activated)
    }
}
