//! The model's own chat template, rendered the way transformers renders it.
//!
//! Training and inference both go through [`ChatTemplate::render`], so the prompt
//! a model is tested with is byte for byte the prompt it was trained on. The
//! template text comes from `tokenizer_config.json` (or `chat_template.jinja`
//! beside it) and runs in minijinja configured like transformers' Jinja
//! environment: `trim_blocks`, `lstrip_blocks`, no trailing newline kept, loop
//! controls, `raise_exception`, `strftime_now`, a Python-compatible `tojson`, and
//! Python string/dict methods (`.strip()`, `.startswith()`, `.items()`, ...).
//!
//! Base models ship without a template; they get a plain Llama 3.1 chat format
//! (see [`LLAMA31_TEMPLATE`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Serde};
use minijinja::{Environment, ErrorKind, Value};
use serde_json::Value as Json;

use crate::record::ChatMessage;

/// The Llama 3.1 conversation format, for base models that carry no template.
///
/// It is Meta's documented turn layout (`<|begin_of_text|>`, then per message
/// `<|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>`, contents
/// trimmed) without the official template's tool-calling branches and without
/// the "Cutting Knowledge Date"/"Today Date" preamble it prepends to the system
/// turn: that preamble would make the prompt depend on the day it is rendered,
/// and a fine-tuned extractor gains nothing from it.
pub const LLAMA31_TEMPLATE: &str = "{{- '<|begin_of_text|>' }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}
    {{- message['content'] | trim }}
    {{- '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
";

/// The token that closes a turn in [`LLAMA31_TEMPLATE`]; a base Llama 3.1's
/// `eos_token` is `<|end_of_text|>`, which is not what ends a chat turn.
const LLAMA31_END_OF_TURN: &str = "<|eot_id|>";

const TEMPLATE_NAME: &str = "chat_template";

/// What can go wrong loading or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not valid JSON ({source}); re-download the model's tokenizer files", path.display())]
    ParseConfig {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("field `{field}` in {}: {reason}", path.display())]
    BadField {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("chat template from {origin} does not compile: {message}; fix the template text")]
    Compile { origin: String, message: String },
    #[error("chat template from {origin} rejected the conversation: {message}")]
    Raised { origin: String, message: String },
    #[error("chat template from {origin} failed to render: {message}")]
    Render { origin: String, message: String },
}

/// The names transformers passes to every render (`special_tokens_map`).
pub const SPECIAL_TOKEN_NAMES: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// The special tokens a template renders with, by name (`bos_token`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub named: BTreeMap<String, String>,
    pub additional_special_tokens: Vec<String>,
}

impl SpecialTokens {
    /// `name` is one of [`SPECIAL_TOKEN_NAMES`].
    pub fn get(&self, name: &str) -> Option<&str> {
        self.named.get(name).map(String::as_str)
    }

    pub fn with(mut self, name: &str, token: &str) -> Self {
        self.named.insert(name.to_string(), token.to_string());
        self
    }

    /// Reads the tokens from a parsed `tokenizer_config.json`, where each is a
    /// string, an AddedToken object `{"content": ...}`, null, or absent.
    fn from_config(config: &Json, path: &Path) -> Result<Self, TemplateError> {
        let bad = |field: &str| TemplateError::BadField {
            path: path.to_path_buf(),
            field: field.to_string(),
            reason: "expected a token: a string or an object with a string `content`".into(),
        };
        let mut tokens = SpecialTokens::default();
        for name in SPECIAL_TOKEN_NAMES {
            match config.get(name) {
                None | Some(Json::Null) => {}
                Some(value) => {
                    let token = token_content(value).ok_or_else(|| bad(name))?;
                    tokens.named.insert(name.to_string(), token);
                }
            }
        }
        let additional = "additional_special_tokens";
        match config.get(additional) {
            None | Some(Json::Null) => {}
            Some(Json::Array(items)) => {
                for item in items {
                    let token = token_content(item).ok_or_else(|| bad(additional))?;
                    tokens.additional_special_tokens.push(token);
                }
            }
            Some(_) => return Err(bad(additional)),
        }
        Ok(tokens)
    }
}

fn token_content(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Object(map) => map.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// A compiled chat template plus the special tokens it renders with.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    origin: String,
    special_tokens: SpecialTokens,
    end_of_turn_token: Option<String>,
    fallback: bool,
}

