//! Reading a model's raw output as the task's JSON object.
//!
//! The strict path is what a downstream program would do: the whole trimmed
//! text must be one JSON object. Models often wrap the object in a ```json
//! fence or add a sentence around it, so a lenient path looks for the first
//! balanced `{ ... }` span that parses as an object. Both results are recorded
//! separately: the lenient one still scores the fields, but the JSON-valid rate
//! only credits the strict one.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One field's prediction: `None` when the value was null or the key missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prediction {
    pub field: String,
    pub value: Option<String>,
}

/// What [`parse_output`] made of one output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedOutput {
    /// One entry per requested field, in the requested order.
    pub predictions: Vec<Prediction>,
    /// The whole trimmed text is a JSON object.
    pub json_valid: bool,
    /// Not strictly valid, but an object was found inside the text.
    pub recovered: bool,
    /// Requested fields absent from the object (empty when nothing parsed).
    pub missing_keys: Vec<String>,
    /// Keys of the object that are not requested fields.
    pub extra_keys: Vec<String>,
    /// Requested fields whose value was neither a string nor null; they are
    /// still scored, through their text form.
    pub type_errors: Vec<String>,
    /// Why no object could be read, when none could.
    pub error: Option<String>,
}

impl ParsedOutput {
    /// Whether an object was read, strictly or leniently.
    pub fn is_parsed(&self) -> bool {
        self.json_valid || self.recovered
    }

    /// The predicted value of `field`; `None` for null, missing or unknown fields.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.predictions
            .iter()
            .find(|p| p.field == field)
            .and_then(|p| p.value.as_deref())
    }
}

/// Parses `text` as an object with keys `fields`.
pub fn parse_output<S: AsRef<str>>(text: &str, fields: &[S]) -> ParsedOutput {
    let trimmed = text.trim();
    let strict_error = match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Object(map)) => return from_object(&map, fields, true),
        Ok(other) => format!("output is JSON but not an object (it is {})", kind(&other)),
        Err(e) => format!("output is not valid JSON: {e}"),
    };
    if let Some(map) = find_object(trimmed) {
        return from_object(&map, fields, false);
    }
    ParsedOutput {
        predictions: fields
            .iter()
            .map(|f| Prediction {
                field: f.as_ref().to_string(),
                value: None,
            })
            .collect(),
        json_valid: false,
        recovered: false,
        missing_keys: Vec::new(),
        extra_keys: Vec::new(),
        type_errors: Vec::new(),
        error: Some(format!("{strict_error}; no JSON object found inside it")),
    }
}

/// The text form a value is scored by: strings as they are, numbers and
/// booleans as written, arrays as their items joined by ", " (so a list answer
/// still compares item by item), objects as compact JSON; `None` for null.
pub fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(value_text).collect();
            Some(parts.join(", "))
        }
        Value::Object(_) => Some(value.to_string()),
    }
}

fn from_object<S: AsRef<str>>(
    map: &Map<String, Value>,
    fields: &[S],
    json_valid: bool,
) -> ParsedOutput {
    let mut predictions = Vec::with_capacity(fields.len());
    let mut missing_keys = Vec::new();
    let mut type_errors = Vec::new();
    for field in fields {
        let field = field.as_ref();
        let value = match map.get(field) {
            None => {
                missing_keys.push(field.to_string());
                None
            }
            Some(v) => {
                if !matches!(v, Value::Null | Value::String(_)) {
                    type_errors.push(field.to_string());
                }
                value_text(v)
            }
        };
        predictions.push(Prediction {
            field: field.to_string(),
            value,
        });
    }
    let extra_keys = map
        .keys()
        .filter(|k| !fields.iter().any(|f| f.as_ref() == k.as_str()))
        .cloned()
        .collect();
    ParsedOutput {
        predictions,
        json_valid,
        recovered: !json_valid,
        missing_keys,
        extra_keys,
        type_errors,
        error: None,
    }
}

/// The first balanced `{ ... }` span that parses as an object. Later starts are
/// tried too, because prose before the answer may itself contain a brace.
fn find_object(text: &str) -> Option<Map<String, Value>> {
    let mut from = 0;
    while let Some(offset) = text.get(from..)?.find('{') {
        let start = from + offset;
        if let Some(end) = balanced_end(text, start) {
            if let Some(Ok(Value::Object(map))) = text.get(start..end).map(serde_json::from_str) {
                return Some(map);
            }
        }
        from = start + 1;
    }
    None
}

/// The byte index just past the brace closing the one at `start`; braces inside
/// JSON strings do not count, so `{"a": "}"}` spans the whole text.
fn balanced_end(text: &str, start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text.get(start..)?.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(start + i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
