//! `ftslm model inspect` and `ftslm merge` end to end, as a user runs them.

use std::io::Read;
use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use serde_json::Value;

/// Runs in `cwd` so that no config/ directory is picked up: the built-in
/// defaults apply (LoRA r=16 on q/k/v/o, batch 4, max_seq_length 2048).
fn ftslm(cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("ftslm").unwrap();
    cmd.current_dir(cwd)
        .env_remove("FTSLM_TRAINING__PER_DEVICE_TRAIN_BATCH_SIZE")
        .env_remove("FTSLM_DATASET__MAX_SEQ_LENGTH")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

fn json_of(cmd: &mut Command) -> Value {
    let out = cmd.assert().success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

/// Σ elements over a safetensors file's header, read here independently of
/// the code under test.
fn safetensors_elements(path: &Path) -> u64 {
    let mut file = std::fs::File::open(path).unwrap();
    let mut len = [0u8; 8];
    file.read_exact(&mut len).unwrap();
    let mut header = vec![0u8; u64::from_le_bytes(len) as usize];
    file.read_exact(&mut header).unwrap();
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&header).unwrap();
    header
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(_, t)| {
            let shape = t["shape"].as_array().unwrap();
            shape.iter().map(|d| d.as_u64().unwrap()).product::<u64>()
        })
        .sum()
}

const LLAMA31_8B_CONFIG: &str = r#"{
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
  "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
  "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
  "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]
}"#;

#[test]
fn inspect_sizes_a_model_from_its_config_alone() {
    let shared = ftslm_testkit::require_shared!("models/tiny-llama3");
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    std::fs::create_dir(&model).unwrap();
    std::fs::copy(shared.join("config.json"), model.join("config.json")).unwrap();

    let report = json_of(ftslm(tmp.path()).args(["model", "inspect", "tiny", "--json"]));
    let total = report["parameters"]["total"].as_u64().unwrap();
    assert_eq!(
        total,
        safetensors_elements(&shared.join("model.safetensors"))
    );
    assert_eq!(report["source"]["safetensors"], Value::Null);
    assert_eq!(report["architecture"]["num_key_value_heads"], 2);
    assert_eq!(
        report["architecture"]["rope_scaling"]["rope_type"],
        "llama3"
    );
    // Default LoRA: r=16 on q (64→64), k and v (64→32), o (64→64), 2 layers.
    assert_eq!(report["lora"]["parameters"], 2 * 16 * (128 + 96 + 96 + 128));
    assert_eq!(report["memory"]["shape"]["batch_size"], 4);
    assert_eq!(report["memory"]["shape"]["seq_len"], 2048);
    assert_eq!(report["original_plan"], Value::Null);
    let parts = [
        "frozen_projections",
        "embedding",
        "lm_head",
        "norms",
        "lora_weights",
        "lora_gradients",
        "adamw_states",
        "saved_layer_activations",
        "layer_attention_projections",
        "layer_attention_scores",
        "layer_mlp",
        "cross_entropy_chunk",
    ];
    let sum: u64 = parts
        .iter()
        .map(|p| report["memory"][p].as_u64().unwrap())
        .sum();
    assert_eq!(report["memory"]["total"].as_u64().unwrap(), sum);

    // The configuration's LoRA settings and flags change the estimate.
    let narrower = json_of(ftslm(tmp.path()).args([
        "model",
        "inspect",
        "tiny",
        "--json",
        "--seq-len",
        "128",
        "--set",
        "lora.r=8",
        "--set",
        "lora.target_modules=[q_proj,v_proj]",
    ]));
    assert_eq!(narrower["lora"]["parameters"], 2 * 8 * (128 + 96));
    assert_eq!(narrower["memory"]["shape"]["seq_len"], 128);
}

