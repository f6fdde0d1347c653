//! `ftslm train` end to end on the tiny Llama 3.1 checkpoint with synthetic
//! records: the dry run prints the plan and writes nothing; a 3-step run
//! writes the run directory DESIGN.md describes. And the task travels with
//! the adapter: trained with a custom system prompt on a non-medical schema,
//! every adapter directory carries `ftslm_task.json`, and `extract` prompts
//! and decodes as it was trained (flags override it with a note; another base
//! model is refused unless the user says otherwise).

mod common;

use common::{ftslm, synth};
use std::path::Path;

use predicates::str::contains;
use serde_json::{json, Value};

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

    // The run draws its charts, and `ftslm metrics` reads the run back.
    for chart in ["loss", "learning_rate", "grad_norm", "tokens_per_second"] {
        for ext in ["png", "svg"] {
            let path = run.join(format!("plots/{chart}.{ext}"));
            assert!(
                std::fs::metadata(&path).is_ok_and(|m| m.len() > 1000),
                "{} is missing or empty",
                path.display()
            );
        }
    }
    let shown = ftslm(dir.path())
        .args(["metrics", "run", "--csv", "steps.csv"])
        .assert()
        .success();
    let shown = String::from_utf8(shown.get_output().stdout.clone()).unwrap();
    let initial = summary["initial_eval_loss"].as_f64().unwrap();
    assert!(shown.contains("steps 3"), "{shown}");
    assert!(
        shown.contains(&format!("initial {initial:.4} (step 0)")),
        "{shown}"
    );
    let csv = std::fs::read_to_string(dir.path().join("steps.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4, "steps 0..=3:\n{csv}");
    assert!(
        csv.starts_with("step,epoch,loss,learning_rate,grad_norm,tokens_per_second,eval_loss\n")
    );
    // Nothing is replaced without --force, and never the run's own history.
    ftslm(dir.path())
        .args(["metrics", "run", "--csv", "steps.csv"])
        .assert()
        .code(1)
        .stderr(contains("--force"));
    ftslm(dir.path())
        .args(["metrics", "run", "--csv", "run/metrics.jsonl", "--force"])
        .assert()
        .code(1);
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.jsonl")).unwrap(),
        metrics
    );
    ftslm(dir.path())
        .args(["metrics", "run", "--plot", "run/plots"])
        .assert()
        .code(1)
        .stderr(contains("--force"));
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

const SYSTEM_PROMPT: &str = "You catalogue used cars. Answer with JSON only.";
const INSTRUCTION: &str = "List the car's make, model year and colour.";

/// Records of a car-listing task: nothing like the medical fields.
fn write_car_data(dir: &Path) {
    let cars = [
        ("Toyota", "2015", "red"),
        ("Volvo", "2019", "blue"),
        ("Fiat", "2008", "white"),
        ("Honda", "2021", "black"),
        ("Skoda", "2012", "green"),
        ("Mazda", "2017", "grey"),
    ];
    let lines = |range: std::ops::Range<usize>| -> String {
        cars[range]
            .iter()
            .map(|(make, year, colour)| {
                json!({
                    "instruction": INSTRUCTION,
                    "input": format!("For sale: a {colour} {make} from {year}, one owner, full service history."),
                    "output": {"make": make, "year": year, "colour": colour},
                })
                .to_string()
                    + "\n"
            })
            .collect()
    };
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/train.jsonl"), lines(0..4)).unwrap();
    std::fs::write(dir.join("data/validation.jsonl"), lines(4..6)).unwrap();
}

fn read_json_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn extract_prompts_and_decodes_as_the_adapter_was_trained() {
    let model = ftslm_testkit::require_shared!("models/tiny-llama3");
    let dir = tempfile::tempdir().unwrap();
    write_car_data(dir.path());
    let model = model.to_str().unwrap();
    let prompt_setting = format!("dataset.system_prompt={SYSTEM_PROMPT}");
    let mut args = train_args(model, "run");
    args.extend(["--max-steps", "2"]);
    for set in [
        prompt_setting.as_str(),
        "quantization.base=f32",
        "training.per_device_train_batch_size=1",
        "training.gradient_accumulation_steps=1",
        "training.save_steps=1",
        "training.eval_steps=1",
        "training.warmup_steps=0",
    ] {
        args.extend(["--set", set]);
    }
    ftslm(dir.path()).args(&args).assert().success();

    // Every adapter directory the run wrote carries the same task record.
    let run = dir.path().join("run");
    let task = read_json_file(&run.join("final_model/ftslm_task.json"));
    assert_eq!(task["system_prompt"], SYSTEM_PROMPT);
    assert_eq!(task["instruction"], INSTRUCTION);
    assert_eq!(task["fields"], json!(["make", "year", "colour"]));
    assert_eq!(task["max_seq_length"], 512);
    assert_eq!(task["base_model"]["name_or_path"], model);
    assert_eq!(
        task["base_model"]["weights_sha256"].as_str().map(str::len),
        Some(64)
    );
    for other in ["checkpoint-1", "checkpoint-2", "best_model"] {
        assert_eq!(
            read_json_file(&run.join(other).join("ftslm_task.json")),
            task,
            "{other}/ftslm_task.json"
        );
    }

    // extract, given no prompt flags, uses the recorded prompt and schema.
    let out = ftslm(dir.path())
        .args(["-v", "extract", "--json", "--max-new-tokens", "2000"])
        .args(["--text", "A silver Ford from 2010, low mileage."])
        .args(["--model", model, "--adapter", "run/final_model"])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let prompt = stderr
        .split("prompt of the first input:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no prompt printed under -v:\n{stderr}"));
    assert!(prompt.contains(SYSTEM_PROMPT), "{prompt}");
    assert!(
        prompt.contains(&format!("{INSTRUCTION}\n\nText: A silver Ford")),
        "{prompt}"
    );
    assert!(!prompt.contains("medical"), "{prompt}");
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let line: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line["error"], Value::Null, "{line}");
    let keys: Vec<&str> = line["extraction"]
        .as_object()
        .unwrap_or_else(|| panic!("no object in {line}"))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["make", "year", "colour"]);

    // A flag overrides the record, and says so.
    let out = ftslm(dir.path())
        .args(["-v", "extract", "--json", "--max-new-tokens", "2000"])
        .args(["--text", "A silver Ford from 2010."])
        .args(["--system-prompt", "Be brief."])
        .args(["--model", model, "--adapter", "run/final_model"])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("--system-prompt differs from the one the adapter was trained with"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Be brief.") && !stderr.contains(SYSTEM_PROMPT),
        "{stderr}"
    );

    // The same architecture with other weights is refused before loading.
    let other = dir.path().join("other-base");
    std::fs::create_dir(&other).unwrap();
    for entry in std::fs::read_dir(model).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, other.join(path.file_name().unwrap())).unwrap();
        }
    }
    let weights = other.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&weights, bytes).unwrap();
    let out = ftslm(dir.path())
        .args(["extract", "--text", "A Ford."])
        .args(["--model", "other-base", "--adapter", "run/final_model"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("was trained on") && stderr.contains("--allow-other-base"),
        "{stderr}"
    );
    ftslm(dir.path())
        .args(["extract", "--json", "--max-new-tokens", "2000"])
        .args(["--text", "A Ford.", "--allow-other-base"])
        .args(["--model", "other-base", "--adapter", "run/final_model"])
        .assert()
        .success();
}

