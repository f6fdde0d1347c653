//! NF4 against bitsandbytes' own output (`golden/nf4_bitsandbytes.json`: a
//! 128×256 bf16 matrix quantized with and without double quantization), and
//! the fused products against a dequantize-then-multiply reference.

use ftslm_model::kernel::{integer_products_available, with_matmul_precision, MatmulPrecision};
use ftslm_model::nf4::{dynamic_code_map, Absmax, BnbBackend, Nf4Error, Nf4Tensor, NF4_CODE};
use half::bf16;
use serde_json::Value;

struct Golden {
    shape: [usize; 2],
    weights: Vec<bf16>,
    plain: Value,
    double_quant: Value,
}

fn load_golden(path: &std::path::Path) -> Golden {
    let text = std::fs::read_to_string(path).expect("read golden");
    let root: Value = serde_json::from_str(&text).expect("parse golden");
    let shape = usizes(&root["shape"]);
    let weights = root["weight_bf16_bits"]
        .as_array()
        .expect("weight_bf16_bits")
        .iter()
        .map(|v| bf16::from_bits(v.as_i64().expect("i16 bits") as i16 as u16))
        .collect();
    let cases = root["cases"].as_array().expect("cases");
    let case = |dq: bool| {
        cases
            .iter()
            .find(|c| c["double_quant"].as_bool() == Some(dq))
            .expect("case")
            .clone()
    };
    Golden {
        shape: [shape[0], shape[1]],
        weights,
        plain: case(false),
        double_quant: case(true),
    }
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("uint") as usize)
        .collect()
}

/// JSON numbers are the f64 images of f32 values, so `as f32` is exact.
fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// bitsandbytes stores the f32 product `code * absmax` in the input dtype
/// (bf16), so the comparison is: our f32 product rounded to bf16, bit for bit.
fn assert_dequantized_matches(ours: &[f32], golden: &[f32]) {
    assert_eq!(ours.len(), golden.len());
    let mismatches: Vec<usize> = (0..ours.len())
        .filter(|&i| bf16::from_f32(ours[i]).to_f32().to_bits() != golden[i].to_bits())
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} dequantized values differ, first at {}: ours {} golden {}",
        mismatches.len(),
        mismatches[0],
        ours[mismatches[0]],
        golden[mismatches[0]]
    );
}

#[test]
fn plain_nf4_matches_bitsandbytes_bit_for_bit() {
    let path = ftslm_testkit::require_shared!("golden/nf4_bitsandbytes.json");
    let golden = load_golden(&path);
    let case = &golden.plain;
    assert_eq!(bits(&NF4_CODE), bits(&f32s(&case["code"])));

    let tensor = Nf4Tensor::quantize_bf16(&golden.weights, golden.shape, false).unwrap();
    let golden_packed: Vec<u8> = usizes(&case["packed_u8"])
        .iter()
        .map(|&b| b as u8)
        .collect();
    assert_eq!(tensor.packed(), golden_packed.as_slice());

    let Absmax::Plain(absmax) = tensor.absmax() else {
        panic!("expected plain absmax");
    };
    assert_eq!(bits(absmax), bits(&f32s(&case["absmax_f32"])));

    assert_dequantized_matches(&tensor.dequantize(), &f32s(&case["dequantized_f32"]));
}

#[test]
fn double_quantized_nf4_matches_bitsandbytes_bit_for_bit() {
    let path = ftslm_testkit::require_shared!("golden/nf4_bitsandbytes.json");
    let golden = load_golden(&path);
    let case = &golden.double_quant;
    assert_eq!(case["nested_blocksize"].as_u64(), Some(256));
    assert_eq!(
        bits(dynamic_code_map()),
        bits(&f32s(&case["nested_code"])),
        "signed dynamic map differs from create_dynamic_map(signed=True)"
    );

    let tensor = Nf4Tensor::quantize_bf16(&golden.weights, golden.shape, true).unwrap();
    let golden_packed: Vec<u8> = usizes(&case["packed_u8"])
        .iter()
        .map(|&b| b as u8)
        .collect();
    assert_eq!(tensor.packed(), golden_packed.as_slice());

    let Absmax::DoubleQuantized {
        codes,
        scales,
        offset,
    } = tensor.absmax()
    else {
        panic!("expected double-quantized absmax");
    };
    let golden_codes: Vec<u8> = usizes(&case["absmax_u8"])
        .iter()
        .map(|&b| b as u8)
        .collect();
    assert_eq!(codes, &golden_codes);
    // Exact, not merely close: scales are maxima of the same f32 differences,
    // and the offset (a mean) rounds to the same f32.
    assert_eq!(bits(scales), bits(&f32s(&case["nested_absmax_f32"])));
    assert_eq!(
        offset.to_bits(),
        (case["offset"].as_f64().unwrap() as f32).to_bits()
    );

    assert_dequantized_matches(&tensor.dequantize(), &f32s(&case["dequantized_f32"]));
}

