//! Round trips through small GGUF files written here with candle's writer:
//! Hugging Face weights → llama.cpp's permutation and names → this loader.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use super::*;
use crate::config::{RopeConfig, RopeScaling};
use crate::loader::NamedTensors;
use crate::test_support::max_diff;

const HIDDEN: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 16;
const FFN: usize = 128;
const VOCAB: usize = 40;

/// convert_hf_to_gguf.py's `permute`, written the way the converter does it:
/// reshape(heads, 2, d/2, in) → swap axes 1, 2 → reshape back.
fn llama_cpp_permute(w: &Tensor, heads: usize) -> Tensor {
    let (rows, cols) = w.dims2().unwrap();
    w.reshape((heads, 2, rows / heads / 2, cols))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((rows, cols))
        .unwrap()
}

fn hf_weights() -> HashMap<String, Tensor> {
    let randn = |shape: &[usize]| Tensor::randn(0f32, 0.5, shape, &Device::Cpu).unwrap();
    let mut w = HashMap::new();
    w.insert("model.embed_tokens.weight".into(), randn(&[VOCAB, HIDDEN]));
    w.insert(
        "model.norm.weight".into(),
        (randn(&[HIDDEN]) + 1.0).unwrap(),
    );
    let p = "model.layers.0";
    w.insert(
        format!("{p}.input_layernorm.weight"),
        (randn(&[HIDDEN]) + 1.0).unwrap(),
    );
    w.insert(
        format!("{p}.post_attention_layernorm.weight"),
        (randn(&[HIDDEN]) + 1.0).unwrap(),
    );
    w.insert(
        format!("{p}.self_attn.q_proj.weight"),
        randn(&[HEADS * HEAD_DIM, HIDDEN]),
    );
    w.insert(
        format!("{p}.self_attn.k_proj.weight"),
        randn(&[KV_HEADS * HEAD_DIM, HIDDEN]),
    );
    w.insert(
        format!("{p}.self_attn.v_proj.weight"),
        randn(&[KV_HEADS * HEAD_DIM, HIDDEN]),
    );
    w.insert(
        format!("{p}.self_attn.o_proj.weight"),
        randn(&[HIDDEN, HEADS * HEAD_DIM]),
    );
    w.insert(format!("{p}.mlp.gate_proj.weight"), randn(&[FFN, HIDDEN]));
    w.insert(format!("{p}.mlp.up_proj.weight"), randn(&[FFN, HIDDEN]));
    w.insert(format!("{p}.mlp.down_proj.weight"), randn(&[HIDDEN, FFN]));
    w
}

fn metadata(architecture: &str) -> Vec<(String, Value)> {
    let u32v = |v: usize| Value::U32(v as u32);
    let tokens = (0..VOCAB).map(|i| Value::String(format!("t{i}"))).collect();
    vec![
        (
            "general.architecture".into(),
            Value::String(architecture.into()),
        ),
        ("llama.embedding_length".into(), u32v(HIDDEN)),
        ("llama.feed_forward_length".into(), u32v(FFN)),
        ("llama.block_count".into(), u32v(1)),
        ("llama.attention.head_count".into(), u32v(HEADS)),
        ("llama.attention.head_count_kv".into(), u32v(KV_HEADS)),
        ("llama.rope.dimension_count".into(), u32v(HEAD_DIM)),
        ("llama.rope.freq_base".into(), Value::F32(500_000.0)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(1e-5),
        ),
        ("llama.context_length".into(), u32v(256)),
        ("tokenizer.ggml.tokens".into(), Value::Array(tokens)),
        ("tokenizer.ggml.bos_token_id".into(), u32v(1)),
        ("tokenizer.ggml.eos_token_id".into(), u32v(2)),
    ]
}

/// Writes `hf` the way llama.cpp's converter would: GGUF names, q/k rows
/// permuted, projections as `dtype`, norms f32.
fn write_gguf(
    path: &Path,
    hf: &HashMap<String, Tensor>,
    dtype: GgmlDType,
    meta: &[(String, Value)],
    extra: Vec<(String, Tensor)>,
) {
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut names: Vec<&String> = hf.keys().collect();
    names.sort();
    for name in names {
        let mut w = hf[name].clone();
        if name.ends_with("q_proj.weight") {
            w = llama_cpp_permute(&w, HEADS);
        } else if name.ends_with("k_proj.weight") {
            w = llama_cpp_permute(&w, KV_HEADS);
        }
        let storage = if w.rank() == 2 { dtype } else { GgmlDType::F32 };
        tensors.push((
            gguf_name(name).unwrap(),
            QTensor::quantize(&w, storage).unwrap(),
        ));
    }
    for (name, t) in extra {
        tensors.push((name, QTensor::quantize(&t, GgmlDType::F32).unwrap()));
    }
    let meta: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &meta, &tensors).unwrap();
}

