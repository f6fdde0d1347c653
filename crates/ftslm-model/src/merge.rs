//! Merging a LoRA adapter into its base model: W' = W + scale·B·A for every
//! adapted projection, written as a Hugging Face model directory
//! (config.json, model.safetensors, generation_config.json, tokenizer files)
//! that transformers and `LlamaModel::load_hf` load without PEFT.
//!
//! The base is loaded in f32 (a GGUF base is dequantized), each merged
//! projection is computed in f32 and rounded once to the output dtype, and
//! the safetensors file is streamed tensor by tensor so that only one merged
//! matrix exists besides the base model. The directory is assembled beside
//! `out` and renamed into place, so `out` is either complete or absent.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use ftslm_fs::StagedDir;
use serde_json::{json, Map, Value};

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::frozen_linear::{DenseF32, FrozenWeight};
use crate::gguf_tokenizer::GgufTokenizer;
use crate::inspect::rope_scaling_json;
use crate::json_fields::read_object;
use crate::llama::{DecoderLayer, LlamaModel};
use crate::loader::files::ModelFiles;
use crate::loader::gguf::{load_gguf, ConfigSource, GgufBase, GgufMetadata};
use crate::loader::safetensors::SINGLE_FILE;
use crate::lora::{LoraAdapter, Projection};

/// Tokenizer files carried over from the base directory when present.
pub const TOKENIZER_FILES: [&str; 5] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
];

/// Values converted per write while streaming a tensor to disk.
const WRITE_CHUNK: usize = 1 << 16;

/// The precision of the merged weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergedDtype {
    /// What Llama checkpoints on the Hub are stored in.
    #[default]
    Bf16,
    /// Exact f32 sums, twice the size.
    F32,
}

impl MergedDtype {
    /// config.json's `torch_dtype`.
    pub fn torch_name(self) -> &'static str {
        self.spec().1
    }

    pub fn bytes_per_value(self) -> usize {
        self.spec().2
    }

    /// Values as the little-endian bytes of this dtype, appended to `out`.
    pub(crate) fn extend_bytes(self, values: &[f32], out: &mut Vec<u8>) {
        match self {
            MergedDtype::F32 => out.extend(values.iter().flat_map(|v| v.to_le_bytes())),
            MergedDtype::Bf16 => out.extend(
                values
                    .iter()
                    .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()),
            ),
        }
    }

    /// (safetensors dtype, torch_dtype, bytes per value)
    fn spec(self) -> (&'static str, &'static str, usize) {
        match self {
            MergedDtype::Bf16 => ("BF16", "bfloat16", 2),
            MergedDtype::F32 => ("F32", "float32", 4),
        }
    }
}

