//! The task an adapter was trained for, written beside it as `ftslm_task.json`
//! in every checkpoint, `best_model/` and `final_model/`.
//!
//! A LoRA adapter only works with the prompt it was trained on: the system
//! prompt, the instruction before each narrative, the chat template, and the
//! answer's fields. The original system kept these as constants in two places
//! and they drifted apart; recording them with the adapter lets `extract` and
//! `eval` prompt exactly as training did, constrain decoding to the fields the
//! model learned, and refuse a base model the adapter was not trained on.
//! PEFT and transformers ignore the extra file.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::record::Record;

/// The file name inside an adapter directory.
pub const TASK_FILE: &str = "ftslm_task.json";

/// Bumped when a field changes meaning; readers refuse other formats.
pub const TASK_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is not a valid task record ({source}); delete it to use the defaults, \
         or retrain to write a new one",
        path.display()
    )]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{} has format {found}, but this ftslm reads format {TASK_FORMAT}; \
         use the ftslm that trained the adapter",
        path.display()
    )]
    Format { path: PathBuf, found: u32 },
}

/// Which base model the adapter was trained on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseModelIdentity {
    /// The model as the run named it (path, .gguf or hub id).
    pub name_or_path: String,
    /// SHA-256 over the weight files, see [`weights_sha256`].
    pub weights_sha256: String,
}

/// How an adapter was trained: everything inference must repeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainedTask {
    pub format: u32,
    pub system_prompt: String,
    /// The instruction before each narrative (the most common one in the
    /// training records); `None` when the records were chats.
    pub instruction: Option<String>,
    /// The answer object's fields, in the order the training answers give them.
    pub fields: Vec<String>,
    /// SHA-256 of the chat template's source text.
    pub chat_template_sha256: String,
    pub max_seq_length: usize,
    pub base_model: BaseModelIdentity,
}

impl TrainedTask {
    /// Reads `dir/ftslm_task.json`; `None` when the adapter has none (trained
    /// by an older ftslm or by PEFT itself).
    pub fn read(dir: &Path) -> Result<Option<Self>, TaskError> {
        let path = dir.join(TASK_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(TaskError::Io { path, source }),
        };
        // The format is checked first so a newer file with other fields says
        // "format", not a confusing missing-field message.
        #[derive(Deserialize)]
        struct Versioned {
            format: u32,
        }
        let versioned: Versioned =
            serde_json::from_slice(&bytes).map_err(|source| TaskError::Parse {
                path: path.clone(),
                source,
            })?;
        if versioned.format != TASK_FORMAT {
            return Err(TaskError::Format {
                path,
                found: versioned.format,
            });
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| TaskError::Parse { path, source })
    }

