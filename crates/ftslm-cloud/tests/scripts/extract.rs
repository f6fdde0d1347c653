//! extract_test.sh: the adapter pulled once and verified, extract run with the text verbatim.

use std::fs;

use ftslm_cloud::scripts::{StepStatus, EXTRACT_TEST_STEPS};

use crate::sandbox::*;
use crate::*;

/// A run archived the way `train.sh` archives it.
fn archived(sb: &Sandbox) {
    sb.deployed();
    sb.write_run();
    let out = sb.run(&train(sb, vec![]).render().unwrap());
    assert_eq!(out.code, 0, "{}", out.all());
    sb.clear_log();
}

#[test]
fn cloud_test_pulls_the_adapter_once_and_runs_extract_with_the_text_verbatim() {
    let sb = Sandbox::new();
    archived(&sb);
    let script = extract(&sb, NASTY, None).render().unwrap();
    let out = sb.run(&script);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.steps(), all_ok(EXTRACT_TEST_STEPS));
    assert!(out
        .stdout
        .contains(r#"{"line":1,"cancer_type":"melanoma"}"#));
    let pulled = sb.mount.join("pulled").join(TS).join("final_model");
    assert_eq!(
        files_under(&pulled),
        files_under(&sb.mount.join("output/final_model"))
    );
    let mount = sb.mount_str();
    assert_eq!(
        sb.calls_to("docker"),
        vec![s(&[
            "docker",
            "run",
            "--rm",
            "--gpus",
            "all",
            "-v",
            &format!("{mount}:/workspace"),
            IMAGE,
            "extract",
            // From the adapter's adapter_config.json.
            "--model",
            "/workspace/models/llama-3.1-8b",
            "--adapter",
            &format!("/workspace/pulled/{TS}/final_model"),
            "--text",
            NASTY,
            "--json",
        ])]
    );
    assert!(!sb.root.join("PWNED").exists() && !sb.root.join("PWNED2").exists());
    assert_idle_shutdown(&sb);

    sb.clear_log();
    let out = sb.run(
        &extract(&sb, "Stage IV melanoma", Some("/workspace/models/x"))
            .render()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        !sb.calls_to("aws").iter().any(|c| c[1] == "s3"),
        "copied again"
    );
    let docker = &sb.calls_to("docker")[0];
    let at = docker.iter().position(|a| a == "--model").unwrap();
    assert_eq!(docker[at + 1], "/workspace/models/x");
}

#[test]
fn cloud_test_refuses_an_adapter_that_does_not_match_its_checksums() {
    let sb = Sandbox::new();
    archived(&sb);
    fs::write(
        sb.archive().join("final_model/adapter_model.safetensors"),
        "tampered",
    )
    .unwrap();
    let out = sb.run(&extract(&sb, "text", None).render().unwrap());
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("does not match the run's SHA256SUMS"),
        "{}",
        out.stderr
    );
    assert!(!sb
        .mount
        .join("pulled")
        .join(TS)
        .join("final_model")
        .exists());
    assert!(sb.calls_to("docker").is_empty());
    assert_idle_shutdown(&sb);
}

#[test]
fn cloud_test_of_an_incomplete_or_missing_run_says_so() {
    let sb = Sandbox::new();
    archived(&sb);
    fs::remove_file(sb.archive().join("SHA256SUMS")).unwrap();
    let out = sb.run(&extract(&sb, "text", None).render().unwrap());
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("upload did not complete"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.steps(),
        vec![("adapter-pull".to_string(), StepStatus::Failed)]
    );
}
