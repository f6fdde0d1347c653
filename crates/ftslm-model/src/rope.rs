//! Rotary position embeddings in Hugging Face's `rotate_half` convention: the
//! head dimension is split into two halves that rotate as (x1, x2) pairs, and
//! Llama 3.1's "llama3" scaling stretches only the low frequencies.
//!
//! Positions are given per token, so a packed row can restart them at 0 for
//! each of its examples.

use candle_core::{Device, Tensor, D};

use crate::config::{RopeConfig, RopeScaling};
use crate::error::Result;
use crate::kernel::rope::rotate_heads;
use crate::kernel::with_cpu_f32s;

/// The `head_dim / 2` angular frequencies θ_i, in f32 as transformers keeps them.
///
/// Plain: θ_i = theta^(-2i/head_dim). Llama 3 scaling compares each
/// frequency's wavelength 2π/θ_i with the original context length L:
/// shorter than L/high_freq_factor stays; longer than L/low_freq_factor is
/// divided by `factor`; in between it blends the two with
/// s = (L/wavelength − low) / (high − low).
pub fn inverse_frequencies(head_dim: usize, rope: &RopeConfig) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| {
            let plain = rope.theta.powf(-((2 * i) as f64) / head_dim as f64);
            scaled_frequency(plain, &rope.scaling) as f32
        })
        .collect()
}

fn scaled_frequency(inv_freq: f64, scaling: &RopeScaling) -> f64 {
    match *scaling {
        RopeScaling::None => inv_freq,
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            let context = original_max_position_embeddings as f64;
            let wavelength = 2.0 * std::f64::consts::PI / inv_freq;
            let low_freq_wavelength = context / low_freq_factor;
            let high_freq_wavelength = context / high_freq_factor;
            if wavelength < high_freq_wavelength {
                inv_freq
            } else if wavelength > low_freq_wavelength {
                inv_freq / factor
            } else {
                let smooth =
                    (context / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor);
                (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    inv_freq: Vec<f32>,
    head_dim: usize,
}

/// cos and sin of every token's angles, [tokens, head_dim] each, the
/// `head_dim/2` angles written twice (HF's `cat(freqs, freqs)`).
#[derive(Debug, Clone)]
pub struct RopeTables {
    pub cos: Tensor,
    pub sin: Tensor,
}

impl RotaryEmbedding {
    pub fn new(head_dim: usize, rope: &RopeConfig) -> Self {
        RotaryEmbedding {
            inv_freq: inverse_frequencies(head_dim, rope),
            head_dim,
        }
    }

    pub fn inverse_frequencies(&self) -> &[f32] {
        &self.inv_freq
    }

    pub fn tables(&self, positions: &[u32], device: &Device) -> Result<RopeTables> {
        let mut cos = Vec::with_capacity(positions.len() * self.head_dim);
        let mut sin = Vec::with_capacity(positions.len() * self.head_dim);
        for &pos in positions {
            // f32 product, as transformers forms position · θ in float32.
            let angles: Vec<f32> = self.inv_freq.iter().map(|&f| pos as f32 * f).collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos()));
                sin.extend(angles.iter().map(|a| a.sin()));
            }
        }
        let shape = (positions.len(), self.head_dim);
        Ok(RopeTables {
            cos: Tensor::from_vec(cos, shape, device)?,
            sin: Tensor::from_vec(sin, shape, device)?,
        })
    }
}

impl RopeTables {
    /// Rotates x [tokens, heads, head_dim]: x·cos + rotate_half(x)·sin,
    /// where rotate_half(x1, x2) = (−x2, x1).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(y) = self.rotate_f32(x, Turn::Forward)? {
            return Ok(y);
        }
        let head_dim = x.dim(D::Minus1)?;
        let half = head_dim / 2;
        let cos = self.cos.unsqueeze(1)?; // [tokens, 1, head_dim]
        let sin = self.sin.unsqueeze(1)?;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        Ok((x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?)
    }
}

/// Which way [`RopeTables::rotate_f32`] turns each pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// By +θ: y = x ⊙ cos + R(x) ⊙ sin, R(x1, x2) = (−x2, x1).
    Forward,
    /// By −θ, the forward's transpose (its gradient): dx = dy ⊙ cos + Rᵀ(dy ⊙ sin).
    Back,
}

impl RopeTables {
    /// x [tokens, heads, head_dim] turned in one pass over f32 CPU values;
    /// None for other tensors or shapes, which take candle's ops.
    pub(crate) fn rotate_f32(&self, x: &Tensor, turn: Turn) -> Result<Option<Tensor>> {
        let Ok((tokens, _, head_dim)) = x.dims3() else {
            return Ok(None);
        };
        if self.cos.dims() != [tokens, head_dim] || self.sin.dims() != [tokens, head_dim] {
            return Ok(None);
        }
        if tokens == 0 || head_dim == 0 || head_dim % 2 != 0 {
            return Ok(None);
        }
        let values = with_cpu_f32s([x, &self.cos, &self.sin], |[x, cos, sin]| {
            rotate_heads(x, cos, sin, head_dim, turn == Turn::Back)
        });
        Ok(match values {
            Some(y) => Some(Tensor::from_vec(y, x.shape(), &Device::Cpu)?),
            None => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use candle_core::DType;

    use super::*;
    use crate::config::RopeConfig;
    use crate::grad::rope::rope_backward;

    /// The one-pass turn against candle's ops (f64 takes them) both ways,
    /// on positions that restart as in a packed row.
    #[test]
    fn f32_pass_is_candles_rotation_both_ways() {
        let (heads, head_dim) = (3, 8);
        let positions = [0u32, 1, 2, 0, 1, 5, 900];
        let config = RopeConfig {
            theta: 10_000.0,
            scaling: crate::config::RopeScaling::None,
        };
        let rope = RotaryEmbedding::new(head_dim, &config);
        let tables = rope.tables(&positions, &Device::Cpu).unwrap();
        let len = positions.len() * heads * head_dim;
        let x: Vec<f32> = (0..len)
            .map(|i| ((i * 37) % 23) as f32 / 7.0 - 1.5)
            .collect();
        let x = Tensor::from_vec(x, (positions.len(), heads, head_dim), &Device::Cpu).unwrap();
        let f64_tables = RopeTables {
            cos: tables.cos.to_dtype(DType::F64).unwrap(),
            sin: tables.sin.to_dtype(DType::F64).unwrap(),
        };
        let x64 = x.to_dtype(DType::F64).unwrap();
        let cases = [
            (tables.apply(&x).unwrap(), f64_tables.apply(&x64).unwrap()),
            (
                rope_backward(&tables, &x).unwrap(),
                rope_backward(&f64_tables, &x64).unwrap(),
            ),
        ];
        for (ours, reference) in cases {
            let diff = (ours.to_dtype(DType::F64).unwrap() - reference).unwrap();
            let worst = diff.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            assert!(worst.to_scalar::<f64>().unwrap() < 1e-6);
        }
        // Back undoes forward: the rotation is orthogonal.
        let round_trip = rope_backward(&tables, &tables.apply(&x).unwrap()).unwrap();
        let diff = (round_trip - &x)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap();
        assert!(diff.max(0).unwrap().to_scalar::<f32>().unwrap() < 1e-5);
    }
}
