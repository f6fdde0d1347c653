//! GGUF checkpoints of Llama-architecture models (llama.cpp's format, e.g.
//! SmolLM2 in Q4_1). candle parses the header; this module checks that every
//! tensor lies inside the file, maps llama.cpp's tensor names to Hugging Face
//! ones, and undoes the row permutation llama.cpp applies to q_proj/k_proj.
//!
//! Projections are kept either as the file's own blocks ([`GgufBase::Blocks`],
//! dequantized tile by tile in each matmul) or dequantized to f32 and handed
//! to any [`FrozenFormat`] ([`load_gguf_with_format`], the route a
//! re-quantizing format such as NF4 takes).

mod header;
mod metadata;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType};
use candle_core::{Device, Tensor};

use super::WeightSource;
use crate::error::{ModelError, Result};
use crate::frozen_gguf::{row_bytes, GgufBlocks};
use crate::frozen_linear::{DenseF32, FrozenFormat, FrozenWeight};
use crate::llama::LlamaModel;

pub(crate) use self::metadata::MetadataReader;
pub use self::metadata::{ConfigSource, GgufMetadata};

/// How the frozen projections of a GGUF model are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GgufBase {
    /// The file's quantized blocks, dequantized inside each matmul (default:
    /// no second rounding, a fraction of f32's memory).
    #[default]
    Blocks,
    /// Dense f32, dequantized once at load.
    F32,
    // NF4 (`quantization.base: nf4`) belongs to `load_gguf_with_format`: an
    // NF4 `FrozenFormat` receives each projection dequantized to f32.
}

/// Loads a Llama GGUF file into a model whose projections are stored as
/// `base` says. Norms and the embedding are always f32. With `Blocks`, each
/// projection is still decoded once, one at a time, because the model builder
/// shape-checks an f32 copy before freezing it; only the blocks are kept.
pub fn load_gguf(
    path: &Path,
    base: GgufBase,
    device: &Device,
) -> Result<(LlamaModel, GgufMetadata)> {
    match base {
        GgufBase::F32 => load_gguf_with_format(path, &DenseF32, device),
        GgufBase::Blocks => {
            let file = GgufFile::open(path)?;
            let metadata = GgufMetadata::read(&file)?;
            let kept = Rc::new(RefCell::new(HashMap::new()));
            let mut source = GgufWeights {
                file,
                keep_blocks: Some(Rc::clone(&kept)),
            };
            let format = KeptBlocks { kept };
            let model =
                LlamaModel::from_weights(metadata.config.clone(), &mut source, &format, device)?;
            Ok((model, metadata))
        }
    }
}

/// Loads a Llama GGUF file, dequantizing every tensor to f32 and passing each
/// projection to `format` (dense f32, or a quantizing format such as NF4).
pub fn load_gguf_with_format(
    path: &Path,
    format: &dyn FrozenFormat,
    device: &Device,
) -> Result<(LlamaModel, GgufMetadata)> {
    let file = GgufFile::open(path)?;
    let metadata = GgufMetadata::read(&file)?;
    let mut source = GgufWeights {
        file,
        keep_blocks: None,
    };
    let model = LlamaModel::from_weights(metadata.config.clone(), &mut source, format, device)?;
    Ok((model, metadata))
}

/// An open GGUF file: parsed header and metadata, tensors read on demand.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    file: File,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("tensors", &self.content.tensor_infos.len())
            .finish()
    }
}

