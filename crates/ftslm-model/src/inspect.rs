//! What a model costs before anything is loaded: parameter counts from its
//! configuration, the LoRA adapter a training config would add, and a QLoRA
//! training memory estimate by part. Everything here is arithmetic on a
//! [`LlamaConfig`], so a user can size Llama-3.1-8B from its config.json alone;
//! [`stored_weights`] reads only safetensors headers, never tensor data.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::config::{LlamaConfig, RopeScaling};
use crate::error::{ModelError, Result};
use crate::grad::DEFAULT_CHUNK_TOKENS;
use crate::json_fields::read_object;
use crate::loader::safetensors::{INDEX_FILE, SINGLE_FILE};
use crate::lora::Projection;
use crate::nf4::{NESTED_BLOCK_SIZE, NF4_BLOCK_SIZE};

/// The original Python plan's figure for Llama-3.1-8B (transformers + PEFT +
/// bitsandbytes, bf16 compute), shown beside our estimate for comparison.
pub const ORIGINAL_PLAN_8B: &str =
    "~11 GB on a 24 GB L4 (the original Python QLoRA plan, bf16 compute)";

/// An f32 tensor entry; every activation and optimizer state here is f32.
const F32_BYTES: u64 = 4;

/// `a × b × …` in u64, saturating instead of overflowing on absurd inputs.
fn product(factors: &[usize]) -> u64 {
    factors
        .iter()
        .fold(1u64, |acc, &f| acc.saturating_mul(f as u64))
}

/// `a + b + …`, saturating likewise.
fn sum(terms: &[u64]) -> u64 {
    terms.iter().fold(0u64, |acc, &t| acc.saturating_add(t))
}

/// Bytes of an f32 tensor of the given dimensions.
fn f32_tensor(dims: &[usize]) -> u64 {
    product(dims).saturating_mul(F32_BYTES)
}

/// The adapter a training config asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPlan {
    pub r: usize,
    pub target_modules: Vec<Projection>,
}

impl LoraPlan {
    /// A [r, in] and B [out, r] for every targeted projection of every layer.
    pub fn parameter_count(&self, config: &LlamaConfig) -> u64 {
        let per_layer: u64 = self
            .target_modules
            .iter()
            .map(|p| {
                let (out_features, in_features) = p.shape(config);
                product(&[self.r, in_features]).saturating_add(product(&[self.r, out_features]))
            })
            .fold(0u64, u64::saturating_add);
        per_layer.saturating_mul(config.num_hidden_layers as u64)
    }
}

/// Parameter counts by part, from the configuration alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParameterCounts {
    pub embedding: u64,
    /// q, k, v and o projections of one decoder layer.
    pub attention_per_layer: u64,
    /// gate, up and down projections of one decoder layer.
    pub mlp_per_layer: u64,
    /// input_layernorm and post_attention_layernorm of one decoder layer.
    pub norms_per_layer: u64,
    pub per_layer: u64,
    /// All decoder layers together.
    pub layers: u64,
    pub final_norm: u64,
    /// 0 when the LM head is tied to the embedding.
    pub lm_head: u64,
    pub total: u64,
    /// The seven projections of every layer: what QLoRA stores in NF4.
    pub projections: u64,
}

impl ParameterCounts {
    pub fn of(config: &LlamaConfig) -> Self {
        let shape_params = |p: Projection| {
            let (out_features, in_features) = p.shape(config);
            product(&[out_features, in_features])
        };
        let sum_of = |ps: &[Projection]| ps.iter().map(|&p| shape_params(p)).sum::<u64>();
        let attention_per_layer =
            sum_of(&[Projection::Q, Projection::K, Projection::V, Projection::O]);
        let mlp_per_layer = sum_of(&[Projection::Gate, Projection::Up, Projection::Down]);
        let norms_per_layer = product(&[2, config.hidden_size]);
        let per_layer = sum(&[attention_per_layer, mlp_per_layer, norms_per_layer]);
        let layer_count = config.num_hidden_layers as u64;
        let embedding = product(&[config.vocab_size, config.hidden_size]);
        let lm_head = if config.tie_word_embeddings {
            0
        } else {
            embedding
        };
        let layers = per_layer.saturating_mul(layer_count);
        let final_norm = config.hidden_size as u64;
        ParameterCounts {
            embedding,
            attention_per_layer,
            mlp_per_layer,
            norms_per_layer,
            per_layer,
            layers,
            final_norm,
            lm_head,
            total: sum(&[embedding, layers, final_norm, lm_head]),
            projections: sum(&[attention_per_layer, mlp_per_layer]).saturating_mul(layer_count),
        }
    }
}

