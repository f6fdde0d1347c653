//! Frozen projections stored as NF4 with double quantization (QLoRA's base
//! weights, bit-compatible with bitsandbytes). The products dequantize tiles
//! inside `Nf4Tensor::matmul_t`/`matmul`, so no full f32 copy of W exists.

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};
use crate::frozen_linear::{FrozenFormat, FrozenWeight, SharedInput};
use crate::kernel;
use crate::nf4::{Nf4Error, Nf4Tensor};

/// Quantizes every projection to NF4 (block size 64) as the loader streams it.
#[derive(Debug, Clone, Copy)]
pub struct Nf4Format {
    pub double_quant: bool,
}

impl Default for Nf4Format {
    fn default() -> Self {
        Nf4Format { double_quant: true }
    }
}

impl FrozenFormat for Nf4Format {
    fn freeze(&self, name: &str, weight: Tensor) -> Result<Box<dyn FrozenWeight>> {
        let (out, inp) = weight.dims2()?;
        let values = weight
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let tensor = Nf4Tensor::quantize(&values, [out, inp], self.double_quant)
            .map_err(|e| nf4_error(name, e))?;
        Ok(Box::new(Nf4Weight {
            name: name.to_string(),
            tensor,
            device: weight.device().clone(),
        }))
    }
}

#[derive(Debug)]
pub struct Nf4Weight {
    name: String,
    tensor: Nf4Tensor,
    device: Device,
}

impl Nf4Weight {
    pub fn tensor(&self) -> &Nf4Tensor {
        &self.tensor
    }
}

impl Nf4Weight {
    /// Runs one of the fused products on a [rows, _] input, giving [rows, cols].
    fn product(
        &self,
        input: &Tensor,
        cols: usize,
        op: impl Fn(&Nf4Tensor, &[f32], usize, &mut [f32]) -> std::result::Result<(), Nf4Error>,
    ) -> Result<Tensor> {
        let (rows, _) = input.dims2()?;
        let input = input.to_dtype(DType::F32)?.contiguous()?;
        let mut out = vec![0f32; rows * cols];
        // Read in place where the input lives in CPU memory (a copy per
        // product was ~4% of a training step); copied out otherwise.
        let result =
            match kernel::with_cpu_f32(&input, |values| op(&self.tensor, values, rows, &mut out)) {
                Some(result) => result,
                None => {
                    let values = input.flatten_all()?.to_vec1::<f32>()?;
                    op(&self.tensor, &values, rows, &mut out)
                }
            };
        result.map_err(|e| nf4_error(&self.name, e))?;
        Ok(Tensor::from_vec(out, (rows, cols), &self.device)?)
    }
}

fn nf4_error(name: &str, e: Nf4Error) -> ModelError {
    ModelError::Input(format!("NF4 weight `{name}`: {e}"))
}

impl FrozenWeight for Nf4Weight {
    fn out_features(&self) -> usize {
        self.tensor.out_features()
    }

    fn in_features(&self) -> usize {
        self.tensor.in_features()
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.product(x, self.out_features(), Nf4Tensor::matmul_t)
    }

    fn forward_shared(&self, x: &Tensor, shared: &SharedInput) -> Result<Tensor> {
        let panels = &shared.nf4_panels;
        self.product(x, self.out_features(), |w, x, rows, out| {
            w.matmul_t_shared(x, rows, out, panels)
        })
    }

    fn backward_input(&self, dy: &Tensor) -> Result<Tensor> {
        self.product(dy, self.in_features(), Nf4Tensor::matmul)
    }

    fn to_dense(&self) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            self.tensor.dequantize(),
            (self.out_features(), self.in_features()),
            &self.device,
        )?)
    }

    fn storage_bytes(&self) -> usize {
        self.tensor.storage_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::max_diff;

    #[test]
    fn nf4_products_equal_the_dequantized_dense_products() {
        let dev = Device::Cpu;
        let w: Vec<f32> = (0..96 * 128)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 400.0)
            .collect();
        let weight = Tensor::from_vec(w, (96, 128), &dev).unwrap();
        let frozen = Nf4Format::default().freeze("w", weight).unwrap();
        let dense = frozen.to_dense().unwrap();
        let x = Tensor::from_vec(
            (0..5 * 128)
                .map(|i| (i % 7) as f32 - 3.0)
                .collect::<Vec<f32>>(),
            (5, 128),
            &dev,
        )
        .unwrap();
        let y = frozen.forward(&x).unwrap();
        let y_ref = x.matmul(&dense.t().unwrap()).unwrap();
        let diff = max_diff(&y, &y_ref);
        assert!(diff < 1e-4, "forward differs by {diff}");
        let dy = Tensor::from_vec(
            (0..5 * 96)
                .map(|i| (i % 5) as f32 - 2.0)
                .collect::<Vec<f32>>(),
            (5, 96),
            &dev,
        )
        .unwrap();
        let dx = frozen.backward_input(&dy).unwrap();
        let dx_ref = dy.matmul(&dense).unwrap();
        let diff = max_diff(&dx, &dx_ref);
        assert!(diff < 1e-4, "backward differs by {diff}");
        assert!(frozen.storage_bytes() < 96 * 128 / 2 + 96 * 128 / 64 * 2);
    }
}
