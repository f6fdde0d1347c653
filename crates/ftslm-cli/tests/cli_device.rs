//! `--device`, `compute.device`, `ftslm env` and `ftslm selftest` on a
//! machine without an NVIDIA GPU (CI's): every path names what is missing,
//! in one sentence, before any model is read.

mod common;

use common::ftslm;
use predicates::prelude::*;

/// Whether this machine has the NVIDIA driver (then the no-GPU checks below
/// do not apply; `scripts/gpu-check.sh` covers it).
fn has_driver() -> bool {
    let out = ftslm(&std::env::temp_dir())
        .args(["env", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["cuda"]["libraries"]["driver"]["found"] == true
}

#[test]
fn env_reports_the_cpu_and_why_no_gpu_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let out = ftslm(dir.path()).args(["env", "--json"]).output().unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["cpu"]["threads"].as_u64().unwrap() >= 1);
    for library in ["driver", "cublas", "cublas_lt", "nvrtc"] {
        assert!(report["cuda"]["libraries"][library]["found"].is_boolean());
    }
    if has_driver() {
        return;
    }
    assert!(report["cuda"]["gpus"].as_array().unwrap().is_empty());
    ftslm(dir.path())
        .arg("env")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "compute device: cpu (no usable CUDA GPU: the NVIDIA driver library (libcuda.so)",
        ));
}

#[test]
fn selftest_without_a_gpu_exits_1_saying_no_cuda_device() {
    if has_driver() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    ftslm(dir.path())
        .args(["selftest", "--device", "cuda"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with("error: no CUDA device: "));
    ftslm(dir.path())
        .args(["selftest", "--device", "cpu"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "--device cpu leaves nothing to check",
        ));
}

/// `--device cuda` is refused before the model is opened (the model path
/// here does not exist, and the error is still the device's); `auto`
/// computes on the CPU with a note; a bad spelling is a usage error, from
/// the flag or from the configuration.
#[test]
fn the_device_is_decided_before_any_model_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let extract = |device: &[&str]| {
        let mut cmd = ftslm(dir.path());
        cmd.args(device).args([
            "extract",
            "--model",
            "no-such-model",
            "--text",
            "Stage II melanoma.",
        ]);
        cmd.assert()
    };
    if !has_driver() {
        extract(&["--device", "cuda:0"])
            .code(1)
            .stderr(
                predicate::str::contains("no CUDA device: ")
                    .and(predicate::str::contains("no-such-model").not()),
            )
            .stderr(predicate::str::contains("Use --device cpu (or auto)"));
        extract(&[])
            .code(1)
            .stderr(predicate::str::contains(
                "note: computing on the CPU: no usable CUDA GPU",
            ))
            .stderr(predicate::str::contains("no-such-model"));
    }
    extract(&["--device", "tpu"])
        .code(2)
        .stderr(predicate::str::contains("use auto, cpu, cuda or cuda:N"));
    extract(&["--set", "compute.device=tpu"])
        .code(1)
        .stderr(predicate::str::contains(
            "compute.device (cli): `tpu` is not a device",
        ));
    extract(&["--device", "cpu"])
        .code(1)
        .stderr(predicate::str::contains("note: computing on the CPU").not());
}