/// Bytes one [out, in] matrix of `n` weights takes in NF4 with double
/// quantization, as `nf4::Nf4Tensor` stores it: 4-bit codes, one 8-bit
/// absmax code per block of 64, one f32 scale per 256 blocks, one f32 offset.
/// That is 4 + 8/64 + 32/(64·256) ≈ 4.127 bits per weight.
pub fn nf4_double_quant_bytes(n: u64) -> u64 {
    let blocks = n.div_ceil(NF4_BLOCK_SIZE as u64);
    let nested = blocks.div_ceil(NESTED_BLOCK_SIZE as u64);
    n.div_ceil(2) + blocks + nested * F32_BYTES + F32_BYTES
}

/// How the estimate holds the embedding and the LM head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingPrecision {
    /// What the CPU engine does today: converted to f32 at load.
    F32,
    /// As Hugging Face checkpoints store them.
    Bf16,
}

impl EmbeddingPrecision {
    pub fn bytes(self) -> u64 {
        match self {
            EmbeddingPrecision::F32 => 4,
            EmbeddingPrecision::Bf16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EmbeddingPrecision::F32 => "f32",
            EmbeddingPrecision::Bf16 => "bf16",
        }
    }
}

/// The training step the estimate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TrainingShape {
    pub batch_size: usize,
    pub seq_len: usize,
    /// Keep only each layer's input and recompute the layer in the backward.
    pub gradient_checkpointing: bool,
    pub embedding_precision: EmbeddingPrecision,
}

/// QLoRA training memory by part, in bytes. Activations are f32, for one
/// micro-batch of `batch_size` sequences of `seq_len` tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryEstimate {
    pub shape: TrainingShape,
    /// How the decoder projections are held ("NF4 + double quant" unless a
    /// loaded model says otherwise).
    pub frozen_format: String,
    /// Every decoder projection, as `frozen_format` stores it.
    pub frozen_projections: u64,
    /// Average bits per frozen projection weight (≈ 4.127).
    pub frozen_bits_per_param: f64,
    pub embedding: u64,
    pub lm_head: u64,
    /// All RMSNorm weights, f32.
    pub norms: u64,
    pub lora_weights: u64,
    pub lora_gradients: u64,
    /// AdamW's first and second moments, f32 each.
    pub adamw_states: u64,
    /// Layer inputs kept for recomputation: layers × B × L × hidden; without
    /// checkpointing also the internals of every layer but the live one.
    pub saved_layer_activations: u64,
    /// One layer's q, k, v and attention context (o_proj's input), B × L × width.
    pub layer_attention_projections: u64,
    /// One layer's attention probabilities, B × heads × L × L.
    pub layer_attention_scores: u64,
    /// One layer's gate, up and silu(gate)·up, 3 × B × L × intermediate.
    pub layer_mlp: u64,
    /// [min(256, B·L), vocab] logits of one cross-entropy chunk.
    pub cross_entropy_chunk: u64,
    pub total: u64,
}

/// One line of the estimate, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPart {
    /// The field name in [`MemoryEstimate`] (and its JSON).
    pub key: &'static str,
    pub what: String,
    pub bytes: u64,
}

