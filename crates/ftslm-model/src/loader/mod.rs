//! Where the model's f32 tensors come from. The model is built from any
//! [`WeightSource`] by Hugging Face tensor names, one tensor at a time, so a
//! loader (safetensors here, GGUF elsewhere) only has to hand tensors over by
//! those names and a quantizing [`crate::FrozenFormat`] can compress each as it
//! arrives.

pub mod files;
pub mod gguf;
pub mod safetensors;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};

pub use self::safetensors::SafetensorsCheckpoint;

/// A checkpoint as a set of named tensors (Hugging Face names, e.g.
/// `model.layers.0.self_attn.q_proj.weight`).
pub trait WeightSource {
    fn contains(&self, name: &str) -> bool;

    /// The tensor as f32 on `device`; each tensor is taken once, so a source
    /// may free it after handing it over.
    fn take_f32(&mut self, name: &str, device: &Device) -> Result<Tensor>;

    /// Where `name` is (or would be) read from, for error messages.
    fn location(&self, name: &str) -> String;
}

/// Tensors already in memory, e.g. dequantized from a GGUF file.
#[derive(Debug, Default)]
pub struct NamedTensors {
    tensors: HashMap<String, Tensor>,
    origin: String,
}

impl NamedTensors {
    /// `origin` names the source in errors (e.g. the GGUF file's path).
    pub fn new(tensors: HashMap<String, Tensor>, origin: impl Into<String>) -> Self {
        NamedTensors {
            tensors,
            origin: origin.into(),
        }
    }

    /// Tensors not taken by the model (e.g. ones it has no use for).
    pub fn remaining(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }
}

impl WeightSource for NamedTensors {
    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn take_f32(&mut self, name: &str, device: &Device) -> Result<Tensor> {
        let tensor = self
            .tensors
            .remove(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
                location: self.origin.clone(),
                hint: String::new(),
            })?;
        let tensor = tensor.to_dtype(DType::F32)?;
        check_finite(&tensor, name, &self.origin)?;
        Ok(tensor.to_device(device)?)
    }

    fn location(&self, _name: &str) -> String {
        self.origin.clone()
    }
}

/// Refuses a weight holding NaN or infinity, naming it: it would run to NaN
/// logits (and an empty answer) with no word of why.
pub(crate) fn check_finite(tensor: &Tensor, name: &str, location: &str) -> Result<()> {
    let find = |values: &[f32]| {
        values
            .iter()
            .position(|v| !v.is_finite())
            .map(|i| (i, values[i]))
    };
    let bad = match crate::kernel::with_cpu_f32(tensor, find) {
        Some(bad) => bad,
        None => find(
            &tensor
                .flatten_all()?
                .to_dtype(DType::F32)?
                .to_vec1::<f32>()?,
        ),
    };
    match bad {
        Some((index, value)) => Err(ModelError::NonFiniteWeight {
            name: name.to_string(),
            location: location.to_string(),
            index,
            value,
        }),
        None => Ok(()),
    }
}
