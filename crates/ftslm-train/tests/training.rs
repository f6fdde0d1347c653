//! The loop driven end to end by an exact linear-regression engine.

mod common;

use std::fs;
use std::path::Path;

use common::{batches, line, options, Batch, LinearEngine};
use ftslm_train::{
    read_metrics_jsonl, train, MetricRecord, NoProgress, RecordingProgress, RunSummary,
    ShuffledBatches, TrainError, TrainerState,
};

fn run(
    engine: &mut LinearEngine,
    o: &ftslm_train::TrainerOptions,
    data: &[Batch],
    eval: &[Batch],
) -> Result<RunSummary, TrainError> {
    train(
        engine,
        o,
        &ShuffledBatches::new(data.to_vec()),
        eval,
        &mut NoProgress,
    )
}

/// Every field but throughput (wall-clock) as exact bits.
fn curve(records: &[MetricRecord]) -> Vec<[Option<u64>; 6]> {
    let bits = |v: Option<f64>| v.map(f64::to_bits);
    records
        .iter()
        .map(|r| {
            [
                Some(r.step),
                bits(r.loss),
                bits(r.eval_loss),
                bits(r.learning_rate),
                bits(r.grad_norm),
                bits(Some(r.epoch)),
            ]
        })
        .collect()
}

fn state_of(dir: &Path) -> TrainerState {
    serde_json::from_slice(&fs::read(dir.join("trainer_state.json")).unwrap()).unwrap()
}

/// Runs uninterrupted and interrupted-then-resumed with the same options and
/// returns both metric histories, checking the final weights agree.
fn full_and_resumed(logging_steps: u64) -> (Vec<MetricRecord>, Vec<MetricRecord>) {
    let data = batches(7, 1, line);
    let eval = batches(3, 2, line);
    let full_dir = tempfile::tempdir().unwrap();
    let mut o = options(full_dir.path());
    o.logging_steps = logging_steps;
    let mut full = LinearEngine::new();
    run(&mut full, &o, &data, &eval).unwrap();

    let cut_dir = tempfile::tempdir().unwrap();
    o.output_dir = cut_dir.path().to_path_buf();
    let mut first = LinearEngine::new();
    // Steps take 2 micro-batches (an epoch of 7 is 4 steps, the last of 1):
    // call 14 falls inside step 8, after checkpoint-4 and logs up to step 7.
    first.fail_at_call = Some(14);
    let err = run(&mut first, &o, &data, &eval).unwrap_err();
    assert!(matches!(err, TrainError::Engine { step: 8, .. }), "{err}");
    assert!(read_metrics_jsonl(&cut_dir.path().join("metrics.jsonl"))
        .unwrap()
        .iter()
        .any(|r| r.step >= 6));
    drop(first);

    let mut second = LinearEngine::new();
    let summary = run(&mut second, &o, &data, &eval).unwrap();
    assert_eq!(summary.steps, 12);
    assert_eq!(
        second.seen.first().map(|s| s.0),
        Some(5),
        "continued after checkpoint-4"
    );
    assert_eq!(full.values(), second.values(), "same final weights");
    let adapter = |d: &Path| fs::read(d.join("final_model/adapter_model.bin")).unwrap();
    assert_eq!(adapter(full_dir.path()), adapter(cut_dir.path()));
    (
        read_metrics_jsonl(&full_dir.path().join("metrics.jsonl")).unwrap(),
        read_metrics_jsonl(&cut_dir.path().join("metrics.jsonl")).unwrap(),
    )
}

#[test]
fn resumed_run_follows_the_uninterrupted_curve_bit_for_bit() {
    let (a, b) = full_and_resumed(1);
    assert_eq!(a.len(), 12 + 5, "12 logs, evals at 0, 3, 6, 9, 12");
    assert_eq!(curve(&a), curve(&b));
    // And the run actually learned the line.
    assert!(a.last().unwrap().eval_loss.unwrap() < a[0].eval_loss.unwrap() / 4.0);
}

#[test]
fn a_checkpoint_between_two_logs_keeps_the_pending_mean() {
    // Logs at 5 and 10 (mean of 5 steps each) and 12; checkpoint-4 falls inside
    // the first interval, so the resumed run must carry steps 1-4 over.
    let (a, b) = full_and_resumed(5);
    let logged: Vec<u64> = a
        .iter()
        .filter(|r| r.loss.is_some())
        .map(|r| r.step)
        .collect();
    assert_eq!(logged, vec![5, 10, 12]);
    assert_eq!(curve(&a), curve(&b));
}

