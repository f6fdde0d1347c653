//! Reliability under misuse (issue 17), with real processes: one writer per
//! run directory.

mod common;

use common::{ftslm, synth};

use std::process::Stdio;
use std::time::{Duration, Instant};

use predicates::prelude::*;
use predicates::str::contains;

fn train_args<'a>(model: &'a str, max_steps: &'a str) -> Vec<&'a str> {
    vec![
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
        "--set",
        "dataset.max_seq_length=256",
        "--set",
        "training.per_device_train_batch_size=1",
        "--set",
        "training.gradient_accumulation_steps=1",
        "--set",
        max_steps,
    ]
}

/// A second `ftslm train` into the directory of a live run exits 1 naming
/// the first's pid and command, and leaves the first running; once the
/// first is killed (SIGKILL: no chance to clean up), the directory is free.
#[test]
fn a_second_run_into_a_live_run_directory_is_refused_naming_the_holder() {
    let model = ftslm_testkit::require_shared!("models/tiny-llama3");
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());

    let bin = assert_cmd::cargo::cargo_bin("ftslm");
    let mut first = std::process::Command::new(&bin)
        .current_dir(dir.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(train_args(model, "training.max_steps=1000000"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let holder = format!("pid {}", first.id());
    let lock = dir.path().join("run").join(ftslm_fs::LOCK_FILE);
    let started = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|s| s.starts_with(&holder)) {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended before taking its lock"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no lock after 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    ftslm(dir.path())
        .args(train_args(model, "training.max_steps=1"))
        .assert()
        .code(1)
        .stderr(contains("in use by another ftslm process"))
        .stderr(contains(holder.as_str()))
        .stderr(contains("training.max_steps=1000000"));
    assert!(
        first.try_wait().unwrap().is_none(),
        "the refused run must not disturb the first"
    );

    first.kill().unwrap();
    first.wait().unwrap();
    // --no-resume: the killed run may have left a checkpoint of its own
    // settings; this is a new run in the freed directory.
    let mut args = train_args(model, "training.max_steps=1");
    args.push("--no-resume");
    ftslm(dir.path()).args(&args).assert().success();
    assert!(dir
        .path()
        .join("run/final_model/adapter_model.safetensors")
        .is_file());
}

/// `data synth` into a folder that holds its files refuses before writing
/// anything, and replaces them with --force.
#[test]
fn data_synth_replaces_existing_files_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let synth = |extra: &[&str]| {
        let mut args = vec![
            "data",
            "synth",
            "--out",
            "data",
            "--train",
            "3",
            "--validation",
            "2",
        ];
        args.extend(extra);
        ftslm(dir.path()).args(args).assert()
    };
    synth(&[]).success();
    let train = dir.path().join("data/train.jsonl");
    std::fs::write(&train, "mine\n").unwrap();
    synth(&[])
        .code(1)
        .stderr(contains("already exists"))
        .stderr(contains("--force"));
    assert_eq!(std::fs::read_to_string(&train).unwrap(), "mine\n");
    synth(&["--force"]).success();
    assert_ne!(std::fs::read_to_string(&train).unwrap(), "mine\n");
}

/// `eval --out` never writes over one of its inputs (even through another
/// spelling of the path), replaces an existing report only with --force,
/// and names a missing folder — all before loading the model.
#[test]
fn eval_checks_its_report_path_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    ftslm(dir.path())
        .args([
            "data",
            "synth",
            "--out",
            "data",
            "--train",
            "3",
            "--validation",
            "2",
        ])
        .assert()
        .success();
    let data = dir.path().join("data/validation.jsonl");
    let before = std::fs::read(&data).unwrap();
    // The model is never opened: a path that does not exist shows it.
    let eval = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--model",
            "no-such-model",
            "--data",
            "data/validation.jsonl",
            "--out",
            out,
        ];
        args.extend(extra);
        ftslm(dir.path()).args(args).assert()
    };
    for out in ["data/validation.jsonl", "./data/../data/validation.jsonl"] {
        eval(out, &["--force"])
            .code(1)
            .stderr(contains("is the same file as --data"));
    }
    assert_eq!(std::fs::read(&data).unwrap(), before);

    std::fs::write(dir.path().join("report.json"), "keep").unwrap();
    eval("report.json", &[])
        .code(1)
        .stderr(contains("already exists"))
        .stderr(contains("--force"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("report.json")).unwrap(),
        "keep"
    );
    eval("missing/dir/report.json", &[])
        .code(1)
        .stderr(contains("does not exist"));
    // Past these checks, the command goes on to the model (and fails there).
    eval("report2.json", &[])
        .code(1)
        .stderr(contains("no-such-model"));
}

