//! Hugging Face safetensors checkpoints: one `model.safetensors`, or shards
//! listed in `model.safetensors.index.json`. Files are memory-mapped and each
//! tensor is converted to f32 only when the model asks for it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use ftslm_kernels::MappedFile;
use safetensors::SafeTensors;
use serde_json::Value;

use super::WeightSource;
use crate::error::{ModelError, Result};
use crate::json_fields::read_object;

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

pub struct SafetensorsCheckpoint {
    shards: Vec<Shard>,
    /// tensor name → position in `shards`
    routing: HashMap<String, usize>,
    /// Set for sharded checkpoints, to name the index in errors.
    index: Option<PathBuf>,
}

struct Shard {
    path: PathBuf,
    file: MappedFile,
}

impl std::fmt::Debug for SafetensorsCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsCheckpoint")
            .field(
                "shards",
                &self.shards.iter().map(|s| &s.path).collect::<Vec<_>>(),
            )
            .field("tensors", &self.routing.len())
            .finish()
    }
}

impl SafetensorsCheckpoint {
    /// Opens the weights of a model directory. Like transformers, a single
    /// `model.safetensors` wins over an index when both are present.
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join(SINGLE_FILE);
        let index = dir.join(INDEX_FILE);
        if single.is_file() {
            let shard = Shard::open(&single)?;
            let routing = shard
                .header()?
                .names()
                .into_iter()
                .map(|name| (name.to_string(), 0))
                .collect();
            return Ok(SafetensorsCheckpoint {
                shards: vec![shard],
                routing,
                index: None,
            });
        }
        if index.is_file() {
            return Self::open_sharded(dir, &index);
        }
        Err(ModelError::Unsupported {
            path: dir.to_path_buf(),
            problem: format!(
                "no {SINGLE_FILE} or {INDEX_FILE} here; pass a directory in Hugging Face layout (or a .gguf file to a GGUF loader)"
            ),
        })
    }

    fn open_sharded(dir: &Path, index: &Path) -> Result<Self> {
        let map = read_object(index)?;
        let weight_map = match map.get("weight_map") {
            Some(Value::Object(m)) => m,
            _ => {
                return Err(ModelError::Field {
                    path: index.to_path_buf(),
                    key: "weight_map".into(),
                    problem: "must be an object mapping tensor names to shard files".into(),
                })
            }
        };
        let mut files = BTreeSet::new();
        let mut file_of = HashMap::with_capacity(weight_map.len());
        for (name, file) in weight_map {
            let file = file.as_str().ok_or_else(|| ModelError::Field {
                path: index.to_path_buf(),
                key: format!("weight_map.{name}"),
                problem: format!("must be a shard file name, found {file}"),
            })?;
            files.insert(file.to_string());
            file_of.insert(name.clone(), file.to_string());
        }
        let files: Vec<String> = files.into_iter().collect();
        let mut shards = Vec::with_capacity(files.len());
        for file in &files {
            shards.push(Shard::open(&dir.join(file))?);
        }
        let routing = file_of
            .into_iter()
            .filter_map(|(name, file)| {
                let position = files.binary_search(&file).ok()?;
                Some((name, position))
            })
            .collect();
        Ok(SafetensorsCheckpoint {
            shards,
            routing,
            index: Some(index.to_path_buf()),
        })
    }

    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.routing.keys().map(String::as_str)
    }

    /// The file that holds (or, per the index, should hold) `name`.
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        self.routing
            .get(name)
            .map(|&i| self.shards[i].path.as_path())
    }

    /// The tensor as stored (bf16, f16 or f32), on `device`.
    pub fn load_raw(&self, name: &str, device: &Device) -> Result<Tensor> {
        let missing = || ModelError::MissingTensor {
            name: name.to_string(),
            location: self.location(name),
            hint: String::new(),
        };
        let shard = &self.shards[*self.routing.get(name).ok_or_else(missing)?];
        let header = shard.header()?;
        let view = header.tensor(name).map_err(|_| missing())?;
        use ::safetensors::Dtype;
        match view.dtype() {
            Dtype::BF16 | Dtype::F16 | Dtype::F32 => {}
            other => {
                return Err(ModelError::TensorDtype {
                    name: name.to_string(),
                    location: shard.path.display().to_string(),
                    dtype: format!("{other:?}"),
                })
            }
        }
        view.load(device).map_err(|source| ModelError::Safetensors {
            path: shard.path.clone(),
            source: Box::new(source),
        })
    }
}

impl WeightSource for SafetensorsCheckpoint {
    fn contains(&self, name: &str) -> bool {
        self.routing.contains_key(name)
    }

    fn take_f32(&mut self, name: &str, device: &Device) -> Result<Tensor> {
        let tensor = self.load_raw(name, device)?.to_dtype(DType::F32)?;
        super::check_finite(&tensor, name, &self.location(name))?;
        Ok(tensor)
    }

    fn location(&self, name: &str) -> String {
        match (self.file_of(name), &self.index) {
            (Some(file), Some(index)) => {
                format!("{} (where {} puts it)", file.display(), index.display())
            }
            (Some(file), None) => file.display().to_string(),
            (None, Some(index)) => format!("{} (not in its weight_map)", index.display()),
            (None, None) => self
                .shards
                .first()
                .map(|s| s.path.display().to_string())
                .unwrap_or_default(),
        }
    }
}

impl Shard {
    fn open(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(ModelError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "shard file not found"),
            ));
        }
        let file = MappedFile::open(path).map_err(|source| ModelError::io(path, source))?;
        let shard = Shard {
            path: path.to_path_buf(),
            file,
        };
        // A file that is not safetensors fails here, at open, not at its first tensor.
        shard.header()?;
        Ok(shard)
    }

    /// The file's header over its mapped bytes (parsed again on each call:
    /// a few microseconds, against converting the tensor it is asked for).
    fn header(&self) -> Result<SafeTensors<'_>> {
        SafeTensors::deserialize(self.file.bytes()).map_err(|source| ModelError::Safetensors {
            path: self.path.clone(),
            source: Box::new(candle_core::Error::from(source)),
        })
    }
}
