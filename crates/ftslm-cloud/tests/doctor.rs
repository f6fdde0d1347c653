//! `cloud doctor` against moto: every configured resource checked, each missing
//! one reported with the command that creates it.

mod common;

use std::time::Duration;

use common::sdk_config;
use common::world::world;
use ftslm_cloud::aws::{Aws, CloudTarget};
use ftslm_cloud::doctor::{run_doctor, CheckState};
use ftslm_config::ConfigLoader;
use ftslm_testkit::moto::MotoServer;

const REGION: &str = "us-east-1";

fn target(sets: &[String]) -> CloudTarget {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config");
    let config = ConfigLoader::new()
        .config_dir(Some(std::path::Path::new(dir)))
        .sets(sets)
        .env_vars(Vec::<(String, String)>::new())
        .parameter_source(None)
        .load()
        .unwrap();
    CloudTarget::from_config(&config).unwrap()
}

fn state_of(report: &ftslm_cloud::doctor::DoctorReport, prefix: &str) -> CheckState {
    report
        .checks
        .iter()
        .find(|c| c.name.starts_with(prefix))
        .unwrap_or_else(|| panic!("no check named {prefix}"))
        .state
}

#[test]
fn an_empty_account_gets_a_fix_for_every_missing_resource() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = Aws::from_sdk_config(sdk_config(&moto.endpoint_url(), REGION)).unwrap();
    let target = target(&[
        "aws.ec2.instance_id=i-0123456789abcdef0".into(),
        "aws.s3.bucket=ftslm-doctor".into(),
    ]);
    let report = run_doctor(&aws, &target);
    assert!(!report.healthy());
    assert_eq!(state_of(&report, "identity"), CheckState::Ok);
    assert_eq!(state_of(&report, "EC2 instance"), CheckState::Missing);
    // No volume id configured: reported, not guessed.
    let volume = report
        .checks
        .iter()
        .find(|c| c.name.starts_with("EBS"))
        .unwrap();
    assert_eq!(volume.state, CheckState::Skipped);
    assert!(
        volume.detail.contains("aws.ebs.volume_id is not set"),
        "{}",
        volume.detail
    );
    for (name, fix) in [
        ("S3 bucket", "aws s3api create-bucket --bucket ftslm-doctor"),
        (
            "ECR repository",
            "aws ecr create-repository --repository-name fine-tune-llama",
        ),
        (
            "CloudWatch log group",
            "aws logs create-log-group --log-group-name /aws/ssm/fine-tune-llama",
        ),
        (
            "Hub token secret",
            "aws secretsmanager create-secret --name huggingface/api-token",
        ),
    ] {
        let check = report
            .checks
            .iter()
            .find(|c| c.name.starts_with(name))
            .unwrap();
        assert_eq!(check.state, CheckState::Missing, "{check:?}");
        let given = check.fix.as_deref().unwrap_or("");
        assert!(given.contains(fix), "{name}: {given}");
    }
}

#[test]
fn an_account_with_every_resource_is_healthy() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    // Instance, volume, bucket and log group; the doctor also wants the
    // repository and the secret.
    let w = world(&moto.endpoint_url(), Duration::from_millis(20));
    w.aws
        .block_on(async {
            w.aws
                .ecr()
                .create_repository()
                .repository_name("fine-tune-llama")
                .send()
                .await
                .unwrap();
            w.aws
                .secrets()
                .create_secret()
                .name("huggingface/api-token")
                .secret_string(r#"{"token":"hf_doctorsecret123"}"#)
                .send()
                .await
                .unwrap();
        })
        .unwrap();
    let report = run_doctor(&w.aws, &w.target);
    for check in &report.checks {
        assert_eq!(check.state, CheckState::Ok, "{check:?}");
    }
    assert!(report.healthy());
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains("hf_doctorsecret123"));
}
