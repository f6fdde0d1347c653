//! `loss_and_grads` on the tiny Llama 3.1 checkpoint: the PEFT adapter's
//! gradients against PyTorch's, checkpointed against kept activations,
//! dropout against the training forward, packing against separate examples,
//! and the chunked loss against the full-logits one.

use std::path::Path;

use candle_core::Device;
use ftslm_model::grad::{
    chunked_cross_entropy, loss_and_grads, AdapterGrads, GradOptions, TrainingRow,
};
use ftslm_model::kernel::{with_matmul_precision, MatmulPrecision};
use ftslm_model::{masked_nll, DenseF32, LlamaModel, LoraAdapter, LoraDropout, Projection};
use serde_json::Value;

fn golden(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap()
}

fn load(dir: &Path) -> (LlamaModel, LoraAdapter, Vec<u32>, usize) {
    let golden = golden(dir);
    let model = LlamaModel::load_hf(dir, &DenseF32, &Device::Cpu).unwrap();
    let adapter =
        LoraAdapter::load_peft(&dir.join("adapter"), model.config(), &Device::Cpu).unwrap();
    let ids = golden["full_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let prompt_len = golden["prompt_len"].as_u64().unwrap() as usize;
    (model, adapter, ids, prompt_len)
}

/// One example, positions 0.., answer tokens (from `prompt_len`) as targets.
struct Row {
    ids: Vec<u32>,
    positions: Vec<u32>,
    segments: Vec<u32>,
    mask: Vec<bool>,
}

impl Row {
    fn packed(examples: &[(&[u32], usize)]) -> Row {
        let mut row = Row {
            ids: vec![],
            positions: vec![],
            segments: vec![],
            mask: vec![],
        };
        for (segment, (ids, prompt_len)) in examples.iter().enumerate() {
            row.ids.extend_from_slice(ids);
            row.positions.extend(0..ids.len() as u32);
            row.segments
                .extend(std::iter::repeat_n(segment as u32, ids.len()));
            row.mask.extend((0..ids.len()).map(|t| t >= *prompt_len));
        }
        row
    }

    fn view(&self) -> TrainingRow<'_> {
        TrainingRow {
            input_ids: &self.ids,
            positions: &self.positions,
            segments: &self.segments,
            target_mask: &self.mask,
        }
    }
}

fn stats(t: &candle_core::Tensor) -> (f64, f64, Vec<f64>) {
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    let norm = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let sum = v.iter().map(|&x| x as f64).sum();
    (norm, sum, v[..4].iter().map(|&x| x as f64).collect())
}

