//! Putting the layers together, later wins: built-in defaults < YAML files <
//! Parameter Store (in place of a reference's default) < `FTSLM_*` environment <
//! `--set`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{ConfigError, Origin};
use crate::file::{self, FileLeaf, LeafContent};
use crate::parameters::ParameterSource;
use crate::resolved::{ResolvedConfig, ResolvedValue, Source};
use crate::schema::{self, KeyDef, Lit, SCHEMA};
use crate::value::{coerce, parse_parameter, parse_text, Raw};

/// Where config files are looked for unless `--config-dir` says otherwise.
pub const DEFAULT_CONFIG_DIR: &str = "config";

/// Accepted names of the two files, the original's first.
pub const TRAINING_FILE_NAMES: [&str; 2] = ["training_config.yml", "training.yml"];
pub const AWS_FILE_NAMES: [&str; 2] = ["aws_config.yml", "aws.yml"];

const ENV_PREFIX: &str = "FTSLM_";

/// Builds a [`ResolvedConfig`] from files, Parameter Store, environment and `--set`.
#[derive(Clone, Default)]
pub struct ConfigLoader<'a> {
    config_dir: Option<PathBuf>,
    sets: Vec<String>,
    env: BTreeMap<String, String>,
    env_not_unicode: Vec<String>,
    parameters: Option<&'a dyn ParameterSource>,
}

/// A value being resolved.
struct Slot {
    def: &'static KeyDef,
    value: Value,
    source: Source,
    reference: Option<String>,
    description: String,
}

/// A default declared for a parameter, and where.
struct ParamDefault {
    raw: Raw,
    source: Source,
}

