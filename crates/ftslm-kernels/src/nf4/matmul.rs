//! Products with a frozen NF4 weight that never hold the whole matrix in f32:
//! a tile of weight rows is decoded into a small buffer and reused for every
//! input row before the next tile is decoded. Work is split across threads by
//! weight columns of the result, so each thread decodes only its own part of W.
//! On CPUs with AVX-512 the products run `avx512`'s register-blocked kernels;
//! the portable loops here serve every other CPU.

use std::ops::Range;

#[cfg(target_arch = "x86_64")]
use crate::{avx512, integer_products, vnni};
use crate::{run_split, scatter_columns, split_range, worker_count};

use super::{Nf4Error, Nf4Tensor, NF4_BLOCK_SIZE};

/// f32 values in one decoded tile (256 KiB): big enough to amortise the
/// streaming of the activations over many weight rows, small enough for L2.
const TILE_VALUES: usize = 1 << 16;

/// One input of several forward products (q, k and v read the same normed
/// hidden state; gate and up another): the integer panels the first product
/// packs from it are kept here for the others. Hand it only products of
/// that same input; panels of another shape are not used.
#[derive(Default)]
pub struct SharedPanels {
    #[cfg(target_arch = "x86_64")]
    panels: std::cell::OnceCell<vnni::QuantisedPanels>,
}

impl std::fmt::Debug for SharedPanels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("SharedPanels");
        #[cfg(target_arch = "x86_64")]
        out.field("packed", &self.panels.get().is_some());
        out.finish_non_exhaustive()
    }
}

impl Nf4Tensor {
    /// The forward pass of a frozen linear layer:
    /// `out[rows, out_features] = x[rows, in_features] · Wᵀ` (overwrites `out`).
    pub fn matmul_t(&self, x: &[f32], rows: usize, out: &mut [f32]) -> Result<(), Nf4Error> {
        self.matmul_t_shared(x, rows, out, &SharedPanels::default())
    }

    /// [`Nf4Tensor::matmul_t`] of an input that other products read too.
    pub fn matmul_t_shared(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
        shared: &SharedPanels,
    ) -> Result<(), Nf4Error> {
        let [out_features, in_features] = self.shape();
        check_activation("x", x.len(), rows, in_features)?;
        check_activation("out", out.len(), rows, out_features)?;
        if rows == 0 {
            return Ok(());
        }
        let threads = worker_count(rows, self.shape(), out_features);
        #[cfg(target_arch = "x86_64")]
        if integer_products() && self.fits_vnni() {
            let packed;
            let xq = match shared.panels.get() {
                Some(xq) if xq.holds(rows, in_features) => xq,
                Some(_) => {
                    packed = vnni::QuantisedPanels::pack(x, rows, in_features);
                    &packed
                }
                None => shared
                    .panels
                    .get_or_init(|| vnni::QuantisedPanels::pack(x, rows, in_features)),
            };
            if threads == 1 {
                self.matmul_t_vnni(xq, 0..out_features, out);
                return Ok(());
            }
            let parts = run_split(
                split_range(out_features, threads, vnni::MR),
                |columns, local| self.matmul_t_vnni(xq, columns, local),
                rows,
            );
            scatter_columns(&parts, rows, out, out_features);
            return Ok(());
        }
        #[cfg(target_arch = "x86_64")]
        if avx512::available() {
            let xt = avx512::TokenPanels::pack(x, rows, self.in_features());
            if threads == 1 {
                self.matmul_t_avx512(&xt, 0..out_features, out);
                return Ok(());
            }
            let parts = run_split(
                split_range(out_features, threads, avx512::MR),
                |columns, local| self.matmul_t_avx512(&xt, columns, local),
                rows,
            );
            scatter_columns(&parts, rows, out, out_features);
            return Ok(());
        }
        if threads == 1 {
            self.matmul_t_columns(x, rows, 0..out_features, out, out_features);
            return Ok(());
        }
        let parts = run_split(
            split_range(out_features, threads, 1),
            |columns, local| self.matmul_t_columns(x, rows, columns, local, local.len() / rows),
            rows,
        );
        scatter_columns(&parts, rows, out, out_features);
        Ok(())
    }

