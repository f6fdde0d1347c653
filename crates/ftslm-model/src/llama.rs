//! The Llama decoder: token embedding, N × (RMSNorm → attention → residual,
//! RMSNorm → SwiGLU → residual), final RMSNorm, LM head. One forward pass
//! runs one packed row: tokens with their own positions and segment ids.

use std::ops::Range;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::attention::{Attention, LayerKv};
use crate::backend::Backend;
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::frozen_linear::{FrozenFormat, FrozenWeight};
use crate::grad::decoder::{layer_forward, layer_forward_cached};
use crate::grad::linear::LayerAdapter;
use crate::grad::model::layer_adapter;
use crate::kernel;
use crate::loader::{SafetensorsCheckpoint, WeightSource};
use crate::lora::{LoraAdapter, LoraDropout, Projection};
use crate::mlp::Mlp;
use crate::norm::RmsNorm;
use crate::rope::RotaryEmbedding;

#[derive(Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

#[derive(Debug)]
pub struct LlamaModel {
    config: LlamaConfig,
    /// [vocab, hidden]
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    /// [vocab, hidden]; the same tensor as `embed_tokens` when tied.
    lm_head: Tensor,
    /// The LM head in 16-bit integers for `High` precision products, made
    /// at its first use there (None where its shape is not whole tiles).
    #[cfg(target_arch = "x86_64")]
    quantised_lm_head: std::sync::OnceLock<Option<kernel::QuantisedMatrix>>,
    rope: RotaryEmbedding,
    device: Device,
}

impl LlamaModel {
    /// Loads a Hugging Face model directory (config.json + safetensors),
    /// storing the projections as `format` decides.
    pub fn load_hf(dir: &Path, format: &dyn FrozenFormat, device: &Device) -> Result<Self> {
        let config = LlamaConfig::from_file(&dir.join("config.json"))?;
        let mut checkpoint = SafetensorsCheckpoint::open(dir)?;
        Self::from_weights(config, &mut checkpoint, format, device)
    }

