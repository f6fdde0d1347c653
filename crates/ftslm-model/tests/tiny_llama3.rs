//! The forward pass against transformers' goldens for the tiny Llama 3.1
//! checkpoint (bf16 weights, f32 compute), with and without its PEFT adapter.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use ftslm_model::{
    masked_mean_nll, DenseF32, LlamaConfig, LlamaModel, LoraAdapter, ModelError, NamedTensors,
    SafetensorsCheckpoint, WeightSource,
};
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;

fn golden(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn full_ids(golden: &Value) -> Vec<u32> {
    golden["full_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// One unpacked example: positions 0.., a single segment.
fn run(model: &LlamaModel, ids: &[u32], adapter: Option<&LoraAdapter>) -> Tensor {
    let positions: Vec<u32> = (0..ids.len() as u32).collect();
    let segments = vec![0; ids.len()];
    model.forward(ids, &positions, &segments, adapter).unwrap()
}

fn assert_probes_match(logits: &Tensor, probes: &Value, what: &str) {
    let rows: Vec<Vec<f32>> = logits.to_vec2().unwrap();
    let mut worst = 0.0f32;
    let probes = probes.as_array().unwrap();
    assert!(!probes.is_empty());
    for probe in probes {
        let position = probe["position"].as_u64().unwrap() as usize;
        let row = &rows[position];
        let first16 = floats(&probe["first16"]);
        for (i, (&got, &want)) in row.iter().zip(&first16).enumerate() {
            worst = worst.max((got - want).abs());
            assert!(
                (got - want).abs() <= TOLERANCE,
                "{what}: logit {i} at position {position}: {got} vs transformers' {want}"
            );
        }
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let top5_ids: Vec<u64> = order[..5].iter().map(|&i| i as u64).collect();
        let want_ids: Vec<u64> = probe["top5_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(
            top5_ids, want_ids,
            "{what}: top-5 ids at position {position}"
        );
        for (&i, &want) in order[..5].iter().zip(&floats(&probe["top5_logits"])) {
            worst = worst.max((row[i] - want).abs());
            assert!(
                (row[i] - want).abs() <= TOLERANCE,
                "{what}: top-5 logit of id {i} at position {position}: {} vs {want}",
                row[i]
            );
        }
    }
    eprintln!("{what}: largest deviation from the golden logits {worst:e}");
}

fn answer_mask(len: usize, prompt_len: usize) -> Vec<bool> {
    (0..len).map(|t| t >= prompt_len).collect()
}

#[test]
fn base_logits_and_loss_match_transformers() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let golden = golden(&dir);
    let model = LlamaModel::load_hf(&dir, &DenseF32, &Device::Cpu).unwrap();
    let ids = full_ids(&golden);
    let logits = run(&model, &ids, None);
    assert_eq!(logits.dims(), [ids.len(), 49152]);
    assert_probes_match(&logits, &golden["base_logits"], "base");

    let prompt_len = golden["prompt_len"].as_u64().unwrap() as usize;
    let loss = masked_mean_nll(&logits, &ids, &answer_mask(ids.len(), prompt_len)).unwrap();
    let want = golden["base_loss"].as_f64().unwrap();
    eprintln!("base loss {loss} vs transformers' {want}");
    assert!((loss - want).abs() <= 1e-4, "base loss {loss} vs {want}");
}

#[test]
fn adapter_logits_and_loss_match_peft() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let golden = golden(&dir);
    let model = LlamaModel::load_hf(&dir, &DenseF32, &Device::Cpu).unwrap();
    let adapter =
        LoraAdapter::load_peft(&dir.join("adapter"), model.config(), &Device::Cpu).unwrap();
    assert_eq!(adapter.settings().r, 8);
    assert_eq!(adapter.scale(), 2.0);
    let ids = full_ids(&golden);
    let logits = run(&model, &ids, Some(&adapter));
    assert_probes_match(&logits, &golden["adapter_logits"], "adapter");

    let prompt_len = golden["prompt_len"].as_u64().unwrap() as usize;
    let loss = masked_mean_nll(&logits, &ids, &answer_mask(ids.len(), prompt_len)).unwrap();
    let want = golden["adapter_loss"].as_f64().unwrap();
    eprintln!("adapter loss {loss} vs PEFT's {want}");
    assert!((loss - want).abs() <= 1e-4, "adapter loss {loss} vs {want}");
    let base_loss = golden["base_loss"].as_f64().unwrap();
    assert!(
        (loss - base_loss).abs() > 1e-3,
        "the adapter must change the loss"
    );
}

#[test]
fn packed_row_matches_its_examples_run_separately() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let golden = golden(&dir);
    let model = LlamaModel::load_hf(&dir, &DenseF32, &Device::Cpu).unwrap();
    let adapter =
        LoraAdapter::load_peft(&dir.join("adapter"), model.config(), &Device::Cpu).unwrap();
    let ids = full_ids(&golden);
    // Three examples of different lengths, one a single token.
    let examples = [&ids[..60], &ids[60..61], &ids[61..]];
    let mut packed_ids = Vec::new();
    let mut positions = Vec::new();
    let mut segments = Vec::new();
    for (segment, example) in examples.iter().enumerate() {
        packed_ids.extend_from_slice(example);
        positions.extend(0..example.len() as u32);
        segments.extend(std::iter::repeat_n(segment as u32, example.len()));
    }
    for adapter in [None, Some(&adapter)] {
        let packed: Vec<Vec<f32>> = model
            .forward(&packed_ids, &positions, &segments, adapter)
            .unwrap()
            .to_vec2()
            .unwrap();
        let mut offset = 0;
        for example in examples {
            let alone: Vec<Vec<f32>> = run(&model, example, adapter).to_vec2().unwrap();
            for (t, row) in alone.iter().enumerate() {
                let diff = row
                    .iter()
                    .zip(&packed[offset + t])
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    diff < 1e-5,
                    "token {t} of an example differs by {diff} when packed"
                );
            }
            offset += example.len();
        }
    }

    // Without segment ids the third example would see the first two.
    let one_segment = vec![0; packed_ids.len()];
    let leaky: Vec<Vec<f32>> = model
        .forward(&packed_ids, &positions, &one_segment, None)
        .unwrap()
        .to_vec2()
        .unwrap();
    let alone: Vec<Vec<f32>> = run(&model, examples[2], None).to_vec2().unwrap();
    let diff = (alone[5][0] - leaky[61 + 5][0]).abs();
    assert!(
        diff > 1e-4,
        "attention across examples should change the logits"
    );
}