/// Where the base came from, i.e. where config, generation config and
/// tokenizer files are copied from.
#[derive(Debug, Clone, Copy)]
pub enum BaseFiles<'a> {
    /// A Hugging Face model directory.
    HfDir(&'a Path),
    /// A GGUF file: a config.json/tokenizer beside it is used, otherwise they
    /// are generated from its metadata.
    Gguf(&'a GgufMetadata),
    /// No files: config.json and generation_config.json are generated.
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MergeSummary {
    pub out: PathBuf,
    pub dtype: MergedDtype,
    /// Projections that received an adapter delta.
    pub merged_projections: usize,
    pub tensors: usize,
    pub parameters: u64,
    /// Size of model.safetensors.
    pub weights_bytes: u64,
    /// Files written into `out`, sorted.
    pub files: Vec<String>,
    /// What was generated rather than copied, and other things to know.
    pub notes: Vec<String>,
}

/// Loads the base (`model`: a Hugging Face directory or a .gguf file) in f32
/// and the PEFT adapter in `adapter`, and writes the merged model into `out`,
/// which must not exist or be empty.
pub fn merge_to_dir(
    model: &Path,
    adapter: &Path,
    out: &Path,
    dtype: MergedDtype,
) -> Result<MergeSummary> {
    check_out(out)?;
    let device = Device::Cpu;
    match ModelFiles::locate(model)? {
        ModelFiles::Gguf { file, .. } => {
            let (base, metadata) = load_gguf(&file, GgufBase::F32, &device)?;
            let lora = LoraAdapter::load_peft(adapter, base.config(), &device)?;
            write_merged(&base, Some(&lora), BaseFiles::Gguf(&metadata), out, dtype)
        }
        ModelFiles::Safetensors { dir } => {
            let base = LlamaModel::load_hf(&dir, &DenseF32, &device)?;
            let lora = LoraAdapter::load_peft(adapter, base.config(), &device)?;
            write_merged(&base, Some(&lora), BaseFiles::HfDir(&dir), out, dtype)
        }
    }
}

/// One projection's weight with the adapter merged in, f32 [out, in].
pub fn merged_projection(
    model: &LlamaModel,
    adapter: Option<&LoraAdapter>,
    layer: usize,
    projection: Projection,
) -> Result<Tensor> {
    let decoder = model.layers().get(layer).ok_or_else(|| {
        ModelError::Input(format!(
            "layer {layer} does not exist; the model has {}",
            model.layers().len()
        ))
    })?;
    let weight = frozen(decoder, projection).to_dense()?;
    match adapter.and_then(|a| a.get(layer, projection).map(|w| (a.scale(), w))) {
        None => Ok(weight),
        Some((scale, lora)) => {
            let delta = lora.b.matmul(&lora.a)?.affine(scale, 0.0)?; // [out, in]
            Ok((weight + delta)?)
        }
    }
}

fn frozen(layer: &DecoderLayer, projection: Projection) -> &dyn FrozenWeight {
    match projection {
        Projection::Q => &*layer.self_attn.q_proj,
        Projection::K => &*layer.self_attn.k_proj,
        Projection::V => &*layer.self_attn.v_proj,
        Projection::O => &*layer.self_attn.o_proj,
        Projection::Gate => &*layer.mlp.gate_proj,
        Projection::Up => &*layer.mlp.up_proj,
        Projection::Down => &*layer.mlp.down_proj,
    }
}

/// Writes `model` with `adapter` merged into `out` (absent or empty).
pub fn write_merged(
    model: &LlamaModel,
    adapter: Option<&LoraAdapter>,
    base: BaseFiles,
    out: &Path,
    dtype: MergedDtype,
) -> Result<MergeSummary> {
    check_out(out)?;
    if let Some(adapter) = adapter {
        adapter.check_fits(model.config())?;
    }
    if out.file_name().is_none() {
        return Err(ModelError::Unsupported {
            path: out.to_path_buf(),
            problem: "does not name a directory; give the output a name, e.g. runs/merged".into(),
        });
    }
    // Assembled beside `out` and renamed into place only when complete.
    let fs_error = |e: ftslm_fs::FsError| ModelError::io(&e.path, e.source);
    let staged = StagedDir::create(out).map_err(fs_error)?;
    match write_contents(model, adapter, base, staged.path(), dtype) {
        Ok(mut summary) => {
            staged.publish().map_err(fs_error)?;
            summary.out = out.to_path_buf();
            Ok(summary)
        }
        Err(e) => {
            staged.abandon();
            Err(e)
        }
    }
}

/// An error unless `out` is absent or an empty directory.
fn check_out(out: &Path) -> Result<()> {
    let refuse = |problem: &str| ModelError::Unsupported {
        path: out.to_path_buf(),
        problem: problem.to_string(),
    };
    match std::fs::metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ModelError::io(out, e)),
        Ok(meta) if !meta.is_dir() => Err(refuse(
            "exists and is not a directory; choose a new output directory",
        )),
        Ok(_) => {
            let mut entries = std::fs::read_dir(out).map_err(|e| ModelError::io(out, e))?;
            if entries.next().is_some() {
                return Err(refuse("is not empty; the merged model goes into a new or empty directory — choose another output directory or remove this one"));
            }
            Ok(())
        }
    }
}

fn write_contents(
    model: &LlamaModel,
    adapter: Option<&LoraAdapter>,
    base: BaseFiles,
    dir: &Path,
    dtype: MergedDtype,
) -> Result<MergeSummary> {
    let config = model.config();
    let mut notes = Vec::new();
    let (tensors, parameters, weights_bytes) =
        write_weights(model, adapter, &dir.join(SINGLE_FILE), dtype)?;

    let config_json = config_json(base, config, dtype, &mut notes)?;
    write_json(&dir.join("config.json"), &config_json)?;
    match beside_file(base, "generation_config.json") {
        Some(path) => copy(&path, dir)?,
        None => {
            notes.push("generation_config.json generated from the model's end tokens".into());
            write_json(
                &dir.join("generation_config.json"),
                &generation_json(config),
            )?;
        }
    }
    copy_tokenizer(base, config, dir, &mut notes)?;

    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    files.sort();
    Ok(MergeSummary {
        out: dir.to_path_buf(),
        dtype,
        merged_projections: adapter.map_or(0, |a| a.iter().count()),
        tensors,
        parameters,
        weights_bytes,
        files,
        notes,
    })
}

/// A tensor of the output file, by Hugging Face name.
struct Entry<'a> {
    name: String,
    dims: Vec<usize>,
    source: Source<'a>,
}

enum Source<'a> {
    Stored(&'a Tensor),
    Projection(usize, Projection),
}

fn stored(name: impl Into<String>, tensor: &Tensor) -> Entry<'_> {
    Entry {
        name: name.into(),
        dims: tensor.dims().to_vec(),
        source: Source::Stored(tensor),
    }
}

