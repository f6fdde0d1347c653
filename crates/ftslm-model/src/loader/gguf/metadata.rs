//! The model configuration of a Llama GGUF file, from its `llama.*` metadata,
//! cross-checked against (and refined by) a `config.json` lying beside it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;

use super::GgufFile;
use crate::config::{LlamaConfig, RopeConfig, RopeScaling};
use crate::error::{ModelError, Result};
use crate::rope::inverse_frequencies;

const ARCH: &str = "llama";

/// Where the model's configuration came from.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigSource {
    /// Only the GGUF metadata.
    GgufMetadata,
    /// The `config.json` beside the file: its architecture agrees with the
    /// GGUF metadata, and its finer values (rms_norm_eps as written rather
    /// than rounded to f32, rope scaling, end tokens) were used.
    ConfigJson(PathBuf),
}

#[derive(Debug, Clone)]
pub struct GgufMetadata {
    pub path: PathBuf,
    /// `general.name`
    pub name: Option<String>,
    pub config: LlamaConfig,
    pub config_source: ConfigSource,
    /// Values on which config.json and the GGUF metadata differ, settled in
    /// favour of config.json.
    pub notes: Vec<String>,
    /// Tensors per storage type, e.g. {"Q4_1": 210, "F32": 61, "Q8_0": 1}.
    pub dtype_counts: BTreeMap<String, usize>,
}

impl GgufMetadata {
    pub fn read(file: &GgufFile) -> Result<Self> {
        let reader = file.reader();
        let architecture = reader.str("general.architecture")?;
        if architecture != ARCH {
            return Err(ModelError::Unsupported {
                path: file.path().to_path_buf(),
                problem: format!(
                    "general.architecture is `{architecture}`; only Llama-architecture GGUF files (`llama`) are supported"
                ),
            });
        }
        let beside = file.path().with_file_name("config.json");
        let from_gguf = config_from_metadata(file, !beside.is_file())?;
        let (config, config_source, notes) = if beside.is_file() {
            let json = LlamaConfig::from_file(&beside)?;
            let (config, notes) = reconcile(file, from_gguf, json, &beside)?;
            (config, ConfigSource::ConfigJson(beside), notes)
        } else {
            (from_gguf, ConfigSource::GgufMetadata, Vec::new())
        };
        Ok(GgufMetadata {
            path: file.path().to_path_buf(),
            name: reader.opt_str("general.name")?.map(str::to_string),
            config,
            config_source,
            notes,
            dtype_counts: file.dtype_counts(),
        })
    }
}

/// `infer_rope`: recover Llama 3.1 scaling from `rope_freqs.weight` (not
/// needed when a config.json states it).
fn config_from_metadata(file: &GgufFile, infer_rope: bool) -> Result<LlamaConfig> {
    let m = file.reader();
    let key = |k: &str| format!("{ARCH}.{k}");
    let hidden_size = m.usize(&key("embedding_length"))?;
    let num_attention_heads = m.usize(&key("attention.head_count"))?;
    let num_key_value_heads = m
        .opt_usize(&key("attention.head_count_kv"))?
        .unwrap_or(num_attention_heads);
    let head_dim = match m.opt_usize(&key("attention.key_length"))? {
        Some(d) => d,
        None => hidden_size / num_attention_heads.max(1),
    };
    // The token list is what the embedding rows index.
    let vocab_size = match m.opt_array("tokenizer.ggml.tokens")? {
        Some(tokens) => tokens.len(),
        None => m.usize(&key("vocab_size"))?,
    };
    let eos = m.opt_u32("tokenizer.ggml.eos_token_id")?;
    let eot = m.opt_u32("tokenizer.ggml.eot_token_id")?;
    let mut eos_token_ids: Vec<u32> = eos.into_iter().collect();
    eos_token_ids.extend(eot.filter(|t| Some(*t) != eos));
    let config = LlamaConfig {
        hidden_size,
        intermediate_size: m.usize(&key("feed_forward_length"))?,
        num_hidden_layers: m.usize(&key("block_count"))?,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        vocab_size,
        rms_norm_eps: m.f64(&key("attention.layer_norm_rms_epsilon"))?,
        rope: RopeConfig {
            theta: m.opt_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            scaling: RopeScaling::None,
        },
        // llama.cpp's converter writes no output.weight for tied embeddings.
        tie_word_embeddings: !file.has_tensor("output.weight"),
        max_position_embeddings: m.opt_usize(&key("context_length"))?.unwrap_or(2048),
        bos_token_id: m.opt_u32("tokenizer.ggml.bos_token_id")?,
        eos_token_ids,
    };
    validate(&config, &m)?;
    if let Some(dims) = m.opt_usize(&key("rope.dimension_count"))? {
        if dims != head_dim {
            return Err(m.error(
                &key("rope.dimension_count"),
                format!("is {dims} but heads are {head_dim} wide; partial rotary embeddings are not supported"),
            ));
        }
    }
    let scaling = rope_scaling(file, &config, infer_rope)?;
    Ok(LlamaConfig {
        rope: RopeConfig {
            scaling,
            ..config.rope
        },
        ..config
    })
}

