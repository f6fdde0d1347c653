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

use std::ops::Range;

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};
use crate::kernel::softmax::{causal_softmax_rows, score_gradients};
use crate::kernel::{dense_matmul, dense_matmul_t, transpose, with_cpu_f32s};

/// Query positions per block. A block reads only the keys up to its last
/// position, so of the scores above the causal diagonal only the corner
/// inside each block is computed: on a 222-token example 57% of the full
/// square instead of all of it, with blocks still deep enough for the kernel.
const QUERY_BLOCK: usize = 32;

/// The softmax probabilities of one segment, kept from the forward for the
/// backward: per kv head, each query block's [block rows, last position + 1]
/// (only the corner of the square the causal mask leaves), in the order of
/// [`query_blocks`]. Recomputing them in the backward was 2% of a training
/// step; keeping them costs about 0.9 MB per layer of a 220-token row.
#[derive(Debug, Clone)]
pub struct Probabilities(Vec<f32>);

/// q [kv, g·n, d], k and v [kv, n, d] → C [kv, g·n, d] and P.
pub fn forward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
) -> Result<Option<(Tensor, Probabilities)>> {
    if !on_cpu_f32(&[q, k, v]) {
        return Ok(None);
    }
    let (heads, rows, d) = q.dims3()?;
    let n = k.dim(1)?;
    let group = query_group(rows, n)?;
    // Read in place: `grad::attention` hands them over contiguous, so these
    // are no copies there.
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let values = with_cpu_f32s([&q, &k, &v], |[q, k, v]| {
        let per_head: usize = query_blocks(group, n)
            .map(|block| block.positions.len() * block.positions.end)
            .sum();
        let mut probabilities = vec![0f32; heads * per_head];
        let mut context = vec![0f32; heads * rows * d];
        let mut at = 0;
        for h in 0..heads {
            let (q, k, v) = (part(q, h, rows * d), part(k, h, n * d), part(v, h, n * d));
            let context = &mut context[h * rows * d..(h + 1) * rows * d];
            for block in query_blocks(group, n) {
                let (b, width) = (block.positions.len(), block.positions.end);
                let p = &mut probabilities[at..at + b * width];
                at += b * width;
                if !probabilities_of(block.of(q, d), k, &block, [d, n], scale, p) {
                    return None;
                }
                let c = block.of_mut(context, d);
                if !dense_matmul(&v[..width * d], [width, d], p, b, c) {
                    return None;
                }
            }
        }
        Some((context, Probabilities(probabilities)))
    })
    .flatten();
    let Some((context, probabilities)) = values else {
        return Ok(None);
    };
    let context = Tensor::from_vec(context, (heads, rows, d), &Device::Cpu)?;
    Ok(Some((context, probabilities)))
}

/// Consecutive query rows of one head of a group, at `positions`: rows
/// `first_row..first_row + positions.len()` of the group's [g·n, d] queries.
struct QueryBlock {
    first_row: usize,
    positions: Range<usize>,
}

impl QueryBlock {
    fn of<'a>(&self, rows: &'a [f32], d: usize) -> &'a [f32] {
        &rows[self.first_row * d..(self.first_row + self.positions.len()) * d]
    }

    fn of_mut<'a>(&self, rows: &'a mut [f32], d: usize) -> &'a mut [f32] {
        &mut rows[self.first_row * d..(self.first_row + self.positions.len()) * d]
    }
}

/// The blocks of `group` query heads over a segment of `n` positions.
fn query_blocks(group: usize, n: usize) -> impl Iterator<Item = QueryBlock> {
    (0..group).flat_map(move |head| {
        (0..n).step_by(QUERY_BLOCK).map(move |start| QueryBlock {
            first_row: head * n + start,
            positions: start..(start + QUERY_BLOCK).min(n),
        })
    })
}

/// Query heads per kv head: q holds g whole segments of n rows.
fn query_group(rows: usize, n: usize) -> Result<usize> {
    if n == 0 || !rows.is_multiple_of(n) {
        return Err(ModelError::Input(format!(
            "attention: {rows} query rows are not whole heads of a {n}-token segment"
        )));
    }
    Ok(rows / n)
}