/// A 100-byte GGUF declaring `general.alignment = 0` (candle divides by it)
/// is a clear error from every command that opens a model, not a panic.
#[test]
fn a_crafted_gguf_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let key = "general.alignment";
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.extend((key.len() as u64).to_le_bytes());
    bytes.extend(key.as_bytes());
    bytes.extend(4u32.to_le_bytes());
    bytes.extend(0u32.to_le_bytes());
    std::fs::write(dir.path().join("crafted.gguf"), bytes).unwrap();
    for args in [
        vec!["model", "inspect", "crafted.gguf", "--no-ssm"],
        vec!["extract", "--model", "crafted.gguf", "--text", "A patient."],
    ] {
        ftslm(dir.path())
            .args(&args)
            .assert()
            .code(1)
            .stderr(contains("general.alignment is 0"))
            .stderr(predicates::str::contains("panicked").not());
    }
}

/// Credentials in an index or endpoint URL (pip's `user:password@host`
/// convention) never reach the output: the quickstart's fetch errors name
/// the host with the userinfo redacted.
#[test]
fn credentials_in_urls_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let out = ftslm(dir.path())
        .args(["quickstart", "--out", "q", "--no-ssm"])
        // No fixtures, an empty download cache: the fetch must run.
        .env_remove("FTSLM_SHARED")
        .env("HOME", dir.path())
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        // Port 9 (discard) refuses at once on loopback.
        .env(
            "FTSLM_PYPI_URL",
            "http://pypi-user:SECRET1@127.0.0.1:9/simple",
        )
        .env(
            "HF_ENDPOINT",
            "http://hub-user:SECRET2@127.0.0.1:9/?token=SECRET3",
        )
        .assert()
        .code(1);
    let output = out.get_output();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for secret in ["SECRET1", "SECRET2", "SECRET3", "pypi-user", "hub-user"] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
    assert!(text.contains("***@127.0.0.1:9"), "{text}");
}

/// Values that mean nothing are refused at the command line, naming the
/// flag and the valid range, before any file is read.
#[test]
fn nonsense_flag_values_are_refused_naming_the_flag_and_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let extract = |extra: &[&'static str]| {
        let mut args = vec!["extract", "--model", "m"];
        args.extend_from_slice(extra);
        args
    };
    let generate = |extra: &[&'static str]| {
        let mut args = vec!["generate", "--model", "m", "--prompt", "hi"];
        args.extend_from_slice(extra);
        args
    };
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            extract(&["--text", "x", "--batch-size", "0"]),
            "--batch-size",
            "at least 1",
        ),
        (
            extract(&["--text", "x", "--max-new-tokens", "0"]),
            "--max-new-tokens",
            "at least 1",
        ),
        (
            vec![
                "eval",
                "--model",
                "m",
                "--data",
                "d.jsonl",
                "--batch-size",
                "0",
            ],
            "--batch-size",
            "at least 1",
        ),
        (extract(&["--text", ""]), "--text", "is empty"),
        (extract(&["--text", "  \n"]), "--text", "is empty"),
        (
            generate(&["--temperature", "nan"]),
            "--temperature",
            "finite",
        ),
        (
            generate(&["--temperature=-1"]),
            "--temperature",
            "0 (greedy) or more",
        ),
        (generate(&["--top-p", "0"]), "--top-p", "(0, 1]"),
        (generate(&["--top-p", "1.5"]), "--top-p", "(0, 1]"),
        (
            vec!["data", "stats", "d.jsonl", "--batch-size", "0"],
            "--batch-size",
            "at least 1",
        ),
    ];
    for (args, flag, says) in cases {
        ftslm(dir.path())
            .args(&args)
            .assert()
            .code(2)
            .stderr(contains(flag))
            .stderr(contains(says));
    }
}