fn validate(c: &LlamaConfig, m: &MetadataReader) -> Result<()> {
    let key = |k: &str| format!("{ARCH}.{k}");
    let positive = [
        ("embedding_length", c.hidden_size),
        ("feed_forward_length", c.intermediate_size),
        ("block_count", c.num_hidden_layers),
        ("attention.head_count", c.num_attention_heads),
        ("attention.head_count_kv", c.num_key_value_heads),
        ("attention.key_length", c.head_dim),
    ];
    for (k, value) in positive {
        if value == 0 {
            return Err(m.error(&key(k), "must be greater than 0".into()));
        }
    }
    if c.vocab_size == 0 {
        return Err(m.error("tokenizer.ggml.tokens", "is empty".into()));
    }
    if !c.num_attention_heads.is_multiple_of(c.num_key_value_heads) || !c.head_dim.is_multiple_of(2)
    {
        return Err(m.error(
            &key("attention.head_count_kv"),
            format!(
                "({}) must divide head_count ({}) and heads ({} wide) must have an even width",
                c.num_key_value_heads, c.num_attention_heads, c.head_dim
            ),
        ));
    }
    if !(c.rms_norm_eps > 0.0 && c.rope.theta > 0.0) {
        return Err(m.error(
            &key("attention.layer_norm_rms_epsilon"),
            "and rope.freq_base must be positive".into(),
        ));
    }
    Ok(())
}

/// llama.cpp stores Llama 3.1 scaling not as metadata but as the tensor
/// `rope_freqs.weight`: the divisor of each frequency. The parameters that
/// produce it are recovered by matching the tensor against the Llama 3.1
/// schedule with its one free parameter, `factor`, read off its largest
/// divisor (transformers' defaults for the rest: low 1, high 4, 8192).
fn rope_scaling(file: &GgufFile, config: &LlamaConfig, infer: bool) -> Result<RopeScaling> {
    let m = file.reader();
    let kind = m.opt_str(&format!("{ARCH}.rope.scaling.type"))?;
    if let Some(kind) = kind.filter(|k| *k != "none") {
        return Err(ModelError::Unsupported {
            path: file.path().to_path_buf(),
            problem: format!("rope scaling `{kind}` is not supported (only none and Llama 3.1's)"),
        });
    }
    if !infer || !file.has_tensor("rope_freqs.weight") {
        return Ok(RopeScaling::None);
    }
    let divisors = rope_divisors(file)?;
    let factor = divisors.iter().copied().fold(1.0f32, f32::max) as f64;
    let candidate = RopeScaling::Llama3 {
        factor,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    };
    match rope_freqs_mismatch(config, &candidate, &divisors) {
        None => Ok(candidate),
        Some(problem) => Err(ModelError::Unsupported {
            path: file.path().to_path_buf(),
            problem: format!(
                "rope_freqs.weight is not Llama 3.1's default schedule ({problem}); put the model's config.json beside the file"
            ),
        }),
    }
}

fn rope_divisors(file: &GgufFile) -> Result<Vec<f32>> {
    Ok(file
        .read_f32("rope_freqs.weight")?
        .flatten_all()?
        .to_vec1()?)
}

