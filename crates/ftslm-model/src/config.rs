//! The architecture of a Llama-family checkpoint, read from its `config.json`
//! as transformers 4 writes it (`rope_theta` + `rope_scaling`) or as
//! transformers 5 does (`rope_parameters`), and the end-of-generation tokens
//! from `generation_config.json`.

use std::path::Path;

use crate::error::{ModelError, Result};
use crate::json_fields::{parse_object, read_object, Fields};

/// transformers' `LlamaConfig` defaults for keys a config.json may omit.
const DEFAULT_RMS_NORM_EPS: f64 = 1e-6;
const DEFAULT_ROPE_THETA: f64 = 10_000.0;
const DEFAULT_MAX_POSITIONS: usize = 2048;

#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Fewer than `num_attention_heads` under grouped-query attention.
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope: RopeConfig,
    /// When true the LM head reuses `model.embed_tokens.weight`.
    pub tie_word_embeddings: bool,
    pub max_position_embeddings: usize,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    pub theta: f64,
    pub scaling: RopeScaling,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE (`rope_type: "default"` or no scaling).
    None,
    /// Llama 3.1's frequency-dependent scaling (`rope_type: "llama3"`).
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
}

impl LlamaConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let map = read_object(path)?;
        Self::from_fields(&Fields::new(path, &map))
    }

    /// Parses config.json text; `origin` is only used to name the file in errors.
    pub fn from_json_str(text: &str, origin: &Path) -> Result<Self> {
        let map = parse_object(text, origin)?;
        Self::from_fields(&Fields::new(origin, &map))
    }

    fn from_fields(f: &Fields) -> Result<Self> {
        check_architecture(f)?;
        let hidden_size = f.usize("hidden_size")?;
        let num_attention_heads = f.usize("num_attention_heads")?;
        let num_key_value_heads = f
            .opt_usize("num_key_value_heads")?
            .unwrap_or(num_attention_heads);
        let head_dim = match f.opt_usize("head_dim")? {
            Some(d) => d,
            None if num_attention_heads > 0 => hidden_size / num_attention_heads,
            None => 0,
        };
        let config = LlamaConfig {
            hidden_size,
            intermediate_size: f.usize("intermediate_size")?,
            num_hidden_layers: f.usize("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            vocab_size: f.usize("vocab_size")?,
            rms_norm_eps: f.opt_f64("rms_norm_eps")?.unwrap_or(DEFAULT_RMS_NORM_EPS),
            rope: rope_config(f)?,
            tie_word_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            max_position_embeddings: f
                .opt_usize("max_position_embeddings")?
                .unwrap_or(DEFAULT_MAX_POSITIONS),
            bos_token_id: f.token_ids("bos_token_id")?.first().copied(),
            eos_token_ids: f.token_ids("eos_token_id")?,
        };
        config.validate(f)?;
        Ok(config)
    }

    fn validate(&self, f: &Fields) -> Result<()> {
        let positive = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(f.error(key, "must be greater than 0"));
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(f.error(
                "num_key_value_heads",
                format!(
                    "({}) must divide num_attention_heads ({}) for grouped-query attention",
                    self.num_key_value_heads, self.num_attention_heads
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(f.error(
                "head_dim",
                format!("({}) must be even for rotary embeddings", self.head_dim),
            ));
        }
        if !is_positive(self.rms_norm_eps) {
            return Err(f.error("rms_norm_eps", "must be a positive number"));
        }
        if !is_positive(self.rope.theta) {
            return Err(f.error("rope_theta", "must be a positive number"));
        }
        Ok(())
    }

    /// Width of the concatenated query heads (q_proj's output features).
    pub fn q_dim(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }

    /// Width of the concatenated key (or value) heads.
    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    /// Query heads that share one key/value head.
    pub fn heads_per_kv_head(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }
}

/// False for zero, negatives and NaN.
fn is_positive(x: f64) -> bool {
    x > 0.0
}

/// Rejects checkpoints whose layers differ from what this crate computes,
/// rather than loading them and producing silently wrong logits.
fn check_architecture(f: &Fields) -> Result<()> {
    let unsupported = |problem: String| ModelError::Unsupported {
        path: f.path(),
        problem,
    };
    if let Some(model_type) = f.opt_str("model_type")? {
        if model_type != "llama" {
            return Err(unsupported(format!(
                "model_type is `{model_type}`; only Llama-architecture checkpoints (model_type `llama`) are supported"
            )));
        }
    }
    if let Some(act) = f.opt_str("hidden_act")? {
        if act != "silu" {
            return Err(unsupported(format!(
                "hidden_act is `{act}`; the Llama MLP here is SwiGLU (`silu`)"
            )));
        }
    }
    for key in ["attention_bias", "mlp_bias"] {
        if f.opt_bool(key)?.unwrap_or(false) {
            return Err(unsupported(format!(
                "{key} is true; projections with bias are not supported"
            )));
        }
    }
    Ok(())
}

/// transformers 5 keeps theta and scaling together in `rope_parameters`;
/// transformers 4 has `rope_theta` and an optional `rope_scaling`.
fn rope_config(f: &Fields) -> Result<RopeConfig> {
    if let Some(params) = f.nested("rope_parameters")? {
        let theta = params.opt_f64("rope_theta")?.unwrap_or(DEFAULT_ROPE_THETA);
        return Ok(RopeConfig {
            theta,
            scaling: rope_scaling(&params)?,
        });
    }
    let theta = f.opt_f64("rope_theta")?.unwrap_or(DEFAULT_ROPE_THETA);
    let scaling = match f.nested("rope_scaling")? {
        Some(scaling) => rope_scaling(&scaling)?,
        None => RopeScaling::None,
    };
    Ok(RopeConfig { theta, scaling })
}

fn rope_scaling(f: &Fields) -> Result<RopeScaling> {
    // Older transformers 4 configs call the key `type`.
    let rope_type = match f.opt_str("rope_type")? {
        Some(t) => t,
        None => f.opt_str("type")?.unwrap_or("default"),
    };
    match rope_type {
        "default" => Ok(RopeScaling::None),
        "llama3" => {
            let factor = f.f64("factor")?;
            let low_freq_factor = f.f64("low_freq_factor")?;
            let high_freq_factor = f.f64("high_freq_factor")?;
            if !is_positive(factor) {
                return Err(f.error("factor", "must be a positive number"));
            }
            if !is_positive(low_freq_factor) {
                return Err(f.error("low_freq_factor", "must be a positive number"));
            }
            if !is_positive(high_freq_factor - low_freq_factor) {
                return Err(f.error("high_freq_factor", "must be greater than low_freq_factor"));
            }
            Ok(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: f.usize("original_max_position_embeddings")?,
            })
        }
        other => Err(f.error(
            "rope_type",
            format!("`{other}` is not supported; use `default` or `llama3`"),
        )),
    }
}

/// The parts of `generation_config.json` generation needs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GenerationConfig {
    pub bos_token_id: Option<u32>,
    /// Generation stops at any of these (`eos_token_id`, an int or a list).
    pub eos_token_ids: Vec<u32>,
}

impl GenerationConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let map = read_object(path)?;
        let f = Fields::new(path, &map);
        Ok(GenerationConfig {
            bos_token_id: f.token_ids("bos_token_id")?.first().copied(),
            eos_token_ids: f.token_ids("eos_token_id")?,
        })
    }

    /// The end tokens of a model directory: generation_config.json's when the
    /// file exists (it is what transformers' `generate` obeys), else config.json's.
    pub fn end_token_ids(model_dir: &Path, config: &LlamaConfig) -> Result<Vec<u32>> {
        let path = model_dir.join("generation_config.json");
        if path.exists() {
            let generation = Self::from_file(&path)?;
            if !generation.eos_token_ids.is_empty() {
                return Ok(generation.eos_token_ids);
            }
        }
        Ok(config.eos_token_ids.clone())
    }
}
