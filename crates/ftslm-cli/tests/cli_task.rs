//! The task travels with the adapter: a tiny model trained with a custom system
//! prompt on a non-medical schema writes `ftslm_task.json` beside every adapter
//! it saves, and `extract` then prompts with that system prompt and
//! instruction and decodes exactly that schema; flags override it with a note,
//! and another base model is refused unless the user says otherwise.

use std::path::Path;

use assert_cmd::Command;
use serde_json::{json, Value};

fn ftslm(cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("ftslm").unwrap();
    cmd.current_dir(cwd)
        .env_remove("FTSLM_TRAINING__LEARNING_RATE")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
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

fn read_json(path: &Path) -> Value {
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
    let mut args = vec![
        "train",
        "--model",
        model,
        "--train-data",
        "data/train.jsonl",
        "--val-data",
        "data/validation.jsonl",
        "--output-dir",
        "run",
        "--no-ssm",
        "--max-steps",
        "2",
    ];
    for set in [
        "dataset.max_seq_length=256",
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
    let task = read_json(&run.join("final_model/ftslm_task.json"));
    assert_eq!(task["system_prompt"], SYSTEM_PROMPT);
    assert_eq!(task["instruction"], INSTRUCTION);
    assert_eq!(task["fields"], json!(["make", "year", "colour"]));
    assert_eq!(task["max_seq_length"], 256);
    assert_eq!(task["base_model"]["name_or_path"], model);
    assert_eq!(
        task["base_model"]["weights_sha256"].as_str().map(str::len),
        Some(64)
    );
    for other in ["checkpoint-1", "checkpoint-2", "best_model"] {
        assert_eq!(
            read_json(&run.join(other).join("ftslm_task.json")),
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