/// Resuming a run with settings that define another run is refused, each
/// changed key listed old → new with the fix; the keys that only say when
/// to log, save or stop may change with --allow-changed, others may not.
#[test]
fn resume_refuses_changed_settings_naming_each() {
    let model = ftslm_testkit::require_shared!("models/tiny-llama3");
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    let run = |extra: &[&str]| {
        let mut args = train_args(model, "training.save_steps=1");
        args.extend_from_slice(extra);
        ftslm(dir.path()).args(&args).assert()
    };
    run(&["--max-steps", "2"]).success();

    run(&["--max-steps", "3", "--set", "training.learning_rate=1e-4"])
        .code(1)
        .stderr(contains("with other settings"))
        .stderr(contains("training.learning_rate: 0.0002 → 0.0001"))
        .stderr(contains("training.max_steps: 2 → 3"))
        .stderr(contains("--no-resume"))
        .stderr(contains("--allow-changed").not());
    run(&["--max-steps", "3"])
        .code(1)
        .stderr(contains("training.max_steps: 2 → 3"))
        .stderr(contains("--allow-changed training.max_steps"));
    run(&["--max-steps", "3", "--allow-changed", "lora.r"])
        .code(1)
        .stderr(contains("`lora.r` cannot change within a run"));

    // Other training data: its digest differs.
    let train = dir.path().join("data/train.jsonl");
    let text = std::fs::read_to_string(&train).unwrap();
    let first = text.lines().next().unwrap().to_string();
    std::fs::write(&train, format!("{text}{first}\n")).unwrap();
    run(&["--max-steps", "2"])
        .code(1)
        .stderr(contains("dataset.train_file.sha256"));
    std::fs::write(&train, &text).unwrap();

    run(&["--max-steps", "3", "--allow-changed", "training.max_steps"])
        .success()
        .stderr(contains("resuming with training.max_steps changed: 2 → 3"));
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("run/run_summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["steps"], 3);
}

/// Settings that would exhaust memory are refused from the plan, before the
/// model loads or anything is allocated: a LoRA rank above the matrices it
/// adapts, and activations larger than the machine's memory.
#[test]
fn memory_bombs_are_refused_before_any_allocation() {
    let model = ftslm_testkit::require_shared!("models/tiny-llama3");
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    let mut args = train_args(model, "lora.r=100000000");
    args.push("--dry-run");
    ftslm(dir.path())
        .args(&args)
        .assert()
        .code(1)
        .stderr(contains("lora.r"))
        .stderr(contains("above the rank"))
        .stderr(contains("loading").not());
    let mut args = train_args(model, "dataset.max_seq_length=100000000");
    args.extend(["--set", "dataset.packing=true", "--dry-run"]);
    ftslm(dir.path())
        .args(&args)
        .assert()
        .code(1)
        .stderr(contains("dataset.max_seq_length"))
        .stderr(contains("of memory is available"))
        .stderr(contains("loading").not());
}

/// A line that is not UTF-8 is one invalid line, named with its byte
/// offset, not a refusal of the whole file; a UTF-8 byte-order mark is
/// accepted; a pipe is refused instead of waited on.
#[test]
fn non_utf8_lines_bom_and_pipes_are_handled_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    ftslm(dir.path())
        .args([
            "data",
            "synth",
            "--out",
            "data",
            "--train",
            "3",
            "--validation",
            "1",
        ])
        .assert()
        .success();
    let good = std::fs::read_to_string(dir.path().join("data/train.jsonl")).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(lines[0].as_bytes());
    bytes.push(b'\n');
    // Line 2: a Latin-1 é inside the narrative.
    let latin1 = lines[1].replacen("\"input\":\"", "\"input\":\"caf\u{e9} ", 1);
    let cut = latin1.find('\u{e9}').unwrap();
    bytes.extend(&latin1.as_bytes()[..cut]);
    bytes.push(0xE9);
    bytes.extend(&latin1.as_bytes()[cut + 2..]);
    bytes.push(b'\n');
    bytes.extend(lines[2].as_bytes());
    bytes.push(b'\n');
    std::fs::write(dir.path().join("mixed.jsonl"), &bytes).unwrap();

    let out = ftslm(dir.path())
        .args(["data", "validate", "mixed.jsonl"])
        .assert()
        .code(1);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.get_output().stdout),
        String::from_utf8_lossy(&out.get_output().stderr)
    );
    assert!(
        text.contains(&format!("mixed.jsonl:2: not UTF-8 (byte offset {cut})")),
        "{text}"
    );
    assert!(
        !text.contains("mixed.jsonl:1") && !text.contains("mixed.jsonl:3"),
        "{text}"
    );
    assert!(
        !text.contains("stream did not contain valid UTF-8"),
        "{text}"
    );

    // extract --file reports the line before any model work.
    ftslm(dir.path())
        .args([
            "extract",
            "--model",
            "no-such-model",
            "--file",
            "mixed.jsonl",
        ])
        .assert()
        .code(1)
        .stderr(contains("mixed.jsonl:2: not UTF-8"));

    let fifo = dir.path().join("pipe.jsonl");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    ftslm(dir.path())
        .args(["data", "validate", "pipe.jsonl"])
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(contains("not a regular file"));
}

