//! A whole training set-up in moto — a stopped g6 instance, a volume in its
//! zone, the bucket, the log group and the Hub secret — as `cloud run` needs.

use std::time::Duration;

use aws_sdk_ec2::types::InstanceType;
use ftslm_cloud::aws::{Aws, CloudTarget};
use ftslm_config::ConfigLoader;
use sha2::{Digest, Sha256};

use super::sdk_config;

pub const REGION: &str = "us-east-1";
pub const BUCKET: &str = "ftslm-runs";

pub struct World {
    pub aws: Aws,
    pub target: CloudTarget,
    pub instance_id: String,
}

pub fn world(endpoint: &str, poll: Duration) -> World {
    let aws = Aws::from_sdk_config(sdk_config(endpoint, REGION))
        .unwrap()
        .with_poll_interval(poll);
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
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config");
    let config = ConfigLoader::new()
        .config_dir(Some(std::path::Path::new(dir)))
        .sets(&[
            format!("aws.ec2.instance_id={instance_id}"),
            format!("aws.ebs.volume_id={volume_id}"),
            format!("aws.s3.bucket={BUCKET}"),
            "aws.ecr.registry=123456789012.dkr.ecr.us-east-1.amazonaws.com".to_string(),
        ])
        .env_vars(Vec::<(String, String)>::new())
        .parameter_source(None)
        .load()
        .unwrap();
    World {
        target: CloudTarget::from_config(&config).unwrap(),
        aws,
        instance_id,
    }
}

impl World {
    pub fn state(&self) -> String {
        ftslm_cloud::instance::describe(&self.aws, &self.instance_id)
            .unwrap()
            .state
            .to_string()
    }

    /// What the instance's train.sh uploads: the run's files, then SHA256SUMS.
    pub fn upload_run(&self, timestamp: &str) -> Vec<(String, Vec<u8>)> {
        let files: Vec<(String, Vec<u8>)> = vec![
            (
                "final_model/adapter_config.json".into(),
                br#"{"peft_type": "LORA", "r": 16}"#.to_vec(),
            ),
            (
                "final_model/adapter_model.safetensors".into(),
                (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect(),
            ),
            (
                "run_summary.json".into(),
                br#"{"final_eval_loss": 0.65, "best_eval_loss": 0.64, "steps": 10}"#.to_vec(),
            ),
            (
                "metrics.jsonl".into(),
                b"{\"step\": 1, \"loss\": 2.5}\n".to_vec(),
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
        let prefix = self.target.prefix().to_string();
        self.aws
            .block_on(async {
                let s3 = self.aws.s3();
                for (path, bytes) in files.iter().chain(std::iter::once(&(
                    "SHA256SUMS".to_string(),
                    sums.into_bytes(),
                ))) {
                    s3.put_object()
                        .bucket(BUCKET)
                        .key(format!("{prefix}/{timestamp}/{path}"))
                        .body(bytes.clone().into())
                        .send()
                        .await
                        .unwrap();
                }
            })
            .unwrap();
        files
    }
}
