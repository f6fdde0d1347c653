//! Raw values as they arrive from YAML, the environment, `--set` or Parameter
//! Store, and their conversion to the type a key expects. Keeping the raw form
//! separate lets one conversion serve every layer and lets errors say what was
//! found, not just that it was wrong.

use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::Value;

use crate::schema::{KeyDef, ValueKind};

/// A value before it is checked against the schema. Scalars keep their source
/// text so that a string key given `1.10` keeps `1.10`, not `1.1`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Raw {
    Null,
    Bool(bool, String),
    Int(i64, String),
    Float(f64, String),
    Str(String),
    Seq(Vec<Raw>),
    /// A mapping where a scalar or list was expected; its keys, for the message.
    Map(Vec<String>),
    /// Something the YAML loader could not represent (e.g. `!!int abc`).
    Invalid,
}

impl Raw {
    /// A short description of the value, for "found ..." in errors.
    pub(crate) fn describe(&self) -> String {
        match self {
            Raw::Null => "null".to_string(),
            Raw::Bool(_, text) => format!("the boolean {text}"),
            Raw::Int(_, text) => format!("the integer {text}"),
            Raw::Float(_, text) => format!("the number {text}"),
            Raw::Str(s) => format!("the string \"{}\"", shorten(s, 60)),
            Raw::Seq(items) => format!("a list of {} item(s)", items.len()),
            Raw::Map(keys) if keys.is_empty() => "an empty mapping".to_string(),
            Raw::Map(keys) => format!("a mapping with keys {}", keys.join(", ")),
            Raw::Invalid => "a value YAML cannot parse with its tag".to_string(),
        }
    }

    /// The text of a scalar as the user wrote it (`None` for null and collections).
    fn scalar_text(&self) -> Option<&str> {
        match self {
            Raw::Bool(_, text) | Raw::Int(_, text) | Raw::Float(_, text) => Some(text),
            Raw::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Only used to check that built-in defaults fit their own keys.
    #[cfg(test)]
    pub(crate) fn from_json(value: &Value) -> Raw {
        match value {
            Value::Null => Raw::Null,
            Value::Bool(b) => Raw::Bool(*b, b.to_string()),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Raw::Int(i, n.to_string()),
                None => Raw::Float(n.as_f64().unwrap_or(f64::NAN), n.to_string()),
            },
            Value::String(s) => Raw::Str(s.clone()),
            Value::Array(items) => Raw::Seq(items.iter().map(Raw::from_json).collect()),
            Value::Object(map) => Raw::Map(map.keys().cloned().collect()),
        }
    }

    pub(crate) fn from_scalar(scalar: &Scalar<'_>, text: &str) -> Raw {
        match scalar {
            Scalar::Null => Raw::Null,
            Scalar::Boolean(b) => Raw::Bool(*b, text.to_string()),
            Scalar::Integer(i) => Raw::Int(*i, text.to_string()),
            Scalar::FloatingPoint(x) => Raw::Float(x.0, text.to_string()),
            Scalar::String(s) => Raw::Str(s.to_string()),
        }
    }

    fn from_yaml(node: &Yaml<'_>, text: &str) -> Raw {
        match node {
            Yaml::Value(scalar) => Raw::from_scalar(scalar, text),
            Yaml::Sequence(items) => Raw::Seq(
                items
                    .iter()
                    .map(|item| Raw::from_yaml(item, &scalar_display(item)))
                    .collect(),
            ),
            Yaml::Mapping(map) => Raw::Map(map.keys().map(scalar_display).collect()),
            Yaml::Tagged(_, inner) => Raw::from_yaml(inner, text),
            Yaml::Representation(s, _, _) => Raw::Str(s.to_string()),
            Yaml::Alias(_) | Yaml::BadValue => Raw::Invalid,
        }
    }
}

fn scalar_display(node: &Yaml<'_>) -> String {
    match node {
        Yaml::Value(Scalar::String(s)) => s.to_string(),
        Yaml::Value(Scalar::Integer(i)) => i.to_string(),
        Yaml::Value(Scalar::FloatingPoint(x)) => x.to_string(),
        Yaml::Value(Scalar::Boolean(b)) => b.to_string(),
        Yaml::Value(Scalar::Null) => "null".to_string(),
        Yaml::Tagged(_, inner) => scalar_display(inner),
        _ => "?".to_string(),
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let head: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{head}…")
    }
}

/// Parses text from the environment or `--set` the way YAML would read it as a
/// value: `30` is an integer, `[q_proj, v_proj]` a list, empty or `null` is null.
/// String keys take the text itself when YAML would read something else (so
/// `--set dataset.system_prompt=Note: be brief` is not a mapping).
pub(crate) fn parse_text(def: &KeyDef, text: &str) -> Result<Raw, String> {
    let parsed = match Yaml::load_from_str(text) {
        Ok(docs) if docs.len() > 1 => Err("holds more than one YAML document".to_string()),
        Ok(docs) => Ok(docs
            .first()
            .map_or(Raw::Null, |doc| Raw::from_yaml(doc, text.trim()))),
        Err(e) => Err(format!("is not a valid YAML value ({})", e.info())),
    };
    let wants_text = matches!(def.kind, ValueKind::Str | ValueKind::OneOf(_));
    match parsed {
        Ok(Raw::Seq(_) | Raw::Map(_) | Raw::Invalid) | Err(_) if wants_text => {
            Ok(Raw::Str(text.to_string()))
        }
        other => other,
    }
}

/// Parameter Store holds only strings: string keys take them verbatim, lists
/// accept a StringList (`a,b,c`) or a YAML list, other types parse as YAML.
pub(crate) fn parse_parameter(def: &KeyDef, text: &str) -> Result<Raw, String> {
    match def.kind {
        ValueKind::Str | ValueKind::OneOf(_) => Ok(Raw::Str(text.to_string())),
        ValueKind::StrList if !text.trim_start().starts_with('[') => Ok(Raw::Seq(
            text.split(',')
                .map(|item| Raw::Str(item.trim().to_string()))
                .filter(|item| *item != Raw::Str(String::new()))
                .collect(),
        )),
        _ => parse_text(def, text),
    }
}

/// Why a raw value does not fit a key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mismatch {
    pub expected: String,
    pub found: String,
}