/// A narrative longer than the adapter was trained to read is refused for
/// that record alone (before tokenizing when it is absurdly long), under a
/// 2 GiB address-space limit: before, 100k characters aborted the process
/// trying to allocate 10 GB. The other records are still extracted.
#[test]
fn overlong_inputs_are_refused_per_record_within_bounded_memory() {
    let model = ftslm_testkit::require_shared!("models/tiny-llama3");
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    ftslm(dir.path())
        .args(train_args(model, "training.max_steps=1"))
        .assert()
        .success();
    let huge = "The patient was seen again. ".repeat(4000); // 112k characters
    let long = "The patient was seen again. ".repeat(60); // ~1,700 characters, > 256 tokens
    let lines = [
        serde_json::json!({"id": "short", "input": "A 54-year-old with stage II breast cancer."}),
        serde_json::json!({"id": "long", "input": long}),
        serde_json::json!({"id": "huge", "input": huge}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.path().join("inputs.jsonl"), text).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("ftslm");
    let script = format!(
        "ulimit -v 2097152; exec '{}' extract --model '{model}' --adapter run/final_model \
         --file inputs.jsonl --json --max-new-tokens 8 --unconstrained",
        bin.display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 3, "{stdout}");
    let error = |i: usize| results[i]["error"].as_str().unwrap_or_default().to_string();
    // The short one was run (the random tiny model's text need not be JSON).
    assert!(!error(0).contains("max_seq_length"), "{}", results[0]);
    assert!(
        !results[0]["text"].as_str().unwrap_or_default().is_empty(),
        "{}",
        results[0]
    );
    assert!(
        error(1).contains("more than the 256 the model reads"),
        "{}",
        results[1]
    );
    assert!(error(2).contains("112000 characters"), "{}", results[2]);
}

/// An adapter holding NaN (what a diverged run saves) is refused at load,
/// naming the tensor, by every command that loads one; before, `generate`
/// printed nothing and exited 0 and `merge` wrote a NaN model.
#[test]
fn a_nan_adapter_is_refused_naming_the_tensor() {
    let model = ftslm_testkit::require_shared!("models/tiny-llama3");
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    ftslm(dir.path())
        .args(train_args(model, "training.max_steps=1"))
        .assert()
        .success();
    // The first value of the first tensor (in the file's order) becomes NaN.
    let weights = dir.path().join("run/final_model/adapter_model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let (name, first) = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| (k.clone(), v["data_offsets"][0].as_u64().unwrap() as usize))
        .min_by_key(|(_, offset)| *offset)
        .unwrap();
    let at = 8 + header_len + first;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&weights, bytes).unwrap();

    for args in [
        vec!["extract", "--text", "A patient."],
        vec!["generate", "--prompt", "hi"],
        vec!["merge", "--out", "merged"],
    ] {
        ftslm(dir.path())
            .args(&args)
            .args(["--model", model, "--adapter", "run/final_model"])
            .assert()
            .code(1)
            .stderr(contains(name.as_str()))
            .stderr(contains("NaN at index 0"));
    }
    assert!(!dir.path().join("merged").exists());
}

/// An output folder that cannot be written is reported before the model
/// loads, not after (minutes, for an 8B base).
#[test]
fn an_unwritable_output_dir_fails_before_loading() {
    let model = ftslm_testkit::require_shared!("models/tiny-llama3");
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    std::fs::write(dir.path().join("taken"), "a file").unwrap();
    let mut args = train_args(model, "training.max_steps=1");
    let at = args.iter().position(|a| *a == "run").unwrap();
    args[at] = "taken/run";
    ftslm(dir.path())
        .args(&args)
        .assert()
        .code(1)
        .stderr(contains("training.output_dir"))
        .stderr(contains("not a folder"))
        .stderr(contains("loading").not());
}

/// Settings that mean nothing are refused naming the key and the range:
/// a negative lora_alpha (it flipped the update's sign), and a number of
/// epochs no run could take (1e300 became 18446744073709551615 steps).
#[test]
fn nonsense_settings_are_refused_naming_the_key() {
    let model = ftslm_testkit::require_shared!("models/tiny-llama3");
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    for (set, says) in [
        (
            "lora.lora_alpha=-16",
            "lora_alpha must be a positive number",
        ),
        (
            "training.num_train_epochs=1e300",
            "optimizer steps; at most 1000000000",
        ),
    ] {
        let mut args = train_args(model, set);
        args.push("--dry-run");
        ftslm(dir.path())
            .args(&args)
            .assert()
            .code(1)
            .stderr(contains(says));
    }
}

/// A 20 MB training record is cut in characters before it is tokenized,
/// with a note naming its file:line, under a 2 GiB address-space limit
/// (tokenizing 50 MB whole took 7 GB and 80 s, all to keep 256 tokens).
#[test]
fn a_huge_training_record_is_cut_before_tokenizing() {
    let model = ftslm_testkit::require_shared!("models/tiny-llama3");
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    let train = dir.path().join("data/train.jsonl");
    let text = std::fs::read_to_string(&train).unwrap();
    let mut record: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    record["input"] = serde_json::Value::String("The patient was seen again. ".repeat(750_000));
    std::fs::write(&train, format!("{text}{record}\n")).unwrap();

    let bin = assert_cmd::cargo::cargo_bin("ftslm");
    let args: Vec<String> = train_args(model, "training.max_steps=1")
        .into_iter()
        .map(|a| format!("'{a}'"))
        .collect();
    let script = format!(
        "ulimit -v 2097152; exec '{}' {} --dry-run",
        bin.display(),
        args.join(" ")
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("data/train.jsonl:9: the narrative is 21000000 characters; cut to 4096"),
        "{stderr}"
    );
}

/// An error's cause is printed once, not once per layer that wrapped it.
#[test]
fn error_causes_are_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["data", "validate", "missing.jsonl"],
        vec!["data", "stats", "missing.jsonl"],
        vec!["eval", "--model", "m", "--data", "missing.jsonl"],
    ] {
        let out = ftslm(dir.path()).args(&args).assert().code(1);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert_eq!(
            stderr.matches("os error 2").count(),
            1,
            "{args:?}: {stderr}"
        );
    }
}

