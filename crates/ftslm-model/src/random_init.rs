//! A random-weight checkpoint of any Llama `config.json`, in Hugging Face
//! layout (safetensors shards of at most 5 GB and their index, as
//! `save_pretrained` writes them), initialised as transformers'
//! `LlamaForCausalLM(config)` is: N(0, initializer_range) for the embedding
//! and every projection (the padding token's embedding row zero), ones for
//! the norms. For tests and for speed benchmarks at a real shape, since
//! speed does not depend on the weights' values.
//!
//! Values are drawn per chunk of a tensor from a generator seeded by (seed,
//! tensor, chunk), so the checkpoint is the same whatever the thread count,
//! and only a few chunks are in memory at once: an 8B model is streamed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::{json, Map, Value};

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::json_fields::read_object;
use crate::lora::Projection;
use crate::merge::{safetensors_header, MergedDtype, TOKENIZER_FILES};

/// transformers' default shard limit (`max_shard_size="5GB"`).
pub const MAX_SHARD_BYTES: u64 = 5_000_000_000;

/// Values drawn per generator.
const CHUNK: usize = 1 << 20;

/// How a tensor starts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Init {
    /// N(0, std²); `zero_row` is set to 0 (the padding token's embedding).
    Normal {
        std: f32,
        zero_row: Option<usize>,
    },
    Ones,
}

#[derive(Debug, Clone)]
struct PlannedTensor {
    name: String,
    dims: Vec<usize>,
    init: Init,
}

impl PlannedTensor {
    fn values(&self) -> usize {
        self.dims.iter().product()
    }
}

/// What `random-init` will write, known before any value is drawn.
#[derive(Debug, Clone)]
pub struct RandomCheckpoint {
    config_path: PathBuf,
    config_json: Map<String, Value>,
    tensors: Vec<PlannedTensor>,
    dtype: MergedDtype,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RandomInitSummary {
    pub out: PathBuf,
    pub tensors: usize,
    pub parameters: u64,
    pub bytes: u64,
    pub shards: usize,
}

impl RandomCheckpoint {
    /// Reads `config_path` and lists every tensor a Llama of that shape has.
    pub fn plan(config_path: &Path, dtype: MergedDtype) -> Result<Self> {
        let config = LlamaConfig::from_file(config_path)?;
        let config_json = read_object(config_path)?;
        let std = match config_json.get("initializer_range") {
            None | Some(Value::Null) => 0.02,
            Some(v) => v
                .as_f64()
                .filter(|s| *s > 0.0 && s.is_finite())
                .ok_or_else(|| ModelError::Field {
                    path: config_path.to_path_buf(),
                    key: "initializer_range".into(),
                    problem: format!("is {v}; it must be a positive number (Llama uses 0.02)"),
                })? as f32,
        };
        let pad = config_json
            .get("pad_token_id")
            .and_then(Value::as_u64)
            .map(|id| id as usize)
            .filter(|&id| id < config.vocab_size);
        let normal = |zero_row| Init::Normal { std, zero_row };
        let hidden = config.hidden_size;
        let mut tensors = vec![PlannedTensor {
            name: "model.embed_tokens.weight".into(),
            dims: vec![config.vocab_size, hidden],
            init: normal(pad),
        }];
        for layer in 0..config.num_hidden_layers {
            for (norm, _) in [("input_layernorm", ()), ("post_attention_layernorm", ())] {
                tensors.push(PlannedTensor {
                    name: format!("model.layers.{layer}.{norm}.weight"),
                    dims: vec![hidden],
                    init: Init::Ones,
                });
            }
            for projection in Projection::ALL {
                let (out_features, in_features) = projection.shape(&config);
                tensors.push(PlannedTensor {
                    name: format!("{}.weight", projection.module_path(layer)),
                    dims: vec![out_features, in_features],
                    init: normal(None),
                });
            }
        }
        tensors.push(PlannedTensor {
            name: "model.norm.weight".into(),
            dims: vec![hidden],
            init: Init::Ones,
        });
        if !config.tie_word_embeddings {
            tensors.push(PlannedTensor {
                name: "lm_head.weight".into(),
                dims: vec![config.vocab_size, hidden],
                init: normal(None),
            });
        }
        Ok(RandomCheckpoint {
            config_path: config_path.to_path_buf(),
            config_json,
            tensors,
            dtype,
        })
    }

    pub fn parameters(&self) -> u64 {
        self.tensors.iter().map(|t| t.values() as u64).sum()
    }

    /// The weights' bytes (what the free-space check needs, headers aside).
    pub fn bytes(&self) -> u64 {
        self.parameters() * self.dtype.bytes_per_value() as u64
    }

