//! `ftslm train` end to end on the tiny Llama 3.1 checkpoint with synthetic
//! records: the dry run prints the plan and writes nothing; a 3-step run
//! writes the run directory DESIGN.md describes.

use std::path::Path;

use assert_cmd::Command;
use predicates::str::contains;
use serde_json::Value;

fn ftslm(cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("ftslm").unwrap();
    // Keep the user's config, FTSLM_* variables and real AWS out of the tests.
    cmd.current_dir(cwd)
        .env_remove("FTSLM_TRAINING__LEARNING_RATE")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// 8 training and 4 validation records in `dir/data`.
fn synth(dir: &Path) {
    ftslm(dir)
        .args([
            "data",
            "synth",
            "--out",
            "data",
            "--train",
            "8",
            "--validation",
            "4",
        ])
        .assert()
        .success();
}

fn train_args<'a>(model: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--model",
        model,
        "--train-data",
        "data/train.jsonl",
        "--val-data",
        "data/validation.jsonl",
        "--output-dir",
        out,
        "--no-ssm",
        "--set",
        "dataset.max_seq_length=512",
    ]
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let model = ftslm_testkit::require_shared!("models/tiny-llama3");
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    let model = model.to_str().unwrap();
    let mut args = train_args(model, "run");
    args.extend([
        "--dry-run",
        "--set",
        "training.per_device_train_batch_size=1",
    ]);
    let out = ftslm(dir.path()).args(&args).assert().success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    for expected in [
        "plan:",
        "frozen base    nf4 (double quantization)",
        "8 records",
        "trainable parameters",
        "memory (rough)",
        "dry run: one forward/backward on 1 row(s)",
        "nothing was written",
    ] {
        assert!(stdout.contains(expected), "no `{expected}` in:\n{stdout}");
    }
    // A loss near ln(vocab) for the random model: the step ran for real.
    let loss: f64 = stdout
        .lines()
        .find(|l| l.starts_with("dry run: one"))
        .and_then(|l| l.split("loss ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no loss in:\n{stdout}"));
    assert!((loss - 49152f64.ln()).abs() < 0.5, "loss {loss}");
    assert!(!dir.path().join("run").exists(), "the dry run wrote run/");
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec!["data"], "only the synthetic data is there");
}

#[test]
fn three_steps_write_the_run_directory() {
    let model = ftslm_testkit::require_shared!("models/tiny-llama3");
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    let model = model.to_str().unwrap();
    let mut args = train_args(model, "run");
    args.extend(["--max-steps", "3"]);
    for set in [
        "quantization.base=f32",
        "training.per_device_train_batch_size=1",
        "training.gradient_accumulation_steps=1",
        "training.eval_steps=2",
        "training.save_steps=2",
        "training.logging_steps=1",
        "training.warmup_steps=0",
    ] {
        args.extend(["--set", set]);
    }
    let out = ftslm(dir.path())
        .args(&args)
        .assert()
        .success()
        .stdout(contains("summary:"))
        .stdout(contains("final model"));
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(stdout.contains("frozen base    f32"), "{stdout}");

    let run = dir.path().join("run");
    for file in [
        "checkpoint-2/adapter_config.json",
        "checkpoint-2/adapter_model.safetensors",
        "checkpoint-2/trainer_state.json",
        "checkpoint-3/adapter_model.safetensors",
        "final_model/adapter_config.json",
        "final_model/adapter_model.safetensors",
        "final_model/tokenizer.json",
        "final_model/tokenizer_config.json",
        "best_model/adapter_model.safetensors",
        "metrics.jsonl",
        "run_summary.json",
    ] {
        assert!(run.join(file).is_file(), "run/{file} is missing");
    }
    let logs: Vec<_> = std::fs::read_dir(run.join("logs")).unwrap().collect();
    assert!(!logs.is_empty(), "logs/ holds no TensorBoard file");

    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run_summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["steps"], 3);
    assert_eq!(summary["frozen_base"], "f32");
    assert_eq!(summary["model"], model);
    assert!(summary["initial_eval_loss"].as_f64().unwrap() > 10.0);
    assert!(summary["final_eval_loss"].as_f64().is_some());
    assert!(summary["train_tokens_per_second"].as_f64().unwrap() > 0.0);
    assert!(summary["adapter_parameters"].as_u64().unwrap() > 0);

    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let evals = metrics.lines().filter(|l| l.contains("eval_loss")).count();
    assert_eq!(
        evals, 3,
        "before the first step, at step 2 and at the end:\n{metrics}"
    );

    let adapter: Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("final_model/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(adapter["r"], 16);
    assert_eq!(adapter["peft_type"], "LORA");
}

#[test]
fn a_training_file_must_be_named_as_the_loader_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("my.yml"), "training:\n  seed: 1\n").unwrap();
    ftslm(dir.path())
        .args(["train", "--config", "my.yml", "--dry-run"])
        .assert()
        .failure()
        .stderr(contains("--config my.yml"))
        .stderr(contains("training_config.yml"));
}
