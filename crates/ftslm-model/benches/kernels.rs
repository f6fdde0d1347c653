//! Criterion benchmarks of the training hot path, each with its work as
//! criterion's throughput so the report reads in FLOP/s ("elem/s") or bytes/s:
//!
//! * `machine/*`: this machine's own peaks, measured in the same run: f32 FMA
//!   throughput from registers on one and on every core, the 16-bit integer
//!   multiply-add (`vpdpwssd`, AVX-512 VNNI) on one core, and a large copy
//!   (read + write bytes) for the memory-bound kernels;
//! * `nf4/*`: the frozen NF4 products of SmolLM2-135M's shapes, forward
//!   (y = x·Wᵀ) and input gradient (dx = dy·W), for a 256-token row, at
//!   each matmul precision (`_f32`: Highest; `_int16`: High, on CPUs with
//!   AVX-512 VNNI; an int16 multiply-add counts as 2 FLOPs like an f32 one);
//! * `cross_entropy`: the LM head's chunked loss and gradient (2 products of
//!   [256, 576]×[576, 49152] plus the softmax), f32 and int16 head;
//! * `attention/*`, `mlp/*` (SwiGLU), `rmsnorm/*`: layer 0 of the real
//!   SmolLM2 checkpoint (`../shared/models`), forward and backward, without
//!   an adapter. Their FLOPs count the products only, attention's score and
//!   context products over the full causal square as is usual; the engine
//!   computes only the query blocks' corner of it (about 57% of the square
//!   at 222 tokens, 56% at 256), so attention's figure is an effective rate.
//!
//! Run: `cargo bench -p ftslm-model --bench kernels` (RAYON_NUM_THREADS sets
//! the threads; the default is every physical core).

use std::hint::black_box;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ftslm_model::frozen_nf4::Nf4Format;
use ftslm_model::grad::attention::{attention_backward, attention_forward};
use ftslm_model::grad::mlp::{mlp_backward, mlp_forward};
use ftslm_model::grad::rmsnorm::rms_norm_backward;
use ftslm_model::grad::{
    chunked_cross_entropy, chunked_cross_entropy_with, LayerAdapter, LayerGrads, LmHead,
};
#[cfg(target_arch = "x86_64")]
use ftslm_model::kernel::QuantisedMatrix;
use ftslm_model::kernel::{integer_products_available, with_matmul_precision, MatmulPrecision};
use ftslm_model::loader::gguf::load_gguf_with_format;
use ftslm_model::nf4::Nf4Tensor;
use ftslm_model::CpuBackend;

/// Tokens in one benchmarked row (a typical packed example of the bench data).
const TOKENS: usize = 256;
const HIDDEN: usize = 576;
const INTERMEDIATE: usize = 1536;
const VOCAB: usize = 49152;

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

fn threads() -> usize {
    ftslm_model::kernel::threads()
}

#[cfg(target_arch = "x86_64")]
fn fma_loop(iterations: usize) -> f32 {
    ftslm_kernels::peak::f32_fma_loop(iterations).unwrap_or(0.0)
}

/// The 16-bit integer kernel's instruction (`vpdpwssd`) from registers:
/// two multiply-adds per i32 lane, 2 "FLOPs" each, as the int16 products count.
#[cfg(target_arch = "x86_64")]
fn vnni_loop(iterations: usize) -> i32 {
    ftslm_kernels::peak::int16_dot_loop(iterations).unwrap_or(0)
}

