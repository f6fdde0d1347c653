//! `runs list` and `runs pull` against moto's S3 on loopback. Runs are
//! uploaded with the SDK the way the instance's `aws s3 cp` leaves them: one
//! folder per timestamp with the adapter, logs, metrics, run_summary.json and
//! SHA256SUMS.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::sdk_config;
use ftslm_cloud::aws::{Aws, AwsError, CloudTarget};
use ftslm_cloud::runs::{
    catalog_runs, list_runs, pull_run, PullEvent, PullOptions, PullReport, RunSelector,
    Verification,
};
use ftslm_config::AwsSettings;
use ftslm_testkit::moto::MotoServer;
use md5::Md5;
use serde_json::json;
use sha2::{Digest, Sha256};

const REGION: &str = "us-east-1";
const BUCKET: &str = "ftslm-runs-test";
const PREFIX: &str = "llama-medical";
const ADAPTER: &str = "final_model/adapter_model.safetensors";
/// Small enough that the ~200 KiB adapter needs many ranged requests.
const PART: u64 = 16 * 1024;

type Files = BTreeMap<String, Vec<u8>>;

struct Env {
    _moto: MotoServer,
    aws: Aws,
    target: CloudTarget,
    s3: aws_sdk_s3::Client,
}

fn env() -> Option<Env> {
    let moto = MotoServer::start()?;
    let aws = Aws::from_sdk_config(sdk_config(&moto.endpoint_url(), REGION))
        .unwrap()
        .with_poll_interval(Duration::from_millis(20));
    let s3 = aws.s3();
    aws.block_on(s3.create_bucket().bucket(BUCKET).send())
        .unwrap()
        .unwrap();
    let settings: AwsSettings = serde_json::from_value(json!({
        "region": REGION,
        "ec2": {"instance_id": null, "instance_type": "g6.2xlarge",
                "hourly_price_usd": null, "idle_shutdown_minutes": 30},
        "ebs": {"volume_id": null, "mount_path": "/mnt/training",
                "volume_type": "gp3", "size_gb": 100},
        "s3": {"bucket": BUCKET, "prefix": format!("/{PREFIX}/")},
        "ecr": {"repository": "ftslm", "registry": null, "image_tag": "latest"},
        "secrets_manager": {"hf_token_secret": "hf", "aws_credentials_secret": "aws",
                            "docker_token_secret": "docker"},
        "cloudwatch": {"log_group": "/ftslm", "log_stream_prefix": "ftslm"}
    }))
    .unwrap();
    Some(Env {
        _moto: moto,
        aws,
        target: CloudTarget::new(settings),
        s3,
    })
}

impl Env {
    fn put(&self, key: &str, body: &[u8]) {
        let request = self
            .s3
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(ByteStream::from(body.to_vec()));
        self.aws.block_on(request.send()).unwrap().unwrap();
    }

    /// Uploads `files` under `PREFIX/TIMESTAMP/`, with a correct SHA256SUMS
    /// when `sums` is set.
    fn upload_run(&self, timestamp: &str, files: &Files, sums: bool) {
        for (path, body) in files {
            self.put(&format!("{PREFIX}/{timestamp}/{path}"), body);
        }
        if sums {
            self.put(
                &format!("{PREFIX}/{timestamp}/SHA256SUMS"),
                &sha256sums(files),
            );
        }
    }

    fn etag(&self, key: &str) -> String {
        let head = self.s3.head_object().bucket(BUCKET).key(key).send();
        let head = self.aws.block_on(head).unwrap().unwrap();
        head.e_tag().unwrap().trim_matches('"').to_string()
    }

    fn pull(
        &self,
        selector: &RunSelector,
        out: &Path,
        part_size: u64,
    ) -> (Result<PullReport, AwsError>, Vec<PullEvent>) {
        self.pull_with(selector, out, part_size, false)
    }

    fn pull_with(
        &self,
        selector: &RunSelector,
        out: &Path,
        part_size: u64,
        force: bool,
    ) -> (Result<PullReport, AwsError>, Vec<PullEvent>) {
        let events = Mutex::new(Vec::new());
        let options = PullOptions {
            concurrency: 4,
            part_size,
            force,
        };
        let record = |e: PullEvent| events.lock().unwrap().push(e);
        let result = pull_run(&self.aws, &self.target, selector, out, &options, &record);
        (result, events.into_inner().unwrap())
    }
}