    /// The record as pretty JSON, for writing beside an adapter.
    pub fn to_json(&self) -> String {
        // A struct of strings and integers always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

/// The instruction and answer fields a set of training records teaches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskShape {
    pub instruction: Option<String>,
    pub fields: Vec<String>,
}

impl TaskShape {
    /// The most common instruction (the first seen on a tie) and the union of
    /// the answer objects' keys in first-seen order.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a Record>) -> Self {
        let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
        let mut fields: Vec<String> = Vec::new();
        for (index, record) in records.into_iter().enumerate() {
            if let Record::Instruction(r) = record {
                counts.entry(&r.instruction).or_insert((0, index)).0 += 1;
            }
            if let Some(map) = record.answer_fields() {
                for key in map.keys() {
                    if !fields.contains(key) {
                        fields.push(key.clone());
                    }
                }
            }
        }
        let instruction = counts
            .into_iter()
            .max_by(|(_, (n1, first1)), (_, (n2, first2))| n1.cmp(n2).then(first2.cmp(first1)))
            .map(|(text, _)| text.to_string());
        TaskShape {
            instruction,
            fields,
        }
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SHA-256 over a model's weight files: each file's name, length and bytes,
/// in name order. A directory contributes its `*.safetensors` and `*.gguf`
/// files; a file contributes itself. The name is in the digest so that two
/// shards swapped would not hash alike; the directory is not, so a copied
/// model keeps its identity.
pub fn weights_sha256(path: &Path) -> Result<String, TaskError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TaskError::Io { path, source }
    };
    let mut files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .map_err(io(path))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .is_some_and(|x| x == "safetensors" || x == "gguf")
            })
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    files.sort();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for file in &files {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let mut f = std::fs::File::open(file).map_err(io(file))?;
        let len = f.metadata().map_err(io(file))?.len();
        hasher.update(name.unwrap_or_default().as_bytes());
        hasher.update([0]);
        hasher.update(len.to_le_bytes());
        loop {
            let n = f.read(&mut buf).map_err(io(file))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Answer, ChatMessage, InstructionRecord};
    use serde_json::json;

    fn instruction(instruction: &str, output: serde_json::Value) -> Record {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_value(output) else {
            panic!("test outputs are objects");
        };
        Record::Instruction(InstructionRecord {
            instruction: instruction.into(),
            input: "text".into(),
            output: Answer::Fields(map),
        })
    }

    #[test]
    fn shape_takes_the_common_instruction_and_every_field_in_order() {
        let records = [
            instruction("Extract B.", json!({"b": 1})),
            instruction("Extract A.", json!({"a": 1, "c": 2})),
            instruction("Extract A.", json!({"a": 1, "d": null})),
            Record::Chat(vec![
                ChatMessage::new("user", "hi"),
                ChatMessage::new("assistant", "{\"e\": 1}"),
            ]),
        ];
        let shape = TaskShape::of(&records);
        assert_eq!(shape.instruction.as_deref(), Some("Extract A."));
        assert_eq!(shape.fields, ["b", "a", "c", "d", "e"]);
        // A tie goes to the instruction seen first.
        let shape = TaskShape::of(&records[..2]);
        assert_eq!(shape.instruction.as_deref(), Some("Extract B."));
        assert_eq!(TaskShape::of(&records[3..]).instruction, None);
    }

    #[test]
    fn a_record_round_trips_and_other_formats_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(TrainedTask::read(dir.path()).unwrap(), None);
        let task = TrainedTask {
            format: TASK_FORMAT,
            system_prompt: "Be terse.".into(),
            instruction: Some("Extract.".into()),
            fields: vec!["a".into()],
            chat_template_sha256: sha256_hex(b"{{ messages }}"),
            max_seq_length: 512,
            base_model: BaseModelIdentity {
                name_or_path: "m".into(),
                weights_sha256: "00".into(),
            },
        };
        std::fs::write(dir.path().join(TASK_FILE), task.to_json()).unwrap();
        assert_eq!(TrainedTask::read(dir.path()).unwrap(), Some(task));
        std::fs::write(dir.path().join(TASK_FILE), r#"{"format": 9}"#).unwrap();
        let err = TrainedTask::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("format 9"), "{err}");
        std::fs::write(dir.path().join(TASK_FILE), "{").unwrap();
        let err = TrainedTask::read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(TASK_FILE) && err.contains("not a valid"),
            "{err}"
        );
    }

    #[test]
    fn weights_digest_covers_names_and_bytes_but_not_the_folder() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [&a, &b] {
            std::fs::write(d.path().join("model.safetensors"), b"weights").unwrap();
            std::fs::write(
                d.path().join("config.json"),
                d.path().to_string_lossy().as_bytes(),
            )
            .unwrap();
        }
        let digest = weights_sha256(a.path()).unwrap();
        assert_eq!(digest.len(), 64);
        assert_eq!(digest, weights_sha256(b.path()).unwrap());
        std::fs::write(b.path().join("model.safetensors"), b"weightz").unwrap();
        assert_ne!(digest, weights_sha256(b.path()).unwrap());
        // A folder with one weight file is that file (a .gguf given either way).
        let file = a.path().join("model.safetensors");
        assert_eq!(weights_sha256(&file).unwrap(), digest);
    }
}
