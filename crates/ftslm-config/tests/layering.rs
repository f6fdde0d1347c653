//! Layer order and the errors a user sees, on config files written to a temporary
//! folder and an injected environment.

use std::collections::BTreeMap;
use std::path::Path;

use ftslm_config::{
    ConfigError, ConfigLoader, Origin, ParameterSource, ParameterSourceError, Source,
};
use serde_json::json;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

const TRAINING: &str = "\
training:
  learning_rate: 3.0e-4
  warmup_steps: 50
  max_steps: 10
";

#[test]
fn later_layers_win_default_file_env_cli() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "training.yml", TRAINING);
    let config = ConfigLoader::new()
        .config_dir(Some(dir.path()))
        .env_vars([
            ("FTSLM_TRAINING__WARMUP_STEPS", "7"),
            ("FTSLM_TRAINING__MAX_STEPS", "20"),
            // Not a config variable: no `__` after the prefix.
            ("FTSLM_SHARED", "/elsewhere"),
            ("PATH", "/bin"),
        ])
        .sets(&["training.max_steps=30"])
        .load()
        .unwrap();

    let seed = config.get("training.seed").unwrap();
    assert_eq!((&seed.value, &seed.source), (&json!(42), &Source::Default));

    let lr = config.get("training.learning_rate").unwrap();
    assert_eq!(lr.value, json!(3.0e-4));
    assert_eq!(
        lr.source,
        Source::File {
            path: dir.path().join("training.yml"),
            line: 2
        }
    );

    let warmup = config.get("training.warmup_steps").unwrap();
    assert_eq!(warmup.value, json!(7));
    assert_eq!(warmup.source.to_string(), "env");

    let steps = config.get("training.max_steps").unwrap();
    assert_eq!(steps.value, json!(30));
    assert!(steps.value.is_i64());
    assert_eq!(steps.source, Source::Cli);
    assert_eq!(config.training().unwrap().max_steps_limit(), Some(30));
}

#[test]
fn env_names_are_case_insensitive_and_nest_with_double_underscore() {
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigLoader::new()
        .config_dir(Some(dir.path()))
        .env_vars([
            ("FTSLM_AWS__EC2__INSTANCE_ID", "i-0abc"),
            ("ftslm_training__learning_rate", "1e-4"),
        ])
        .sets(&["lora.target_modules=[q_proj,v_proj]"])
        .load()
        .unwrap();
    assert_eq!(config.str("aws.ec2.instance_id"), Some("i-0abc"));
    assert_eq!(config.value("training.learning_rate"), Some(&json!(1e-4)));
    assert_eq!(config.lora().unwrap().target_modules, ["q_proj", "v_proj"]);
    assert!(!config
        .required_unset()
        .iter()
        .any(|v| v.key() == "aws.ec2.instance_id"));
}

#[test]
fn unknown_yaml_key_names_file_line_and_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "training.yml",
        "training:\n  warmup_steps: 5\n  learnig_rate: 1e-4\n",
    );
    let err = ConfigLoader::new()
        .config_dir(Some(dir.path()))
        .env_vars(no_env())
        .load()
        .unwrap_err();
    match &err {
        ConfigError::UnknownKey {
            key,
            origin,
            suggestion,
        } => {
            assert_eq!(key, "training.learnig_rate");
            assert_eq!(
                origin,
                &Origin::File {
                    path: dir.path().join("training.yml"),
                    line: 3
                }
            );
            assert_eq!(suggestion.as_deref(), Some("training.learning_rate"));
        }
        other => panic!("{other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("training.yml:3"), "{msg}");
    assert!(
        msg.contains("did you mean `training.learning_rate`"),
        "{msg}"
    );
}

#[test]
fn wrong_type_names_key_expected_found_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "aws.yml",
        "aws:\n  ebs:\n    size_gb:\n      ssm_param: /x\n      default: big\n",
    );
    let err = ConfigLoader::new()
        .config_dir(Some(dir.path()))
        .env_vars(no_env())
        .load()
        .unwrap_err();
    let msg = err.to_string();
    match err {
        ConfigError::WrongType {
            key,
            expected,
            found,
            origin,
        } => {
            assert_eq!(key, "aws.ebs.size_gb");
            assert_eq!(expected, "a positive integer");
            assert_eq!(found, "the string \"big\"");
            assert_eq!(
                origin,
                Origin::File {
                    path: dir.path().join("aws.yml"),
                    line: 5
                }
            );
        }
        other => panic!("{other}"),
    }
    assert!(msg.contains("aws.yml:5"), "{msg}");

    write(dir.path(), "aws.yml", "");
    write(dir.path(), "training.yml", "lora:\n  use_rslora: yes\n");
    let msg = ConfigLoader::new()
        .config_dir(Some(dir.path()))
        .env_vars(no_env())
        .load()
        .unwrap_err()
        .to_string();
    assert!(msg.contains("training.yml:2"), "{msg}");
    assert!(
        msg.contains("`lora.use_rslora` expects true or false, found the string \"yes\""),
        "{msg}"
    );
}