impl MemoryEstimate {
    pub fn new(config: &LlamaConfig, lora: &LoraPlan, shape: TrainingShape) -> Self {
        let counts = ParameterCounts::of(config);
        let per_layer_nf4: u64 = Projection::ALL
            .iter()
            .map(|p| {
                let (out_features, in_features) = p.shape(config);
                nf4_double_quant_bytes(product(&[out_features, in_features]))
            })
            .fold(0u64, u64::saturating_add);
        let frozen_projections = per_layer_nf4.saturating_mul(config.num_hidden_layers as u64);
        let frozen_bits_per_param = if counts.projections == 0 {
            0.0
        } else {
            frozen_projections as f64 * 8.0 / counts.projections as f64
        };
        let precision = shape.embedding_precision.bytes();
        let lora_params = lora.parameter_count(config);
        let (b, l) = (shape.batch_size, shape.seq_len);
        let layers = config.num_hidden_layers as u64;

        let layer_input = f32_tensor(&[b, l, config.hidden_size]);
        let layer_attention_projections = sum(&[
            f32_tensor(&[2, b, l, config.q_dim()]),
            f32_tensor(&[2, b, l, config.kv_dim()]),
        ]);
        let layer_attention_scores = f32_tensor(&[b, config.num_attention_heads, l, l]);
        let layer_mlp = f32_tensor(&[3, b, l, config.intermediate_size]);
        let one_layer = sum(&[
            layer_attention_projections,
            layer_attention_scores,
            layer_mlp,
        ]);
        // The `layer_*` parts are the one layer whose internals are live:
        // with checkpointing, the last layer's forward and then each
        // recomputation; the others keep only their input. Without it every
        // layer keeps its internals until its backward.
        let saved_layer_activations = if shape.gradient_checkpointing {
            layer_input.saturating_mul(layers)
        } else {
            layer_input
                .saturating_mul(layers)
                .saturating_add(one_layer.saturating_mul(layers.saturating_sub(1)))
        };
        let chunk_rows = DEFAULT_CHUNK_TOKENS.min(b.saturating_mul(l));
        let cross_entropy_chunk = f32_tensor(&[chunk_rows, config.vocab_size]);

        let mut estimate = MemoryEstimate {
            shape,
            frozen_format: "NF4 + double quant".into(),
            frozen_projections,
            frozen_bits_per_param,
            embedding: counts.embedding.saturating_mul(precision),
            lm_head: counts.lm_head.saturating_mul(precision),
            norms: sum(&[
                counts.norms_per_layer.saturating_mul(layers),
                counts.final_norm,
            ])
            .saturating_mul(F32_BYTES),
            lora_weights: lora_params.saturating_mul(F32_BYTES),
            lora_gradients: lora_params.saturating_mul(F32_BYTES),
            adamw_states: lora_params.saturating_mul(2 * F32_BYTES),
            saved_layer_activations,
            layer_attention_projections,
            layer_attention_scores,
            layer_mlp,
            cross_entropy_chunk,
            total: 0,
        };
        estimate.total = estimate
            .parts()
            .iter()
            .fold(0u64, |sum, p| sum.saturating_add(p.bytes));
        estimate
    }

    /// The estimate with the frozen projections as a loaded model holds them
    /// (a GGUF's blocks, f32, bf16 rounded, or NF4 as measured) instead of
    /// the NF4 formula: the training plan knows the real figure.
    pub fn with_frozen_projections(
        mut self,
        format: impl Into<String>,
        bytes: u64,
        parameters: u64,
    ) -> Self {
        self.frozen_format = format.into();
        self.frozen_projections = bytes;
        self.frozen_bits_per_param = if parameters == 0 {
            0.0
        } else {
            bytes as f64 * 8.0 / parameters as f64
        };
        self.total = self
            .parts()
            .iter()
            .fold(0u64, |sum, p| sum.saturating_add(p.bytes));
        self
    }

    /// Frozen projections, embedding, LM head and norms.
    pub fn weights(&self) -> u64 {
        sum(&[
            self.frozen_projections,
            self.embedding,
            self.lm_head,
            self.norms,
        ])
    }