fn machine(c: &mut Criterion) {
    let mut group = c.benchmark_group("machine");
    const ITERATIONS: usize = 1 << 16;
    // 24 vectors × 16 lanes × 2 FLOPs per iteration.
    let flops = (ITERATIONS * 24 * 16 * 2) as u64;
    group.throughput(Throughput::Elements(flops));
    group.bench_function("fma_peak_1_core", |b| {
        b.iter(|| fma_loop(black_box(ITERATIONS)))
    });
    #[cfg(target_arch = "x86_64")]
    if integer_products_available() {
        // 24 vectors × 16 lanes × 2 multiply-adds × 2 per iteration.
        group.throughput(Throughput::Elements(2 * flops));
        group.bench_function("vnni_int16_peak_1_core", |b| {
            b.iter(|| vnni_loop(black_box(ITERATIONS)))
        });
    }
    let cores = threads();
    group.throughput(Throughput::Elements(flops * cores as u64));
    group.bench_function(BenchmarkId::new("fma_peak_cores", cores), |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..cores)
                    .map(|_| s.spawn(|| fma_loop(black_box(ITERATIONS))))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or(0.0))
                    .sum::<f32>()
            })
        })
    });
    let source = values(16 << 20, 1); // 64 MiB, far past the caches
    let mut dest = vec![0f32; source.len()];
    group.throughput(Throughput::Bytes((source.len() * 4 * 2) as u64));
    group.bench_function("copy_64mib", |b| {
        b.iter(|| {
            dest.copy_from_slice(black_box(&source));
            black_box(dest[0])
        })
    });
    group.finish();
}

fn nf4(c: &mut Criterion) {
    let mut group = c.benchmark_group("nf4");
    for (name, shape) in [
        ("gate_up_1536x576", [INTERMEDIATE, HIDDEN]),
        ("down_576x1536", [HIDDEN, INTERMEDIATE]),
        ("q_o_576x576", [HIDDEN, HIDDEN]),
    ] {
        let [out_features, in_features] = shape;
        let weight = Nf4Tensor::quantize(&values(out_features * in_features, 2), shape, true)
            .expect("quantizable shape");
        let flops = (2 * TOKENS * out_features * in_features) as u64;
        group.throughput(Throughput::Elements(flops));
        let x = values(TOKENS * in_features, 3);
        let mut y = vec![0f32; TOKENS * out_features];
        let dy = values(TOKENS * out_features, 4);
        let mut dx = vec![0f32; TOKENS * in_features];
        for (precision, label) in precisions() {
            with_matmul_precision(precision, || {
                group.bench_function(BenchmarkId::new(format!("forward_{label}"), name), |b| {
                    b.iter(|| weight.matmul_t(black_box(&x), TOKENS, &mut y))
                });
                group.bench_function(BenchmarkId::new(format!("input_grad_{label}"), name), |b| {
                    b.iter(|| weight.matmul(black_box(&dy), TOKENS, &mut dx))
                });
            });
        }
    }
    group.finish();
}

/// `Highest` (f32 products) and, where this CPU has AVX-512 VNNI, `High`
/// (16-bit integer products), with the label each benchmark carries.
fn precisions() -> Vec<(MatmulPrecision, &'static str)> {
    let mut list = vec![(MatmulPrecision::Highest, "f32")];
    if integer_products_available() {
        list.push((MatmulPrecision::High, "int16"));
    }
    list
}

fn cross_entropy(c: &mut Criterion) {
    let device = Device::Cpu;
    let hidden =
        Tensor::from_vec(values(TOKENS * HIDDEN, 5), (TOKENS, HIDDEN), &device).expect("hidden");
    let lm_head = Tensor::from_vec(values(VOCAB * HIDDEN, 6), (VOCAB, HIDDEN), &device)
        .expect("head")
        .affine(0.05, 0.0)
        .expect("scale");
    let ids: Vec<u32> = (0..TOKENS as u32)
        .map(|t| (t * 7919) % VOCAB as u32)
        .collect();
    let mut mask = vec![true; TOKENS];
    mask[0] = false;
    let mut group = c.benchmark_group("cross_entropy");
    group.throughput(Throughput::Elements(
        (4 * (TOKENS - 1) * VOCAB * HIDDEN) as u64,
    ));
    group.bench_function("chunked_256_tokens_49152_vocab_f32", |b| {
        b.iter(|| chunked_cross_entropy(&hidden, &lm_head, &ids, &mask, 128).expect("loss"))
    });
    #[cfg(target_arch = "x86_64")]
    if integer_products_available() {
        let shape = [VOCAB, HIDDEN];
        let values = lm_head
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("values");
        let quantised = QuantisedMatrix::quantise(&values, shape).expect("whole tiles");
        let head = LmHead::Quantised(&lm_head, &quantised);
        with_matmul_precision(MatmulPrecision::High, || {
            group.bench_function("chunked_256_tokens_49152_vocab_int16", |b| {
                b.iter(|| {
                    chunked_cross_entropy_with(&hidden, head, &ids, &mask, 128).expect("loss")
                })
            });
        });
    }
    group.finish();
}