fn tiny(dir: &Path, dtype: GgmlDType) -> (PathBuf, HashMap<String, Tensor>) {
    let hf = hf_weights();
    let path = dir.join("tiny.gguf");
    write_gguf(&path, &hf, dtype, &metadata("llama"), Vec::new());
    (path, hf)
}

fn logits(model: &LlamaModel) -> Tensor {
    let ids = [1u32, 5, 9, 33, 2, 17, 4];
    let positions: Vec<u32> = (0..ids.len() as u32).collect();
    model.forward(&ids, &positions, &[0; 7], None).unwrap()
}

/// Dense weights run ftslm's kernel where the CPU has one, blocks candle's:
/// the same sums in different orders, so equal to f32 rounding at the
/// logits' scale.
fn assert_same_logits(got: &Tensor, want: &Tensor, what: &str) {
    let scale = want
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let diff = max_diff(got, want);
    assert!(
        diff < 1e-5 * scale.max(1.0),
        "{what}: {diff} (logits up to {scale})"
    );
}

#[test]
fn row_source_undoes_the_converters_permutation() {
    for (rows, heads) in [(48, 3), (64, 4), (8, 1)] {
        let w = Tensor::arange(0f32, (rows * 5) as f32, &Device::Cpu)
            .unwrap()
            .reshape((rows, 5))
            .unwrap();
        let permuted = llama_cpp_permute(&w, heads);
        assert_ne!(max_diff(&permuted, &w), 0.0);
        let source: Vec<u32> = hf_row_source(rows, heads)
            .unwrap()
            .iter()
            .map(|&r| r as u32)
            .collect();
        let index = Tensor::new(source.as_slice(), &Device::Cpu).unwrap();
        assert_eq!(
            max_diff(&permuted.index_select(&index, 0).unwrap(), &w),
            0.0
        );
    }
    assert!(hf_row_source(10, 4).is_none());
    assert!(hf_row_source(12, 4).is_none()); // odd head size
}

#[test]
fn names_map_to_llama_cpp() {
    assert_eq!(
        gguf_name("model.layers.12.self_attn.o_proj.weight").unwrap(),
        "blk.12.attn_output.weight"
    );
    assert_eq!(
        gguf_name("model.layers.0.post_attention_layernorm.weight").unwrap(),
        "blk.0.ffn_norm.weight"
    );
    assert_eq!(gguf_name("lm_head.weight").unwrap(), "output.weight");
    assert!(gguf_name("model.layers.x.mlp.up_proj.weight").is_none());
    assert!(gguf_name("model.layers.0.mlp.act").is_none());
}

#[test]
fn f32_gguf_loads_to_the_hf_weights_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let (path, hf) = tiny(dir.path(), GgmlDType::F32);
    let (dense, meta) = load_gguf(&path, GgufBase::F32, &Device::Cpu).unwrap();
    let (blocks, _) = load_gguf(&path, GgufBase::Blocks, &Device::Cpu).unwrap();
    assert_eq!(meta.config_source, ConfigSource::GgufMetadata);
    let c = &meta.config;
    assert_eq!(
        (
            c.hidden_size,
            c.num_key_value_heads,
            c.head_dim,
            c.vocab_size
        ),
        (HIDDEN, KV_HEADS, HEAD_DIM, VOCAB)
    );
    assert_eq!(
        c.rms_norm_eps, 1e-5,
        "f32 metadata read through its decimal form"
    );
    assert_eq!(c.rope.theta, 500_000.0);
    assert!(c.tie_word_embeddings);
    assert_eq!(
        (c.bos_token_id, c.eos_token_ids.clone()),
        (Some(1), vec![2])
    );

    let q = "model.layers.0.self_attn.q_proj.weight";
    let k = "model.layers.0.self_attn.k_proj.weight";
    for model in [&dense, &blocks] {
        let attn = &model.layers()[0].self_attn;
        assert_eq!(max_diff(&attn.q_proj.to_dense().unwrap(), &hf[q]), 0.0);
        assert_eq!(max_diff(&attn.k_proj.to_dense().unwrap(), &hf[k]), 0.0);
    }
    let config = meta.config.clone();
    let mut source = NamedTensors::new(hf, "hf");
    let reference = LlamaModel::from_weights(config, &mut source, &DenseF32, &Device::Cpu).unwrap();
    let want = logits(&reference);
    assert!(max_diff(&logits(&dense), &want) < 1e-6);
    assert_same_logits(&logits(&blocks), &want, "blocks");
}