#[test]
fn accumulated_steps_normalise_per_target_token() {
    // Two micro-batches of 1 and 2 samples make the only step; w = b = 0.
    let data = vec![
        Batch {
            id: 0,
            xs: vec![[1.0, 0.0]],
            ys: vec![2.0],
        },
        Batch {
            id: 1,
            xs: vec![[0.0, 1.0], [1.0, 1.0]],
            ys: vec![-1.0, 4.0],
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path());
    o.max_steps = 1;
    o.max_grad_norm = 0.0;
    let mut engine = LinearEngine::new();
    engine.noise = 0.0;
    run(&mut engine, &o, &data, &[]).unwrap();
    let log = &read_metrics_jsonl(&dir.path().join("metrics.jsonl")).unwrap()[0];
    // Per-token mean over 3 targets: (4 + 1 + 16) / 3 = 7 (a per-micro-batch
    // mean would give (4 + 17/2) / 2 = 6.25).
    assert_eq!(log.loss, Some(7.0));
    // d/dw0 = 2(0-2)·1 + 2(0-4)·1 = -12; d/dw1 = 2(0+1) + 2(0-4) = -6;
    // d/db = -4 + 2 - 8 = -10; all over 3 tokens: (-4, -2, -10/3).
    let expect = (16.0f64 + 4.0 + 100.0 / 9.0).sqrt();
    assert!(
        (log.grad_norm.unwrap() - expect).abs() < 1e-5,
        "{:?} vs {expect}",
        log.grad_norm
    );
    // Warmup of 2: the first update has rate 0, so nothing moved except the
    // decoupled decay (also scaled by lr = 0).
    assert_eq!(log.learning_rate, Some(0.0));
    assert_eq!(engine.values(), vec![0.0, 0.0, 0.0]);
}

#[test]
fn epochs_are_reshuffled_and_end_with_a_partial_step() {
    let data = batches(5, 3, line);
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path());
    o.max_steps = -1;
    o.num_train_epochs = 2.0;
    let mut engine = LinearEngine::new();
    let summary = run(&mut engine, &o, &data, &[]).unwrap();
    // ceil(5 / 2) = 3 steps an epoch.
    assert_eq!(summary.steps, 6);
    assert_eq!(summary.epochs, 2.0);
    let steps: Vec<u64> = engine.seen.iter().map(|s| s.0).collect();
    assert_eq!(steps, vec![1, 1, 2, 2, 3, 4, 4, 5, 5, 6]);
    let ids: Vec<u32> = engine.seen.iter().map(|s| s.1).collect();
    let (e0, e1) = ids.split_at(5);
    let sorted = |xs: &[u32]| {
        let mut v = xs.to_vec();
        v.sort();
        v
    };
    assert_eq!(sorted(e0), vec![0, 1, 2, 3, 4]);
    assert_eq!(sorted(e1), vec![0, 1, 2, 3, 4]);
    assert_ne!(e0, e1, "a new order every epoch");

    let again = tempfile::tempdir().unwrap();
    let mut o2 = o.clone();
    o2.output_dir = again.path().to_path_buf();
    let mut engine2 = LinearEngine::new();
    run(&mut engine2, &o2, &data, &[]).unwrap();
    assert_eq!(engine.seen, engine2.seen, "same seed, same order");
    assert_eq!(engine.values(), engine2.values());
}

#[test]
fn nan_loss_stops_with_the_step_and_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = LinearEngine::new();
    engine.nan_at_step = Some(6);
    let err = run(&mut engine, &options(dir.path()), &batches(7, 1, line), &[]).unwrap_err();
    let TrainError::NonFinite {
        step,
        ref last_checkpoint,
        ..
    } = err
    else {
        panic!("{err}");
    };
    assert_eq!(step, 6);
    assert_eq!(
        last_checkpoint.as_deref(),
        Some(dir.path().join("checkpoint-4").as_path())
    );
    let message = err.to_string();
    assert!(
        message.contains("step 6") && message.contains("NaN") && message.contains("checkpoint-4"),
        "{message}"
    );
    assert!(!dir.path().join("final_model").exists());
}

/// Training pulls w away from 0, the eval set wants w = 0: eval loss only rises.
fn worsening_run(dir: &Path, patience: Option<u64>) -> (LinearEngine, RunSummary) {
    let mut o = options(dir);
    o.max_steps = 10;
    o.eval_steps = 2;
    o.save_steps = 2;
    o.save_total_limit = Some(2);
    o.warmup_steps = 0;
    o.early_stopping_patience = patience;
    let eval = batches(3, 9, |_, _| 0.0);
    let mut engine = LinearEngine::new();
    let summary = run(&mut engine, &o, &batches(6, 1, line), &eval).unwrap();
    (engine, summary)
}

