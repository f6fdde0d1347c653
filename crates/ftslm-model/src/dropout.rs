//! LoRA dropout: the seeded stream of masks the training path draws, and
//! the masks themselves, kept one byte per value. The training path holds
//! every layer's masks from the forward to the backward; as f32 factors they
//! were 120 MB at batch 4 on SmolLM2, a fifth of the activations.

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{ModelError, Result};
use crate::kernel::dropout::{kept_bytes, masked_values};
use crate::kernel::{self};

/// Which values of an input dropout keeps (1) or drops (0), as a u8
/// tensor, and the factor 1/(1−p) the kept ones are scaled by.
#[derive(Debug, Clone)]
pub struct DropoutMask {
    kept: Tensor,
    scale: f32,
}

impl DropoutMask {
    /// `kept` must be a u8 tensor of 0s and 1s.
    pub fn new(kept: Tensor, scale: f32) -> Result<Self> {
        if kept.dtype() != DType::U8 {
            return Err(ModelError::Input(format!(
                "a dropout mask is a u8 tensor of 0 and 1, not {:?}",
                kept.dtype()
            )));
        }
        let values = kept.flatten_all()?.to_vec1::<u8>()?;
        if let Some(bad) = values.iter().find(|&&v| v > 1) {
            return Err(ModelError::Input(format!(
                "a dropout mask holds 0 (dropped) and 1 (kept), not {bad}"
            )));
        }
        Ok(DropoutMask { kept, scale })
    }

    pub fn dims(&self) -> &[usize] {
        self.kept.dims()
    }

    /// The mask as factors of `dtype`: 0 where dropped, 1/(1−p) where kept.
    pub fn factors(&self, dtype: DType) -> Result<Tensor> {
        let factors = self
            .kept
            .to_dtype(DType::F32)?
            .affine(f64::from(self.scale), 0.0)?;
        Ok(factors.to_dtype(dtype)?)
    }

    /// x ⊙ mask, x of the mask's shape: each value times 0 or 1/(1−p), as
    /// a multiplication by [`DropoutMask::factors`] rounds it.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if x.dims() != self.dims() {
            return Err(ModelError::Input(format!(
                "a dropout mask of shape {:?} applied to a tensor of shape {:?}",
                self.dims(),
                x.dims()
            )));
        }
        if x.dtype() == DType::F32 {
            let x = x.contiguous()?;
            let masked = kernel::with_cpu_f32(&x, |values| {
                self.with_kept(|kept| masked_values(values, kept, self.scale))
            })
            .flatten();
            if let Some(masked) = masked {
                return Ok(Tensor::from_vec(masked, x.shape(), x.device())?);
            }
        }
        Ok(x.mul(&self.factors(x.dtype())?)?)
    }

    /// Runs `f` on the mask's bytes where they lie in CPU memory,
    /// contiguous; None otherwise.
    pub(crate) fn with_kept<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        kernel::with_cpu_u8(&self.kept, f)
    }

    pub(crate) fn scale(&self) -> f32 {
        self.scale
    }
}

/// The seedable source of LoRA dropout masks in training; inference passes none.
#[derive(Debug, Clone)]
pub struct LoraDropout {
    p: f32,
    rng: ChaCha8Rng,
}

impl LoraDropout {
    pub fn new(p: f64, seed: u64) -> Self {
        LoraDropout {
            p: p as f32,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The next mask of the given shape, or None when p is 0 so that no
    /// work is spent on an identity.
    pub fn dropout_mask(&mut self, dims: &[usize], device: &Device) -> Result<Option<DropoutMask>> {
        if self.p <= 0.0 {
            return Ok(None);
        }
        let count: usize = dims.iter().product();
        // The stream in blocks, as successive next_u32 calls would give it
        // (a call per value was most of the mask's cost), then one pass that
        // vectorises.
        let mut words = vec![0u32; count];
        self.rng.fill(&mut words[..]);
        let kept = kept_bytes(&words, drop_threshold(self.p));
        // 0s and 1s by construction, so `DropoutMask::new`'s check is skipped.
        Ok(Some(DropoutMask {
            kept: Tensor::from_vec(kept, dims, device)?,
            scale: 1.0 / (1.0 - self.p),
        }))
    }
}

/// The integer form of `rng.random::<f32>() < p`: rand draws that f32 as
/// `(next_u32 >> 8) · 2⁻²⁴`, exactly, so it is below p exactly when the
/// 24-bit integer is below ⌈p · 2²⁴⌉. The masks stay those of the float
/// comparison (and of every adapter trained before) without a conversion per value.
fn drop_threshold(p: f32) -> u32 {
    (f64::from(p) * f64::from(1u32 << 24)).ceil() as u32
}

#[cfg(test)]
mod tests {
    use rand::RngCore;

    use super::*;

    /// The integer threshold drops exactly the values the float comparison
    /// `random::<f32>() < p` drops, for the same stream.
    #[test]
    fn dropout_masks_are_those_of_the_float_comparison() {
        for p in [0.1f32, 0.05, 0.5, 0.3333] {
            let mut dropout = LoraDropout::new(f64::from(p), 7);
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            // Two masks of odd sizes: the second continues the stream where
            // the first left it.
            for dims in [[64, 97], [3, 5]] {
                let mask = dropout.dropout_mask(&dims, &Device::Cpu).unwrap().unwrap();
                let mask = mask.factors(DType::F32).unwrap();
                let mask = mask.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let want: Vec<bool> = (0..mask.len()).map(|_| rng.random::<f32>() < p).collect();
                let dropped: Vec<bool> = mask.iter().map(|&v| v == 0.0).collect();
                assert_eq!(dropped, want, "p = {p}, {dims:?}");
            }
            assert_eq!(dropout.rng.next_u32(), rng.next_u32(), "p = {p}");
        }
        let mut dropout = LoraDropout::new(0.5, 7);
        let mask = dropout
            .dropout_mask(&[64, 97], &Device::Cpu)
            .unwrap()
            .unwrap();
        let mask = mask.factors(DType::F32).unwrap();
        let mask = mask.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(mask.contains(&0.0) && mask.contains(&2.0));
        // At the edge: a 24-bit value equal to p·2²⁴ is not below p.
        assert_eq!(drop_threshold(0.5), 1 << 23);
    }

    /// A mask applied on the kernel (f32) and through candle (f64) gives the
    /// products with its factors, and refuses an input of another shape.
    #[test]
    fn masks_apply_as_their_factors() {
        let mut dropout = LoraDropout::new(0.1, 3);
        let mask = dropout
            .dropout_mask(&[7, 37], &Device::Cpu)
            .unwrap()
            .unwrap();
        let values: Vec<f32> = (0..7 * 37).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let x = Tensor::from_vec(values, (7, 37), &Device::Cpu).unwrap();
        let values = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want = values(x.mul(&mask.factors(DType::F32).unwrap()).unwrap());
        let got = values(mask.apply(&x).unwrap());
        assert_eq!(got, want);
        assert!(want.contains(&0.0) && want.iter().any(|&v| v != 0.0));
        let x64 = x.to_dtype(DType::F64).unwrap();
        let got64 = mask.apply(&x64).unwrap().to_dtype(DType::F32).unwrap();
        assert_eq!(got64.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want);
        assert!(mask.apply(&x.narrow(0, 0, 6).unwrap()).is_err());
        let floats = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(DropoutMask::new(floats, 2.0).is_err());
        let twos = Tensor::from_vec(vec![0u8, 1, 2], 3, &Device::Cpu).unwrap();
        assert!(DropoutMask::new(twos, 2.0).is_err());
    }
}
