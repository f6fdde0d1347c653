//! Products with a dense row-major f32 weight on the AVX-512 kernel, and the
//! tiled transpose the attention products use.

#[cfg(target_arch = "x86_64")]
use crate::avx512;
#[cfg(target_arch = "x86_64")]
use crate::split::{run_split, scatter_columns, split_range, worker_count};

/// `dst [cols, rows] = srcᵀ` for `src [rows, cols]`, in 16 × 16 tiles: a
/// row at a time, each value was written to another cache line.
pub fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const TILE: usize = 16;
    let (src, dst) = (&src[..rows * cols], &mut dst[..rows * cols]);
    for r0 in (0..rows).step_by(TILE) {
        let tile_rows = TILE.min(rows - r0);
        for c0 in (0..cols).step_by(TILE) {
            let tile_cols = TILE.min(cols - c0);
            for c in c0..c0 + tile_cols {
                let out = &mut dst[c * rows + r0..c * rows + r0 + tile_rows];
                for (i, value) in out.iter_mut().enumerate() {
                    *value = src[(r0 + i) * cols + c];
                }
            }
        }
    }
}

/// `y[rows, out] = x[rows, in] · Wᵀ` for a dense row-major `W [out, in]`.
/// Returns false, touching nothing, where this CPU has no fast kernel.
pub fn dense_matmul_t(w: &[f32], shape: [usize; 2], x: &[f32], rows: usize, y: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        let [out_features, in_features] = shape;
        // The kernels index raw pointers from these lengths: a wrong shape
        // must stop here in every build, not read past a buffer.
        assert_eq!(w.len(), out_features * in_features, "W is not {shape:?}");
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
        let xt = avx512::TokenPanels::pack(x, rows, in_features);
        let threads = worker_count(rows, shape, out_features.div_ceil(avx512::MR));
        if threads == 1 {
            avx512::dense_matmul_t_rows(w, &xt, 0..out_features, y);
        } else {
            let parts = run_split(
                split_range(out_features, threads, avx512::MR),
                |range, local| avx512::dense_matmul_t_rows(w, &xt, range, local),
                rows,
            );
            scatter_columns(&parts, rows, y, out_features);
        }
        return true;
    }
    let _ = (w, shape, x, rows, y);
    false
}

/// `dx[rows, in] = dy[rows, out] · W` for a dense row-major `W [out, in]`.
/// Returns false, touching nothing, where this CPU has no fast kernel.
pub fn dense_matmul(w: &[f32], shape: [usize; 2], dy: &[f32], rows: usize, dx: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        let [out_features, in_features] = shape;
        // As in dense_matmul_t: checked in every build before raw indexing.
        assert_eq!(w.len(), out_features * in_features, "W is not {shape:?}");
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
        let threads = worker_count(rows, shape, in_features.div_ceil(avx512::NR));
        if threads == 1 {
            avx512::dense_matmul_cols(w, shape, dy, rows, 0..in_features, dx);
        } else {
            let parts = run_split(
                split_range(in_features, threads, avx512::NR),
                |range, local| avx512::dense_matmul_cols(w, shape, dy, rows, range, local),
                rows,
            );
            scatter_columns(&parts, rows, dx, in_features);
        }
        return true;
    }
    let _ = (w, shape, dy, rows, dx);
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) >> 20) as f32 / 2048.0 - 1.0)
            .collect()
    }

    /// Tiles whole and partial in both directions, and a single value.
    #[test]
    fn transpose_moves_every_value_to_its_mirror() {
        for (rows, cols) in [(1, 1), (17, 33), (32, 64), (64, 221), (5, 16)] {
            let src = values(rows * cols, 7);
            let mut dst = vec![f32::NAN; rows * cols];
            transpose(&src, rows, cols, &mut dst);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        dst[c * rows + r],
                        src[r * cols + c],
                        "{rows}x{cols} at {r},{c}"
                    );
                }
            }
        }
    }

    /// Checks `got[r, j] = Σ_k term(r, j, k)` within f32 rounding of the terms' magnitude.
    fn assert_sums(
        got: &[f32],
        rows: usize,
        cols: usize,
        depth: usize,
        term: impl Fn(usize, usize, usize) -> f64,
    ) {
        for r in 0..rows {
            for j in 0..cols {
                let (sum, magnitude) = (0..depth)
                    .map(|k| term(r, j, k))
                    .fold((0.0, 0.0), |(s, m), t| (s + t, m + t.abs()));
                let value = f64::from(got[r * cols + j]);
                assert!(
                    (value - sum).abs() <= 1e-5 * magnitude + 1e-30,
                    "[{r}, {j}]: {value} vs {sum}"
                );
            }
        }
    }

    /// Partial row groups, strips and token panels, and a depth past one
    /// block of the input-gradient product (so blocks accumulate).
    #[test]
    fn dense_products_equal_the_sums_they_define() {
        for (out_features, in_features, rows) in [(50, 70, 13), (2100, 40, 5), (64, 96, 40)] {
            let shape = [out_features, in_features];
            let w = values(out_features * in_features, 1);
            let x = values(rows * in_features, 2);
            let mut y = vec![f32::NAN; rows * out_features];
            if !dense_matmul_t(&w, shape, &x, rows, &mut y) {
                eprintln!("no fast kernel on this CPU");
                return;
            }
            assert_sums(&y, rows, out_features, in_features, |r, o, k| {
                f64::from(x[r * in_features + k]) * f64::from(w[o * in_features + k])
            });
            let dy = values(rows * out_features, 3);
            let mut dx = vec![f32::NAN; rows * in_features];
            assert!(dense_matmul(&w, shape, &dy, rows, &mut dx));
            assert_sums(&dx, rows, in_features, out_features, |r, i, o| {
                f64::from(dy[r * out_features + o]) * f64::from(w[o * in_features + i])
            });
        }
    }
}