#[test]
fn forward_rejects_inconsistent_rows() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let model = LlamaModel::load_hf(&dir, &DenseF32, &Device::Cpu).unwrap();
    let err = model
        .forward(&[1, 2, 3], &[0, 1], &[0, 0, 0], None)
        .unwrap_err();
    assert!(
        err.to_string().contains("3 token ids but 2 positions"),
        "{err}"
    );
    let err = model
        .forward(&[1, 49152], &[0, 1], &[0, 0], None)
        .unwrap_err();
    assert!(err.to_string().contains("49152"), "{err}");
    let err = model
        .forward(&[1, 2, 3], &[0, 0, 0], &[0, 1, 0], None)
        .unwrap_err();
    assert!(err.to_string().contains("contiguous"), "{err}");
    assert!(model.forward(&[], &[], &[], None).is_err());
}

/// What a GGUF loader will do: hand over f32 tensors by Hugging Face name.
#[test]
fn model_builds_from_named_f32_tensors() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let config = LlamaConfig::from_file(&dir.join("config.json")).unwrap();
    let checkpoint = SafetensorsCheckpoint::open(&dir).unwrap();
    let names: Vec<String> = checkpoint.tensor_names().map(str::to_string).collect();
    let mut tensors = HashMap::new();
    for name in names {
        let raw = checkpoint.load_raw(&name, &Device::Cpu).unwrap();
        tensors.insert(name, raw.to_dtype(candle_core::DType::F32).unwrap());
    }
    let mut named = NamedTensors::new(tensors, "in-memory tensors");
    let from_named = LlamaModel::from_weights(config, &mut named, &DenseF32, &Device::Cpu).unwrap();
    assert_eq!(named.remaining().count(), 0, "every tensor is used once");
    let from_dir = LlamaModel::load_hf(&dir, &DenseF32, &Device::Cpu).unwrap();
    let ids = [1u32, 9690, 198, 2683, 359];
    let a: Vec<Vec<f32>> = run(&from_named, &ids, None).to_vec2().unwrap();
    let b: Vec<Vec<f32>> = run(&from_dir, &ids, None).to_vec2().unwrap();
    assert_eq!(a, b);
}

