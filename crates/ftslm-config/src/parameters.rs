//! Where `ssm_param` references are looked up. The loader only knows this trait;
//! `ftslm-cloud` implements it with AWS Systems Manager Parameter Store, and an
//! in-memory map implements it for dry runs and tests of the layering.

use std::collections::BTreeMap;

use thiserror::Error;

/// The store could not be asked at all (no network, no credentials, access denied,
/// timeout). The loader then falls back to defaults and says so in a note.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{reason}")]
pub struct ParameterSourceError {
    pub reason: String,
}

impl ParameterSourceError {
    pub fn new(reason: impl Into<String>) -> Self {
        ParameterSourceError {
            reason: reason.into(),
        }
    }
}

/// A key-value store of parameters, asked once per configuration load with every
/// name the configuration references.
pub trait ParameterSource {
    /// The values of those `names` that exist; names the store does not have are
    /// simply absent from the result.
    fn fetch(&self, names: &[String]) -> Result<BTreeMap<String, String>, ParameterSourceError>;
}

/// A fixed set of parameters, e.g. read from a file for an offline run.
impl ParameterSource for BTreeMap<String, String> {
    fn fetch(&self, names: &[String]) -> Result<BTreeMap<String, String>, ParameterSourceError> {
        Ok(names
            .iter()
            .filter_map(|name| self.get(name).map(|v| (name.clone(), v.clone())))
            .collect())
    }
}