#[test]
fn unknown_set_and_env_keys_are_errors_with_suggestions() {
    let dir = tempfile::tempdir().unwrap();
    let err = ConfigLoader::new()
        .config_dir(Some(dir.path()))
        .env_vars(no_env())
        .sets(&["training.learnig_rate=1e-4"])
        .load()
        .unwrap_err();
    assert!(
        matches!(&err, ConfigError::UnknownKey { suggestion: Some(s), origin: Origin::Cli { .. }, .. }
            if s == "training.learning_rate"),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with("--set training.learnig_rate=1e-4: unknown key"));

    let err = ConfigLoader::new()
        .config_dir(Some(dir.path()))
        .env_vars([("FTSLM_TRAINING__LEARNIG_RATE", "1e-4")])
        .load()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("did you mean `FTSLM_TRAINING__LEARNING_RATE`"),
        "{err}"
    );

    let err = ConfigLoader::new()
        .config_dir(Some(dir.path()))
        .env_vars(no_env())
        .sets(&["training.max_steps"])
        .load()
        .unwrap_err();
    assert!(matches!(err, ConfigError::BadSetArgument { .. }), "{err}");

    let err = ConfigLoader::new()
        .config_dir(Some(dir.path()))
        .env_vars(no_env())
        .sets(&["training.max_steps=ten"])
        .load()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("`training.max_steps` expects an integer >= -1, found the string \"ten\""),
        "{err}"
    );
}

#[test]
fn missing_default_dir_is_a_note_but_a_named_missing_dir_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = ConfigLoader::new()
        .config_dir(Some(&missing))
        .env_vars(no_env())
        .load()
        .unwrap_err();
    assert!(matches!(err, ConfigError::ConfigDirMissing { .. }), "{err}");

    // The default `config/` is relative to the working directory, which for
    // tests is this crate's folder, where there is none.
    let config = ConfigLoader::new().env_vars(no_env()).load().unwrap();
    assert!(config.files().is_empty());
    assert!(
        config.notes()[0].contains("no config directory config/"),
        "{:?}",
        config.notes()
    );
    assert_eq!(config.str("aws.ec2.instance_type"), Some("g6.2xlarge"));

    let config = ConfigLoader::new()
        .config_dir(Some(dir.path()))
        .env_vars(no_env())
        .load()
        .unwrap();
    assert!(config
        .notes()
        .iter()
        .any(|n| n.contains("no training config")));
    assert!(config.notes().iter().any(|n| n.contains("no AWS config")));
}

