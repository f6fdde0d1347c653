//! The real engine on the tiny Llama 3.1 checkpoint (f32 base): its
//! gradients are those of the summed loss, training lowers the loss on a
//! repeated batch, evaluation agrees with the training forward, and a
//! checkpoint's adapter loads back into a fresh engine.

use std::path::Path;

use candle_core::Device;
use ftslm_config::LossOn;
use ftslm_data::batching::Batch;
use ftslm_data::record::Record;
use ftslm_data::synth::generate;
use ftslm_data::tokenize::PromptTokenizer;
use ftslm_model::{ComputePolicy, DenseF32, LlamaModel, LoraAdapter, LoraSettings, Projection};
use ftslm_train::llama_engine::LlamaEngine;
use ftslm_train::packed_data::BatchLayout;
use ftslm_train::{
    train, LossSum, NoProgress, ShuffledBatches, StepContext, TrainerOptions, TrainingEngine,
};

const MAX_SEQ: usize = 1024;

fn engine(dir: &Path, dropout: f64, targets: LossOn) -> LlamaEngine {
    let model = LlamaModel::load_hf(dir, &DenseF32, &Device::Cpu).unwrap();
    let settings = LoraSettings {
        r: 4,
        alpha: 8.0,
        dropout,
        target_modules: Projection::ALL.to_vec(),
        use_rslora: false,
    };
    let adapter = LoraAdapter::new(model.config(), settings, None, 3, &Device::Cpu).unwrap();
    LlamaEngine::new(model, adapter, targets, true, ComputePolicy::default()).unwrap()
}

/// Two packed rows of synthetic records: four examples of different lengths.
fn batch(dir: &Path) -> Batch {
    let tokenizer = PromptTokenizer::from_model_path(dir).unwrap();
    let examples: Vec<_> = generate(4, 11)
        .into_iter()
        .map(|r| tokenizer.encode(&Record::Instruction(r), MAX_SEQ).unwrap())
        .collect();
    let longest = examples.iter().map(|e| e.len()).max().unwrap();
    let layout = BatchLayout::new(true, 2, longest * 2, 0);
    let mut batches = layout.batches(&examples, 1);
    assert_eq!(batches.len(), 1, "four examples fit in two rows");
    batches.remove(0)
}

fn ctx(step: u64) -> StepContext {
    StepContext {
        step,
        micro_batch: 0,
        seed: 99 + step,
    }
}

/// Moves every LoRA value off its initialisation; B starts at zero, which
/// would leave A without gradient and dropout without effect.
fn perturb(e: &mut LlamaEngine) {
    for p in e.parameters() {
        for (i, v) in p.value.iter_mut().enumerate() {
            *v += 0.02 * ((i % 7) as f32 - 3.0);
        }
    }
    e.parameters_changed().unwrap();
}

#[test]
fn gradients_are_those_of_the_summed_loss() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let batch = batch(&dir);
    let mut e = engine(&dir, 0.0, LossOn::Answer);
    perturb(&mut e);
    e.zero_grads();
    let loss = e.forward_backward(&batch, ctx(1)).unwrap();
    assert!(loss.target_tokens > 20, "{loss:?}");
    assert_eq!(loss.input_tokens as usize, batch.real_tokens());
    // Every pass of each row is timed (the bench's phase breakdown), and the
    // rows' passes fit in the call's wall time times the rows in flight.
    let stats = e.stats();
    let passes = [
        stats.passes.forward,
        stats.passes.loss_head,
        stats.passes.backward,
    ];
    assert!(passes.iter().all(|&s| s > 0.0), "{stats:?}");
    assert!(
        passes.iter().sum::<f64>() <= stats.train_seconds * 2.0,
        "{stats:?}"
    );

    // Central differences of the summed eval loss at the largest gradient
    // entry of a few A and B matrices (a mean-loss gradient would be off by
    // the target count, ~100×).
    let picks: Vec<(usize, usize, f32)> = {
        let params = e.parameters();
        [0usize, 1, params.len() - 1, params.len() / 2]
            .into_iter()
            .map(|k| {
                let g = &params[k].grad;
                let i = (0..g.len())
                    .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
                    .unwrap();
                (k, i, g[i])
            })
            .collect()
    };
    for (k, i, analytic) in picks {
        let eps = 1e-2f32;
        let mut at = |delta: f32| -> f64 {
            e.parameters()[k].value[i] += delta;
            e.parameters_changed().unwrap();
            let l = e.eval_loss(&batch).unwrap().sum;
            e.parameters()[k].value[i] -= delta;
            e.parameters_changed().unwrap();
            l
        };
        let numeric = (at(eps) - at(-eps)) / (2.0 * eps as f64);
        let tolerance = 0.02 * numeric.abs().max(analytic.abs() as f64) + 1e-3;
        assert!(
            (numeric - analytic as f64).abs() < tolerance,
            "parameter {k}[{i}]: analytic {analytic}, numeric {numeric}"
        );
    }
}