/// Why `divisors` (llama.cpp's rope_freqs) disagree with `scaling`, if they do.
fn rope_freqs_mismatch(
    config: &LlamaConfig,
    scaling: &RopeScaling,
    divisors: &[f32],
) -> Option<String> {
    let plain = inverse_frequencies(config.head_dim, &config.rope);
    let scaled = inverse_frequencies(
        config.head_dim,
        &RopeConfig {
            theta: config.rope.theta,
            scaling: scaling.clone(),
        },
    );
    if divisors.len() != plain.len() {
        return Some(format!(
            "{} values for {} frequencies",
            divisors.len(),
            plain.len()
        ));
    }
    for (i, ((p, s), d)) in plain.iter().zip(&scaled).zip(divisors).enumerate() {
        let want = p / s;
        if (want - d).abs() > 1e-3 * want.abs() {
            return Some(format!(
                "frequency {i} is divided by {d}, the schedule says {want}"
            ));
        }
    }
    None
}

/// Checks config.json against the GGUF's own description and merges them:
/// shapes must agree (else config.json belongs to another model); the rest is
/// taken from config.json, which is what transformers runs.
fn reconcile(
    file: &GgufFile,
    gguf: LlamaConfig,
    json: LlamaConfig,
    json_path: &Path,
) -> Result<(LlamaConfig, Vec<String>)> {
    let shapes = [
        (
            "hidden_size",
            "embedding_length",
            gguf.hidden_size,
            json.hidden_size,
        ),
        (
            "intermediate_size",
            "feed_forward_length",
            gguf.intermediate_size,
            json.intermediate_size,
        ),
        (
            "num_hidden_layers",
            "block_count",
            gguf.num_hidden_layers,
            json.num_hidden_layers,
        ),
        (
            "num_attention_heads",
            "attention.head_count",
            gguf.num_attention_heads,
            json.num_attention_heads,
        ),
        (
            "num_key_value_heads",
            "attention.head_count_kv",
            gguf.num_key_value_heads,
            json.num_key_value_heads,
        ),
        (
            "head_dim",
            "attention.key_length",
            gguf.head_dim,
            json.head_dim,
        ),
        (
            "vocab_size",
            "tokenizer.ggml.tokens",
            gguf.vocab_size,
            json.vocab_size,
        ),
    ];
    for (json_key, gguf_key, g, j) in shapes {
        if g != j {
            return Err(ModelError::Field {
                path: json_path.to_path_buf(),
                key: json_key.into(),
                problem: format!(
                    "is {j} but {} says {g} ({gguf_key}); this config.json belongs to another model — remove it or put the right one beside the GGUF",
                    file.path().display()
                ),
            });
        }
    }
    let mut notes = Vec::new();
    let mut differs = |what: &str, g: String, j: String| {
        if g != j {
            notes.push(format!(
                "{what}: config.json {j}, GGUF {g}; using config.json's"
            ));
        }
    };
    differs(
        "rms_norm_eps",
        gguf.rms_norm_eps.to_string(),
        json.rms_norm_eps.to_string(),
    );
    differs(
        "max_position_embeddings",
        gguf.max_position_embeddings.to_string(),
        json.max_position_embeddings.to_string(),
    );
    differs(
        "bos_token_id",
        format!("{:?}", gguf.bos_token_id),
        format!("{:?}", json.bos_token_id),
    );
    differs(
        "eos_token_id",
        format!("{:?}", gguf.eos_token_ids),
        format!("{:?}", json.eos_token_ids),
    );
    // With rope_freqs.weight the GGUF side's scaling was not inferred; the
    // tensor itself is what config.json's scaling must reproduce.
    if file.has_tensor("rope_freqs.weight") {
        if let Some(problem) = rope_freqs_mismatch(&json, &json.rope.scaling, &rope_divisors(file)?)
        {
            notes.push(format!(
                "rope scaling: rope_freqs.weight disagrees with config.json ({problem}); using config.json's"
            ));
        }
    } else if gguf.rope != json.rope {
        notes.push(format!(
            "rope: config.json {:?}, GGUF {:?}; using config.json's",
            json.rope, gguf.rope
        ));
    }
    if gguf.tie_word_embeddings != json.tie_word_embeddings {
        // The tensors decide: without output.weight there is no separate head.
        notes.push(format!(
            "tie_word_embeddings: config.json {}, but the GGUF {} output.weight; following the file",
            json.tie_word_embeddings,
            if gguf.tie_word_embeddings { "has no" } else { "has" }
        ));
    }
    let config = LlamaConfig {
        tie_word_embeddings: gguf.tie_word_embeddings,
        ..json
    };
    Ok((config, notes))
}