/// Every tensor of the merged checkpoint, in transformers' module order.
fn entries(model: &LlamaModel) -> Vec<Entry<'_>> {
    let mut list = vec![stored("model.embed_tokens.weight", model.embed_tokens())];
    for (index, layer) in model.layers().iter().enumerate() {
        let prefix = format!("model.layers.{index}");
        list.push(stored(
            format!("{prefix}.input_layernorm.weight"),
            &layer.input_layernorm.weight,
        ));
        list.push(stored(
            format!("{prefix}.post_attention_layernorm.weight"),
            &layer.post_attention_layernorm.weight,
        ));
        for projection in Projection::ALL {
            let (out_features, in_features) = projection.shape(model.config());
            list.push(Entry {
                name: format!("{}.weight", projection.module_path(index)),
                dims: vec![out_features, in_features],
                source: Source::Projection(index, projection),
            });
        }
    }
    list.push(stored("model.norm.weight", &model.final_norm().weight));
    // transformers ties lm_head to the embedding when the config says so,
    // and its checkpoints then carry no lm_head.weight.
    if !model.config().tie_word_embeddings {
        list.push(stored("lm_head.weight", model.lm_head()));
    }
    list
}

/// Streams model.safetensors: the header (every shape is known up front),
/// then each tensor in header order. Returns (tensors, parameters, bytes).
fn write_weights(
    model: &LlamaModel,
    adapter: Option<&LoraAdapter>,
    path: &Path,
    dtype: MergedDtype,
) -> Result<(usize, u64, u64)> {
    let entries = entries(model);
    let shapes: Vec<(&str, &[usize])> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.dims.as_slice()))
        .collect();
    let (header, offset) = safetensors_header(&shapes, dtype, path)?;
    let parameters = (offset / dtype.spec().2) as u64;

    let io = |e| ModelError::io(path, e);
    let file = File::create(path).map_err(io)?;
    let mut writer = BufWriter::new(file);
    writer
        .write_all(&(header.len() as u64).to_le_bytes())
        .map_err(io)?;
    writer.write_all(&header).map_err(io)?;
    let mut bytes = Vec::with_capacity(WRITE_CHUNK * 4);
    for Entry { name, dims, source } in &entries {
        let tensor = match source {
            Source::Stored(t) => (*t).clone(),
            Source::Projection(layer, p) => merged_projection(model, adapter, *layer, *p)?,
        };
        if tensor.dims() != dims.as_slice() {
            return Err(ModelError::Input(format!(
                "merged tensor `{name}` has shape {:?}, expected {dims:?}",
                tensor.dims()
            )));
        }
        let values: Vec<f32> = tensor
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        for chunk in values.chunks(WRITE_CHUNK) {
            bytes.clear();
            dtype.extend_bytes(chunk, &mut bytes);
            writer.write_all(&bytes).map_err(io)?;
        }
    }
    let file = writer.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    let total = 8 + header.len() as u64 + offset as u64;
    Ok((entries.len(), parameters, total))
}