fn smollm2() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    path.exists().then_some(path)
}

fn layers(c: &mut Criterion) {
    let Some(path) = smollm2() else {
        eprintln!("layer benchmarks skipped: ../shared/models/smollm2-135m-instruct is missing");
        return;
    };
    let device = Device::Cpu;
    let (model, _) =
        load_gguf_with_format(&path, &Nf4Format::default(), &device).expect("SmolLM2 loads");
    let layer = &model.layers()[0];
    let positions: Vec<u32> = (0..TOKENS as u32).collect();
    let rope = model
        .rotary_embedding()
        .tables(&positions, &device)
        .expect("rope tables");
    let whole_row = 0..TOKENS;
    let segments = std::slice::from_ref(&whole_row);
    let none = LayerAdapter::none();
    let x = Tensor::from_vec(values(TOKENS * HIDDEN, 7), (TOKENS, HIDDEN), &device).expect("x");
    let dy = Tensor::from_vec(values(TOKENS * HIDDEN, 8), (TOKENS, HIDDEN), &device).expect("dy");

    // The projections run at each precision; the rest of each layer is f32.
    for (precision, label) in precisions() {
        with_matmul_precision(precision, || {
            let mut group = c.benchmark_group("attention");
            let kv = HIDDEN / 3; // 3 kv heads of 64
            let projections = 2 * TOKENS * (2 * HIDDEN * HIDDEN + 2 * HIDDEN * kv);
            let scores = 2 * 2 * TOKENS * TOKENS * HIDDEN; // QKᵀ and PV over 9 heads of 64
            group.throughput(Throughput::Elements((projections + scores) as u64));
            let attn = &layer.self_attn;
            group.bench_function(format!("forward_{label}"), |b| {
                b.iter(|| {
                    attention_forward(&CpuBackend, attn, &none, &x, &rope, segments)
                        .expect("forward")
                })
            });
            let (_, cache) =
                attention_forward(&CpuBackend, attn, &none, &x, &rope, segments).expect("forward");
            // The backward: input gradients of the four projections, and four score products.
            group.throughput(Throughput::Elements((projections + 2 * scores) as u64));
            group.bench_function(format!("backward_{label}"), |b| {
                b.iter(|| {
                    let mut grads = LayerGrads::default();
                    attention_backward(
                        &CpuBackend,
                        attn,
                        &none,
                        &rope,
                        segments,
                        &cache,
                        &dy,
                        &mut grads,
                        true,
                    )
                    .expect("backward")
                })
            });
            group.finish();

            let mut group = c.benchmark_group("mlp_swiglu");
            group.throughput(Throughput::Elements(
                (3 * 2 * TOKENS * HIDDEN * INTERMEDIATE) as u64,
            ));
            group.bench_function(format!("forward_{label}"), |b| {
                b.iter(|| mlp_forward(&CpuBackend, &layer.mlp, &none, &x).expect("forward"))
            });
            let (_, cache) = mlp_forward(&CpuBackend, &layer.mlp, &none, &x).expect("forward");
            group.bench_function(format!("backward_{label}"), |b| {
                b.iter(|| {
                    let mut grads = LayerGrads::default();
                    mlp_backward(&CpuBackend, &layer.mlp, &none, &cache, &dy, &mut grads)
                        .expect("backward")
                })
            });
            group.finish();
        });
    }

    let mut group = c.benchmark_group("rmsnorm");
    let norm = &layer.input_layernorm;
    // Forward reads x and writes y; backward reads x and dy and writes dx.
    group.throughput(Throughput::Bytes((2 * TOKENS * HIDDEN * 4) as u64));
    group.bench_function("forward", |b| b.iter(|| norm.forward(&x).expect("forward")));
    group.throughput(Throughput::Bytes((3 * TOKENS * HIDDEN * 4) as u64));
    group.bench_function("backward", |b| {
        b.iter(|| rms_norm_backward(norm, &x, &dy).expect("backward"))
    });
    group.finish();
}

criterion_group! {
    name = kernels;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(4));
    targets = machine, nf4, cross_entropy, layers
}
criterion_main!(kernels);