#[test]
fn quantized_blocks_compute_like_their_dequantized_copy() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in [
        GgmlDType::Q8_0,
        GgmlDType::Q4_1,
        GgmlDType::Q4_0,
        GgmlDType::F16,
    ] {
        let (path, _) = tiny(dir.path(), dtype);
        let (dense, meta) = load_gguf(&path, GgufBase::F32, &Device::Cpu).unwrap();
        let (blocks, _) = load_gguf(&path, GgufBase::Blocks, &Device::Cpu).unwrap();
        assert_eq!(meta.dtype_counts[&format!("{dtype:?}")], 8, "{dtype:?}");
        let (d, b) = (
            &dense.layers()[0].mlp.up_proj,
            &blocks.layers()[0].mlp.up_proj,
        );
        assert_eq!(d.storage_bytes(), FFN * HIDDEN * 4);
        assert!(b.storage_bytes() * 2 <= d.storage_bytes(), "{dtype:?}");
        assert_same_logits(&logits(&blocks), &logits(&dense), &format!("{dtype:?}"));
    }
}

/// llama.cpp's rope_freqs for Llama 3.1 scaling with the given parameters.
fn rope_freqs(scaling: RopeScaling) -> Tensor {
    let plain = RopeConfig {
        theta: 500_000.0,
        scaling: RopeScaling::None,
    };
    let scaled = RopeConfig {
        scaling,
        ..plain.clone()
    };
    let p = crate::rope::inverse_frequencies(HEAD_DIM, &plain);
    let s = crate::rope::inverse_frequencies(HEAD_DIM, &scaled);
    let divisors: Vec<f32> = p.iter().zip(&s).map(|(p, s)| p / s).collect();
    Tensor::new(divisors.as_slice(), &Device::Cpu).unwrap()
}

#[test]
fn llama3_scaling_is_recovered_from_rope_freqs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l3.gguf");
    let llama3 = RopeScaling::Llama3 {
        factor: 32.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    };
    let extra = vec![("rope_freqs.weight".to_string(), rope_freqs(llama3.clone()))];
    write_gguf(
        &path,
        &hf_weights(),
        GgmlDType::F32,
        &metadata("llama"),
        extra,
    );
    let (_, meta) = load_gguf(&path, GgufBase::Blocks, &Device::Cpu).unwrap();
    assert_eq!(meta.config.rope.scaling, llama3);

    let odd = RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 2.0,
        high_freq_factor: 16.0,
        original_max_position_embeddings: 4096,
    };
    let extra = vec![("rope_freqs.weight".to_string(), rope_freqs(odd))];
    write_gguf(
        &path,
        &hf_weights(),
        GgmlDType::F32,
        &metadata("llama"),
        extra,
    );
    let err = load_gguf(&path, GgufBase::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rope_freqs.weight") && err.contains("config.json"),
        "{err}"
    );
}

#[test]
fn other_architectures_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.gguf");
    write_gguf(
        &path,
        &hf_weights(),
        GgmlDType::F32,
        &metadata("qwen2"),
        Vec::new(),
    );
    let err = load_gguf(&path, GgufBase::Blocks, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("qwen2") && err.contains("q.gguf"), "{err}");
}