    /// Builds the model from tensors with Hugging Face names, taking them one
    /// by one so that only one unconverted tensor exists at a time.
    pub fn from_weights(
        config: LlamaConfig,
        weights: &mut dyn WeightSource,
        format: &dyn FrozenFormat,
        device: &Device,
    ) -> Result<Self> {
        let (hidden, vocab) = (config.hidden_size, config.vocab_size);
        let embed_tokens = take(
            weights,
            "model.embed_tokens.weight",
            &[vocab, hidden],
            device,
        )?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for layer in 0..config.num_hidden_layers {
            layers.push(load_layer(&config, layer, weights, format, device)?);
        }
        let norm = RmsNorm::new(
            take(weights, "model.norm.weight", &[hidden], device)?,
            config.rms_norm_eps,
        );
        let lm_head = if config.tie_word_embeddings {
            embed_tokens.clone()
        } else {
            if !weights.contains("lm_head.weight") {
                return Err(ModelError::MissingTensor {
                    name: "lm_head.weight".into(),
                    location: weights.location("lm_head.weight"),
                    hint: "; config.json says tie_word_embeddings is false — if the model shares its embedding matrix with the LM head, set it to true".into(),
                });
            }
            take(weights, "lm_head.weight", &[vocab, hidden], device)?
        };
        let rope = RotaryEmbedding::new(config.head_dim, &config.rope);
        Ok(LlamaModel {
            config,
            embed_tokens,
            layers,
            norm,
            lm_head,
            #[cfg(target_arch = "x86_64")]
            quantised_lm_head: std::sync::OnceLock::new(),
            rope,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The backend the model's layers compute on (that of its device).
    pub fn backend(&self) -> &'static dyn Backend {
        crate::backend::for_device(&self.device)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn layers(&self) -> &[DecoderLayer] {
        &self.layers
    }

    pub fn embed_tokens(&self) -> &Tensor {
        &self.embed_tokens
    }

    pub fn final_norm(&self) -> &RmsNorm {
        &self.norm
    }

    /// [vocab, hidden]
    pub fn lm_head(&self) -> &Tensor {
        &self.lm_head
    }

    /// The LM head for the 16-bit integer products, where products run at
    /// `High` precision on a CPU that has them and the head is f32 in CPU
    /// memory in whole 64 × 64 tiles; quantised once, at the first call.
    #[cfg(target_arch = "x86_64")]
    pub fn quantised_lm_head(&self) -> Option<&kernel::QuantisedMatrix> {
        if !kernel::integer_products() {
            return None;
        }
        self.quantised_lm_head
            .get_or_init(|| {
                let shape = [self.lm_head.dim(0).ok()?, self.lm_head.dim(1).ok()?];
                kernel::with_cpu_f32(&self.lm_head, |w| {
                    kernel::QuantisedMatrix::quantise(w, shape)
                })
                .flatten()
            })
            .as_ref()
    }

    pub fn rotary_embedding(&self) -> &RotaryEmbedding {
        &self.rope
    }

    /// Logits [tokens, vocab] of one packed row, without dropout.
    ///
    /// `positions` restart at 0 for each packed example; tokens with equal
    /// `segments` ids form one example and attend causally only within it.
    pub fn forward(
        &self,
        input_ids: &[u32],
        positions: &[u32],
        segments: &[u32],
        adapter: Option<&LoraAdapter>,
    ) -> Result<Tensor> {
        let hidden = self.final_hidden(input_ids, positions, segments, adapter, None)?;
        Ok(hidden.matmul(&self.lm_head.t()?)?)
    }

    /// Like [`forward`](Self::forward) but with LoRA dropout drawn from `dropout`.
    pub fn forward_training(
        &self,
        input_ids: &[u32],
        positions: &[u32],
        segments: &[u32],
        adapter: &LoraAdapter,
        dropout: &mut LoraDropout,
    ) -> Result<Tensor> {
        let hidden =
            self.final_hidden(input_ids, positions, segments, Some(adapter), Some(dropout))?;
        Ok(hidden.matmul(&self.lm_head.t()?)?)
    }

    /// The final-norm hidden states [tokens, hidden], before the LM head; a
    /// loss can project them to the vocabulary a chunk of tokens at a time.
    pub fn final_hidden(
        &self,
        input_ids: &[u32],
        positions: &[u32],
        segments: &[u32],
        adapter: Option<&LoraAdapter>,
        mut dropout: Option<&mut LoraDropout>,
    ) -> Result<Tensor> {
        let runs = self.check_row(input_ids, positions, segments)?;
        if let Some(adapter) = adapter {
            adapter.check_fits(&self.config)?;
        }
        let ids = Tensor::new(input_ids, &self.device)?;
        let rope = self.rope.tables(positions, &self.device)?;

        let tokens = input_ids.len();
        let backend = self.backend();
        let mut h = self.embed_tokens.index_select(&ids, 0)?; // [tokens, hidden]
        for (index, layer) in self.layers.iter().enumerate() {
            let lora = match adapter {
                Some(adapter) => layer_adapter(
                    backend,
                    &self.config,
                    adapter,
                    index,
                    tokens,
                    dropout.as_deref_mut(),
                    &self.device,
                )?,
                None => LayerAdapter::none(),
            };
            // The training forward; its saved state is dropped layer by layer.
            let (out, _) = layer_forward(backend, layer, &lora, &h, &rope, &runs)?;
            h = out;
        }
        backend.rms_norm(&self.norm, &h)
    }

    /// Continues several sequences at once: `new_tokens[i]` extends the
    /// sequence whose keys and values `caches[i]` holds (empty for a fresh
    /// prompt). Returns the next-token logits [sequences, vocab], one row per
    /// sequence. The sequences share each projection's matmul, which is what
    /// makes batched decoding cheaper than one sequence at a time.
    pub fn forward_cached(
        &self,
        new_tokens: &[&[u32]],
        caches: &mut [KvCache],
        adapter: Option<&LoraAdapter>,
    ) -> Result<Tensor> {
        if new_tokens.len() != caches.len() {
            return Err(ModelError::Input(format!(
                "{} sequences but {} caches; give one cache per sequence",
                new_tokens.len(),
                caches.len()
            )));
        }
        if let Some(adapter) = adapter {
            adapter.check_fits(&self.config)?;
        }
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut segments = Vec::with_capacity(new_tokens.len());
        for (tokens, cache) in new_tokens.iter().zip(caches.iter()) {
            if tokens.is_empty() {
                return Err(ModelError::Input(
                    "a sequence has no new tokens; each step needs at least one".into(),
                ));
            }
            let start = ids.len();
            ids.extend_from_slice(tokens);
            positions.extend((0..tokens.len()).map(|i| (cache.len() + i) as u32));
            segments.push(start..ids.len());
        }
        let segment_ids: Vec<u32> = segments
            .iter()
            .enumerate()
            .flat_map(|(s, r)| std::iter::repeat_n(s as u32, r.len()))
            .collect();
        self.check_row(&ids, &positions, &segment_ids)?;
        let rope = self.rope.tables(&positions, &self.device)?;
        let ids = Tensor::new(ids.as_slice(), &self.device)?;

        let backend = self.backend();
        let mut h = self.embed_tokens.index_select(&ids, 0)?; // [tokens, hidden]
        for (index, layer) in self.layers.iter().enumerate() {
            let lora = match adapter {
                Some(adapter) => LayerAdapter::from_adapter(adapter, index),
                None => LayerAdapter::none(),
            };
            let mut layer_caches: Vec<&mut LayerKv> =
                caches.iter_mut().map(|c| &mut c.layers[index]).collect();
            h = layer_forward_cached(
                backend,
                layer,
                &lora,
                &h,
                &rope,
                &segments,
                &mut layer_caches,
            )?;
        }
        let last: Vec<u32> = segments.iter().map(|r| (r.end - 1) as u32).collect();
        let last = Tensor::new(last.as_slice(), &self.device)?;
        let h = backend.rms_norm(&self.norm, &h.index_select(&last, 0)?)?; // [sequences, hidden]
        Ok(h.matmul(&self.lm_head.t()?)?)
    }

    /// An empty cache for one sequence of this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache {
            layers: vec![LayerKv::default(); self.layers.len()],
        }
    }

    /// Checks one packed row and returns the token ranges of its examples.
    pub(crate) fn check_row(
        &self,
        input_ids: &[u32],
        positions: &[u32],
        segments: &[u32],
    ) -> Result<Vec<Range<usize>>> {
        let tokens = input_ids.len();
        if tokens == 0 {
            return Err(ModelError::Input("the row has no tokens".into()));
        }
        if positions.len() != tokens || segments.len() != tokens {
            return Err(ModelError::Input(format!(
                "the row has {tokens} token ids but {} positions and {} segment ids; give one of each per token",
                positions.len(),
                segments.len()
            )));
        }
        if let Some((i, &id)) = input_ids
            .iter()
            .enumerate()
            .find(|(_, &id)| id as usize >= self.config.vocab_size)
        {
            return Err(ModelError::Input(format!(
                "token {i} has id {id}, outside the model's vocabulary of {}",
                self.config.vocab_size
            )));
        }
        segment_runs(segments)
    }
}

/// Everything one sequence has computed so far: each layer's keys and values.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<LayerKv>,
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, LayerKv::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The maximal runs of equal segment ids. An id that comes back after another
/// one would make its example non-contiguous, which packing never produces.
pub fn segment_runs(segments: &[u32]) -> Result<Vec<Range<usize>>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    for (i, &segment) in segments.iter().enumerate() {
        match runs.last_mut() {
            Some(run) if segments[run.start] == segment => run.end = i + 1,
            _ => {
                if let Some(earlier) = runs.iter().find(|r| segments[r.start] == segment) {
                    return Err(ModelError::Input(format!(
                        "segment id {segment} appears at tokens {}..{} and again at token {i}; each packed example must be contiguous",
                        earlier.start, earlier.end
                    )));
                }
                runs.push(i..i + 1);
            }
        }
    }
    Ok(runs)
}

