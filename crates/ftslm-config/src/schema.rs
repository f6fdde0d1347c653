//! The shape of a configuration key: its type, built-in default, Parameter Store
//! reference and description, plus lookups and "did you mean" suggestions over the
//! whole key set (the table itself is in `keys.rs`).

use std::fmt;

use serde_json::Value;

pub use crate::keys::SCHEMA;

/// What a key accepts. Integers are accepted where a number is expected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueKind {
    /// Any scalar, kept as its text.
    Str,
    /// A whole number no smaller than `min`.
    Int { min: i64 },
    /// A finite number.
    Float,
    /// `true` or `false`.
    Bool,
    /// A list of scalars, kept as text.
    StrList,
    /// One of a fixed set of words.
    OneOf(&'static [&'static str]),
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueKind::Str => f.write_str("a string"),
            ValueKind::Int { min: 0 } => f.write_str("a non-negative integer"),
            ValueKind::Int { min: 1 } => f.write_str("a positive integer"),
            ValueKind::Int { min } => write!(f, "an integer >= {min}"),
            ValueKind::Float => f.write_str("a number"),
            ValueKind::Bool => f.write_str("true or false"),
            ValueKind::StrList => f.write_str("a list of strings"),
            ValueKind::OneOf(options) => {
                f.write_str("one of ")?;
                for (i, option) in options.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "\"{option}\"")?;
                }
                Ok(())
            }
        }
    }
}

impl ValueKind {
    /// A short type name for machine-readable output.
    pub fn type_name(&self) -> String {
        match self {
            ValueKind::Str => "string".to_string(),
            ValueKind::Int { .. } => "integer".to_string(),
            ValueKind::Float => "number".to_string(),
            ValueKind::Bool => "boolean".to_string(),
            ValueKind::StrList => "list of strings".to_string(),
            ValueKind::OneOf(options) => format!("one of {}", options.join("|")),
        }
    }
}

/// A built-in default, written so the schema table can be a `static`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lit {
    /// No value: "not set" for required keys, "off/unlimited" for nullable ones.
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'static str),
    StrList(&'static [&'static str]),
}

impl Lit {
    pub fn to_json(self) -> Value {
        match self {
            Lit::Null => Value::Null,
            Lit::Bool(b) => Value::Bool(b),
            Lit::Int(i) => Value::from(i),
            Lit::Float(x) => serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
            Lit::Str(s) => Value::from(s),
            Lit::StrList(items) => Value::Array(items.iter().map(|s| Value::from(*s)).collect()),
        }
    }
}

/// One known configuration key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeyDef {
    /// Dotted path, e.g. `training.learning_rate`.
    pub key: &'static str,
    pub kind: ValueKind,
    /// Whether `null` is a meaningful value (e.g. "no limit"), as opposed to "not set".
    pub nullable: bool,
    pub default: Lit,
    /// The Parameter Store name the original system used for this key, if any.
    pub ssm_param: Option<&'static str>,
    /// `false` for keys the original files carry for transformers/bitsandbytes that
    /// ftslm accepts (so those files load unchanged) but does not act on.
    pub used: bool,
    pub description: &'static str,
}

impl KeyDef {
    pub(crate) const fn new(
        key: &'static str,
        kind: ValueKind,
        default: Lit,
        description: &'static str,
    ) -> KeyDef {
        KeyDef {
            key,
            kind,
            nullable: false,
            default,
            ssm_param: None,
            used: true,
            description,
        }
    }

    pub(crate) const fn nullable(mut self) -> KeyDef {
        self.nullable = true;
        self
    }

    pub(crate) const fn ssm(mut self, param: &'static str) -> KeyDef {
        self.ssm_param = Some(param);
        self
    }

    pub(crate) const fn unused(mut self) -> KeyDef {
        self.used = false;
        self
    }

    /// A key without a default that must be given (file, Parameter Store, env or
    /// `--set`) before the commands that need it can run, e.g. `aws.ec2.instance_id`.
    pub fn is_required(&self) -> bool {
        !self.nullable && self.default == Lit::Null
    }

    /// The top-level section, e.g. `aws` for `aws.ec2.instance_id`.
    pub fn section(&self) -> &'static str {
        self.key.split('.').next().unwrap_or(self.key)
    }

    /// The environment variable that overrides this key.
    pub fn env_var(&self) -> String {
        format!("FTSLM_{}", self.key.replace('.', "__").to_uppercase())
    }
}