#[test]
fn missing_metadata_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let meta: Vec<_> = metadata("llama")
        .into_iter()
        .filter(|(k, _)| k != "llama.block_count")
        .collect();
    write_gguf(&path, &hf_weights(), GgmlDType::F32, &meta, Vec::new());
    let err = load_gguf(&path, GgufBase::Blocks, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("llama.block_count") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn truncation_is_an_error_naming_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = tiny(dir.path(), GgmlDType::Q8_0);
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let err = load_gguf(&cut, GgufBase::Blocks, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cut.gguf") && err.contains("truncated") && err.contains(".weight`"),
        "{err}"
    );
    for len in [0, 3, 40, 300] {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let err = load_gguf(&cut, GgufBase::F32, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cut.gguf"), "{len} bytes: {err}");
    }
}

#[test]
fn config_json_beside_is_checked_then_preferred() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = tiny(dir.path(), GgmlDType::F32);
    let config = |hidden: usize, eps: f64| {
        format!(
            r#"{{"model_type": "llama", "hidden_size": {hidden}, "intermediate_size": {FFN},
                "num_hidden_layers": 1, "num_attention_heads": {HEADS}, "num_key_value_heads": {KV_HEADS},
                "vocab_size": {VOCAB}, "rms_norm_eps": {eps}, "rope_theta": 500000.0,
                "tie_word_embeddings": true, "max_position_embeddings": 256,
                "bos_token_id": 1, "eos_token_id": 2}}"#
        )
    };
    let json = dir.path().join("config.json");
    std::fs::write(&json, config(HIDDEN, 1e-6)).unwrap();
    let (_, meta) = load_gguf(&path, GgufBase::Blocks, &Device::Cpu).unwrap();
    assert_eq!(meta.config_source, ConfigSource::ConfigJson(json.clone()));
    assert_eq!(meta.config.rms_norm_eps, 1e-6);
    assert_eq!(meta.notes.len(), 1, "{:?}", meta.notes);
    assert!(
        meta.notes[0].starts_with("rms_norm_eps"),
        "{:?}",
        meta.notes
    );

    std::fs::write(&json, config(2 * HIDDEN, 1e-5)).unwrap();
    let err = load_gguf(&path, GgufBase::Blocks, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config.json")
            && err.contains("hidden_size")
            && err.contains("embedding_length"),
        "{err}"
    );
}

/// A GGUF v3 header (no tensors) with `entries` written raw: (key, type, value bytes).
fn raw_gguf(entries: &[(&str, u32, Vec<u8>)]) -> Vec<u8> {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes()); // tensors
    bytes.extend((entries.len() as u64).to_le_bytes());
    for (key, kind, value) in entries {
        bytes.extend((key.len() as u64).to_le_bytes());
        bytes.extend(key.as_bytes());
        bytes.extend(kind.to_le_bytes());
        bytes.extend(value);
    }
    bytes
}

/// candle divides by `general.alignment`: 0 panicked the process. It is
/// refused as an error naming the key, found past a string and an array of
/// strings (the header walk skips them), and so is an alignment that is not
/// a power of two; a good one reaches candle.
#[test]
fn a_crafted_alignment_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let string = |s: &str| {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend(s.as_bytes());
        v
    };
    let mut tokens = 8u32.to_le_bytes().to_vec(); // element type: string
    tokens.extend(2u64.to_le_bytes());
    tokens.extend(string("<s>"));
    tokens.extend(string("</s>"));
    for (alignment, accepted) in [(0u32, false), (48, false), (64, true)] {
        let bytes = raw_gguf(&[
            ("general.architecture", 8, string("llama")),
            ("tokenizer.ggml.tokens", 9, tokens.clone()),
            ("general.alignment", 4, alignment.to_le_bytes().to_vec()),
        ]);
        let path = dir.path().join(format!("a{alignment}.gguf"));
        std::fs::write(&path, bytes).unwrap();
        match GgufFile::open(&path) {
            Ok(_) => assert!(accepted, "alignment {alignment} was accepted"),
            Err(err) => {
                let err = err.to_string();
                assert!(!accepted, "alignment {alignment}: {err}");
                assert!(
                    err.contains(&format!("general.alignment is {alignment}"))
                        && err.contains(&format!("a{alignment}.gguf")),
                    "{err}"
                );
            }
        }
    }
    // A string that claims more bytes than the file has.
    let mut bytes = raw_gguf(&[("general.name", 8, string("x"))]);
    let at = bytes.len() - 9;
    bytes[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let path = dir.path().join("long.gguf");
    std::fs::write(&path, bytes).unwrap();
    let err = GgufFile::open(&path).unwrap_err().to_string();
    assert!(err.contains("past the end of the file"), "{err}");
}

/// A tensor whose dimensions multiply past what can be addressed is an
/// error naming it (the product overflowed).
#[test]
fn dimensions_beyond_addressing_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(1u64.to_le_bytes()); // one tensor
    bytes.extend(0u64.to_le_bytes()); // no metadata
    let name = "blk.0.attn_q.weight";
    bytes.extend((name.len() as u64).to_le_bytes());
    bytes.extend(name.as_bytes());
    bytes.extend(2u32.to_le_bytes());
    bytes.extend((1u64 << 40).to_le_bytes());
    bytes.extend((1u64 << 40).to_le_bytes());
    bytes.extend(0u32.to_le_bytes()); // F32
    bytes.extend(0u64.to_le_bytes());
    bytes.resize(bytes.len() + 64, 0);
    let path = dir.path().join("huge.gguf");
    std::fs::write(&path, bytes).unwrap();
    let err = GgufFile::open(&path).unwrap_err().to_string();
    assert!(
        err.contains(name) && err.contains("more values than can be addressed"),
        "{err}"
    );
}
