//! The AWS commands end to end against moto (plus the stand-in for the one SSM
//! API moto lacks): the transcript of the daily flow, and `cloud run`
//! stopping the instance after a failed step. moto accepts commands without
//! running them, so the test plays the instance's upload of the run to S3.
//! Run with `--nocapture` to see the transcript.

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_ec2::types::InstanceType;
use ftslm_cloud::aws::Aws;
use ftslm_testkit::moto::MotoServer;
use ftslm_testkit::ssm_agent_stand_in::SsmAgentStandIn;
use sha2::{Digest, Sha256};

const REGION: &str = "us-east-1";
const BUCKET: &str = "ftslm-transcript";
const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const PREFIX: &str = "models/llama-3.1-8b-medical-ie";

struct Cloud {
    _moto: MotoServer,
    proxy: SsmAgentStandIn,
    aws: Aws,
    home: tempfile::TempDir,
    instance_id: String,
    volume_id: String,
}

/// A stopped g6.2xlarge, a volume in its zone, the bucket and the log group.
fn cloud() -> Option<Cloud> {
    let moto = MotoServer::start()?;
    let proxy = SsmAgentStandIn::start(moto.port());
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(moto.endpoint_url())
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "tests",
        )))
        .build();
    let aws = Aws::from_sdk_config(sdk).unwrap();
    let (instance_id, volume_id) = aws
        .block_on(async {
            let ec2 = aws.ec2();
            let run = ec2
                .run_instances()
                .image_id("ami-12c6146b")
                .instance_type(InstanceType::G62xlarge)
                .min_count(1)
                .max_count(1)
                .send()
                .await
                .unwrap();
            let instance = run.instances()[0].instance_id().unwrap().to_string();
            let zone = run.instances()[0]
                .placement()
                .and_then(|p| p.availability_zone())
                .unwrap()
                .to_string();
            ec2.stop_instances()
                .instance_ids(&instance)
                .send()
                .await
                .unwrap();
            let volume = ec2
                .create_volume()
                .availability_zone(zone)
                .size(100)
                .send()
                .await
                .unwrap()
                .volume_id()
                .unwrap()
                .to_string();
            aws.s3()
                .create_bucket()
                .bucket(BUCKET)
                .send()
                .await
                .unwrap();
            aws.logs()
                .create_log_group()
                .log_group_name("/aws/ssm/fine-tune-llama")
                .send()
                .await
                .unwrap();
            (instance, volume)
        })
        .unwrap();
    Some(Cloud {
        _moto: moto,
        proxy,
        aws,
        home: tempfile::tempdir().unwrap(),
        instance_id,
        volume_id,
    })
}

impl Cloud {
    /// `ftslm ARGS` as a user's shell would run it, AWS_ENDPOINT_URL aimed at the emulator.
    fn ftslm(&self, args: &[&str]) -> Output {
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config");
        let output = Command::cargo_bin("ftslm")
            .unwrap()
            .args(args)
            .args(["--config-dir", config])
            .current_dir(self.home.path())
            .env("HOME", self.home.path())
            .env("AWS_ENDPOINT_URL", self.proxy.endpoint_url())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("FTSLM_CONFIG_DIR")
            .output()
            .unwrap();
        println!("$ ftslm {}", args.join(" "));
        print!("{}", String::from_utf8_lossy(&output.stdout));
        for line in String::from_utf8_lossy(&output.stderr).lines() {
            println!("  (stderr) {line}");
        }
        println!("  (exit {})\n", output.status.code().unwrap_or(-1));
        output
    }

    fn state(&self) -> String {
        ftslm_cloud::instance::describe(&self.aws, &self.instance_id)
            .unwrap()
            .state
            .to_string()
    }

