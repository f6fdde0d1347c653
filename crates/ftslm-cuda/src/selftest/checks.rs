//! Each GPU kernel against the CPU engine's
//! own function (`ftslm-kernels`) on the same inputs, at SmolLM2's and
//! Llama-3.1-8B's shapes, with odd row counts and packed rows. Each check
//! states its tolerance next to it, derived from where the GPU rounds:
//! a bf16 output may differ from the f32 reference by one bf16 unit in the
//! last place (2⁻⁷ of the value at worst); f32 outputs by the f32 sums'
//! different order.

use cudarc::driver::{CudaSlice, DeviceRepr, PushKernelArg, ValidAsZeroBits};
use ftslm_kernels::nf4::{dynamic_code_map, Absmax, Nf4Tensor};
use ftslm_kernels::{norm, rope, softmax, swiglu};
use half::bf16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::gpu::{per_element, per_row, GpuDevice, GpuError};

use super::Check;

/// The layer shapes checked: (model, hidden, heads, head_dim, intermediate, vocab).
const SHAPES: [(&str, usize, usize, usize, usize, usize); 2] = [
    ("SmolLM2-135M", 576, 9, 64, 1536, 49152),
    ("Llama-3.1-8B", 4096, 32, 128, 14336, 128256),
];

/// Tokens per check: odd, not a multiple of a warp or block.
const TOKENS: usize = 37;

/// Runs every check on `device`.
pub fn run(device: &GpuDevice) -> Result<Vec<Check>, GpuError> {
    let mut checks = Vec::new();
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    checks.extend(nf4(device, &mut rng)?);
    for (model, hidden, heads, head_dim, intermediate, vocab) in SHAPES {
        checks.extend(rms_norm(device, &mut rng, model, hidden)?);
        checks.extend(rope_check(device, &mut rng, model, heads, head_dim)?);
        checks.extend(swiglu_check(device, &mut rng, model, intermediate)?);
        checks.push(cross_entropy(device, &mut rng, model, vocab)?);
    }
    checks.extend(attention_softmax(device, &mut rng)?);
    checks.push(adamw(device, &mut rng)?);
    Ok(checks)
}

// ---- comparison -------------------------------------------------------

/// Bound per element: `rel·|cpu| + abs·max|cpu|`.
fn compare(
    name: &str,
    shape: String,
    gpu: &[f32],
    cpu: &[f32],
    rel: f64,
    abs: f64,
    tolerance: &str,
) -> Check {
    let scale = cpu.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs()));
    let (mut max_abs_error, mut worst) = (0f64, 0f64);
    let mut finite = gpu.len() == cpu.len();
    for (&g, &c) in gpu.iter().zip(cpu) {
        let (g, c) = (f64::from(g), f64::from(c));
        if !g.is_finite() {
            finite = false;
        }
        let error = (g - c).abs();
        let bound = rel * c.abs() + abs * scale;
        max_abs_error = max_abs_error.max(error);
        worst = worst.max(if bound > 0.0 {
            error / bound
        } else if error > 0.0 {
            f64::INFINITY
        } else {
            0.0
        });
    }
    Check {
        name: name.to_string(),
        shape,
        tolerance: tolerance.to_string(),
        max_abs_error,
        worst_fraction_of_bound: worst,
        passed: finite && worst <= 1.0,
    }
}

const ONE_BF16_ULP: &str = "one bf16 unit in the last place: |gpu − cpu| ≤ 2⁻⁷·|cpu| + 1e-6·max|cpu| (the kernel rounds its f32 result to bf16 once)";
const BF16_REL: f64 = 1.0 / 128.0;

// ---- data -------------------------------------------------------------

/// Values already representable in bf16 (the kernels' inputs), in ±`range`.
fn bf16_values(rng: &mut ChaCha8Rng, n: usize, range: f32) -> Vec<f32> {
    (0..n)
        .map(|_| bf16::from_f32(rng.random_range(-range..range)).to_f32())
        .collect()
}

fn to_bits(values: &[f32]) -> Vec<u16> {
    values
        .iter()
        .map(|&v| bf16::from_f32(v).to_bits())
        .collect()
}

fn from_bits(bits: &[u16]) -> Vec<f32> {
    bits.iter().map(|&b| bf16::from_bits(b).to_f32()).collect()
}

