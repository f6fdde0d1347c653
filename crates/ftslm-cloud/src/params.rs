//! Parameter Store as a [`ParameterSource`]: every referenced name is fetched in
//! one batch of GetParameters calls and kept in memory for the rest of the run.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::SdkConfig;
use ftslm_config::{
    ConfigError, ConfigLoader, ParameterSource, ParameterSourceError, ResolvedConfig,
};
use thiserror::Error;

use crate::aws::{Aws, AwsError, CallLimits};

/// GetParameters accepts at most this many names per call.
pub const GET_PARAMETERS_BATCH: usize = 10;

/// A configuration load must not hang on a dead network: a refused or silent
/// endpoint becomes a note within a few seconds.
const LOAD_LIMITS: CallLimits = CallLimits {
    connect: Duration::from_secs(2),
    attempt: Duration::from_secs(3),
    operation: Duration::from_secs(5),
    max_attempts: 2,
    initial_backoff: Duration::from_millis(200),
};

#[derive(Debug, Error)]
pub enum CloudError {
    #[error("cannot start the async runtime for AWS calls: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("loading the AWS configuration (region, credentials, endpoint) failed unexpectedly")]
    SdkConfig,
}

impl From<AwsError> for CloudError {
    fn from(e: AwsError) -> CloudError {
        match e {
            AwsError::Runtime(io) => CloudError::Runtime(io),
            _ => CloudError::SdkConfig,
        }
    }
}

/// Parameter Store through the AWS SDK, with short timeouts and few retries.
pub struct SsmParameterSource {
    aws: Aws,
    /// name -> value, `None` for names Parameter Store does not have.
    cache: Mutex<BTreeMap<String, Option<String>>>,
}

impl SsmParameterSource {
    /// A client configured like the AWS CLI (credential chain, profile,
    /// `AWS_ENDPOINT_URL`), in `region`.
    pub fn from_environment(region: &str) -> Result<Self, CloudError> {
        Ok(Self::with(Aws::from_environment_with(region, LOAD_LIMITS)?))
    }

    /// A client from an explicit SDK configuration (endpoint, credentials, region),
    /// as tests against a local emulator need. ftslm's timeouts still apply.
    pub fn from_sdk_config(sdk_config: &SdkConfig) -> Result<Self, CloudError> {
        Ok(Self::with(Aws::from_sdk_config_with(
            sdk_config.clone(),
            LOAD_LIMITS,
        )?))
    }

    fn with(aws: Aws) -> Self {
        SsmParameterSource {
            aws,
            cache: Mutex::new(BTreeMap::new()),
        }
    }

    /// The endpoint requests go to when one is configured (e.g. a local emulator).
    pub fn endpoint_url(&self) -> Option<&str> {
        self.aws.endpoint_url()
    }

    pub fn region(&self) -> Option<&str> {
        self.aws.region()
    }

    async fn get_parameters(
        client: &aws_sdk_ssm::Client,
        names: &[String],
    ) -> Result<BTreeMap<String, String>, ParameterSourceError> {
        let mut found = BTreeMap::new();
        for batch in names.chunks(GET_PARAMETERS_BATCH) {
            let output = client
                .get_parameters()
                .set_names(Some(batch.to_vec()))
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| ParameterSourceError::new(error_chain(&e)))?;
            for parameter in output.parameters() {
                if let (Some(name), Some(value)) = (parameter.name(), parameter.value()) {
                    found.insert(name.to_string(), value.to_string());
                }
            }
        }
        Ok(found)
    }
}

impl ParameterSource for SsmParameterSource {
    fn fetch(&self, names: &[String]) -> Result<BTreeMap<String, String>, ParameterSourceError> {
        let mut cache = self.cache.lock().map_err(|_| {
            ParameterSourceError::new("parameter cache poisoned by an earlier panic")
        })?;
        let mut unknown: Vec<String> = names
            .iter()
            .filter(|n| !cache.contains_key(*n))
            .cloned()
            .collect();
        unknown.sort();
        unknown.dedup();
        if !unknown.is_empty() {
            let client = self.aws.ssm();
            let found = self
                .aws
                .block_on(Self::get_parameters(&client, &unknown))
                .map_err(|e| ParameterSourceError::new(e.to_string()))??;
            for name in unknown {
                let value = found.get(&name).cloned();
                cache.insert(name, value);
            }
        }
        Ok(names
            .iter()
            .filter_map(|n| {
                cache
                    .get(n)
                    .cloned()
                    .flatten()
                    .map(|value| (n.clone(), value))
            })
            .collect())
    }
}

/// The SDK's error and its causes on one line, short enough for a note: the top
/// level alone ("dispatch failure") does not say what to fix.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    const MAX: usize = 240;
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let part = e.to_string().replace('\n', " ");
        // Wrappers often repeat their cause's message.
        if !parts.last().is_some_and(|last| last.contains(&part)) {
            parts.push(part);
        }
        current = e.source();
    }
    let text = parts.join(": ");
    if text.chars().count() <= MAX {
        text
    } else {
        let head: String = text.chars().take(MAX - 1).collect();
        format!("{head}…")
    }
}

/// A store that could not even be set up: every load notes why and uses defaults.
struct Unavailable(ParameterSourceError);

impl ParameterSource for Unavailable {
    fn fetch(&self, _: &[String]) -> Result<BTreeMap<String, String>, ParameterSourceError> {
        Err(self.0.clone())
    }
}

/// Loads the configuration, resolving `ssm_param` references from Parameter
/// Store when `use_parameter_store` (i.e. without `--no-ssm`). Parameter Store is
/// asked in the region the other layers give `aws.region` (default us-east-1),
/// with the standard credential chain and `AWS_ENDPOINT_URL` honoured. Without
/// network or credentials the result carries the note "SSM not reachable (…);
/// using defaults".
pub fn load_config(
    loader: &ConfigLoader<'_>,
    use_parameter_store: bool,
) -> Result<ResolvedConfig, ConfigError> {
    if !use_parameter_store {
        return loader.clone().parameter_source(None).load();
    }
    let region = loader.region_without_parameters()?;
    match SsmParameterSource::from_environment(&region) {
        Ok(source) => loader.clone().parameter_source(Some(&source)).load(),
        Err(e) => {
            let unavailable = Unavailable(ParameterSourceError::new(e.to_string()));
            loader.clone().parameter_source(Some(&unavailable)).load()
        }
    }
}