/// Bytes that differ per seed and do not compress into a pattern.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A run as `ftslm train` leaves it; the adapter's size is not a multiple of
/// the part size, so the last range is short.
fn fake_run(seed: u64, summary: serde_json::Value) -> Files {
    let mut files = Files::new();
    files.insert(
        "run_summary.json".into(),
        serde_json::to_vec_pretty(&summary).unwrap(),
    );
    files.insert(
        ADAPTER.into(),
        noise(seed, 200 * 1024 + 777 * seed as usize + 5),
    );
    files.insert(
        "final_model/adapter_config.json".into(),
        br#"{"r": 16, "lora_alpha": 32}"#.to_vec(),
    );
    files.insert(
        format!("logs/events.out.tfevents.17000{seed}.host"),
        noise(seed + 100, 3000),
    );
    let metrics: String = (1..=5)
        .map(|s| format!("{{\"step\": {s}, \"loss\": {}}}\n", 3.0 - s as f64 * 0.1))
        .collect();
    files.insert("metrics.jsonl".into(), metrics.into_bytes());
    files
}

fn summary(final_loss: Option<f64>, best: Option<f64>, steps: u64) -> serde_json::Value {
    json!({"initial_eval_loss": 2.9, "final_eval_loss": final_loss, "best_eval_loss": best,
           "best_step": steps, "steps": steps, "max_steps": steps, "tokens_seen": 1000,
           "wall_time_seconds": 12.5, "final_model": "final_model", "best_model": null})
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sha256sums(files: &Files) -> Vec<u8> {
    files
        .iter()
        .map(|(path, body)| format!("{}  {path}\n", sha256_hex(body)))
        .collect::<String>()
        .into_bytes()
}

/// Every file below `dir`, relative, `/`-separated.
fn tree(dir: &Path) -> Files {
    fn walk(root: &Path, dir: &Path, out: &mut Files) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy();
                out.insert(rel.replace('\\', "/"), fs::read(&path).unwrap());
            }
        }
    }
    let mut out = Files::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

fn with_manifest(files: &Files) -> Files {
    let mut all = files.clone();
    all.insert("SHA256SUMS".into(), sha256sums(files));
    all
}

fn total_bytes(files: &Files) -> u64 {
    files.values().map(|b| b.len() as u64).sum()
}

