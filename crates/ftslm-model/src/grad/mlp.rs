//! SwiGLU feed-forward block, forward with saved internals and backward:
//!
//!   g = gate(x), u = up(x)      [tokens, intermediate]
//!   y = down(silu(g) ⊙ u)       [tokens, hidden]
//!
//! silu(g) = g·σ(g), silu'(g) = σ(g)·(1 + g·(1 − σ(g))).

use candle_core::Tensor;

use crate::backend::Backend;
use crate::error::Result;
use crate::frozen_linear::SharedInput;
use crate::grad::linear::{LayerAdapter, LayerGrads, LinearCache};
use crate::lora::Projection;
use crate::mlp::Mlp;

#[derive(Debug, Clone)]
pub struct MlpCache {
    gate_proj: LinearCache,
    up_proj: LinearCache,
    down_proj: LinearCache,
    /// g [tokens, intermediate]
    gate: Tensor,
    /// u [tokens, intermediate]
    up: Tensor,
}

/// x [tokens, hidden] → [tokens, hidden] and the cache.
pub fn mlp_forward(
    backend: &dyn Backend,
    mlp: &Mlp,
    lora: &LayerAdapter,
    x: &Tensor,
) -> Result<(Tensor, MlpCache)> {
    let shared = SharedInput::default();
    let project = |projection, base| {
        lora.linear(backend, projection, base)
            .forward_shared(x, &shared)
    };
    let (gate, gate_cache) = project(Projection::Gate, &*mlp.gate_proj)?;
    let (up, up_cache) = project(Projection::Up, &*mlp.up_proj)?;
    let activated = backend.swiglu(&gate, &up)?;
    let (y, down_cache) = lora
        .linear(backend, Projection::Down, &*mlp.down_proj)
        .forward(&activated)?;
    Ok((
        y,
        MlpCache {
            gate_proj: gate_cache,
            up_proj: up_cache,
            down_proj: down_cache,
            gate,
            up,
        },
    ))
}

/// dy [tokens, hidden] → dx [tokens, hidden], writing the gate/up/down LoRA
/// gradients into `grads`. (Within a decoder layer the MLP's input gradient
/// is always needed: attention sits before it.)
pub fn mlp_backward(
    backend: &dyn Backend,
    mlp: &Mlp,
    lora: &LayerAdapter,
    cache: &MlpCache,
    dy: &Tensor,
    grads: &mut LayerGrads,
) -> Result<Tensor> {
    let (d_activated, grad_down) = lora
        .linear(backend, Projection::Down, &*mlp.down_proj)
        .backward(&cache.down_proj, dy, true)?;
    grads[Projection::Down.index()] = grad_down;
    let d_activated = d_activated.ok_or_else(|| {
        crate::error::ModelError::Input("down_proj's backward gave no input gradient".into())
    })?; // [tokens, intermediate]

    let (d_gate, d_up) = backend.swiglu_backward(&d_activated, &cache.gate, &cache.up)?;

    let (dx_gate, grad_gate) = lora
        .linear(backend, Projection::Gate, &*mlp.gate_proj)
        .backward(&cache.gate_proj, &d_gate, true)?;
    let (dx_up, grad_up) = lora
        .linear(backend, Projection::Up, &*mlp.up_proj)
        .backward(&cache.up_proj, &d_up, true)?;
    grads[Projection::Gate.index()] = grad_gate;
    grads[Projection::Up.index()] = grad_up;
    backend
        .sum_input_gradients([dx_gate, dx_up, None])?
        .ok_or_else(|| {
            crate::error::ModelError::Input("gate/up backward gave no input gradient".into())
        })
}