fn upload<T: DeviceRepr>(device: &GpuDevice, host: &[T]) -> Result<CudaSlice<T>, GpuError> {
    Ok(device.stream.clone_htod(host)?)
}

fn zeros<T: DeviceRepr + ValidAsZeroBits>(
    device: &GpuDevice,
    n: usize,
) -> Result<CudaSlice<T>, GpuError> {
    Ok(device.stream.alloc_zeros(n)?)
}

fn download<T: DeviceRepr>(device: &GpuDevice, slice: &CudaSlice<T>) -> Result<Vec<T>, GpuError> {
    Ok(device.stream.clone_dtoh(slice)?)
}

/// Launches `kernel` with `args` pushed in order.
macro_rules! launch {
    ($device:expr, $kernel:literal, $config:expr, [$($arg:expr),* $(,)?]) => {{
        let function = $device.kernel($kernel)?;
        let mut builder = $device.stream.launch_builder(function);
        $(builder.arg($arg);)*
        // SAFETY: each call passes the arguments in the order and of the
        // types its kernel's C signature declares, device buffers at least
        // as long as the counts it passes, and a grid the kernel
        // bounds-checks.
        unsafe { builder.launch($config) }?;
    }};
}

fn len(n: usize) -> i64 {
    n as i64
}

// ---- checks -----------------------------------------------------------

fn nf4(device: &GpuDevice, rng: &mut ChaCha8Rng) -> Result<Vec<Check>, GpuError> {
    // 9 x 577: blocks span rows, the last block is partial and the value
    // count is odd (the zero-padded low nibble).
    let shape = [9usize, 577];
    let numel = shape[0] * shape[1];
    let weights: Vec<f32> = (0..numel).map(|_| rng.random_range(-0.1f32..0.1)).collect();
    let quantized = Nf4Tensor::quantize(&weights, shape, true).expect("finite weights quantize");
    let Absmax::DoubleQuantized {
        codes,
        scales,
        offset,
    } = quantized.absmax().clone()
    else {
        unreachable!("double quantization was asked for")
    };
    let blocks = codes.len();
    let (codes_d, scales_d) = (upload(device, &codes)?, upload(device, &scales)?);
    let map_d = upload(device, &dynamic_code_map()[..])?;
    let mut absmax_d = zeros::<f32>(device, blocks)?;
    let count_blocks = len(blocks);
    launch!(
        device,
        "nf4_absmax_from_double_quant",
        per_element(blocks),
        [
            &codes_d,
            &scales_d,
            &map_d,
            &offset,
            &mut absmax_d,
            &count_blocks
        ]
    );
    let packed_d = upload(device, quantized.packed())?;
    let mut out_d = zeros::<u16>(device, numel)?;
    let count_numel = len(numel);
    launch!(
        device,
        "nf4_dequantize_bf16",
        per_element(numel.div_ceil(2)),
        [&packed_d, &absmax_d, &mut out_d, &count_numel]
    );
    let absmax_gpu = download(device, &absmax_d)?;
    let out_gpu = from_bits(&download(device, &out_d)?);
    let cpu_values: Vec<f32> = quantized
        .dequantize()
        .iter()
        .map(|&v| bf16::from_f32(v).to_f32())
        .collect();
    let exact = "bit-identical (the same two roundings as bitsandbytes, no fused multiply-add)";
    Ok(vec![
        compare(
            "nf4 block scales from double quantization",
            format!("{blocks} blocks"),
            &absmax_gpu,
            &quantized.block_absmax(),
            0.0,
            0.0,
            exact,
        ),
        compare(
            "nf4 dequantize to bf16",
            format!("{shape:?}"),
            &out_gpu,
            &cpu_values,
            0.0,
            0.0,
            exact,
        ),
    ])
}

