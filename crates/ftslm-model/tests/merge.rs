//! Merging an adapter into its base: the merged directory loads as a plain
//! Hugging Face model whose logits equal the base + adapter forward pass,
//! and transformers' goldens for the adapter.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use ftslm_model::loader::gguf::{load_gguf, GgufBase};
use ftslm_model::merge::{merge_to_dir, merged_projection, write_merged, BaseFiles, MergedDtype};
use ftslm_model::{
    DenseF32, LlamaConfig, LlamaModel, LoraAdapter, LoraSettings, NamedTensors, Projection,
    SafetensorsCheckpoint, WeightSource,
};
use serde_json::Value;

fn golden(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap()
}

fn full_ids(golden: &Value) -> Vec<u32> {
    let ids = golden["full_ids"].as_array().unwrap();
    ids.iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

fn logits(model: &LlamaModel, ids: &[u32], adapter: Option<&LoraAdapter>) -> Vec<Vec<f32>> {
    let positions: Vec<u32> = (0..ids.len() as u32).collect();
    let segments = vec![0; ids.len()];
    let out = model.forward(ids, &positions, &segments, adapter).unwrap();
    out.to_vec2().unwrap()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

/// Names of the entries of `dir`, to catch files left behind.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn f32_merge_of_tiny_llama3_equals_base_plus_adapter() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let golden = golden(&dir);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let summary = merge_to_dir(&dir, &dir.join("adapter"), &out, MergedDtype::F32).unwrap();
    assert_eq!(summary.merged_projections, 2 * 7);
    // embedding, 2 × (2 norms + 7 projections), final norm, LM head
    assert_eq!(summary.tensors, 21);
    assert_eq!(summary.parameters, 6_377_792);
    assert_eq!(
        std::fs::metadata(out.join("model.safetensors"))
            .unwrap()
            .len(),
        summary.weights_bytes
    );
    assert_eq!(
        listing(tmp.path()),
        ["merged"],
        "temporary directory left behind"
    );

    let device = Device::Cpu;
    let base = LlamaModel::load_hf(&dir, &DenseF32, &device).unwrap();
    let adapter = LoraAdapter::load_peft(&dir.join("adapter"), base.config(), &device).unwrap();
    let merged = LlamaModel::load_hf(&out, &DenseF32, &device).unwrap();
    let ids = full_ids(&golden);
    let with_adapter = logits(&base, &ids, Some(&adapter));
    let merged_logits = logits(&merged, &ids, None);
    let diff = max_abs_diff(&merged_logits, &with_adapter);
    eprintln!("merged vs base + adapter: max |Δlogit| {diff:e} (PEFT's own merge: 5.4e-7)");
    assert!(diff <= 1e-5, "merged logits differ by {diff}");
    // The adapter matters, so the comparison above is not vacuous.
    assert!(max_abs_diff(&merged_logits, &logits(&base, &ids, None)) > 1e-3);

    // transformers + PEFT's logits for the adapted model.
    for probe in golden["adapter_logits"].as_array().unwrap() {
        let row = &merged_logits[probe["position"].as_u64().unwrap() as usize];
        for (i, want) in probe["first16"].as_array().unwrap().iter().enumerate() {
            let want = want.as_f64().unwrap() as f32;
            assert!(
                (row[i] - want).abs() <= 1e-4,
                "logit {i}: {} vs {want}",
                row[i]
            );
        }
    }

    let config = LlamaConfig::from_file(&out.join("config.json")).unwrap();
    assert_eq!(&config, base.config());
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(json["torch_dtype"], "float32");
    for name in [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert_eq!(
            std::fs::read(out.join(name)).unwrap(),
            std::fs::read(dir.join(name)).unwrap(),
            "{name} must be copied unchanged"
        );
    }
}

#[test]
fn bf16_merge_rounds_the_f32_merge_once() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    merge_to_dir(&dir, &dir.join("adapter"), &out, MergedDtype::Bf16).unwrap();

    let device = Device::Cpu;
    let base = LlamaModel::load_hf(&dir, &DenseF32, &device).unwrap();
    let adapter = LoraAdapter::load_peft(&dir.join("adapter"), base.config(), &device).unwrap();
    let written = SafetensorsCheckpoint::open(&out).unwrap();
    let source = SafetensorsCheckpoint::open(&dir).unwrap();
    let bits = |t: &Tensor| -> Vec<u16> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<half::bf16>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    for (layer, projection) in [(0, Projection::Q), (1, Projection::Down)] {
        let name = format!("{}.weight", projection.module_path(layer));
        let stored = written.load_raw(&name, &device).unwrap();
        assert_eq!(stored.dtype(), DType::BF16);
        let exact = merged_projection(&base, Some(&adapter), layer, projection).unwrap();
        assert_eq!(
            bits(&stored),
            bits(&exact.to_dtype(DType::BF16).unwrap()),
            "{name}"
        );
        let original = source.load_raw(&name, &device).unwrap();
        assert_ne!(
            bits(&stored),
            bits(&original),
            "{name} must carry the adapter"
        );
    }
    // Tensors without an adapter come back bit for bit.
    for name in [
        "model.embed_tokens.weight",
        "model.layers.1.input_layernorm.weight",
    ] {
        let stored = written.load_raw(name, &device).unwrap();
        assert_eq!(
            bits(&stored),
            bits(&source.load_raw(name, &device).unwrap()),
            "{name}"
        );
    }
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(json["torch_dtype"], "bfloat16");
}

