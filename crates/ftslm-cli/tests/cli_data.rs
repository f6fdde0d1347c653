//! The `ftslm` binary end to end: the data and config commands as a user runs them.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;

fn ftslm() -> Command {
    let mut cmd = Command::cargo_bin("ftslm").unwrap();
    // Keep the user's FTSLM_* variables and real AWS out of the tests.
    cmd.env_remove("FTSLM_TRAINING__LEARNING_RATE")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

#[test]
fn help_lists_every_command_of_the_contract() {
    let out = ftslm().arg("--help").assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    for cmd in [
        "quickstart",
        "data",
        "config",
        "model",
        "train",
        "generate",
        "extract",
        "eval",
        "merge",
        "bench",
        "params",
        "cloud",
        "runs",
        "checkpoints",
        "push",
        "metrics",
        "completions",
    ] {
        assert!(
            text.contains(&format!("  {cmd} ")),
            "--help lacks {cmd}:\n{text}"
        );
    }
    ftslm()
        .arg("--version")
        .assert()
        .success()
        .stdout(contains("ftslm 0.1.0"));
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        ftslm()
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(contains("quickstart"));
    }
}

#[test]
fn push_of_a_folder_without_an_adapter_says_what_it_expected() {
    ftslm()
        .args(["push", "runs/x/final_model", "--repo", "me/x", "--dry-run"])
        .assert()
        .code(1)
        .stderr(contains("holds no adapter: expected adapter_config.json"));
}

#[test]
fn bad_usage_exits_2() {
    ftslm()
        .args(["data", "synth"])
        .assert()
        .code(2)
        .stderr(contains("--out"));
}

#[test]
fn synth_is_deterministic_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&a, &b] {
        ftslm()
            .args([
                "data",
                "synth",
                "--train",
                "300",
                "--validation",
                "40",
                "--seed",
                "7",
                "--out",
            ])
            .arg(out)
            .assert()
            .success()
            .stdout(contains("wrote 300 training records"));
    }
    for f in ["train.jsonl", "validation.jsonl"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap()
        );
    }
    ftslm()
        .args(["data", "validate", "--schema", "medical-ie"])
        .arg(a.join("train.jsonl"))
        .arg(a.join("validation.jsonl"))
        .assert()
        .success()
        .stdout(contains(
            "300 records, 300 valid, 0 invalid (schema medical-ie)",
        ))
        .stdout(contains("40 records, 40 valid, 0 invalid"));
}

const FIELDS: &str = r#""cancer_type": "x", "stage": null, "gene_mutation": null, "biomarker": null, "treatment": "y", "response": null, "metastasis_site": null"#;