fn rms_norm(
    device: &GpuDevice,
    rng: &mut ChaCha8Rng,
    model: &str,
    hidden: usize,
) -> Result<Vec<Check>, GpuError> {
    let eps = 1e-5f32;
    let x = bf16_values(rng, TOKENS * hidden, 3.0);
    let w = bf16_values(rng, hidden, 1.5);
    let dy = bf16_values(rng, TOKENS * hidden, 1.0);
    let (x_d, w_d, dy_d) = (
        upload(device, &to_bits(&x))?,
        upload(device, &to_bits(&w))?,
        upload(device, &to_bits(&dy))?,
    );
    let mut y_d = zeros::<u16>(device, x.len())?;
    let mut rstd_d = zeros::<f32>(device, TOKENS)?;
    let hidden_i = hidden as i32;
    launch!(
        device,
        "rms_norm_forward",
        per_row(TOKENS),
        [&x_d, &w_d, &mut y_d, &mut rstd_d, &hidden_i, &eps]
    );
    let mut dx_d = zeros::<u16>(device, x.len())?;
    launch!(
        device,
        "rms_norm_backward",
        per_row(TOKENS),
        [&x_d, &w_d, &rstd_d, &dy_d, &mut dx_d, &hidden_i]
    );
    let shape = format!("{model}: [{TOKENS}, {hidden}]");
    Ok(vec![
        compare(
            "rms_norm forward",
            shape.clone(),
            &from_bits(&download(device, &y_d)?),
            &norm::rms_norm_rows(&x, &w, eps),
            BF16_REL,
            1e-6,
            ONE_BF16_ULP,
        ),
        compare(
            "rms_norm backward (input gradient)",
            shape,
            &from_bits(&download(device, &dx_d)?),
            &norm::rms_norm_backward_rows(&x, &dy, &w, eps),
            BF16_REL,
            1e-5,
            "one bf16 unit in the last place plus the cancellation of r·g − x·r³·mean(g·x): \
             |gpu − cpu| ≤ 2⁻⁷·|cpu| + 1e-5·max|cpu|",
        ),
    ])
}

