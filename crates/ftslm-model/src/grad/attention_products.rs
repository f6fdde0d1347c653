//! The products inside grouped-query attention for one segment, on
//! `crate::kernel`'s CPU products, for f32 tensors in CPU memory. candle's
//! batched matmul spent most of an attention layer on these small-depth
//! products; the math is `grad::attention`'s, per kv head:
//!
//!   S = Q·Kᵀ·c, P = causal softmax(S), C = P·V      Q [g·n, d], K, V [n, d]
//!   dP = dC·Vᵀ, dV = Pᵀ·dC, dS = P ⊙ (dP − rowsum(dP ⊙ P))·c,
//!   dQ = dS·K, dK = dSᵀ·Q
//!
//! Row r of a head's queries is position r mod n, which sees keys 0..=r mod n.
//! Each function returns None (the caller then uses candle) for other dtypes
//! or devices, or on CPUs without the fast kernels.

use candle_core::{DType, Device, Tensor};

use crate::error::Result;
use crate::kernel::{dense_matmul, dense_matmul_t, exp, flush_subnormal};

/// q [kv, g·n, d], k and v [kv, n, d] → C [kv, g·n, d]. P is not kept:
/// the backward recomputes it from q and k (one more small product per head
/// instead of [kv, g·n, n] held per layer for the whole step).
pub fn forward(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Option<Tensor>> {
    if !on_cpu_f32(&[q, k, v]) {
        return Ok(None);
    }
    let (heads, rows, d) = q.dims3()?;
    let n = k.dim(1)?;
    let (q, k, v) = (values(q)?, values(k)?, values(v)?);
    let mut p = vec![0f32; rows * n];
    let mut context = vec![0f32; heads * rows * d];
    for h in 0..heads {
        let (q, k, v) = (
            part(&q, h, rows * d),
            part(&k, h, n * d),
            part(&v, h, n * d),
        );
        if !probabilities(q, k, [rows, n, d], scale, &mut p) {
            return Ok(None);
        }
        let c = &mut context[h * rows * d..(h + 1) * rows * d];
        if !dense_matmul(v, [n, d], &p, rows, c) {
            return Ok(None);
        }
    }
    Ok(Some(Tensor::from_vec(
        context,
        (heads, rows, d),
        &Device::Cpu,
    )?))
}

/// P = causal softmax(Q·Kᵀ·c) of one head into `p` [rows, n]; false where
/// the CPU has no fast kernel.
fn probabilities(
    q: &[f32],
    k: &[f32],
    [rows, n, d]: [usize; 3],
    scale: f64,
    p: &mut [f32],
) -> bool {
    if !dense_matmul_t(k, [n, d], q, rows, p) {
        return false;
    }
    for (r, row) in p.chunks_exact_mut(n).enumerate() {
        causal_softmax(row, r % n, scale as f32);
    }
    true
}

/// The saved q, k, v and dC [kv, g·n, d] → (dQ, dK, dV), shaped as q, k, v.
pub fn backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    d_context: &Tensor,
    scale: f64,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    if !on_cpu_f32(&[q, k, v, d_context]) {
        return Ok(None);
    }
    let (heads, rows, d) = q.dims3()?;
    let n = k.dim(1)?;
    let (q, k, v) = (values(q)?, values(k)?, values(v)?);
    let d_context = values(d_context)?;
    let mut p = vec![0f32; rows * n];
    let mut dq = vec![0f32; heads * rows * d];
    let mut dk = vec![0f32; heads * n * d];
    let mut dv = vec![0f32; heads * n * d];
    let mut ds = vec![0f32; rows * n];
    let mut transposed = vec![0f32; d * rows];
    let mut out_t = vec![0f32; d * n];
    for h in 0..heads {
        let (q, k, v) = (
            part(&q, h, rows * d),
            part(&k, h, n * d),
            part(&v, h, n * d),
        );
        let dc = part(&d_context, h, rows * d);
        if !probabilities(q, k, [rows, n, d], scale, &mut p) {
            return Ok(None);
        }
        let p = p.as_slice();
        // dP = dC·Vᵀ, then dS in place.
        if !dense_matmul_t(v, [n, d], dc, rows, &mut ds) {
            return Ok(None);
        }
        for (ds_row, p_row) in ds.chunks_exact_mut(n).zip(p.chunks_exact(n)) {
            let row_dot: f32 = ds_row.iter().zip(p_row).map(|(a, b)| a * b).sum();
            for (g, &p) in ds_row.iter_mut().zip(p_row) {
                *g = flush_subnormal(p * (*g - row_dot) * scale as f32);
            }
        }
        // dVᵀ = dCᵀ·P [d, n]
        transpose(dc, rows, d, &mut transposed);
        if !dense_matmul(p, [rows, n], &transposed, d, &mut out_t) {
            return Ok(None);
        }
        transpose(&out_t, d, n, &mut dv[h * n * d..(h + 1) * n * d]);
        // dQ = dS·K
        if !dense_matmul(
            k,
            [n, d],
            &ds,
            rows,
            &mut dq[h * rows * d..(h + 1) * rows * d],
        ) {
            return Ok(None);
        }
        // dKᵀ = Qᵀ·dS [d, n]
        transpose(q, rows, d, &mut transposed);
        if !dense_matmul(&ds, [rows, n], &transposed, d, &mut out_t) {
            return Ok(None);
        }
        transpose(&out_t, d, n, &mut dk[h * n * d..(h + 1) * n * d]);
    }
    Ok(Some((
        Tensor::from_vec(dq, (heads, rows, d), &Device::Cpu)?,
        Tensor::from_vec(dk, (heads, n, d), &Device::Cpu)?,
        Tensor::from_vec(dv, (heads, n, d), &Device::Cpu)?,
    )))
}