/// PyTorch's gradients of PEFT's adapter, dropout off, prompt masked.
///
/// Tolerance: 1e-4 relative, with an absolute floor of 1e-7. The golden
/// prints 8 decimals (±5e-9) and its smallest first4 entries (~4e-5) carry
/// only 4 significant digits, so a pure relative bound would be tighter than
/// the golden itself; 1e-7 is still 1e-5 of the smallest tensor norm (0.0068)
/// and above the f32 summation noise of 155-token reductions (~1e-8).
#[test]
fn adapter_gradients_match_pytorch() {
    // PyTorch's float32 products: ours at `Highest` (`High` is checked against it in matmul_precision.rs).
    with_matmul_precision(MatmulPrecision::Highest, || {
        let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
        let golden = golden(&dir);
        let (model, adapter, ids, prompt_len) = load(&dir);
        let row = Row::packed(&[(&ids, prompt_len)]);
        let (nll, grads) =
            loss_and_grads(&model, &adapter, &row.view(), None, &GradOptions::default()).unwrap();

        let want_loss = golden["adapter_loss"].as_f64().unwrap();
        eprintln!("loss {} vs PyTorch's {want_loss}", nll.mean());
        assert_eq!(nll.tokens, ids.len() - prompt_len);
        assert!(
            (nll.mean() - want_loss).abs() <= 1e-5,
            "loss {} vs {want_loss}",
            nll.mean()
        );

        let close = |got: f64, want: f64| (got - want).abs() <= (1e-4 * want.abs()).max(1e-7);
        let expected = golden["adapter_grads"].as_object().unwrap();
        let mut seen = 0;
        let mut worst = 0.0f64;
        for (layer, projection, g) in grads.iter() {
            for (matrix, tensor) in [("A", &g.a), ("B", &g.b)] {
                let name = format!("{}.lora_{matrix}.weight", projection.module_path(layer));
                let want = &expected
                    .get(&name)
                    .unwrap_or_else(|| panic!("{name} not in the golden"));
                seen += 1;
                let shape: Vec<usize> = want["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect();
                assert_eq!(tensor.dims(), shape, "{name} shape");
                let (norm, sum, first4) = stats(tensor);
                let mut pairs = vec![
                    ("norm", norm, want["norm"].as_f64().unwrap()),
                    ("sum", sum, want["sum"].as_f64().unwrap()),
                ];
                for (i, w) in want["first4"].as_array().unwrap().iter().enumerate() {
                    pairs.push(("first4", first4[i], w.as_f64().unwrap()));
                }
                for (what, got, want) in pairs {
                    worst = worst.max((got - want).abs() / (1e-4 * want.abs()).max(1e-7));
                    assert!(
                        close(got, want),
                        "{name} {what}: {got:e} vs PyTorch's {want:e}"
                    );
                }
            }
        }
        assert_eq!(seen, expected.len(), "every golden tensor is covered");
        eprintln!("largest deviation from the golden: {worst:.3} of the tolerance");
    });
}

#[test]
fn checkpointing_gives_identical_gradients() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let (model, adapter, ids, prompt_len) = load(&dir);
    // Two packed examples, with dropout, so recomputation must redraw the masks.
    let row = Row::packed(&[(&ids[..60], 40), (&ids, prompt_len)]);
    let run = |checkpointing: bool| {
        let mut dropout = LoraDropout::new(0.1, 42);
        let options = GradOptions {
            checkpointing,
            chunk_tokens: 16,
        };
        let (nll, grads) =
            loss_and_grads(&model, &adapter, &row.view(), Some(&mut dropout), &options).unwrap();
        // The stream ends in the same state either way.
        let next = dropout
            .dropout_mask(&[4], &Device::Cpu)
            .unwrap()
            .unwrap()
            .factors(candle_core::DType::F32)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        (nll, grads, next)
    };
    let (nll_kept, kept, next_kept) = run(false);
    let (nll_recomputed, recomputed, next_recomputed) = run(true);
    assert_eq!(nll_kept, nll_recomputed);
    assert_eq!(next_kept, next_recomputed);
    let diff = kept.max_abs_diff(&recomputed).unwrap();
    eprintln!("checkpointed vs kept activations: max |Δgrad| = {diff:e}");
    assert!(diff <= 1e-6);
    assert!(kept.global_norm().unwrap() > 0.1);
}

