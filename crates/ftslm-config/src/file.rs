//! Reading one YAML config file into checked leaves with their line numbers. A
//! leaf is either a plain value or, as in the original files, a Parameter Store
//! reference `{ssm_param: PATH, default: V, description: D}`.

use std::path::{Path, PathBuf};

use saphyr::{
    AnnotatedMappingOwned, LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned,
};
use serde_json::Value;

use crate::error::{ConfigError, Origin};
use crate::schema::{self, KeyDef};
use crate::value::{coerce, Raw};

const REFERENCE_FIELDS: [&str; 3] = ["ssm_param", "default", "description"];

/// One key found in a file.
#[derive(Debug, Clone)]
pub(crate) struct FileLeaf {
    pub def: &'static KeyDef,
    pub path: PathBuf,
    /// Line of the key (1-based).
    pub line: usize,
    pub content: LeafContent,
}

impl FileLeaf {
    pub(crate) fn origin(&self) -> Origin {
        Origin::File {
            path: self.path.clone(),
            line: self.line,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum LeafContent {
    /// A plain value, already checked against the key's type.
    Value(Value),
    /// A reference into Parameter Store; the default is checked per key later
    /// because keys sharing a parameter share its default.
    Reference {
        param: String,
        default: Option<(Raw, usize)>,
        description: Option<String>,
    },
}

pub(crate) fn read(path: &Path) -> Result<Vec<FileLeaf>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

pub(crate) fn parse(path: &Path, text: &str) -> Result<Vec<FileLeaf>, ConfigError> {
    let docs = MarkedYamlOwned::load_from_str(text).map_err(|e| ConfigError::Yaml {
        path: path.to_path_buf(),
        line: e.marker().line(),
        column: e.marker().col() + 1,
        message: e.info().to_string(),
    })?;
    let reader = Reader {
        path,
        chars: text.chars().collect(),
    };
    let mut leaves = Vec::new();
    match docs.as_slice() {
        [] => {}
        [doc] => reader.section(doc, "", &mut leaves)?,
        [_, second, ..] => {
            return Err(ConfigError::Yaml {
                path: path.to_path_buf(),
                line: second.span.start.line(),
                column: 1,
                message: "a second YAML document (---) follows; a config file holds one"
                    .to_string(),
            })
        }
    }
    Ok(leaves)
}

struct Reader<'a> {
    path: &'a Path,
    chars: Vec<char>,
}

impl Reader<'_> {
    fn origin(&self, node: &MarkedYamlOwned) -> Origin {
        Origin::File {
            path: self.path.to_path_buf(),
            line: node.span.start.line(),
        }
    }

    /// The source text of a scalar, so string keys keep exactly what was written.
    fn text(&self, node: &MarkedYamlOwned) -> String {
        let (start, end) = (node.span.start.index(), node.span.end.index());
        match self.chars.get(start..end) {
            Some(slice) if start < end => slice.iter().collect::<String>().trim().to_string(),
            _ => String::new(),
        }
    }

    fn raw(&self, node: &MarkedYamlOwned) -> Raw {
        match &node.data {
            YamlDataOwned::Value(scalar) => {
                let text = self.text(node);
                let text = if text.is_empty() {
                    display_scalar(scalar)
                } else {
                    text
                };
                Raw::from_scalar(&scalar.as_scalar(), &text)
            }
            YamlDataOwned::Sequence(items) => Raw::Seq(items.iter().map(|i| self.raw(i)).collect()),
            YamlDataOwned::Mapping(map) => Raw::Map(map.keys().map(|k| self.text(k)).collect()),
            YamlDataOwned::Tagged(_, inner) => self.raw(inner),
            YamlDataOwned::Representation(s, _, _) => Raw::Str(s.clone()),
            YamlDataOwned::Alias(_) | YamlDataOwned::BadValue => Raw::Invalid,
        }
    }

    fn section(
        &self,
        node: &MarkedYamlOwned,
        prefix: &str,
        out: &mut Vec<FileLeaf>,
    ) -> Result<(), ConfigError> {
        let map = match &node.data {
            YamlDataOwned::Mapping(map) => map,
            YamlDataOwned::Value(ScalarOwned::Null) => return Ok(()),
            YamlDataOwned::Tagged(_, inner) => return self.section(inner, prefix, out),
            _ => {
                return Err(ConfigError::WrongType {
                    key: if prefix.is_empty() {
                        "(top level)".to_string()
                    } else {
                        prefix.to_string()
                    },
                    expected: "a mapping of keys".to_string(),
                    found: self.raw(node).describe(),
                    origin: self.origin(node),
                })
            }
        };
        for (key_node, value) in map {
            let Some(name) = key_node.data.as_str() else {
                return Err(ConfigError::WrongType {
                    key: format!("{prefix}.?"),
                    expected: "a key that is a string".to_string(),
                    found: self.raw(key_node).describe(),
                    origin: self.origin(key_node),
                });
            };
            let full = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            };
            if let Some(def) = schema::find(&full) {
                out.push(self.leaf(def, key_node, value)?);
            } else if schema::is_section(&full) {
                self.section(value, &full, out)?;
            } else {
                return Err(ConfigError::UnknownKey {
                    suggestion: schema::suggest(&full).map(str::to_string),
                    key: full,
                    origin: self.origin(key_node),
                });
            }
        }
        Ok(())
    }