impl GgufFile {
    /// Parses the header and checks that every tensor's data lies inside the
    /// file, so that a truncated download fails here, naming the tensor.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        let len = file.metadata().map_err(|e| ModelError::io(path, e))?.len();
        header::check_alignment(&file, len).map_err(|problem| ModelError::Gguf {
            path: path.to_path_buf(),
            problem: format!("invalid header: {problem}"),
        })?;
        // The check read through this handle; candle reads from where it stands.
        (&file)
            .seek(std::io::SeekFrom::Start(0))
            .map_err(|e| ModelError::io(path, e))?;
        let content = Content::read(&mut BufReader::new(&file)).map_err(|e| ModelError::Gguf {
            path: path.to_path_buf(),
            problem: format!("cannot parse the header ({e}); the file is truncated or not GGUF"),
        })?;
        let gguf = GgufFile {
            path: path.to_path_buf(),
            content,
            file,
        };
        gguf.check_extents(len)?;
        Ok(gguf)
    }

    fn check_extents(&self, file_len: u64) -> Result<()> {
        let mut names: Vec<&String> = self.content.tensor_infos.keys().collect();
        names.sort();
        for name in names {
            let (start, size) = self.extent(name)?;
            let end = start.checked_add(size as u64);
            if end.is_none_or(|end| end > file_len) {
                return Err(self.error(format!(
                    "tensor `{name}` needs bytes {start}..{} but the file has {file_len}; it is truncated (download it again)",
                    start.saturating_add(size as u64)
                )));
            }
        }
        Ok(())
    }

    /// Byte offset and size of a tensor's data.
    fn extent(&self, name: &str) -> Result<(u64, usize)> {
        let info = self.info(name)?;
        // The dimensions come from the file: their product may not fit.
        let elems = info
            .shape
            .dims()
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| {
                self.error(format!(
                    "tensor `{name}` has dimensions {:?}, more values than can be addressed; the file is corrupt",
                    info.shape.dims()
                ))
            })?;
        // No model tensor is empty, and candle's decoders make a slice of
        // blocks from the data's address, which an empty buffer does not
        // align (found by fuzzing: a panic, and undefined behaviour in
        // release builds).
        if elems == 0 {
            return Err(self.error(format!(
                "tensor `{name}` has dimensions {:?}, no values; the file is corrupt",
                info.shape.dims()
            )));
        }
        let (block, type_size) = (info.ggml_dtype.block_size(), info.ggml_dtype.type_size());
        if elems % block != 0 {
            return Err(self.error(format!(
                "tensor `{name}` has {elems} values, not whole {:?} blocks of {block}",
                info.ggml_dtype
            )));
        }
        let start = self.content.tensor_data_offset.checked_add(info.offset);
        let start = start.ok_or_else(|| {
            self.error(format!(
                "tensor `{name}` has an impossible offset {}",
                info.offset
            ))
        })?;
        let bytes = (elems / block).checked_mul(type_size).ok_or_else(|| {
            self.error(format!(
                "tensor `{name}` needs more bytes than can be addressed; the file is corrupt"
            ))
        })?;
        Ok((start, bytes))
    }

    fn info(&self, name: &str) -> Result<&candle_core::quantized::gguf_file::TensorInfo> {
        self.content
            .tensor_infos
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
                location: self.path.display().to_string(),
                hint: String::new(),
            })
    }

    pub(crate) fn error(&self, problem: String) -> ModelError {
        ModelError::Gguf {
            path: self.path.clone(),
            problem,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key-value metadata (architecture, hyper-parameters, tokenizer).
    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    pub(crate) fn reader(&self) -> MetadataReader<'_> {
        MetadataReader::new(&self.path, &self.content.metadata)
    }

    /// GGUF tensor names (`blk.0.attn_q.weight`, …).
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.content.tensor_infos.keys().map(String::as_str)
    }

    pub fn has_tensor(&self, gguf_name: &str) -> bool {
        self.content.tensor_infos.contains_key(gguf_name)
    }

    /// Storage type and shape (outermost dimension first, like PyTorch).
    pub fn tensor_info(&self, gguf_name: &str) -> Option<(GgmlDType, &[usize])> {
        let info = self.content.tensor_infos.get(gguf_name)?;
        Some((info.ggml_dtype, info.shape.dims()))
    }

    /// How many tensors are stored in each type, e.g. {"Q4_1": 210, "F32": 61}.
    pub fn dtype_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for info in self.content.tensor_infos.values() {
            *counts.entry(format!("{:?}", info.ggml_dtype)).or_insert(0) += 1;
        }
        counts
    }

    /// The tensor's bytes as stored, with its type and shape.
    fn read_raw(&self, name: &str) -> Result<(GgmlDType, Vec<usize>, Vec<u8>)> {
        let (start, size) = self.extent(name)?;
        let info = self.info(name)?;
        let mut bytes = vec![0u8; size];
        let mut file = &self.file;
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| self.error(format!("cannot read tensor `{name}`: {e}")))?;
        Ok((info.ggml_dtype, info.shape.dims().to_vec(), bytes))
    }

    /// A tensor dequantized to f32 on the CPU, in GGUF row order.
    pub fn read_f32(&self, gguf_name: &str) -> Result<Tensor> {
        let (dtype, dims, bytes) = self.read_raw(gguf_name)?;
        self.dequantize(gguf_name, dtype, dims, &bytes)
    }

    fn dequantize(
        &self,
        name: &str,
        dtype: GgmlDType,
        dims: Vec<usize>,
        bytes: &[u8],
    ) -> Result<Tensor> {
        qtensor_from_ggml(dtype, bytes, dims, &Device::Cpu)
            .and_then(|q| q.dequantize(&Device::Cpu))
            .map_err(|e| self.error(format!("cannot decode tensor `{name}` ({dtype:?}): {e}")))
    }

    /// A 2-d tensor with Hugging Face's row order: the bytes as stored, rows
    /// of q_proj/k_proj put back where [`hf_row_source`] says.
    fn read_rows(
        &self,
        gguf_name: &str,
        permute_heads: Option<usize>,
    ) -> Result<(GgmlDType, Vec<usize>, Vec<u8>)> {
        let (dtype, dims, bytes) = self.read_raw(gguf_name)?;
        let Some(heads) = permute_heads else {
            return Ok((dtype, dims, bytes));
        };
        let (rows, cols) = match dims[..] {
            [rows, cols] => (rows, cols),
            _ => {
                return Err(self.error(format!(
                    "tensor `{gguf_name}` has shape {dims:?}, expected 2 dimensions"
                )))
            }
        };
        let sources = hf_row_source(rows, heads).ok_or_else(|| {
            self.error(format!(
                "tensor `{gguf_name}` has {rows} rows, not {heads} heads of an even head size"
            ))
        })?;
        let width = row_bytes(dtype, cols).ok_or_else(|| {
            self.error(format!(
                "tensor `{gguf_name}`: rows of {cols} are not whole {dtype:?} blocks"
            ))
        })?;
        let mut permuted = Vec::with_capacity(bytes.len());
        for source in sources {
            permuted.extend_from_slice(&bytes[source * width..(source + 1) * width]);
        }
        Ok((dtype, dims, permuted))
    }
}

