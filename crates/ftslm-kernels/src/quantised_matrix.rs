//! A dense frozen matrix (the LM head) in 16-bit integers for `vnni`'s
//! kernel, quantised once in 64 × 64 tiles: a row's blocks are its tiles, so
//! the forward reads rows as they lie, and a column strip's rows share one
//! scale per 64 rows, so the input gradient interleaves its strips from the
//! same copy.

use std::arch::x86_64::*;

use super::vnni::{
    require_vnni, round_to_i16, QuantisedPanels, QuantisedRow, QuantisedRows, Strip, BLOCK, MR, NR,
    QMAX,
};
use super::{run_split, scatter_columns, split_range, worker_count};

/// A dense frozen matrix `[out, in]` (both multiples of [`BLOCK`]) in i16,
/// one scale per 64 × 64 tile: a row's blocks are its tiles (the forward's
/// A operand as it lies), and a column strip's rows share one scale per
/// 64 rows (the input gradient's B operand, interleaved per strip).
pub struct QuantisedMatrix {
    values: Vec<i16>,
    scales: Vec<f32>,
    shape: [usize; 2],
}

impl std::fmt::Debug for QuantisedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuantisedMatrix")
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

/// Rows of the input gradient's strip per pass: 1024 × NR pairs (64 KiB)
/// stay in L2 while every token row uses them.
const STRIP_DEPTH: usize = 1024;

impl QuantisedMatrix {
    /// None where the shape is not whole tiles.
    pub fn quantise(w: &[f32], shape: [usize; 2]) -> Option<Self> {
        let [out_features, in_features] = shape;
        if !out_features.is_multiple_of(BLOCK)
            || !in_features.is_multiple_of(BLOCK)
            || w.len() != out_features * in_features
        {
            return None;
        }
        let blocks = in_features / BLOCK;
        let mut scales = vec![0.0f32; out_features / BLOCK * blocks];
        for (g, tile_scales) in scales.chunks_exact_mut(blocks).enumerate() {
            let rows = &w[g * BLOCK * in_features..(g + 1) * BLOCK * in_features];
            for row in rows.chunks_exact(in_features) {
                for (scale, block) in tile_scales.iter_mut().zip(row.chunks_exact(BLOCK)) {
                    *scale = block.iter().fold(*scale, |m, v| m.max(v.abs()));
                }
            }
        }
        let mut values = vec![0i16; w.len()];
        for (o, (row, out)) in w
            .chunks_exact(in_features)
            .zip(values.chunks_exact_mut(in_features))
            .enumerate()
        {
            let tile_scales = &scales[o / BLOCK * blocks..(o / BLOCK + 1) * blocks];
            for ((block, out), &largest) in row
                .chunks_exact(BLOCK)
                .zip(out.chunks_exact_mut(BLOCK))
                .zip(tile_scales)
            {
                let inverse = if largest > 0.0 { QMAX / largest } else { 0.0 };
                for (q, &v) in out.iter_mut().zip(block) {
                    *q = round_to_i16(v * inverse);
                }
            }
        }
        for scale in &mut scales {
            *scale /= QMAX;
        }
        Some(QuantisedMatrix {
            values,
            scales,
            shape,
        })
    }

    pub fn shape(&self) -> [usize; 2] {
        self.shape
    }

    /// Bytes held (values and scales).
    pub fn storage_bytes(&self) -> usize {
        self.values.len() * 2 + self.scales.len() * 4
    }

    /// `y[rows, out] = x[rows, in] · Wᵀ`, output columns split among the
    /// threads a product may use.
    pub fn matmul_t(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        let [out_features, in_features] = self.shape;
        // The kernel indexes raw pointers from these lengths: checked in
        // every build.
        assert_eq!(
            x.len(),
            rows * in_features,
            "x is not [{rows}, {in_features}]"
        );
        assert_eq!(
            y.len(),
            rows * out_features,
            "y is not [{rows}, {out_features}]"
        );
        let xq = QuantisedPanels::pack(x, rows, in_features);
        let threads = worker_count(rows, self.shape, out_features.div_ceil(MR));
        if threads == 1 {
            self.matmul_t_rows(&xq, 0..out_features, y);
            return;
        }
        let parts = run_split(
            split_range(out_features, threads, BLOCK),
            |range, local| self.matmul_t_rows(&xq, range, local),
            rows,
        );
        scatter_columns(&parts, rows, y, out_features);
    }