fn refused(result: Result<PullReport, AwsError>) -> String {
    match result {
        Err(AwsError::Refused(message)) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn selectors_parse_and_bad_ones_name_the_format() {
    assert_eq!(
        "latest".parse::<RunSelector>().unwrap(),
        RunSelector::Latest
    );
    assert_eq!(
        "20261129_101500".parse::<RunSelector>().unwrap(),
        RunSelector::Timestamp("20261129_101500".into())
    );
    for bad in [
        "2026-11-29",
        "20261329_101500",
        "20261129_251500",
        "newest",
        "",
    ] {
        let err = bad.parse::<RunSelector>().unwrap_err().to_string();
        assert!(
            err.contains("YYYYmmdd_HHMMSS") && err.contains("latest"),
            "{err}"
        );
    }
}

#[test]
fn runs_are_listed_newest_first_with_sizes_and_losses() {
    let Some(env) = env() else { return };
    let old = fake_run(1, summary(None, None, 0));
    let mut broken = old.clone();
    broken.insert("run_summary.json".into(), b"{ not json".to_vec());
    let middle = fake_run(2, summary(Some(0.71), None, 40));
    let newest = fake_run(3, summary(Some(0.65), Some(0.62), 1410));
    env.upload_run("20261101_080000", &broken, false);
    env.upload_run("20261129_101500", &newest, true);
    env.upload_run("20261115_230000", &middle, true);
    env.put(&format!("{PREFIX}/notes/readme.txt"), b"not a run");
    env.put(&format!("{PREFIX}/stray.txt"), b"beside the runs");

    let runs = list_runs(&env.aws, &env.target).unwrap();
    let order: Vec<&str> = runs.iter().map(|r| r.timestamp.as_str()).collect();
    assert_eq!(
        order,
        ["20261129_101500", "20261115_230000", "20261101_080000"]
    );
    let expected = [with_manifest(&newest), with_manifest(&middle), broken];
    for (run, files) in runs.iter().zip(&expected) {
        assert_eq!(run.objects, files.len() as u64, "{}", run.timestamp);
        assert_eq!(run.bytes, total_bytes(files), "{}", run.timestamp);
        assert_eq!(
            run.uri,
            format!("s3://{BUCKET}/{PREFIX}/{}/", run.timestamp)
        );
    }
    let newest_summary = runs[0].summary.as_ref().unwrap();
    assert_eq!(newest_summary.final_eval_loss, Some(0.65));
    assert_eq!(newest_summary.best_eval_loss, Some(0.62));
    assert_eq!(newest_summary.steps, Some(1410));
    assert!(runs[0].has_checksums && runs[0].note.is_none());
    let middle_summary = runs[1].summary.as_ref().unwrap();
    assert_eq!(
        (
            middle_summary.final_eval_loss,
            middle_summary.best_eval_loss
        ),
        (Some(0.71), None)
    );
    assert!(runs[2].summary.is_none() && !runs[2].has_checksums);
    let note = runs[2].note.as_deref().unwrap();
    assert!(
        note.contains(&format!("{PREFIX}/20261101_080000/run_summary.json"))
            && note.contains("not valid JSON"),
        "{note}"
    );
    let json = serde_json::to_value(&runs[0]).unwrap();
    assert_eq!(json["summary"]["final_eval_loss"], json!(0.65));

    let catalog = catalog_runs(&env.aws, &env.target).unwrap();
    assert_eq!(catalog.runs, runs);
    let ignored: Vec<&str> = catalog.ignored.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        ignored,
        [format!("{PREFIX}/notes/"), format!("{PREFIX}/stray.txt")]
    );
}

#[test]
fn a_run_of_more_than_one_page_is_counted_whole() {
    let Some(env) = env() else { return };
    let count = 1005;
    let s3 = env.s3.clone();
    env.aws
        .block_on(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..count {
                let s3 = s3.clone();
                tasks.spawn(async move {
                    let key = format!("{PREFIX}/20261129_101500/logs/e{i:04}");
                    let body = ByteStream::from(vec![b'x'; i % 7 + 1]);
                    s3.put_object()
                        .bucket(BUCKET)
                        .key(key)
                        .body(body)
                        .send()
                        .await
                });
                while tasks.len() >= 16 {
                    tasks.join_next().await.unwrap().unwrap().unwrap();
                }
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap().unwrap();
            }
        })
        .unwrap();
    let runs = list_runs(&env.aws, &env.target).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].objects, count as u64);
    assert_eq!(
        runs[0].bytes,
        (0..count).map(|i| (i % 7 + 1) as u64).sum::<u64>()
    );
    assert!(runs[0]
        .note
        .as_deref()
        .unwrap()
        .contains("run_summary.json"));
}

