//! Publishing a trained adapter to the Hugging Face Hub: which files go to
//! the repository (the adapter in PEFT's layout with its base model named
//! as the Hub knows it, the tokenizer, the task it was trained for, the
//! run's record and charts, the model card), with each file's size and
//! SHA-256 and whether the Hub stores it through LFS. `ftslm push --dry-run`
//! shows this plan; the upload itself (the Hub's commit and LFS APIs) is
//! not built yet.

pub mod card;
pub mod source;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::runs::partfile::hex;

pub use card::{render as render_card, CardFacts};
pub use source::{is_hub_id, PushSource};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(
        "{} holds no adapter: expected adapter_config.json in it, in its final_model/ \
         (a run directory) or in run/final_model/ (a quickstart folder)",
        .0.display()
    )]
    NotAnAdapter(PathBuf),
    #[error("{} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("{}: not valid JSON: {message}", path.display())]
    BadJson { path: PathBuf, message: String },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--repo {0:?} is not a Hub repository id: give OWNER/NAME (letters, digits, '-', '_' \
         and '.'), e.g. --repo your-name/smollm2-medical-ie"
    )]
    BadRepo(String),
    #[error("the model card could not be written: {0}")]
    Card(String),
}

/// One file of the commit.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedFile {
    /// Its path in the repository.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// Stored through LFS (as the Hub's default `.gitattributes` and its
    /// 10 MB rule decide) rather than inline in the commit.
    pub lfs: bool,
    /// The local file it is read from; `None` for a file ftslm writes
    /// (the model card, the adapter config naming the Hub base).
    pub from: Option<PathBuf>,
    #[serde(skip)]
    pub generated: Option<Vec<u8>>,
}

/// Everything a push would send.
#[derive(Debug, Clone, Serialize)]
pub struct PushPlan {
    pub repo: String,
    pub base_model: Option<String>,
    pub files: Vec<PlannedFile>,
    /// What the user should know before pushing (a base model the Hub
    /// cannot resolve, a missing run record).
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub card: String,
}

/// Tokenizer and chat-template files the adapter directory may hold.
const TOKENIZER_FILES: [&str; 5] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
];

/// Extensions the Hub's default `.gitattributes` stores through LFS (the
/// ones an adapter repository can hold).
const LFS_EXTENSIONS: [&str; 8] = [
    "safetensors",
    "bin",
    "pt",
    "pth",
    "gguf",
    "model",
    "png",
    "zip",
];
const LFS_SIZE: u64 = 10 * 1000 * 1000;

/// The files of a push of `source` to `repo`. `base_model` overrides the
/// adapter's recorded base (needed when it was trained from a local path).
pub fn plan(
    source: &PushSource,
    repo: &str,
    base_model: Option<&str>,
) -> Result<PushPlan, PushError> {
    if !is_hub_id(repo) {
        return Err(PushError::BadRepo(repo.to_string()));
    }
    let mut warnings = Vec::new();
    let recorded = source.recorded_base();
    let base_model = match (base_model, recorded) {
        (Some(given), _) => {
            if !is_hub_id(given) {
                return Err(PushError::BadRepo(given.to_string()));
            }
            Some(given.to_string())
        }
        (None, Some(recorded)) if is_hub_id(recorded) => Some(recorded.to_string()),
        (None, recorded) => {
            warnings.push(format!(
                "the adapter was trained from {}, which is not a Hub id: PEFT could not load \
                 the pushed adapter and the Hub would not link it to its base; pass \
                 --base-model OWNER/NAME (e.g. HuggingFaceTB/SmolLM2-135M-Instruct)",
                recorded.map_or("an unrecorded base".to_string(), |r| format!("{r:?}"))
            ));
            None
        }
    };
    if source.run_dir.is_none() {
        warnings.push(
            "no run_summary.json beside the adapter: the card will say nothing of how it was \
             trained; push the run directory instead of its final_model/"
                .to_string(),
        );
    }

    let mut files = Vec::new();
    let mut add_file = |path: String, local: &Path| -> Result<(), PushError> {
        let bytes = std::fs::read(local).map_err(|e| PushError::Read {
            path: local.to_path_buf(),
            source: e,
        })?;
        files.push(planned(path, &bytes, Some(local.to_path_buf()), None));
        Ok(())
    };
    let adapter = &source.adapter_dir;
    let weights = adapter.join("adapter_model.safetensors");
    if !weights.is_file() {
        return Err(PushError::Missing(weights));
    }
    add_file("adapter_model.safetensors".into(), &weights)?;
    for name in TOKENIZER_FILES.iter().chain(&["ftslm_task.json"]) {
        let local = adapter.join(name);
        if local.is_file() {
            add_file((*name).to_string(), &local)?;
        }
    }
    if let Some(run) = &source.run_dir {
        for name in ["run_summary.json", "metrics.jsonl"] {
            let local = run.join(name);
            if local.is_file() {
                add_file(format!("training/{name}"), &local)?;
            }
        }
        if let Ok(entries) = std::fs::read_dir(run.join("plots")) {
            let mut charts: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "png"))
                .collect();
            charts.sort();
            for chart in charts {
                if let Some(name) = chart.file_name().and_then(|n| n.to_str()) {
                    add_file(format!("training/plots/{name}"), &chart)?;
                }
            }
        }
    }

    // PEFT resolves the base from this key: it must be the Hub id.
    let mut adapter_config = source.adapter_config.clone();
    if let (Some(base), Some(map)) = (&base_model, adapter_config.as_object_mut()) {
        map.insert(
            "base_model_name_or_path".to_string(),
            Value::String(base.clone()),
        );
    }
    let config_bytes =
        serde_json::to_vec_pretty(&adapter_config).map_err(|e| PushError::Card(e.to_string()))?;
    files.push(planned(
        "adapter_config.json".into(),
        &config_bytes,
        None,
        Some(config_bytes.clone()),
    ));

    let facts = CardFacts::gather(source, repo, base_model.as_deref());
    let card = render_card(&facts).map_err(|e| PushError::Card(e.to_string()))?;
    files.push(planned(
        "README.md".into(),
        card.as_bytes(),
        None,
        Some(card.clone().into_bytes()),
    ));
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(PushPlan {
        repo: repo.to_string(),
        base_model,
        files,
        warnings,
        card,
    })
}

