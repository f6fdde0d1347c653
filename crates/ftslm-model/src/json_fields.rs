//! Typed reads from the JSON files of a Hugging Face checkpoint, with errors
//! that name the file and the dotted key. serde derive would reject a whole
//! file at the first mismatch with a column number; these readers say which
//! key is wrong and what was expected.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{ModelError, Result};

/// Reads `path` and checks that it holds a JSON object.
pub(crate) fn read_object(path: &Path) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    parse_object(&text, path)
}

pub(crate) fn parse_object(text: &str, path: &Path) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ModelError::Field {
            path: path.to_path_buf(),
            key: "<top level>".into(),
            problem: "must be a JSON object".into(),
        }),
        Err(source) => Err(ModelError::Json {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// One JSON object of a file; `prefix` is the dotted path of the object
/// inside the file ("" at the top, "rope_scaling." inside that key).
pub(crate) struct Fields<'a> {
    path: &'a Path,
    map: &'a Map<String, Value>,
    prefix: String,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(path: &'a Path, map: &'a Map<String, Value>) -> Self {
        Fields {
            path,
            map,
            prefix: String::new(),
        }
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.path.to_path_buf()
    }

    pub(crate) fn error(&self, key: &str, problem: impl Into<String>) -> ModelError {
        ModelError::Field {
            path: self.path.to_path_buf(),
            key: format!("{}{key}", self.prefix),
            problem: problem.into(),
        }
    }

    /// The value of `key`, with JSON `null` treated as absent (transformers
    /// writes `null` for unset optional fields).
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub(crate) fn nested(&self, key: &str) -> Result<Option<Fields<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Fields {
                path: self.path,
                map,
                prefix: format!("{}{key}.", self.prefix),
            })),
            Some(other) => Err(self.error(key, format!("must be an object, found {other}"))),
        }
    }

    pub(crate) fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    self.error(key, format!("must be a non-negative integer, found {v}"))
                }),
        }
    }

    pub(crate) fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| self.error(key, "is missing (a non-negative integer is required)"))
    }

    pub(crate) fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.error(key, format!("must be a number, found {v}"))),
        }
    }

    pub(crate) fn f64(&self, key: &str) -> Result<f64> {
        self.opt_f64(key)?
            .ok_or_else(|| self.error(key, "is missing (a number is required)"))
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.error(key, format!("must be true or false, found {v}"))),
        }
    }

    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.error(key, format!("must be a string, found {v}"))),
        }
    }

    /// Token ids written either as one integer or as a list (transformers
    /// accepts both for `eos_token_id`).
    pub(crate) fn token_ids(&self, key: &str) -> Result<Vec<u32>> {
        let as_id = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    as_id(v).ok_or_else(|| {
                        self.error(key, format!("must hold token ids, found {v} in the list"))
                    })
                })
                .collect(),
            Some(v) => as_id(v).map(|id| vec![id]).ok_or_else(|| {
                self.error(
                    key,
                    format!("must be a token id or a list of them, found {v}"),
                )
            }),
        }
    }
}