    /// What train.sh does on the instance at the end of a run.
    fn upload_run(&self, timestamp: &str) {
        let files: Vec<(&str, Vec<u8>)> = vec![
            (
                "final_model/adapter_config.json",
                br#"{"peft_type": "LORA"}"#.to_vec(),
            ),
            (
                "final_model/adapter_model.safetensors",
                (0..40_000u32).flat_map(|i| i.to_le_bytes()).collect(),
            ),
            (
                "run_summary.json",
                br#"{"final_eval_loss": 0.6512, "best_eval_loss": 0.6498, "steps": 10}"#.to_vec(),
            ),
        ];
        let mut sums = String::new();
        for (path, bytes) in &files {
            let digest: String = Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            sums.push_str(&format!("{digest}  {path}\n"));
        }
        self.aws
            .block_on(async {
                let s3 = self.aws.s3();
                for (path, bytes) in files.into_iter().chain([("SHA256SUMS", sums.into_bytes())]) {
                    s3.put_object()
                        .bucket(BUCKET)
                        .key(format!("{PREFIX}/{timestamp}/{path}"))
                        .body(bytes.into())
                        .send()
                        .await
                        .unwrap();
                }
            })
            .unwrap();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn params_init_start_deploy_train_list_pull_stop() {
    let Some(cloud) = cloud() else {
        return;
    };
    let init = cloud.ftslm(&[
        "params",
        "init",
        "--yes",
        "--set",
        &format!("aws.ec2.instance_id={}", cloud.instance_id),
        "--set",
        &format!("aws.ebs.volume_id={}", cloud.volume_id),
        "--set",
        &format!("aws.s3.bucket={BUCKET}"),
        "--set",
        &format!("aws.ecr.registry={REGISTRY}"),
        "--set",
        "output.hf_repo=someone/llama-3.1-8b-medical-ie",
    ]);
    assert!(init.status.success());
    assert!(text(&init.stdout).contains("/fine-tune-slm/ec2/instance-id"));

    // From here on every id comes from Parameter Store.
    let start = cloud.ftslm(&["cloud", "start"]);
    assert!(start.status.success());
    assert!(
        text(&start.stdout).contains("is running"),
        "{}",
        text(&start.stdout)
    );
    assert_eq!(cloud.state(), "running");
    assert!(cloud.proxy.answered() > 0, "start waits for the SSM agent");

    let deploy = cloud.ftslm(&["cloud", "deploy"]);
    assert!(deploy.status.success());
    assert!(text(&deploy.stderr).contains(&format!("volume {} attached", cloud.volume_id)));

    let train = cloud.ftslm(&["cloud", "train", "--test"]);
    assert!(train.status.success());
    let stderr = text(&train.stderr);
    let timestamp = stderr
        .split("training ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("cloud train names the run")
        .to_string();
    assert!(
        ftslm_cloud::runs::is_run_timestamp(&timestamp),
        "{timestamp}"
    );
    assert!(stderr.contains(&format!("s3://{BUCKET}/{PREFIX}/{timestamp}/")));
    cloud.upload_run(&timestamp);

    let list = cloud.ftslm(&["runs", "list"]);
    assert!(list.status.success());
    let listing = text(&list.stdout);
    assert!(
        listing.contains(&timestamp) && listing.contains("0.6512"),
        "{listing}"
    );

    let out = cloud.home.path().join("pulled");
    let pull = cloud.ftslm(&["runs", "pull", "latest", "--out", out.to_str().unwrap()]);
    assert!(pull.status.success());
    assert!(
        text(&pull.stdout).contains("3 verified by SHA-256"),
        "{}",
        text(&pull.stdout)
    );
    assert_eq!(
        std::fs::read(out.join("final_model/adapter_model.safetensors"))
            .unwrap()
            .len(),
        160_000
    );

    let stop = cloud.ftslm(&["cloud", "stop", "--verify-s3"]);
    assert!(stop.status.success());
    assert!(
        text(&stop.stdout).contains("since its last start"),
        "{}",
        text(&stop.stdout)
    );
    assert_eq!(cloud.state(), "stopped");
}

#[test]
fn cloud_run_stops_the_instance_when_a_step_fails() {
    let Some(cloud) = cloud() else {
        return;
    };
    let sets = [
        format!("aws.ec2.instance_id={}", cloud.instance_id),
        format!("aws.ebs.volume_id={}", cloud.volume_id),
        format!("aws.s3.bucket={BUCKET}"),
        format!("aws.ecr.registry={REGISTRY}"),
    ];
    let out = cloud.home.path().join("runs");
    let mut args = vec![
        "cloud",
        "run",
        "--test",
        "--out",
        out.to_str().unwrap(),
        "--no-ssm",
    ];
    for set in &sets {
        args.extend(["--set", set.as_str()]);
    }
    // The injected failure: the training "succeeds" but nothing reaches S3.
    let run = cloud.ftslm(&args);
    assert_eq!(run.status.code(), Some(14), "10 + step 4 (verify-s3)");
    let stderr = text(&run.stderr);
    assert!(stderr.contains("step 4 (verify-s3) failed"), "{stderr}");
    assert!(stderr.contains("the instance was stopped"), "{stderr}");
    assert_eq!(cloud.state(), "stopped");
    assert!(!Path::new(&out).exists() || std::fs::read_dir(&out).unwrap().next().is_none());
}
