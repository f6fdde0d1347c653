//! Typed views of the resolved sections for the rest of the program. Field names
//! are the YAML keys; the structs reject keys they do not know so that the schema
//! and these types cannot drift apart unnoticed (a test loads every section).

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::resolved::ResolvedConfig;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    pub name: String,
}

/// Which tokens the loss covers (`dataset.loss_on`); the trainer, the bench
/// and the command line all use this one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LossOn {
    /// The assistant answer and the end-of-turn token (the answer mask).
    Answer,
    /// Every token of an example but its first, which nothing predicts.
    All,
}

impl LossOn {
    pub const NAMES: [&'static str; 2] = ["answer", "all"];

    /// The YAML spelling.
    pub fn name(self) -> &'static str {
        match self {
            LossOn::Answer => "answer",
            LossOn::All => "all",
        }
    }

    /// The value of a YAML spelling.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "answer" => Some(LossOn::Answer),
            "all" => Some(LossOn::All),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSettings {
    pub train_path: PathBuf,
    pub validation_path: PathBuf,
    pub max_seq_length: usize,
    pub packing: bool,
    pub loss_on: LossOn,
    pub max_eval_samples: Option<usize>,
    pub system_prompt: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSettings {
    pub r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub target_modules: Vec<String>,
    pub bias: String,
    pub task_type: String,
    pub use_rslora: bool,
}

/// `training.lr_scheduler_type`, as transformers' `get_scheduler` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedulerType {
    /// Linear warmup, then half a cosine wave down to 0 at the last step.
    Cosine,
    /// Linear warmup, then linear decay to 0 at the last step.
    Linear,
    /// Linear warmup, then constant (transformers' `constant_with_warmup`;
    /// with `warmup_steps: 0` it is plain `constant`).
    Constant,
}

impl LrSchedulerType {
    pub fn name(self) -> &'static str {
        match self {
            LrSchedulerType::Linear => "linear",
            LrSchedulerType::Cosine => "cosine",
            LrSchedulerType::Constant => "constant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSettings {
    pub output_dir: PathBuf,
    pub num_train_epochs: f64,
    pub per_device_train_batch_size: usize,
    pub per_device_eval_batch_size: usize,
    pub gradient_accumulation_steps: usize,
    pub learning_rate: f64,
    pub warmup_steps: u64,
    pub logging_steps: u64,
    pub save_steps: u64,
    pub eval_steps: u64,
    pub save_total_limit: Option<usize>,
    pub fp16: bool,
    pub optim: String,
    pub evaluation_strategy: String,
    pub load_best_model_at_end: bool,
    pub metric_for_best_model: String,
    pub greater_is_better: bool,
    pub gradient_checkpointing: bool,
    pub lr_scheduler_type: LrSchedulerType,
    pub max_grad_norm: f64,
    pub weight_decay: f64,
    pub seed: u64,
    pub early_stopping_patience: Option<u64>,
    pub max_steps: i64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
}

impl TrainingSettings {
    /// The step limit, or `None` when `max_steps` is -1 (train `num_train_epochs`).
    pub fn max_steps_limit(&self) -> Option<u64> {
        u64::try_from(self.max_steps).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantizationBase {
    /// Keep the weights as the checkpoint stores them.
    Auto,
    Nf4,
    Gguf,
    F32,
    Bf16,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizationSettings {
    pub load_in_4bit: bool,
    pub bnb_4bit_compute_dtype: String,
    pub bnb_4bit_quant_type: String,
    pub bnb_4bit_use_double_quant: bool,
    pub base: QuantizationBase,
}

/// Where a command computes (`compute.device`, spelled as `--device`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeSettings {
    pub device: String,
}

/// Where results are published; ids kept in Parameter Store may be unset.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSettings {
    pub s3_bucket: Option<String>,
    pub s3_prefix: String,
    pub hf_repo: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    pub region: String,
    pub ec2: Ec2Settings,
    pub ebs: EbsSettings,
    pub s3: S3Settings,
    pub ecr: EcrSettings,
    pub secrets_manager: SecretsManagerSettings,
    pub cloudwatch: CloudWatchSettings,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ec2Settings {
    pub instance_id: Option<String>,
    pub instance_type: String,
    pub hourly_price_usd: Option<f64>,
    pub idle_shutdown_minutes: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EbsSettings {
    pub volume_id: Option<String>,
    pub mount_path: String,
    pub volume_type: String,
    pub size_gb: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    pub bucket: Option<String>,
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EcrSettings {
    pub repository: String,
    pub registry: Option<String>,
    pub image_tag: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsManagerSettings {
    pub hf_token_secret: String,
    pub aws_credentials_secret: String,
    pub docker_token_secret: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchSettings {
    pub log_group: String,
    pub log_stream_prefix: String,
}

impl ResolvedConfig {
    pub fn model(&self) -> Result<ModelSettings, ConfigError> {
        self.typed("model")
    }

    pub fn dataset(&self) -> Result<DatasetSettings, ConfigError> {
        self.typed("dataset")
    }

    pub fn lora(&self) -> Result<LoraSettings, ConfigError> {
        self.typed("lora")
    }

    pub fn training(&self) -> Result<TrainingSettings, ConfigError> {
        self.typed("training")
    }

    pub fn quantization(&self) -> Result<QuantizationSettings, ConfigError> {
        self.typed("quantization")
    }

    pub fn compute(&self) -> Result<ComputeSettings, ConfigError> {
        self.typed("compute")
    }

    pub fn output(&self) -> Result<OutputSettings, ConfigError> {
        self.typed("output")
    }

    pub fn aws(&self) -> Result<AwsSettings, ConfigError> {
        self.typed("aws")
    }

    /// A section as `T`. Keys without a built-in default (resource ids) are
    /// `Option`s in `T`; any other key left without a value (a reference whose
    /// parameter is missing and that declares no default) is reported here.
    fn typed<T: DeserializeOwned>(&self, section: &str) -> Result<T, ConfigError> {
        if let Some(v) = self
            .required_unset()
            .into_iter()
            .find(|v| v.def.section() == section && !v.def.is_required())
        {
            return Err(ConfigError::NotSet {
                key: v.def.key.to_string(),
                description: v.description.clone(),
                ssm_param: v.ssm_param.clone(),
                env_var: v.def.env_var(),
            });
        }
        serde_json::from_value(self.section_json(section)).map_err(|e| ConfigError::Section {
            section: section.to_string(),
            reason: e.to_string(),
        })
    }
}
