//! Writing the configuration's Parameter Store references (`ftslm params init`;
//! `params list` is in [`crate::param_list`]). The plan is
//! built from a configuration loaded *without* Parameter Store, so each value is
//! what `--set`, the environment, the files or the built-in defaults give; one
//! parameter may back several keys (`aws.s3.bucket` and `output.s3_bucket`) and
//! then has one value. Nothing already in the store is replaced unless asked,
//! and a run that lacks a required value writes nothing at all.

use std::collections::BTreeMap;
use std::fmt;

use aws_sdk_ssm::primitives::DateTimeFormat;
use aws_sdk_ssm::types::{Parameter, ParameterType};
use ftslm_config::{KeyDef, ResolvedConfig, ValueKind};
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use crate::aws::{call_error, Aws, AwsError};
use crate::params::GET_PARAMETERS_BATCH;

/// Parameter Store rejects longer descriptions.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;

/// What is shown in place of a SecureString's value.
pub const SECURE_PLACEHOLDER: &str = "(SecureString)";

/// One parameter `params init` writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedParameter {
    pub name: String,
    /// The configuration keys bound to it, in schema order.
    pub keys: Vec<&'static str>,
    /// The text to store; `None` when no layer gives one.
    pub value: Option<String>,
    pub description: String,
    /// No value yet, and a key bound to it has no default: it must be given
    /// (`--set` or a prompt) before anything is written.
    pub required: bool,
    #[serde(skip)]
    defs: Vec<&'static KeyDef>,
}

impl PlannedParameter {
    /// The `--set` argument that gives this parameter its value.
    pub fn set_hint(&self) -> String {
        format!(
            "--set {}=VALUE",
            self.keys.first().copied().unwrap_or("KEY")
        )
    }
}

/// Every distinct parameter the configuration references, in schema order of
/// its first key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParameterPlan {
    parameters: Vec<PlannedParameter>,
}

/// A key's value and the layer that gave it, for [`PlanError::Conflict`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: &'static str,
    pub value: String,
    /// As `ftslm config show` prints it, e.g. `cli`, `env`, `aws.yml:47`.
    pub source: String,
}

impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {:?} ({})", self.key, self.value, self.source)
    }
}

#[derive(Debug, Error)]
pub enum PlanError {
    #[error(
        "{first} and {second} are both stored in Parameter Store {param}, which holds one \
         value; give both keys the same value, or set only one of them"
    )]
    Conflict {
        param: String,
        first: Box<KeyValue>,
        second: Box<KeyValue>,
    },
    #[error("{0:?} is neither a configuration key bound to Parameter Store nor a parameter name of this configuration (`ftslm params list` shows them)")]
    Unknown(String),
    #[error("{value:?} is not a value for {name} ({key} takes {expected})")]
    BadValue {
        name: String,
        key: &'static str,
        value: String,
        expected: String,
    },
}

