//! LoRA adapters on the seven projections of a Llama decoder layer, with
//! PEFT's semantics: y = W·x + scale · B·A·dropout(x), A [r, in], B [out, r],
//! scale = alpha/r (or alpha/√r with rsLoRA). Reading and writing PEFT's files
//! is in `adapter_io`.

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

use crate::config::LlamaConfig;
pub use crate::dropout::LoraDropout;
use crate::error::{ModelError, Result};

/// A projection of a decoder layer, named as PEFT's `target_modules` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Projection {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Projection {
    pub const ALL: [Projection; 7] = [
        Projection::Q,
        Projection::K,
        Projection::V,
        Projection::O,
        Projection::Gate,
        Projection::Up,
        Projection::Down,
    ];

    pub fn module_name(self) -> &'static str {
        match self {
            Projection::Q => "q_proj",
            Projection::K => "k_proj",
            Projection::V => "v_proj",
            Projection::O => "o_proj",
            Projection::Gate => "gate_proj",
            Projection::Up => "up_proj",
            Projection::Down => "down_proj",
        }
    }

    pub fn from_module_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.module_name() == name)
    }

    /// `lora.target_modules` (PEFT's names; "all-linear" means all seven) as
    /// projections, each once in the order given; the error says what is wrong.
    pub fn parse_targets(names: &[String]) -> std::result::Result<Vec<Self>, String> {
        if names.iter().any(|n| n == "all-linear") {
            return Ok(Self::ALL.to_vec());
        }
        let mut out = Vec::new();
        for name in names {
            let Some(p) = Self::from_module_name(name) else {
                let known: Vec<&str> = Self::ALL.iter().map(|p| p.module_name()).collect();
                return Err(format!(
                    "`{name}` is not a Llama projection; use {} or all-linear \
                     (e.g. --set lora.target_modules=[q_proj,v_proj])",
                    known.join(", ")
                ));
            };
            if !out.contains(&p) {
                out.push(p);
            }
        }
        if out.is_empty() {
            return Err("is empty; name at least one projection, e.g. [q_proj, v_proj]".into());
        }
        Ok(out)
    }

    /// The submodule of a decoder layer that owns the projection.
    pub fn block(self) -> &'static str {
        match self {
            Projection::Q | Projection::K | Projection::V | Projection::O => "self_attn",
            Projection::Gate | Projection::Up | Projection::Down => "mlp",
        }
    }

    /// Path of the projection inside the model, e.g. `model.layers.3.mlp.up_proj`.
    pub fn module_path(self, layer: usize) -> String {
        format!(
            "model.layers.{layer}.{}.{}",
            self.block(),
            self.module_name()
        )
    }

    /// (out_features, in_features) of the projection's weight.
    pub fn shape(self, config: &LlamaConfig) -> (usize, usize) {
        let hidden = config.hidden_size;
        match self {
            Projection::Q => (config.q_dim(), hidden),
            Projection::K | Projection::V => (config.kv_dim(), hidden),
            Projection::O => (hidden, config.q_dim()),
            Projection::Gate | Projection::Up => (config.intermediate_size, hidden),
            Projection::Down => (hidden, config.intermediate_size),
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The hyper-parameters of an adapter (adapter_config.json's LoRA fields).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSettings {
    pub r: usize,
    pub alpha: f64,
    /// Probability of zeroing an input feature of the LoRA path in training.
    pub dropout: f64,
    pub target_modules: Vec<Projection>,
    /// rsLoRA: scale by alpha/√r instead of alpha/r.
    pub use_rslora: bool,
}

impl LoraSettings {
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// A description of the first invalid setting, if any.
    pub fn problem(&self) -> Option<String> {
        if self.r == 0 {
            return Some("r must be at least 1".into());
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return Some(format!(
                "lora_alpha must be a positive number (the update is scaled by lora_alpha / r), got {}",
                self.alpha
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Some(format!(
                "lora_dropout must be in [0, 1), got {}",
                self.dropout
            ));
        }
        if self.target_modules.is_empty() {
            return Some("target_modules must name at least one projection".into());
        }
        None
    }
}

/// One projection's adapter matrices, f32.
#[derive(Debug, Clone)]
pub struct LoraWeights {
    /// [r, in]
    pub a: Tensor,
    /// [out, r]
    pub b: Tensor,
}

/// A LoRA adapter for every decoder layer of one model.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    settings: LoraSettings,
    base_model_name_or_path: Option<String>,
    /// `layers[l][projection]`, None where the projection is not adapted.
    layers: Vec<[Option<LoraWeights>; 7]>,
    /// adapter_config.json as read, so that saving keeps fields we do not model.
    pub(crate) peft_config: Map<String, Value>,
}

impl LoraAdapter {
    /// A new adapter initialised as PEFT does by default: A ~ Kaiming-uniform
    /// (torch's `kaiming_uniform_(a=√5)`, i.e. U(±1/√in)), B = 0, so the
    /// adapted model starts equal to the base. Weights are drawn from a
    /// ChaCha8 stream seeded with `seed`, layer by layer in `Projection::ALL` order.
    pub fn new(
        config: &LlamaConfig,
        settings: LoraSettings,
        base_model_name_or_path: Option<String>,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        if let Some(problem) = settings.problem() {
            return Err(ModelError::Input(format!("LoRA settings: {problem}")));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for _ in 0..config.num_hidden_layers {
            let mut layer: [Option<LoraWeights>; 7] = Default::default();
            for projection in Projection::ALL {
                if !settings.target_modules.contains(&projection) {
                    continue;
                }
                let (out_features, in_features) = projection.shape(config);
                let bound = kaiming_uniform_bound(in_features, 5f64.sqrt()) as f32;
                let a: Vec<f32> = (0..settings.r * in_features)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                layer[projection.index()] = Some(LoraWeights {
                    a: Tensor::from_vec(a, (settings.r, in_features), device)?,
                    b: Tensor::zeros((out_features, settings.r), candle_core::DType::F32, device)?,
                });
            }
            layers.push(layer);
        }
        Ok(LoraAdapter {
            settings,
            base_model_name_or_path,
            layers,
            peft_config: Map::new(),
        })
    }

    /// Assembles an adapter from weights already checked against the model.
    pub(crate) fn from_parts(
        settings: LoraSettings,
        base_model_name_or_path: Option<String>,
        layers: Vec<[Option<LoraWeights>; 7]>,
        peft_config: Map<String, Value>,
    ) -> Self {
        LoraAdapter {
            settings,
            base_model_name_or_path,
            layers,
            peft_config,
        }
    }

    pub fn settings(&self) -> &LoraSettings {
        &self.settings
    }

    pub fn scale(&self) -> f64 {
        self.settings.scale()
    }

    pub fn base_model_name_or_path(&self) -> Option<&str> {
        self.base_model_name_or_path.as_deref()
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub fn get(&self, layer: usize, projection: Projection) -> Option<&LoraWeights> {
        self.layers.get(layer)?[projection.index()].as_ref()
    }

    /// For an optimizer step that replaces A and B.
    pub fn get_mut(&mut self, layer: usize, projection: Projection) -> Option<&mut LoraWeights> {
        self.layers.get_mut(layer)?[projection.index()].as_mut()
    }

    /// Every adapted projection as (layer, projection, weights), layer-major.
    pub fn iter(&self) -> impl Iterator<Item = (usize, Projection, &LoraWeights)> {
        self.layers.iter().enumerate().flat_map(|(l, layer)| {
            Projection::ALL
                .into_iter()
                .filter_map(move |p| layer[p.index()].as_ref().map(|w| (l, p, w)))
        })
    }

    /// Number of trainable parameters (all A and B entries).
    pub fn parameter_count(&self) -> usize {
        self.iter()
            .map(|(_, _, w)| w.a.elem_count() + w.b.elem_count())
            .sum()
    }

    /// An error when this adapter was made for a model of other dimensions.
    pub fn check_fits(&self, config: &LlamaConfig) -> Result<()> {
        if self.layers.len() != config.num_hidden_layers {
            return Err(ModelError::Input(format!(
                "the adapter has {} layers but the model has {}",
                self.layers.len(),
                config.num_hidden_layers
            )));
        }
        for (layer, projection, weights) in self.iter() {
            let (out_features, in_features) = projection.shape(config);
            let r = self.settings.r;
            if weights.a.dims() != [r, in_features] || weights.b.dims() != [out_features, r] {
                return Err(ModelError::Input(format!(
                    "the adapter of {} has A {:?} and B {:?}; this model needs A [{r}, {in_features}] and B [{out_features}, {r}]",
                    projection.module_path(layer),
                    weights.a.dims(),
                    weights.b.dims()
                )));
            }
        }
        Ok(())
    }
}

/// torch.nn.init.kaiming_uniform_'s bound for leaky-ReLU slope `a`:
/// gain·√(3/fan_in) with gain = √(2/(1+a²)).
pub fn kaiming_uniform_bound(fan_in: usize, a: f64) -> f64 {
    (6.0 / ((1.0 + a * a) * fan_in as f64)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_modules_map_to_projections_as_peft_names_them() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            Projection::parse_targets(&names(&["q_proj", "v_proj", "q_proj"])).unwrap(),
            vec![Projection::Q, Projection::V]
        );
        assert_eq!(
            Projection::parse_targets(&names(&["all-linear"])).unwrap(),
            Projection::ALL
        );
        let err = Projection::parse_targets(&names(&["lm_head"])).unwrap_err();
        assert!(
            err.contains("`lm_head`") && err.contains("all-linear"),
            "{err}"
        );
        let err = Projection::parse_targets(&[]).unwrap_err();
        assert!(err.contains("is empty"), "{err}");
    }
}