/// Without AWS credentials, `cloud doctor` says so once, with the sources
/// tried and the fix, and skips the checks that need them, instead of a
/// multi-line dump of the SDK's provider chain for every check.
#[test]
fn missing_aws_credentials_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let none = dir.path().join("none");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config");
    let out = ftslm(dir.path())
        .args(["cloud", "doctor", "--no-ssm", "--config-dir", config])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("HOME", dir.path())
        .env("AWS_CONFIG_FILE", &none)
        .env("AWS_SHARED_CREDENTIALS_FILE", &none)
        .assert()
        .code(1);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.get_output().stdout),
        String::from_utf8_lossy(&out.get_output().stderr)
    );
    assert_eq!(
        text.matches("no AWS credentials were found").count(),
        1,
        "{text}"
    );
    assert!(text.contains("aws configure"), "{text}");
    assert_eq!(text.matches("needs AWS credentials").count(), 7, "{text}");
    for internal in [
        "DispatchFailure",
        "ProviderChainError",
        "CredentialsNotLoaded",
    ] {
        assert!(!text.contains(internal), "{internal}: {text}");
    }
}

/// A config "file" that is a folder is an error naming it, not a note and
/// the built-in defaults.
#[test]
fn a_config_file_that_is_a_folder_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config/training_config.yml")).unwrap();
    ftslm(dir.path())
        .args(["config", "show", "--no-ssm", "--config-dir", "config"])
        .assert()
        .code(1)
        .stderr(contains("training_config.yml is not a file"));
}