#[test]
fn latest_pulls_the_newest_run_in_ranges_and_a_second_pull_skips_everything() {
    let Some(env) = env() else { return };
    let older = fake_run(4, summary(Some(0.8), Some(0.8), 10));
    let newest = fake_run(5, summary(Some(0.6), Some(0.6), 20));
    env.upload_run("20261128_000000", &older, true);
    env.upload_run("20261130_120000", &newest, true);
    // A folder placeholder, as the S3 console makes: no data, not a file.
    env.put(&format!("{PREFIX}/20261130_120000/logs/"), b"");
    let out = tempfile::tempdir().unwrap();

    let (report, events) = env.pull(&RunSelector::Latest, out.path(), PART);
    let report = report.unwrap();
    assert_eq!(report.run, "20261130_120000");
    assert_eq!(tree(out.path()), with_manifest(&newest));
    assert_eq!(report.files, newest.len() + 1);
    assert_eq!(report.verified_sha256, newest.len());
    assert_eq!(report.bytes_downloaded, total_bytes(&newest));
    assert_eq!((report.skipped_complete, report.verified_md5), (0, 0));
    assert!(report.unverified.is_empty());
    let adapter_parts = events
        .iter()
        .filter(|e| matches!(e, PullEvent::PartDone { path, .. } if path == ADAPTER))
        .count() as u64;
    assert_eq!(adapter_parts, (newest[ADAPTER].len() as u64).div_ceil(PART));
    assert!(adapter_parts > 10);
    let done: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            PullEvent::FileDone { path, verification } => {
                assert_eq!(*verification, Verification::Sha256);
                Some(path.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(done.len(), newest.len());
    assert!(matches!(
        &events[0],
        PullEvent::Planned { run, bytes_to_download, .. }
            if run == "20261130_120000" && *bytes_to_download == total_bytes(&newest)
    ));

    let (again, events) = env.pull(&RunSelector::Latest, out.path(), PART);
    let again = again.unwrap();
    assert_eq!(again.skipped_complete, again.files);
    assert_eq!(again.bytes_downloaded, 0);
    assert_eq!(again.verified_sha256, newest.len());
    assert!(!events.iter().any(|e| matches!(
        e,
        PullEvent::FileStarted { .. } | PullEvent::PartDone { .. }
    )));
    assert_eq!(tree(out.path()), with_manifest(&newest));
}

/// A folder holding one run's files (or a file the user changed) is not
/// overwritten by a pull unless --force says so; nothing is written when
/// the pull is refused.
#[test]
fn a_pull_never_replaces_files_that_are_not_the_runs_without_force() {
    let Some(env) = env() else { return };
    let older = fake_run(7, summary(Some(0.8), Some(0.8), 10));
    let newer = fake_run(8, summary(Some(0.6), Some(0.6), 20));
    env.upload_run("20261201_000000", &older, true);
    env.upload_run("20261202_000000", &newer, true);
    let out = tempfile::tempdir().unwrap();
    let older_run = RunSelector::Timestamp("20261201_000000".into());
    let newer_run = RunSelector::Timestamp("20261202_000000".into());
    env.pull(&older_run, out.path(), PART).0.unwrap();

    let (refused, events) = env.pull(&newer_run, out.path(), PART);
    let message = refused.unwrap_err().to_string();
    assert!(
        message.contains("another run's SHA256SUMS") && message.contains("--force"),
        "{message}"
    );
    assert!(events.is_empty());
    let (have, want) = (tree(out.path()), with_manifest(&older));
    let names = |t: &Files| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&have), names(&want), "nothing written");
    assert!(have == want, "the older run's files are untouched");

    // The same run again, with one file changed by the user.
    let summary_path = out.path().join("run_summary.json");
    fs::write(&summary_path, b"{\"edited\": true}").unwrap();
    let message = env
        .pull(&older_run, out.path(), PART)
        .0
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("1 file(s) that are not this run's (run_summary.json)"),
        "{message}"
    );
    assert_eq!(fs::read(&summary_path).unwrap(), b"{\"edited\": true}");

    env.pull_with(&newer_run, out.path(), PART, true).0.unwrap();
    let (have, want) = (tree(out.path()), with_manifest(&newer));
    // Every file of the newer run is in place; the older run's files that
    // the newer one lacks are left as they were (--force replaces, it does
    // not delete).
    let differing: Vec<&String> = want
        .keys()
        .filter(|k| have.get(*k) != want.get(*k))
        .collect();
    assert!(differing.is_empty(), "{differing:?}");
    for (name, bytes) in &have {
        if !want.contains_key(name) {
            assert_eq!(older.get(name), Some(bytes), "{name}");
        }
    }
}

/// What an interrupted pull leaves: `.part` at full size with the first
/// `parts` ranges written from `body`, and a record claiming them.
fn interrupted(env: &Env, out: &Path, key: &str, body: &[u8], parts: u64, first: &[u8]) {
    let dest = out.join(ADAPTER);
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let mut partial = vec![0u8; body.len()];
    let claimed = (parts * PART) as usize;
    partial[..claimed].copy_from_slice(&body[..claimed]);
    partial[..first.len()].copy_from_slice(first);
    fs::write(out.join(format!("{ADAPTER}.part")), &partial).unwrap();
    let mut record = format!(
        "ftslm-parts v1 size={} part_size={PART} etag={}\n",
        body.len(),
        env.etag(key)
    );
    for i in 0..parts {
        record.push_str(&format!("{i}\n"));
    }
    fs::write(out.join(format!("{ADAPTER}.part.done")), record).unwrap();
}

#[test]
fn an_interrupted_pull_resumes_with_only_the_missing_parts() {
    let Some(env) = env() else { return };
    let run = fake_run(6, summary(Some(0.5), Some(0.5), 30));
    env.upload_run("20261130_120000", &run, true);
    let out = tempfile::tempdir().unwrap();
    let key = format!("{PREFIX}/20261130_120000/{ADAPTER}");
    interrupted(&env, out.path(), &key, &run[ADAPTER], 5, &[]);

    let selector = "20261130_120000".parse().unwrap();
    let (report, events) = env.pull(&selector, out.path(), PART);
    let report = report.unwrap();
    assert_eq!(report.bytes_downloaded, total_bytes(&run) - 5 * PART);
    assert_eq!(report.verified_sha256, run.len());
    assert!(events.iter().any(|e| matches!(
        e,
        PullEvent::FileStarted { path, parts_done: 5, .. } if path == ADAPTER
    )));
    assert_eq!(tree(out.path()), with_manifest(&run));

    // A record made with another part size is not trusted: the file starts over.
    fs::remove_file(out.path().join(ADAPTER)).unwrap();
    interrupted(&env, out.path(), &key, &run[ADAPTER], 5, &[]);
    let (report, _) = env.pull(&selector, out.path(), PART * 2);
    assert_eq!(report.unwrap().bytes_downloaded, run[ADAPTER].len() as u64);
    assert_eq!(tree(out.path()), with_manifest(&run));
}

