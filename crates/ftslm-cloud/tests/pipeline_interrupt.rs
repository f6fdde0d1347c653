//! Ctrl-C during `cloud run`: the wait in progress ends, the remote command is
//! cancelled where possible, and the instance is still stopped. Its own test
//! binary, because the interrupt request is process-wide.

mod common;

use std::time::Duration;

use common::world::world;
use ftslm_cloud::aws::request_interrupt;
use ftslm_cloud::instance::StartOptions;
use ftslm_cloud::pipeline::{run_pipeline, PipelineEvent, PipelineOptions, Step, StepState};
use ftslm_cloud::runs::PullOptions;
use ftslm_cloud::steps::TrainMode;
use ftslm_testkit::moto::MotoServer;

#[test]
fn ctrl_c_during_training_stops_the_instance() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    // A long poll interval: the training wait lingers after moto's instant
    // "Success" (it reads the logs once more a poll later), which is where the
    // interrupt lands.
    let w = world(&moto.endpoint_url(), Duration::from_secs(3));
    let out = tempfile::tempdir().unwrap();
    let options = PipelineOptions {
        mode: TrainMode::Full { max_steps: Some(5) },
        train_sets: Vec::new(),
        no_resume: false,
        out_dir: out.path().to_path_buf(),
        keep_running: false,
        run_timestamp: Some("20261129_100000".into()),
        start: StartOptions {
            limit: Duration::from_secs(30),
            wait_for_checks: false,
            wait_for_ssm: false,
        },
        train_limit: Duration::from_secs(600),
        pull: PullOptions::default(),
    };
    let report = run_pipeline(&w.aws, &w.target, &options, &|event| {
        if let PipelineEvent::StepStarted(Step::Train) = event {
            std::thread::spawn(|| {
                std::thread::sleep(Duration::from_millis(500));
                request_interrupt();
            });
        }
    });
    assert_eq!(report.failed_step, Some(Step::Train), "{report:#?}");
    let train = report.steps.iter().find(|r| r.step == Step::Train).unwrap();
    assert_eq!(train.state, StepState::Interrupted);
    assert_eq!(
        report.steps.last().map(|r| (r.step, r.state)),
        Some((Step::Stop, StepState::Ok))
    );
    assert_eq!(w.state(), "stopped");
}
