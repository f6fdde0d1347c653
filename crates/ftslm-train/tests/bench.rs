//! The bench does the Python baseline's work: with NF4 identical to
//! bitsandbytes' and LoRA B at zero, its step-0 loss on the default data must
//! be the baseline's (3.469, `../shared/bench/hf_qlora_baseline.py` on the
//! first 4 training records) — which proves the two compare like with like.

use ftslm_config::LossOn;
use ftslm_model::ComputePolicy;
use ftslm_train::bench::{bench_train, BenchReport, BenchSettings};

/// The baseline's step-0 loss at batch 4 on the first four records.
const BASELINE_STEP0_LOSS: f64 = 3.469;

/// Step 0 alone on the default data, or `None` (a panic under CI) without ../shared.
fn step_zero(loss_on: LossOn) -> Option<BenchReport> {
    steps(loss_on, 0, true)
}

/// `steps` counted steps after step 0, with or without gradient checkpointing.
fn steps(loss_on: LossOn, steps: usize, gradient_checkpointing: bool) -> Option<BenchReport> {
    let model = ftslm_testkit::shared("models/smollm2-135m-instruct")?;
    let data = ftslm_testkit::shared("data/medical-ie/train.jsonl")?;
    let settings = BenchSettings {
        model,
        data,
        steps,
        batch_size: 4,
        loss_on,
        gradient_checkpointing,
        policy: ComputePolicy::default().with_threads(2),
    };
    Some(bench_train(&settings, &mut |_| {}).unwrap())
}

#[test]
fn step_zero_loss_matches_the_python_stack() {
    let Some(report) = step_zero(LossOn::All) else {
        return;
    };
    assert_eq!(report.losses.len(), 1);
    let loss = report.losses[0];
    let relative = (loss - BASELINE_STEP0_LOSS).abs() / BASELINE_STEP0_LOSS;
    assert!(
        relative < 0.005,
        "step-0 loss {loss:.4} is {:.2}% from the baseline's {BASELINE_STEP0_LOSS}",
        relative * 100.0
    );
    // Step 0 is warm-up: nothing counted, so no throughput figure.
    assert_eq!(report.tokens_per_s, None);
    assert!(report.step_tokens[0] > 0);
}

#[test]
fn answer_only_loss_is_a_different_number_on_the_same_batch() {
    let Some(report) = step_zero(LossOn::Answer) else {
        return;
    };
    // The answers are JSON the instruct model has not learnt: harder than the
    // whole conversation on average, and certainly not the same number.
    assert!(
        (report.losses[0] - BASELINE_STEP0_LOSS).abs() > 0.05,
        "{}",
        report.losses[0]
    );
    assert!(report.losses[0].is_finite());
}

#[test]
fn checkpointing_recomputes_the_same_numbers() {
    let (Some(on), Some(off)) = (steps(LossOn::All, 1, true), steps(LossOn::All, 1, false)) else {
        return;
    };
    assert!(on.gradient_checkpointing && !off.gradient_checkpointing);
    // Step 1's loss comes after one update from step 0's gradients, so equal
    // losses mean equal gradients too.
    assert_eq!(on.losses, off.losses);
}
