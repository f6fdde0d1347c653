//! What Parameter Store holds for the configuration (`ftslm params list`):
//! every referenced parameter, set or not, with the keys bound to it, and every
//! other parameter under [`PARAMETER_ROOT`], so leftovers and typos in names
//! show up. SecureStrings are listed but never decrypted.

use std::collections::BTreeMap;

use ftslm_config::ResolvedConfig;
use serde::Serialize;

use crate::aws::{call_error, Aws, AwsError};
use crate::param_init::{get_parameters, Stored, SECURE_PLACEHOLDER};

/// The hierarchy the original system kept its parameters under; `params list`
/// also shows parameters here that no key references.
pub const PARAMETER_ROOT: &str = "/fine-tune-slm";

/// GetParametersByPath returns at most this many per page.
const BY_PATH_PAGE: i32 = 10;

/// One row of `params list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedParameter {
    pub name: String,
    /// The configuration keys bound to it; empty when `unknown_to_config`.
    pub keys: Vec<&'static str>,
    /// The stored value; `None` when not set or a SecureString (never decrypted).
    pub value: Option<String>,
    /// `String`, `StringList` or `SecureString`; `None` when not set.
    pub parameter_type: Option<String>,
    /// RFC 3339.
    pub last_modified: Option<String>,
    pub version: Option<i64>,
    /// Under [`PARAMETER_ROOT`] but referenced by no key.
    pub unknown_to_config: bool,
}

impl ListedParameter {
    pub fn is_set(&self) -> bool {
        self.parameter_type.is_some()
    }

    /// The value for a table: the value, `(not set)` or `(SecureString)`.
    pub fn display_value(&self) -> &str {
        match (&self.value, self.parameter_type.as_deref()) {
            (_, None) => "(not set)",
            (_, Some("SecureString")) => SECURE_PLACEHOLDER,
            (Some(v), _) => v,
            (None, Some(_)) => "",
        }
    }
}

/// The parameters `config` references, with what the store holds for each
/// (missing ones included, as not set), then every other parameter under
/// [`PARAMETER_ROOT`], marked `unknown_to_config`. Values of SecureStrings are
/// not decrypted.
pub fn list(aws: &Aws, config: &ResolvedConfig) -> Result<Vec<ListedParameter>, AwsError> {
    let bindings = bindings(config);
    let names: Vec<String> = bindings.iter().map(|(n, _)| n.clone()).collect();
    let client = aws.ssm();
    let (configured, under_root) = aws.block_on(async {
        let configured = get_parameters(&client, &names, false).await?;
        let under_root = parameters_by_path(&client, PARAMETER_ROOT).await?;
        Ok::<_, AwsError>((configured, under_root))
    })??;
    let mut listed: Vec<ListedParameter> = bindings
        .into_iter()
        .map(|(name, keys)| {
            let stored = configured.get(&name);
            listed_parameter(name, keys, stored, false)
        })
        .collect();
    for (name, stored) in under_root {
        if !names.contains(&name) {
            listed.push(listed_parameter(name, Vec::new(), Some(&stored), true));
        }
    }
    Ok(listed)
}

fn listed_parameter(
    name: String,
    keys: Vec<&'static str>,
    stored: Option<&Stored>,
    unknown_to_config: bool,
) -> ListedParameter {
    ListedParameter {
        name,
        keys,
        value: stored
            .filter(|s| !s.is_secure())
            .and_then(|s| s.value.clone()),
        parameter_type: stored.and_then(|s| s.kind.as_ref().map(|k| k.as_str().to_string())),
        last_modified: stored.and_then(|s| s.last_modified.clone()),
        version: stored.map(|s| s.version),
        unknown_to_config,
    }
}

/// Each referenced parameter with the keys bound to it, in schema order.
fn bindings(config: &ResolvedConfig) -> Vec<(String, Vec<&'static str>)> {
    let mut out: Vec<(String, Vec<&'static str>)> = Vec::new();
    for resolved in config.values() {
        let Some(name) = &resolved.ssm_param else {
            continue;
        };
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, keys)) => keys.push(resolved.key()),
            None => out.push((name.clone(), vec![resolved.key()])),
        }
    }
    out
}

/// Every parameter under `path`, all levels, sorted by name.
async fn parameters_by_path(
    client: &aws_sdk_ssm::Client,
    path: &str,
) -> Result<BTreeMap<String, Stored>, AwsError> {
    let mut found = BTreeMap::new();
    let mut next_token: Option<String> = None;
    loop {
        let output = client
            .get_parameters_by_path()
            .path(path)
            .recursive(true)
            .with_decryption(false)
            .max_results(BY_PATH_PAGE)
            .set_next_token(next_token.take())
            .send()
            .await
            .map_err(|e| call_error("ssm:GetParametersByPath", e))?;
        for parameter in output.parameters() {
            if let Some(name) = parameter.name() {
                found.insert(name.to_string(), Stored::from_sdk(parameter));
            }
        }
        match output.next_token() {
            Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
            _ => break,
        }
    }
    Ok(found)
}