#[test]
fn a_recorded_part_with_wrong_bytes_fails_the_checksum_and_is_removed() {
    let Some(env) = env() else { return };
    let run = fake_run(7, summary(Some(0.5), Some(0.5), 30));
    env.upload_run("20261130_120000", &run, true);
    let out = tempfile::tempdir().unwrap();
    let key = format!("{PREFIX}/20261130_120000/{ADAPTER}");
    interrupted(&env, out.path(), &key, &run[ADAPTER], 3, b"garbage");
    let mut assembled = run[ADAPTER].clone();
    assembled[..7].copy_from_slice(b"garbage");

    let selector = RunSelector::Timestamp("20261130_120000".into());
    let message = refused(env.pull(&selector, out.path(), PART).0);
    assert!(message.contains(ADAPTER), "{message}");
    assert!(message.contains(&sha256_hex(&run[ADAPTER])), "{message}");
    assert!(message.contains(&sha256_hex(&assembled)), "{message}");
    let left = tree(out.path());
    assert!(
        !left.keys().any(|k| k.starts_with(ADAPTER)),
        "{:?}",
        left.keys()
    );

    let (again, _) = env.pull(&selector, out.path(), PART);
    assert_eq!(again.unwrap().verified_sha256, run.len());
    assert_eq!(tree(out.path()), with_manifest(&run));
}

#[test]
fn a_wrong_sha256sums_entry_is_an_error_naming_the_file_and_both_digests() {
    let Some(env) = env() else { return };
    let run = fake_run(8, summary(Some(0.5), Some(0.5), 30));
    env.upload_run("20261130_120000", &run, false);
    let mut lying = run.clone();
    lying.insert("metrics.jsonl".into(), b"something else".to_vec());
    env.put(
        &format!("{PREFIX}/20261130_120000/SHA256SUMS"),
        &sha256sums(&lying),
    );
    let out = tempfile::tempdir().unwrap();
    let message = refused(env.pull(&RunSelector::Latest, out.path(), PART).0);
    assert!(message.contains("metrics.jsonl"), "{message}");
    assert!(
        message.contains(&sha256_hex(b"something else")),
        "{message}"
    );
    assert!(
        message.contains(&sha256_hex(&run["metrics.jsonl"])),
        "{message}"
    );
    let left = tree(out.path());
    assert!(
        !left.keys().any(|k| k.starts_with("metrics.jsonl")),
        "{left:?}"
    );
    assert!(!left.contains_key("SHA256SUMS"));
}

#[test]
fn sha256sums_and_the_objects_must_agree() {
    let Some(env) = env() else { return };
    let run = fake_run(9, summary(Some(0.5), Some(0.5), 30));
    let mut listed = run.clone();
    listed.insert(
        "best_model/adapter_model.safetensors".into(),
        b"gone".to_vec(),
    );
    env.upload_run("20261130_120000", &run, false);
    env.put(
        &format!("{PREFIX}/20261130_120000/SHA256SUMS"),
        &sha256sums(&listed),
    );
    let out = tempfile::tempdir().unwrap();
    match env.pull(&RunSelector::Latest, out.path(), PART).0 {
        Err(AwsError::NotFound { what, .. }) => {
            assert!(
                what.contains("best_model/adapter_model.safetensors"),
                "{what}"
            )
        }
        other => panic!("expected NotFound, got {other:?}"),
    }

    env.put(
        &format!("{PREFIX}/20261130_120000/SHA256SUMS"),
        &sha256sums(&run),
    );
    env.put(&format!("{PREFIX}/20261130_120000/extra.bin"), b"unlisted");
    let message = refused(env.pull(&RunSelector::Latest, out.path(), PART).0);
    assert!(
        message.contains("extra.bin") && message.contains("not listed"),
        "{message}"
    );
    assert!(tree(out.path()).is_empty());
}