/// The definition of a dotted key, if it is a known leaf.
pub fn find(key: &str) -> Option<&'static KeyDef> {
    SCHEMA.iter().find(|def| def.key == key)
}

/// Whether `prefix` names a section (a mapping that holds keys), e.g. `aws.ec2`.
pub fn is_section(prefix: &str) -> bool {
    SCHEMA.iter().any(|def| {
        def.key.len() > prefix.len()
            && def.key.starts_with(prefix)
            && def.key.as_bytes()[prefix.len()] == b'.'
    })
}

/// The known key (or section) closest to `unknown`, if any is close enough to be a
/// plausible typo. A key whose last part exists verbatim in another section wins
/// (e.g. `training.lora_alpha` → `lora.lora_alpha`).
pub fn suggest(unknown: &str) -> Option<&'static str> {
    let unknown = unknown.to_ascii_lowercase();
    let last = unknown.rsplit('.').next().unwrap_or(&unknown);
    if let Some(def) = SCHEMA
        .iter()
        .find(|def| def.key.rsplit('.').next() == Some(last))
    {
        return Some(def.key);
    }
    let mut best: Option<(&'static str, f64)> = None;
    for def in SCHEMA {
        let score = strsim::normalized_damerau_levenshtein(&unknown, def.key);
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((def.key, score));
        }
    }
    // Below this the "closest" key is usually unrelated and the hint would mislead.
    best.filter(|(_, score)| *score >= 0.7).map(|(key, _)| key)
}

/// The closest of `options` to `word`, for typos in fixed vocabularies.
pub fn suggest_among<'a>(word: &str, options: &[&'a str]) -> Option<&'a str> {
    options
        .iter()
        .map(|o| (*o, strsim::jaro_winkler(&word.to_ascii_lowercase(), o)))
        .filter(|(_, score)| *score >= 0.8)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(o, _)| o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{coerce, Raw};

    #[test]
    fn every_default_has_the_type_of_its_key() {
        for def in SCHEMA {
            let raw = Raw::from_json(&def.default.to_json());
            let coerced = coerce(def, &raw);
            assert!(coerced.is_ok(), "{}: {:?}", def.key, coerced);
        }
    }

    #[test]
    fn keys_are_unique_lowercase_and_never_also_sections() {
        let mut seen = std::collections::BTreeSet::new();
        for def in SCHEMA {
            assert!(seen.insert(def.key), "{} twice", def.key);
            assert_eq!(def.key, def.key.to_ascii_lowercase());
            assert!(
                !is_section(def.key),
                "{} is both a key and a section",
                def.key
            );
            assert!(
                !def.key.contains("__"),
                "{} would be ambiguous in env names",
                def.key
            );
        }
    }

    #[test]
    fn keys_sharing_a_parameter_share_its_default() {
        for a in SCHEMA {
            for b in SCHEMA {
                if a.ssm_param.is_some() && a.ssm_param == b.ssm_param {
                    let (da, db) = (a.default, b.default);
                    assert!(
                        da == db || da == Lit::Null || db == Lit::Null,
                        "{} and {} disagree on the default of {:?}",
                        a.key,
                        b.key,
                        a.ssm_param
                    );
                }
            }
        }
    }

    #[test]
    fn suggestions_find_typos_and_misplaced_keys() {
        assert_eq!(
            suggest("training.learnig_rate"),
            Some("training.learning_rate")
        );
        assert_eq!(suggest("training.lora_alpha"), Some("lora.lora_alpha"));
        assert_eq!(suggest("aws.ec2.instance"), Some("aws.ec2.instance_id"));
        assert_eq!(suggest("zzz.qqq"), None);
        assert_eq!(
            suggest_among("cosin", &["cosine", "linear"]),
            Some("cosine")
        );
    }

    #[test]
    fn required_keys_are_exactly_the_unset_resource_ids() {
        let required: Vec<_> = SCHEMA
            .iter()
            .filter(|d| d.is_required())
            .map(|d| d.key)
            .collect();
        assert_eq!(
            required,
            [
                "output.s3_bucket",
                "output.hf_repo",
                "aws.ec2.instance_id",
                "aws.ebs.volume_id",
                "aws.s3.bucket",
                "aws.ecr.registry"
            ]
        );
    }
}
