//! train.sh: the token by name only, the run archived with SHA256SUMS, exit codes, limits.

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use ftslm_cloud::scripts::{parse_run_line, StepStatus, TRAIN_STEPS};

use crate::sandbox::*;
use crate::*;

#[test]
fn train_passes_the_token_by_name_only_and_archives_the_run_with_checksums() {
    let mut sb = Sandbox::new();
    sb.deployed();
    sb.write_run();
    sb.with_secret(&format!("{{\"token\": \"{TOKEN}\"}}"));
    let args = s(&[
        "--max-steps",
        "10",
        "--set",
        &format!("output.note={NASTY}"),
    ]);
    let script = train(&sb, args.clone()).render().unwrap();
    assert!(!script.contains(TOKEN));
    let out = sb.run(&script);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.steps(), all_ok(TRAIN_STEPS));

    let mount = sb.mount_str();
    let run = sb.calls_to("docker");
    let mut expected = s(&[
        "docker",
        "run",
        "--rm",
        "--name",
        &format!("ftslm-train-{TS}"),
        "--gpus",
        "all",
        "-e",
        "HF_TOKEN",
        "-v",
        &format!("{mount}:/workspace"),
        IMAGE,
        "train",
        "--output-dir",
        "/workspace/output",
    ]);
    expected.extend(args);
    assert_eq!(run, vec![expected]);
    assert_eq!(
        fs::read_to_string(sb.state.join("hf_token"))
            .unwrap()
            .trim(),
        "match",
        "docker did not get HF_TOKEN in its environment"
    );
    // The token is in no argument list, no output, and nothing was executed.
    assert!(!fs::read_to_string(&sb.log).unwrap().contains(TOKEN));
    assert!(!out.all().contains(TOKEN), "{}", out.all());
    assert!(!sb.root.join("PWNED").exists() && !sb.root.join("PWNED2").exists());
    assert!(sb.calls_to("aws").contains(&s(&[
        "aws",
        "secretsmanager",
        "get-secret-value",
        "--region",
        "us-east-1",
        "--secret-id",
        SECRET_NAME,
        "--query",
        "SecretString",
        "--output",
        "text",
    ])));

    let archive = sb.archive();
    let uploaded = files_under(&archive);
    let expected_files: BTreeSet<String> = [
        "final_model/adapter_config.json",
        "final_model/adapter_model.safetensors",
        "final_model/tokenizer.json",
        "best_model/adapter_config.json",
        "best_model/adapter_model.safetensors",
        "metrics.jsonl",
        "logs/events.out.tfevents.1",
        "logs/eval/events with space",
        "run_summary.json",
        "SHA256SUMS",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    assert_eq!(uploaded, expected_files);
    let sums = fs::read_to_string(archive.join("SHA256SUMS")).unwrap();
    let listed: Vec<&str> = sums.lines().map(|l| &l[66..]).collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "SHA256SUMS is not sorted");
    let listed: BTreeSet<String> = listed.iter().map(|x| x.to_string()).collect();
    let mut without_sums = expected_files.clone();
    without_sums.remove("SHA256SUMS");
    assert_eq!(listed, without_sums);
    let check = Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(&archive)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // SHA256SUMS goes last: its presence marks a complete upload.
    let last_cp = sb.calls_to("aws").into_iter().last().unwrap();
    assert!(
        last_cp.last().unwrap().ends_with("/SHA256SUMS"),
        "{last_cp:?}"
    );
    let run_uri = out.stdout.lines().find_map(parse_run_line);
    assert_eq!(
        run_uri,
        Some(format!("s3://{BUCKET}/{PREFIX}/{TS}/").as_str())
    );
    assert_idle_shutdown(&sb);
}

#[test]
fn failed_training_keeps_its_exit_code_still_uploads_and_schedules_the_shutdown() {
    let mut sb = Sandbox::new();
    sb.deployed();
    sb.write_run();
    sb.with_secret(&format!("{TOKEN}\n"));
    sb.set("FAKE_TRAIN_RC", "3");
    let out = sb.run(&train(&sb, vec![]).render().unwrap());
    assert_eq!(out.code, 3, "{}", out.all());
    // A bare-string secret is the token itself.
    assert_eq!(
        fs::read_to_string(sb.state.join("hf_token"))
            .unwrap()
            .trim(),
        "match"
    );
    assert!(sb.archive().join("SHA256SUMS").is_file());
    assert!(out
        .steps()
        .contains(&("train".to_string(), StepStatus::Failed)));
    assert!(out.stdout.lines().any(|l| parse_run_line(l).is_some()));
    assert_idle_shutdown(&sb);
}