/// With dropout, the loss equals the training forward's with the same seed,
/// and the gradient matches a central difference of that loss along it.
#[test]
fn dropout_gradient_matches_finite_difference_of_training_forward() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let (model, adapter, ids, prompt_len) = load(&dir);
    let row = Row::packed(&[(&ids, prompt_len)]);
    let seed = 7;
    let training_loss = |adapter: &LoraAdapter| {
        let mut dropout = LoraDropout::new(0.1, seed);
        let logits = model
            .forward_training(
                &row.ids,
                &row.positions,
                &row.segments,
                adapter,
                &mut dropout,
            )
            .unwrap();
        masked_nll(&logits, &row.ids, &row.mask).unwrap().mean()
    };
    let mut dropout = LoraDropout::new(0.1, seed);
    let (nll, grads) = loss_and_grads(
        &model,
        &adapter,
        &row.view(),
        Some(&mut dropout),
        &GradOptions::default(),
    )
    .unwrap();
    let forward = training_loss(&adapter);
    assert!(
        (nll.mean() - forward).abs() <= 1e-5,
        "{} vs training forward {forward}",
        nll.mean()
    );

    // L(θ ± ε·u) with u = g/|g|: (L+ − L−)/2ε ≈ ∇L·u = |g|. In f32 the loss
    // (~10.8) carries ~1e-6 of rounding, about 2e-4 of the ~5e-3 difference.
    let norm = grads.global_norm().unwrap();
    let epsilon = 1e-3;
    let shifted = |sign: f64| {
        let mut moved = adapter.clone();
        for (layer, projection, g) in grads.iter() {
            let w = moved.get_mut(layer, projection).unwrap();
            w.a = (&w.a + g.a.affine(sign * epsilon / norm, 0.0).unwrap()).unwrap();
            w.b = (&w.b + g.b.affine(sign * epsilon / norm, 0.0).unwrap()).unwrap();
        }
        training_loss(&moved)
    };
    let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * epsilon);
    eprintln!("directional derivative: numeric {numeric}, analytic {norm}");
    assert!(
        (numeric - norm).abs() <= 1e-2 * norm,
        "numeric {numeric} vs |g| {norm}"
    );
}

/// A packed row's mean loss weights its examples by target count, and no
/// gradient crosses the boundary between them.
#[test]
fn packed_row_gradient_is_the_token_weighted_sum_of_its_examples() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let (model, adapter, ids, prompt_len) = load(&dir);
    let (first, second): (&[u32], &[u32]) = (&ids[..70], &ids);
    let options = GradOptions::default();
    let run = |examples: &[(&[u32], usize)]| {
        loss_and_grads(
            &model,
            &adapter,
            &Row::packed(examples).view(),
            None,
            &options,
        )
        .unwrap()
    };
    let (nll_a, mut grads_a) = run(&[(first, 50)]);
    let (nll_b, mut grads_b) = run(&[(second, prompt_len)]);
    let (nll_packed, grads_packed) = run(&[(first, 50), (second, prompt_len)]);

    let total = (nll_a.tokens + nll_b.tokens) as f64;
    assert_eq!(nll_packed.tokens, nll_a.tokens + nll_b.tokens);
    assert!((nll_packed.total - nll_a.total - nll_b.total).abs() <= 1e-4);
    grads_a.scale(nll_a.tokens as f64 / total).unwrap();
    grads_b.scale(nll_b.tokens as f64 / total).unwrap();
    grads_a.add_assign(&grads_b).unwrap();
    let diff = grads_a.max_abs_diff(&grads_packed).unwrap();
    eprintln!("packed vs separate: max |Δgrad| = {diff:e}");
    assert!(diff <= 1e-6, "{diff}");
}

#[test]
fn chunked_loss_equals_full_logits_loss() {
    // Both sides in f32: the full logits come from candle's matmul.
    with_matmul_precision(MatmulPrecision::Highest, || {
        let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
        let (model, adapter, ids, prompt_len) = load(&dir);
        let row = Row::packed(&[(&ids[..60], 40), (&ids, prompt_len)]);
        let logits = model
            .forward(&row.ids, &row.positions, &row.segments, Some(&adapter))
            .unwrap();
        let want = masked_nll(&logits, &row.ids, &row.mask).unwrap();
        let hidden = model
            .final_hidden(
                &row.ids,
                &row.positions,
                &row.segments,
                Some(&adapter),
                None,
            )
            .unwrap();
        // 60 targets: chunks of 7 and 16 leave remainders; 1 and 256 are the extremes.
        for chunk in [1, 7, 16, 256] {
            let (got, _) =
                chunked_cross_entropy(&hidden, model.lm_head(), &row.ids, &row.mask, chunk)
                    .unwrap();
            assert_eq!(got.tokens, want.tokens);
            assert!(
                (got.total - want.total).abs() <= 1e-4,
                "chunk {chunk}: {} vs {}",
                got.total,
                want.total
            );
            let options = GradOptions {
                checkpointing: true,
                chunk_tokens: chunk,
            };
            let (nll, _) = loss_and_grads(&model, &adapter, &row.view(), None, &options).unwrap();
            assert!(
                (nll.total - want.total).abs() <= 1e-4,
                "chunk {chunk}: {} vs {}",
                nll.total,
                want.total
            );
        }
    });
}