#[test]
fn sharded_checkpoint_loads_like_the_single_file() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let all = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let temp = tempfile::tempdir().unwrap();
    let mut weight_map = serde_json::Map::new();
    let mut shards: [HashMap<String, Tensor>; 2] = Default::default();
    for (name, tensor) in all {
        let shard = usize::from(name.contains("layers.1") || name == "lm_head.weight");
        let file = format!("model-0000{}-of-00002.safetensors", shard + 1);
        weight_map.insert(name.clone(), file.into());
        shards[shard].insert(name, tensor);
    }
    for (i, shard) in shards.iter().enumerate() {
        let path = temp
            .path()
            .join(format!("model-0000{}-of-00002.safetensors", i + 1));
        candle_core::safetensors::save(shard, path).unwrap();
    }
    let write_index = |weight_map: &serde_json::Map<String, Value>| {
        let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
        std::fs::write(
            temp.path().join("model.safetensors.index.json"),
            serde_json::to_string(&index).unwrap(),
        )
        .unwrap();
    };
    write_index(&weight_map);
    std::fs::copy(dir.join("config.json"), temp.path().join("config.json")).unwrap();

    let sharded = LlamaModel::load_hf(temp.path(), &DenseF32, &Device::Cpu).unwrap();
    let single = LlamaModel::load_hf(&dir, &DenseF32, &Device::Cpu).unwrap();
    let ids = [1u32, 9690, 198, 2683, 359, 253];
    let a: Vec<Vec<f32>> = run(&sharded, &ids, None).to_vec2().unwrap();
    let b: Vec<Vec<f32>> = run(&single, &ids, None).to_vec2().unwrap();
    assert_eq!(a, b);

    // The index sends a tensor to a shard that does not hold it.
    let mut wrong = weight_map.clone();
    wrong.insert(
        "model.norm.weight".into(),
        "model-00002-of-00002.safetensors".into(),
    );
    write_index(&wrong);
    let err = LlamaModel::load_hf(temp.path(), &DenseF32, &Device::Cpu).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ModelError::MissingTensor { .. }), "{message}");
    assert!(message.contains("model.norm.weight"), "{message}");
    assert!(
        message.contains("model-00002-of-00002.safetensors"),
        "{message}"
    );

    // The index does not list a tensor at all.
    let mut short = weight_map.clone();
    short.remove("model.layers.1.mlp.up_proj.weight");
    write_index(&short);
    let mut checkpoint = SafetensorsCheckpoint::open(temp.path()).unwrap();
    assert!(!checkpoint.contains("model.layers.1.mlp.up_proj.weight"));
    let err = checkpoint
        .take_f32("model.layers.1.mlp.up_proj.weight", &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.layers.1.mlp.up_proj.weight") && err.contains("index.json"),
        "{err}"
    );
}

#[test]
fn untied_model_without_lm_head_names_the_tensor_and_the_fix() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let config = LlamaConfig::from_file(&dir.join("config.json")).unwrap();
    let checkpoint = SafetensorsCheckpoint::open(&dir).unwrap();
    let mut tensors = HashMap::new();
    for name in checkpoint.tensor_names().filter(|n| *n != "lm_head.weight") {
        tensors.insert(
            name.to_string(),
            checkpoint.load_raw(name, &Device::Cpu).unwrap(),
        );
    }
    let mut named = NamedTensors::new(tensors, "test tensors");
    let err = LlamaModel::from_weights(config.clone(), &mut named, &DenseF32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lm_head.weight") && err.contains("tie_word_embeddings"),
        "{err}"
    );

    // A config that disagrees with the weights is caught by shape.
    let mut wrong = config;
    wrong.intermediate_size = 128;
    let mut checkpoint = SafetensorsCheckpoint::open(&dir).unwrap();
    let err = LlamaModel::from_weights(wrong, &mut checkpoint, &DenseF32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.layers.0.mlp.gate_proj.weight") && err.contains("[128, 64]"),
        "{err}"
    );
}
