//! Parameter counts from a configuration alone, checked against the tensors
//! real checkpoints actually store, and the Llama-3.1-8B figures.

use std::path::Path;

use candle_core::Device;
use ftslm_model::inspect::{
    is_llama31_8b_sized, nf4_double_quant_bytes, stored_weights, EmbeddingPrecision, LoraPlan,
    MemoryEstimate, ParameterCounts, TrainingShape,
};
use ftslm_model::loader::gguf::{gguf_name, GgufFile, GgufMetadata};
use ftslm_model::nf4::Nf4Tensor;
use ftslm_model::{
    LlamaConfig, LoraAdapter, Projection, RopeConfig, RopeScaling, SafetensorsCheckpoint,
};

/// Llama-3.1-8B's public config.json (meta-llama/Llama-3.1-8B).
const LLAMA31_8B: &str = r#"{
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
  "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
  "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
  "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "tie_word_embeddings": false, "bos_token_id": 128000, "eos_token_id": 128001
}"#;

fn llama31_8b() -> LlamaConfig {
    LlamaConfig::from_json_str(LLAMA31_8B, Path::new("Llama-3.1-8B/config.json")).unwrap()
}

fn qkvo(r: usize) -> LoraPlan {
    LoraPlan {
        r,
        target_modules: vec![Projection::Q, Projection::K, Projection::V, Projection::O],
    }
}

/// Every HF tensor name the configuration implies.
fn hf_names(config: &LlamaConfig) -> Vec<String> {
    let mut names = vec![
        "model.embed_tokens.weight".to_string(),
        "model.norm.weight".into(),
    ];
    if !config.tie_word_embeddings {
        names.push("lm_head.weight".into());
    }
    for layer in 0..config.num_hidden_layers {
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            names.push(format!("model.layers.{layer}.{norm}.weight"));
        }
        for p in Projection::ALL {
            names.push(format!("{}.weight", p.module_path(layer)));
        }
    }
    names
}

#[test]
fn tiny_llama3_counts_equal_the_tensors_in_its_safetensors() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let config = LlamaConfig::from_file(&dir.join("config.json")).unwrap();
    let counts = ParameterCounts::of(&config);
    // By hand from config.json: hidden 64, 4 heads × 16, 2 kv heads,
    // intermediate 160, vocab 49152, 2 layers, untied.
    let attention = 64 * 64 + 2 * (32 * 64) + 64 * 64;
    let mlp = 3 * 64 * 160;
    let per_layer = attention + mlp + 2 * 64;
    assert_eq!(counts.per_layer, per_layer);
    assert_eq!(counts.total, 2 * 49152 * 64 + 2 * per_layer + 64);
    assert_eq!(counts.total, 6_377_792);

    // The tensors as candle loads them...
    let checkpoint = SafetensorsCheckpoint::open(&dir).unwrap();
    let mut loaded = 0u64;
    for name in checkpoint.tensor_names() {
        loaded += checkpoint
            .load_raw(name, &Device::Cpu)
            .unwrap()
            .elem_count() as u64;
    }
    assert_eq!(loaded, counts.total);
    // ...and as the header reader (which reads no tensor data) counts them.
    let stored = stored_weights(&dir).unwrap().unwrap();
    assert_eq!(stored.parameters, counts.total);
    assert_eq!(stored.tensors, hf_names(&config).len());
    assert_eq!(stored.dtypes.get("BF16"), Some(&counts.total));
    assert!(!is_llama31_8b_sized(&config));
}

#[test]
fn lora_count_equals_the_parameters_of_the_real_adapter() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let config = LlamaConfig::from_file(&dir.join("config.json")).unwrap();
    let adapter = LoraAdapter::load_peft(&dir.join("adapter"), &config, &Device::Cpu).unwrap();
    let plan = LoraPlan {
        r: adapter.settings().r,
        target_modules: adapter.settings().target_modules.clone(),
    };
    assert_eq!(
        plan.parameter_count(&config),
        adapter.parameter_count() as u64
    );
    // r = 8 on all seven: 8·((64+64) + 2·(64+32) + (64+64) + 3·(64+160)) per layer
    assert_eq!(
        plan.parameter_count(&config),
        2 * 8 * (128 + 192 + 128 + 3 * 224)
    );
}