    /// Tensor indices per shard: tensors in order, a new shard whenever the
    /// next tensor would take this one past `max_shard_bytes`.
    fn shards(&self, max_shard_bytes: u64) -> Vec<Vec<usize>> {
        let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
        let mut size = 0u64;
        for (index, tensor) in self.tensors.iter().enumerate() {
            let bytes = (tensor.values() * self.dtype.bytes_per_value()) as u64;
            let current = shards.last_mut().expect("one shard at least");
            if !current.is_empty() && size + bytes > max_shard_bytes {
                shards.push(vec![index]);
                size = bytes;
            } else {
                current.push(index);
                size += bytes;
            }
        }
        shards
    }

    /// Writes the checkpoint's files into `dir` (an empty folder the caller
    /// publishes): config.json, the shards, the index when there are several,
    /// and the tokenizer files of `tokenizer_from` when given. `progress` hears
    /// (tensors written, tensors in all).
    pub fn write(
        &self,
        dir: &Path,
        seed: u64,
        max_shard_bytes: u64,
        tokenizer_from: Option<&Path>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<RandomInitSummary> {
        let mut config = self.config_json.clone();
        config.insert("torch_dtype".into(), self.dtype.torch_name().into());
        if config.contains_key("dtype") {
            config.insert("dtype".into(), self.dtype.torch_name().into());
        }
        let config_bytes = serde_json::to_vec_pretty(&Value::Object(config)).map_err(|source| {
            ModelError::Json {
                path: self.config_path.clone(),
                source,
            }
        })?;
        std::fs::write(dir.join("config.json"), config_bytes)
            .map_err(|e| ModelError::io(dir.join("config.json"), e))?;

        let shards = self.shards(max_shard_bytes);
        let count = shards.len();
        let mut weight_map = Map::new();
        let mut done = 0;
        for (number, members) in shards.iter().enumerate() {
            let file_name = if count == 1 {
                "model.safetensors".to_string()
            } else {
                format!("model-{:05}-of-{count:05}.safetensors", number + 1)
            };
            self.write_shard(&dir.join(&file_name), members, seed, &mut |written| {
                progress(done + written, self.tensors.len())
            })?;
            done += members.len();
            for &index in members {
                weight_map.insert(self.tensors[index].name.clone(), file_name.clone().into());
            }
        }
        if count > 1 {
            let index =
                json!({ "metadata": { "total_size": self.bytes() }, "weight_map": weight_map });
            let path = dir.join(crate::loader::safetensors::INDEX_FILE);
            let bytes = serde_json::to_vec_pretty(&index).map_err(|source| ModelError::Json {
                path: path.clone(),
                source,
            })?;
            std::fs::write(&path, bytes).map_err(|e| ModelError::io(&path, e))?;
        }
        if let Some(from) = tokenizer_from {
            let mut copied = 0;
            for name in TOKENIZER_FILES {
                let source = from.join(name);
                if source.is_file() {
                    std::fs::copy(&source, dir.join(name))
                        .map_err(|e| ModelError::io(&source, e))?;
                    copied += 1;
                }
            }
            if copied == 0 {
                return Err(ModelError::ModelPath {
                    path: from.to_path_buf(),
                    problem: "holds no tokenizer file (tokenizer.json, tokenizer_config.json, ...)"
                        .into(),
                });
            }
        }
        Ok(RandomInitSummary {
            out: dir.to_path_buf(),
            tensors: self.tensors.len(),
            parameters: self.parameters(),
            bytes: self.bytes(),
            shards: count,
        })
    }

    fn write_shard(
        &self,
        path: &Path,
        members: &[usize],
        seed: u64,
        progress: &mut dyn FnMut(usize),
    ) -> Result<()> {
        let shapes: Vec<(&str, &[usize])> = members
            .iter()
            .map(|&i| {
                (
                    self.tensors[i].name.as_str(),
                    self.tensors[i].dims.as_slice(),
                )
            })
            .collect();
        let (header, _) = safetensors_header(&shapes, self.dtype, path)?;
        let io = |e| ModelError::io(path, e);
        let mut writer = BufWriter::new(File::create(path).map_err(io)?);
        writer
            .write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io)?;
        writer.write_all(&header).map_err(io)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        for (written, &index) in members.iter().enumerate() {
            let tensor = &self.tensors[index];
            let chunks = tensor.values().div_ceil(CHUNK);
            // A batch of chunks drawn side by side, then written in order.
            for first in (0..chunks).step_by(threads) {
                let batch: Vec<Vec<u8>> = std::thread::scope(|scope| {
                    let handles: Vec<_> = (first..chunks.min(first + threads))
                        .map(|chunk| {
                            scope.spawn(move || self.chunk_bytes(tensor, index, chunk, seed))
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("drawing values does not panic"))
                        .collect()
                });
                for bytes in batch {
                    writer.write_all(&bytes).map_err(io)?;
                }
            }
            progress(written + 1);
        }
        let file = writer.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)
    }

