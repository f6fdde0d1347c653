//! `ftslm push --dry-run` on a real run of the tiny checkpoint: the files it
//! would send, and a model card that huggingface_hub itself reads (its
//! `ModelCard`: front matter, `model-index` parsed into eval results).
//! Needs Python with `huggingface_hub` at `$FTSLM_PYTHON` or
//! `.venv/bin/python`; skipped with a note when absent, a failure under CI=true.

mod common;

use std::process::Command;

use common::{ftslm, synth};
use serde_json::Value;

const READER: &str = r#"
import json, sys
from huggingface_hub import ModelCard
card = ModelCard(open(sys.argv[1]).read())
d = card.data
print(json.dumps({
    "base_model": d.base_model, "library_name": d.library_name,
    "pipeline_tag": d.pipeline_tag, "tags": d.tags,
    "eval_results": [[r.metric_type, r.metric_value] for r in (d.eval_results or [])],
}))
"#;

#[test]
fn a_trained_run_plans_its_files_and_a_card_huggingface_hub_reads() {
    let model = ftslm_testkit::require_shared!("models/tiny-llama3");
    let Some(python) = ftslm_testkit::python_with("huggingface_hub") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    let mut train = ftslm(dir.path());
    train.args(["train", "--model"]).arg(&model).args([
        "--train-data",
        "data/train.jsonl",
        "--val-data",
        "data/validation.jsonl",
        "--output-dir",
        "run",
        "--no-ssm",
        "--max-steps",
        "2",
    ]);
    for set in [
        "dataset.max_seq_length=512",
        "training.per_device_train_batch_size=1",
        "training.gradient_accumulation_steps=1",
        "training.eval_steps=1",
        "training.logging_steps=1",
        "training.warmup_steps=0",
    ] {
        train.args(["--set", set]);
    }
    train.assert().success();

    // Not built yet: without --dry-run nothing is sent, and it says so.
    ftslm(dir.path())
        .args(["push", "run", "--repo", "me/tiny-ie"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("--dry-run"));

    let out = ftslm(dir.path())
        .args([
            "push",
            "run",
            "--repo",
            "me/tiny-ie",
            "--base-model",
            "me/tiny-llama3",
        ])
        .args(["--dry-run", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let files: Vec<&str> = plan["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for expected in [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "ftslm_task.json",
        "tokenizer.json",
        "training/run_summary.json",
        "training/metrics.jsonl",
        "training/plots/loss.png",
    ] {
        assert!(files.contains(&expected), "{expected} not in {files:?}");
    }
    let weights =
        std::fs::read(dir.path().join("run/final_model/adapter_model.safetensors")).unwrap();
    let sent = plan["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "adapter_model.safetensors")
        .unwrap();
    assert_eq!(sent["size"], weights.len());
    assert_eq!(sent["lfs"], true);

    let card_path = dir.path().join("README.md");
    std::fs::write(&card_path, plan["card"].as_str().unwrap()).unwrap();
    let read = Command::new(&python)
        .args(["-c", READER])
        .arg(&card_path)
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let card: Value = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!(card["base_model"], "me/tiny-llama3");
    assert_eq!(card["library_name"], "peft");
    assert_eq!(card["pipeline_tag"], "text-generation");
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("run/run_summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(card["eval_results"][0][0], "loss");
    assert_eq!(card["eval_results"][0][1], summary["best_eval_loss"]);
}
