//! PEFT's on-disk LoRA format: `adapter_config.json` plus
//! `adapter_model.safetensors` with keys such as
//! `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`.
//! What we write, PEFT loads unchanged, and the other way round.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::{Map, Value};

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::json_fields::{read_object, Fields};
use crate::lora::{LoraAdapter, LoraSettings, LoraWeights, Projection};

pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// PEFT wraps the model as `PeftModel(LoraModel(LlamaForCausalLM))`.
const PEFT_KEY_PREFIX: &str = "base_model.model.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Matrix {
    A,
    B,
}

impl LoraAdapter {
    /// Loads a PEFT LoRA adapter directory and checks it against the model it
    /// will be applied to.
    pub fn load_peft(dir: &Path, config: &LlamaConfig, device: &Device) -> Result<Self> {
        let config_path = dir.join(ADAPTER_CONFIG_FILE);
        let peft_config = read_object(&config_path)?;
        let (settings, base_model) = read_settings(&config_path, &peft_config)?;

        let weights_path = dir.join(ADAPTER_WEIGHTS_FILE);
        if !weights_path.is_file() && dir.join("adapter_model.bin").is_file() {
            return Err(ModelError::Adapter {
                path: dir.to_path_buf(),
                problem: "only adapter_model.bin (a PyTorch pickle) is present; re-save the adapter with safe_serialization=True".into(),
            });
        }
        let tensors = candle_core::safetensors::load(&weights_path, device).map_err(|source| {
            ModelError::Safetensors {
                path: weights_path.clone(),
                source: Box::new(source),
            }
        })?;
        let adapter_error = |problem: String| ModelError::Adapter {
            path: weights_path.clone(),
            problem,
        };

        let mut found: HashMap<(usize, Projection, Matrix), Tensor> = HashMap::new();
        for (key, tensor) in tensors {
            let Some((layer, projection, matrix)) = parse_key(&key) else {
                return Err(adapter_error(format!(
                    "unexpected tensor `{key}`; only lora_A/lora_B weights of the Llama projections ({}) can be loaded",
                    module_names(&Projection::ALL)
                )));
            };
            if layer >= config.num_hidden_layers {
                return Err(adapter_error(format!(
                    "`{key}` is for layer {layer} but the model has {} layers; was the adapter trained on another base model?",
                    config.num_hidden_layers
                )));
            }
            if !settings.target_modules.contains(&projection) {
                return Err(adapter_error(format!(
                    "`{key}` adapts {} which target_modules in {ADAPTER_CONFIG_FILE} does not list",
                    projection.module_name()
                )));
            }
            let tensor = tensor.to_dtype(DType::F32)?;
            let values = tensor.flatten_all()?.to_vec1::<f32>()?;
            if let Some((index, value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(adapter_error(format!(
                    "`{key}` holds {value} at index {index}; the adapter is corrupt (a diverged \
                     run saves such values): use an earlier checkpoint or retrain"
                )));
            }
            found.insert((layer, projection, matrix), tensor);
        }

        let r = settings.r;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for layer in 0..config.num_hidden_layers {
            let mut adapted: [Option<LoraWeights>; 7] = Default::default();
            for &projection in &settings.target_modules {
                let (out_features, in_features) = projection.shape(config);
                let mut matrix = |which: Matrix, expected: [usize; 2]| -> Result<Tensor> {
                    let key = peft_key(layer, projection, which);
                    let tensor = found.remove(&(layer, projection, which)).ok_or_else(|| {
                        ModelError::MissingTensor {
                            name: key.clone(),
                            location: weights_path.display().to_string(),
                            hint: format!(
                                " although target_modules lists {}",
                                projection.module_name()
                            ),
                        }
                    })?;
                    if tensor.dims() != expected {
                        return Err(ModelError::TensorShape {
                            name: key,
                            location: weights_path.display().to_string(),
                            expected: expected.to_vec(),
                            got: tensor.dims().to_vec(),
                            hint: "; does r in adapter_config.json match the weights, and was the adapter trained on this base model?",
                        });
                    }
                    Ok(tensor)
                };
                let a = matrix(Matrix::A, [r, in_features])?;
                let b = matrix(Matrix::B, [out_features, r])?;
                adapted[projection.index()] = Some(LoraWeights { a, b });
            }
            layers.push(adapted);
        }
        Ok(LoraAdapter::from_parts(
            settings,
            base_model,
            layers,
            peft_config,
        ))
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` (f32) into
    /// `dir`, each file atomically. Fields of a loaded adapter_config.json
    /// that this crate does not model are kept as they were.
    pub fn save_peft(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;

        let mut tensors = Vec::new();
        for (layer, projection, weights) in self.iter() {
            tensors.push((
                peft_key(layer, projection, Matrix::A),
                F32View::new(&weights.a)?,
            ));
            tensors.push((
                peft_key(layer, projection, Matrix::B),
                F32View::new(&weights.b)?,
            ));
        }
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        let weights_path = dir.join(ADAPTER_WEIGHTS_FILE);
        let bytes =
            safetensors::serialize(tensors, Some(metadata)).map_err(|e| ModelError::Adapter {
                path: weights_path.clone(),
                problem: format!("cannot serialize the adapter weights: {e}"),
            })?;
        write_atomically(&weights_path, &bytes)?;

        let config_path = dir.join(ADAPTER_CONFIG_FILE);
        let json = Value::Object(self.peft_config_json());
        let mut text = serde_json::to_string_pretty(&json).map_err(|source| ModelError::Json {
            path: config_path.clone(),
            source,
        })?;
        text.push('\n');
        write_atomically(&config_path, text.as_bytes())
    }

    /// adapter_config.json: the fields PEFT needs, over the fields as loaded.
    fn peft_config_json(&self) -> Map<String, Value> {
        let settings = self.settings();
        let mut json = self.peft_config.clone();
        let mut set = |key: &str, value: Value| {
            let unchanged = json.get(key).is_some_and(|old| same_json(old, &value));
            if !unchanged {
                json.insert(key.to_string(), value);
            }
        };
        set("peft_type", "LORA".into());
        set("task_type", "CAUSAL_LM".into());
        set(
            "base_model_name_or_path",
            self.base_model_name_or_path().into(),
        );
        set("r", settings.r.into());
        set("lora_alpha", json_number(settings.alpha));
        set("lora_dropout", settings.dropout.into());
        set("bias", "none".into());
        set("use_rslora", settings.use_rslora.into());
        set("use_dora", false.into());
        set("fan_in_fan_out", false.into());
        set("inference_mode", true.into());
        let targets_unchanged = json
            .get("target_modules")
            .and_then(|v| target_modules_of(v).ok())
            .is_some_and(|old| same_set(&old, &settings.target_modules));
        if !targets_unchanged {
            let names: Vec<Value> = settings
                .target_modules
                .iter()
                .map(|p| p.module_name().into())
                .collect();
            json.insert("target_modules".into(), Value::Array(names));
        }
        json.entry("init_lora_weights").or_insert(true.into());
        json
    }
}

/// The adapter's settings and base model name from adapter_config.json,
/// refusing the PEFT options whose math this crate does not implement.
fn read_settings(path: &Path, map: &Map<String, Value>) -> Result<(LoraSettings, Option<String>)> {
    let f = Fields::new(path, map);
    if let Some(peft_type) = f.opt_str("peft_type")? {
        if peft_type != "LORA" {
            return Err(f.error(
                "peft_type",
                format!("is `{peft_type}`; only LORA adapters are supported"),
            ));
        }
    }
    let must_be_false = [
        ("fan_in_fan_out", "weights stored transposed (Conv1D/GPT-2 style) are not supported; Llama adapters use false"),
        ("use_dora", "DoRA adapters are not supported"),
        ("lora_bias", "LoRA with a bias on B is not supported"),
    ];
    for (key, why) in must_be_false {
        if f.opt_bool(key)?.unwrap_or(false) {
            return Err(f.error(key, format!("is true; {why}")));
        }
    }
    if let Some(bias) = f.opt_str("bias")? {
        if bias != "none" {
            return Err(f.error("bias", format!("is `{bias}`; only `none` is supported")));
        }
    }
    for key in ["rank_pattern", "alpha_pattern"] {
        if f.get(key)
            .is_some_and(|v| v.as_object().is_none_or(|m| !m.is_empty()))
        {
            return Err(f.error(
                key,
                "must be empty; per-module ranks and alphas are not supported",
            ));
        }
    }
    for key in ["layers_to_transform", "layer_replication"] {
        if f.has(key) {
            return Err(f.error(
                key,
                "must be null; adapting a subset of layers is not supported",
            ));
        }
    }
    if f.get("modules_to_save")
        .is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty()))
    {
        return Err(f.error(
            "modules_to_save",
            "must be null; fully trained extra modules are not supported",
        ));
    }
    let target_modules = match f.get("target_modules") {
        None => {
            return Err(f.error(
                "target_modules",
                "is missing (a list of projection names is required)",
            ))
        }
        Some(value) => {
            target_modules_of(value).map_err(|problem| f.error("target_modules", problem))?
        }
    };
    let settings = LoraSettings {
        r: f.usize("r")?,
        alpha: f.f64("lora_alpha")?,
        dropout: f.opt_f64("lora_dropout")?.unwrap_or(0.0),
        target_modules,
        use_rslora: f.opt_bool("use_rslora")?.unwrap_or(false),
    };
    if let Some(problem) = settings.problem() {
        return Err(ModelError::Adapter {
            path: path.to_path_buf(),
            problem,
        });
    }
    let base_model = f.opt_str("base_model_name_or_path")?.map(str::to_string);
    Ok((settings, base_model))
}

/// A list of projection names, or PEFT's "all-linear" (every projection; the
/// LM head is excluded by PEFT too).
fn target_modules_of(value: &Value) -> std::result::Result<Vec<Projection>, String> {
    let names: Vec<&str> = match value {
        Value::String(s) if s == "all-linear" => {
            return Ok(Projection::ALL.to_vec());
        }
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| format!("must list module names, found {v}"))
            })
            .collect::<std::result::Result<_, _>>()?,
        other => {
            return Err(format!(
                "must be a list of module names or \"all-linear\", found {other}"
            ))
        }
    };
    let mut projections = Vec::with_capacity(names.len());
    for name in names {
        let projection = Projection::from_module_name(name).ok_or_else(|| {
            format!(
                "names `{name}`; only the Llama projections can be adapted: {}",
                module_names(&Projection::ALL)
            )
        })?;
        if !projections.contains(&projection) {
            projections.push(projection);
        }
    }
    Ok(projections)
}

fn module_names(projections: &[Projection]) -> String {
    projections
        .iter()
        .map(|p| p.module_name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// (layer, projection, A or B) of a PEFT key; with or without PEFT's prefix.
fn parse_key(key: &str) -> Option<(usize, Projection, Matrix)> {
    let rest = key.strip_prefix(PEFT_KEY_PREFIX).unwrap_or(key);
    let rest = rest.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (block, rest) = rest.split_once('.')?;
    let (module, rest) = rest.split_once('.')?;
    let matrix = match rest {
        "lora_A.weight" => Matrix::A,
        "lora_B.weight" => Matrix::B,
        _ => return None,
    };
    let projection = Projection::from_module_name(module)?;
    if projection.block() != block {
        return None;
    }
    Some((layer.parse().ok()?, projection, matrix))
}

fn peft_key(layer: usize, projection: Projection, matrix: Matrix) -> String {
    let which = match matrix {
        Matrix::A => "lora_A",
        Matrix::B => "lora_B",
    };
    format!(
        "{PEFT_KEY_PREFIX}{}.{which}.weight",
        projection.module_path(layer)
    )
}

/// Integral alphas stay integers, as PEFT users write them.
fn json_number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        Value::from(x as i64)
    } else {
        Value::from(x)
    }
}

/// Equal JSON values, with 16 and 16.0 counted equal.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn same_set(a: &[Projection], b: &[Projection]) -> bool {
    a.len() == b.len() && a.iter().all(|p| b.contains(p))
}

/// Writes through ftslm-fs's temporary file and rename, so a reader never
/// sees a half-written file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    ftslm_fs::write_atomic(path, bytes).map_err(|e| ModelError::io(&e.path, e.source))
}

/// A tensor's f32 bytes for safetensors, read out before serializing so that
/// a failed device read is an error rather than a panic inside the writer.
struct F32View {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl F32View {
    fn new(tensor: &Tensor) -> Result<Self> {
        let values: Vec<f32> = tensor.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        Ok(F32View {
            shape: tensor.dims().to_vec(),
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
    }
}

impl safetensors::View for F32View {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }

    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}