#[test]
fn gguf_counts_equal_the_tensors_in_the_file() {
    let dir = ftslm_testkit::require_shared!("models/smollm2-135m-instruct");
    let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let file = GgufFile::open(&path).unwrap();
    let config = GgufMetadata::read(&file).unwrap().config;
    let mut stored = 0u64;
    for name in hf_names(&config) {
        let gguf = gguf_name(&name).unwrap();
        let (_, dims) = file
            .tensor_info(&gguf)
            .unwrap_or_else(|| panic!("{gguf} missing"));
        stored += dims.iter().product::<usize>() as u64;
    }
    let counts = ParameterCounts::of(&config);
    assert!(config.tie_word_embeddings);
    assert_eq!(counts.lm_head, 0);
    assert_eq!(counts.total, stored);
    // SmolLM2-135M is named for its size.
    assert!(
        (134_000_000..136_000_000).contains(&counts.total),
        "{}",
        counts.total
    );
}

#[test]
fn llama31_8b_parameters_and_lora() {
    let config = llama31_8b();
    assert!(is_llama31_8b_sized(&config));
    let counts = ParameterCounts::of(&config);
    assert_eq!(counts.embedding, 128_256 * 4096);
    assert_eq!(
        counts.attention_per_layer,
        2 * 4096 * 4096 + 2 * 1024 * 4096
    );
    assert_eq!(counts.mlp_per_layer, 3 * 4096 * 14336);
    assert_eq!(counts.total, 8_030_261_248);
    // PEFT reports 13,631,488 trainable parameters for r=16 on q/k/v/o.
    assert_eq!(qkvo(16).parameter_count(&config), 13_631_488);
}

#[test]
fn llama31_8b_memory_estimate() {
    let config = llama31_8b();
    let shape = |seq_len| TrainingShape {
        batch_size: 4,
        seq_len,
        gradient_checkpointing: true,
        embedding_precision: EmbeddingPrecision::F32,
    };
    let m = MemoryEstimate::new(&config, &qkvo(16), shape(2048));
    assert!((m.frozen_bits_per_param - 4.127).abs() < 1e-3);
    // 6.98e9 projection weights at 4.127 bits
    assert!((3_590_000_000..3_610_000_000).contains(&m.frozen_projections));
    assert_eq!(m.embedding, 128_256 * 4096 * 4);
    assert_eq!(m.saved_layer_activations, 32 * 4 * 2048 * 4096 * 4);
    assert_eq!(m.layer_attention_scores, 4 * 32 * 2048 * 2048 * 4);
    assert_eq!(m.cross_entropy_chunk, 128 * 128_256 * 4);
    assert_eq!(m.adamw_states, 2 * m.lora_weights);
    // A quarter of the tokens: the saved inputs shrink 4×, the scores 16×.
    let short = MemoryEstimate::new(&config, &qkvo(16), shape(512));
    assert_eq!(short.saved_layer_activations * 4, m.saved_layer_activations);
    assert_eq!(short.layer_attention_scores * 16, m.layer_attention_scores);
    assert!(short.total < m.total);
    eprintln!(
        "Llama-3.1-8B, B=4: L=2048 {:.2} GiB, L=512 {:.2} GiB",
        m.total as f64 / (1u64 << 30) as f64,
        short.total as f64 / (1u64 << 30) as f64
    );
}

// Hand-computed cases on a config small enough to count by hand.
/// hidden 8, 2 heads of 4 sharing 1 kv head, intermediate 16, vocab 10, 2 layers.
fn small(tied: bool) -> LlamaConfig {
    LlamaConfig {
        hidden_size: 8,
        intermediate_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 4,
        vocab_size: 10,
        rms_norm_eps: 1e-5,
        rope: RopeConfig {
            theta: 10_000.0,
            scaling: RopeScaling::None,
        },
        tie_word_embeddings: tied,
        max_position_embeddings: 64,
        bos_token_id: None,
        eos_token_ids: vec![],
    }
}

fn q_and_v(r: usize) -> LoraPlan {
    LoraPlan {
        r,
        target_modules: vec![Projection::Q, Projection::V],
    }
}

fn shape(checkpointing: bool, precision: EmbeddingPrecision) -> TrainingShape {
    TrainingShape {
        batch_size: 2,
        seq_len: 3,
        gradient_checkpointing: checkpointing,
        embedding_precision: precision,
    }
}

#[test]
fn parameters_of_a_small_config_counted_by_hand() {
    let counts = ParameterCounts::of(&small(false));
    // q 8×8, k 4×8, v 4×8, o 8×8
    assert_eq!(counts.attention_per_layer, 64 + 32 + 32 + 64);
    assert_eq!(counts.mlp_per_layer, 3 * 16 * 8);
    assert_eq!(counts.norms_per_layer, 16);
    assert_eq!(counts.per_layer, 592);
    assert_eq!(counts.layers, 1184);
    assert_eq!(counts.embedding, 80);
    assert_eq!(counts.lm_head, 80);
    assert_eq!(counts.total, 80 + 1184 + 8 + 80);
    assert_eq!(counts.projections, 1152);
    let tied = ParameterCounts::of(&small(true));
    assert_eq!(tied.lm_head, 0);
    assert_eq!(tied.total, 1352 - 80);
}