    /// The bytes of chunk `chunk` of tensor `index`.
    fn chunk_bytes(
        &self,
        tensor: &PlannedTensor,
        index: usize,
        chunk: usize,
        seed: u64,
    ) -> Vec<u8> {
        let start = chunk * CHUNK;
        let end = (start + CHUNK).min(tensor.values());
        let values: Vec<f32> = match tensor.init {
            Init::Ones => vec![1.0; end - start],
            Init::Normal { std, zero_row } => {
                let mut key = [0u8; 32];
                key[..8].copy_from_slice(&seed.to_le_bytes());
                key[8..16].copy_from_slice(&(index as u64).to_le_bytes());
                key[16..24].copy_from_slice(&(chunk as u64).to_le_bytes());
                let mut rng = ChaCha8Rng::from_seed(key);
                let row_len = tensor.dims.last().copied().unwrap_or(1);
                (start..end)
                    .map(|at| {
                        let draw: f32 = StandardNormal.sample(&mut rng);
                        if zero_row == Some(at / row_len) {
                            0.0
                        } else {
                            draw * std
                        }
                    })
                    .collect()
            }
        };
        let mut bytes = Vec::with_capacity(values.len() * self.dtype.bytes_per_value());
        self.dtype.extend_bytes(&values, &mut bytes);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::safetensors::{SafetensorsCheckpoint, INDEX_FILE};
    use candle_core::Device;

    fn tiny_config(dir: &Path, tie: bool) -> PathBuf {
        let path = dir.join("config.json");
        let config = json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 128,
            "tie_word_embeddings": tie, "pad_token_id": 3, "initializer_range": 0.02,
        });
        std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
        path
    }

    /// The checkpoint loads back as a model of its config, its values have
    /// the initialiser's spread, the padding row is zero, norms are ones, and
    /// the same seed gives the same bytes whatever the sharding.
    #[test]
    fn a_random_checkpoint_loads_back_with_the_initialisers_statistics() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tiny_config(tmp.path(), false);
        let plan = RandomCheckpoint::plan(&config, MergedDtype::F32).unwrap();
        // 2 layers × (2 norms + 7 projections) + embedding + final norm + head
        assert_eq!(plan.tensors.len(), 2 * 9 + 3);
        let one = tmp.path().join("one");
        let many = tmp.path().join("many");
        std::fs::create_dir_all(&one).unwrap();
        std::fs::create_dir_all(&many).unwrap();
        let mut heard = Vec::new();
        let summary = plan
            .write(&one, 7, MAX_SHARD_BYTES, None, &mut |done, all| {
                heard.push((done, all))
            })
            .unwrap();
        assert_eq!((summary.shards, summary.tensors), (1, 21));
        assert_eq!(heard.last(), Some(&(21, 21)));
        let sharded = plan.write(&many, 7, 60_000, None, &mut |_, _| {}).unwrap();
        assert!(sharded.shards > 2, "{sharded:?}");
        assert!(many.join(INDEX_FILE).is_file());

        let read = |dir: &Path| {
            let checkpoint = SafetensorsCheckpoint::open(dir).unwrap();
            let names: Vec<String> = checkpoint.tensor_names().map(str::to_string).collect();
            names
                .into_iter()
                .map(|name| {
                    let tensor = checkpoint.load_raw(&name, &Device::Cpu).unwrap();
                    let values: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
                    (name, values)
                })
                .collect::<std::collections::HashMap<_, _>>()
        };
        let (a, b) = (read(&one), read(&many));
        assert_eq!(a, b, "the same values, one file or several");
        let embed = &a["model.embed_tokens.weight"];
        assert!(
            embed[3 * 64..4 * 64].iter().all(|&v| v == 0.0),
            "padding row"
        );
        let q = &a["model.layers.1.self_attn.q_proj.weight"];
        let mean = q.iter().sum::<f32>() / q.len() as f32;
        let std = (q.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / q.len() as f32).sqrt();
        assert!(
            mean.abs() < 0.002 && (std - 0.02).abs() < 0.002,
            "mean {mean} std {std}"
        );
        assert!(a["model.norm.weight"].iter().all(|&v| v == 1.0));

        let again = tmp.path().join("again");
        std::fs::create_dir_all(&again).unwrap();
        plan.write(&again, 8, MAX_SHARD_BYTES, None, &mut |_, _| {})
            .unwrap();
        assert_ne!(
            read(&again)["lm_head.weight"],
            a["lm_head.weight"],
            "another seed"
        );
    }

    #[test]
    fn tied_embeddings_have_no_head_and_a_bad_initializer_range_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tiny_config(tmp.path(), true);
        let plan = RandomCheckpoint::plan(&config, MergedDtype::Bf16).unwrap();
        assert!(plan.tensors.iter().all(|t| t.name != "lm_head.weight"));
        assert_eq!(plan.bytes(), plan.parameters() * 2);
        let mut map = read_object(&config).unwrap();
        map.insert("initializer_range".into(), json!(-1));
        std::fs::write(&config, serde_json::to_vec(&map).unwrap()).unwrap();
        let err = RandomCheckpoint::plan(&config, MergedDtype::Bf16)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("initializer_range") && err.contains("positive"),
            "{err}"
        );
    }
}
