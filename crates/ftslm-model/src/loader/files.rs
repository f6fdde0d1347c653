//! Which files a model path stands for. Every command that opens a model
//! resolves its path here (through `ftslm-source`, or `merge` directly), so
//! a path means the same thing to training, inference and merging.
//!
//! A model path is a Hugging Face directory (config.json + safetensors), a
//! `.gguf` file, or a directory holding exactly one `.gguf` (with
//! tokenizer.json and config.json beside it, as the SmolLM2 fixture is).

use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

const SAFETENSORS_FILE: &str = "model.safetensors";
const SAFETENSORS_INDEX: &str = "model.safetensors.index.json";

/// The files a model path stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFiles {
    /// A Hugging Face directory with config.json and safetensors weights.
    Safetensors { dir: PathBuf },
    /// A GGUF file; `dir` is the folder it lies in (tokenizer files beside it).
    Gguf { file: PathBuf, dir: PathBuf },
}

impl ModelFiles {
    /// Works out what `path` is, or says what it should be.
    pub fn locate(path: &Path) -> Result<Self> {
        let problem = |problem: String| ModelError::ModelPath {
            path: path.to_path_buf(),
            problem,
        };
        if path.is_file() {
            if is_gguf(path) {
                let dir = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                return Ok(ModelFiles::Gguf {
                    file: path.to_path_buf(),
                    dir,
                });
            }
            return Err(problem(
                "is a file but not a .gguf; pass a Hugging Face model directory (config.json + \
                 safetensors) or a .gguf file"
                    .into(),
            ));
        }
        if !path.is_dir() {
            return Err(problem(
                "does not exist; pass a Hugging Face model directory (config.json + safetensors) \
                 or a .gguf file (Hub ids must be downloaded first)"
                    .into(),
            ));
        }
        if path.join(SAFETENSORS_FILE).is_file() || path.join(SAFETENSORS_INDEX).is_file() {
            if !path.join("config.json").is_file() {
                return Err(problem(
                    "has safetensors weights but no config.json; download the model's \
                     config.json into it"
                        .into(),
                ));
            }
            return Ok(ModelFiles::Safetensors {
                dir: path.to_path_buf(),
            });
        }
        match gguf_files(path)?.as_slice() {
            [one] => Ok(ModelFiles::Gguf {
                file: one.clone(),
                dir: path.to_path_buf(),
            }),
            [] => Err(problem(format!(
                "holds neither {SAFETENSORS_FILE} (or {SAFETENSORS_INDEX}) nor a .gguf file; \
                 pass a model directory in Hugging Face layout or a .gguf file"
            ))),
            many => Err(problem(format!(
                "holds {} .gguf files ({}); pass the one to use as --model FILE",
                many.len(),
                many.iter()
                    .filter_map(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    pub fn is_gguf(&self) -> bool {
        matches!(self, ModelFiles::Gguf { .. })
    }

    /// The folder holding the tokenizer and config files.
    pub fn dir(&self) -> &Path {
        match self {
            ModelFiles::Safetensors { dir } | ModelFiles::Gguf { dir, .. } => dir,
        }
    }

    /// The weights: the model directory or the GGUF file.
    pub fn weights(&self) -> &Path {
        match self {
            ModelFiles::Safetensors { dir } => dir,
            ModelFiles::Gguf { file, .. } => file,
        }
    }
}

fn is_gguf(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("gguf"))
}

fn gguf_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let listing = |e: std::io::Error| ModelError::ModelPath {
        path: dir.to_path_buf(),
        problem: format!("cannot be listed: {e}"),
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(listing)? {
        let path = entry.map_err(listing)?.path();
        if path.is_file() && is_gguf(&path) {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_files_and_single_ggufs_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let empty = ModelFiles::locate(dir.path()).unwrap_err().to_string();
        assert!(empty.contains("neither"), "{empty}");
        std::fs::write(dir.path().join("a.gguf"), "").unwrap();
        let one = ModelFiles::locate(dir.path()).unwrap();
        assert_eq!(one.weights(), dir.path().join("a.gguf"));
        assert_eq!(one.dir(), dir.path());
        std::fs::write(dir.path().join("b.gguf"), "").unwrap();
        let two = ModelFiles::locate(dir.path()).unwrap_err().to_string();
        assert!(
            two.contains("a.gguf, b.gguf") && two.contains("--model FILE"),
            "{two}"
        );
        let missing = ModelFiles::locate(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("does not exist"), "{missing}");
        let not_gguf = dir.path().join("x.bin");
        std::fs::write(&not_gguf, "").unwrap();
        let err = ModelFiles::locate(&not_gguf).unwrap_err().to_string();
        assert!(err.contains("not a .gguf"), "{err}");

        let hf = tempfile::tempdir().unwrap();
        std::fs::write(hf.path().join(SAFETENSORS_FILE), "").unwrap();
        let err = ModelFiles::locate(hf.path()).unwrap_err().to_string();
        assert!(err.contains("no config.json"), "{err}");
        std::fs::write(hf.path().join("config.json"), "{}").unwrap();
        let files = ModelFiles::locate(hf.path()).unwrap();
        assert!(!files.is_gguf());
        assert_eq!(files.weights(), hf.path());
    }
}