#[test]
fn inspect_llama31_8b_config() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("Llama-3.1-8B");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(model.join("config.json"), LLAMA31_8B_CONFIG).unwrap();

    let args = ["model", "inspect", "Llama-3.1-8B", "--batch-size", "4"];
    let report = json_of(
        ftslm(tmp.path())
            .args(args)
            .args(["--seq-len", "2048", "--json"]),
    );
    let total = report["parameters"]["total"].as_u64().unwrap();
    assert_eq!(total, 8_030_261_248);
    assert!((total as f64 / 8.03e9 - 1.0).abs() < 1e-3);
    assert_eq!(report["lora"]["parameters"], 13_631_488);
    assert!(report["original_plan"].as_str().unwrap().contains("11 GB"));
    let long = report["memory"]["total"].as_u64().unwrap();
    let short = json_of(
        ftslm(tmp.path())
            .args(args)
            .args(["--seq-len", "512", "--json"]),
    );
    assert!(short["memory"]["total"].as_u64().unwrap() < long);

    ftslm(tmp.path())
        .args(args)
        .args(["--seq-len", "512"])
        .assert()
        .success()
        .stdout(contains("8,030,261,248"))
        .stdout(contains("13,631,488"))
        .stdout(contains(
            "frozen projections, NF4 + double quant (4.127 bits/param)",
        ))
        .stdout(contains("~11 GB on a 24 GB L4"));
}

#[test]
fn inspect_a_full_checkpoint_and_a_gguf_file() {
    let tiny = ftslm_testkit::require_shared!("models/tiny-llama3");
    let tmp = tempfile::tempdir().unwrap();
    let report = json_of(
        ftslm(tmp.path())
            .args(["model", "inspect", "--json"])
            .arg(&tiny),
    );
    assert_eq!(
        report["source"]["safetensors"]["parameters"],
        report["parameters"]["total"]
    );
    assert_eq!(report["notes"], Value::Array(vec![]));

    let smollm = ftslm_testkit::require_shared!("models/smollm2-135m-instruct");
    let gguf = smollm.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let report = json_of(
        ftslm(tmp.path())
            .args(["model", "inspect", "--json"])
            .arg(&gguf),
    );
    assert_eq!(report["source"]["format"], "gguf");
    assert_eq!(report["architecture"]["tie_word_embeddings"], true);
    assert_eq!(report["parameters"]["lm_head"], 0);
    assert_eq!(report["memory"]["lm_head"], 0);
}

#[test]
fn inspect_errors_name_the_path_or_flag() {
    let tmp = tempfile::tempdir().unwrap();
    ftslm(tmp.path())
        .args(["model", "inspect", "nowhere"])
        .assert()
        .failure()
        .stderr(contains("model nowhere: does not exist"));
    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    ftslm(tmp.path())
        .args(["model", "inspect", "empty"])
        .assert()
        .failure()
        .stderr(contains("has no config.json"));
    std::fs::create_dir(tmp.path().join("m")).unwrap();
    std::fs::write(tmp.path().join("m/config.json"), LLAMA31_8B_CONFIG).unwrap();
    ftslm(tmp.path())
        .args(["model", "inspect", "m", "--seq-len", "0"])
        .assert()
        .failure()
        .stderr(contains("--seq-len must be at least 1"));
    ftslm(tmp.path())
        .args([
            "model",
            "inspect",
            "m",
            "--set",
            "lora.target_modules=[lm_head]",
        ])
        .assert()
        .failure()
        .stderr(contains(
            "lora.target_modules `lm_head` is not a Llama projection",
        ));
}