fn planned(
    path: String,
    bytes: &[u8],
    from: Option<PathBuf>,
    generated: Option<Vec<u8>>,
) -> PlannedFile {
    let extension = path.rsplit_once('.').map_or("", |(_, x)| x);
    let size = bytes.len() as u64;
    PlannedFile {
        lfs: size >= LFS_SIZE || LFS_EXTENSIONS.contains(&extension),
        sha256: hex(&Sha256::digest(bytes)),
        size,
        path,
        from,
        generated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use saphyr::{LoadableYamlNode, Scalar, Yaml};
    use serde_json::json;

    /// YAML as JSON, for assertions.
    fn to_json(node: &Yaml<'_>) -> Value {
        match node {
            Yaml::Value(Scalar::String(s)) => json!(s.as_ref()),
            Yaml::Value(Scalar::Integer(i)) => json!(i),
            Yaml::Value(Scalar::FloatingPoint(f)) => json!(f.into_inner()),
            Yaml::Value(Scalar::Boolean(b)) => json!(b),
            Yaml::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
            Yaml::Mapping(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), to_json(v)))
                    .collect(),
            ),
            _ => Value::Null,
        }
    }

    fn front_matter(card: &str) -> Value {
        let body = card.strip_prefix("---\n").expect("front matter first");
        let end = body.find("\n---\n").expect("front matter closed");
        let docs = Yaml::load_from_str(&body[..end]).expect("front matter is YAML");
        to_json(&docs[0])
    }

    /// A quickstart folder as ftslm writes it, trained from a local base.
    fn quickstart(system_prompt: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let adapter = run.join("final_model");
        std::fs::create_dir_all(adapter.clone()).unwrap();
        std::fs::create_dir_all(run.join("plots")).unwrap();
        let write = |path: PathBuf, value: Value| {
            std::fs::write(path, serde_json::to_vec(&value).unwrap()).unwrap()
        };
        write(
            adapter.join("adapter_config.json"),
            json!({"peft_type": "LORA", "base_model_name_or_path": "../shared/models/smollm2",
                   "r": 16, "lora_alpha": 32, "lora_dropout": 0.1,
                   "target_modules": ["q_proj", "v_proj"]}),
        );
        write(
            adapter.join("ftslm_task.json"),
            json!({"system_prompt": system_prompt, "instruction": "Extract the entities.",
                   "fields": ["cancer_type", "stage"]}),
        );
        std::fs::write(adapter.join("adapter_model.safetensors"), vec![0u8; 4096]).unwrap();
        std::fs::write(adapter.join("tokenizer.json"), b"{}").unwrap();
        std::fs::write(run.join("metrics.jsonl"), b"{\"step\":0,\"epoch\":0.0}\n").unwrap();
        std::fs::write(run.join("plots/loss.png"), b"png").unwrap();
        std::fs::write(run.join("plots/loss.svg"), b"svg").unwrap();
        write(
            run.join("run_summary.json"),
            json!({"initial_eval_loss": 1.95, "best_eval_loss": 0.6232, "best_step": 40,
                   "final_eval_loss": 0.6232, "final_train_loss": 0.55, "steps": 40,
                   "epochs": 0.0356, "tokens_seen": 38039, "wall_time_seconds": 139.2,
                   "peak_rss_bytes": 915505152u64, "frozen_base": "nf4",
                   "adapter_parameters": 1843200, "train_tokens_per_second": 360.0}),
        );
        let report = |f1: f64| {
            json!({"summary": {"records": 4, "json_valid": 4, "json_valid_rate": 1.0,
                   "all_fields_exact": 1, "exact_rate": 0.5, "micro_f1": f1,
                   "fields": [{"field": "cancer_type", "exact_rate": 0.5, "f1": f1},
                              {"field": "stage", "exact_rate": 0.75, "f1": 0.75}]}})
        };
        write(dir.path().join("eval_after.json"), report(0.8));
        write(dir.path().join("eval_before.json"), report(0.25));
        dir
    }

    #[test]
    fn a_quickstart_folder_plans_the_adapter_its_record_and_a_card_the_hub_reads() {
        let dir = quickstart("You extract entities.");
        let source = PushSource::locate(dir.path(), None).unwrap();
        let plan = plan(
            &source,
            "me/smollm2-ie",
            Some("HuggingFaceTB/SmolLM2-135M-Instruct"),
        )
        .unwrap();
        let paths: Vec<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "README.md",
                "adapter_config.json",
                "adapter_model.safetensors",
                "ftslm_task.json",
                "tokenizer.json",
                "training/metrics.jsonl",
                "training/plots/loss.png",
                "training/run_summary.json",
            ]
        );
        let lfs: Vec<&str> = plan
            .files
            .iter()
            .filter(|f| f.lfs)
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(
            lfs,
            ["adapter_model.safetensors", "training/plots/loss.png"]
        );
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);

        // PEFT finds the base by its Hub id.
        let config = plan
            .files
            .iter()
            .find(|f| f.path == "adapter_config.json")
            .unwrap();
        let config: Value = serde_json::from_slice(config.generated.as_ref().unwrap()).unwrap();
        assert_eq!(
            config["base_model_name_or_path"],
            "HuggingFaceTB/SmolLM2-135M-Instruct"
        );
        assert_eq!(config["r"], 16);

        let meta = front_matter(&plan.card);
        assert_eq!(meta["base_model"], "HuggingFaceTB/SmolLM2-135M-Instruct");
        assert_eq!(meta["library_name"], "peft");
        assert_eq!(meta["pipeline_tag"], "text-generation");
        let results = &meta["model-index"][0]["results"][0];
        assert_eq!(meta["model-index"][0]["name"], "smollm2-ie");
        let metrics = results["metrics"].as_array().unwrap();
        assert_eq!(metrics[0]["type"], "loss");
        assert_eq!(metrics[0]["value"], 0.6232);
        assert_eq!(metrics[1]["type"], "f1");
        assert_eq!(metrics[1]["value"], 0.8);
        for text in [
            "> You extract entities.",
            "`cancer_type`, `stage`",
            "| LoRA rank / alpha / dropout | 16 / 32 / 0.1 |",
            "| method | QLoRA: LoRA on a frozen nf4-quantized base |",
            "| best eval loss | 0.6232 (step 40) |",
            "| cancer_type | 50.0% → 50.0% | 25.0% → 80.0% |",
            "AutoPeftModelForCausalLM.from_pretrained(\"me/smollm2-ie\")",
            "ftslm extract --model HuggingFaceTB/SmolLM2-135M-Instruct --adapter me/smollm2-ie",
        ] {
            assert!(plan.card.contains(text), "no {text:?} in\n{}", plan.card);
        }
    }

    #[test]
    fn a_local_base_is_a_warning_and_no_prompt_can_break_the_front_matter() {
        let dir = quickstart("x\"\n---\nlicense: stolen\nbase_model: evil/model\n");
        let source = PushSource::locate(&dir.path().join("run/final_model"), None).unwrap();
        assert!(
            source.run_dir.is_some(),
            "the run beside final_model/ is found"
        );
        let plan = plan(&source, "me/m", None).unwrap();
        assert_eq!(plan.base_model, None);
        assert!(
            plan.warnings[0].contains("--base-model OWNER/NAME"),
            "{:?}",
            plan.warnings
        );
        let meta = front_matter(&plan.card);
        assert_eq!(meta.get("license"), None);
        assert_eq!(meta.get("base_model"), None);
        assert_eq!(meta["library_name"], "peft");
    }

    #[test]
    fn repository_ids_and_folders_without_an_adapter_are_refused_naming_the_fix() {
        let dir = quickstart("p");
        let source = PushSource::locate(dir.path(), None).unwrap();
        for bad in ["noslash", "a/b/c", "me/../x", "-me/x", "me/x y"] {
            let err = plan(&source, bad, None).unwrap_err().to_string();
            assert!(err.contains("OWNER/NAME"), "{bad}: {err}");
        }
        let empty = tempfile::tempdir().unwrap();
        let err = PushSource::locate(empty.path(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected adapter_config.json"), "{err}");
    }
}