/// The golden comes from bitsandbytes' CPU backend. The CUDA rules (read from
/// its kernels, no CUDA golden here) must give the same 4-bit codes on this
/// matrix and differ only where the CPU lookup table departs from the exact
/// midpoint test: the five blocks whose absmax is 0.048828125, centred to
/// -0.10281339 · scale, just below the 63/64 midpoint -0.1028125.
#[test]
fn cuda_rules_differ_from_the_cpu_golden_only_at_a_lookup_bin_edge() {
    let path = ftslm_testkit::require_shared!("golden/nf4_bitsandbytes.json");
    let golden = load_golden(&path);
    let cpu = Nf4Tensor::quantize_bf16(&golden.weights, golden.shape, true).unwrap();
    let cuda =
        Nf4Tensor::quantize_bf16_as(&golden.weights, golden.shape, true, BnbBackend::Cuda).unwrap();
    assert_eq!(cuda.packed(), cpu.packed());
    let (
        Absmax::DoubleQuantized {
            codes: cpu_codes,
            scales: cpu_scales,
            offset: cpu_offset,
        },
        Absmax::DoubleQuantized {
            codes: cuda_codes,
            scales: cuda_scales,
            offset: cuda_offset,
        },
    ) = (cpu.absmax(), cuda.absmax())
    else {
        panic!("expected double-quantized absmax");
    };
    assert_eq!((cuda_scales, cuda_offset), (cpu_scales, cpu_offset));
    let differing: Vec<(usize, u8, u8)> = (0..cpu_codes.len())
        .filter(|&b| cpu_codes[b] != cuda_codes[b])
        .map(|b| (b, cpu_codes[b], cuda_codes[b]))
        .collect();
    assert_eq!(
        differing,
        [
            (0, 64, 63),
            (114, 64, 63),
            (137, 64, 63),
            (158, 64, 63),
            (212, 64, 63)
        ]
    );
}

#[test]
fn storage_per_parameter_of_the_golden_matrix() {
    let path = ftslm_testkit::require_shared!("golden/nf4_bitsandbytes.json");
    let golden = load_golden(&path);
    let params = golden.shape[0] * golden.shape[1];
    let plain = Nf4Tensor::quantize_bf16(&golden.weights, golden.shape, false).unwrap();
    let nested = Nf4Tensor::quantize_bf16(&golden.weights, golden.shape, true).unwrap();
    // 16384 code bytes + 512 f32 absmax; or + 512 u8 codes, 2 f32 scales, 1 f32 offset.
    assert_eq!(plain.storage_bytes(), 16384 + 512 * 4);
    assert_eq!(nested.storage_bytes(), 16384 + 512 + 2 * 4 + 4);
    eprintln!(
        "bytes/parameter: plain {:.5}, double quant {:.5}",
        plain.storage_bytes() as f64 / params as f64,
        nested.storage_bytes() as f64 / params as f64
    );
}

/// xorshift64*: reproducible inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

/// Checks `ours[r, j] = Σ_k a[r, k] · b(j, k)` in f64, each within 1e-5 of
/// `Σ_k |a[r, k] · b(j, k)|`, the scale that bounds a dot product's rounding error.
fn assert_products_close(
    ours: &[f32],
    rows: usize,
    cols: usize,
    depth: usize,
    term: impl Fn(usize, usize, usize) -> f32,
) {
    for r in 0..rows {
        for j in 0..cols {
            let (mut sum, mut magnitude) = (0.0f64, 0.0f64);
            for k in 0..depth {
                let t = f64::from(term(r, j, k));
                sum += t;
                magnitude += t.abs();
            }
            let got = f64::from(ours[r * cols + j]);
            assert!(
                (got - sum).abs() <= 1e-5 * magnitude + 1e-30,
                "[{r}, {j}]: {got} vs reference {sum} (scale {magnitude})"
            );
        }
    }
}