    /// The input gradient of a frozen linear layer:
    /// `dx[rows, in_features] = dy[rows, out_features] · W` (overwrites `dx`).
    pub fn matmul(&self, dy: &[f32], rows: usize, dx: &mut [f32]) -> Result<(), Nf4Error> {
        let [out_features, in_features] = self.shape();
        check_activation("dy", dy.len(), rows, out_features)?;
        check_activation("dx", dx.len(), rows, in_features)?;
        if rows == 0 {
            return Ok(());
        }
        let threads = worker_count(rows, self.shape(), in_features.div_ceil(NF4_BLOCK_SIZE));
        #[cfg(target_arch = "x86_64")]
        if integer_products() && self.fits_vnni() {
            let dyq = vnni::QuantisedRows::quantise(dy, rows, out_features);
            if threads == 1 {
                self.matmul_vnni(&dyq, rows, 0..in_features, dx);
                return Ok(());
            }
            let parts = run_split(
                split_range(in_features, threads, vnni::NR),
                |columns, local| self.matmul_vnni(&dyq, rows, columns, local),
                rows,
            );
            scatter_columns(&parts, rows, dx, in_features);
            return Ok(());
        }
        #[cfg(target_arch = "x86_64")]
        if avx512::available() {
            if threads == 1 {
                self.matmul_avx512(dy, rows, 0..in_features, dx);
                return Ok(());
            }
            let parts = run_split(
                split_range(in_features, threads, avx512::NR),
                |columns, local| self.matmul_avx512(dy, rows, columns, local),
                rows,
            );
            scatter_columns(&parts, rows, dx, in_features);
            return Ok(());
        }
        if threads == 1 {
            self.matmul_columns(dy, rows, 0..in_features, dx, in_features);
            return Ok(());
        }
        // Column ranges on block boundaries keep each decoded span to whole blocks.
        let parts = run_split(
            split_range(in_features, threads, NF4_BLOCK_SIZE),
            |columns, local| self.matmul_columns(dy, rows, columns, local, local.len() / rows),
            rows,
        );
        scatter_columns(&parts, rows, dx, in_features);
        Ok(())
    }

    /// `dst[r, o - cols.start] = x[r, :] · W[o, :]` for `o` in `cols`;
    /// `dst` rows are `dst_stride` apart.
    fn matmul_t_columns(
        &self,
        x: &[f32],
        rows: usize,
        cols: Range<usize>,
        dst: &mut [f32],
        dst_stride: usize,
    ) {
        let in_features = self.in_features();
        let tile_rows = (TILE_VALUES / in_features).max(1);
        let mut tile = vec![0.0f32; tile_rows.min(cols.len()) * in_features]; // [tile_rows, in_features]
        let mut first = cols.start;
        while first < cols.end {
            let count = tile_rows.min(cols.end - first);
            let tile = &mut tile[..count * in_features];
            for (t, weight_row) in tile.chunks_exact_mut(in_features).enumerate() {
                self.decode_span((first + t) * in_features, weight_row);
            }
            for (r, x_row) in x.chunks_exact(in_features).take(rows).enumerate() {
                let start = r * dst_stride + (first - cols.start);
                let dst_row = &mut dst[start..start + count];
                for (d, weight_row) in dst_row.iter_mut().zip(tile.chunks_exact(in_features)) {
                    *d = dot(x_row, weight_row);
                }
            }
            first += count;
        }
    }

    /// `dst[r, i - cols.start] = Σ_o dy[r, o] · W[o, i]` for `i` in `cols`;
    /// `dst` rows are `dst_stride` apart.
    fn matmul_columns(
        &self,
        dy: &[f32],
        rows: usize,
        cols: Range<usize>,
        dst: &mut [f32],
        dst_stride: usize,
    ) {
        let [out_features, in_features] = self.shape();
        let width = cols.len();
        for r in 0..rows {
            dst[r * dst_stride..r * dst_stride + width].fill(0.0);
        }
        let tile_rows = (TILE_VALUES / width).max(1);
        let mut tile = vec![0.0f32; tile_rows.min(out_features) * width]; // [tile_rows, width]
        let mut first = 0;
        while first < out_features {
            let count = tile_rows.min(out_features - first);
            let tile = &mut tile[..count * width];
            for (t, weight_part) in tile.chunks_exact_mut(width).enumerate() {
                self.decode_span((first + t) * in_features + cols.start, weight_part);
            }
            for (r, dy_row) in dy.chunks_exact(out_features).take(rows).enumerate() {
                let dst_row = &mut dst[r * dst_stride..r * dst_stride + width];
                for (&gradient, weight_part) in dy_row[first..first + count]
                    .iter()
                    .zip(tile.chunks_exact(width))
                {
                    axpy(gradient, weight_part, dst_row);
                }
            }
            first += count;
        }
    }
}