fn checkpoint_steps(dir: &Path) -> Vec<u64> {
    let mut steps: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            ftslm_train::Checkpoint::parse_name(&e.unwrap().file_name().to_string_lossy())
        })
        .collect();
    steps.sort();
    steps
}

#[test]
fn rotation_keeps_the_newest_checkpoints_and_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let (_, summary) = worsening_run(dir.path(), None);
    assert_eq!(summary.best_step, Some(2));
    assert_eq!(checkpoint_steps(dir.path()), vec![2, 8, 10]);
    assert_eq!(
        state_of(&dir.path().join("checkpoint-10"))
            .best_model_checkpoint
            .as_deref(),
        Some("checkpoint-2")
    );
    // load_best_model_at_end: final_model is the step-2 adapter.
    let read = |p: &str| fs::read(dir.path().join(p).join("adapter_model.bin")).unwrap();
    assert_eq!(read("final_model"), read("checkpoint-2"));
    assert_eq!(read("best_model"), read("checkpoint-2"));
    assert_ne!(read("final_model"), read("checkpoint-10"));
    assert!(summary.final_eval_loss > summary.best_eval_loss);
}

#[test]
fn early_stopping_after_patience_evaluations() {
    let dir = tempfile::tempdir().unwrap();
    let (_, summary) = worsening_run(dir.path(), Some(2));
    // Best at 2, no improvement at 4 and 6.
    assert_eq!(summary.steps, 6);
    let reason = summary.stopped_early.as_deref().unwrap();
    assert!(
        reason.contains("step 6") && reason.contains("2 evaluation"),
        "{reason}"
    );
    assert!(dir.path().join("checkpoint-6").is_dir());
    let summary_file: RunSummary =
        serde_json::from_slice(&fs::read(dir.path().join("run_summary.json")).unwrap()).unwrap();
    assert_eq!(summary_file.stopped_early, summary.stopped_early);

    // Resuming a finished run does no more steps.
    let mut engine = LinearEngine::new();
    let mut o = options(dir.path());
    (
        o.max_steps,
        o.eval_steps,
        o.save_steps,
        o.save_total_limit,
        o.warmup_steps,
    ) = (10, 2, 2, Some(2), 0);
    o.early_stopping_patience = Some(2);
    let again = run(
        &mut engine,
        &o,
        &batches(6, 1, line),
        &batches(3, 9, |_, _| 0.0),
    )
    .unwrap();
    assert_eq!(engine.calls, 0);
    assert_eq!(again.steps, 6);
}

#[test]
fn run_directory_has_the_documented_layout() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = dir.path().join("tokenizer.json");
    let out = dir.path().join("run");
    fs::write(&tokenizer, "{}").unwrap();
    let mut o = options(&out);
    o.export_files = vec![tokenizer];
    let summary = run(
        &mut LinearEngine::new(),
        &o,
        &batches(7, 1, line),
        &batches(3, 2, line),
    )
    .unwrap();

    for f in [
        "adapter_model.bin",
        "adapter_config.json",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        assert!(
            out.join("checkpoint-8").join(f).is_file(),
            "checkpoint-8/{f}"
        );
    }
    for f in ["adapter_model.bin", "adapter_config.json", "tokenizer.json"] {
        assert!(out.join("final_model").join(f).is_file(), "final_model/{f}");
        assert!(out.join("best_model").join(f).is_file(), "best_model/{f}");
    }
    let state = state_of(&out.join("checkpoint-8"));
    assert_eq!(
        (state.global_step, state.data.epoch, state.data.next_batch),
        (8, 1, 7)
    );
    assert_eq!(state.scheduler.updates, 8);
    assert_eq!(state.rng.seed, 7);
    assert_eq!(state.log_history.len(), 8 + 3);

    let metrics = read_metrics_jsonl(&out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics[0].step, 0);
    assert!(
        metrics[0].eval_loss.is_some(),
        "evaluated before the first step"
    );
    assert!(
        metrics
            .iter()
            .any(|r| r.step == 12 && r.eval_loss.is_some()),
        "and after the last"
    );
    assert!(metrics
        .iter()
        .filter(|r| r.loss.is_some())
        .all(|r| r.tokens_per_second.unwrap() > 0.0));

    let logs: Vec<_> = fs::read_dir(out.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1);
    assert!(logs[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("events.out.tfevents."));
    let bytes = fs::read(&logs[0]).unwrap();
    assert_eq!(
        ftslm_train::tensorboard::read_records(&bytes)
            .unwrap()
            .len(),
        1 + metrics.len()
    );

    let s: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("run_summary.json")).unwrap()).unwrap();
    assert_eq!(s["steps"], 12);
    assert_eq!(s["initial_eval_loss"].as_f64(), metrics[0].eval_loss);
    assert_eq!(s["tokens_seen"], summary.tokens_seen);
    assert!(summary.tokens_seen > 0 && summary.peak_rss_bytes.unwrap_or(1) > 0);
    assert!(s["best_step"].as_u64().is_some() && s["wall_time_seconds"].as_f64().unwrap() > 0.0);
    assert!(fs::read_dir(&out).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".tmp-")));
}