impl<'a> ConfigLoader<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The folder holding the config files. `None` means `config/`, which may be
    /// absent; a folder named here must exist.
    pub fn config_dir(mut self, dir: Option<&Path>) -> Self {
        self.config_dir = dir.map(Path::to_path_buf);
        self
    }

    /// `--set section.key=value` arguments, applied in order.
    pub fn sets<S: AsRef<str>>(mut self, sets: &[S]) -> Self {
        self.sets = sets.iter().map(|s| s.as_ref().to_string()).collect();
        self
    }

    /// The environment to read `FTSLM_<SECTION>__<KEY>` variables from (replaces
    /// any set before). Variables without `__` after the prefix are not config keys
    /// (e.g. `FTSLM_SHARED`) and are ignored.
    pub fn env_vars<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.env_not_unicode.clear();
        self
    }

    /// Reads the `FTSLM_*` variables of this process.
    pub fn env_from_process(mut self) -> Self {
        self.env.clear();
        self.env_not_unicode.clear();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().map(str::to_string) else {
                continue;
            };
            if !is_config_var(&name) {
                continue;
            }
            match value.into_string() {
                Ok(value) => {
                    self.env.insert(name, value);
                }
                Err(_) => self.env_not_unicode.push(name),
            }
        }
        self
    }

    /// Where `ssm_param` references are looked up; `None` (as for `--no-ssm`)
    /// resolves them to their defaults.
    pub fn parameter_source(mut self, source: Option<&'a dyn ParameterSource>) -> Self {
        self.parameters = source;
        self
    }

    /// Reads every layer. A missing default config dir or file is a note; a
    /// misspelt key, a value of the wrong type or a bad `--set` is an error.
    pub fn load(&self) -> Result<ResolvedConfig, ConfigError> {
        let mut notes = Vec::new();
        let files = self.config_files(&mut notes)?;
        let mut slots: Vec<Slot> = SCHEMA.iter().map(Slot::builtin).collect();
        let declared = apply_files(&files, &mut slots)?;
        self.resolve_references(&mut slots, declared, &mut notes)?;
        self.apply_env(&mut slots)?;
        self.apply_sets(&mut slots)?;
        let values = slots
            .into_iter()
            .map(|s| ResolvedValue {
                def: s.def,
                value: s.value,
                source: s.source,
                description: s.description,
                ssm_param: s.reference,
            })
            .collect();
        Ok(ResolvedConfig::new(values, notes, files))
    }

    /// The AWS region as every layer but Parameter Store gives it: the region
    /// Parameter Store itself must be asked in.
    pub fn region_without_parameters(&self) -> Result<String, ConfigError> {
        let offline = self.clone().parameter_source(None).load()?;
        Ok(offline.str("aws.region").unwrap_or("us-east-1").to_string())
    }

    fn config_files(&self, notes: &mut Vec<String>) -> Result<Vec<PathBuf>, ConfigError> {
        let (dir, named) = match &self.config_dir {
            Some(dir) => (dir.clone(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_DIR), false),
        };
        if !dir.is_dir() {
            if named {
                return Err(ConfigError::ConfigDirMissing { dir });
            }
            notes.push(format!(
                "no config directory {}/ here; using built-in defaults (--config-dir DIR to use another)",
                dir.display()
            ));
            return Ok(Vec::new());
        }
        let mut files = Vec::new();
        for (what, names) in [("training", TRAINING_FILE_NAMES), ("AWS", AWS_FILE_NAMES)] {
            let present: Vec<PathBuf> = names
                .iter()
                .map(|n| dir.join(n))
                .filter(|p| p.exists())
                .collect();
            if let Some(odd) = present.iter().find(|p| !p.is_file()) {
                return Err(ConfigError::ConfigNotAFile { path: odd.clone() });
            }
            match present.as_slice() {
                [] => notes.push(format!(
                    "no {what} config ({} or {}) in {}; its keys use built-in defaults",
                    names[0],
                    names[1],
                    dir.display()
                )),
                [one] => files.push(one.clone()),
                [first, second, ..] => {
                    return Err(ConfigError::AmbiguousConfigFile {
                        first: first.clone(),
                        second: second.clone(),
                    })
                }
            }
        }
        Ok(files)
    }

    fn resolve_references(
        &self,
        slots: &mut [Slot],
        declared: Vec<(String, ParamDefault)>,
        notes: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let defaults = parameter_defaults(declared)?;
        let mut names: Vec<String> = slots.iter().filter_map(|s| s.reference.clone()).collect();
        names.sort();
        names.dedup();
        let found = match (self.parameters, names.is_empty()) {
            (_, true) => BTreeMap::new(),
            (None, false) => {
                notes.push(format!(
                    "Parameter Store lookups are off; the keys referencing its {} parameters use their defaults",
                    names.len()
                ));
                BTreeMap::new()
            }
            (Some(source), false) => match source.fetch(&names) {
                Ok(found) => {
                    let missing: Vec<&str> = names
                        .iter()
                        .filter(|n| !found.contains_key(*n))
                        .map(String::as_str)
                        .collect();
                    if !missing.is_empty() {
                        notes.push(format!(
                            "Parameter Store has no value for {} of {} referenced parameters ({}); their keys use defaults",
                            missing.len(),
                            names.len(),
                            missing.join(", ")
                        ));
                    }
                    found
                }
                Err(e) => {
                    notes.push(format!("SSM not reachable ({e}); using defaults"));
                    BTreeMap::new()
                }
            },
        };
        for slot in slots.iter_mut() {
            let Some(param) = slot.reference.clone() else {
                continue;
            };
            if let Some(text) = found.get(&param) {
                let origin = Origin::Ssm {
                    param: param.clone(),
                };
                let raw = parse_parameter(slot.def, text).map_err(|reason| {
                    let found = format!("\"{text}\", which {reason}");
                    wrong_type(slot.def, origin.clone(), slot.def.kind.to_string(), found)
                })?;
                slot.value = coerce(slot.def, &raw)
                    .map_err(|m| wrong_type(slot.def, origin, m.expected, m.found))?;
                slot.source = Source::Ssm { path: param };
            } else if let Some(default) = defaults.get(&param) {
                slot.value = coerce(slot.def, &default.raw).map_err(|m| {
                    wrong_type(
                        slot.def,
                        origin_of(&default.source, &param),
                        m.expected,
                        m.found,
                    )
                })?;
                slot.source = default.source.clone();
            } else {
                slot.value = Value::Null;
            }
        }
        Ok(())
    }

    fn apply_env(&self, slots: &mut [Slot]) -> Result<(), ConfigError> {
        if let Some(var) = self.env_not_unicode.first() {
            return Err(ConfigError::EnvNotUnicode { var: var.clone() });
        }
        for (var, text) in &self.env {
            if !is_config_var(var) {
                continue;
            }
            let key = var[ENV_PREFIX.len()..]
                .split("__")
                .map(str::to_ascii_lowercase)
                .collect::<Vec<_>>()
                .join(".");
            let origin = Origin::Env { var: var.clone() };
            let slot = find_slot(slots, &key, &origin, |def| def.env_var())?;
            set_from_text(slot, text, origin, Source::Env { var: var.clone() })?;
        }
        Ok(())
    }

    fn apply_sets(&self, slots: &mut [Slot]) -> Result<(), ConfigError> {
        for arg in &self.sets {
            let Some((key, text)) = arg.split_once('=') else {
                return Err(ConfigError::BadSetArgument {
                    arg: arg.clone(),
                    reason: "there is no `=` between key and value".to_string(),
                });
            };
            let key = key.trim().to_ascii_lowercase();
            if key.is_empty() {
                return Err(ConfigError::BadSetArgument {
                    arg: arg.clone(),
                    reason: "the key before `=` is empty".to_string(),
                });
            }
            let origin = Origin::Cli { arg: arg.clone() };
            let slot = find_slot(slots, &key, &origin, |def| def.key.to_string())?;
            set_from_text(slot, text, origin, Source::Cli)?;
        }
        Ok(())
    }
}