fn check_activation(
    buffer: &'static str,
    actual: usize,
    rows: usize,
    features: usize,
) -> Result<(), Nf4Error> {
    let shape = [rows, features];
    match rows.checked_mul(features) {
        Some(expected) if expected == actual => Ok(()),
        Some(expected) => Err(Nf4Error::BufferLength {
            buffer,
            shape,
            expected,
            actual,
        }),
        None => Err(Nf4Error::UnusableShape { shape }),
    }
}

/// Dot product with eight independent accumulators so the loop vectorises.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut sums = [0.0f32; LANES];
    let mut a_chunks = a.chunks_exact(LANES);
    let mut b_chunks = b.chunks_exact(LANES);
    for (a8, b8) in (&mut a_chunks).zip(&mut b_chunks) {
        for ((sum, p), q) in sums.iter_mut().zip(a8).zip(b8) {
            *sum += p * q;
        }
    }
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(p, q)| p * q)
        .sum();
    sums.iter().sum::<f32>() + tail
}

/// `dst += alpha · src`.
#[inline]
fn axpy(alpha: f32, src: &[f32], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += alpha * s;
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                ((i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 16) % 2001) as f32 / 1000.0
                    - 1.0
            })
            .collect()
    }

    fn assert_close(fast: &[f32], portable: &[f32], what: &str) {
        for (i, (a, b)) in fast.iter().zip(portable).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{what}[{i}]: {a} vs {b}"
            );
        }
    }

    /// `|got - Σ_k term| ≤ tolerance · Σ_k bound` elementwise, in f64.
    fn assert_within(got: &[f32], want: &[f64], bound: &[f64], tolerance: f64, what: &str) {
        for (i, ((&g, &w), &b)) in got.iter().zip(want).zip(bound).enumerate() {
            assert!(
                (f64::from(g) - w).abs() <= tolerance * b + 1e-12,
                "{what}[{i}]: {g} vs {w} (bound {b})"
            );
        }
    }

    /// The 16-bit integer products against the exact sums on the dequantised
    /// matrix: each product's error is at most half a step of each operand's
    /// quantisation, a step being 2⁻¹² of the largest |value| (bounded here
    /// by the largest of the whole operand). Shapes leave partial row groups,
    /// token panels and strips, and strips narrower than NR.
    #[test]
    fn integer_products_stay_within_their_quantisation_steps() {
        if !vnni::available() {
            eprintln!("no AVX-512 VNNI on this CPU: the f32 products are the only ones");
            return;
        }
        for (shape, rows) in [
            ([64, 128], 13),
            ([192, 576], 33),
            ([128, 64], 1),
            ([64, 320], 7),
        ] {
            let [out_features, in_features] = shape;
            let w =
                Nf4Tensor::quantize(&values(out_features * in_features, 1), shape, true).unwrap();
            assert!(w.fits_vnni());
            let dense = w.dequantize();
            let max_w = dense.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
            let x: Vec<f32> = values(rows * in_features, 2)
                .iter()
                .map(|v| v * 3.0)
                .collect();
            let max_x = x.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
            let (mut want, mut bound) = (vec![], vec![]);
            for t in 0..rows {
                for o in 0..out_features {
                    let (mut sum, mut b) = (0.0, 0.0);
                    for k in 0..in_features {
                        let (xv, wv) = (
                            f64::from(x[t * in_features + k]),
                            f64::from(dense[o * in_features + k]),
                        );
                        sum += xv * wv;
                        b += xv.abs() * max_w + wv.abs() * max_x + max_x * max_w / 4096.0;
                    }
                    want.push(sum);
                    bound.push(b);
                }
            }
            let mut fast = vec![f32::NAN; rows * out_features];
            let xq = vnni::QuantisedPanels::pack(&x, rows, in_features);
            w.matmul_t_vnni(&xq, 0..out_features, &mut fast);
            assert_within(&fast, &want, &bound, 0.6 / 4096.0, "forward");

            let dy: Vec<f32> = values(rows * out_features, 3)
                .iter()
                .map(|v| v * 0.01)
                .collect();
            let max_dy = dy.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
            let (mut want, mut bound) = (vec![], vec![]);
            for t in 0..rows {
                for i in 0..in_features {
                    let (mut sum, mut b) = (0.0, 0.0);
                    for o in 0..out_features {
                        let (gv, wv) = (
                            f64::from(dy[t * out_features + o]),
                            f64::from(dense[o * in_features + i]),
                        );
                        sum += gv * wv;
                        b += gv.abs() * max_w + wv.abs() * max_dy + max_dy * max_w / 4096.0;
                    }
                    want.push(sum);
                    bound.push(b);
                }
            }
            let dyq = vnni::QuantisedRows::quantise(&dy, rows, out_features);
            // Narrow last strips too: 16 columns, and 23 (an odd half).
            for cols in [0..in_features, 0..in_features - 16, 0..in_features - 9] {
                let width = cols.len();
                let mut fast = vec![f32::NAN; rows * width];
                w.matmul_vnni(&dyq, rows, cols.clone(), &mut fast);
                let want: Vec<f64> = (0..rows)
                    .flat_map(|t| cols.clone().map(move |i| t * in_features + i))
                    .map(|at| want[at])
                    .collect();
                let bound: Vec<f64> = (0..rows)
                    .flat_map(|t| cols.clone().map(move |i| t * in_features + i))
                    .map(|at| bound[at])
                    .collect();
                assert_within(&fast, &want, &bound, 0.6 / 4096.0, "input gradient");
            }
        }
    }

    /// Products sharing one input's panels give exactly what each gives on
    /// its own (q, k and v, of different widths), and panels of another
    /// input shape in the cache are not used.
    #[test]
    fn shared_panels_give_the_products_of_separate_ones() {
        let (rows, depth) = (37, 128);
        let x = values(rows * depth, 5);
        let weights: Vec<Nf4Tensor> = [192, 64, 64]
            .iter()
            .enumerate()
            .map(|(i, &out)| {
                Nf4Tensor::quantize(&values(out * depth, 6 + i as u32), [out, depth], true).unwrap()
            })
            .collect();
        let shared = SharedPanels::default();
        for w in &weights {
            let out = w.shape()[0];
            let (mut alone, mut together) = (vec![0.0; rows * out], vec![f32::NAN; rows * out]);
            w.matmul_t(&x, rows, &mut alone).unwrap();
            w.matmul_t_shared(&x, rows, &mut together, &shared).unwrap();
            assert_eq!(alone, together);
        }
        // The cache now holds 37 rows; a 5-row input must not read them.
        let (short, mut alone, mut together) =
            (&x[..5 * depth], vec![0.0; 5 * 64], vec![0.0; 5 * 64]);
        weights[1].matmul_t(short, 5, &mut alone).unwrap();
        weights[1]
            .matmul_t_shared(short, 5, &mut together, &shared)
            .unwrap();
        assert_eq!(alone, together);
    }

    /// The AVX-512 kernels against the portable loops on shapes that leave
    /// partial row groups, partial strips, token panels and unaligned spans.
    #[test]
    fn avx512_kernels_match_the_portable_products() {
        if !avx512::available() {
            eprintln!("no AVX-512 on this CPU: the portable products are the only ones");
            return;
        }
        for (shape, rows) in [
            ([40, 96], 13),
            ([37, 100], 33),
            ([130, 64], 1),
            ([64, 200], 45),
        ] {
            let [out_features, in_features] = shape;
            let w =
                Nf4Tensor::quantize(&values(out_features * in_features, 1), shape, true).unwrap();
            let x = values(rows * in_features, 2);
            let mut portable = vec![0.0; rows * out_features];
            w.matmul_t_columns(&x, rows, 0..out_features, &mut portable, out_features);
            let mut fast = vec![f32::NAN; rows * out_features];
            let xt = avx512::TokenPanels::pack(&x, rows, in_features);
            w.matmul_t_avx512(&xt, 0..out_features, &mut fast);
            assert_close(&fast, &portable, "forward");

            let dy = values(rows * out_features, 3);
            let mut portable = vec![0.0; rows * in_features];
            w.matmul_columns(&dy, rows, 0..in_features, &mut portable, in_features);
            let mut fast = vec![f32::NAN; rows * in_features];
            w.matmul_avx512(&dy, rows, 0..in_features, &mut fast);
            assert_close(&fast, &portable, "input gradient");
        }
    }
}
