//! Every hand-written layer backward against central finite differences.
//!
//! The layer functions work in their inputs' dtype, so these run in f64:
//! with step h = 1e-5 the difference quotient's truncation error (~h²) and
//! rounding error (~1e-16·|L|/h) are both below 1e-9 for these small shapes,
//! so a tolerance of 1e-6 relative to the gradient's largest entry leaves
//! three orders of margin and still catches any real mistake (a wrong
//! transpose, mask, scale or missing term is an O(1) error). In f32 the
//! quotient itself would be noisy at the 1e-3 level and hide small bugs.
//!
//! Each check uses L = Σ y ⊙ R for a fixed random R, so dL/dy = R.

use candle_core::{DType, Device, Tensor};
use ftslm_model::attention::Attention;
use ftslm_model::grad::attention::{attention_backward, attention_forward};
use ftslm_model::grad::decoder::{layer_backward, layer_forward};
use ftslm_model::grad::mlp::{mlp_backward, mlp_forward};
use ftslm_model::grad::rmsnorm::rms_norm_backward;
use ftslm_model::grad::rope::rope_backward;
use ftslm_model::grad::{chunked_cross_entropy, AdaptedLinear, LayerAdapter, LayerGrads};
use ftslm_model::mlp::Mlp;
use ftslm_model::norm::RmsNorm;
use ftslm_model::rope::{RopeTables, RotaryEmbedding};
use ftslm_model::CpuBackend;
use ftslm_model::{
    DecoderLayer, DropoutMask, FrozenWeight, LoraWeights, ModelError, Projection, RopeConfig,
    RopeScaling,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const STEP: f64 = 1e-5;
const TOLERANCE: f64 = 1e-6;

/// A dense f64 frozen weight, so whole layers can run in f64.
#[derive(Debug)]
struct Dense64(Tensor);

impl FrozenWeight for Dense64 {
    fn out_features(&self) -> usize {
        self.0.dims()[0]
    }
    fn in_features(&self) -> usize {
        self.0.dims()[1]
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        Ok(x.matmul(&self.0.t()?)?)
    }
    fn backward_input(&self, dy: &Tensor) -> Result<Tensor, ModelError> {
        Ok(dy.matmul(&self.0)?)
    }
    fn to_dense(&self) -> Result<Tensor, ModelError> {
        Ok(self.0.clone())
    }
    fn storage_bytes(&self) -> usize {
        self.0.elem_count() * 8
    }
}

struct Random(ChaCha8Rng);

impl Random {
    fn new(seed: u64) -> Self {
        Random(ChaCha8Rng::seed_from_u64(seed))
    }
    fn tensor(&mut self, dims: &[usize], bound: f64) -> Tensor {
        let n: usize = dims.iter().product();
        let v: Vec<f64> = (0..n).map(|_| self.0.random_range(-bound..bound)).collect();
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    }
    fn frozen(&mut self, out: usize, inp: usize) -> Box<dyn FrozenWeight> {
        Box::new(Dense64(self.tensor(&[out, inp], 1.0 / (inp as f64).sqrt())))
    }
    fn lora(&mut self, out: usize, inp: usize, r: usize) -> LoraWeights {
        LoraWeights {
            a: self.tensor(&[r, inp], 0.5),
            b: self.tensor(&[out, r], 0.5),
        }
    }
    /// Dropout p = 0.5: entries 0 or 2.
    /// A p = 0.5 dropout mask: kept values doubled.
    fn keep(&mut self, dims: &[usize]) -> DropoutMask {
        let n: usize = dims.iter().product();
        let kept: Vec<u8> = (0..n).map(|_| u8::from(self.0.random::<bool>())).collect();
        DropoutMask::new(Tensor::from_vec(kept, dims, &Device::Cpu).unwrap(), 2.0).unwrap()
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn with_values(t: &Tensor, v: Vec<f64>) -> Tensor {
    Tensor::from_vec(v, t.dims(), &Device::Cpu).unwrap()
}

fn dot(y: &Tensor, r: &Tensor) -> f64 {
    (y * r)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Compares `analytic` with central differences of `loss` around `at`.
fn check(what: &str, at: &Tensor, analytic: &Tensor, loss: impl Fn(&Tensor) -> f64) {
    assert_eq!(at.dims(), analytic.dims(), "{what}: gradient shape");
    let base = values(at);
    let analytic = values(analytic);
    let scale = analytic.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    assert!(
        scale > 1e-3,
        "{what}: gradient is ~0, the check would be vacuous"
    );
    let mut worst = 0.0f64;
    for i in 0..base.len() {
        let mut plus = base.clone();
        plus[i] += STEP;
        let mut minus = base.clone();
        minus[i] -= STEP;
        let numeric = (loss(&with_values(at, plus)) - loss(&with_values(at, minus))) / (2.0 * STEP);
        worst = worst.max((numeric - analytic[i]).abs());
    }
    eprintln!("{what}: max |numeric − analytic| = {worst:.2e} (largest entry {scale:.2e})");
    assert!(
        worst <= TOLERANCE * scale,
        "{what}: finite differences differ by {worst:e}, gradient scale {scale:e}"
    );
}

fn rope_tables(positions: &[u32], head_dim: usize, scaling: RopeScaling, theta: f64) -> RopeTables {
    let rope = RotaryEmbedding::new(head_dim, &RopeConfig { theta, scaling });
    let t = rope.tables(positions, &Device::Cpu).unwrap();
    RopeTables {
        cos: t.cos.to_dtype(DType::F64).unwrap(),
        sin: t.sin.to_dtype(DType::F64).unwrap(),
    }
}

fn llama3() -> RopeScaling {
    RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 64,
    }
}

#[test]
fn rms_norm_input_gradient() {
    let mut rng = Random::new(1);
    let norm = RmsNorm::new(rng.tensor(&[6], 2.0), 1e-5);
    let x = rng.tensor(&[4, 6], 1.5);
    let r = rng.tensor(&[4, 6], 1.0);
    let dx = rms_norm_backward(&norm, &x, &r).unwrap();
    check("rmsnorm dx", &x, &dx, |x| {
        dot(&norm.forward(x).unwrap(), &r)
    });
}

#[test]
fn rope_gradient_is_the_inverse_rotation() {
    let mut rng = Random::new(2);
    // Llama 3 scaling with positions spanning every frequency band.
    let tables = rope_tables(&[0, 3, 40, 900, 5000], 8, llama3(), 10_000.0);
    let x = rng.tensor(&[5, 3, 8], 1.0);
    let r = rng.tensor(&[5, 3, 8], 1.0);
    let dx = rope_backward(&tables, &r).unwrap();
    check("rope dx", &x, &dx, |x| dot(&tables.apply(x).unwrap(), &r));
}

#[test]
fn linear_with_lora_and_dropout() {
    let mut rng = Random::new(3);
    let (rows, inp, out, rank) = (3, 5, 4, 2);
    let base = rng.frozen(out, inp);
    let lora = rng.lora(out, inp, rank);
    let keep = rng.keep(&[rows, inp]);
    let x = rng.tensor(&[rows, inp], 1.0);
    let r = rng.tensor(&[rows, out], 1.0);
    fn adapted<'a>(
        base: &'a dyn FrozenWeight,
        lora: &'a LoraWeights,
        keep: &'a DropoutMask,
    ) -> AdaptedLinear<'a> {
        AdaptedLinear {
            backend: &CpuBackend,
            base,
            lora: Some(lora),
            scale: 1.5,
            keep: Some(keep),
        }
    }
    let run = |x: &Tensor, lora: &LoraWeights| {
        dot(&adapted(&*base, lora, &keep).forward(x).unwrap().0, &r)
    };

    let (_, cache) = adapted(&*base, &lora, &keep).forward(&x).unwrap();
    let (dx, grads) = adapted(&*base, &lora, &keep)
        .backward(&cache, &r, true)
        .unwrap();
    let grads = grads.unwrap();
    check("linear dx", &x, &dx.unwrap(), |x| run(x, &lora));
    check("linear dA", &lora.a, &grads.a, |a| {
        run(
            &x,
            &LoraWeights {
                a: a.clone(),
                b: lora.b.clone(),
            },
        )
    });
    check("linear dB", &lora.b, &grads.b, |b| {
        run(
            &x,
            &LoraWeights {
                a: lora.a.clone(),
                b: b.clone(),
            },
        )
    });

    // Without dx the LoRA gradients are the same.
    let (none, again) = adapted(&*base, &lora, &keep)
        .backward(&cache, &r, false)
        .unwrap();
    assert!(none.is_none());
    assert_eq!(values(&again.unwrap().b), values(&grads.b));

    // A frozen projection alone: dx = dy·W and no LoRA gradient.
    let plain = AdaptedLinear {
        backend: &CpuBackend,
        base: &*base,
        lora: None,
        scale: 0.0,
        keep: None,
    };
    let (_, cache) = plain.forward(&x).unwrap();
    let (dx, grads) = plain.backward(&cache, &r, true).unwrap();
    assert!(grads.is_none());
    check("frozen dx", &x, &dx.unwrap(), |x| {
        dot(&plain.forward(x).unwrap().0, &r)
    });
}

/// Small GQA geometry: 4 query heads over 2 kv heads of width 4.
fn attention(rng: &mut Random, hidden: usize) -> Attention {
    Attention {
        q_proj: rng.frozen(16, hidden),
        k_proj: rng.frozen(8, hidden),
        v_proj: rng.frozen(8, hidden),
        o_proj: rng.frozen(hidden, 16),
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 4,
    }
}

fn mlp(rng: &mut Random, hidden: usize, intermediate: usize) -> Mlp {
    Mlp {
        gate_proj: rng.frozen(intermediate, hidden),
        up_proj: rng.frozen(intermediate, hidden),
        down_proj: rng.frozen(hidden, intermediate),
    }
}

type Adapted = Vec<(Projection, LoraWeights)>;
type Masks = Vec<(Projection, DropoutMask)>;

/// LoRA r=2 with dropout masks on every projection of `which`.
fn adapter_weights(
    rng: &mut Random,
    which: &[(Projection, usize, usize)],
    rows: usize,
) -> (Adapted, Masks) {
    let weights = which
        .iter()
        .map(|&(p, out, inp)| (p, rng.lora(out, inp, 2)))
        .collect();
    let keeps = which
        .iter()
        .map(|&(p, _, inp)| (p, rng.keep(&[rows, inp])))
        .collect();
    (weights, keeps)
}

fn layer_adapter<'a>(
    weights: &'a [(Projection, LoraWeights)],
    keeps: &[(Projection, DropoutMask)],
) -> LayerAdapter<'a> {
    let mut lora = LayerAdapter::none();
    lora.scale = 1.5;
    for ((p, w), (_, keep)) in weights.iter().zip(keeps) {
        lora.weights[*p as usize] = Some(w);
        lora.keep[*p as usize] = Some(keep.clone());
    }
    lora
}

