//! Frozen projections kept in llama.cpp's own blocks (Q4_1, Q8_0, Q4_K, …)
//! and dequantized a tile of rows at a time inside the matmul. Re-quantizing
//! 4-bit GGUF weights to NF4 compounds two roundings, so for GGUF inputs this
//! is the default frozen format: the model computes with exactly the weights
//! llama.cpp would, while holding only the quantized bytes.
//!
//! Both products run on f32 tiles dequantized with candle's block decoders,
//! so the results equal those of the dense f32 weight up to summation order
//! (candle's `QMatMul` would instead quantize x to Q8 and use integer dots).

use std::ops::Range;

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType};
use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::frozen_linear::FrozenWeight;

/// f32 bytes one dequantized tile may occupy: big enough that each tile is a
/// full-speed gemm (hundreds of rows at hidden sizes up to a few thousand),
/// small enough to stay in L2/L3 next to the activations.
const TILE_BYTES: usize = 1 << 20;

/// W [out, in] as consecutive GGUF rows; each row is `in / block_size` whole
/// blocks, so rows can be sliced (and reordered) without decoding.
#[derive(Clone)]
pub struct GgufBlocks {
    name: String,
    dtype: GgmlDType,
    out_features: usize,
    in_features: usize,
    row_bytes: usize,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for GgufBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GgufBlocks({} {:?} [{}, {}])",
            self.name, self.dtype, self.out_features, self.in_features
        )
    }
}

/// Bytes of one row of `in_features` values stored as `dtype`, or `None`
/// when a row would not be a whole number of blocks.
pub fn row_bytes(dtype: GgmlDType, in_features: usize) -> Option<usize> {
    let block = dtype.block_size();
    in_features
        .is_multiple_of(block)
        .then(|| in_features / block * dtype.type_size())
}

impl GgufBlocks {
    /// `bytes` are the tensor's data exactly as in the GGUF file; `name` is
    /// used in errors.
    pub fn new(
        name: &str,
        dtype: GgmlDType,
        out_features: usize,
        in_features: usize,
        bytes: Vec<u8>,
    ) -> Result<Self> {
        let invalid =
            |problem: String| ModelError::Input(format!("GGUF weight `{name}`: {problem}"));
        let row_bytes = row_bytes(dtype, in_features).ok_or_else(|| {
            invalid(format!(
                "rows of {in_features} values are not whole {dtype:?} blocks of {}",
                dtype.block_size()
            ))
        })?;
        if out_features == 0 || in_features == 0 || bytes.len() != out_features * row_bytes {
            return Err(invalid(format!(
                "{} bytes do not hold [{out_features}, {in_features}] as {dtype:?}",
                bytes.len()
            )));
        }
        Ok(GgufBlocks {
            name: name.to_string(),
            dtype,
            out_features,
            in_features,
            row_bytes,
            bytes,
        })
    }

    pub fn dtype(&self) -> GgmlDType {
        self.dtype
    }

    /// The raw blocks, row after row.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Rows `range` of W as f32 [range.len(), in] on the CPU.
    pub fn dequantize_rows(&self, range: Range<usize>) -> Result<Tensor> {
        if range.start > range.end || range.end > self.out_features {
            return Err(ModelError::Input(format!(
                "rows {range:?} of `{}` are outside its {} rows",
                self.name, self.out_features
            )));
        }
        let rows = range.len();
        let data = &self.bytes[range.start * self.row_bytes..range.end * self.row_bytes];
        let tile = qtensor_from_ggml(self.dtype, data, vec![rows, self.in_features], &Device::Cpu)?;
        Ok(tile.dequantize(&Device::Cpu)?)
    }

    /// Row tiles covering [0, out), each at most TILE_BYTES once dequantized.
    fn tiles(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        let rows_per_tile = (TILE_BYTES / (4 * self.in_features)).max(1);
        (0..self.out_features)
            .step_by(rows_per_tile)
            .map(move |start| start..(start + rows_per_tile).min(self.out_features))
    }

    fn tile_on(&self, range: Range<usize>, device: &Device) -> Result<Tensor> {
        Ok(self.dequantize_rows(range)?.to_device(device)?)
    }

    /// Callers may pass [.., rows, features]; the products are 2-d.
    fn check_last_dim(&self, t: &Tensor, want: usize, what: &str) -> Result<()> {
        match t.dims().last() {
            Some(&d) if d == want => Ok(()),
            _ => Err(ModelError::Input(format!(
                "{what} of `{}` needs a last dimension of {want}, got shape {:?}",
                self.name,
                t.dims()
            ))),
        }
    }
}

/// Flattens leading dims: [a, b, …, f] → [a·b·…, f], and the shape to restore.
fn as_rows(t: &Tensor) -> Result<(Tensor, Vec<usize>)> {
    let dims = t.dims().to_vec();
    let features = dims.last().copied().unwrap_or(1);
    let rows = t.elem_count() / features.max(1);
    Ok((t.reshape((rows, features))?, dims))
}