#[test]
fn leftover_temporary_checkpoint_is_removed_and_the_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let o = options(dir.path());
    let (data, eval) = (batches(7, 1, line), batches(3, 2, line));
    let mut first = LinearEngine::new();
    first.fail_at_call = Some(14);
    run(&mut first, &o, &data, &eval).unwrap_err();
    // A process killed while writing checkpoint-8.
    let debris = dir.path().join("checkpoint-8.tmp-4242");
    fs::create_dir(&debris).unwrap();
    fs::write(debris.join("adapter_model.bin"), b"half").unwrap();

    let mut progress = RecordingProgress::default();
    let mut engine = LinearEngine::new();
    train(
        &mut engine,
        &o,
        &ShuffledBatches::new(data),
        &eval,
        &mut progress,
    )
    .unwrap();
    assert!(!debris.exists());
    assert!(
        progress
            .notes
            .iter()
            .any(|n| n.contains("checkpoint-8.tmp-4242")),
        "{:?}",
        progress.notes
    );
    assert!(progress
        .notes
        .iter()
        .any(|n| n.contains("resuming from") && n.contains("checkpoint-4")));
    assert_eq!(engine.seen.first().map(|s| s.0), Some(5));
}

#[test]
fn no_resume_moves_earlier_results_into_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path());
    let (data, eval) = (batches(7, 1, line), batches(3, 2, line));
    run(&mut LinearEngine::new(), &o, &data, &eval).unwrap();
    o.resume = false;
    let mut engine = LinearEngine::new();
    run(&mut engine, &o, &data, &eval).unwrap();
    assert_eq!(engine.seen.first().map(|s| s.0), Some(1), "started over");
    let backups: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("backup_")
        })
        .collect();
    assert_eq!(backups.len(), 1);
    for name in [
        "checkpoint-12",
        "final_model",
        "best_model",
        "metrics.jsonl",
        "logs",
        "run_summary.json",
    ] {
        assert!(backups[0].join(name).exists(), "backup has {name}");
    }
    assert_eq!(
        read_metrics_jsonl(&dir.path().join("metrics.jsonl"))
            .unwrap()
            .len(),
        17
    );
}

#[test]
fn resuming_with_another_seed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path());
    run(&mut LinearEngine::new(), &o, &batches(7, 1, line), &[]).unwrap();
    o.seed = 8;
    let err = run(&mut LinearEngine::new(), &o, &batches(7, 1, line), &[]).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("seed")
            && message.contains("--no-resume")
            && message.contains("checkpoint-12"),
        "{message}"
    );
}

/// A process stopped between publishing a checkpoint and rotating leaves
/// one beyond `save_total_limit`; the resumed run rotates before it starts.
#[test]
fn a_resume_rotates_checkpoints_beyond_the_limit() {
    let data = batches(7, 1, line);
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path());
    o.save_total_limit = Some(2);
    o.max_steps = 8; // checkpoints 4 and 8
    run(&mut LinearEngine::new(), &o, &data, &[]).unwrap();
    // What the stopped process left: an older checkpoint still in place.
    let extra = dir.path().join("checkpoint-2");
    let mut copy = std::process::Command::new("cp");
    assert!(copy
        .arg("-r")
        .arg(dir.path().join("checkpoint-4"))
        .arg(&extra)
        .status()
        .unwrap()
        .success());
    o.max_steps = 10;
    let mut progress = RecordingProgress::default();
    train(
        &mut LinearEngine::new(),
        &o,
        &ShuffledBatches::new(data.clone()),
        &[],
        &mut progress,
    )
    .unwrap();
    assert!(
        progress
            .notes
            .iter()
            .any(|n| n.contains("checkpoint-2") && n.contains("save_total_limit 2")),
        "{:?}",
        progress.notes
    );
    assert!(!extra.exists());
}
