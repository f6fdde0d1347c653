//! The outcome of loading: every known key with its value, where the value came
//! from, its description and Parameter Store name, plus the notes the loader wants
//! the user to see. Rendered as a table or JSON by `ftslm config show`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::schema::KeyDef;

/// Which layer supplied a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// ftslm's built-in default.
    Default,
    /// A config file, at the line of the key (or of the reference's `default:`).
    File { path: PathBuf, line: usize },
    /// Parameter Store.
    Ssm { path: String },
    /// An `FTSLM_<SECTION>__<KEY>` environment variable.
    Env { var: String },
    /// A `--set key=value` argument.
    Cli,
}

impl fmt::Display for Source {
    /// `default`, `FILE:LINE` (file name only), `ssm:/path`, `env` or `cli`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line } => {
                let name = path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                write!(f, "{name}:{line}")
            }
            Source::Ssm { path } => write!(f, "ssm:{path}"),
            Source::Env { .. } => f.write_str("env"),
            Source::Cli => f.write_str("cli"),
        }
    }
}

impl Source {
    fn to_json(&self) -> Value {
        match self {
            Source::Default => json!({"kind": "default"}),
            Source::File { path, line } => {
                json!({"kind": "file", "path": path.display().to_string(), "line": line})
            }
            Source::Ssm { path } => json!({"kind": "ssm", "param": path}),
            Source::Env { var } => json!({"kind": "env", "var": var}),
            Source::Cli => json!({"kind": "cli"}),
        }
    }
}

/// One key after all layers.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedValue {
    pub def: &'static KeyDef,
    pub value: Value,
    pub source: Source,
    /// The file's `description:` of a reference if it gave one, else ftslm's.
    pub description: String,
    /// The Parameter Store name this key is bound to, if any.
    pub ssm_param: Option<String>,
}

impl ResolvedValue {
    pub fn key(&self) -> &'static str {
        self.def.key
    }

    /// No value, and the key has no meaning for "none" (e.g. `aws.ec2.instance_id`).
    pub fn is_required_unset(&self) -> bool {
        self.value.is_null() && !self.def.nullable
    }
}

/// The configuration of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedConfig {
    values: Vec<ResolvedValue>,
    notes: Vec<String>,
    files: Vec<PathBuf>,
}

impl ResolvedConfig {
    pub(crate) fn new(values: Vec<ResolvedValue>, notes: Vec<String>, files: Vec<PathBuf>) -> Self {
        ResolvedConfig {
            values,
            notes,
            files,
        }
    }

    /// Every known key, in schema order.
    pub fn values(&self) -> &[ResolvedValue] {
        &self.values
    }

    pub fn get(&self, key: &str) -> Option<&ResolvedValue> {
        self.values.iter().find(|v| v.def.key == key)
    }

    /// The value of `key`, or `None` for an unknown key.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.get(key).map(|v| &v.value)
    }

    /// A string value, `None` when unknown, null or not a string.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.value(key).and_then(Value::as_str)
    }

    /// Keys that have no value and need one (resource ids kept in Parameter Store).
    pub fn required_unset(&self) -> Vec<&ResolvedValue> {
        self.values
            .iter()
            .filter(|v| v.is_required_unset())
            .collect()
    }

    /// One-line remarks: missing files, Parameter Store not reachable, and so on.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The config files that were read.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The keys of `section` (e.g. `training` or `aws`) as a nested JSON object.
    pub fn section_json(&self, section: &str) -> Value {
        let prefix = format!("{section}.");
        let mut root = Map::new();
        for v in &self.values {
            if let Some(rest) = v.def.key.strip_prefix(&prefix) {
                insert_nested(&mut root, rest, v.value.clone());
            }
        }
        Value::Object(root)
    }

    /// All values nested as in the YAML files.
    pub fn nested_json(&self) -> Value {
        let mut root = Map::new();
        for v in &self.values {
            insert_nested(&mut root, v.def.key, v.value.clone());
        }
        Value::Object(root)
    }

    /// The `config show --json` document: `config` (nested values), `keys` (per
    /// dotted key: value, source, description, ssm_param, type, used),
    /// `required_unset`, `notes` and `files`.
    pub fn to_json(&self) -> Value {
        let mut keys = Map::new();
        for v in &self.values {
            keys.insert(
                v.def.key.to_string(),
                json!({
                    "value": v.value,
                    "source": v.source.to_string(),
                    "origin": v.source.to_json(),
                    "description": v.description,
                    "ssm_param": v.ssm_param,
                    "type": v.def.kind.type_name(),
                    "nullable": v.def.nullable,
                    "used": v.def.used,
                }),
            );
        }
        json!({
            "config": self.nested_json(),
            "keys": keys,
            "required_unset": self.required_unset().iter().map(|v| json!({
                "key": v.def.key,
                "ssm_param": v.ssm_param,
                "description": v.description,
                "env": v.def.env_var(),
            })).collect::<Vec<_>>(),
            "notes": self.notes,
            "files": self.files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        })
    }

    /// A human-readable table for `ftslm config show`: key, value, source and
    /// Parameter Store name, then the required keys that are unset and the notes.
    pub fn render_table(&self) -> String {
        const MAX_VALUE: usize = 48;
        let rows: Vec<[String; 4]> = self
            .values
            .iter()
            .map(|v| {
                let key = if v.def.used {
                    v.def.key.to_string()
                } else {
                    format!("{}*", v.def.key)
                };
                [
                    key,
                    truncate(&display_value(v), MAX_VALUE),
                    v.source.to_string(),
                    v.ssm_param.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let header = [
            "KEY".to_string(),
            "VALUE".to_string(),
            "SOURCE".to_string(),
            "SSM PARAMETER".to_string(),
        ];
        let mut widths = [0usize; 4];
        for row in std::iter::once(&header).chain(&rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  "));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        if self.values.iter().any(|v| !v.def.used) {
            out.push_str(
                "\n* accepted for compatibility with the original files, not used by ftslm\n",
            );
        }
        let unset = self.required_unset();
        if !unset.is_empty() {
            out.push_str("\nRequired, not set (needed by the AWS commands):\n");
            for v in unset {
                let param = v
                    .ssm_param
                    .as_deref()
                    .map(|p| format!(" [ssm {p}]"))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "  {}{param}: {} (or {} / --set {}=...)\n",
                    v.def.key,
                    v.description,
                    v.def.env_var(),
                    v.def.key
                ));
            }
        }
        if !self.notes.is_empty() {
            out.push_str("\nNotes:\n");
            for note in &self.notes {
                out.push_str(&format!("  {note}\n"));
            }
        }
        out
    }

    /// Where the files were, for messages such as "edit config/training.yml".
    pub fn file_named(&self, name: &str) -> Option<&Path> {
        self.files
            .iter()
            .find(|p| p.file_name().is_some_and(|n| n == name))
            .map(PathBuf::as_path)
    }
}

fn display_value(v: &ResolvedValue) -> String {
    match &v.value {
        Value::Null if v.is_required_unset() => "(not set)".to_string(),
        Value::Null => "null".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect();
            format!("[{}]", parts.join(", "))
        }
        other => other.to_string(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let head: String = s.chars().take(max - 1).collect();
        format!("{head}…")
    }
}

fn insert_nested(root: &mut Map<String, Value>, dotted: &str, value: Value) {
    match dotted.split_once('.') {
        None => {
            root.insert(dotted.to_string(), value);
        }
        Some((head, rest)) => {
            let child = root
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = child {
                insert_nested(map, rest, value);
            }
        }
    }
}