fn check_products(shape: [usize; 2], rows: usize, double_quant: bool, seed: u64) {
    let [out_features, in_features] = shape;
    let mut rng = Rng(seed);
    let weights = rng.vec(out_features * in_features, 0.05);
    let tensor = Nf4Tensor::quantize(&weights, shape, double_quant).unwrap();
    let w = tensor.dequantize();

    let mut row = vec![0.0f32; in_features];
    for o in [0, out_features / 2, out_features - 1] {
        tensor.dequantize_row(o, &mut row).unwrap();
        assert_eq!(bits(&row), bits(&w[o * in_features..(o + 1) * in_features]));
    }

    let x = rng.vec(rows * in_features, 1.0);
    let mut y = vec![f32::NAN; rows * out_features];
    tensor.matmul_t(&x, rows, &mut y).unwrap();
    assert_products_close(&y, rows, out_features, in_features, |r, o, i| {
        x[r * in_features + i] * w[o * in_features + i]
    });

    let dy = rng.vec(rows * out_features, 1.0);
    let mut dx = vec![f32::NAN; rows * in_features];
    tensor.matmul(&dy, rows, &mut dx).unwrap();
    assert_products_close(&dx, rows, in_features, out_features, |r, i, o| {
        dy[r * out_features + o] * w[o * in_features + i]
    });
}

#[test]
fn fused_products_match_dequantize_then_multiply() {
    with_matmul_precision(MatmulPrecision::Highest, || {
        check_products([128, 256], 5, true, 1);
        // Blocks spanning rows, a partial last block and an odd value count.
        check_products([33, 71], 3, false, 2);
        // Large enough (64·320·256 multiply-adds) to take the threaded path.
        check_products([320, 256], 64, true, 3);
        check_products([256, 320], 64, false, 4);
    });
}

/// At `High` precision (the default) the products may run in 16-bit
/// integers: each value within half a step of 2⁻¹² of its block's largest,
/// so each sum within that of Σ_k |x_k|·max|w| + |w_k|·max|x|. Shapes large
/// enough for the threaded path; the `Highest` products are the reference.
#[test]
fn high_precision_products_stay_within_their_quantisation_steps() {
    for (shape, rows, seed) in [
        ([320, 256], 64, 5),
        ([256, 320], 64, 6),
        ([192, 576], 200, 7),
    ] {
        let [out_features, in_features] = shape;
        let mut rng = Rng(seed);
        let tensor =
            Nf4Tensor::quantize(&rng.vec(out_features * in_features, 0.05), shape, true).unwrap();
        let w = tensor.dequantize();
        let x = rng.vec(rows * in_features, 2.0);
        let dy = rng.vec(rows * out_features, 0.01);
        let largest = |v: &[f32]| v.iter().fold(0.0f64, |m, a| m.max(f64::from(a.abs())));
        let (max_w, max_x, max_dy) = (largest(&w), largest(&x), largest(&dy));
        let run = |precision| {
            with_matmul_precision(precision, || {
                let mut y = vec![0.0; rows * out_features];
                tensor.matmul_t(&x, rows, &mut y).unwrap();
                let mut dx = vec![0.0; rows * in_features];
                tensor.matmul(&dy, rows, &mut dx).unwrap();
                (y, dx)
            })
        };
        let (y, dx) = run(MatmulPrecision::High);
        let (y_ref, dx_ref) = run(MatmulPrecision::Highest);
        let step = 0.6 / 4096.0;
        for t in 0..rows {
            for o in 0..out_features {
                let bound: f64 = (0..in_features)
                    .map(|k| {
                        f64::from(x[t * in_features + k].abs()) * max_w
                            + f64::from(w[o * in_features + k].abs()) * max_x
                    })
                    .sum();
                let (got, want) = (y[t * out_features + o], y_ref[t * out_features + o]);
                assert!(
                    f64::from((got - want).abs()) <= step * bound * 1.01 + 1e-6,
                    "forward {shape:?} [{t}, {o}]: {got} vs {want}"
                );
            }
            for i in 0..in_features {
                let bound: f64 = (0..out_features)
                    .map(|o| {
                        f64::from(dy[t * out_features + o].abs()) * max_w
                            + f64::from(w[o * in_features + i].abs()) * max_dy
                    })
                    .sum();
                let (got, want) = (dx[t * in_features + i], dx_ref[t * in_features + i]);
                assert!(
                    f64::from((got - want).abs()) <= step * bound * 1.01 + 1e-9,
                    "input gradient {shape:?} [{t}, {i}]: {got} vs {want}"
                );
            }
        }
        // The integer path ran: its results are not the f32 ones bit for bit.
        if integer_products_available() {
            assert_ne!(bits(&y), bits(&y_ref), "{shape:?}: no integer product ran");
        }
    }
}