fn on_cpu_f32(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// Head `h` of a buffer of heads holding `len` values each.
fn part(values: &[f32], h: usize, len: usize) -> &[f32] {
    &values[h * len..(h + 1) * len]
}

/// Scales the row's visible scores `row[..=last]` by `scale`, softmaxes
/// them and zeroes the masked rest, as the additive −∞ mask then softmax do.
fn causal_softmax(row: &mut [f32], last: usize, scale: f32) {
    let (visible, masked) = row.split_at_mut(last + 1);
    for s in visible.iter_mut() {
        *s *= scale;
    }
    // Sixteen running maxima, so the search vectorises.
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = visible.chunks_exact(16);
    for chunk in &mut chunks {
        for (m, &s) in lanes.iter_mut().zip(chunk) {
            *m = m.max(s);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    for s in visible.iter_mut() {
        *s = exp(*s - max);
    }
    let sum: f32 = visible.iter().sum();
    for s in visible.iter_mut() {
        *s = flush_subnormal(*s / sum);
    }
    masked.fill(0.0);
}

/// `dst [cols, rows] = srcᵀ` for `src [rows, cols]`.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    for (r, src_row) in src.chunks_exact(cols).take(rows).enumerate() {
        for (c, &value) in src_row.iter().enumerate() {
            dst[c * rows + r] = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::D;

    use super::*;
    use crate::attention::{causal_mask, softmax_last_dim};
    use crate::test_support::max_diff;

    fn random(shape: (usize, usize, usize), seed: u64) -> Tensor {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let values: Vec<f32> = (0..shape.0 * shape.1 * shape.2)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// The kernel products against candle's ops (what runs elsewhere) on a
    /// segment whose length leaves partial panels: 3 kv heads, 2 query heads each.
    #[test]
    fn kernel_products_match_candle_ops() {
        let (kv, group, n, d) = (3, 2, 37, 64);
        let q = random((kv, group * n, d), 1);
        let k = random((kv, n, d), 2);
        let v = random((kv, n, d), 3);
        let dc = random((kv, group * n, d), 4);
        let scale = 1.0 / (d as f64).sqrt();
        let Some(context) = forward(&q, &k, &v, scale).unwrap() else {
            eprintln!("no fast kernels on this CPU");
            return;
        };
        let mask = causal_mask(n, n, DType::F32, &Device::Cpu).unwrap();
        let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale)
            .unwrap()
            .reshape((kv, group, n, n))
            .unwrap()
            .broadcast_add(&mask)
            .unwrap();
        let probs = softmax_last_dim(&scores)
            .unwrap()
            .reshape((kv, group * n, n))
            .unwrap();
        let (q_values, k_values) = (values(&q).unwrap(), values(&k).unwrap());
        let mut ours = vec![0f32; kv * group * n * n];
        for (h, p) in ours.chunks_exact_mut(group * n * n).enumerate() {
            let (q, k) = (part(&q_values, h, group * n * d), part(&k_values, h, n * d));
            assert!(probabilities(q, k, [group * n, n, d], scale, p));
        }
        let ours = Tensor::from_vec(ours, (kv, group * n, n), &Device::Cpu).unwrap();
        assert!(max_diff(&ours, &probs) < 1e-6);
        assert!(max_diff(&context, &probs.matmul(&v).unwrap()) < 1e-5);

        let (dq, dk, dv) = backward(&q, &k, &v, &dc, scale).unwrap().unwrap();
        let dp = dc.matmul(&v.t().unwrap()).unwrap();
        let row_dot = (&dp * &probs).unwrap().sum_keepdim(D::Minus1).unwrap();
        let ds = (&probs * dp.broadcast_sub(&row_dot).unwrap())
            .unwrap()
            .affine(scale, 0.0)
            .unwrap();
        assert!(max_diff(&dv, &probs.t().unwrap().matmul(&dc).unwrap()) < 1e-5);
        assert!(max_diff(&dq, &ds.matmul(&k).unwrap()) < 1e-5);
        assert!(max_diff(&dk, &ds.t().unwrap().matmul(&q).unwrap()) < 1e-5);
    }
}