#[test]
fn merge_writes_a_hugging_face_directory() {
    let tiny = ftslm_testkit::require_shared!("models/tiny-llama3");
    let tmp = tempfile::tempdir().unwrap();
    ftslm(tmp.path())
        .args(["merge", "--dtype", "f32", "--out", "merged", "--model"])
        .arg(&tiny)
        .arg("--adapter")
        .arg(tiny.join("adapter"))
        .assert()
        .success()
        .stdout(contains("14 projections merged"));
    let merged = tmp.path().join("merged");
    for file in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(merged.join(file).is_file(), "{file} missing");
    }
    // The same bytes as the library's merge, whose logits tests/merge.rs
    // compares with the base + adapter forward and PEFT's goldens.
    let library = tmp.path().join("library");
    ftslm_model::merge::merge_to_dir(
        &tiny,
        &tiny.join("adapter"),
        &library,
        ftslm_model::merge::MergedDtype::F32,
    )
    .unwrap();
    assert!(
        std::fs::read(merged.join("model.safetensors")).unwrap()
            == std::fs::read(library.join("model.safetensors")).unwrap()
    );
    // The merged directory is a model `model inspect` reads, f32 throughout.
    let report = json_of(ftslm(tmp.path()).args(["model", "inspect", "merged", "--json"]));
    assert_eq!(
        report["source"]["safetensors"]["dtypes"]["F32"],
        report["parameters"]["total"]
    );

    // bf16 by default; a second merge into the same --out is refused.
    ftslm(tmp.path())
        .args(["merge", "--out", "merged", "--model"])
        .arg(&tiny)
        .arg("--adapter")
        .arg(tiny.join("adapter"))
        .assert()
        .failure()
        .stderr(contains("--out merged is not empty"));
    ftslm(tmp.path())
        .args(["merge", "--out", "bf16", "--model"])
        .arg(&tiny)
        .arg("--adapter")
        .arg(tiny.join("adapter"))
        .assert()
        .success();
    let report = json_of(ftslm(tmp.path()).args(["model", "inspect", "bf16", "--json"]));
    assert_eq!(
        report["source"]["safetensors"]["dtypes"]["BF16"],
        report["parameters"]["total"]
    );
}

#[test]
fn merge_with_a_missing_adapter_names_it() {
    let tiny = ftslm_testkit::require_shared!("models/tiny-llama3");
    let tmp = tempfile::tempdir().unwrap();
    ftslm(tmp.path())
        .args([
            "merge",
            "--out",
            "merged",
            "--adapter",
            "no-adapter",
            "--model",
        ])
        .arg(&tiny)
        .assert()
        .failure()
        .stderr(contains("no-adapter"))
        .stderr(contains("adapter_config.json"));
    assert!(!tmp.path().join("merged").exists());
}

/// `model random-init`: a checkpoint the model commands load, never written
/// over without --force, refused before any work when an input is wrong.
#[test]
fn random_init_writes_a_loadable_checkpoint_and_keeps_an_existing_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 128,
        "tie_word_embeddings": false,
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let init = |extra: &[&str]| {
        let mut cmd = ftslm(dir.path());
        cmd.args(["model", "random-init", "--config", "config.json"]);
        if !extra.contains(&"--out") {
            cmd.args(["--out", "random"]);
        }
        cmd.args(extra);
        cmd.assert()
    };
    init(&[])
        .success()
        .stdout(contains("21 tensors").and(contains("seed 0")));
    let first = std::fs::read(dir.path().join("random/model.safetensors")).unwrap();
    init(&["--seed", "1"])
        .code(1)
        .stderr(contains("pass --force to replace it"));
    assert_eq!(
        std::fs::read(dir.path().join("random/model.safetensors")).unwrap(),
        first
    );
    init(&["--seed", "1", "--force"]).success();
    assert_ne!(
        std::fs::read(dir.path().join("random/model.safetensors")).unwrap(),
        first
    );

    let out = ftslm(dir.path())
        .args(["model", "inspect", "random", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspect: Value = serde_json::from_slice(&out.stdout).unwrap();
    // embedding and head 2·300·64, norms 5·64, per layer q, o 64·64, k, v
    // 32·64 and gate, up, down 160·64: 38,400 + 320 + 2·43,008
    let weights = &inspect["source"]["safetensors"];
    assert_eq!(weights["parameters"], 124_736, "{inspect}");
    assert_eq!(weights["dtypes"]["BF16"], 124_736, "{inspect}");

    init(&["--out", "other", "--tokenizer-from", "nowhere"])
        .code(1)
        .stderr(contains(
            "--tokenizer-from nowhere is not a model directory",
        ));
    init(&["--out", "config.json", "--force"])
        .code(1)
        .stderr(contains("is the same file as --config"));
    assert!(!dir.path().join("other").exists());
}
