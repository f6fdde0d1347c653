//! `cloud run` against moto: every step runs its real AWS calls; whatever
//! fails after the start, the instance ends stopped. moto accepts commands
//! without running them, so "the instance uploaded the run" is played by the
//! test (or, for the failure, deliberately not).

mod common;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use common::world::{world, World};
use ftslm_cloud::instance::StartOptions;
use ftslm_cloud::pipeline::{run_pipeline, PipelineEvent, PipelineOptions, Step, StepState};
use ftslm_cloud::runs::PullOptions;
use ftslm_cloud::steps::TrainMode;
use ftslm_testkit::moto::MotoServer;

fn options(out: PathBuf, timestamp: &str, keep_running: bool) -> PipelineOptions {
    PipelineOptions {
        mode: TrainMode::Test,
        train_sets: vec!["training.learning_rate=1e-4".into()],
        no_resume: false,
        out_dir: out,
        keep_running,
        run_timestamp: Some(timestamp.to_string()),
        // moto has no DescribeInstanceInformation; that wait is tested against its stand-in.
        start: StartOptions {
            limit: Duration::from_secs(30),
            wait_for_checks: true,
            wait_for_ssm: false,
        },
        train_limit: Duration::from_secs(600),
        pull: PullOptions::default(),
    }
}

fn states(report: &ftslm_cloud::pipeline::PipelineReport) -> Vec<(Step, StepState)> {
    report.steps.iter().map(|r| (r.step, r.state)).collect()
}

#[test]
fn a_complete_run_is_verified_pulled_and_the_instance_stopped() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let w: World = world(&moto.endpoint_url(), Duration::from_millis(20));
    let uploaded = w.upload_run("20261129_090000");
    let out = tempfile::tempdir().unwrap();
    let seen = Mutex::new(Vec::new());
    let report = run_pipeline(
        &w.aws,
        &w.target,
        &options(out.path().to_path_buf(), "20261129_090000", false),
        &|event| {
            if let PipelineEvent::StepStarted(step) = event {
                seen.lock().unwrap().push(step);
            }
        },
    );
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(seen.into_inner().unwrap(), Step::ALL.to_vec());
    assert!(states(&report).iter().all(|(_, s)| *s == StepState::Ok));
    let run_dir = out.path().join("20261129_090000");
    for (path, bytes) in uploaded {
        assert_eq!(std::fs::read(run_dir.join(&path)).unwrap(), bytes, "{path}");
    }
    assert_eq!(report.pulled.as_ref().unwrap().verified_sha256, 4);
    assert_eq!(w.state(), "stopped");
    let stop = report.stop.as_ref().unwrap();
    assert!(stop.cost_usd.is_some(), "g6.2xlarge is in the price table");
    assert!(!report.instance_left_running);
}

#[test]
fn a_step_that_fails_after_the_start_still_stops_the_instance() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let w = world(&moto.endpoint_url(), Duration::from_millis(20));
    // The injected failure: training "succeeds" but its run never reaches S3.
    let out = tempfile::tempdir().unwrap();
    let report = run_pipeline(
        &w.aws,
        &w.target,
        &options(out.path().to_path_buf(), "20261129_091500", false),
        &|_| {},
    );
    assert_eq!(report.failed_step, Some(Step::VerifyS3));
    assert_eq!(
        states(&report),
        vec![
            (Step::Start, StepState::Ok),
            (Step::Deploy, StepState::Ok),
            (Step::Train, StepState::Ok),
            (Step::VerifyS3, StepState::Failed),
            (Step::Stop, StepState::Ok),
        ]
    );
    let error = report.error.as_deref().unwrap();
    assert!(error.contains("SHA256SUMS"), "{error}");
    assert!(error.contains("20261129_091500"), "{error}");
    assert_eq!(w.state(), "stopped");
    assert!(!report.instance_left_running);
    assert!(!out.path().join("20261129_091500").exists());
}

#[test]
fn keep_running_is_the_only_way_to_leave_the_instance_up() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let w = world(&moto.endpoint_url(), Duration::from_millis(20));
    let out = tempfile::tempdir().unwrap();
    let report = run_pipeline(
        &w.aws,
        &w.target,
        &options(out.path().to_path_buf(), "20261129_093000", true),
        &|_| {},
    );
    assert_eq!(report.failed_step, Some(Step::VerifyS3));
    assert_eq!(
        report.steps.last().map(|r| (r.step, r.state)),
        Some((Step::Stop, StepState::Skipped))
    );
    assert!(report.instance_left_running);
    assert_eq!(w.state(), "running");
}

#[test]
fn the_commands_sent_are_the_deploy_and_the_training_of_this_run() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let w = world(&moto.endpoint_url(), Duration::from_millis(20));
    let out = tempfile::tempdir().unwrap();
    run_pipeline(
        &w.aws,
        &w.target,
        &options(out.path().to_path_buf(), "20261129_094500", false),
        &|_| {},
    );
    let commands = w
        .aws
        .block_on(async { w.aws.ssm().list_commands().send().await.unwrap() })
        .unwrap();
    let mut sent: Vec<(String, String)> = commands
        .commands()
        .iter()
        .map(|c| {
            let script = c
                .parameters()
                .and_then(|p| p.get("commands"))
                .map(|v| v.join("\n"))
                .unwrap_or_default();
            (c.comment().unwrap_or("").to_string(), script)
        })
        .collect();
    sent.sort();
    assert_eq!(
        sent.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
        vec!["ftslm deploy", "ftslm train 20261129_094500"]
    );
    let train = &sent[1].1;
    for expected in [
        "20261129_094500",
        "--max-steps",
        "training.learning_rate=1e-4",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/fine-tune-llama:latest",
        "s3",
    ] {
        assert!(
            train.contains(expected),
            "{expected} missing from the train script"
        );
    }
    let volume = w.target.volume_id().unwrap().replace('-', "");
    assert!(sent[0].1.contains(&volume) || sent[0].1.contains(w.target.volume_id().unwrap()));
}