fn load_layer(
    config: &LlamaConfig,
    layer: usize,
    weights: &mut dyn WeightSource,
    format: &dyn FrozenFormat,
    device: &Device,
) -> Result<DecoderLayer> {
    let prefix = format!("model.layers.{layer}");
    let hidden = config.hidden_size;
    let norm = |weights: &mut dyn WeightSource, name: &str| -> Result<RmsNorm> {
        let weight = take(
            weights,
            &format!("{prefix}.{name}.weight"),
            &[hidden],
            device,
        )?;
        Ok(RmsNorm::new(weight, config.rms_norm_eps))
    };
    let input_layernorm = norm(weights, "input_layernorm")?;
    let post_attention_layernorm = norm(weights, "post_attention_layernorm")?;
    let mut projection = |p: Projection| -> Result<Box<dyn FrozenWeight>> {
        let (out_features, in_features) = p.shape(config);
        let name = format!("{}.weight", p.module_path(layer));
        let weight = take(weights, &name, &[out_features, in_features], device)?;
        format.freeze(&name, weight)
    };
    let self_attn = Attention {
        q_proj: projection(Projection::Q)?,
        k_proj: projection(Projection::K)?,
        v_proj: projection(Projection::V)?,
        o_proj: projection(Projection::O)?,
        num_heads: config.num_attention_heads,
        num_kv_heads: config.num_key_value_heads,
        head_dim: config.head_dim,
    };
    let mlp = Mlp {
        gate_proj: projection(Projection::Gate)?,
        up_proj: projection(Projection::Up)?,
        down_proj: projection(Projection::Down)?,
    };
    Ok(DecoderLayer {
        input_layernorm,
        self_attn,
        post_attention_layernorm,
        mlp,
    })
}

/// Takes a tensor and checks its shape against the config.
fn take(
    weights: &mut dyn WeightSource,
    name: &str,
    expected: &[usize],
    device: &Device,
) -> Result<Tensor> {
    let tensor = weights.take_f32(name, device)?;
    if tensor.dims() != expected {
        return Err(ModelError::TensorShape {
            name: name.to_string(),
            location: weights.location(name),
            expected: expected.to_vec(),
            got: tensor.dims().to_vec(),
            hint: "; does config.json belong to these weights?",
        });
    }
    Ok(tensor)
}