fn restore(t: Tensor, mut dims: Vec<usize>, features: usize) -> Result<Tensor> {
    if let Some(last) = dims.last_mut() {
        *last = features;
    }
    Ok(t.reshape(dims)?)
}

impl FrozenWeight for GgufBlocks {
    fn out_features(&self) -> usize {
        self.out_features
    }

    fn in_features(&self) -> usize {
        self.in_features
    }

    /// y[:, tile] = x · W[tile, :]ᵀ, one tile of output features at a time.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.check_last_dim(x, self.in_features, "the input")?;
        let (x, dims) = as_rows(x)?; // [n, in]
        let mut parts = Vec::new();
        for range in self.tiles() {
            let w = self.tile_on(range, x.device())?; // [t, in]
            parts.push(x.matmul(&w.t()?)?); // [n, t]
        }
        restore(Tensor::cat(&parts, 1)?, dims, self.out_features)
    }

    /// dx = dy · W = Σ_tiles dy[:, tile] · W[tile, :]: the reduction runs over
    /// output features, so tiles accumulate into one [n, in] sum.
    fn backward_input(&self, dy: &Tensor) -> Result<Tensor> {
        self.check_last_dim(dy, self.out_features, "the output gradient")?;
        let (dy, dims) = as_rows(dy)?; // [n, out]
        let mut dx: Option<Tensor> = None;
        for range in self.tiles() {
            let (start, len) = (range.start, range.len());
            let w = self.tile_on(range, dy.device())?; // [t, in]
            let part = dy.narrow(1, start, len)?.contiguous()?.matmul(&w)?; // [n, in]
            dx = Some(match dx {
                Some(sum) => (sum + part)?,
                None => part,
            });
        }
        let dx = dx.ok_or_else(|| ModelError::Input(format!("`{}` has no rows", self.name)))?;
        restore(dx, dims, self.in_features)
    }

    fn to_dense(&self) -> Result<Tensor> {
        self.dequantize_rows(0..self.out_features)
    }

    fn storage_bytes(&self) -> usize {
        self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::QTensor;

    use super::*;
    use crate::test_support::max_diff;

    /// A weight with enough rows for several tiles, quantized by candle.
    fn blocks(dtype: GgmlDType, out: usize, inp: usize) -> (GgufBlocks, Tensor) {
        let w = Tensor::randn(0f32, 1.0, (out, inp), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let bytes = q.data().unwrap().to_vec();
        let dense = q.dequantize(&Device::Cpu).unwrap();
        (GgufBlocks::new("w", dtype, out, inp, bytes).unwrap(), dense)
    }

    #[test]
    fn tiled_products_equal_the_dense_weight() {
        // 1100 rows of 512 → tiles of 512 rows: two full and one partial.
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0, GgmlDType::Q4K] {
            let (w, dense) = blocks(dtype, 1100, 512);
            assert!(w.tiles().count() > 2);
            assert_eq!(w.storage_bytes(), w.bytes().len());
            assert!(w.storage_bytes() * 3 < 1100 * 512 * 4);
            assert_eq!(max_diff(&w.to_dense().unwrap(), &dense), 0.0);

            let x = Tensor::randn(0f32, 1.0, (7, 512), &Device::Cpu).unwrap();
            let y = w.forward(&x).unwrap();
            assert_eq!(y.dims(), [7, 1100]);
            let want = x.matmul(&dense.t().unwrap()).unwrap();
            assert!(max_diff(&y, &want) < 1e-4, "{dtype:?} forward");

            let dy = Tensor::randn(0f32, 1.0, (7, 1100), &Device::Cpu).unwrap();
            let dx = w.backward_input(&dy).unwrap();
            assert_eq!(dx.dims(), [7, 512]);
            let want = dy.matmul(&dense).unwrap();
            assert!(max_diff(&dx, &want) < 1e-3, "{dtype:?} backward");
        }
    }

    #[test]
    fn leading_dims_are_kept() {
        let (w, _) = blocks(GgmlDType::Q8_0, 64, 64);
        let x = Tensor::randn(0f32, 1.0, (2, 3, 64), &Device::Cpu).unwrap();
        assert_eq!(w.forward(&x).unwrap().dims(), [2, 3, 64]);
        assert_eq!(w.backward_input(&x).unwrap().dims(), [2, 3, 64]);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let (w, _) = blocks(GgmlDType::Q8_0, 64, 64);
        let x = Tensor::zeros((3, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = w.forward(&x).unwrap_err().to_string();
        assert!(err.contains("last dimension of 64"), "{err}");
        assert!(w.dequantize_rows(60..65).is_err());
        let err = GgufBlocks::new("q", GgmlDType::Q4_1, 2, 48, vec![0; 40]).unwrap_err();
        assert!(err.to_string().contains("not whole"), "{err}");
        let err = GgufBlocks::new("q", GgmlDType::Q4_1, 2, 64, vec![0; 40]).unwrap_err();
        assert!(err.to_string().contains("40 bytes"), "{err}");
    }
}
