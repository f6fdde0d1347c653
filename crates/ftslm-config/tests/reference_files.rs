//! The original system's files load unchanged, and the commented copies in the
//! repository's `config/` say the same thing with every key written out.

use std::path::{Path, PathBuf};

use ftslm_config::{ConfigLoader, ResolvedConfig, Source};
use serde_json::json;

fn load_offline(dir: &Path) -> ResolvedConfig {
    ConfigLoader::new()
        .config_dir(Some(dir))
        .env_vars(Vec::<(String, String)>::new())
        .load()
        .unwrap()
}

fn repo_config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

#[test]
fn reference_files_load_unchanged_without_parameter_store() {
    let dir = ftslm_testkit::require_shared!("reference/config");
    let config = load_offline(&dir);

    let instance_type = config.get("aws.ec2.instance_type").unwrap();
    assert_eq!(instance_type.value, json!("g6.2xlarge"));
    // The value is the reference's `default:`, on line 17 of aws_config.yml.
    assert_eq!(
        instance_type.source,
        Source::File {
            path: dir.join("aws_config.yml"),
            line: 17
        }
    );
    assert_eq!(instance_type.source.to_string(), "aws_config.yml:17");
    assert_eq!(
        instance_type.ssm_param.as_deref(),
        Some("/fine-tune-slm/ec2/instance-type")
    );
    assert_eq!(config.str("aws.ebs.mount_path"), Some("/mnt/training"));
    assert_eq!(config.value("aws.ebs.size_gb"), Some(&json!(100)));
    assert_eq!(
        config.str("aws.s3.prefix"),
        Some("models/llama-3.1-8b-medical-ie")
    );
    // output.s3_prefix names the same parameter without a default: it takes the
    // default aws_config.yml gives that parameter.
    let prefix = config.get("output.s3_prefix").unwrap();
    assert_eq!(prefix.value, json!("models/llama-3.1-8b-medical-ie"));
    assert_eq!(prefix.source.to_string(), "aws_config.yml:39");

    let lr = config.get("training.learning_rate").unwrap();
    assert_eq!(lr.value, json!(2.0e-4));
    assert_eq!(lr.source.to_string(), "training_config.yml:32");
    assert_eq!(
        config.value("lora.target_modules"),
        Some(&json!(["q_proj", "v_proj", "k_proj", "o_proj"]))
    );
    // Our own keys are not in the original and keep their defaults.
    assert_eq!(config.get("training.seed").unwrap().source, Source::Default);

    let unset: Vec<&str> = config.required_unset().iter().map(|v| v.key()).collect();
    for key in [
        "aws.ec2.instance_id",
        "aws.ebs.volume_id",
        "aws.s3.bucket",
        "aws.ecr.registry",
        "output.hf_repo",
        "output.s3_bucket",
    ] {
        assert!(unset.contains(&key), "{key} missing from {unset:?}");
    }
    assert_eq!(unset.len(), 6, "{unset:?}");
    let hf = config.get("output.hf_repo").unwrap();
    assert_eq!(
        hf.description,
        "HuggingFace repo (e.g., username/llama-3.1-8b-medical-ie)"
    );
    assert_eq!(
        hf.ssm_param.as_deref(),
        Some("/fine-tune-slm/output/hf-repo")
    );
    assert!(
        config
            .notes()
            .iter()
            .any(|n| n.contains("Parameter Store lookups are off")),
        "{:?}",
        config.notes()
    );
}

#[test]
fn reference_files_give_typed_sections() {
    let dir = ftslm_testkit::require_shared!("reference/config");
    let config = load_offline(&dir);
    let training = config.training().unwrap();
    assert_eq!(training.gradient_accumulation_steps, 4);
    assert_eq!(training.max_steps_limit(), None);
    let lora = config.lora().unwrap();
    assert_eq!((lora.lora_alpha, lora.r), (32.0, 16));
    let aws = config.aws().unwrap();
    assert_eq!(aws.ec2.instance_id, None);
    assert_eq!(aws.ebs.size_gb, 100);
    assert_eq!(config.output().unwrap().hf_repo, None);
    assert_eq!(config.model().unwrap().name, "meta-llama/Meta-Llama-3.1-8B");
    config.dataset().unwrap();
    config.quantization().unwrap();
    assert_eq!(config.compute().unwrap().device, "auto");
}

#[test]
fn repository_examples_show_every_key_and_match_the_originals() {
    let dir = ftslm_testkit::require_shared!("reference/config");
    let reference = load_offline(&dir);
    let examples = load_offline(&repo_config_dir());
    assert_eq!(examples.files().len(), 2);
    for v in examples.values() {
        assert!(
            matches!(v.source, Source::File { .. }),
            "{} is not written out in config/ ({})",
            v.key(),
            v.source
        );
        assert_eq!(
            Some(&v.value),
            reference.value(v.key()),
            "{} differs from the original",
            v.key()
        );
    }
}

#[test]
fn table_and_json_show_values_sources_and_unset_keys() {
    let dir = ftslm_testkit::require_shared!("reference/config");
    let config = load_offline(&dir);
    let table = config.render_table();
    let row = table
        .lines()
        .find(|l| l.starts_with("aws.ec2.instance_type "))
        .unwrap();
    assert!(row.contains("g6.2xlarge"), "{row}");
    assert!(row.contains("aws_config.yml:17"), "{row}");
    assert!(row.contains("/fine-tune-slm/ec2/instance-type"), "{row}");
    assert!(table.contains("training.fp16*"), "{table}");
    assert!(
        table.contains("aws.ec2.instance_id [ssm /fine-tune-slm/ec2/instance-id]"),
        "{table}"
    );

    let doc = config.to_json();
    assert_eq!(doc["config"]["aws"]["ebs"]["mount_path"], "/mnt/training");
    assert_eq!(doc["keys"]["training.seed"]["source"], "default");
    assert_eq!(doc["keys"]["training.fp16"]["used"], false);
    assert_eq!(
        doc["keys"]["model.name"]["origin"]["path"],
        dir.join("training_config.yml").display().to_string()
    );
    assert!(doc["required_unset"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["key"] == "aws.ecr.registry" && u["env"] == "FTSLM_AWS__ECR__REGISTRY"));
}