#[test]
fn failed_training_without_a_final_model_uploads_nothing() {
    let mut sb = Sandbox::new();
    sb.deployed();
    sb.set("FAKE_TRAIN_RC", "7");
    let out = sb.run(&train(&sb, vec![]).render().unwrap());
    assert_eq!(out.code, 7, "{}", out.all());
    assert!(out.stderr.contains("nothing uploaded"), "{}", out.stderr);
    assert!(!sb.calls_to("aws").iter().any(|c| c[1] == "s3"));
    assert!(!sb.s3.join(BUCKET).exists());
    assert_eq!(
        out.steps().last(),
        Some(&("upload".to_string(), StepStatus::Skipped))
    );
    assert_idle_shutdown(&sb);
}

#[test]
fn a_failed_upload_is_the_exit_code_and_leaves_no_sha256sums() {
    let mut sb = Sandbox::new();
    sb.deployed();
    sb.write_run();
    sb.set("FAKE_S3_FAIL", "/logs/");
    let out = sb.run(&train(&sb, vec![]).render().unwrap());
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(!sb.archive().join("SHA256SUMS").exists());
    assert!(!out.stdout.lines().any(|l| parse_run_line(l).is_some()));
    assert!(out.stderr.contains("uploading logs/"), "{}", out.stderr);
    assert_eq!(
        out.steps().last(),
        Some(&("upload".to_string(), StepStatus::Failed))
    );
    assert_idle_shutdown(&sb);
}

#[test]
fn training_continues_without_a_token_when_the_secret_cannot_be_read() {
    let sb = Sandbox::new();
    sb.deployed();
    let out = sb.run(&train(&sb, vec![]).render().unwrap());
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr.contains("ResourceNotFoundException"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("training without HF_TOKEN"),
        "{}",
        out.stderr
    );
    assert_eq!(
        fs::read_to_string(sb.state.join("hf_token"))
            .unwrap()
            .trim(),
        "absent"
    );
    assert_eq!(
        out.steps()[0],
        ("hub-token".to_string(), StepStatus::Skipped)
    );
    // No final_model: a dry run, say so.
    assert!(out.stdout.contains("nothing uploaded"), "{}", out.stdout);
}

#[test]
fn train_refuses_an_unmounted_volume() {
    let sb = Sandbox::new();
    let out = sb.run(&train(&sb, vec![]).render().unwrap());
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("run ftslm cloud deploy first"),
        "{}",
        out.stderr
    );
    assert!(sb.calls_to("docker").is_empty());
    assert_idle_shutdown(&sb);
}

#[test]
fn training_past_its_time_limit_is_stopped_and_its_container_killed() {
    let mut sb = Sandbox::new();
    sb.deployed();
    sb.set("FAKE_TRAIN_SLEEP", "30");
    let mut script = train(&sb, vec![]);
    script.max_runtime_seconds = Some(1);
    let started = Instant::now();
    let out = sb.run(&script.render().unwrap());
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(out.code, 124, "{}", out.all());
    assert!(
        out.stderr.contains("past its limit of 1s"),
        "{}",
        out.stderr
    );
    assert!(sb
        .calls_to("docker")
        .contains(&s(&["docker", "kill", &format!("ftslm-train-{TS}")])));
    assert_idle_shutdown(&sb);
}

#[test]
fn a_second_training_is_refused_while_one_runs() {
    let sb = Sandbox::new();
    sb.deployed();
    fs::create_dir_all(&sb.run_dir).unwrap();
    fs::write(
        sb.run_dir.join(format!("active.{}", std::process::id())),
        "train\n",
    )
    .unwrap();
    let out = sb.run(&train(&sb, vec![]).render().unwrap());
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("another training is running"),
        "{}",
        out.stderr
    );
    assert!(sb.calls_to("docker").is_empty());
    // The running one schedules the idle shutdown when it ends, not this one.
    assert!(!sb.calls_to("shutdown").iter().any(|c| c[1] == "-h"));
    assert!(
        out.stdout.contains("idle shutdown left to train"),
        "{}",
        out.stdout
    );
}

#[test]
fn idle_shutdown_zero_schedules_nothing() {
    let sb = Sandbox::new();
    sb.deployed();
    let mut script = clean(&sb, true, false);
    script.idle_shutdown_minutes = 0;
    let out = sb.run(&script.render().unwrap());
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(sb.calls_to("shutdown"), vec![s(&["shutdown", "-c"])]);
    assert!(
        out.stdout.contains("idle shutdown is off"),
        "{}",
        out.stdout
    );
}
