//! The AVX-512 register-blocked product every hot matrix product runs:
//!
//!   C[i, j] = Σ_k A[i, k] · B[k, j]     C [MR, NR], held in 24 zmm registers
//!
//! A is read by broadcasting one scalar per row (rows anywhere in memory),
//! B one row of NR values per k (rows `ldb` apart), so neither operand is
//! transposed element by element. The dense products here and the NF4 ones
//! (`crate::nf4`) differ only in where A and B come from.

use std::arch::x86_64::*;
use std::ops::Range;

/// Rows of A per kernel call: 12 rows × 2 vectors = 24 accumulators, which
/// leaves registers for the two B vectors and the broadcast.
pub(crate) const MR: usize = 12;
/// Columns of B per kernel call (two zmm vectors of 16 f32).
pub(crate) const NR: usize = 32;
/// f32 per zmm vector.
pub(crate) const LANES: usize = 16;
/// Depth per pass of the input-gradient product: a block of A rows and the
/// matching rows of B stay in L2 while every strip uses them.
const DEPTH_BLOCK: usize = 1024;

/// Whether this CPU runs the kernels in this module.
pub(crate) fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// The safe entry points below call the AVX-512 kernel; callers choose
/// them only where `available()` holds, and this keeps that a checked fact
/// (a cached flag, once per product) rather than a comment.
pub(crate) fn require_avx512() {
    assert!(
        available(),
        "an AVX-512 product was called on a CPU without AVX-512F"
    );
}

/// `c[i][j] = Σ_{kk<depth} *a[i].add(kk) · *b.add(kk·ldb + j)`.
///
/// # Safety
/// AVX-512F must be available; every `a[i]` must be readable for `depth`
/// values and `b` for `depth` rows of `ldb ≥ NR` values.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn kernel(
    depth: usize,
    a: &[*const f32; MR],
    b: *const f32,
    ldb: usize,
) -> [[f32; NR]; MR] {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for kk in 0..depth {
        // SAFETY: the caller keeps kk < depth inside both operands.
        unsafe {
            let row = b.add(kk * ldb);
            let b0 = _mm512_loadu_ps(row);
            let b1 = _mm512_loadu_ps(row.add(LANES));
            for (i, acc) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*a[i].add(kk));
                acc[0] = _mm512_fmadd_ps(ai, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(ai, b1, acc[1]);
            }
        }
    }
    let mut c = [[0.0f32; NR]; MR];
    for (out, acc) in c.iter_mut().zip(&acc) {
        // SAFETY: each output row holds exactly two vectors.
        unsafe {
            _mm512_storeu_ps(out.as_mut_ptr(), acc[0]);
            _mm512_storeu_ps(out.as_mut_ptr().add(LANES), acc[1]);
        }
    }
    c
}

/// Rows `first..first + count` of a matrix with rows `stride` apart, each
/// from `column` to the end of the buffer; the rows past `count` repeat the
/// last one, so the kernel always reads valid memory and the caller ignores
/// those results.
pub(crate) fn rows_of(
    base: &[f32],
    first: usize,
    count: usize,
    stride: usize,
    column: usize,
) -> [&[f32]; MR] {
    std::array::from_fn(|i| &base[(first + i.min(count - 1)) * stride + column..])
}

/// The kernel's A operand: checks that every row holds `depth` values.
pub(crate) fn a_operand(rows: &[&[f32]; MR], depth: usize) -> [*const f32; MR] {
    std::array::from_fn(|i| {
        assert!(
            rows[i].len() >= depth,
            "A row {i} holds {} of {depth} values",
            rows[i].len()
        );
        rows[i].as_ptr()
    })
}

/// xᵀ in panels of NR tokens: panel p holds `x[p·NR + j, k]` at `[k, j]`,
/// zero past the last token, so the kernel reads whole vectors.
pub(crate) struct TokenPanels {
    values: Vec<f32>,
    depth: usize,
    tokens: usize,
}

impl TokenPanels {
    /// x [tokens, depth] row-major.
    pub(crate) fn pack(x: &[f32], tokens: usize, depth: usize) -> Self {
        let panels = tokens.div_ceil(NR);
        let mut values = vec![0.0f32; panels * depth * NR];
        // Written in order, one panel row at a time; the reads walk the
        // panel's NR token rows side by side, which stay in L1.
        for (p, panel) in values.chunks_exact_mut(depth * NR).enumerate() {
            let first = p * NR;
            let count = NR.min(tokens - first);
            let rows = &x[first * depth..(first + count) * depth];
            for (k, panel_row) in panel.chunks_exact_mut(NR).enumerate() {
                for (j, v) in panel_row.iter_mut().take(count).enumerate() {
                    *v = rows[j * depth + k];
                }
            }
        }
        TokenPanels {
            values,
            depth,
            tokens,
        }
    }

