//! PEFT adapter files: load → save → load, new adapters with PEFT's
//! initialisation, and the options we refuse.

use std::path::Path;

use candle_core::Device;
use ftslm_model::lora::kaiming_uniform_bound;
use ftslm_model::{
    DenseF32, LlamaConfig, LlamaModel, LoraAdapter, LoraDropout, LoraSettings, Projection,
};
use serde_json::{json, Value};

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn tensor_bits(t: &candle_core::Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

#[test]
fn peft_adapter_round_trips_bit_for_bit() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let config = LlamaConfig::from_file(&dir.join("config.json")).unwrap();
    let original = LoraAdapter::load_peft(&dir.join("adapter"), &config, &Device::Cpu).unwrap();
    assert_eq!(original.iter().count(), 2 * 7);
    assert_eq!(original.base_model_name_or_path(), Some("tiny-llama3"));

    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("saved");
    original.save_peft(&out).unwrap();
    let reloaded = LoraAdapter::load_peft(&out, &config, &Device::Cpu).unwrap();
    assert_eq!(reloaded.settings(), original.settings());
    for (layer, projection, weights) in original.iter() {
        let again = reloaded.get(layer, projection).unwrap();
        assert_eq!(tensor_bits(&weights.a), tensor_bits(&again.a));
        assert_eq!(tensor_bits(&weights.b), tensor_bits(&again.b));
    }

    // Every field PEFT wrote is still there with its value.
    let before = read_json(&dir.join("adapter/adapter_config.json"));
    let after = read_json(&out.join("adapter_config.json"));
    for (key, value) in before.as_object().unwrap() {
        assert_eq!(after.get(key), Some(value), "field `{key}` changed");
    }
    // PEFT's key names and f32 tensors on disk.
    let raw = candle_core::safetensors::load(out.join("adapter_model.safetensors"), &Device::Cpu)
        .unwrap();
    let key = "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight";
    assert_eq!(raw[key].dims(), [64, 8]);
    assert_eq!(raw[key].dtype(), candle_core::DType::F32);
    assert_eq!(raw.len(), 28);
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

fn settings(targets: &[Projection]) -> LoraSettings {
    LoraSettings {
        r: 4,
        alpha: 8.0,
        dropout: 0.1,
        target_modules: targets.to_vec(),
        use_rslora: false,
    }
}

#[test]
fn new_adapter_uses_peft_init_and_leaves_the_model_unchanged() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let model = LlamaModel::load_hf(&dir, &DenseF32, &Device::Cpu).unwrap();
    let targets = [Projection::Q, Projection::K, Projection::V, Projection::O];
    let adapter = LoraAdapter::new(
        model.config(),
        settings(&targets),
        Some("tiny-llama3".into()),
        7,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(adapter.iter().count(), 2 * 4);
    assert!(adapter.get(0, Projection::Gate).is_none());
    // A ~ U(±1/√in) (kaiming_uniform_ with a = √5), B = 0.
    let bound = kaiming_uniform_bound(64, 5f64.sqrt());
    assert!((bound - 1.0 / 8.0).abs() < 1e-12);
    let a: Vec<f32> = adapter
        .get(0, Projection::Q)
        .unwrap()
        .a
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(a.iter().all(|v| (v.abs() as f64) < bound));
    let spread =
        a.iter().cloned().fold(f32::MIN, f32::max) - a.iter().cloned().fold(f32::MAX, f32::min);
    assert!(
        spread > 1.5 * bound as f32,
        "A should fill its range, spread {spread}"
    );
    for (_, _, w) in adapter.iter() {
        assert!(w
            .b
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .all(|&v| v == 0.0));
    }
    // Seeded: same seed, same A; another seed, another A.
    let same = LoraAdapter::new(model.config(), settings(&targets), None, 7, &Device::Cpu).unwrap();
    let other =
        LoraAdapter::new(model.config(), settings(&targets), None, 8, &Device::Cpu).unwrap();
    let a_of = |x: &LoraAdapter| tensor_bits(&x.get(1, Projection::V).unwrap().a);
    assert_eq!(a_of(&adapter), a_of(&same));
    assert_ne!(a_of(&adapter), a_of(&other));

    // B = 0: the adapted model is the base model, dropout or not.
    let ids = [1u32, 9690, 198, 2683, 359, 253, 2340];
    let positions: Vec<u32> = (0..ids.len() as u32).collect();
    let segments = vec![0; ids.len()];
    let base: Vec<Vec<f32>> = model
        .forward(&ids, &positions, &segments, None)
        .unwrap()
        .to_vec2()
        .unwrap();
    let adapted: Vec<Vec<f32>> = model
        .forward(&ids, &positions, &segments, Some(&adapter))
        .unwrap()
        .to_vec2()
        .unwrap();
    assert_eq!(base, adapted);
    let mut dropout = LoraDropout::new(0.1, 3);
    let trained: Vec<Vec<f32>> = model
        .forward_training(&ids, &positions, &segments, &adapter, &mut dropout)
        .unwrap()
        .to_vec2()
        .unwrap();
    assert_eq!(base, trained);

    // Saved, it carries the fields a PEFT user needs.
    let temp = tempfile::tempdir().unwrap();
    adapter.save_peft(temp.path()).unwrap();
    let written = read_json(&temp.path().join("adapter_config.json"));
    let expected = json!({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8,
        "lora_dropout": 0.1, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "bias": "none", "use_rslora": false, "base_model_name_or_path": "tiny-llama3",
        "fan_in_fan_out": false, "init_lora_weights": true, "inference_mode": true
    });
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(written.get(key), Some(value), "field `{key}`");
    }
    let reloaded = LoraAdapter::load_peft(temp.path(), model.config(), &Device::Cpu).unwrap();
    assert_eq!(a_of(&reloaded), a_of(&adapter));
}

