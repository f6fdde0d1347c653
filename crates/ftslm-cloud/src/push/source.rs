//! What `ftslm push` was pointed at, read back: an adapter directory, a
//! run directory (its `final_model/`), or a quickstart folder (its
//! `run/final_model/`), with whatever of the run's record is there.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::PushError;

/// An adapter and the record of the run that trained it.
#[derive(Debug, Clone)]
pub struct PushSource {
    pub adapter_dir: PathBuf,
    pub run_dir: Option<PathBuf>,
    pub adapter_config: Value,
    /// `ftslm_task.json`: system prompt, instruction, fields.
    pub task: Option<Value>,
    /// `run_summary.json`.
    pub summary: Option<Value>,
    /// An `ftslm eval` report of the adapter (quickstart's `eval_after.json`
    /// or `--eval-report`).
    pub eval_after: Option<Value>,
    /// The same for the base model (quickstart's `eval_before.json`).
    pub eval_before: Option<Value>,
    /// `license` of the base model's own card, when the base is a local
    /// folder holding one.
    pub base_license: Option<String>,
}

const ADAPTER_CONFIG: &str = "adapter_config.json";

impl PushSource {
    /// Finds the adapter under `path` and reads the run's record around it.
    pub fn locate(path: &Path, eval_report: Option<&Path>) -> Result<PushSource, PushError> {
        let candidates = [
            (path.to_path_buf(), path.parent().map(Path::to_path_buf)),
            (path.join("final_model"), Some(path.to_path_buf())),
            (path.join("run/final_model"), Some(path.join("run"))),
        ];
        let Some((adapter_dir, run_dir)) = candidates
            .into_iter()
            .find(|(dir, _)| dir.join(ADAPTER_CONFIG).is_file())
        else {
            return Err(PushError::NotAnAdapter(path.to_path_buf()));
        };
        let run_dir = run_dir.filter(|d| d.join("run_summary.json").is_file());
        let adapter_config = read_json(&adapter_dir.join(ADAPTER_CONFIG))?
            .ok_or_else(|| PushError::NotAnAdapter(path.to_path_buf()))?;
        let task = read_json(&adapter_dir.join("ftslm_task.json"))?;
        let summary = match &run_dir {
            Some(run) => read_json(&run.join("run_summary.json"))?,
            None => None,
        };
        // A quickstart keeps its reports beside run/.
        let beside_run = |name: &str| -> Result<Option<Value>, PushError> {
            match run_dir.as_ref().and_then(|r| r.parent()) {
                Some(folder) => read_json(&folder.join(name)),
                None => Ok(None),
            }
        };
        let eval_after = match eval_report {
            Some(report) => {
                Some(read_json(report)?.ok_or_else(|| PushError::Missing(report.to_path_buf()))?)
            }
            None => beside_run("eval_after.json")?,
        };
        let eval_before = match eval_report {
            Some(_) => None,
            None => beside_run("eval_before.json")?,
        };
        let base_license = adapter_config
            .get("base_model_name_or_path")
            .and_then(Value::as_str)
            .map(|base| resolve_beside(&adapter_dir, base))
            .and_then(|base| card_license(&base.join("README.md")));
        Ok(PushSource {
            adapter_dir,
            run_dir,
            adapter_config,
            task,
            summary,
            eval_after,
            eval_before,
            base_license,
        })
    }

    /// `base_model_name_or_path` of the adapter as written.
    pub fn recorded_base(&self) -> Option<&str> {
        self.adapter_config
            .get("base_model_name_or_path")
            .and_then(Value::as_str)
    }
}

/// A relative base path was written relative to where training ran, which
/// is unknown; try it as given, then beside the adapter.
fn resolve_beside(adapter_dir: &Path, base: &str) -> PathBuf {
    let given = PathBuf::from(base);
    if given.is_dir() {
        given
    } else {
        adapter_dir.join(base)
    }
}

fn read_json(path: &Path) -> Result<Option<Value>, PushError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| PushError::BadJson {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PushError::Read {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// `license:` of a model card's front matter.
fn card_license(readme: &Path) -> Option<String> {
    let text = std::fs::read_to_string(readme).ok()?;
    let front = text.strip_prefix("---")?;
    let front = &front[..front.find("\n---")?];
    front.lines().find_map(|line| {
        let value = line.strip_prefix("license:")?.trim();
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty()).then(|| value.to_string())
    })
}

/// Whether `id` names a Hub repository (`OWNER/NAME`) rather than a path.
pub fn is_hub_id(id: &str) -> bool {
    let mut parts = id.split('/');
    let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && !p.starts_with(['.', '-'])
            && !p.ends_with('.')
            && !p.contains("..")
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    part_ok(owner) && part_ok(name) && !Path::new(id).exists()
}