fn rope_check(
    device: &GpuDevice,
    rng: &mut ChaCha8Rng,
    model: &str,
    heads: usize,
    head_dim: usize,
) -> Result<Vec<Check>, GpuError> {
    let x = bf16_values(rng, TOKENS * heads * head_dim, 2.0);
    // Angles of positions 0..TOKENS at Llama's base 500000.
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for position in 0..TOKENS {
        for i in 0..head_dim {
            let inv_freq = 500000f64.powf(-((2 * (i % (head_dim / 2))) as f64) / head_dim as f64);
            let angle = position as f64 * inv_freq;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    let (cos_d, sin_d) = (upload(device, &cos)?, upload(device, &sin)?);
    let mut checks = Vec::new();
    for back in [false, true] {
        let mut x_d = upload(device, &to_bits(&x))?;
        let (heads_i, head_dim_i, tokens, back_i) =
            (heads as i32, head_dim as i32, len(TOKENS), i32::from(back));
        launch!(
            device,
            "rope_rotate",
            per_element(TOKENS * heads * head_dim / 2),
            [
                &mut x_d,
                &cos_d,
                &sin_d,
                &heads_i,
                &head_dim_i,
                &tokens,
                &back_i
            ]
        );
        checks.push(compare(
            if back {
                "rope backward"
            } else {
                "rope forward"
            },
            format!("{model}: [{TOKENS}, {heads}, {head_dim}]"),
            &from_bits(&download(device, &x_d)?),
            &rope::rotate_heads(&x, &cos, &sin, head_dim, back),
            BF16_REL,
            1e-6,
            ONE_BF16_ULP,
        ));
    }
    Ok(checks)
}

fn swiglu_check(
    device: &GpuDevice,
    rng: &mut ChaCha8Rng,
    model: &str,
    intermediate: usize,
) -> Result<Vec<Check>, GpuError> {
    let n = TOKENS * intermediate;
    let (g, u, da) = (
        bf16_values(rng, n, 6.0),
        bf16_values(rng, n, 2.0),
        bf16_values(rng, n, 1.0),
    );
    let (g_d, u_d, da_d) = (
        upload(device, &to_bits(&g))?,
        upload(device, &to_bits(&u))?,
        upload(device, &to_bits(&da))?,
    );
    let mut a_d = zeros::<u16>(device, n)?;
    let count_n = len(n);
    launch!(
        device,
        "swiglu_forward",
        per_element(n),
        [&g_d, &u_d, &mut a_d, &count_n]
    );
    let (mut dg_d, mut du_d) = (zeros::<u16>(device, n)?, zeros::<u16>(device, n)?);
    let count_n = len(n);
    launch!(
        device,
        "swiglu_backward",
        per_element(n),
        [&da_d, &g_d, &u_d, &mut dg_d, &mut du_d, &count_n]
    );
    let (d_gate, d_up) = swiglu::swiglu_gradients(&da, &g, &u);
    let shape = format!("{model}: [{TOKENS}, {intermediate}]");
    let tol = "one bf16 unit in the last place, the sigmoid by the fast exponential \
               (2 f32 ulp): |gpu − cpu| ≤ 2⁻⁷·|cpu| + 1e-6·max|cpu|";
    Ok(vec![
        compare(
            "swiglu forward",
            shape.clone(),
            &from_bits(&download(device, &a_d)?),
            &swiglu::swiglu_values(&g, &u),
            BF16_REL,
            1e-6,
            tol,
        ),
        compare(
            "swiglu backward (gate)",
            shape.clone(),
            &from_bits(&download(device, &dg_d)?),
            &d_gate,
            BF16_REL,
            1e-6,
            tol,
        ),
        compare(
            "swiglu backward (up)",
            shape,
            &from_bits(&download(device, &du_d)?),
            &d_up,
            BF16_REL,
            1e-6,
            tol,
        ),
    ])
}

/// Packed rows: three examples of 13, 17 and 7 tokens in one row of 37.
fn attention_softmax(device: &GpuDevice, rng: &mut ChaCha8Rng) -> Result<Vec<Check>, GpuError> {
    let lengths = [13usize, 17, 7];
    let width: usize = lengths.iter().sum();
    let heads = 4;
    let scale = 1.0 / (64f32).sqrt();
    let segments: Vec<i32> = lengths
        .iter()
        .enumerate()
        .flat_map(|(s, &l)| std::iter::repeat_n(s as i32, l))
        .collect();
    let scores: Vec<f32> = (0..heads * width * width)
        .map(|_| rng.random_range(-8.0f32..8.0))
        .collect();
    let d_probs: Vec<f32> = (0..scores.len())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();

    // The CPU reference: each example's block softmaxed causally on its own.
    let mut probs = vec![0f32; scores.len()];
    let mut d_scores = d_probs.clone();
    for head in 0..heads {
        let mut start = 0;
        for &l in &lengths {
            let mut block = vec![0f32; l * l];
            for q in 0..l {
                let row = (head * width + start + q) * width + start;
                block[q * l..(q + 1) * l].copy_from_slice(&scores[row..row + l]);
            }
            softmax::causal_softmax_rows(&mut block, l, 0, scale);
            for q in 0..l {
                let row = (head * width + start + q) * width + start;
                probs[row..row + l].copy_from_slice(&block[q * l..(q + 1) * l]);
            }
            start += l;
        }
    }
    softmax::score_gradients(&mut d_scores, &probs, width, scale);

    let segments_d = upload(device, &segments)?;
    let mut scores_d = upload(device, &scores)?;
    let (width_i, rows) = (width as i32, heads * width);
    launch!(
        device,
        "causal_softmax_forward",
        per_row(rows),
        [&mut scores_d, &segments_d, &width_i, &scale]
    );
    let probs_gpu = download(device, &scores_d)?;
    let probs_d = upload(device, &probs)?;
    let mut ds_d = upload(device, &d_probs)?;
    launch!(
        device,
        "causal_softmax_backward",
        per_row(rows),
        [&mut ds_d, &probs_d, &width_i, &scale]
    );
    let shape = format!("{heads} heads, packed row of {lengths:?}");
    Ok(vec![
        compare(
            "causal softmax forward (packed segments)",
            shape.clone(),
            &probs_gpu,
            &probs,
            1e-5,
            1e-6,
            "f32 throughout, the fast exponential: |gpu − cpu| ≤ 1e-5·|cpu| + 1e-6",
        ),
        compare(
            "causal softmax backward",
            shape,
            &download(device, &ds_d)?,
            &d_scores,
            1e-5,
            1e-6,
            "f32 throughout, the row sum in another order: |gpu − cpu| ≤ 1e-5·|cpu| + 1e-6·max|cpu|",
        ),
    ])
}

fn cross_entropy(
    device: &GpuDevice,
    rng: &mut ChaCha8Rng,
    model: &str,
    vocab: usize,
) -> Result<Check, GpuError> {
    let rows = 5;
    let logits: Vec<f32> = (0..rows * vocab)
        .map(|_| rng.random_range(-12.0f32..12.0))
        .collect();
    let ids: Vec<u32> = (0..rows)
        .map(|_| rng.random_range(0..vocab as u32))
        .collect();
    let scale = 1.0 / rows as f32;
    let mut reference = logits.clone();
    let nll_sum = softmax::softmax_minus_onehot_rows(&mut reference, vocab, &ids, scale);

    let targets: Vec<i32> = ids.iter().map(|&id| id as i32).collect();
    let (targets_d, mut logits_d) = (upload(device, &targets)?, upload(device, &logits)?);
    let mut nll_d = zeros::<f32>(device, rows)?;
    let count_vocab = len(vocab);
    launch!(
        device,
        "cross_entropy_rows",
        per_row(rows),
        [&mut logits_d, &targets_d, &mut nll_d, &count_vocab, &scale]
    );
    let nll_gpu: f64 = download(device, &nll_d)?
        .iter()
        .map(|&v| f64::from(v))
        .sum();
    let mut check = compare(
        "cross-entropy (softmax − one-hot, and the nll)",
        format!("{model}: [{rows}, {vocab}]"),
        &download(device, &logits_d)?,
        &reference,
        1e-4,
        1e-5,
        "f32 sums over the vocabulary against the CPU's f64: gradient |gpu − cpu| ≤ \
         1e-4·|cpu| + 1e-5·max|cpu|, summed nll within 1e-4 relative",
    );
    let nll_error = (nll_gpu - nll_sum).abs() / nll_sum.abs().max(1e-12);
    check.passed &= nll_error <= 1e-4;
    check.max_abs_error = check.max_abs_error.max((nll_gpu - nll_sum).abs());
    Ok(check)
}

fn adamw(device: &GpuDevice, rng: &mut ChaCha8Rng) -> Result<Check, GpuError> {
    // About one SmolLM2 layer's LoRA tensors (4 × 16 × 1152 = 73,728),
    // made odd so the last block is partial.
    let n = 73_731;
    let (lr, beta1, beta2, eps, weight_decay) = (2e-4f32, 0.9f32, 0.999f32, 1e-8f32, 0.01f32);
    let mut params: Vec<f32> = (0..n).map(|_| rng.random_range(-0.05f32..0.05)).collect();
    let mut m = vec![0f32; n];
    let mut v = vec![0f32; n];
    let (params_d, m_d, v_d) = (
        &mut upload(device, &params)?,
        &mut zeros::<f32>(device, n)?,
        &mut zeros::<f32>(device, n)?,
    );
    for step in 1..=3 {
        let grads: Vec<f32> = (0..n).map(|_| rng.random_range(-0.01f32..0.01)).collect();
        let bias1 = 1.0 - beta1.powi(step);
        let bias2 = 1.0 - beta2.powi(step);
        let grads_d = upload(device, &grads)?;
        let count_n = len(n);
        launch!(
            device,
            "adamw_step",
            per_element(n),
            [
                &mut *params_d,
                &grads_d,
                &mut *m_d,
                &mut *v_d,
                &count_n,
                &lr,
                &beta1,
                &beta2,
                &eps,
                &weight_decay,
                &bias1,
                &bias2
            ]
        );
        // torch.optim.AdamW's update, in its order.
        for i in 0..n {
            let g = grads[i];
            params[i] *= 1.0 - lr * weight_decay;
            m[i] = beta1 * m[i] + (1.0 - beta1) * g;
            v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
            params[i] -= lr * (m[i] / bias1) / ((v[i] / bias2).sqrt() + eps);
        }
    }
    Ok(compare(
        "adamw (3 steps over one flat buffer)",
        format!("{n} values"),
        &download(device, params_d)?,
        &params,
        1e-6,
        1e-7,
        "f32, the same operations (the GPU may fuse a multiply-add): |gpu − cpu| ≤ 1e-6·|cpu| + 1e-7·max|cpu|",
    ))
}
