//! The AWS resources one configuration points at, with the required ones
//! checked only when a command needs them: `cloud status` needs the instance,
//! not the bucket.

use ftslm_config::{AwsSettings, ResolvedConfig};

use super::AwsError;

/// The configured resources, as resolved from the YAML files, Parameter Store,
/// the environment and `--set`.
#[derive(Debug, Clone)]
pub struct CloudTarget {
    pub settings: AwsSettings,
    /// `output.hf_repo`, for publishing.
    pub hf_repo: Option<String>,
    ssm_params: Vec<(&'static str, String)>,
}

impl CloudTarget {
    pub fn from_config(config: &ResolvedConfig) -> Result<CloudTarget, ftslm_config::ConfigError> {
        let settings = config.aws()?;
        let output = config.output()?;
        let ssm_params = config
            .values()
            .iter()
            .filter_map(|v| v.ssm_param.clone().map(|p| (v.key(), p)))
            .collect();
        Ok(CloudTarget {
            settings,
            hf_repo: output.hf_repo,
            ssm_params,
        })
    }

    /// A target built in code (tests, tools embedding the library).
    pub fn new(settings: AwsSettings) -> CloudTarget {
        CloudTarget {
            settings,
            hf_repo: None,
            ssm_params: Vec::new(),
        }
    }

    pub fn region(&self) -> &str {
        &self.settings.region
    }

    pub fn instance_id(&self) -> Result<&str, AwsError> {
        self.require(
            "aws.ec2.instance_id",
            self.settings.ec2.instance_id.as_deref(),
        )
    }

    pub fn volume_id(&self) -> Result<&str, AwsError> {
        self.require("aws.ebs.volume_id", self.settings.ebs.volume_id.as_deref())
    }

    pub fn bucket(&self) -> Result<&str, AwsError> {
        self.require("aws.s3.bucket", self.settings.s3.bucket.as_deref())
    }

    /// The run prefix without slashes at either end.
    pub fn prefix(&self) -> &str {
        self.settings.s3.prefix.trim_matches('/')
    }

    pub fn registry(&self) -> Result<&str, AwsError> {
        self.require("aws.ecr.registry", self.settings.ecr.registry.as_deref())
    }

    /// `REGISTRY/REPOSITORY:TAG`.
    pub fn image(&self) -> Result<String, AwsError> {
        Ok(format!(
            "{}/{}:{}",
            self.registry()?.trim_end_matches('/'),
            self.settings.ecr.repository,
            self.settings.ecr.image_tag
        ))
    }

    fn require<'a>(&self, key: &'static str, value: Option<&'a str>) -> Result<&'a str, AwsError> {
        match value {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(AwsError::NotConfigured {
                key,
                ssm_param: self
                    .ssm_params
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, p)| p.clone())
                    .unwrap_or_else(|| "not bound".to_string()),
            }),
        }
    }
}
