//! AWS for ftslm. Today: Parameter Store as the source of the configuration's
//! `ssm_param` references ([`SsmParameterSource`], and [`load_config`], which
//! resolves a whole configuration against it in the configured region). Later:
//! Secrets Manager, EC2, SSM commands, S3 and CloudWatch Logs. Calls are bounded by
//! short timeouts so that a missing network or missing credentials turns into a
//! note and defaults, never a hang.

mod blocking;
mod params;

pub use params::{load_config, CloudError, SsmParameterSource, GET_PARAMETERS_BATCH};