#[test]
fn merge_refuses_a_non_empty_output_and_leaves_it_alone() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let err = merge_to_dir(&dir, &dir.join("adapter"), &out, MergedDtype::F32).unwrap_err();
    assert!(err.to_string().contains("is not empty"), "{err}");
    assert_eq!(listing(&out), ["notes.txt"]);
    assert_eq!(listing(tmp.path()), ["merged"]);

    // An empty directory is fine.
    std::fs::remove_file(out.join("notes.txt")).unwrap();
    merge_to_dir(&dir, &dir.join("adapter"), &out, MergedDtype::F32).unwrap();
    assert!(out.join("model.safetensors").is_file());

    // A failed load leaves nothing behind.
    let second = tmp.path().join("second");
    let err = merge_to_dir(
        &dir,
        &tmp.path().join("no-adapter"),
        &second,
        MergedDtype::F32,
    );
    assert!(err.is_err());
    assert_eq!(listing(tmp.path()), ["merged"]);
}

/// tiny-llama3 with its LM head tied to the embedding, built in memory, so
/// config.json and generation_config.json must be generated.
#[test]
fn tied_model_writes_only_the_embedding_and_a_generated_config() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let device = Device::Cpu;
    let mut config = LlamaConfig::from_file(&dir.join("config.json")).unwrap();
    config.tie_word_embeddings = true;
    let checkpoint = SafetensorsCheckpoint::open(&dir).unwrap();
    let mut tensors = HashMap::new();
    for name in checkpoint.tensor_names().filter(|n| *n != "lm_head.weight") {
        tensors.insert(
            name.to_string(),
            checkpoint.load_raw(name, &device).unwrap(),
        );
    }
    let mut weights = NamedTensors::new(tensors, "memory");
    assert!(!weights.contains("lm_head.weight"));
    let model = LlamaModel::from_weights(config.clone(), &mut weights, &DenseF32, &device).unwrap();
    let settings = LoraSettings {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: vec![Projection::V, Projection::Up],
        use_rslora: false,
    };
    let mut adapter = LoraAdapter::new(&config, settings, None, 7, &device).unwrap();
    // PEFT starts B at zero; give it values so that the merge changes something.
    for layer in 0..2 {
        for p in [Projection::V, Projection::Up] {
            let w = adapter.get_mut(layer, p).unwrap();
            let out_features = p.shape(&config).0;
            let values: Vec<f32> = (0..out_features * 4)
                .map(|i| ((i * 13 % 17) as f32 - 8.0) / 50.0)
                .collect();
            w.b = Tensor::from_vec(values, (out_features, 4), &device).unwrap();
        }
    }

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tied");
    let summary = write_merged(
        &model,
        Some(&adapter),
        BaseFiles::None,
        &out,
        MergedDtype::F32,
    )
    .unwrap();
    assert_eq!(summary.tensors, 20, "no lm_head.weight for a tied model");
    assert!(summary
        .notes
        .iter()
        .any(|n| n.contains("config.json generated")));
    let written = SafetensorsCheckpoint::open(&out).unwrap();
    assert!(!written.contains("lm_head.weight"));
    assert!(written.contains("model.embed_tokens.weight"));

    assert_eq!(
        LlamaConfig::from_file(&out.join("config.json")).unwrap(),
        config
    );
    let generation: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("generation_config.json")).unwrap())
            .unwrap();
    assert_eq!(generation["eos_token_id"], 2);

    let merged = LlamaModel::load_hf(&out, &DenseF32, &device).unwrap();
    let ids = [1, 9690, 198, 2683, 359, 253, 2340, 1096];
    let with_adapter = logits(&model, &ids, Some(&adapter));
    let diff = max_abs_diff(&logits(&merged, &ids, None), &with_adapter);
    assert!(diff <= 1e-5, "{diff}");
    assert!(max_abs_diff(&with_adapter, &logits(&model, &ids, None)) > 1e-3);
}