/// The header of a safetensors file holding `tensors` (name, shape) in that
/// order, stored as `dtype`, padded so the data starts 8-byte aligned as the
/// safetensors writers pad it; and the data's length in bytes.
pub(crate) fn safetensors_header(
    tensors: &[(&str, &[usize])],
    dtype: MergedDtype,
    path: &Path,
) -> Result<(Vec<u8>, usize)> {
    let mut header = Map::new();
    header.insert("__metadata__".into(), json!({ "format": "pt" }));
    let mut offset = 0usize;
    for &(name, dims) in tensors {
        let end = offset + dims.iter().product::<usize>() * dtype.bytes_per_value();
        header.insert(
            name.to_string(),
            json!({ "dtype": dtype.spec().0, "shape": dims, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut header =
        serde_json::to_vec(&Value::Object(header)).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    header.resize(header.len().next_multiple_of(8), b' ');
    Ok((header, offset))
}

/// A file of the base's directory (beside the .gguf for a GGUF base).
fn beside_file(base: BaseFiles, name: &str) -> Option<PathBuf> {
    let path = match base {
        BaseFiles::HfDir(dir) => dir.join(name),
        BaseFiles::Gguf(metadata) => metadata.path.with_file_name(name),
        BaseFiles::None => return None,
    };
    path.is_file().then_some(path)
}

/// The base's config.json with `torch_dtype` set to what was written, or
/// one generated from the model's configuration.
fn config_json(
    base: BaseFiles,
    config: &LlamaConfig,
    dtype: MergedDtype,
    notes: &mut Vec<String>,
) -> Result<Value> {
    let source = match base {
        BaseFiles::HfDir(dir) => Some(dir.join("config.json")),
        BaseFiles::Gguf(GgufMetadata {
            config_source: ConfigSource::ConfigJson(path),
            ..
        }) => Some(path.clone()),
        _ => None,
    };
    let mut map = match source {
        Some(path) => read_object(&path)?,
        None => {
            notes.push("config.json generated from the model's configuration".into());
            generated_config(config)
        }
    };
    map.insert("torch_dtype".into(), dtype.torch_name().into());
    // transformers 5 names the key `dtype`; keep both in step.
    if map.contains_key("dtype") {
        map.insert("dtype".into(), dtype.torch_name().into());
    }
    Ok(Value::Object(map))
}

/// config.json as transformers 4 writes it for `LlamaForCausalLM`.
pub fn generated_config(config: &LlamaConfig) -> Map<String, Value> {
    let mut map = match json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "attention_bias": false,
        "mlp_bias": false,
        "hidden_act": "silu",
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "head_dim": config.head_dim,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope.theta,
        "rope_scaling": rope_scaling_json(&config.rope.scaling),
        "tie_word_embeddings": config.tie_word_embeddings,
        "use_cache": true,
    }) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    map.extend(token_ids_json(config));
    map
}

/// `bos_token_id` and `eos_token_id` as transformers writes them: one id as
/// a number, several as a list, none left out.
fn token_ids_json(config: &LlamaConfig) -> Map<String, Value> {
    let mut map = Map::new();
    if let Some(bos) = config.bos_token_id {
        map.insert("bos_token_id".into(), bos.into());
    }
    let eos: Option<Value> = match config.eos_token_ids.as_slice() {
        [] => None,
        [one] => Some((*one).into()),
        many => Some(many.to_vec().into()),
    };
    if let Some(eos) = eos {
        map.insert("eos_token_id".into(), eos);
    }
    map
}

fn generation_json(config: &LlamaConfig) -> Value {
    let mut map = Map::new();
    map.insert("_from_model_config".into(), true.into());
    map.extend(token_ids_json(config));
    Value::Object(map)
}

fn copy_tokenizer(
    base: BaseFiles,
    config: &LlamaConfig,
    dir: &Path,
    notes: &mut Vec<String>,
) -> Result<()> {
    let mut copied_json = false;
    for name in TOKENIZER_FILES {
        if let Some(path) = beside_file(base, name) {
            copy(&path, dir)?;
            copied_json |= name == "tokenizer.json";
        }
    }
    if copied_json {
        return Ok(());
    }
    match base {
        BaseFiles::Gguf(metadata) => match GgufTokenizer::from_gguf(&metadata.path) {
            Ok(rebuilt) => {
                write_gguf_tokenizer(&rebuilt, config, dir)?;
                notes.push(
                    "tokenizer.json and tokenizer_config.json rebuilt from the GGUF metadata"
                        .into(),
                );
            }
            Err(e) => notes.push(format!(
                "no tokenizer written ({e}); copy the base model's tokenizer files into the output"
            )),
        },
        _ => notes.push(
            "the base has no tokenizer.json; copy the base model's tokenizer files into the output"
                .into(),
        ),
    }
    Ok(())
}

fn write_gguf_tokenizer(rebuilt: &GgufTokenizer, config: &LlamaConfig, dir: &Path) -> Result<()> {
    let path = dir.join("tokenizer.json");
    let text = rebuilt
        .tokenizer
        .to_string(true)
        .map_err(|e| ModelError::Unsupported {
            path: path.clone(),
            problem: format!("cannot serialize the tokenizer rebuilt from GGUF: {e}"),
        })?;
    write_bytes(&path, text.as_bytes())?;
    let config_path = dir.join("tokenizer_config.json");
    if config_path.exists() {
        return Ok(());
    }
    let mut map = Map::new();
    map.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
    map.insert("add_bos_token".into(), rebuilt.add_bos_token.into());
    for (key, value) in [
        ("bos_token", &rebuilt.bos_token),
        ("eos_token", &rebuilt.eos_token),
        ("chat_template", &rebuilt.chat_template),
    ] {
        if let Some(value) = value {
            map.insert(key.into(), value.clone().into());
        }
    }
    map.insert(
        "model_max_length".into(),
        config.max_position_embeddings.into(),
    );
    write_json(&config_path, &Value::Object(map))
}

fn copy(from: &Path, dir: &Path) -> Result<()> {
    let to = dir.join(from.file_name().unwrap_or_default());
    std::fs::copy(from, &to).map_err(|e| ModelError::io(from, e))?;
    Ok(())
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|source| ModelError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    text.push('\n');
    write_bytes(path, text.as_bytes())
}

fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let mut file = File::create(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    write().map_err(|e| ModelError::io(path, e))
}