impl ParameterPlan {
    /// The plan for `config`, which the caller loads without Parameter Store.
    /// Keys sharing a parameter must agree; a key with no value defers to one
    /// that has it.
    pub fn from_config(config: &ResolvedConfig) -> Result<ParameterPlan, PlanError> {
        let mut parameters: Vec<PlannedParameter> = Vec::new();
        // (key, source) of the value each parameter took, for the conflict message.
        let mut origins: BTreeMap<String, (&'static str, String)> = BTreeMap::new();
        for resolved in config.values() {
            let Some(name) = resolved.ssm_param.clone() else {
                continue;
            };
            let value = parameter_text(&resolved.value);
            let index = match parameters.iter().position(|p| p.name == name) {
                Some(i) => i,
                None => {
                    parameters.push(PlannedParameter {
                        name: name.clone(),
                        keys: Vec::new(),
                        value: None,
                        description: String::new(),
                        required: false,
                        defs: Vec::new(),
                    });
                    parameters.len() - 1
                }
            };
            let planned = &mut parameters[index];
            planned.keys.push(resolved.key());
            planned.defs.push(resolved.def);
            let description = resolved.description.trim();
            if !description.is_empty() && !planned.description.split("; ").any(|d| d == description)
            {
                if !planned.description.is_empty() {
                    planned.description.push_str("; ");
                }
                planned.description.push_str(description);
            }
            match (&planned.value, value) {
                (_, None) => {}
                (None, Some(v)) => {
                    planned.value = Some(v);
                    origins.insert(name, (resolved.key(), resolved.source.to_string()));
                }
                (Some(existing), Some(v)) if *existing == v => {}
                (Some(existing), Some(v)) => {
                    let (first_key, first_source) = origins
                        .get(&name)
                        .cloned()
                        .unwrap_or((planned.keys[0], String::new()));
                    return Err(PlanError::Conflict {
                        param: name,
                        first: Box::new(KeyValue {
                            key: first_key,
                            value: existing.clone(),
                            source: first_source,
                        }),
                        second: Box::new(KeyValue {
                            key: resolved.key(),
                            value: v,
                            source: resolved.source.to_string(),
                        }),
                    });
                }
            }
        }
        for planned in &mut parameters {
            planned.required =
                planned.value.is_none() && planned.defs.iter().any(|d| d.is_required());
        }
        Ok(ParameterPlan { parameters })
    }

    pub fn parameters(&self) -> &[PlannedParameter] {
        &self.parameters
    }

    /// The parameter named `name_or_key`, or bound to that key.
    pub fn get(&self, name_or_key: &str) -> Option<&PlannedParameter> {
        self.parameters
            .iter()
            .find(|p| p.name == name_or_key || p.keys.contains(&name_or_key))
    }

    /// The parameters that still need a value before [`apply`] will write.
    pub fn missing_required(&self) -> Vec<&PlannedParameter> {
        self.parameters.iter().filter(|p| p.required).collect()
    }

    /// Gives a parameter (by name or by a key bound to it) its value, e.g. one
    /// the user typed at a prompt. The text must suit every key bound to it.
    pub fn fill(&mut self, name_or_key: &str, value: &str) -> Result<(), PlanError> {
        let planned = self
            .parameters
            .iter_mut()
            .find(|p| p.name == name_or_key || p.keys.contains(&name_or_key))
            .ok_or_else(|| PlanError::Unknown(name_or_key.to_string()))?;
        let text = value.trim();
        for def in &planned.defs {
            if !accepts(def.kind, text) {
                return Err(PlanError::BadValue {
                    name: planned.name.clone(),
                    key: def.key,
                    value: text.to_string(),
                    expected: def.kind.to_string(),
                });
            }
        }
        planned.value = Some(text.to_string());
        planned.required = false;
        Ok(())
    }
}

/// The text Parameter Store holds for a configuration value: strings as they
/// are, numbers and booleans as written, lists as a StringList; null is no value.
fn parameter_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => Some(
            items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(","),
        ),
        other => Some(other.to_string()),
    }
}

/// Whether `text` would load back as a value of `kind` (what the loader checks
/// when it reads the parameter).
fn accepts(kind: ValueKind, text: &str) -> bool {
    if text.is_empty() {
        return false;
    }
    match kind {
        ValueKind::Str | ValueKind::StrList => true,
        ValueKind::Int { min } => text.parse::<i64>().is_ok_and(|i| i >= min),
        ValueKind::Float => text.parse::<f64>().is_ok_and(f64::is_finite),
        ValueKind::Bool => matches!(text, "true" | "false"),
        ValueKind::OneOf(options) => options.contains(&text),
    }
}

/// What `params init` did (or, in a dry run, would do) with one parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Created,
    WouldCreate,
    /// The store already holds this value.
    Unchanged,
    /// The store holds another value and `--overwrite` was not given.
    Kept {
        existing: String,
    },
    Overwritten {
        previous: String,
    },
    WouldOverwrite {
        previous: String,
    },
    /// No layer gives a value and none is needed (a nullable key); nothing to store.
    NoValue,
}