    fn leaf(
        &self,
        def: &'static KeyDef,
        key_node: &MarkedYamlOwned,
        value: &MarkedYamlOwned,
    ) -> Result<FileLeaf, ConfigError> {
        let line = key_node.span.start.line();
        let content = match &value.data {
            YamlDataOwned::Mapping(map)
                if map.keys().any(|k| k.data.as_str() == Some("ssm_param")) =>
            {
                self.reference(def, map)?
            }
            _ => {
                let raw = self.raw(value);
                let checked = coerce(def, &raw).map_err(|m| ConfigError::WrongType {
                    key: def.key.to_string(),
                    expected: match raw {
                        Raw::Map(_) => format!(
                            "{} or a Parameter Store reference {{ssm_param: PATH, default: VALUE}}",
                            m.expected
                        ),
                        _ => m.expected,
                    },
                    found: m.found,
                    origin: Origin::File {
                        path: self.path.to_path_buf(),
                        line,
                    },
                })?;
                LeafContent::Value(checked)
            }
        };
        Ok(FileLeaf {
            def,
            path: self.path.to_path_buf(),
            line,
            content,
        })
    }

    fn reference(
        &self,
        def: &'static KeyDef,
        map: &AnnotatedMappingOwned<MarkedYamlOwned>,
    ) -> Result<LeafContent, ConfigError> {
        let mut param = None;
        let mut default = None;
        let mut description = None;
        for (field_node, value) in map {
            let field = field_node.data.as_str().unwrap_or_default();
            let bad = |reason: String| ConfigError::BadReference {
                key: def.key.to_string(),
                origin: self.origin(value),
                reason,
            };
            match field {
                "ssm_param" => match value.data.as_str() {
                    Some(p) if !p.trim().is_empty() => param = Some(p.trim().to_string()),
                    _ => {
                        return Err(bad(format!(
                            "ssm_param must be a parameter name such as /fine-tune-slm/s3/bucket, found {}",
                            self.raw(value).describe()
                        )))
                    }
                },
                "default" => {
                    let raw = self.raw(value);
                    // Check the default against its own key now, for an error at its line.
                    coerce(def, &raw).map_err(|m| ConfigError::WrongType {
                        key: def.key.to_string(),
                        expected: m.expected,
                        found: m.found,
                        origin: self.origin(field_node),
                    })?;
                    default = Some((raw, field_node.span.start.line()));
                }
                "description" => match &value.data {
                    YamlDataOwned::Value(ScalarOwned::Null) => {}
                    YamlDataOwned::Value(_) => description = Some(self.text_or_string(value)),
                    _ => {
                        return Err(bad(format!(
                            "description must be text, found {}",
                            self.raw(value).describe()
                        )))
                    }
                },
                _ => {
                    return Err(ConfigError::UnknownReferenceField {
                        key: def.key.to_string(),
                        field: self.text(field_node),
                        origin: self.origin(field_node),
                        suggestion: schema::suggest_among(field, &REFERENCE_FIELDS)
                            .map(str::to_string),
                    })
                }
            }
        }
        // The caller only treats a mapping with ssm_param as a reference.
        let param = param.unwrap_or_default();
        Ok(LeafContent::Reference {
            param,
            default,
            description,
        })
    }

    fn text_or_string(&self, node: &MarkedYamlOwned) -> String {
        match node.data.as_str() {
            Some(s) => s.to_string(),
            None => self.text(node),
        }
    }
}

fn display_scalar(scalar: &ScalarOwned) -> String {
    match scalar {
        ScalarOwned::Null => String::new(),
        ScalarOwned::Boolean(b) => b.to_string(),
        ScalarOwned::Integer(i) => i.to_string(),
        ScalarOwned::FloatingPoint(x) => x.0.to_string(),
        ScalarOwned::String(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(text: &str) -> Result<Vec<FileLeaf>, ConfigError> {
        parse(Path::new("t.yml"), text)
    }

    #[test]
    fn values_and_references_carry_their_lines() {
        let leaves = leaves(
            "model:\n  name: 1.10\nlora:\n  target_modules:\n    - q_proj\n    - v_proj\n\
             aws:\n  ebs:\n    size_gb:\n      ssm_param: /x/size\n      default: 100\n",
        )
        .unwrap();
        assert_eq!(leaves.len(), 3);
        assert_eq!(leaves[0].def.key, "model.name");
        assert_eq!(leaves[0].line, 2);
        assert!(matches!(&leaves[0].content, LeafContent::Value(v) if v == "1.10"));
        assert_eq!(leaves[1].line, 4);
        assert!(
            matches!(&leaves[1].content, LeafContent::Value(v) if *v == serde_json::json!(["q_proj", "v_proj"]))
        );
        match &leaves[2].content {
            LeafContent::Reference { param, default, .. } => {
                assert_eq!(param, "/x/size");
                assert_eq!(default, &Some((Raw::Int(100, "100".into()), 11)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_reference_field_is_named_with_a_suggestion() {
        let err = leaves("aws:\n  region:\n    ssm_param: /r\n    defualt: x\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("t.yml:4"), "{msg}");
        assert!(msg.contains("did you mean `default`"), "{msg}");
    }

    #[test]
    fn a_section_given_a_scalar_is_a_type_error() {
        let err = leaves("lora: 3\n").unwrap_err();
        assert!(
            matches!(&err, ConfigError::WrongType { key, .. } if key == "lora"),
            "{err}"
        );
    }

    #[test]
    fn invalid_yaml_reports_line_and_column() {
        let err = leaves("model:\n  name: [unclosed\n").unwrap_err();
        assert!(matches!(err, ConfigError::Yaml { line, .. } if line >= 2));
    }
}
