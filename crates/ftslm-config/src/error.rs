//! Everything that can go wrong while loading configuration, each message naming
//! where the bad value came from and how to fix it.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// Where a value or a mistake came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File { path: PathBuf, line: usize },
    Env { var: String },
    Cli { arg: String },
    Ssm { param: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Env { var } => write!(f, "environment variable {var}"),
            Origin::Cli { arg } => write!(f, "--set {arg}"),
            Origin::Ssm { param } => write!(f, "Parameter Store parameter {param}"),
        }
    }
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    }
}

fn how_to_fix_type(origin: &Origin) -> &'static str {
    match origin {
        Origin::File { .. } => "edit the value in the file",
        Origin::Env { .. } => "change or unset the variable",
        Origin::Cli { .. } => "change the --set value",
        Origin::Ssm { .. } => "overwrite the parameter (aws ssm put-parameter --overwrite)",
    }
}

fn not_set_fix(key: &str, env_var: &str, ssm_param: &Option<String>) -> String {
    let ssm = match ssm_param {
        Some(p) => format!("put Parameter Store parameter {p}, "),
        None => String::new(),
    };
    format!("{ssm}set {env_var}, or pass --set {key}=VALUE")
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(
        "config directory {} does not exist: create it or point --config-dir at the folder \
         holding training_config.yml / aws_config.yml",
        dir.display()
    )]
    ConfigDirMissing { dir: PathBuf },

    #[error(
        "{} and {} are both present: they hold the same settings, keep only one",
        first.display(),
        second.display()
    )]
    AmbiguousConfigFile { first: PathBuf, second: PathBuf },

    #[error(
        "{} is not a file (a folder?); a config file is YAML — remove or rename it",
        path.display()
    )]
    ConfigNotAFile { path: PathBuf },

    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{}:{line}:{column}: not valid YAML: {message}", path.display())]
    Yaml {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    #[error(
        "{origin}: unknown key `{key}`{}; `ftslm config show` lists every key",
        did_you_mean(suggestion)
    )]
    UnknownKey {
        key: String,
        origin: Origin,
        suggestion: Option<String>,
    },

    #[error(
        "{origin}: `{key}` is a section, not a value; set one of its keys instead, e.g. `{example}`"
    )]
    SectionNotValue {
        key: String,
        origin: Origin,
        example: String,
    },

    #[error(
        "{origin}: `{key}` expects {expected}, found {found}; {}",
        how_to_fix_type(origin)
    )]
    WrongType {
        key: String,
        expected: String,
        found: String,
        origin: Origin,
    },

    #[error(
        "{origin}: `{key}` is a Parameter Store reference with an unknown field `{field}`{}; \
         a reference has ssm_param, default and description",
        did_you_mean(suggestion)
    )]
    UnknownReferenceField {
        key: String,
        field: String,
        origin: Origin,
        suggestion: Option<String>,
    },

    #[error("{origin}: `{key}`: {reason}")]
    BadReference {
        key: String,
        origin: Origin,
        reason: String,
    },

    #[error(
        "--set {arg}: {reason}; write --set section.key=value, e.g. --set training.max_steps=30"
    )]
    BadSetArgument { arg: String, reason: String },

    #[error(
        "environment variable {var}: its value is not valid UTF-8; unset it or set it to text"
    )]
    EnvNotUnicode { var: String },

    #[error("`{key}` is set in both {first} and {second}: keep it in one file")]
    DuplicateKey {
        key: String,
        first: Origin,
        second: Origin,
    },

    #[error(
        "Parameter Store parameter {param} has default {first_value} at {first} but \
         {second_value} at {second}: one parameter has one value, make the defaults agree"
    )]
    ConflictingParameterDefaults {
        param: String,
        // Boxed: this rare variant would otherwise double the size of every Result.
        first: Box<Origin>,
        first_value: String,
        second: Box<Origin>,
        second_value: String,
    },

    #[error(
        "`{key}` is required but not set ({description}); {}",
        not_set_fix(key, env_var, ssm_param)
    )]
    NotSet {
        key: String,
        description: String,
        ssm_param: Option<String>,
        env_var: String,
    },

    #[error("section `{section}` does not fit its settings type: {reason} (a bug in ftslm)")]
    Section { section: String, reason: String },
}
