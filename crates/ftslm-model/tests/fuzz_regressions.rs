//! Every input the fuzzers found a problem with (`fuzz/regressions/`), and
//! the seed corpus, replayed through the same readers on every test run:
//! each gives a value or an error, never a panic.

use std::path::{Path, PathBuf};

use candle_core::Device;
use ftslm_model::loader::gguf::GgufFile;
use ftslm_model::loader::SafetensorsCheckpoint;

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut files = Vec::new();
    for dir in ["regressions", "corpus"] {
        if let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) {
            files.extend(entries.map(|e| e.unwrap().path()));
        }
    }
    files.sort();
    files
}

#[test]
fn gguf_inputs_found_by_fuzzing_are_errors_not_panics() {
    let files = inputs("gguf");
    assert!(files.len() >= 4, "the corpus and regressions are in fuzz/");
    for path in files {
        let Ok(gguf) = GgufFile::open(&path) else {
            continue;
        };
        let names: Vec<String> = gguf.tensor_names().map(str::to_string).collect();
        for name in names {
            let _ = gguf.read_f32(&name);
        }
    }
    let empty = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions/gguf/empty_tensor_misaligned_blocks.gguf");
    let err = GgufFile::open(&empty).unwrap_err().to_string();
    assert!(err.contains("no values; the file is corrupt"), "{err}");
}

#[test]
fn safetensors_inputs_found_by_fuzzing_are_errors_not_panics() {
    let files = inputs("safetensors");
    assert!(!files.is_empty());
    for path in files {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(&path, dir.path().join("model.safetensors")).unwrap();
        let Ok(checkpoint) = SafetensorsCheckpoint::open(dir.path()) else {
            continue;
        };
        let names: Vec<String> = checkpoint.tensor_names().map(str::to_string).collect();
        for name in names {
            let _ = checkpoint.load_raw(&name, &Device::Cpu);
        }
    }
}