impl Slot {
    fn builtin(def: &'static KeyDef) -> Slot {
        Slot {
            def,
            value: def.default.to_json(),
            source: Source::Default,
            reference: def.ssm_param.map(str::to_string),
            description: def.description.to_string(),
        }
    }
}

fn is_config_var(name: &str) -> bool {
    name.len() > ENV_PREFIX.len()
        && name.is_char_boundary(ENV_PREFIX.len())
        && name[..ENV_PREFIX.len()].eq_ignore_ascii_case(ENV_PREFIX)
        && name[ENV_PREFIX.len()..].contains("__")
}

fn wrong_type(def: &KeyDef, origin: Origin, expected: String, found: String) -> ConfigError {
    ConfigError::WrongType {
        key: def.key.to_string(),
        expected,
        found,
        origin,
    }
}

fn origin_of(source: &Source, param: &str) -> Origin {
    match source {
        Source::File { path, line } => Origin::File {
            path: path.clone(),
            line: *line,
        },
        _ => Origin::Ssm {
            param: param.to_string(),
        },
    }
}

/// Applies the files' leaves in order and returns the defaults their references
/// declare, per parameter.
fn apply_files(
    files: &[PathBuf],
    slots: &mut [Slot],
) -> Result<Vec<(String, ParamDefault)>, ConfigError> {
    let mut seen: HashMap<&'static str, Origin> = HashMap::new();
    let mut declared = Vec::new();
    for path in files {
        for leaf in file::read(path)? {
            if let Some(first) = seen.insert(leaf.def.key, leaf.origin()) {
                return Err(ConfigError::DuplicateKey {
                    key: leaf.def.key.to_string(),
                    first,
                    second: leaf.origin(),
                });
            }
            apply_leaf(leaf, slots, &mut declared);
        }
    }
    Ok(declared)
}