impl ChatTemplate {
    /// Loads the template of a model from its `tokenizer_config.json`.
    ///
    /// `chat_template` may be a string or a list of `{name, template}` (the one
    /// named `default` is used). Without it, `chat_template.jinja` beside the
    /// file is used (newer transformers save it there); without either, the
    /// built-in Llama 3.1 format, and [`is_fallback`](Self::is_fallback) says so.
    pub fn from_tokenizer_config(path: &Path) -> Result<ChatTemplate, TemplateError> {
        let text = read(path)?;
        let config: Json =
            serde_json::from_str(&text).map_err(|source| TemplateError::ParseConfig {
                path: path.to_path_buf(),
                source,
            })?;
        let special_tokens = SpecialTokens::from_config(&config, path)?;
        let origin = path.display().to_string();
        if let Some(source) = template_text(&config, path)? {
            return ChatTemplate::from_source(&source, &origin, special_tokens);
        }
        let beside = path.with_file_name("chat_template.jinja");
        if beside.is_file() {
            let origin = beside.display().to_string();
            return ChatTemplate::from_source(&read(&beside)?, &origin, special_tokens);
        }
        Ok(ChatTemplate::llama31_with(
            &format!("the built-in Llama 3.1 template ({origin} has no chat_template)"),
            special_tokens,
        ))
    }

    /// The built-in Llama 3.1 format with Llama 3.1's own special tokens.
    pub fn llama31() -> ChatTemplate {
        let special_tokens = SpecialTokens::default()
            .with("bos_token", "<|begin_of_text|>")
            .with("eos_token", LLAMA31_END_OF_TURN);
        ChatTemplate::llama31_with("the built-in Llama 3.1 template", special_tokens)
    }

    fn llama31_with(origin: &str, special_tokens: SpecialTokens) -> ChatTemplate {
        let mut template = ChatTemplate::from_source(LLAMA31_TEMPLATE, origin, special_tokens)
            .expect("the built-in Llama 3.1 template is a constant that compiles (tested)");
        template.fallback = true;
        template.end_of_turn_token = Some(LLAMA31_END_OF_TURN.to_string());
        template
    }

    /// Compiles `source`; `origin` names where it came from in error messages.
    /// The end-of-turn token is `special_tokens.eos_token`.
    pub fn from_source(
        source: &str,
        origin: &str,
        special_tokens: SpecialTokens,
    ) -> Result<ChatTemplate, TemplateError> {
        let mut env = environment();
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(|err| TemplateError::Compile {
                origin: origin.to_string(),
                message: describe(&err),
            })?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            origin: origin.to_string(),
            end_of_turn_token: special_tokens.get("eos_token").map(str::to_string),
            special_tokens,
            fallback: false,
        })
    }

    /// Renders a conversation. With `add_generation_prompt` the text ends where
    /// the assistant's reply begins.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        let template =
            self.env
                .get_template(TEMPLATE_NAME)
                .map_err(|err| TemplateError::Compile {
                    origin: self.origin.clone(),
                    message: describe(&err),
                })?;
        let mut context: BTreeMap<String, Value> = BTreeMap::new();
        context.insert("messages".into(), Value::from(Serde(messages)));
        context.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        // transformers passes these as None; `tools is not none` must be false.
        context.insert("tools".into(), Value::from(()));
        context.insert("documents".into(), Value::from(()));
        for (name, token) in &self.special_tokens.named {
            context.insert(name.clone(), Value::from(token.as_str()));
        }
        context.insert(
            "additional_special_tokens".into(),
            Value::from(Serde(&self.special_tokens.additional_special_tokens)),
        );
        template
            .render(Value::from(context))
            .map_err(|err| match raised_message(&err) {
                Some(message) => TemplateError::Raised {
                    origin: self.origin.clone(),
                    message,
                },
                None => TemplateError::Render {
                    origin: self.origin.clone(),
                    message: describe(&err),
                },
            })
    }

    /// True when the model had no template and the Llama 3.1 format is used.
    pub fn is_fallback(&self) -> bool {
        self.fallback
    }

    /// Where the template came from, for messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special_tokens
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.special_tokens.get("bos_token")
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.special_tokens.get("eos_token")
    }

    pub fn pad_token(&self) -> Option<&str> {
        self.special_tokens.get("pad_token")
    }

    /// The token that closes an assistant turn: the model's `eos_token`, or
    /// `<|eot_id|>` for the Llama 3.1 fallback.
    pub fn end_of_turn_token(&self) -> Option<&str> {
        self.end_of_turn_token.as_deref()
    }
}

fn read(path: &Path) -> Result<String, TemplateError> {
    std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads `chat_template`: a string, or a list of named templates.
fn template_text(config: &Json, path: &Path) -> Result<Option<String>, TemplateError> {
    let bad = |reason: String| TemplateError::BadField {
        path: path.to_path_buf(),
        field: "chat_template".into(),
        reason,
    };
    match config.get("chat_template") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(Json::Array(items)) => {
            let mut names = Vec::new();
            for item in items {
                let name = item.get("name").and_then(Json::as_str);
                let template = item.get("template").and_then(Json::as_str);
                match (name, template) {
                    (Some("default"), Some(template)) => return Ok(Some(template.to_string())),
                    (Some(name), Some(_)) => names.push(name.to_string()),
                    _ => {
                        return Err(bad(
                            "every list item must be {\"name\": ..., \"template\": ...}".into(),
                        ))
                    }
                }
            }
            Err(bad(format!(
                "no template named `default` among [{}]; name the one to train with `default`",
                names.join(", ")
            )))
        }
        Some(_) => Err(bad(
            "expected a template string or a list of {name, template}".into(),
        )),
    }
}

