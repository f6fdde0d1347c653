//! config.json in transformers 4 and 5 forms, and generation_config.json.

use std::path::Path;

use ftslm_model::{GenerationConfig, LlamaConfig, ModelError, RopeScaling};
use serde_json::{json, Value};

fn tiny_v4(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn parse(value: &Value) -> Result<LlamaConfig, ModelError> {
    LlamaConfig::from_json_str(&value.to_string(), Path::new("test/config.json"))
}

#[test]
fn transformers_4_config_of_the_tiny_model() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let config = LlamaConfig::from_file(&dir.join("config.json")).unwrap();
    assert_eq!(config.hidden_size, 64);
    assert_eq!(config.intermediate_size, 160);
    assert_eq!(config.num_hidden_layers, 2);
    assert_eq!(
        (config.num_attention_heads, config.num_key_value_heads),
        (4, 2)
    );
    assert_eq!(config.head_dim, 16);
    assert_eq!(config.vocab_size, 49152);
    assert_eq!(config.rms_norm_eps, 1e-5);
    assert!(!config.tie_word_embeddings);
    assert_eq!(config.rope.theta, 500000.0);
    assert_eq!(
        config.rope.scaling,
        RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192
        }
    );
    assert_eq!(config.eos_token_ids, vec![2]);
    assert_eq!(
        (config.q_dim(), config.kv_dim(), config.heads_per_kv_head()),
        (64, 32, 2)
    );
}

#[test]
fn transformers_5_rope_parameters_parse_to_the_same_config() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let v4 = tiny_v4(&dir);
    let mut v5 = v4.clone();
    let object = v5.as_object_mut().unwrap();
    let mut rope = object.remove("rope_scaling").unwrap();
    rope["rope_theta"] = object.remove("rope_theta").unwrap();
    object.insert("rope_parameters".into(), rope);
    object.insert("dtype".into(), object["torch_dtype"].clone());
    object.remove("torch_dtype");

    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("config.json");
    std::fs::write(&path, serde_json::to_string_pretty(&v5).unwrap()).unwrap();
    let from_v5 = LlamaConfig::from_file(&path).unwrap();
    let from_v4 = LlamaConfig::from_file(&dir.join("config.json")).unwrap();
    assert_eq!(from_v5, from_v4);

    // Plain RoPE in the v5 form.
    object_set(
        &mut v5,
        "rope_parameters",
        json!({"rope_type": "default", "rope_theta": 10000.0}),
    );
    let plain = parse(&v5).unwrap();
    assert_eq!(plain.rope.scaling, RopeScaling::None);
    assert_eq!(plain.rope.theta, 10000.0);
}

fn object_set(v: &mut Value, key: &str, value: Value) {
    v.as_object_mut().unwrap().insert(key.into(), value);
}

#[test]
fn smollm2_config_has_plain_rope_and_tied_embeddings() {
    let dir = ftslm_testkit::require_shared!("models/smollm2-135m-instruct");
    let config = LlamaConfig::from_file(&dir.join("config.json")).unwrap();
    assert!(config.tie_word_embeddings);
    assert_eq!(config.rope.scaling, RopeScaling::None);
    assert_eq!(config.rope.theta, 100000.0);
    assert_eq!(
        (config.num_attention_heads, config.num_key_value_heads),
        (9, 3)
    );
    assert_eq!(config.head_dim, 64);
}

#[test]
fn defaults_apply_to_omitted_keys() {
    let minimal = json!({
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 8, "vocab_size": 100,
        "rope_scaling": {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        "head_dim": null, "eos_token_id": [128001, 128008, 128009]
    });
    let config = parse(&minimal).unwrap();
    assert_eq!(config.head_dim, 8, "head_dim defaults to hidden / heads");
    assert_eq!(config.num_key_value_heads, 8, "no GQA unless stated");
    assert_eq!(config.rms_norm_eps, 1e-6);
    assert_eq!(config.rope.theta, 10000.0);
    assert!(
        matches!(config.rope.scaling, RopeScaling::Llama3 { .. }),
        "`type` is read as rope_type"
    );
    assert!(!config.tie_word_embeddings);
    assert_eq!(config.eos_token_ids, vec![128001, 128008, 128009]);
}

type ConfigEdit = dyn Fn(&mut serde_json::Map<String, Value>);

#[test]
fn errors_name_the_file_and_the_key() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let v4 = tiny_v4(&dir);
    let cases: Vec<(Box<ConfigEdit>, &str)> = vec![
        (
            Box::new(|o| {
                o.remove("hidden_size");
            }),
            "`hidden_size` is missing",
        ),
        (
            Box::new(|o| {
                o.insert("num_hidden_layers".into(), json!("two"));
            }),
            "`num_hidden_layers` must be a non-negative integer",
        ),
        (
            Box::new(|o| {
                o.insert("num_key_value_heads".into(), json!(3));
            }),
            "`num_key_value_heads` (3) must divide",
        ),
        (
            Box::new(|o| {
                o["rope_scaling"]["rope_type"] = json!("yarn");
            }),
            "`rope_scaling.rope_type` `yarn` is not supported",
        ),
        (
            Box::new(|o| {
                o["rope_scaling"].as_object_mut().unwrap().remove("factor");
            }),
            "`rope_scaling.factor` is missing",
        ),
        (
            Box::new(|o| {
                o.insert("hidden_act".into(), json!("gelu"));
            }),
            "hidden_act is `gelu`",
        ),
        (
            Box::new(|o| {
                o.insert("attention_bias".into(), json!(true));
            }),
            "attention_bias is true",
        ),
        (
            Box::new(|o| {
                o.insert("model_type".into(), json!("gpt2"));
            }),
            "model_type is `gpt2`",
        ),
    ];
    for (edit, expected) in cases {
        let mut broken = v4.clone();
        edit(broken.as_object_mut().unwrap());
        let message = parse(&broken).unwrap_err().to_string();
        assert!(message.starts_with("test/config.json"), "{message}");
        assert!(
            message.contains(expected),
            "expected `{expected}` in: {message}"
        );
    }
    let missing = LlamaConfig::from_file(Path::new("/nonexistent/config.json")).unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/config.json"),
        "{missing}"
    );
    let not_json = LlamaConfig::from_json_str("{", Path::new("x/config.json")).unwrap_err();
    assert!(matches!(not_json, ModelError::Json { .. }));
}

#[test]
fn generation_config_end_tokens_int_or_list() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let config = LlamaConfig::from_file(&dir.join("config.json")).unwrap();
    let generation = GenerationConfig::from_file(&dir.join("generation_config.json")).unwrap();
    assert_eq!(generation.eos_token_ids, vec![2]);
    assert_eq!(generation.bos_token_id, Some(1));

    let temp = tempfile::tempdir().unwrap();
    std::fs::write(
        temp.path().join("generation_config.json"),
        r#"{"bos_token_id": 128000, "eos_token_id": [128001, 128009]}"#,
    )
    .unwrap();
    assert_eq!(
        GenerationConfig::end_token_ids(temp.path(), &config).unwrap(),
        vec![128001, 128009]
    );
    // Without generation_config.json the config's eos ids apply.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        GenerationConfig::end_token_ids(empty.path(), &config).unwrap(),
        vec![2]
    );

    std::fs::write(
        temp.path().join("generation_config.json"),
        r#"{"eos_token_id": "</s>"}"#,
    )
    .unwrap();
    let err = GenerationConfig::from_file(&temp.path().join("generation_config.json"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("eos_token_id") && err.contains("generation_config.json"),
        "{err}"
    );
}