/// FD checks of every A and B in `weights`, given the analytic `grads` and a
/// loss of the adapter weights.
fn check_lora(
    what: &str,
    weights: &[(Projection, LoraWeights)],
    grads: &LayerGrads,
    loss: impl Fn(&[(Projection, LoraWeights)]) -> f64,
) {
    for (i, (p, w)) in weights.iter().enumerate() {
        let g = grads[*p as usize]
            .as_ref()
            .expect("adapted projection has a gradient");
        let name = p.module_name();
        check(&format!("{what} {name} dA"), &w.a, &g.a, |a| {
            let mut changed = weights.to_vec();
            changed[i].1.a = a.clone();
            loss(&changed)
        });
        check(&format!("{what} {name} dB"), &w.b, &g.b, |b| {
            let mut changed = weights.to_vec();
            changed[i].1.b = b.clone();
            loss(&changed)
        });
    }
}

#[test]
fn grouped_query_attention_over_two_segments() {
    let mut rng = Random::new(4);
    let (hidden, tokens) = (12, 7);
    let attn = attention(&mut rng, hidden);
    // Two packed examples of 3 and 4 tokens, positions restarting at 0.
    let segments = [0..3, 3..7];
    let tables = rope_tables(&[0, 1, 2, 0, 1, 2, 3], 4, RopeScaling::None, 10.0);
    let (weights, keeps) = adapter_weights(
        &mut rng,
        &[
            (Projection::Q, 16, hidden),
            (Projection::K, 8, hidden),
            (Projection::V, 8, hidden),
            (Projection::O, hidden, 16),
        ],
        tokens,
    );
    let x = rng.tensor(&[tokens, hidden], 1.0);
    let r = rng.tensor(&[tokens, hidden], 1.0);
    let run = |x: &Tensor, weights: &[(Projection, LoraWeights)]| {
        let lora = layer_adapter(weights, &keeps);
        dot(
            &attention_forward(&CpuBackend, &attn, &lora, x, &tables, &segments)
                .unwrap()
                .0,
            &r,
        )
    };

    let lora = layer_adapter(&weights, &keeps);
    let (_, cache) = attention_forward(&CpuBackend, &attn, &lora, &x, &tables, &segments).unwrap();
    let mut grads: LayerGrads = Default::default();
    let dx = attention_backward(
        &CpuBackend,
        &attn,
        &lora,
        &tables,
        &segments,
        &cache,
        &r,
        &mut grads,
        true,
    )
    .unwrap()
    .unwrap();
    check("attention dx", &x, &dx, |x| run(x, &weights));
    check_lora("attention", &weights, &grads, |w| run(&x, w));

    // No attention across the boundary: the first example's output ignores
    // the second example's tokens.
    let ignored = values(&dx.narrow(0, 3, 4).unwrap());
    let r_first = r.narrow(0, 0, 3).unwrap();
    let (_, cache) = attention_forward(&CpuBackend, &attn, &lora, &x, &tables, &segments).unwrap();
    let r_masked = Tensor::cat(
        &[
            r_first,
            Tensor::zeros((4, hidden), DType::F64, &Device::Cpu).unwrap(),
        ],
        0,
    )
    .unwrap();
    let dx_first = attention_backward(
        &CpuBackend,
        &attn,
        &lora,
        &tables,
        &segments,
        &cache,
        &r_masked,
        &mut grads,
        true,
    )
    .unwrap()
    .unwrap();
    assert!(values(&dx_first.narrow(0, 3, 4).unwrap())
        .iter()
        .all(|&v| v == 0.0));
    assert!(ignored.iter().any(|&v| v != 0.0));
}