    /// LoRA values, their gradients and AdamW's moments.
    pub fn adapter_and_optimizer(&self) -> u64 {
        sum(&[self.lora_weights, self.lora_gradients, self.adamw_states])
    }

    /// Saved layer inputs and the live layer's internals.
    pub fn activations(&self) -> u64 {
        sum(&[
            self.saved_layer_activations,
            self.layer_attention_projections,
            self.layer_attention_scores,
            self.layer_mlp,
        ])
    }

    /// The parts that make up `total`, in display order.
    pub fn parts(&self) -> Vec<MemoryPart> {
        let s = &self.shape;
        let precision = s.embedding_precision.name();
        let saved = if s.gradient_checkpointing {
            "checkpointed layer inputs (layers × B × L × hidden, f32)"
        } else {
            "layer inputs + other layers' internals (no checkpointing, f32)"
        };
        let part = |key, what: String, bytes| MemoryPart { key, what, bytes };
        let mut parts = vec![
            part(
                "frozen_projections",
                format!(
                    "frozen projections, {} ({:.3} bits/param)",
                    self.frozen_format, self.frozen_bits_per_param
                ),
                self.frozen_projections,
            ),
            part(
                "embedding",
                format!("embedding ({precision})"),
                self.embedding,
            ),
            part("lm_head", format!("LM head ({precision})"), self.lm_head),
            part("norms", "RMSNorm weights (f32)".into(), self.norms),
            part("lora_weights", "LoRA A/B (f32)".into(), self.lora_weights),
            part(
                "lora_gradients",
                "LoRA gradients (f32)".into(),
                self.lora_gradients,
            ),
            part(
                "adamw_states",
                "AdamW moments (2 × f32)".into(),
                self.adamw_states,
            ),
            part(
                "saved_layer_activations",
                saved.into(),
                self.saved_layer_activations,
            ),
        ];
        parts.extend([
            part(
                "layer_attention_projections",
                "one layer: q, k, v, attention context (f32)".into(),
                self.layer_attention_projections,
            ),
            part(
                "layer_attention_scores",
                "one layer: attention scores B × heads × L × L (f32)".into(),
                self.layer_attention_scores,
            ),
            part(
                "layer_mlp",
                "one layer: MLP gate, up, activation 3 × B × L × intermediate (f32)".into(),
                self.layer_mlp,
            ),
        ]);
        parts.push(part(
            "cross_entropy_chunk",
            format!(
                "cross-entropy chunk ({} × vocab, f32)",
                DEFAULT_CHUNK_TOKENS.min(s.batch_size.saturating_mul(s.seq_len))
            ),
            self.cross_entropy_chunk,
        ));
        parts
    }
}

/// Whether the architecture is Llama-3.1-8B's, for which the original plan
/// gave a memory figure.
pub fn is_llama31_8b_sized(config: &LlamaConfig) -> bool {
    config.hidden_size == 4096
        && config.intermediate_size == 14336
        && config.num_hidden_layers == 32
        && config.num_attention_heads == 32
        && config.num_key_value_heads == 8
        && config.vocab_size == 128_256
}

/// The architecture as `ftslm model inspect --json` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchitectureSummary {
    pub num_hidden_layers: usize,
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// transformers' `rope_scaling` object, or null for plain RoPE.
    pub rope_scaling: Option<Value>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
}

impl ArchitectureSummary {
    pub fn of(config: &LlamaConfig) -> Self {
        ArchitectureSummary {
            num_hidden_layers: config.num_hidden_layers,
            hidden_size: config.hidden_size,
            num_attention_heads: config.num_attention_heads,
            num_key_value_heads: config.num_key_value_heads,
            head_dim: config.head_dim,
            intermediate_size: config.intermediate_size,
            vocab_size: config.vocab_size,
            rms_norm_eps: config.rms_norm_eps,
            rope_theta: config.rope.theta,
            rope_scaling: rope_scaling_json(&config.rope.scaling),
            max_position_embeddings: config.max_position_embeddings,
            tie_word_embeddings: config.tie_word_embeddings,
        }
    }
}