#[test]
fn two_names_for_one_file_or_one_key_in_two_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "training.yml", "model:\n  name: a\n");
    write(dir.path(), "training_config.yml", "model:\n  name: b\n");
    let err = ConfigLoader::new()
        .config_dir(Some(dir.path()))
        .env_vars(no_env())
        .load()
        .unwrap_err();
    assert!(
        matches!(err, ConfigError::AmbiguousConfigFile { .. }),
        "{err}"
    );

    std::fs::remove_file(dir.path().join("training_config.yml")).unwrap();
    write(dir.path(), "aws.yml", "model:\n  name: c\n");
    let err = ConfigLoader::new()
        .config_dir(Some(dir.path()))
        .env_vars(no_env())
        .load()
        .unwrap_err();
    assert!(
        matches!(err, ConfigError::DuplicateKey { ref key, .. } if key == "model.name"),
        "{err}"
    );
}

#[test]
fn parameters_replace_defaults_and_keys_sharing_a_parameter_agree() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "training.yml",
        "output:\n  s3_bucket:\n    ssm_param: /fine-tune-slm/s3/bucket\n",
    );
    let store: BTreeMap<String, String> = [
        ("/fine-tune-slm/s3/bucket", "my-models"),
        ("/fine-tune-slm/ebs/size-gb", "250"),
        ("/fine-tune-slm/ec2/instance-type", "g6.xlarge"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = ConfigLoader::new()
        .config_dir(Some(dir.path()))
        .env_vars([("FTSLM_AWS__EC2__INSTANCE_TYPE", "g6.2xlarge")])
        .parameter_source(Some(&store))
        .load()
        .unwrap();
    for key in ["output.s3_bucket", "aws.s3.bucket"] {
        let v = config.get(key).unwrap();
        assert_eq!(v.value, json!("my-models"), "{key}");
        assert_eq!(
            v.source.to_string(),
            "ssm:/fine-tune-slm/s3/bucket",
            "{key}"
        );
    }
    assert_eq!(config.value("aws.ebs.size_gb"), Some(&json!(250)));
    // The environment wins over Parameter Store.
    assert_eq!(
        config
            .get("aws.ec2.instance_type")
            .unwrap()
            .source
            .to_string(),
        "env"
    );
    assert_eq!(
        config.get("aws.ebs.mount_path").unwrap().source,
        Source::Default
    );
    assert!(config.notes().iter().any(|n| n.contains("no value for")));
}

#[test]
fn conflicting_defaults_for_one_parameter_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "training.yml",
        "output:\n  s3_prefix:\n    ssm_param: /p\n    default: a\n",
    );
    write(
        dir.path(),
        "aws.yml",
        "aws:\n  s3:\n    prefix:\n      ssm_param: /p\n      default: b\n",
    );
    let err = ConfigLoader::new()
        .config_dir(Some(dir.path()))
        .env_vars(no_env())
        .load()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("training.yml:4") && msg.contains("aws.yml:5"),
        "{msg}"
    );
}

struct Unreachable;

impl ParameterSource for Unreachable {
    fn fetch(&self, _: &[String]) -> Result<BTreeMap<String, String>, ParameterSourceError> {
        Err(ParameterSourceError::new("connection refused"))
    }
}

#[test]
fn an_unreachable_store_falls_back_to_defaults_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigLoader::new()
        .config_dir(Some(dir.path()))
        .env_vars(no_env())
        .parameter_source(Some(&Unreachable))
        .load()
        .unwrap();
    assert_eq!(config.str("aws.region"), Some("us-east-1"));
    assert!(config
        .notes()
        .contains(&"SSM not reachable (connection refused); using defaults".to_string()));
}

#[test]
fn a_reference_without_default_or_value_blocks_typed_access() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "training.yml",
        "training:\n  learning_rate:\n    ssm_param: /lr\n    description: tuned elsewhere\n",
    );
    let config = ConfigLoader::new()
        .config_dir(Some(dir.path()))
        .env_vars(no_env())
        .load()
        .unwrap();
    assert!(config
        .required_unset()
        .iter()
        .any(|v| v.key() == "training.learning_rate"));
    let err = config.training().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("`training.learning_rate` is required but not set (tuned elsewhere)"),
        "{msg}"
    );
    assert!(
        msg.contains("/lr") && msg.contains("FTSLM_TRAINING__LEARNING_RATE"),
        "{msg}"
    );
}