#[test]
fn swiglu_mlp_with_lora() {
    let mut rng = Random::new(5);
    let (hidden, intermediate, tokens) = (6, 10, 5);
    let mlp = mlp(&mut rng, hidden, intermediate);
    let (weights, keeps) = adapter_weights(
        &mut rng,
        &[
            (Projection::Gate, intermediate, hidden),
            (Projection::Up, intermediate, hidden),
            (Projection::Down, hidden, intermediate),
        ],
        tokens,
    );
    // Wide inputs so the gate visits silu's curved region and both tails.
    let x = rng.tensor(&[tokens, hidden], 3.0);
    let r = rng.tensor(&[tokens, hidden], 1.0);
    let run = |x: &Tensor, weights: &[(Projection, LoraWeights)]| {
        let lora = layer_adapter(weights, &keeps);
        dot(&mlp_forward(&CpuBackend, &mlp, &lora, x).unwrap().0, &r)
    };

    let lora = layer_adapter(&weights, &keeps);
    let (_, cache) = mlp_forward(&CpuBackend, &mlp, &lora, &x).unwrap();
    let mut grads: LayerGrads = Default::default();
    let dx = mlp_backward(&CpuBackend, &mlp, &lora, &cache, &r, &mut grads).unwrap();
    check("mlp dx", &x, &dx, |x| run(x, &weights));
    check_lora("mlp", &weights, &grads, |w| run(&x, w));
}