    /// `y[t, o - range.start] = x[t, :] · W[o, :]` for `o` in `range`; `y`
    /// rows are `range.len()` apart.
    fn matmul_t_rows(&self, xq: &QuantisedPanels, range: std::ops::Range<usize>, y: &mut [f32]) {
        let in_features = self.shape[1];
        let blocks = in_features / BLOCK;
        let row = |o: usize| QuantisedRow {
            values: &self.values[o * in_features..(o + 1) * in_features],
            scales: &self.scales[o / BLOCK * blocks..(o / BLOCK + 1) * blocks],
        };
        let mut first = range.start;
        while first < range.end {
            let count = MR.min(range.end - first);
            let a: [QuantisedRow<'_>; MR] = std::array::from_fn(|i| row(first + i.min(count - 1)));
            xq.multiply_rows(&a, count, y, range.len(), first - range.start);
            first += count;
        }
    }

    /// `dx[rows, in] = dy[rows, out] · W`, input columns split among the
    /// threads a product may use.
    pub fn matmul(&self, dy: &[f32], rows: usize, dx: &mut [f32]) {
        let [out_features, in_features] = self.shape;
        // As in matmul_t: checked in every build before raw indexing.
        assert_eq!(
            dy.len(),
            rows * out_features,
            "dy is not [{rows}, {out_features}]"
        );
        assert_eq!(
            dx.len(),
            rows * in_features,
            "dx is not [{rows}, {in_features}]"
        );
        let dyq = QuantisedRows::quantise(dy, rows, out_features);
        let threads = worker_count(rows, self.shape, in_features.div_ceil(NR));
        if threads == 1 {
            self.matmul_cols(&dyq, rows, 0..in_features, dx);
            return;
        }
        let parts = run_split(
            split_range(in_features, threads, NR),
            |range, local| self.matmul_cols(&dyq, rows, range, local),
            rows,
        );
        scatter_columns(&parts, rows, dx, in_features);
    }

    /// `dx[t, i - cols.start] = Σ_o dy[t, o] · W[o, i]` for `i` in `cols`
    /// (`cols.start` a multiple of NR); `dx` rows are `cols.len()` apart.
    fn matmul_cols(
        &self,
        dyq: &QuantisedRows,
        rows: usize,
        cols: std::ops::Range<usize>,
        dx: &mut [f32],
    ) {
        require_vnni();
        let [out_features, in_features] = self.shape;
        let blocks = in_features / BLOCK;
        let mut strip = Strip::new(STRIP_DEPTH.min(out_features));
        let mut depth_start = 0;
        while depth_start < out_features {
            let depth = STRIP_DEPTH.min(out_features - depth_start);
            let mut first = cols.start;
            while first < cols.end {
                let count = NR.min(cols.end - first);
                for (g, lanes) in strip
                    .scales
                    .chunks_exact_mut(NR)
                    .take(depth / BLOCK)
                    .enumerate()
                {
                    lanes.fill(self.scales[(depth_start / BLOCK + g) * blocks + first / BLOCK]);
                }
                // SAFETY: VNNI (with F and BW) checked above; the strip's
                // rows and columns lie inside the matrix.
                unsafe { self.interleave(depth_start, depth, first, count, &mut strip.pairs) };
                strip.multiply_part(
                    dyq,
                    depth_start..depth_start + depth,
                    rows,
                    count,
                    (dx, cols.len(), first - cols.start),
                    depth_start > 0,
                );
                first += count;
            }
            depth_start += depth;
        }
    }

    /// Rows `start .. start + depth`, columns `first .. first + count`
    /// (count ≤ NR), as pairs of rows: `pairs[r / 2, j] = (W[r, j], W[r + 1, j])`.
    ///
    /// # Safety
    /// AVX-512F must be available.
    #[target_feature(enable = "avx512f")]
    unsafe fn interleave(
        &self,
        start: usize,
        depth: usize,
        first: usize,
        count: usize,
        pairs: &mut [i16],
    ) {
        let in_features = self.shape[1];
        for (p, out) in pairs.chunks_exact_mut(2 * NR).take(depth / 2).enumerate() {
            let even = &self.values[(start + 2 * p) * in_features + first..][..count];
            let odd = &self.values[(start + 2 * p + 1) * in_features + first..][..count];
            if count == NR {
                for half in 0..2 {
                    // SAFETY: each row holds NR values from `first`; `out` 2·NR.
                    unsafe {
                        let e = _mm512_cvtepu16_epi32(_mm256_loadu_si256(
                            even.as_ptr().add(16 * half).cast(),
                        ));
                        let o = _mm512_cvtepu16_epi32(_mm256_loadu_si256(
                            odd.as_ptr().add(16 * half).cast(),
                        ));
                        let two = _mm512_or_si512(e, _mm512_slli_epi32(o, 16));
                        _mm512_storeu_si512(out.as_mut_ptr().add(NR * half).cast(), two);
                    }
                }
            } else {
                out.fill(0);
                for (j, two) in out.chunks_exact_mut(2).take(count).enumerate() {
                    two[0] = even[j];
                    two[1] = odd[j];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vnni::available;

    /// Both products of a dense matrix in 64 × 64 tiles against the exact
    /// sums: each value within half a step (2⁻¹² of the largest |value| of
    /// its operand here) so each sum within that of Σ |x|·max|w| + |w|·max|x|.
    /// 1152 rows take two depth passes of the input gradient; 40 token rows
    /// are enough work for the threaded path.
    #[test]
    fn quantised_matrix_products_stay_within_their_steps() {
        if !available() {
            eprintln!("no AVX-512 VNNI on this CPU");
            return;
        }
        let value =
            |i: usize, seed: usize| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0;
        let [out_features, in_features, rows] = [1152, 128, 40];
        let w: Vec<f32> = (0..out_features * in_features)
            .map(|i| value(i, 1) * 0.05)
            .collect();
        let q = QuantisedMatrix::quantise(&w, [out_features, in_features]).unwrap();
        assert!(QuantisedMatrix::quantise(&w[..100 * in_features], [100, in_features]).is_none());
        let largest = |v: &[f32]| v.iter().fold(0.0f64, |m, a| m.max(f64::from(a.abs())));
        let max_w = largest(&w);
        let check = |x: &[f32],
                     got: &[f32],
                     depth: usize,
                     width: usize,
                     weight: &dyn Fn(usize, usize) -> f32| {
            let max_x = largest(x);
            for t in 0..rows {
                for j in 0..width {
                    let (mut sum, mut bound) = (0.0f64, 0.0f64);
                    for k in 0..depth {
                        let (a, b) = (f64::from(x[t * depth + k]), f64::from(weight(j, k)));
                        sum += a * b;
                        bound += a.abs() * max_w + b.abs() * max_x + max_x * max_w / QMAX as f64;
                    }
                    let g = f64::from(got[t * width + j]);
                    assert!(
                        (g - sum).abs() <= 0.6 / f64::from(QMAX) * bound,
                        "[{t}, {j}]: {g} vs {sum}"
                    );
                }
            }
        };
        let x: Vec<f32> = (0..rows * in_features).map(|i| value(i, 2) * 3.0).collect();
        let mut y = vec![f32::NAN; rows * out_features];
        q.matmul_t(&x, rows, &mut y);
        check(&x, &y, in_features, out_features, &|o, k| {
            w[o * in_features + k]
        });
        let dy: Vec<f32> = (0..rows * out_features)
            .map(|i| value(i, 3) * 0.01)
            .collect();
        let mut dx = vec![f32::NAN; rows * in_features];
        q.matmul(&dy, rows, &mut dx);
        check(&dy, &dx, out_features, in_features, &|i, o| {
            w[o * in_features + i]
        });
    }
}