/// Converts `raw` to the JSON value of `def`'s type.
pub(crate) fn coerce(def: &KeyDef, raw: &Raw) -> Result<Value, Mismatch> {
    let mismatch = |expected: String| Mismatch {
        expected,
        found: raw.describe(),
    };
    let expected = || {
        if def.nullable {
            format!("{} or null", def.kind)
        } else {
            def.kind.to_string()
        }
    };
    if *raw == Raw::Null {
        // A required key (no default) may be explicitly left empty: that is "not set".
        return if def.nullable || def.is_required() {
            Ok(Value::Null)
        } else {
            Err(mismatch(expected()))
        };
    }
    match (def.kind, raw) {
        (ValueKind::Str, _) => raw
            .scalar_text()
            .map(Value::from)
            .ok_or_else(|| mismatch(expected())),
        (ValueKind::Int { min }, Raw::Int(i, _)) if *i >= min => Ok(Value::from(*i)),
        (ValueKind::Float, Raw::Int(i, _)) => Ok(Value::from(*i)),
        (ValueKind::Float, Raw::Float(x, _)) => serde_json::Number::from_f64(*x)
            .map(Value::Number)
            .ok_or_else(|| mismatch("a finite number".to_string())),
        (ValueKind::Bool, Raw::Bool(b, _)) => Ok(Value::Bool(*b)),
        (ValueKind::StrList, Raw::Seq(items)) => items
            .iter()
            .map(|item| item.scalar_text().map(Value::from))
            .collect::<Option<Vec<_>>>()
            .map(Value::Array)
            .ok_or_else(|| mismatch("a list of strings (no nested lists or nulls)".to_string())),
        (ValueKind::OneOf(options), _) => match raw.scalar_text() {
            Some(word) if options.contains(&word) => Ok(Value::from(word)),
            Some(word) => Err(Mismatch {
                expected: match crate::schema::suggest_among(word, options) {
                    Some(near) => format!("{} (did you mean \"{near}\"?)", expected()),
                    None => expected(),
                },
                found: raw.describe(),
            }),
            None => Err(mismatch(expected())),
        },
        _ => Err(mismatch(expected())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::find;

    fn def(key: &str) -> &'static KeyDef {
        find(key).unwrap()
    }

    #[test]
    fn text_parses_as_yaml_scalars_and_lists() {
        let steps = def("training.max_steps");
        assert_eq!(
            coerce(steps, &parse_text(steps, "30").unwrap()),
            Ok(Value::from(30))
        );
        let lr = def("training.learning_rate");
        assert_eq!(
            coerce(lr, &parse_text(lr, "1e-4").unwrap()),
            Ok(Value::from(1e-4))
        );
        let modules = def("lora.target_modules");
        assert_eq!(
            coerce(modules, &parse_text(modules, "[q_proj,v_proj]").unwrap()),
            Ok(serde_json::json!(["q_proj", "v_proj"]))
        );
    }

    #[test]
    fn string_keys_keep_text_yaml_would_read_otherwise() {
        let prompt = def("dataset.system_prompt");
        let raw = parse_text(prompt, "Note: be brief").unwrap();
        assert_eq!(coerce(prompt, &raw), Ok(Value::from("Note: be brief")));
        let name = def("model.name");
        let raw = parse_text(name, "1.10").unwrap();
        assert_eq!(coerce(name, &raw), Ok(Value::from("1.10")));
    }

    #[test]
    fn mismatches_say_what_was_expected_and_found() {
        let steps = def("training.max_steps");
        let err = coerce(steps, &parse_text(steps, "many").unwrap()).unwrap_err();
        assert_eq!(err.expected, "an integer >= -1");
        assert_eq!(err.found, "the string \"many\"");
        let err = coerce(steps, &parse_text(steps, "-5").unwrap()).unwrap_err();
        assert_eq!(err.found, "the integer -5");
        let sched = def("training.lr_scheduler_type");
        let err = coerce(sched, &parse_text(sched, "cosin").unwrap()).unwrap_err();
        assert!(err.expected.contains("did you mean \"cosine\""), "{err:?}");
        let lr = def("training.learning_rate");
        assert!(coerce(lr, &Raw::Null).is_err());
    }

    #[test]
    fn parameter_store_values_follow_the_key_type() {
        let size = def("aws.ebs.size_gb");
        assert_eq!(
            coerce(size, &parse_parameter(size, "200").unwrap()),
            Ok(Value::from(200))
        );
        let region = def("aws.region");
        assert_eq!(
            coerce(region, &parse_parameter(region, "null").unwrap()),
            Ok(Value::from("null"))
        );
        let modules = def("lora.target_modules");
        assert_eq!(
            coerce(
                modules,
                &parse_parameter(modules, "q_proj, v_proj").unwrap()
            ),
            Ok(serde_json::json!(["q_proj", "v_proj"]))
        );
    }

    #[test]
    fn required_keys_accept_null_as_not_set() {
        let id = def("aws.ec2.instance_id");
        assert_eq!(coerce(id, &parse_text(id, "").unwrap()), Ok(Value::Null));
    }
}