/// Rows running side by side on their own threads (each with its products
/// kept on that thread) give bit-for-bit the gradients and loss of rows run
/// one after another with threaded products.
#[test]
fn rows_in_parallel_give_the_gradients_of_rows_in_turn() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let batch = batch(&dir);
    let mut results = Vec::new();
    for rows in [1, 2] {
        let mut e = engine(&dir, 0.1, LossOn::All);
        e.set_parallel_rows(rows);
        perturb(&mut e);
        e.zero_grads();
        let loss = e.forward_backward(&batch, ctx(3)).unwrap();
        let grads: Vec<Vec<u32>> = e
            .parameters()
            .iter()
            .map(|p| p.grad.iter().map(|g| g.to_bits()).collect())
            .collect();
        results.push((loss.sum.to_bits(), grads));
    }
    assert!(
        results[0].1.iter().flatten().any(|&g| g != 0),
        "no gradient at all"
    );
    assert_eq!(results[0], results[1]);
}

#[test]
fn evaluation_matches_the_training_forward_without_dropout() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let batch = batch(&dir);
    for targets in [LossOn::Answer, LossOn::All] {
        let mut e = engine(&dir, 0.0, targets);
        let trained: LossSum = e.forward_backward(&batch, ctx(1)).unwrap();
        let evaluated = e.eval_loss(&batch).unwrap();
        assert_eq!(trained.target_tokens, evaluated.target_tokens);
        let rel = (trained.sum - evaluated.sum).abs() / evaluated.sum;
        assert!(rel < 1e-5, "{targets:?}: {trained:?} vs {evaluated:?}");
    }
    let answer = engine(&dir, 0.0, LossOn::Answer).eval_loss(&batch).unwrap();
    let all = engine(&dir, 0.0, LossOn::All).eval_loss(&batch).unwrap();
    // Every token but the first of each of the four examples.
    assert_eq!(all.target_tokens as usize, batch.real_tokens() - 4);
    assert!(answer.target_tokens < all.target_tokens);
}

#[test]
fn dropout_is_a_function_of_the_step_seed() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let batch = batch(&dir);
    let mut e = engine(&dir, 0.1, LossOn::Answer);
    perturb(&mut e);
    let a = e.forward_backward(&batch, ctx(1)).unwrap();
    let b = e.forward_backward(&batch, ctx(1)).unwrap();
    let c = e.forward_backward(&batch, ctx(2)).unwrap();
    assert_eq!(a.sum, b.sum, "same step seed, same masks");
    assert_ne!(a.sum, c.sum, "another step seed draws other masks");
}