/// Training on repeated records, or validating on training records, goes
/// on with a warning that counts them (`data validate` refuses both).
#[test]
fn repeated_and_shared_examples_are_counted_in_a_warning() {
    let model = ftslm_testkit::require_shared!("models/tiny-llama3");
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    let train = dir.path().join("data/train.jsonl");
    let text = std::fs::read_to_string(&train).unwrap();
    let first = text.lines().next().unwrap().to_string();
    std::fs::write(&train, format!("{text}{first}\n")).unwrap();
    let mut args = train_args(model, "training.max_steps=1");
    let at = args
        .iter()
        .position(|a| *a == "data/validation.jsonl")
        .unwrap();
    args[at] = "data/train.jsonl";
    args.push("--dry-run");
    ftslm(dir.path())
        .args(&args)
        .assert()
        .success()
        .stderr(contains("1 training record(s) repeat another's narrative"))
        .stderr(contains(
            "9 of 9 validation record(s) also appear in the training data",
        ));
}

/// `-v` is read: `train -v` names the config files and every run setting
/// that did not come from the defaults, with its source.
#[test]
fn verbose_train_shows_where_its_settings_came_from() {
    let model = ftslm_testkit::require_shared!("models/tiny-llama3");
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    let mut args = train_args(model, "training.learning_rate=1e-4");
    args.extend(["--dry-run", "-v"]);
    ftslm(dir.path())
        .args(&args)
        .assert()
        .success()
        .stderr(contains("config files:"))
        .stderr(contains("training.learning_rate = 0.0001 (cli)"));
    let mut quiet = train_args(model, "training.learning_rate=1e-4");
    quiet.push("--dry-run");
    ftslm(dir.path())
        .args(&quiet)
        .assert()
        .success()
        .stderr(contains("config files:").not());
}

/// A base model holding NaN is refused at load naming the tensor, instead
/// of decoding NaN logits into an empty answer with exit 0.
#[test]
fn a_nan_base_weight_is_refused_naming_the_tensor() {
    let model = ftslm_testkit::require_shared!("models/tiny-llama3");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("model");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(&model)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(copied.success());
    // The last value of the tensor stored last in the file becomes NaN.
    let weights = copy.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let (name, dtype, end) = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let end = v["data_offsets"][1].as_u64().unwrap() as usize;
            (k.clone(), v["dtype"].as_str().unwrap().to_string(), end)
        })
        .max_by_key(|(_, _, end)| *end)
        .unwrap();
    let at = 8 + header_len + end;
    match dtype.as_str() {
        "F32" => bytes[at - 4..at].copy_from_slice(&f32::NAN.to_le_bytes()),
        "BF16" | "F16" => bytes[at - 2..at].copy_from_slice(&[0xC0, 0x7F]),
        other => panic!("unexpected dtype {other}"),
    }
    std::fs::write(&weights, bytes).unwrap();
    ftslm(dir.path())
        .args(["extract", "--model", "model", "--text", "A patient."])
        .assert()
        .code(1)
        .stderr(contains(name.as_str()))
        .stderr(contains("holds NaN"));
}