/// transformers 4's `rope_scaling` for the scaling, None for plain RoPE.
pub fn rope_scaling_json(scaling: &RopeScaling) -> Option<Value> {
    match scaling {
        RopeScaling::None => None,
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => Some(serde_json::json!({
            "factor": factor,
            "high_freq_factor": high_freq_factor,
            "low_freq_factor": low_freq_factor,
            "original_max_position_embeddings": original_max_position_embeddings,
            "rope_type": "llama3",
        })),
    }
}

/// What a directory's safetensors files hold, from their headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredWeights {
    pub files: Vec<String>,
    pub tensors: usize,
    pub parameters: u64,
    /// Parameters per stored dtype, e.g. {"BF16": 6377792}.
    pub dtypes: BTreeMap<String, u64>,
}

/// Counts the tensors of `model.safetensors` (or the shards its index
/// lists) from the headers alone; None when the directory has no weights.
pub fn stored_weights(dir: &Path) -> Result<Option<StoredWeights>> {
    let single = dir.join(SINGLE_FILE);
    let files: Vec<String> = if single.is_file() {
        vec![SINGLE_FILE.to_string()]
    } else if dir.join(INDEX_FILE).is_file() {
        shard_files(&dir.join(INDEX_FILE))?
    } else {
        return Ok(None);
    };
    let mut stored = StoredWeights {
        files: files.clone(),
        tensors: 0,
        parameters: 0,
        dtypes: BTreeMap::new(),
    };
    for file in &files {
        let path = dir.join(file);
        for (dtype, elements) in header_tensors(&path)? {
            stored.tensors += 1;
            stored.parameters += elements;
            *stored.dtypes.entry(dtype).or_insert(0) += elements;
        }
    }
    Ok(Some(stored))
}

fn shard_files(index: &Path) -> Result<Vec<String>> {
    let map = read_object(index)?;
    let field_error = || ModelError::Field {
        path: index.to_path_buf(),
        key: "weight_map".into(),
        problem: "must be an object mapping tensor names to shard file names".into(),
    };
    let weight_map = map
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(field_error)?;
    let mut files: Vec<String> = weight_map
        .values()
        .map(|v| v.as_str().map(str::to_string).ok_or_else(field_error))
        .collect::<Result<_>>()?;
    files.sort();
    files.dedup();
    Ok(files)
}

/// Largest safetensors header we accept (the format's own limit is 100 MB).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// (dtype, element count) of every tensor in a safetensors header.
fn header_tensors(path: &Path) -> Result<Vec<(String, u64)>> {
    let corrupt = |problem: String| ModelError::Unsupported {
        path: path.to_path_buf(),
        problem: format!("not a valid safetensors file: {problem}; download it again"),
    };
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| corrupt(format!("cannot read the header length ({e})")))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER_BYTES {
        return Err(corrupt(format!("the header claims {len} bytes")));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .map_err(|e| corrupt(format!("the {len}-byte header is truncated ({e})")))?;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&header)
        .map_err(|e| corrupt(format!("the header is not a JSON object ({e})")))?;
    let mut tensors = Vec::with_capacity(header.len());
    for (name, entry) in &header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = entry.get("dtype").and_then(Value::as_str);
        let shape = entry.get("shape").and_then(Value::as_array);
        let (Some(dtype), Some(shape)) = (dtype, shape) else {
            return Err(corrupt(format!("tensor `{name}` lacks a dtype or shape")));
        };
        let mut elements = 1u64;
        for dim in shape {
            let dim = dim
                .as_u64()
                .ok_or_else(|| corrupt(format!("tensor `{name}` has a non-integer dimension")))?;
            elements = elements.saturating_mul(dim);
        }
        tensors.push((dtype.to_string(), elements));
    }
    Ok(tensors)
}
