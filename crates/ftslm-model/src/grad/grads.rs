//! Gradients of an adapter's LoRA matrices, shaped like the adapter itself so
//! that an optimizer can walk both side by side, and summable across rows
//! and micro-batches.

use candle_core::DType;

use crate::error::{ModelError, Result};
use crate::grad::linear::LayerGrads;
use crate::lora::{LoraAdapter, LoraWeights, Projection};

/// dL/dA and dL/dB for every adapted projection: `a` [r, in] and `b`
/// [out, r], at the same (layer, projection) keys as the adapter.
#[derive(Debug, Clone)]
pub struct AdapterGrads {
    layers: Vec<LayerGrads>,
}

impl AdapterGrads {
    /// Zero gradients for every matrix of `adapter`, the start of an accumulation.
    pub fn zeros_like(adapter: &LoraAdapter) -> Result<Self> {
        let mut layers: Vec<LayerGrads> = vec![Default::default(); adapter.num_layers()];
        for (layer, projection, weights) in adapter.iter() {
            layers[layer][projection.index()] = Some(LoraWeights {
                a: weights.a.zeros_like()?,
                b: weights.b.zeros_like()?,
            });
        }
        Ok(AdapterGrads { layers })
    }

    pub(crate) fn from_layers(layers: Vec<LayerGrads>) -> Self {
        AdapterGrads { layers }
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub fn get(&self, layer: usize, projection: Projection) -> Option<&LoraWeights> {
        self.layers.get(layer)?[projection.index()].as_ref()
    }

    /// Every gradient as (layer, projection, dA/dB), layer-major in
    /// `Projection::ALL` order, the order of `LoraAdapter::iter`.
    pub fn iter(&self) -> impl Iterator<Item = (usize, Projection, &LoraWeights)> {
        self.layers.iter().enumerate().flat_map(|(l, layer)| {
            Projection::ALL
                .into_iter()
                .filter_map(move |p| layer[p.index()].as_ref().map(|g| (l, p, g)))
        })
    }

    /// self += other; both must come from the same adapter.
    pub fn add_assign(&mut self, other: &AdapterGrads) -> Result<()> {
        if self.layers.len() != other.layers.len() {
            return Err(ModelError::Input(format!(
                "cannot add gradients of {} layers to gradients of {}",
                other.layers.len(),
                self.layers.len()
            )));
        }
        for (layer, (mine, theirs)) in self.layers.iter_mut().zip(&other.layers).enumerate() {
            for projection in Projection::ALL {
                let i = projection.index();
                match (&mut mine[i], &theirs[i]) {
                    (None, None) => {}
                    (Some(mine), Some(theirs)) => {
                        mine.a = (&mine.a + &theirs.a)?;
                        mine.b = (&mine.b + &theirs.b)?;
                    }
                    _ => {
                        return Err(ModelError::Input(format!(
                            "cannot add gradients: only one side adapts {}",
                            projection.module_path(layer)
                        )))
                    }
                }
            }
        }
        Ok(())
    }

    /// Multiplies every gradient by `factor`.
    pub fn scale(&mut self, factor: f64) -> Result<()> {
        for grads in self.layers.iter_mut().flatten().flatten() {
            grads.a = grads.a.affine(factor, 0.0)?;
            grads.b = grads.b.affine(factor, 0.0)?;
        }
        Ok(())
    }

    /// √(Σ g²) over every entry of every matrix, accumulated in f64.
    pub fn global_norm(&self) -> Result<f64> {
        let mut sum_squares = 0.0;
        for (_, _, grads) in self.iter() {
            for t in [&grads.a, &grads.b] {
                sum_squares += t
                    .to_dtype(DType::F64)?
                    .sqr()?
                    .sum_all()?
                    .to_scalar::<f64>()?;
            }
        }
        Ok(sum_squares.sqrt())
    }

    /// Scales the gradients down so that their global norm is at most
    /// `max_norm`, as torch's `clip_grad_norm_` does (factor
    /// max_norm / (norm + 1e-6), applied only when below 1), and returns the
    /// norm before clipping. A non-finite norm is returned without touching
    /// the gradients, so the caller can skip the step.
    pub fn clip_to_norm(&mut self, max_norm: f64) -> Result<f64> {
        if !(max_norm.is_finite() && max_norm > 0.0) {
            return Err(ModelError::Input(format!(
                "the gradient clipping norm must be a positive number, got {max_norm}"
            )));
        }
        let norm = self.global_norm()?;
        if !norm.is_finite() {
            return Ok(norm);
        }
        let factor = max_norm / (norm + 1e-6);
        if factor < 1.0 {
            self.scale(factor)?;
        }
        Ok(norm)
    }

    /// The largest |self − other| over all entries; an error when the two do
    /// not cover the same matrices.
    pub fn max_abs_diff(&self, other: &AdapterGrads) -> Result<f64> {
        let mut difference = self.clone();
        difference.scale(-1.0)?;
        difference.add_assign(other)?;
        let mut worst: f64 = 0.0;
        for (_, _, grads) in difference.iter() {
            for t in [&grads.a, &grads.b] {
                let m = t
                    .to_dtype(DType::F64)?
                    .abs()?
                    .flatten_all()?
                    .max(0)?
                    .to_scalar::<f64>()?;
                worst = worst.max(m);
            }
        }
        Ok(worst)
    }
}