/// `data validate` reads line by line and keeps 16 bytes per record for the
/// duplicate check: a 100 MB file validates under a 200 MB address-space
/// limit that the whole file plus its narratives would not fit in (the
/// binary alone needs about 150 MB of it).
#[test]
fn data_validate_streams_a_large_file_within_bounded_memory() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let padding = "The patient was seen in clinic for follow-up. ".repeat(12);
    let mut records = 0u64;
    let mut written = 0usize;
    while written < 100_000_000 {
        let line = serde_json::json!({
            "instruction": "Extract the cancer-related entities.",
            "input": format!("Case {records}: stage II breast cancer. {padding}"),
            "output": {"cancer_type": "breast cancer", "stage": "II", "gene_mutation": null,
                       "biomarker": null, "treatment": null, "response": null,
                       "metastasis_site": null},
        })
        .to_string();
        writeln!(file, "{line}").unwrap();
        written += line.len() + 1;
        records += 1;
    }
    file.flush().unwrap();
    drop(file);
    let script = format!(
        "ulimit -v 204800; exec '{}' data validate big.jsonl",
        assert_cmd::cargo::cargo_bin("ftslm").display()
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{records} records, {records} valid, 0 invalid")),
        "{stdout}"
    );
}

/// `-v` on the inference commands says what was loaded, how it computes and
/// how long each phase took; without it none of that is printed.
#[test]
fn verbose_inference_shows_the_model_compute_and_timings() {
    let model = ftslm_testkit::require_shared!("models/tiny-llama3");
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    let generate = |verbose: bool| {
        let mut cmd = ftslm(dir.path());
        cmd.args([
            "generate",
            "--model",
            model,
            "--prompt",
            "Hello",
            "--max-new-tokens",
            "3",
        ]);
        if verbose {
            cmd.arg("-v");
        }
        cmd.assert().success()
    };
    generate(true)
        .stderr(contains("model: ").and(contains("frozen base")))
        .stderr(contains("adapter: none"))
        .stderr(contains("compute: ").and(contains("loaded in")))
        .stderr(contains("generated: ").and(contains("tokens/s")));
    generate(false)
        .stderr(contains("compute: ").not())
        .stderr(contains("generated: ").not());
    ftslm(dir.path())
        .args([
            "eval",
            "--model",
            model,
            "--data",
            "data/validation.jsonl",
            "--limit",
            "1",
        ])
        .args(["--max-new-tokens", "8", "-v"])
        .assert()
        .success()
        .stderr(contains("data: 4 records read from data/validation.jsonl"))
        .stderr(contains("evaluated 1 records: "));
}

/// A failed AWS call is one sentence — the service and operation, the
/// cause, the fix — and the SDK's internals appear only under -vv.
#[test]
fn an_aws_failure_is_one_sentence_and_the_sdk_detail_needs_vv() {
    let dir = tempfile::tempdir().unwrap();
    let status = |extra: &[&str]| {
        let out = ftslm(dir.path())
            .args([
                "cloud",
                "status",
                "--no-ssm",
                "--set",
                "aws.ec2.instance_id=i-0123456789abcdef0",
            ])
            .args(extra)
            .env("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKE")
            .env("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .assert()
            .code(1);
        String::from_utf8_lossy(&out.get_output().stderr).into_owned()
    };
    let plain = status(&[]);
    let error: Vec<&str> = plain.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(error.len(), 1, "{plain}");
    assert!(
        error[0].contains("ec2:DescribeInstances failed: "),
        "{plain}"
    );
    assert!(
        error[0].contains("AWS could not be reached: check the network"),
        "{plain}"
    );
    assert!(
        !plain.contains("DispatchFailure") && !plain.contains("SDK detail"),
        "{plain}"
    );
    let detailed = status(&["-vv"]);
    assert!(
        detailed.contains("AWS SDK detail: dispatch failure"),
        "{detailed}"
    );
    assert!(!detailed.contains("not-a-real-secret"), "{detailed}");
}