#[test]
fn dropout_masks_are_seeded_and_scaled() {
    let mut first = LoraDropout::new(0.25, 11);
    let mut second = LoraDropout::new(0.25, 11);
    let a: Vec<f32> = first
        .dropout_mask(&[50, 40], &Device::Cpu)
        .unwrap()
        .unwrap()
        .factors(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = second
        .dropout_mask(&[50, 40], &Device::Cpu)
        .unwrap()
        .unwrap()
        .factors(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(a, b);
    assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    let dropped = a.iter().filter(|&&v| v == 0.0).count() as f64 / a.len() as f64;
    assert!((dropped - 0.25).abs() < 0.05, "dropped fraction {dropped}");
    assert!(LoraDropout::new(0.0, 1)
        .dropout_mask(&[2, 2], &Device::Cpu)
        .unwrap()
        .is_none());
}

#[test]
fn rslora_scales_by_alpha_over_sqrt_r() {
    let mut s = settings(&[Projection::Q]);
    s.r = 16;
    s.alpha = 32.0;
    assert_eq!(s.scale(), 2.0);
    s.use_rslora = true;
    assert_eq!(s.scale(), 8.0);
}

/// Copies the tiny adapter into a temp dir with one edit to its config.
fn adapter_with(
    dir: &Path,
    edit: impl Fn(&mut serde_json::Map<String, Value>),
) -> tempfile::TempDir {
    let temp = tempfile::tempdir().unwrap();
    let mut config = read_json(&dir.join("adapter/adapter_config.json"));
    edit(config.as_object_mut().unwrap());
    std::fs::write(temp.path().join("adapter_config.json"), config.to_string()).unwrap();
    std::fs::copy(
        dir.join("adapter/adapter_model.safetensors"),
        temp.path().join("adapter_model.safetensors"),
    )
    .unwrap();
    temp
}

#[test]
fn unsupported_or_mismatched_adapters_are_refused_with_the_reason() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let config = LlamaConfig::from_file(&dir.join("config.json")).unwrap();
    let load = |temp: &tempfile::TempDir| {
        LoraAdapter::load_peft(temp.path(), &config, &Device::Cpu)
            .unwrap_err()
            .to_string()
    };
    let err = load(&adapter_with(&dir, |c| {
        c.insert("fan_in_fan_out".into(), json!(true));
    }));
    assert!(
        err.contains("adapter_config.json") && err.contains("fan_in_fan_out"),
        "{err}"
    );
    let err = load(&adapter_with(&dir, |c| {
        c.insert("use_dora".into(), json!(true));
    }));
    assert!(err.contains("use_dora"), "{err}");
    let err = load(&adapter_with(&dir, |c| {
        c.insert("target_modules".into(), json!(["q_proj", "lm_head"]));
    }));
    assert!(err.contains("lm_head"), "{err}");
    // The weights adapt modules the config does not list.
    let err = load(&adapter_with(&dir, |c| {
        c.insert("target_modules".into(), json!(["q_proj", "k_proj"]));
    }));
    assert!(err.contains("does not list"), "{err}");
    // r disagrees with the tensors.
    let err = load(&adapter_with(&dir, |c| {
        c.insert("r".into(), json!(4));
    }));
    assert!(
        err.contains("lora_A.weight") && err.contains("expected [4, "),
        "{err}"
    );

    // An adapter for a model with other dimensions.
    let mut other = config.clone();
    other.num_hidden_layers = 1;
    let err = LoraAdapter::load_peft(&dir.join("adapter"), &other, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer 1") && err.contains("1 layers"), "{err}");
}