#[test]
fn lora_parameters_are_r_times_in_plus_out_per_target() {
    // q: 2×(8+8), v: 2×(8+4), two layers
    assert_eq!(q_and_v(2).parameter_count(&small(false)), 2 * (32 + 24));
}

#[test]
fn nf4_bytes_equal_what_nf4_tensors_store() {
    for shape in [[3usize, 7], [64, 64], [100, 300], [1, 64 * 256 + 1]] {
        let n = shape[0] * shape[1];
        let weights: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 97.0)
            .collect();
        let tensor = Nf4Tensor::quantize(&weights, shape, true).unwrap();
        assert_eq!(
            nf4_double_quant_bytes(n as u64),
            tensor.storage_bytes() as u64,
            "shape {shape:?}"
        );
    }
    // 4 + 8/64 + 32/(64·256) bits per weight for large matrices
    let n = 4096u64 * 14336;
    let bits = nf4_double_quant_bytes(n) as f64 * 8.0 / n as f64;
    assert!(
        (bits - (4.0 + 0.125 + 32.0 / 16384.0)).abs() < 1e-6,
        "{bits}"
    );
}

#[test]
fn memory_of_a_small_config_by_hand() {
    let m = MemoryEstimate::new(
        &small(false),
        &q_and_v(2),
        shape(true, EmbeddingPrecision::F32),
    );
    // per layer: q 41, k 25, v 25, o 41, gate/up/down 74 each (codes + absmax codes + scale + offset)
    assert_eq!(m.frozen_projections, 2 * (41 + 25 + 25 + 41 + 3 * 74));
    assert_eq!((m.embedding, m.lm_head, m.norms), (320, 320, (32 + 8) * 4));
    assert_eq!(
        (m.lora_weights, m.lora_gradients, m.adamw_states),
        (448, 448, 896)
    );
    assert_eq!(m.saved_layer_activations, 2 * 2 * 3 * 8 * 4);
    assert_eq!(m.layer_attention_projections, 2 * 3 * (8 + 4 + 4 + 8) * 4);
    assert_eq!(m.layer_attention_scores, 2 * 2 * 3 * 3 * 4);
    assert_eq!(m.layer_mlp, 3 * 2 * 3 * 16 * 4);
    // B·L = 6 rows < 256, so the chunk holds 6 rows of logits
    assert_eq!(m.cross_entropy_chunk, 6 * 10 * 4);
    assert_eq!(m.total, 5796);
    let parts: u64 = m.parts().iter().map(|p| p.bytes).sum();
    assert_eq!(parts, m.total);

    let bf16 = MemoryEstimate::new(
        &small(false),
        &q_and_v(2),
        shape(true, EmbeddingPrecision::Bf16),
    );
    assert_eq!(bf16.total, 5796 - 320);
    let tied = MemoryEstimate::new(
        &small(true),
        &q_and_v(2),
        shape(true, EmbeddingPrecision::F32),
    );
    assert_eq!(tied.lm_head, 0);
}

#[test]
fn without_checkpointing_every_layer_keeps_its_internals() {
    let m = MemoryEstimate::new(
        &small(false),
        &q_and_v(2),
        shape(false, EmbeddingPrecision::F32),
    );
    let one_layer = 576 + 144 + 1152;
    assert_eq!(m.saved_layer_activations, 2 * 192 + one_layer);
    assert_eq!(m.total, 5796 + one_layer);
}

#[test]
fn absurd_sizes_saturate_instead_of_overflowing() {
    let big = TrainingShape {
        batch_size: usize::MAX,
        seq_len: usize::MAX,
        ..shape(true, EmbeddingPrecision::F32)
    };
    assert_eq!(
        MemoryEstimate::new(&small(false), &q_and_v(2), big).total,
        u64::MAX
    );
}

#[test]
fn measured_projections_replace_the_nf4_formula_and_the_parts_add_up() {
    let nf4 = MemoryEstimate::new(
        &small(false),
        &q_and_v(2),
        shape(true, EmbeddingPrecision::F32),
    );
    // The same projections held in f32, as a training plan measures them.
    let f32_bytes = 1152 * 4;
    let dense = nf4.clone().with_frozen_projections("f32", f32_bytes, 1152);
    assert_eq!(dense.frozen_format, "f32");
    assert_eq!(dense.frozen_bits_per_param, 32.0);
    assert_eq!(dense.total, nf4.total - nf4.frozen_projections + f32_bytes);
    assert_eq!(
        dense.total,
        dense.weights()
            + dense.adapter_and_optimizer()
            + dense.activations()
            + dense.cross_entropy_chunk
    );
}