/// A quantized GGUF base: the merged HF checkpoint must undo llama.cpp's
/// q/k row order, or the logits would not match.
#[test]
fn gguf_base_merges_into_hf_layout() {
    let dir = ftslm_testkit::require_shared!("models/smollm2-135m-instruct");
    let gguf = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let device = Device::Cpu;
    let (base, _) = load_gguf(&gguf, GgufBase::F32, &device).unwrap();
    let settings = LoraSettings {
        r: 2,
        alpha: 4.0,
        dropout: 0.0,
        target_modules: vec![Projection::Q, Projection::K],
        use_rslora: false,
    };
    let mut adapter = LoraAdapter::new(base.config(), settings, None, 3, &device).unwrap();
    for layer in 0..base.config().num_hidden_layers {
        for p in [Projection::Q, Projection::K] {
            let w = adapter.get_mut(layer, p).unwrap();
            let out_features = p.shape(base.config()).0;
            let values: Vec<f32> = (0..out_features * 2)
                .map(|i| ((i * 7 % 11) as f32 - 5.0) / 40.0)
                .collect();
            w.b = Tensor::from_vec(values, (out_features, 2), &device).unwrap();
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let adapter_dir = tmp.path().join("adapter");
    adapter.save_peft(&adapter_dir).unwrap();
    let out = tmp.path().join("merged");
    let summary = merge_to_dir(&gguf, &adapter_dir, &out, MergedDtype::F32).unwrap();
    assert_eq!(
        summary.merged_projections,
        2 * base.config().num_hidden_layers
    );
    assert!(out.join("tokenizer.json").is_file());

    let merged = LlamaModel::load_hf(&out, &DenseF32, &device).unwrap();
    assert_eq!(merged.config(), base.config());
    let ids = [1, 9690, 198, 2683, 359, 253, 2340, 1096, 12151];
    let with_adapter = logits(&base, &ids, Some(&adapter));
    let diff = max_abs_diff(&logits(&merged, &ids, None), &with_adapter);
    eprintln!("GGUF merge vs base + adapter: max |Δlogit| {diff:e}");
    // f32 rounding over 30 layers gives ~6e-5 here; a wrong q/k row order
    // or a missing delta would be off by far more than 1e-3.
    assert!(diff <= 1e-3, "{diff}");
    assert!(max_abs_diff(&with_adapter, &logits(&base, &ids, None)) > 1e-2);
}