#[test]
fn a_broken_file_gets_one_precise_line_per_problem_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.jsonl");
    let lines = [
        format!(r#"{{"instruction": "i", "input": "fine", "output": {{{FIELDS}}}}}"#),
        r#"{"instruction": "i", "input": "bad json", "output": {"#.to_string(),
        format!(r#"{{"instruction": "i", "output": {{{FIELDS}}}}}"#),
        format!(r#"{{"instruction": "i", "input": 42, "output": {{{FIELDS}}}}}"#),
        format!(
            r#"{{"instruction": "i", "input": "extra", "output": {{{FIELDS}, "grade": "2"}}}}"#
        ),
        format!(r#"{{"instruction": "i", "input": "", "output": {{{FIELDS}}}}}"#),
    ];
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let out = ftslm()
        .args(["data", "validate"])
        .arg(&path)
        .assert()
        .code(1);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let p = path.display().to_string();
    // Problem lines are PATH:LINE: ...; the per-file summary is PATH: ...
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.strip_prefix(&format!("{p}:"))
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect();
    assert_eq!(problems.len(), 5, "{text}");
    assert!(
        problems[0].starts_with(&format!("{p}:2:")) && problems[0].contains("invalid JSON"),
        "{text}"
    );
    assert!(
        problems[1].starts_with(&format!("{p}:3: missing required key \"input\"")),
        "{text}"
    );
    assert!(
        problems[2].starts_with(&format!("{p}:4: \"input\" is a number, expected a string")),
        "{text}"
    );
    assert!(
        problems[3].starts_with(&format!("{p}:5: output has unexpected field \"grade\"")),
        "{text}"
    );
    assert!(
        problems[4].starts_with(&format!("{p}:6: \"input\" is empty")),
        "{text}"
    );
    assert!(
        problems.iter().all(|l| l.contains(" — ")),
        "every problem says how to fix it"
    );
    assert!(
        text.contains("6 records, 1 valid, 5 invalid (schema medical-ie)"),
        "{text}"
    );
}

fn shared(rel: &str) -> Option<std::path::PathBuf> {
    ftslm_testkit::shared(rel)
}

#[test]
fn the_real_data_validates() {
    let Some(dir) = shared("data/medical-ie") else {
        return;
    };
    ftslm()
        .args(["data", "validate"])
        .arg(dir.join("train.jsonl"))
        .arg(dir.join("validation.jsonl"))
        .assert()
        .success()
        .stdout(contains(
            "4500 records, 4500 valid, 0 invalid (schema medical-ie)",
        ))
        .stdout(contains(
            "500 records, 500 valid, 0 invalid (schema medical-ie)",
        ))
        .stdout(contains("all valid"));
}

#[test]
fn stats_measure_tokens_and_padding_with_the_model_tokenizer() {
    let (Some(data), Some(model)) = (
        shared("data/medical-ie/validation.jsonl"),
        shared("models/smollm2-135m-instruct"),
    ) else {
        return;
    };
    let out = ftslm()
        .args(["data", "stats", "--json", "--batch-size", "4"])
        .arg(&data)
        .arg("--model")
        .arg(&model)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["records"], 500);
    assert_eq!(v["fields"][0]["field"], "cancer_type");
    let t = &v["tokens"];
    assert!(t["total"]["min"].as_u64().unwrap() > 50);
    assert!(t["total"]["median"].as_u64() < t["total"]["p95"].as_u64());
    assert_eq!(t["max_seq_length"], 2048);
    let p = &v["padding"];
    let (plain, grouped, packed) = (
        p["pad_to_longest"].as_f64().unwrap(),
        p["length_grouped"].as_f64().unwrap(),
        p["packed"].as_f64().unwrap(),
    );
    // Both beat padding each batch to its longest example; which of the two
    // wins depends on the data (packing's last rows are part-filled).
    assert!(grouped < plain / 2.0 && packed < plain / 2.0, "{p}");
}

#[test]
fn render_marks_the_answer_tokens() {
    let (Some(data), Some(model)) = (
        shared("data/medical-ie/train.jsonl"),
        shared("models/smollm2-135m-instruct"),
    ) else {
        return;
    };
    let out = ftslm()
        .args(["data", "render", "--json", "--index", "1"])
        .arg(&data)
        .arg("--model")
        .arg(&model)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["line"], 2);
    let mask: Vec<bool> = serde_json::from_value(v["answer_mask"].clone()).unwrap();
    let prompt_len = v["prompt_len"].as_u64().unwrap() as usize;
    assert!(mask[..prompt_len].iter().all(|m| !m), "prompt is masked");
    assert!(
        mask[prompt_len],
        "the answer starts right after the generation prompt"
    );
    assert!(v["full_text"].as_str().unwrap().ends_with("<|im_end|>\n"));
    ftslm()
        .args(["data", "render", "--index", "9999"])
        .arg(&data)
        .arg("--model")
        .arg(&model)
        .assert()
        .code(1)
        .stderr(contains("out of range").and(contains("4500 records")));
}

#[test]
fn config_show_reads_the_original_files_unchanged() {
    let Some(dir) = shared("reference/config") else {
        return;
    };
    let out = ftslm()
        .args(["config", "show", "--no-ssm", "--json", "--config-dir"])
        .arg(&dir)
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    for needle in [
        "g6.2xlarge",
        "/mnt/training",
        "models/llama-3.1-8b-medical-ie",
        "instance_id",
        "hf_repo",
    ] {
        assert!(text.contains(needle), "config show lacks {needle}");
    }
    assert!(Path::new(&dir).join("training_config.yml").exists());
}
