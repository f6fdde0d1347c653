//! `ftslm generate`, `extract` and `eval` end to end on the tiny Llama-3.1
//! checkpoint and its PEFT adapter: a random model, so what is checked is
//! the contract — constrained answers are always the task's JSON object,
//! failures are per record, reports add up, seeds reproduce.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use ftslm_data::MEDICAL_IE_FIELDS;
use predicates::str::contains;
use serde_json::Value;

fn ftslm(cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("ftslm").unwrap();
    cmd.current_dir(cwd)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// The tiny model and its adapter, or `None` (a panic under CI) without ../shared.
fn tiny() -> Option<(PathBuf, PathBuf)> {
    let dir = ftslm_testkit::shared("models/tiny-llama3")?;
    Some((dir.clone(), dir.join("adapter")))
}

const NARRATIVE: &str = "A 58-year-old man with stage IIIA lung adenocarcinoma, EGFR exon 19 \
deletion, started osimertinib; partial response at 8 weeks, no distant metastases.";

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn constrained_extraction_is_always_the_task_object() {
    let Some((model, adapter)) = tiny() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = ftslm(tmp.path())
        .args([
            "extract",
            "--json",
            "--max-new-tokens",
            "2000",
            "--text",
            NARRATIVE,
        ])
        .arg("--model")
        .arg(&model)
        .arg("--adapter")
        .arg(&adapter)
        .assert()
        .success();
    let lines = json_lines(&out.get_output().stdout);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["error"], Value::Null);
    let object = lines[0]["extraction"].as_object().expect("an object");
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(keys, MEDICAL_IE_FIELDS);
    for (key, value) in object {
        assert!(value.is_string() || value.is_null(), "{key}: {value}");
        if let Some(s) = value.as_str() {
            assert!(s.chars().count() <= 200, "{key} exceeds the grammar's cap");
        }
    }
    // the text is the object in json.dumps layout
    let text = lines[0]["text"].as_str().unwrap();
    assert!(text.starts_with("{\"cancer_type\": "), "{text}");
}

#[test]
fn unconstrained_failures_are_reported_per_record_with_exit_1() {
    let Some((model, adapter)) = tiny() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("in.jsonl");
    std::fs::write(
        &file,
        format!(
            "{{\"id\": \"a\", \"input\": \"{NARRATIVE}\"}}\n{{\"id\": 7, \"input\": \"Stage II colon cancer, KRAS wild-type.\"}}\n"
        ),
    )
    .unwrap();
    let out = ftslm(tmp.path())
        .args([
            "extract",
            "--json",
            "--unconstrained",
            "--max-new-tokens",
            "12",
        ])
        .arg("--model")
        .arg(&model)
        .arg("--adapter")
        .arg(&adapter)
        .arg("--file")
        .arg(&file)
        .assert()
        .code(1)
        .stderr(contains("2 of 2 inputs have no valid extraction"));
    let lines = json_lines(&out.get_output().stdout);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], "a");
    assert_eq!(lines[0]["line"], 1);
    assert_eq!(lines[1]["id"], 7);
    for l in &lines {
        assert!(l["error"].is_string());
        assert_eq!(l["extraction"], Value::Null);
    }
}

#[test]
fn a_bad_input_line_is_named_before_any_model_work() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("in.jsonl");
    std::fs::write(
        &file,
        "{\"input\": \"fine\"}\n{\"text\": \"no input key\"}\nnot json\n",
    )
    .unwrap();
    ftslm(tmp.path())
        .args(["extract", "--model", "does-not-matter", "--file"])
        .arg(&file)
        .assert()
        .code(1)
        .stderr(contains("in.jsonl:2: no \"input\" string"))
        .stderr(contains("in.jsonl:3: invalid JSON"));
}

#[test]
fn eval_scores_every_record_and_compares_reports() {
    let Some((model, adapter)) = tiny() else {
        return;
    };
    let Some(val) = ftslm_testkit::shared("data/medical-ie/validation.jsonl") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base_report = tmp.path().join("base.json");
    let run = |adapter: Option<&Path>, out: &Path| {
        let mut cmd = ftslm(tmp.path());
        cmd.args(["eval", "--json", "--limit", "3", "--max-new-tokens", "2000"])
            .arg("--model")
            .arg(&model)
            .arg("--data")
            .arg(&val)
            .arg("--out")
            .arg(out);
        if let Some(a) = adapter {
            cmd.arg("--adapter").arg(a);
        }
        let output = cmd.assert().success();
        serde_json::from_slice::<Value>(&output.get_output().stdout).unwrap()
    };
    let base = run(None, &base_report);
    let summary = &base["summary"];
    assert_eq!(summary["records"], 3);
    assert_eq!(base["records"].as_array().unwrap().len(), 3);
    // constrained decoding: every answer parses as the object
    assert_eq!(summary["json_valid_rate"], 1.0);
    let fields = summary["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 7);
    let loss = summary["answer_loss"].as_f64().unwrap();
    assert!(loss.is_finite() && loss > 0.0);
    // the file holds the same report
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&base_report).unwrap()).unwrap();
    assert_eq!(written, base);

    let with_adapter = run(Some(&adapter), &tmp.path().join("adapted.json"));
    let adapted_loss = with_adapter["summary"]["answer_loss"].as_f64().unwrap();
    assert_ne!(adapted_loss, loss, "the adapter changes the model");

    ftslm(tmp.path())
        .args(["eval", "--limit", "3", "--max-new-tokens", "2000"])
        .arg("--model")
        .arg(&model)
        .arg("--adapter")
        .arg(&adapter)
        .arg("--data")
        .arg(&val)
        .arg("--compare")
        .arg(&base_report)
        .assert()
        .success()
        .stdout(contains("all fields (micro)"))
        .stdout(contains("→"))
        .stdout(contains("answer loss"));
}

#[test]
fn seeded_sampling_reproduces_and_greedy_is_the_default() {
    let Some((model, adapter)) = tiny() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let generate = |extra: &[&str]| {
        let out = ftslm(tmp.path())
            .args(["generate", "--prompt", "Hello", "--max-new-tokens", "8"])
            .arg("--model")
            .arg(&model)
            .arg("--adapter")
            .arg(&adapter)
            .args(extra)
            .assert()
            .success();
        String::from_utf8(out.get_output().stdout.clone()).unwrap()
    };
    let greedy = generate(&[]);
    assert_eq!(greedy, generate(&["--temperature", "0"]));
    let a = generate(&["--temperature", "1.0", "--seed", "5"]);
    assert_eq!(a, generate(&["--temperature", "1.0", "--seed", "5"]));
    assert!(!a.trim().is_empty());
    ftslm(tmp.path())
        .args([
            "generate",
            "--prompt",
            "x",
            "--temperature",
            "0.7",
            "--top-p",
            "1.5",
        ])
        .arg("--model")
        .arg(&model)
        .assert()
        .code(2)
        .stderr(contains("'1.5' for '--top-p"));
}