/// llama.cpp's converter reorders each head's rows from Hugging Face's
/// halves layout (x₀…x_{d/2−1} | x_{d/2}…x_{d−1}, for rotate_half) to
/// interleaved pairs (x₀ x_{d/2} x₁ x_{d/2+1} …, for its GPT-J style RoPE):
/// GGUF row h·d + 2j + half holds HF row h·d + half·d/2 + j. Returns, for each
/// HF row, the GGUF row it comes from.
pub fn hf_row_source(rows: usize, heads: usize) -> Option<Vec<usize>> {
    if heads == 0 || !rows.is_multiple_of(heads) || !(rows / heads).is_multiple_of(2) {
        return None;
    }
    let head_dim = rows / heads;
    let half_dim = head_dim / 2;
    Some(
        (0..rows)
            .map(|row| {
                let (head, within) = (row / head_dim, row % head_dim);
                let (half, j) = (within / half_dim, within % half_dim);
                head * head_dim + 2 * j + half
            })
            .collect(),
    )
}

/// The GGUF name of a Hugging Face tensor name, for Llama.
pub fn gguf_name(hf_name: &str) -> Option<String> {
    let top = match hf_name {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(name) = top {
        return Some(name.to_string());
    }
    let rest = hf_name.strip_prefix("model.layers.")?;
    let (layer, module) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let short = match module {
        "input_layernorm.weight" => "attn_norm",
        "post_attention_layernorm.weight" => "ffn_norm",
        "self_attn.q_proj.weight" => "attn_q",
        "self_attn.k_proj.weight" => "attn_k",
        "self_attn.v_proj.weight" => "attn_v",
        "self_attn.o_proj.weight" => "attn_output",
        "mlp.gate_proj.weight" => "ffn_gate",
        "mlp.up_proj.weight" => "ffn_up",
        "mlp.down_proj.weight" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{short}.weight"))
}

/// The model's tensors by Hugging Face name, read from a GGUF file.
struct GgufWeights {
    file: GgufFile,
    /// When set, projections are also stashed here as blocks for
    /// [`KeptBlocks`] to freeze, instead of their f32 copy.
    keep_blocks: Option<Rc<RefCell<HashMap<String, GgufBlocks>>>>,
}

impl GgufWeights {
    /// Heads whose rows llama.cpp permuted in this tensor, if any.
    fn permuted_heads(&self, hf_name: &str) -> Result<Option<usize>> {
        let key = if hf_name.ends_with("self_attn.q_proj.weight") {
            "llama.attention.head_count"
        } else if hf_name.ends_with("self_attn.k_proj.weight") {
            "llama.attention.head_count_kv"
        } else {
            return Ok(None);
        };
        let reader = self.file.reader();
        match reader.opt_usize(key)? {
            Some(heads) => Ok(Some(heads)),
            None => Ok(Some(reader.usize("llama.attention.head_count")?)),
        }
    }
}

impl WeightSource for GgufWeights {
    fn contains(&self, name: &str) -> bool {
        gguf_name(name).is_some_and(|g| self.file.has_tensor(&g))
    }

    fn take_f32(&mut self, name: &str, device: &Device) -> Result<Tensor> {
        let gguf = gguf_name(name).ok_or_else(|| ModelError::MissingTensor {
            name: name.to_string(),
            location: self.location(name),
            hint: " (no llama.cpp counterpart)".into(),
        })?;
        let permute = self.permuted_heads(name)?;
        let (dtype, dims, bytes) = self.file.read_rows(&gguf, permute)?;
        let dense = self.file.dequantize(&gguf, dtype, dims.clone(), &bytes)?;
        super::check_finite(&dense, name, &self.location(name))?;
        if let (Some(kept), &[out, inp]) = (&self.keep_blocks, dims.as_slice()) {
            if name.contains("_proj.") {
                let blocks = GgufBlocks::new(name, dtype, out, inp, bytes)?;
                kept.borrow_mut().insert(name.to_string(), blocks);
            }
        }
        Ok(dense.to_device(device)?)
    }

    fn location(&self, name: &str) -> String {
        match gguf_name(name) {
            Some(g) => format!("{} (as `{g}`)", self.file.path.display()),
            None => self.file.path.display().to_string(),
        }
    }
}

/// Freezes each projection as the blocks [`GgufWeights`] read for it; the
/// f32 copy the model builder passes along only served its shape check.
struct KeptBlocks {
    kept: Rc<RefCell<HashMap<String, GgufBlocks>>>,
}

impl FrozenFormat for KeptBlocks {
    fn freeze(&self, name: &str, weight: Tensor) -> Result<Box<dyn FrozenWeight>> {
        match self.kept.borrow_mut().remove(name) {
            Some(blocks) => Ok(Box::new(blocks)),
            None => DenseF32.freeze(name, weight),
        }
    }
}

#[cfg(test)]
mod tests;