    pub(crate) fn depth(&self) -> usize {
        self.depth
    }

    /// `y[t, row_offset + i] = Σ_k a_i[k] · x[t, k]` for the `count` rows
    /// `a` points at and every token; `y` rows are `width` apart.
    pub(crate) fn multiply_rows(
        &self,
        a: &[&[f32]; MR],
        count: usize,
        y: &mut [f32],
        width: usize,
        row_offset: usize,
    ) {
        require_avx512();
        let a = a_operand(a, self.depth);
        for (p, panel) in self.values.chunks_exact(self.depth * NR).enumerate() {
            // SAFETY: AVX-512F checked above; each A row holds `depth`
            // values and each panel `depth` rows of NR.
            let c = unsafe { kernel(self.depth, &a, panel.as_ptr(), NR) };
            let tokens = NR.min(self.tokens - p * NR);
            for j in 0..tokens {
                let at = (p * NR + j) * width + row_offset;
                for (d, c_row) in y[at..at + count].iter_mut().zip(&c) {
                    *d = c_row[j];
                }
            }
        }
    }
}

/// `y[t, o - rows.start] = x[t, :] · W[o, :]` for `o` in `rows`, W dense
/// `[_, depth]` row-major; `y` rows are `rows.len()` apart.
pub(crate) fn dense_matmul_t_rows(w: &[f32], xt: &TokenPanels, rows: Range<usize>, y: &mut [f32]) {
    let depth = xt.depth();
    let mut first = rows.start;
    while first < rows.end {
        let count = MR.min(rows.end - first);
        let a = rows_of(w, first, count, depth, 0);
        xt.multiply_rows(&a, count, y, rows.len(), first - rows.start);
        first += count;
    }
}

/// `dx[t, i - cols.start] = Σ_o dy[t, o] · W[o, i]` for `i` in `cols`, W dense
/// `[out_features, in_features]`; `dx` rows are `cols.len()` apart.
pub(crate) fn dense_matmul_cols(
    w: &[f32],
    [out_features, in_features]: [usize; 2],
    dy: &[f32],
    tokens: usize,
    cols: Range<usize>,
    dx: &mut [f32],
) {
    require_avx512();
    let width = cols.len();
    // Each strip of W is copied into contiguous rows of NR (zeros past a
    // narrow strip's edge): read in place, rows `in_features` apart alias
    // onto a few L1 sets when that stride is a power of two.
    let mut strip = vec![0f32; DEPTH_BLOCK.min(out_features) * NR];
    let mut depth_start = 0;
    while depth_start < out_features {
        let depth = DEPTH_BLOCK.min(out_features - depth_start);
        let accumulate = depth_start > 0;
        let mut first = cols.start;
        while first < cols.end {
            let count = NR.min(cols.end - first);
            // A few rows of A (the LoRA products) do not repay the copy: a
            // full-width strip is then read where it lies.
            let in_place = tokens <= 2 * MR && count == NR;
            let (b, ldb) = if in_place {
                (w[depth_start * in_features + first..].as_ptr(), in_features)
            } else {
                for (o, strip_row) in strip.chunks_exact_mut(NR).take(depth).enumerate() {
                    let at = (depth_start + o) * in_features + first;
                    strip_row[..count].copy_from_slice(&w[at..at + count]);
                    strip_row[count..].fill(0.0);
                }
                (strip.as_ptr(), NR)
            };
            let mut t0 = 0;
            while t0 < tokens {
                let rows = MR.min(tokens - t0);
                let a = a_operand(&rows_of(dy, t0, rows, out_features, depth_start), depth);
                // SAFETY: AVX-512F checked above; each A row holds `depth`
                // values from depth_start, and B `depth` rows of NR values
                // `ldb` apart (the strip, or W's own rows: first + NR ≤ in).
                let c = unsafe { kernel(depth, &a, b, ldb) };
                store_rows(
                    &c,
                    rows,
                    count,
                    dx,
                    (t0, first - cols.start),
                    width,
                    accumulate,
                );
                t0 += rows;
            }
            first += count;
        }
        depth_start += depth;
    }
}

/// Writes (or adds) the first `rows × count` of a kernel tile at
/// `dst[at.0 + i, at.1 + j]`, rows `width` apart.
pub(crate) fn store_rows(
    c: &[[f32; NR]; MR],
    rows: usize,
    count: usize,
    dst: &mut [f32],
    at: (usize, usize),
    width: usize,
    accumulate: bool,
) {
    for (i, c_row) in c.iter().take(rows).enumerate() {
        let start = (at.0 + i) * width + at.1;
        let dst_row = &mut dst[start..start + count];
        if accumulate {
            for (d, v) in dst_row.iter_mut().zip(c_row) {
                *d += v;
            }
        } else {
            dst_row.copy_from_slice(&c_row[..count]);
        }
    }
}
