//! TensorBoard itself must read our event files: the scalars come back through
//! `EventAccumulator` with the tags, steps and values of metrics.jsonl.
//! Needs Python with the `tensorboard` package at `$FTSLM_PYTHON` or
//! `.venv/bin/python`; skipped with a note when absent, a failure under CI=true.

mod common;

use std::process::Command;

use common::{batches, line, options, LinearEngine};
use ftslm_train::{read_metrics_jsonl, train, NoProgress, ShuffledBatches};

const READER: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1])
acc.Reload()
out = {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
print(json.dumps(out))
"#;

#[test]
fn tensorboard_reads_our_event_files() {
    let Some(python) = ftslm_testkit::python_with("tensorboard") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let o = options(dir.path());
    // Interrupt once so the file is the one rebuilt on resume plus appends.
    let mut first = LinearEngine::new();
    first.fail_at_call = Some(14);
    let data = ShuffledBatches::new(batches(7, 1, line));
    let eval = batches(3, 2, line);
    train(&mut first, &o, &data, &eval, &mut NoProgress).unwrap_err();
    train(&mut LinearEngine::new(), &o, &data, &eval, &mut NoProgress).unwrap();

    let out = Command::new(&python)
        .args(["-c", READER])
        .arg(dir.path().join("logs"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scalars: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let metrics = read_metrics_jsonl(&dir.path().join("metrics.jsonl")).unwrap();
    for (tag, pick) in [
        (
            "train/loss",
            (|r| r.loss) as fn(&ftslm_train::MetricRecord) -> Option<f64>,
        ),
        ("train/learning_rate", |r| r.learning_rate),
        ("train/grad_norm", |r| r.grad_norm),
        ("train/tokens_per_second", |r| r.tokens_per_second),
        ("eval/loss", |r| r.eval_loss),
    ] {
        let expected: Vec<(u64, f32)> = metrics
            .iter()
            .filter_map(|r| pick(r).map(|v| (r.step, v as f32)))
            .collect();
        let got: Vec<(u64, f32)> = scalars[tag]
            .as_array()
            .unwrap_or_else(|| panic!("no {tag} in {scalars}"))
            .iter()
            .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap() as f32))
            .collect();
        assert_eq!(got, expected, "{tag}");
    }
    assert_eq!(scalars["eval/loss"].as_array().unwrap().len(), 5);
}