/// Typed reads of GGUF metadata whose errors name the file and the key.
pub(crate) struct MetadataReader<'a> {
    path: &'a Path,
    map: &'a HashMap<String, Value>,
}

impl<'a> MetadataReader<'a> {
    pub(crate) fn new(path: &'a Path, map: &'a HashMap<String, Value>) -> Self {
        MetadataReader { path, map }
    }

    pub(crate) fn error(&self, key: &str, problem: String) -> ModelError {
        ModelError::Gguf {
            path: self.path.to_path_buf(),
            problem: format!("metadata `{key}` {problem}"),
        }
    }

    fn required<T>(&self, key: &str, value: Result<Option<T>>) -> Result<T> {
        value?.ok_or_else(|| self.error(key, "is missing".into()))
    }

    pub(crate) fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        let Some(value) = self.map.get(key) else {
            return Ok(None);
        };
        let n = match *value {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        };
        n.map(Some).ok_or_else(|| {
            self.error(
                key,
                format!("must be a non-negative integer, found {value:?}"),
            )
        })
    }

    pub(crate) fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        self.opt_u64(key)?
            .map(|v| usize::try_from(v).map_err(|_| self.error(key, format!("({v}) is too large"))))
            .transpose()
    }

    pub(crate) fn usize(&self, key: &str) -> Result<usize> {
        self.required(key, self.opt_usize(key))
    }

    pub(crate) fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        self.opt_u64(key)?
            .map(|v| {
                u32::try_from(v).map_err(|_| self.error(key, format!("({v}) is not a token id")))
            })
            .transpose()
    }

    /// f32 values are widened through their shortest decimal form, so a
    /// stored 1e-5f32 reads as 1e-5, the value the model was trained with,
    /// not 9.99999974737875e-6.
    pub(crate) fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::F64(v)) => Ok(Some(*v)),
            Some(Value::F32(v)) => Ok(Some(v.to_string().parse().unwrap_or(*v as f64))),
            Some(other) => Err(self.error(key, format!("must be a number, found {other:?}"))),
        }
    }

    pub(crate) fn f64(&self, key: &str) -> Result<f64> {
        self.required(key, self.opt_f64(key))
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Bool(v)) => Ok(Some(*v)),
            Some(other) => Err(self.error(key, format!("must be true or false, found {other:?}"))),
        }
    }

    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => {
                Err(self.error(key, format!("must be a string, found {}", brief(other))))
            }
        }
    }

    pub(crate) fn str(&self, key: &str) -> Result<&'a str> {
        self.required(key, self.opt_str(key))
    }

    pub(crate) fn opt_array(&self, key: &str) -> Result<Option<&'a [Value]>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items.as_slice())),
            Some(other) => {
                Err(self.error(key, format!("must be an array, found {}", brief(other))))
            }
        }
    }

    /// An array of strings; the error names the first element that is not one.
    pub(crate) fn opt_strings(&self, key: &str) -> Result<Option<Vec<&'a str>>> {
        let Some(items) = self.opt_array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.as_str()),
                other => Err(self.error(
                    key,
                    format!("[{i}] must be a string, found {}", brief(other)),
                )),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// An array of integers (e.g. token types, stored as i32).
    pub(crate) fn opt_ints(&self, key: &str) -> Result<Option<Vec<i64>>> {
        let Some(items) = self.opt_array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match *item {
                Value::I32(v) => Ok(v as i64),
                Value::U32(v) => Ok(v as i64),
                Value::I8(v) => Ok(v as i64),
                Value::U8(v) => Ok(v as i64),
                Value::I16(v) => Ok(v as i64),
                Value::U16(v) => Ok(v as i64),
                Value::I64(v) => Ok(v),
                ref other => Err(self.error(
                    key,
                    format!("[{i}] must be an integer, found {}", brief(other)),
                )),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

/// A value for an error message, without dumping a 50k-entry array.
fn brief(value: &Value) -> String {
    match value {
        Value::Array(items) => format!("an array of {} values", items.len()),
        Value::String(s) if s.len() > 60 => format!("a string of {} bytes", s.len()),
        other => format!("{other:?}"),
    }
}