/// P = causal softmax(Q·Kᵀ·c) of one block's queries into `p`
/// [block rows, last position + 1]; false where the CPU has no fast kernel.
fn probabilities_of(
    q_rows: &[f32],
    k: &[f32],
    block: &QueryBlock,
    [d, n]: [usize; 2],
    scale: f64,
    p: &mut [f32],
) -> bool {
    let width = block.positions.end;
    debug_assert!(width <= n);
    if !dense_matmul_t(
        &k[..width * d],
        [width, d],
        q_rows,
        block.positions.len(),
        p,
    ) {
        return false;
    }
    causal_softmax_rows(p, width, block.positions.start, scale as f32);
    true
}

/// The saved q, k, v, P and dC [kv, g·n, d] → (dQ, dK, dV), shaped as q, k, v.
pub fn backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    probabilities: &Probabilities,
    d_context: &Tensor,
    scale: f64,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    if !on_cpu_f32(&[q, k, v, d_context]) {
        return Ok(None);
    }
    let (heads, rows, d) = q.dims3()?;
    let n = k.dim(1)?;
    let group = query_group(rows, n)?;
    let (q, k, v, d_context) = (
        q.contiguous()?,
        k.contiguous()?,
        v.contiguous()?,
        d_context.contiguous()?,
    );
    let per_head: usize = query_blocks(group, n)
        .map(|block| block.positions.len() * block.positions.end)
        .sum();
    if probabilities.0.len() != heads * per_head {
        return Err(ModelError::Input(format!(
            "attention: {} saved probabilities for {heads} heads of a {n}-token segment, which have {}",
            probabilities.0.len(),
            heads * per_head
        )));
    }
    let gradients = with_cpu_f32s([&q, &k, &v, &d_context], |[q, k, v, d_context]| {
        let values = [q, k, v, &probabilities.0, d_context];
        backward_values(values, [heads, rows, n, d], group, scale)
    })
    .flatten();
    let Some((dq, dk, dv)) = gradients else {
        return Ok(None);
    };
    Ok(Some((
        Tensor::from_vec(dq, (heads, rows, d), &Device::Cpu)?,
        Tensor::from_vec(dk, (heads, n, d), &Device::Cpu)?,
        Tensor::from_vec(dv, (heads, n, d), &Device::Cpu)?,
    )))
}

/// [`backward`] on the tensors' values: (dQ, dK, dV), or None where the CPU
/// has no fast kernel.
fn backward_values(
    [q, k, v, probabilities, d_context]: [&[f32]; 5],
    [heads, rows, n, d]: [usize; 4],
    group: usize,
    scale: f64,
) -> Option<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let mut dq = vec![0f32; heads * rows * d];
    let mut dk = vec![0f32; heads * n * d];
    let mut dv = vec![0f32; heads * n * d];
    let mut ds = vec![0f32; QUERY_BLOCK * n];
    let mut at = 0;
    let mut transposed = vec![0f32; d * QUERY_BLOCK];
    let mut block_t = vec![0f32; d * n];
    // dVᵀ and dKᵀ [d, n] of one kv head, summed over its query blocks.
    let mut dv_t = vec![0f32; d * n];
    let mut dk_t = vec![0f32; d * n];
    for h in 0..heads {
        let (q, k, v) = (part(q, h, rows * d), part(k, h, n * d), part(v, h, n * d));
        let d_context = part(d_context, h, rows * d);
        let dq = &mut dq[h * rows * d..(h + 1) * rows * d];
        dv_t.fill(0.0);
        dk_t.fill(0.0);
        for block in query_blocks(group, n) {
            let (b, width) = (block.positions.len(), block.positions.end);
            let (q_rows, dc) = (block.of(q, d), block.of(d_context, d));
            let (p, ds) = (&probabilities[at..at + b * width], &mut ds[..b * width]);
            at += b * width;
            // dP = dC·Vᵀ, then dS in place.
            if !dense_matmul_t(&v[..width * d], [width, d], dc, b, ds) {
                return None;
            }
            score_gradients(ds, p, width, scale as f32);
            // dQ = dS·K
            if !dense_matmul(&k[..width * d], [width, d], ds, b, block.of_mut(dq, d)) {
                return None;
            }
            // dVᵀ += dCᵀ·P and dKᵀ += Qᵀ·dS, [d, width] each.
            let transposed = &mut transposed[..d * b];
            let block_t = &mut block_t[..d * width];
            transpose(dc, b, d, transposed);
            if !dense_matmul(p, [b, width], transposed, d, block_t) {
                return None;
            }
            add_columns(block_t, width, &mut dv_t, n);
            transpose(q_rows, b, d, transposed);
            if !dense_matmul(ds, [b, width], transposed, d, block_t) {
                return None;
            }
            add_columns(block_t, width, &mut dk_t, n);
        }
        transpose(&dv_t, d, n, &mut dv[h * n * d..(h + 1) * n * d]);
        transpose(&dk_t, d, n, &mut dk[h * n * d..(h + 1) * n * d]);
    }
    Some((dq, dk, dv))
}

