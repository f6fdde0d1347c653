//! `quantization.base: bf16`: frozen projections with bf16 values.
//!
//! The values are rounded to bf16 (round-to-nearest-even, as torch's
//! `.to(torch.bfloat16)`) and then held as f32, so the products run on the
//! f32 kernels and the numerics are those of a bf16 checkpoint. The memory is
//! f32's (4 bytes a weight), not bf16's: a bf16 `FrozenWeight` with its own
//! kernels would halve it, and is not written yet.

use candle_core::{DType, Tensor};
use ftslm_model::{DenseWeight, FrozenFormat, FrozenWeight, Result};

/// Rounds each projection through bf16 and keeps it dense.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bf16Rounded;

impl FrozenFormat for Bf16Rounded {
    fn freeze(&self, name: &str, weight: Tensor) -> Result<Box<dyn FrozenWeight>> {
        let rounded = weight.to_dtype(DType::BF16)?.to_dtype(DType::F32)?;
        Ok(Box::new(DenseWeight::new(name, rounded)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn values_are_rounded_to_bf16() {
        // 1 + 2^-9 is not a bf16 (8 mantissa bits) and rounds to 1;
        // 1 + 2^-7 is one.
        let w = Tensor::new(&[[1.0f32 + 1.0 / 512.0, 1.0 + 1.0 / 128.0]], &Device::Cpu).unwrap();
        let frozen = Bf16Rounded.freeze("w", w).unwrap();
        let dense: Vec<Vec<f32>> = frozen.to_dense().unwrap().to_vec2().unwrap();
        assert_eq!(dense, vec![vec![1.0, 1.0 + 1.0 / 128.0]]);
        assert_eq!(frozen.storage_bytes(), 8, "held as f32");
    }
}