impl Action {
    /// Whether the store was (or would be) written.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Action::Created
                | Action::WouldCreate
                | Action::Overwritten { .. }
                | Action::WouldOverwrite { .. }
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Created => f.write_str("created"),
            Action::WouldCreate => f.write_str("would create"),
            Action::Unchanged => f.write_str("unchanged"),
            Action::Kept { existing } => {
                write!(f, "kept {existing:?} (--overwrite to replace it)")
            }
            Action::Overwritten { previous } => write!(f, "overwritten (was {previous:?})"),
            Action::WouldOverwrite { previous } => write!(f, "would overwrite {previous:?}"),
            Action::NoValue => f.write_str("no value, not stored"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParameterOutcome {
    pub name: String,
    pub keys: Vec<&'static str>,
    /// The value from the configuration.
    pub value: Option<String>,
    #[serde(flatten)]
    pub action: Action,
}

/// A parameter as the store holds it.
pub(crate) struct Stored {
    pub(crate) value: Option<String>,
    pub(crate) kind: Option<ParameterType>,
    pub(crate) version: i64,
    pub(crate) last_modified: Option<String>,
}

impl Stored {
    pub(crate) fn from_sdk(parameter: &Parameter) -> Stored {
        Stored {
            value: parameter.value().map(str::to_string),
            kind: parameter.r#type().cloned(),
            version: parameter.version(),
            last_modified: parameter
                .last_modified_date()
                .and_then(|d| d.fmt(DateTimeFormat::DateTime).ok()),
        }
    }

    pub(crate) fn is_secure(&self) -> bool {
        self.kind == Some(ParameterType::SecureString)
    }

    /// The value as it may be shown: a SecureString's never is.
    fn shown(&self) -> String {
        if self.is_secure() {
            SECURE_PLACEHOLDER.to_string()
        } else {
            self.value.clone().unwrap_or_default()
        }
    }
}

/// Creates the parameters of `plan` that the store lacks; with `overwrite`,
/// replaces those whose stored value differs. With `dry_run` nothing is written
/// and the outcomes say what would be. Refuses, writing nothing, while a
/// required parameter has no value.
pub fn apply(
    aws: &Aws,
    plan: &ParameterPlan,
    overwrite: bool,
    dry_run: bool,
) -> Result<Vec<ParameterOutcome>, AwsError> {
    refuse_missing(plan)?;
    let client = aws.ssm();
    let names: Vec<String> = plan
        .parameters
        .iter()
        .filter(|p| p.value.is_some())
        .map(|p| p.name.clone())
        .collect();
    // SecureStrings are compared by their plain value, which is never shown.
    let existing = aws.block_on(get_parameters(&client, &names, true))??;
    let mut outcomes = Vec::with_capacity(plan.parameters.len());
    for planned in &plan.parameters {
        let action = match (&planned.value, existing.get(&planned.name)) {
            (None, _) => Action::NoValue,
            (Some(_), None) if dry_run => Action::WouldCreate,
            (Some(value), None) => {
                aws.block_on(put_parameter(
                    &client,
                    planned,
                    value,
                    ParameterType::String,
                    false,
                ))??;
                Action::Created
            }
            (Some(value), Some(stored)) if stored.value.as_deref() == Some(value.as_str()) => {
                Action::Unchanged
            }
            (Some(_), Some(stored)) if !overwrite => Action::Kept {
                existing: stored.shown(),
            },
            (Some(_), Some(stored)) if dry_run => Action::WouldOverwrite {
                previous: stored.shown(),
            },
            (Some(value), Some(stored)) => {
                // Keep the type the user chose (a SecureString stays one).
                let kind = stored.kind.clone().unwrap_or(ParameterType::String);
                aws.block_on(put_parameter(&client, planned, value, kind, true))??;
                Action::Overwritten {
                    previous: stored.shown(),
                }
            }
        };
        outcomes.push(ParameterOutcome {
            name: planned.name.clone(),
            keys: planned.keys.clone(),
            value: planned.value.clone(),
            action,
        });
    }
    Ok(outcomes)
}

fn refuse_missing(plan: &ParameterPlan) -> Result<(), AwsError> {
    let missing = plan.missing_required();
    if missing.is_empty() {
        return Ok(());
    }
    let mut message = format!(
        "{} required parameter{} ha{} no value, so nothing was written:",
        missing.len(),
        if missing.len() == 1 { "" } else { "s" },
        if missing.len() == 1 { "s" } else { "ve" },
    );
    for p in &missing {
        message.push_str(&format!(
            "\n  {} ({}): {}; give it with {}",
            p.name,
            p.keys.join(", "),
            p.description,
            p.set_hint()
        ));
    }
    message.push_str("\n(`ftslm params init` asks for them when run on a terminal without --yes)");
    Err(AwsError::Refused(message))
}

/// The stored parameters among `names` (absent ones are left out).
pub(crate) async fn get_parameters(
    client: &aws_sdk_ssm::Client,
    names: &[String],
    decrypt: bool,
) -> Result<BTreeMap<String, Stored>, AwsError> {
    let mut found = BTreeMap::new();
    for batch in names.chunks(GET_PARAMETERS_BATCH) {
        let output = client
            .get_parameters()
            .set_names(Some(batch.to_vec()))
            .with_decryption(decrypt)
            .send()
            .await
            .map_err(|e| call_error("ssm:GetParameters", e))?;
        for parameter in output.parameters() {
            if let Some(name) = parameter.name() {
                found.insert(name.to_string(), Stored::from_sdk(parameter));
            }
        }
    }
    Ok(found)
}

async fn put_parameter(
    client: &aws_sdk_ssm::Client,
    planned: &PlannedParameter,
    value: &str,
    kind: ParameterType,
    overwrite: bool,
) -> Result<(), AwsError> {
    let mut request = client
        .put_parameter()
        .name(&planned.name)
        .value(value)
        .r#type(kind)
        .overwrite(overwrite);
    let description = truncate_chars(&planned.description, MAX_DESCRIPTION_CHARS);
    if !description.is_empty() {
        request = request.description(description);
    }
    request
        .send()
        .await
        .map_err(|e| call_error("ssm:PutParameter", e))?;
    Ok(())
}

fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let head: String = text.chars().take(max - 1).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_become_the_text_parameter_store_holds() {
        assert_eq!(parameter_text(&json!("i-0abc")), Some("i-0abc".into()));
        assert_eq!(parameter_text(&json!(100)), Some("100".into()));
        assert_eq!(parameter_text(&json!(0.25)), Some("0.25".into()));
        assert_eq!(parameter_text(&json!(true)), Some("true".into()));
        assert_eq!(parameter_text(&json!(["a", "b"])), Some("a,b".into()));
        assert_eq!(parameter_text(&Value::Null), None);
    }

    #[test]
    fn filled_values_must_load_back_as_their_type() {
        assert!(accepts(ValueKind::Int { min: 1 }, "250"));
        assert!(!accepts(ValueKind::Int { min: 1 }, "0"));
        assert!(!accepts(ValueKind::Int { min: 1 }, "big"));
        assert!(!accepts(ValueKind::Str, ""));
        assert!(accepts(ValueKind::OneOf(&["gp3", "gp2"]), "gp2"));
        assert!(!accepts(ValueKind::OneOf(&["gp3", "gp2"]), "io9"));
        assert!(!accepts(ValueKind::Float, "NaN"));
    }

    #[test]
    fn long_descriptions_fit_parameter_store() {
        let long = "é".repeat(MAX_DESCRIPTION_CHARS + 5);
        let cut = truncate_chars(&long, MAX_DESCRIPTION_CHARS);
        assert_eq!(cut.chars().count(), MAX_DESCRIPTION_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate_chars("short", MAX_DESCRIPTION_CHARS), "short");
    }
}