#[test]
fn accumulation_scaling_and_clipping() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let (model, adapter, ids, prompt_len) = load(&dir);
    let row = Row::packed(&[(&ids, prompt_len)]);
    let (_, grads) =
        loss_and_grads(&model, &adapter, &row.view(), None, &GradOptions::default()).unwrap();
    let norm = grads.global_norm().unwrap();
    let by_hand = grads
        .iter()
        .map(|(_, _, g)| stats(&g.a).0.powi(2) + stats(&g.b).0.powi(2))
        .sum::<f64>()
        .sqrt();
    assert!((norm - by_hand).abs() <= 1e-9 * norm);

    let mut total = AdapterGrads::zeros_like(&adapter).unwrap();
    assert_eq!(total.global_norm().unwrap(), 0.0);
    total.add_assign(&grads).unwrap();
    total.add_assign(&grads).unwrap();
    let mut doubled = grads.clone();
    doubled.scale(2.0).unwrap();
    assert_eq!(total.max_abs_diff(&doubled).unwrap(), 0.0);

    let mut clipped = grads.clone();
    let before = clipped.clip_to_norm(norm / 4.0).unwrap();
    assert_eq!(before, norm);
    assert!((clipped.global_norm().unwrap() - norm / 4.0).abs() <= 1e-5 * norm);
    let mut untouched = grads.clone();
    assert_eq!(untouched.clip_to_norm(norm * 2.0).unwrap(), norm);
    assert_eq!(untouched.max_abs_diff(&grads).unwrap(), 0.0);
    assert!(untouched.clip_to_norm(0.0).is_err());
    assert!(untouched.clip_to_norm(f64::NAN).is_err());

    // Gradients of another adapter layout cannot be mixed in.
    let mut settings = adapter.settings().clone();
    settings.target_modules = vec![Projection::Q];
    let other = LoraAdapter::new(model.config(), settings, None, 0, &Device::Cpu).unwrap();
    assert!(total
        .add_assign(&AdapterGrads::zeros_like(&other).unwrap())
        .is_err());
}

#[test]
fn bad_rows_are_errors() {
    let dir = ftslm_testkit::require_shared!("models/tiny-llama3");
    let (model, adapter, ids, _) = load(&dir);
    let options = GradOptions::default();
    let mut row = Row::packed(&[(&ids[..20], 10)]);
    row.mask.pop();
    assert!(loss_and_grads(&model, &adapter, &row.view(), None, &options).is_err());
    let mut row = Row::packed(&[(&ids[..20], 10)]);
    row.mask[0] = true;
    assert!(loss_and_grads(&model, &adapter, &row.view(), None, &options).is_err());
    let mut row = Row::packed(&[(&ids[..20], 10)]);
    row.ids[3] = 1_000_000;
    assert!(loss_and_grads(&model, &adapter, &row.view(), None, &options).is_err());
    let row = Row::packed(&[(&ids[..20], 10)]);
    let zero_chunk = GradOptions {
        checkpointing: true,
        chunk_tokens: 0,
    };
    assert!(loss_and_grads(&model, &adapter, &row.view(), None, &zero_chunk).is_err());

    // No targets: nothing to learn, zero gradients for every matrix.
    let row = Row::packed(&[(&ids, ids.len())]);
    let (nll, grads) = loss_and_grads(&model, &adapter, &row.view(), None, &options).unwrap();
    assert_eq!(nll.tokens, 0);
    assert_eq!(grads.global_norm().unwrap(), 0.0);
    assert_eq!(grads.iter().count(), adapter.iter().count());
}