/// `sum[r, ..width] += part[r, ..]` for `part` [rows, width] and `sum` [rows, stride].
fn add_columns(part: &[f32], width: usize, sum: &mut [f32], stride: usize) {
    for (part, sum) in part.chunks_exact(width).zip(sum.chunks_exact_mut(stride)) {
        for (s, v) in sum.iter_mut().zip(part) {
            *s += v;
        }
    }
}

fn on_cpu_f32(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// Head `h` of a buffer of heads holding `len` values each.
fn part(values: &[f32], h: usize, len: usize) -> &[f32] {
    &values[h * len..(h + 1) * len]
}

#[cfg(test)]
mod tests {
    use candle_core::D;

    use super::*;
    use crate::attention::{causal_mask, softmax_last_dim};
    use crate::test_support::{max_diff, random_tensor as random};

    /// The kernel products against candle's ops (what runs elsewhere) on a
    /// segment whose length leaves partial panels and a short last query
    /// block (101 = 3 × 32 + 5): 3 kv heads, 2 query heads each.
    #[test]
    fn kernel_products_match_candle_ops() {
        let (kv, group, n, d) = (3, 2, 101, 64);
        let q = random((kv, group * n, d), 1);
        let k = random((kv, n, d), 2);
        let v = random((kv, n, d), 3);
        let dc = random((kv, group * n, d), 4);
        let scale = 1.0 / (d as f64).sqrt();
        let Some((context, kept)) = forward(&q, &k, &v, scale).unwrap() else {
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
        let values = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (q_values, k_values) = (values(&q), values(&k));
        let mut ours = vec![0f32; kv * group * n * n];
        for (h, p) in ours.chunks_exact_mut(group * n * n).enumerate() {
            let (q, k) = (part(&q_values, h, group * n * d), part(&k_values, h, n * d));
            for (head, p) in p.chunks_exact_mut(n * n).enumerate() {
                let whole = QueryBlock {
                    first_row: head * n,
                    positions: 0..n,
                };
                assert!(probabilities_of(
                    whole.of(q, d),
                    k,
                    &whole,
                    [d, n],
                    scale,
                    p
                ));
            }
        }
        // The blocks the forward keeps are the corners of the whole square.
        let mut at = 0;
        for h in 0..kv {
            for block in query_blocks(group, n) {
                let width = block.positions.end;
                for r in 0..block.positions.len() {
                    let row = (h * group * n + block.first_row + r) * n;
                    let saved = &kept.0[at + r * width..at + (r + 1) * width];
                    assert_eq!(saved, &ours[row..row + width]);
                }
                at += block.positions.len() * width;
            }
        }
        assert_eq!(at, kept.0.len());
        let ours = Tensor::from_vec(ours, (kv, group * n, n), &Device::Cpu).unwrap();
        assert!(max_diff(&ours, &probs) < 1e-6);
        assert!(max_diff(&context, &probs.matmul(&v).unwrap()) < 1e-5);

        let (dq, dk, dv) = backward(&q, &k, &v, &kept, &dc, scale).unwrap().unwrap();
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