#[test]
fn training_lowers_the_loss_and_the_checkpoint_adapter_loads_back() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let batch = batch(&dir);
    let out = tempfile::tempdir().unwrap();
    let mut o = TrainerOptions::new(out.path().join("run"));
    o.max_steps = 4;
    o.gradient_accumulation_steps = 1;
    o.learning_rate = 3e-2;
    o.warmup_steps = 0;
    o.eval_steps = 2;
    o.save_steps = 2;
    o.logging_steps = 1;
    o.load_best_model_at_end = false;
    o.export_files = vec![dir.join("tokenizer.json")];
    let mut e = engine(&dir, 0.1, LossOn::Answer);
    let data = ShuffledBatches::new(vec![batch.clone()]);
    let summary = train(
        &mut e,
        &o,
        &data,
        std::slice::from_ref(&batch),
        &mut NoProgress,
    )
    .unwrap();
    let (before, after) = (
        summary.initial_eval_loss.unwrap(),
        summary.final_eval_loss.unwrap(),
    );
    // The random tiny model's frozen LM head keeps its logits within about
    // ±1 of uniform (loss ln 49152 ≈ 10.80), so 4 steps move it by ~0.25.
    assert!(after < before - 0.1, "eval loss {before} → {after}");

    let run = out.path().join("run");
    assert!(run.join("final_model/tokenizer.json").is_file());
    let mut fresh = engine(&dir, 0.1, LossOn::Answer);
    let untrained = fresh.eval_loss(&batch).unwrap().mean().unwrap();
    assert!((untrained - before).abs() < 1e-9, "same seed, same start");
    fresh.load_adapter(&run.join("checkpoint-4")).unwrap();
    fresh.parameters_changed().unwrap();
    let loaded = fresh.eval_loss(&batch).unwrap().mean().unwrap();
    assert!(
        (loaded - after).abs() < 1e-6,
        "checkpoint-4's adapter gives {loaded}, the run ended at {after}"
    );
    let trained: Vec<Vec<f32>> = e.parameters().iter().map(|p| p.value.to_vec()).collect();
    let reloaded: Vec<Vec<f32>> = fresh
        .parameters()
        .iter()
        .map(|p| p.value.to_vec())
        .collect();
    assert_eq!(trained, reloaded);

    // An adapter of another rank is refused, naming the key.
    let model = LlamaModel::load_hf(&dir, &DenseF32, &Device::Cpu).unwrap();
    let other = LoraAdapter::new(
        model.config(),
        LoraSettings {
            r: 2,
            alpha: 8.0,
            dropout: 0.0,
            target_modules: Projection::ALL.to_vec(),
            use_rslora: false,
        },
        None,
        1,
        &Device::Cpu,
    )
    .unwrap();
    let other_dir = out.path().join("r2");
    other.save_peft(&other_dir).unwrap();
    let err = fresh.load_adapter(&other_dir).unwrap_err().to_string();
    assert!(err.contains("r = 2"), "{err}");
}

#[test]
fn a_gguf_without_tokenizer_json_encodes_from_its_metadata_as_tokenizer_json_does() {
    use ftslm_source::ModelSource;
    let dir = ftslm_testkit::require_shared!("models/smollm2-135m-instruct");
    let beside = ModelSource::locate(&dir).unwrap();
    assert!(beside.is_gguf());
    assert_eq!(beside.tokenizer_files().len(), 2);

    // The GGUF alone in a folder: tokenizer and chat template from metadata.
    let alone = tempfile::tempdir().unwrap();
    let gguf = beside.weights().to_path_buf();
    let link = alone.path().join(gguf.file_name().unwrap());
    std::os::unix::fs::symlink(&gguf, &link).unwrap();
    let metadata_only = ModelSource::locate(&link).unwrap();
    assert!(metadata_only.tokenizer_files().is_empty());

    let system = "Extract the fields.";
    let from_json = beside.prompt_tokenizer(system).unwrap();
    let from_gguf = metadata_only.prompt_tokenizer(system).unwrap();
    assert_eq!(from_json.end_of_turn_ids(), from_gguf.end_of_turn_ids());
    for record in generate(3, 5) {
        let record = Record::Instruction(record);
        let a = from_json.encode(&record, MAX_SEQ).unwrap();
        let b = from_gguf.encode(&record, MAX_SEQ).unwrap();
        assert_eq!(a, b);
        assert!(a.answer_tokens() > 5);
    }
}