#[test]
fn whole_decoder_layer_with_all_seven_adapters() {
    let mut rng = Random::new(6);
    let (hidden, intermediate, tokens) = (12, 20, 6);
    let layer = DecoderLayer {
        input_layernorm: RmsNorm::new(rng.tensor(&[hidden], 2.0), 1e-5),
        self_attn: attention(&mut rng, hidden),
        post_attention_layernorm: RmsNorm::new(rng.tensor(&[hidden], 2.0), 1e-5),
        mlp: mlp(&mut rng, hidden, intermediate),
    };
    let segments = [0..4, 4..6];
    let tables = rope_tables(&[0, 1, 2, 3, 0, 1], 4, llama3(), 10.0);
    let (weights, keeps) = adapter_weights(
        &mut rng,
        &[
            (Projection::Q, 16, hidden),
            (Projection::K, 8, hidden),
            (Projection::V, 8, hidden),
            (Projection::O, hidden, 16),
            (Projection::Gate, intermediate, hidden),
            (Projection::Up, intermediate, hidden),
            (Projection::Down, hidden, intermediate),
        ],
        tokens,
    );
    let x = rng.tensor(&[tokens, hidden], 1.0);
    let r = rng.tensor(&[tokens, hidden], 1.0);
    let run = |x: &Tensor, weights: &[(Projection, LoraWeights)]| {
        let lora = layer_adapter(weights, &keeps);
        dot(
            &layer_forward(&CpuBackend, &layer, &lora, x, &tables, &segments)
                .unwrap()
                .0,
            &r,
        )
    };

    let lora = layer_adapter(&weights, &keeps);
    let (_, cache) = layer_forward(&CpuBackend, &layer, &lora, &x, &tables, &segments).unwrap();
    let (dx, grads) = layer_backward(
        &CpuBackend,
        &layer,
        &lora,
        &tables,
        &segments,
        &cache,
        &r,
        true,
    )
    .unwrap();
    check("decoder dx", &x, &dx.unwrap(), |x| run(x, &weights));
    check_lora("decoder", &weights, &grads, |w| run(&x, w));

    // The first layer skips its input gradient but not its LoRA gradients.
    let (none, same) = layer_backward(
        &CpuBackend,
        &layer,
        &lora,
        &tables,
        &segments,
        &cache,
        &r,
        false,
    )
    .unwrap();
    assert!(none.is_none());
    for p in Projection::ALL {
        let (a, b) = (
            grads[p as usize].as_ref().unwrap(),
            same[p as usize].as_ref().unwrap(),
        );
        assert_eq!(values(&a.a), values(&b.a), "{p:?}");
        assert_eq!(values(&a.b), values(&b.b), "{p:?}");
    }
}