/// `model inspect` and the training plan use one memory formula: for the same
/// rows in flight (one row, packed to max_seq_length) and an NF4 base, whose
/// measured bytes equal the formula's, they print the same total.
#[test]
fn model_inspect_and_the_training_plan_estimate_the_same_memory() {
    let model = ftslm_testkit::require_shared!("models/tiny-llama3");
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    let model = model.to_str().unwrap();
    let out = ftslm(dir.path())
        .args(["model", "inspect", model, "--json", "--no-ssm"])
        .args(["--seq-len", "512", "--batch-size", "1"])
        .assert()
        .success();
    let report: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let total = report["memory"]["total"]
        .as_u64()
        .unwrap_or_else(|| panic!("no memory.total in {report}"));

    let mut args = train_args(model, "run");
    args.extend(["--dry-run"]);
    for set in [
        "dataset.packing=true",
        "quantization.base=nf4",
        "training.per_device_train_batch_size=1",
    ] {
        args.extend(["--set", set]);
    }
    let out = ftslm(dir.path()).args(&args).assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let printed = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("memory (rough) "))
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("no memory line in:\n{stdout}"));
    // The plan prints MiB with one decimal for a model this small.
    let expected = format!("{:.1} MiB", total as f64 / (1024.0 * 1024.0));
    assert_eq!(printed, expected, "inspect's total is {total} bytes");
    assert!(
        stdout.contains("1 row(s) of 512 tokens in flight"),
        "{stdout}"
    );
}
