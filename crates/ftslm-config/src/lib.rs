//! ftslm's configuration: the schema of every key (those of the original
//! `training_config.yml` and `aws_config.yml`, read unchanged, plus ftslm's own),
//! and the layered loader that resolves each key from built-in defaults, the YAML
//! files, Parameter Store (through the [`ParameterSource`] trait, implemented for
//! AWS in `ftslm-cloud`), `FTSLM_<SECTION>__<KEY>` variables and `--set`, keeping
//! for every value where it came from. Unknown keys and values of the wrong type
//! are errors that name the file and line and suggest the fix.

#![forbid(unsafe_code)]

mod error;
mod file;
mod keys;
mod loader;
mod parameters;
mod resolved;
pub mod schema;
mod settings;
mod value;

pub use error::{ConfigError, Origin};
pub use keys::DEFAULT_SYSTEM_PROMPT;
pub use loader::{ConfigLoader, AWS_FILE_NAMES, DEFAULT_CONFIG_DIR, TRAINING_FILE_NAMES};
pub use parameters::{ParameterSource, ParameterSourceError};
pub use resolved::{ResolvedConfig, ResolvedValue, Source};
pub use schema::{KeyDef, Lit, ValueKind, SCHEMA};
pub use settings::{
    AwsSettings, CloudWatchSettings, ComputeSettings, DatasetSettings, EbsSettings, Ec2Settings,
    EcrSettings, LoraSettings, LossOn, LrSchedulerType, ModelSettings, OutputSettings,
    QuantizationBase, QuantizationSettings, S3Settings, SecretsManagerSettings, TrainingSettings,
};