#[test]
fn keys_that_would_escape_the_out_dir_are_refused_before_writing() {
    for bad in ["logs/../../escape.txt", "logs//etc/passwd"] {
        let Some(env) = env() else { return };
        let run = fake_run(10, summary(Some(0.5), Some(0.5), 30));
        env.upload_run("20261130_120000", &run, false);
        let key = format!("{PREFIX}/20261130_120000/{bad}");
        env.put(&key, b"malicious");
        let listed = list_runs(&env.aws, &env.target).unwrap();
        assert_eq!(
            listed[0].objects,
            run.len() as u64 + 1,
            "{bad} stored as is"
        );

        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("out");
        let message = refused(env.pull(&RunSelector::Latest, &out, PART).0);
        assert!(message.contains(&key), "{message}");
        assert!(tree(parent.path()).is_empty(), "{bad}");
    }
}

#[test]
fn a_run_without_sha256sums_is_checked_by_md5_and_multipart_files_are_reported() {
    let Some(env) = env() else { return };
    let run = fake_run(11, summary(Some(0.5), Some(0.5), 30));
    env.upload_run("20261130_120000", &run, false);
    // A multipart upload, as `aws s3 cp` makes of large files: its ETag is
    // `md5-of-part-md5s-N`, not the MD5 of the body.
    let key = format!("{PREFIX}/20261130_120000/best_model/adapter_model.safetensors");
    let body = noise(99, 40_000);
    let s3 = env.s3.clone();
    let (k, b) = (key.clone(), body.clone());
    env.aws
        .block_on(async move {
            let upload = s3
                .create_multipart_upload()
                .bucket(BUCKET)
                .key(&k)
                .send()
                .await
                .unwrap();
            let id = upload.upload_id().unwrap();
            let part = s3
                .upload_part()
                .bucket(BUCKET)
                .key(&k)
                .upload_id(id)
                .part_number(1)
                .body(ByteStream::from(b))
                .send()
                .await
                .unwrap();
            let done = CompletedPart::builder()
                .part_number(1)
                .e_tag(part.e_tag().unwrap())
                .build();
            // moto names the answer's XML root `...Response` where the SDK
            // expects `...Result`, so the SDK reports a decode error although
            // the upload completed (the ETag check below shows it did).
            let _ = s3
                .complete_multipart_upload()
                .bucket(BUCKET)
                .key(&k)
                .upload_id(id)
                .multipart_upload(CompletedMultipartUpload::builder().parts(done).build())
                .send()
                .await;
        })
        .unwrap();
    assert!(env.etag(&key).ends_with("-1"), "{}", env.etag(&key));
    let md5: String = Md5::digest(&run[ADAPTER])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        env.etag(&format!("{PREFIX}/20261130_120000/{ADAPTER}")),
        md5
    );

    let out = tempfile::tempdir().unwrap();
    let (report, _) = env.pull(&RunSelector::Latest, out.path(), PART);
    let report = report.unwrap();
    assert_eq!(report.verified_md5, run.len());
    assert_eq!(report.verified_sha256, 0);
    assert_eq!(report.unverified, ["best_model/adapter_model.safetensors"]);
    let mut expected = run.clone();
    expected.insert("best_model/adapter_model.safetensors".into(), body);
    assert_eq!(tree(out.path()), expected);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["unverified"][0],
        json!("best_model/adapter_model.safetensors")
    );

    // Complete single-part files are recognised by their MD5; the multipart
    // one has nothing to compare against and is fetched again.
    let (again, _) = env.pull(&RunSelector::Latest, out.path(), PART);
    let again = again.unwrap();
    assert_eq!(again.skipped_complete, run.len());
    assert_eq!(again.bytes_downloaded, 40_000);
}

#[test]
fn an_unknown_timestamp_is_not_found_and_names_the_newest_runs() {
    let Some(env) = env() else { return };
    let small: Files = [("metrics.jsonl".to_string(), b"{}\n".to_vec())].into();
    for t in ["20261101_000000", "20261102_000000", "20261103_000000"] {
        env.upload_run(t, &small, true);
    }
    let out = tempfile::tempdir().unwrap();
    let selector = RunSelector::Timestamp("20250101_000000".into());
    match env.pull(&selector, out.path(), PART).0 {
        Err(AwsError::NotFound { what, fix }) => {
            assert!(what.contains("20250101_000000"), "{what}");
            assert!(
                fix.contains("20261103_000000, 20261102_000000, 20261101_000000"),
                "{fix}"
            );
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(tree(out.path()).is_empty());
}
