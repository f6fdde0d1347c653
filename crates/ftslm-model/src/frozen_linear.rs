//! Frozen projection weights, behind one trait so that dense f32 matrices and
//! quantized ones (NF4) are interchangeable in the layers. They never join an
//! autograd graph: training only needs y = x·Wᵀ forward and dx = dy·W back.

use std::fmt::Debug;

use candle_core::{DType, Tensor};

use crate::error::{ModelError, Result};
use crate::kernel;

type DenseProduct = fn(&[f32], [usize; 2], &[f32], usize, &mut [f32]) -> bool;

/// `op` (one of `kernel`'s dense products) on a [rows, _] input giving
/// [rows, cols], or None where the weight is not f32 in CPU memory or the CPU
/// has no fast kernel, and the caller uses candle's matmul.
fn fast_product(
    weight: &Tensor,
    shape: [usize; 2],
    input: &Tensor,
    cols: usize,
    op: DenseProduct,
) -> Result<Option<Tensor>> {
    if !weight.device().is_cpu() || input.dtype() != DType::F32 {
        return Ok(None);
    }
    let (rows, _) = input.dims2()?;
    let input = input.contiguous()?;
    let mut out = vec![0f32; rows * cols];
    let done = kernel::with_cpu_f32(weight, |w| {
        kernel::with_cpu_f32(&input, |values| op(w, shape, values, rows, &mut out))
    });
    if done != Some(Some(true)) {
        return Ok(None);
    }
    Ok(Some(Tensor::from_vec(out, (rows, cols), input.device())?))
}

/// One input of several frozen products (q, k and v read the same normed
/// hidden state, gate and up another), so that the work of preparing it
/// (NF4's integer panels) is done once. Create one per input tensor.
#[derive(Debug, Default)]
pub struct SharedInput {
    pub(crate) nf4_panels: crate::nf4::SharedPanels,
}

/// A bias-free linear map with a fixed weight W [out_features, in_features].
pub trait FrozenWeight: Debug + Send + Sync {
    fn out_features(&self) -> usize;
    fn in_features(&self) -> usize;

    /// x [rows, in] → y = x·Wᵀ [rows, out]
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// [`FrozenWeight::forward`] of an input that other weights multiply
    /// too: what a weight prepares from `x` is kept in `shared` for them.
    fn forward_shared(&self, x: &Tensor, shared: &SharedInput) -> Result<Tensor> {
        let _ = shared;
        self.forward(x)
    }

    /// dy [rows, out] → dx = dy·W [rows, in], the gradient reaching the input.
    fn backward_input(&self, dy: &Tensor) -> Result<Tensor>;

    /// W as a dense f32 [out, in] tensor (for merging an adapter or inspection).
    fn to_dense(&self) -> Result<Tensor>;

    /// Bytes the weight occupies in its stored form.
    fn storage_bytes(&self) -> usize;
}

/// How a loader stores each frozen projection it reads. Loaders hand every
/// projection weight over as f32 [out, in] and keep what this returns, so a
/// quantizing format (NF4, implemented beside `nf4::Nf4Tensor`) can compress
/// the checkpoint tensor by tensor while it streams.
pub trait FrozenFormat {
    fn freeze(&self, name: &str, weight: Tensor) -> Result<Box<dyn FrozenWeight>>;
}

/// Keeps projections as dense f32 matrices.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenseF32;

impl FrozenFormat for DenseF32 {
    fn freeze(&self, name: &str, weight: Tensor) -> Result<Box<dyn FrozenWeight>> {
        Ok(Box::new(DenseWeight::new(name, weight)?))
    }
}

#[derive(Debug, Clone)]
pub struct DenseWeight {
    /// [out, in] f32
    weight: Tensor,
}

impl DenseWeight {
    /// `name` is only used in the error when `weight` is not a 2-d f32 tensor.
    pub fn new(name: &str, weight: Tensor) -> Result<Self> {
        if weight.rank() != 2 || weight.dtype() != DType::F32 {
            return Err(ModelError::Input(format!(
                "frozen weight `{name}` must be a 2-d f32 tensor [out, in], got {:?} {:?}",
                weight.dtype(),
                weight.dims()
            )));
        }
        Ok(DenseWeight { weight })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl FrozenWeight for DenseWeight {
    fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }

    fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let shape = [self.out_features(), self.in_features()];
        match fast_product(&self.weight, shape, x, shape[0], kernel::dense_matmul_t)? {
            Some(y) => Ok(y),
            None => Ok(x.matmul(&self.weight.t()?)?),
        }
    }

    fn backward_input(&self, dy: &Tensor) -> Result<Tensor> {
        let shape = [self.out_features(), self.in_features()];
        match fast_product(&self.weight, shape, dy, shape[1], kernel::dense_matmul)? {
            Some(dx) => Ok(dx),
            None => Ok(dy.matmul(&self.weight)?),
        }
    }

    fn to_dense(&self) -> Result<Tensor> {
        Ok(self.weight.clone())
    }

    fn storage_bytes(&self) -> usize {
        self.weight.elem_count() * self.weight.dtype().size_in_bytes()
    }
}