fn apply_leaf(leaf: FileLeaf, slots: &mut [Slot], declared: &mut Vec<(String, ParamDefault)>) {
    let source = Source::File {
        path: leaf.path.clone(),
        line: leaf.line,
    };
    let Some(slot) = slots.iter_mut().find(|s| s.def.key == leaf.def.key) else {
        return;
    };
    match leaf.content {
        LeafContent::Value(value) => {
            slot.value = value;
            slot.reference = None;
        }
        LeafContent::Reference {
            param,
            default,
            description,
        } => {
            if let Some((raw, line)) = default {
                let source = Source::File {
                    path: leaf.path.clone(),
                    line,
                };
                declared.push((param.clone(), ParamDefault { raw, source }));
            }
            if let Some(description) = description {
                slot.description = description;
            }
            slot.value = Value::Null;
            slot.reference = Some(param);
        }
    }
    slot.source = source;
}

/// One parameter has one value, so it has one default: the one the files declare
/// (they must agree), else the built-in default of a key bound to it.
fn parameter_defaults(
    declared: Vec<(String, ParamDefault)>,
) -> Result<BTreeMap<String, ParamDefault>, ConfigError> {
    let mut defaults: BTreeMap<String, ParamDefault> = BTreeMap::new();
    for (param, default) in declared {
        match defaults.get(&param) {
            Some(first) if first.raw != default.raw => {
                return Err(ConfigError::ConflictingParameterDefaults {
                    first: Box::new(origin_of(&first.source, &param)),
                    first_value: first.raw.describe(),
                    second: Box::new(origin_of(&default.source, &param)),
                    second_value: default.raw.describe(),
                    param,
                })
            }
            Some(_) => {}
            None => {
                defaults.insert(param, default);
            }
        }
    }
    for def in SCHEMA {
        if let (Some(param), false) = (def.ssm_param, def.default == Lit::Null) {
            defaults
                .entry(param.to_string())
                .or_insert_with(|| ParamDefault {
                    raw: lit_raw(def.default),
                    source: Source::Default,
                });
        }
    }
    Ok(defaults)
}

fn lit_raw(lit: Lit) -> Raw {
    match lit {
        Lit::Null => Raw::Null,
        Lit::Bool(b) => Raw::Bool(b, b.to_string()),
        Lit::Int(i) => Raw::Int(i, i.to_string()),
        Lit::Float(x) => Raw::Float(x, x.to_string()),
        Lit::Str(s) => Raw::Str(s.to_string()),
        Lit::StrList(items) => Raw::Seq(items.iter().map(|s| Raw::Str(s.to_string())).collect()),
    }
}

fn find_slot<'s>(
    slots: &'s mut [Slot],
    key: &str,
    origin: &Origin,
    spell: impl Fn(&KeyDef) -> String,
) -> Result<&'s mut Slot, ConfigError> {
    if let Some(slot) = slots.iter_mut().find(|s| s.def.key == key) {
        return Ok(slot);
    }
    if schema::is_section(key) {
        let example = SCHEMA
            .iter()
            .find(|d| d.key.starts_with(key) && d.key.as_bytes().get(key.len()) == Some(&b'.'))
            .map_or_else(String::new, &spell);
        return Err(ConfigError::SectionNotValue {
            key: key.to_string(),
            origin: origin.clone(),
            example,
        });
    }
    Err(ConfigError::UnknownKey {
        key: key.to_string(),
        origin: origin.clone(),
        suggestion: schema::suggest(key).and_then(schema::find).map(spell),
    })
}

fn set_from_text(
    slot: &mut Slot,
    text: &str,
    origin: Origin,
    source: Source,
) -> Result<(), ConfigError> {
    let raw = parse_text(slot.def, text).map_err(|reason| {
        wrong_type(
            slot.def,
            origin.clone(),
            slot.def.kind.to_string(),
            format!("\"{text}\", which {reason}"),
        )
    })?;
    slot.value =
        coerce(slot.def, &raw).map_err(|m| wrong_type(slot.def, origin, m.expected, m.found))?;
    slot.source = source;
    Ok(())
}
