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
        self.upload_files(
            timestamp,
            vec![
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
                    br#"{"final_eval_loss": 0.6512, "best_eval_loss": 0.6498, "steps": 10}"#
                        .to_vec(),
                ),
            ],
        );
    }

    /// `files` and their SHA256SUMS into the run folder `timestamp`.
    fn upload_files(&self, timestamp: &str, files: Vec<(&str, Vec<u8>)>) {
        let mut sums = String::new();
        for (path, bytes) in &files {
            let digest: String = Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            sums.push_str(&format!("{digest}  {path}\n"));
        }
        for (path, bytes) in files.into_iter().chain([("SHA256SUMS", sums.into_bytes())]) {
            self.put(&format!("{timestamp}/{path}"), bytes);
        }
    }

    /// One object under the run prefix.
    fn put(&self, key: &str, bytes: Vec<u8>) {
        self.aws
            .block_on(async {
                self.aws
                    .s3()
                    .put_object()
                    .bucket(BUCKET)
                    .key(format!("{PREFIX}/{key}"))
                    .body(bytes.into())
                    .send()
                    .await
                    .unwrap();
            })
            .unwrap();
    }

    /// `params init` naming the emulator's instance, volume and bucket.
    fn params_init(&self) -> Output {
        self.ftslm(&[
            "params",
            "init",
            "--yes",
            "--set",
            &format!("aws.ec2.instance_id={}", self.instance_id),
            "--set",
            &format!("aws.ebs.volume_id={}", self.volume_id),
            "--set",
            &format!("aws.s3.bucket={BUCKET}"),
            "--set",
            &format!("aws.ecr.registry={REGISTRY}"),
            "--set",
            "output.hf_repo=someone/llama-3.1-8b-medical-ie",
        ])
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
    let init = cloud.params_init();
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

/// `ftslm metrics` on runs in S3: only the history is read, checked against
/// SHA256SUMS; `latest` and a timestamp compare with a local run.
#[test]
fn metrics_reads_a_run_from_s3_verified_by_its_sha256sums() {
    let Some(cloud) = cloud() else {
        return;
    };
    assert!(cloud.params_init().status.success());
    let metrics = |shift: f64| -> Vec<u8> {
        let mut lines = format!(
            "{{\"step\":0,\"epoch\":0.0,\"eval_loss\":{}}}\n",
            1.9 + shift
        );
        for step in 1..=12u64 {
            let loss = 2.0 / (1.0 + step as f64 * 0.3) + shift;
            lines.push_str(&format!(
                "{{\"step\":{step},\"epoch\":{},\"loss\":{loss},\"learning_rate\":0.0002,\"grad_norm\":0.5,\"tokens_per_second\":300.0}}\n",
                step as f64 / 12.0
            ));
            if step % 4 == 0 {
                lines.push_str(&format!(
                    "{{\"step\":{step},\"epoch\":{},\"eval_loss\":{}}}\n",
                    step as f64 / 12.0,
                    loss + 0.1
                ));
            }
        }
        lines.into_bytes()
    };
    let older = "20261201_080000";
    let newer = "20261202_080000";
    for (run, shift) in [(older, 0.2), (newer, 0.0)] {
        cloud.upload_files(
            run,
            vec![
                ("metrics.jsonl", metrics(shift)),
                (
                    "run_summary.json",
                    br#"{"wall_time_seconds": 812.5}"#.to_vec(),
                ),
                ("final_model/adapter_model.safetensors", vec![7u8; 1 << 20]),
            ],
        );
    }

    let latest = cloud.ftslm(&["metrics", "latest", "--json"]);
    assert!(latest.status.success(), "{}", text(&latest.stderr));
    let report: serde_json::Value = serde_json::from_slice(&latest.stdout).unwrap();
    let run = &report["runs"][0];
    assert_eq!(run["name"], newer);
    assert_eq!(run["steps"], 12);
    assert_eq!(run["wall_time_seconds"], 812.5);
    assert_eq!(run["best_eval"]["step"], 12);
    assert_eq!(run["evaluations"].as_array().unwrap().len(), 4);

    let local = cloud.home.path().join("local-run");
    std::fs::create_dir(&local).unwrap();
    std::fs::write(local.join("metrics.jsonl"), metrics(0.5)).unwrap();
    let plots = cloud.home.path().join("charts");
    let csv = cloud.home.path().join("runs.csv");
    let compare = cloud.ftslm(&[
        "metrics",
        older,
        "--compare",
        newer,
        local.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--plot",
        plots.to_str().unwrap(),
    ]);
    assert!(compare.status.success(), "{}", text(&compare.stderr));
    let table = text(&compare.stdout);
    assert!(
        table.contains(&format!("run {older}")) && table.contains("best eval (step)"),
        "{table}"
    );
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert!(csv.starts_with("run,step,epoch,loss,"), "{csv}");
    assert_eq!(csv.lines().filter(|l| l.starts_with(older)).count(), 13);
    assert!(plots.join("loss.png").is_file() && plots.join("loss.svg").is_file());

    // A history that no longer matches SHA256SUMS is refused, naming it.
    cloud.put(&format!("{newer}/metrics.jsonl"), metrics(0.1));
    let damaged = cloud.ftslm(&["metrics", newer]);
    assert_eq!(damaged.status.code(), Some(1));
    let stderr = text(&damaged.stderr);
    assert!(
        stderr.contains(&format!("{newer}/metrics.jsonl has SHA-256"))
            && stderr.contains("the run folder is damaged"),
        "{stderr}"
    );
    assert!(
        !text(&damaged.stdout).contains("steps"),
        "nothing is printed from a damaged history"
    );
}