#[test]
fn partial_last_block_is_padded_like_bitsandbytes() {
    // 9 values: one partial block, absmax over the real values, and the
    // zero padding's code (7, the NF4 zero) in the last low nibble.
    let weights = [0.5, -1.0, 0.25, 0.0, 1.0, -0.5, 0.1, -0.1, 0.75];
    let tensor = Nf4Tensor::quantize(&weights, [3, 3], false).unwrap();
    assert_eq!(tensor.packed().len(), 5);
    assert_eq!(tensor.packed()[4] & 0x0f, 7);
    // 0.5 lies below the 0.4407/0.5626 midpoint → code 12; -1.0 → code 0.
    assert_eq!(tensor.packed()[0], 12 << 4);
    assert_eq!(tensor.absmax(), &Absmax::Plain(vec![1.0]));
    let values = tensor.dequantize();
    assert_eq!(values.len(), 9);
    assert_eq!(values[8], NF4_CODE[14]); // 0.75 → 0.7230

    // An all-zero block: the CPU backend scales by a clamped absmax and
    // writes the zero code 7, the CUDA kernel gets 0 · ∞ = NaN and writes 0.
    // Both keep absmax 0 and decode to zero.
    let zeros = Nf4Tensor::quantize(&[0.0; 64], [1, 64], false).unwrap();
    assert!(zeros.packed().iter().all(|&b| b == 0x77));
    let zeros_cuda = Nf4Tensor::quantize_as(&[0.0; 64], [1, 64], false, BnbBackend::Cuda).unwrap();
    assert!(zeros_cuda.packed().iter().all(|&b| b == 0x00));
    for tensor in [&zeros, &zeros_cuda] {
        assert_eq!(tensor.block_absmax(), [0.0]);
        assert!(tensor.dequantize().iter().all(|&v| v == 0.0));
    }
}

#[test]
fn mismatched_shapes_and_bad_input_are_errors() {
    let weights = vec![0.1f32; 6];
    assert_eq!(
        Nf4Tensor::quantize(&weights, [2, 4], false),
        Err(Nf4Error::WeightCount {
            shape: [2, 4],
            expected: 8,
            actual: 6
        })
    );
    assert_eq!(
        Nf4Tensor::quantize(&[], [0, 4], false),
        Err(Nf4Error::UnusableShape { shape: [0, 4] })
    );
    assert_eq!(
        Nf4Tensor::quantize(&[0.1, f32::INFINITY, 0.2, 0.3], [2, 2], true).unwrap_err(),
        Nf4Error::NonFiniteWeight {
            index: 1,
            row: 0,
            column: 1,
            value: f32::INFINITY
        }
    );

    let tensor = Nf4Tensor::quantize(&weights, [2, 3], true).unwrap();
    let mut out = vec![0.0f32; 4 * 2];
    let err = tensor.matmul_t(&[0.0; 4 * 2], 4, &mut out).unwrap_err();
    assert_eq!(
        err,
        Nf4Error::BufferLength {
            buffer: "x",
            shape: [4, 3],
            expected: 12,
            actual: 8
        }
    );
    let mut short = vec![0.0f32; 7];
    let err = tensor.matmul_t(&[0.0; 12], 4, &mut short).unwrap_err();
    assert_eq!(
        err,
        Nf4Error::BufferLength {
            buffer: "out",
            shape: [4, 2],
            expected: 8,
            actual: 7
        }
    );
    let mut dx = vec![0.0f32; 12];
    let err = tensor.matmul(&[0.0; 7], 4, &mut dx).unwrap_err();
    assert_eq!(
        err,
        Nf4Error::BufferLength {
            buffer: "dy",
            shape: [4, 2],
            expected: 8,
            actual: 7
        }
    );

    let mut row = vec![0.0f32; 3];
    assert_eq!(
        tensor.dequantize_row(2, &mut row),
        Err(Nf4Error::RowOutOfRange {
            row: 2,
            out_features: 2
        })
    );
    assert!(matches!(
        tensor.dequantize_row(0, &mut [0.0; 2]),
        Err(Nf4Error::BufferLength { .. })
    ));

    let (shape, packed, absmax) = tensor.into_parts();
    assert!(Nf4Tensor::from_parts(shape, packed.clone(), absmax.clone()).is_ok());
    assert!(matches!(
        Nf4Tensor::from_parts([3, 3], packed.clone(), absmax),
        Err(Nf4Error::BufferLength {
            buffer: "packed codes",
            expected: 5,
            actual: 3,
            ..
        })
    ));
    assert!(matches!(
        Nf4Tensor::from_parts(shape, packed, Absmax::Plain(vec![f32::NAN])),
        Err(Nf4Error::NonFiniteScale { .. })
    ));
}