/// minijinja set up like transformers' `ImmutableSandboxedEnvironment`.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build();
    if let Ok(syntax) = syntax {
        env.set_syntax(syntax);
    }
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env
}

/// Marks an error as the template's own `raise_exception(msg)`, so the message
/// reaches the user unchanged instead of as a generic render failure.
#[derive(Debug)]
struct RaisedByTemplate(String);

impl fmt::Display for RaisedByTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedByTemplate {}

fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(
        minijinja::Error::new(ErrorKind::InvalidOperation, message.clone())
            .with_source(RaisedByTemplate(message)),
    )
}

fn raised_message(err: &minijinja::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(raised) = current.downcast_ref::<RaisedByTemplate>() {
            return Some(raised.0.clone());
        }
        source = current.source();
    }
    None
}

fn describe(err: &minijinja::Error) -> String {
    match err.line() {
        Some(line) => format!("{} (template line {line})", err.detail().unwrap_or("error")),
        None => err.to_string(),
    }
}

/// transformers' `strftime_now`. Python uses local time; we use UTC so a
/// rendering does not depend on the machine's time zone.
fn strftime_now(format: String) -> Result<Value, minijinja::Error> {
    format_utc(&format, chrono::Utc::now().timestamp()).map(Value::from)
}

/// C `strftime` directives for a UTC timestamp; a directive chrono does not
/// know is a template error rather than a silently wrong date.
fn format_utc(format: &str, unix_secs: i64) -> Result<String, minijinja::Error> {
    use std::fmt::Write;
    let time = chrono::DateTime::from_timestamp(unix_secs, 0).unwrap_or_default();
    let mut out = String::new();
    write!(out, "{}", time.format(format)).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: unsupported format {format:?}"),
        )
    })?;
    Ok(out)
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=indent,
/// separators=separators, sort_keys=sort_keys)`. minijinja's own filter
/// HTML-escapes `<`, `>`, `&` and `'`, which would change the prompt.
fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let indent: Option<Value> = match indent {
        Some(indent) => Some(indent),
        None => kwargs.get("indent")?,
    };
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;

    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => Some(" ".repeat(usize::try_from(v)?)),
        },
    };
    let (item_sep, key_sep) = match separators.as_deref() {
        Some([item, key]) => (item.clone(), key.clone()),
        Some(_) => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair (item_separator, key_separator)",
            ))
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let json = serde_json::to_value(value).map_err(|err| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "tojson: value is not serializable",
        )
        .with_source(err)
    })?;
    let style = PythonJsonStyle {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    style.write(&json, 0, &mut out);
    Ok(Value::from(out))
}

struct PythonJsonStyle {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl PythonJsonStyle {
    fn write(&self, value: &Json, depth: usize, out: &mut String) {
        match value {
            Json::Array(items) if !items.is_empty() => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    self.separate(i == 0, depth + 1, out);
                    self.write(item, depth + 1, out);
                }
                self.close(depth, out);
                out.push(']');
            }
            Json::Object(map) if !map.is_empty() => {
                let mut entries: Vec<(&String, &Json)> = map.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (key, item)) in entries.into_iter().enumerate() {
                    self.separate(i == 0, depth + 1, out);
                    out.push_str(&Json::String(key.clone()).to_string());
                    out.push_str(&self.key_sep);
                    self.write(item, depth + 1, out);
                }
                self.close(depth, out);
                out.push('}');
            }
            Json::Array(_) => out.push_str("[]"),
            Json::Object(_) => out.push_str("{}"),
            Json::Null => out.push_str("null"),
            // serde_json escapes strings as Python does with ensure_ascii=False.
            other => out.push_str(&other.to_string()),
        }
    }

    fn separate(&self, first: bool, depth: usize, out: &mut String) {
        if !first {
            out.push_str(&self.item_sep);
        }
        if let Some(indent) = &self.indent {
            out.push('\n');
            out.push_str(&indent.repeat(depth));
        }
    }

    fn close(&self, depth: usize, out: &mut String) {
        if let Some(indent) = &self.indent {
            out.push('\n');
            out.push_str(&indent.repeat(depth));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_matches_python_for_a_leap_day() {
        // Python: datetime.fromtimestamp(1709251199, timezone.utc).strftime(...)
        let f = |fmt: &str, t: i64| format_utc(fmt, t).unwrap();
        assert_eq!(
            f("%d %b %Y|%A %a %B %j %y %I %p %H:%M:%S %%", 1_709_251_199),
            "29 Feb 2024|Thursday Thu February 060 24 11 PM 23:59:59 %"
        );
        assert_eq!(f("%-d %-m", 1_709_251_199), "29 2");
        assert_eq!(f("%Y-%m-%d %e", 0), "1970-01-01  1");
        assert!(format_utc("%Q", 0).is_err());
    }
}