#[test]
fn chunked_cross_entropy_gradient_and_chunking() {
    let mut rng = Random::new(7);
    let (tokens, hidden, vocab) = (13, 5, 11);
    let h = rng.tensor(&[tokens, hidden], 2.0);
    let lm_head = rng.tensor(&[vocab, hidden], 1.0);
    let ids: Vec<u32> = (0..tokens)
        .map(|_| rng.0.random_range(0..vocab as u32))
        .collect();
    // 9 scattered targets; token 0 never is one.
    let mask: Vec<bool> = (0..tokens).map(|t| t > 0 && t % 3 != 1).collect();
    let count = mask.iter().filter(|&&m| m).count();

    // The NLL written out directly, in f64.
    let logits: Vec<Vec<f64>> = h.matmul(&lm_head.t().unwrap()).unwrap().to_vec2().unwrap();
    let direct: f64 = (1..tokens)
        .filter(|&t| mask[t])
        .map(|t| {
            let row = &logits[t - 1];
            let lse = row.iter().map(|z| z.exp()).sum::<f64>().ln();
            lse - row[ids[t] as usize]
        })
        .sum();

    let (nll, dh) = chunked_cross_entropy(&h, &lm_head, &ids, &mask, 4).unwrap();
    assert_eq!(nll.tokens, count);
    assert!(
        (nll.total - direct).abs() <= 1e-12 * direct.abs(),
        "{} vs {direct}",
        nll.total
    );
    check("cross-entropy d(hidden)", &h, &dh, |h| {
        chunked_cross_entropy(h, &lm_head, &ids, &mask, 4)
            .unwrap()
            .0
            .mean()
    });

    // Chunk sizes that do not divide the 9 targets, and one covering them all.
    for chunk in [1, 2, 5, 9, 256] {
        let (other, d_other) = chunked_cross_entropy(&h, &lm_head, &ids, &mask, chunk).unwrap();
        assert_eq!(other.tokens, count);
        assert!(
            (other.total - nll.total).abs() <= 1e-12 * direct.abs(),
            "chunk {chunk}"
        );
        let diff = (&d_other - &dh)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        assert!(diff.to_scalar::<f64>().unwrap() <= 1e-14, "chunk {chunk}");
    }

    // Bad input is an error, not a panic.
    let mut first = mask.clone();
    first[0] = true;
    assert!(chunked_cross_entropy(&h, &lm_head, &ids, &first, 4).is_err());
    assert!(chunked_cross_entropy(&h, &lm_head, &ids, &mask[1..], 4).is_err());
    assert!(chunked_cross_entropy(&h, &lm_head, &ids, &mask, 0).is_err());
    let mut bad_ids = ids.clone();
    bad_ids[2] = vocab as u32;
    assert!(chunked_cross_entropy(&h, &lm_head, &bad_ids, &mask, 4).is_err());
    // No targets: zero loss, zero gradient.
    let (none, d_none) = chunked_cross_entropy(&h, &lm_head, &ids, &[false; 13], 4).unwrap();
    assert_eq!(none.tokens, 0);
    assert!(values(&d_none).iter().all(|&v| v == 0.0));
}
