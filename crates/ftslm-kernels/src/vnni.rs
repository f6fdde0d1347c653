//! Products in 16-bit integers on AVX-512 VNNI. `vpdpwssd` adds two i16
//! products into each i32 lane; this CPU issues it as often as an f32 FMA,
//! so it does twice the multiply-adds per cycle (measured: 329 G vs 178 G
//! multiply-adds ×2 per second on one core).
//!
//! Both operands are quantised in blocks of [`BLOCK`] values along the depth,
//! each block with its own f32 scale, to at most ±[`QMAX`] = 2¹²: the
//! rounding error is ≤ 2⁻¹³ of the block's largest value (bf16 keeps 2⁻⁹ of
//! each value), and 64 products of two such integers stay below 2³⁰, so an
//! i32 lane cannot overflow inside a block. After each block the integer sums
//! are scaled into f32 accumulators:
//!
//!   C[i, j] = Σ_blocks a_scale[i, b] · b_scale[b, j] · Σ_{k ∈ b} A[i, k] · B[k, j]
//!
//! A is read by broadcasting one pair of i16 per row (rows anywhere in
//! memory), B as rows of [`NR`] pairs `(B[k, j], B[k + 1, j])`, as in
//! `avx512`'s f32 kernel.

use std::arch::x86_64::*;

/// Rows of A per kernel call: 6 rows × 2 vectors of i32 sums plus as many
/// f32 accumulators fill 24 of the 32 zmm registers.
pub(crate) const MR: usize = 6;
/// Columns of B per kernel call (two zmm vectors of 16 lanes).
pub(crate) const NR: usize = 32;
/// Depth of one quantisation block (and of bitsandbytes' NF4 blocks).
pub(crate) const BLOCK: usize = 64;
/// The largest magnitude a quantised value takes.
pub(crate) const QMAX: f32 = 4096.0;

/// Whether this CPU runs the kernels in this module.
pub(crate) fn available() -> bool {
    use std::sync::OnceLock;
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
    })
}

pub(crate) fn require_vnni() {
    assert!(
        available(),
        "a VNNI product was called on a CPU without AVX-512 VNNI"
    );
}

/// One row of A for the kernel: `blocks · BLOCK` quantised values and one
/// scale per block.
#[derive(Clone, Copy)]
pub(crate) struct QuantisedRow<'a> {
    pub values: &'a [i16],
    pub scales: &'a [f32],
}

/// See the module documentation; `b` holds `blocks · BLOCK / 2` rows of NR
/// pairs and `b_scale` `blocks` rows of NR scales.
///
/// # Safety
/// AVX-512F/BW/VNNI must be available; every row of `a` must hold `blocks`
/// blocks and `b`, `b_scale` as many as said above.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn kernel(
    blocks: usize,
    a: &[QuantisedRow<'_>; MR],
    b: *const i16,
    b_scale: *const f32,
) -> [[f32; NR]; MR] {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let a_pairs: [*const i32; MR] = std::array::from_fn(|i| a[i].values.as_ptr().cast());
    for block in 0..blocks {
        let mut sums = [[_mm512_setzero_si512(); 2]; MR];
        for pair in block * BLOCK / 2..(block + 1) * BLOCK / 2 {
            // SAFETY: the caller keeps every block inside both operands.
            unsafe {
                let row = b.add(pair * 2 * NR);
                let b0 = _mm512_loadu_si512(row.cast());
                let b1 = _mm512_loadu_si512(row.add(NR).cast());
                for (i, sums) in sums.iter_mut().enumerate() {
                    let ai = _mm512_set1_epi32(a_pairs[i].add(pair).read_unaligned());
                    sums[0] = _mm512_dpwssd_epi32(sums[0], ai, b0);
                    sums[1] = _mm512_dpwssd_epi32(sums[1], ai, b1);
                }
            }
        }
        // SAFETY: b_scale holds NR scales per block.
        let (s0, s1) = unsafe {
            let scales = b_scale.add(block * NR);
            (_mm512_loadu_ps(scales), _mm512_loadu_ps(scales.add(16)))
        };
        for ((acc, sums), row) in acc.iter_mut().zip(&sums).zip(a) {
            let scale = _mm512_set1_ps(row.scales[block]);
            acc[0] = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(sums[0]),
                _mm512_mul_ps(scale, s0),
                acc[0],
            );
            acc[1] = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(sums[1]),
                _mm512_mul_ps(scale, s1),
                acc[1],
            );
        }
    }
    let mut c = [[0.0f32; NR]; MR];
    for (out, acc) in c.iter_mut().zip(&acc) {
        // SAFETY: each output row holds exactly two vectors.
        unsafe {
            _mm512_storeu_ps(out.as_mut_ptr(), acc[0]);
            _mm512_storeu_ps(out.as_mut_ptr().add(16), acc[1]);
        }
    }
    c
}

/// Quantises one block: `out[k] = round(src[k] / scale)`, returns `scale`
/// (0 for an all-zero block, whose values are then all 0; NaN for a block
/// with a value that is not finite). Written in intrinsics: the compiler's
/// version reduced the sixteen lanes' maxima one compare at a time.
///
/// # Safety
/// AVX-512F/BW must be available; `src` and `out` hold at least one block.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn quantise_block(src: &[f32], out: &mut [i16]) -> f32 {
    assert!(src.len() >= BLOCK && out.len() >= BLOCK);
    // SAFETY: both slices hold a block (asserted above): four vectors of 16.
    unsafe {
        let v: [__m512; 4] = std::array::from_fn(|i| _mm512_loadu_ps(src.as_ptr().add(16 * i)));
        let largest = _mm512_reduce_max_ps(_mm512_max_ps(
            _mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])),
            _mm512_max_ps(_mm512_abs_ps(v[2]), _mm512_abs_ps(v[3])),
        ));
        if largest == 0.0 || !largest.is_finite() {
            out[..BLOCK].fill(0);
            return if largest == 0.0 { 0.0 } else { f32::NAN };
        }
        // Rounds to nearest even, as `round_to_i16` (the default MXCSR mode).
        let inverse = _mm512_set1_ps(QMAX / largest);
        for (i, v) in v.iter().enumerate() {
            let q = _mm512_cvtps_epi32(_mm512_mul_ps(*v, inverse));
            _mm256_storeu_si256(
                out.as_mut_ptr().add(16 * i).cast(),
                _mm512_cvtepi32_epi16(q),
            );
        }
        largest / QMAX
    }
}

/// Rounds to nearest through the float's bits (|v| ≤ QMAX): a plain
/// `as` conversion saturates and keeps the loop one lane at a time.
#[inline(always)]
pub(crate) fn round_to_i16(v: f32) -> i16 {
    const SHIFTER: f32 = 12_582_912.0; // 1.5 · 2²³: the sum's low bits are round(v)
    ((v + SHIFTER).to_bits() as i32 - SHIFTER.to_bits() as i32) as i16
}

/// Rows of `[rows, depth]` values quantised in blocks along each row: the
/// A operand of the input-gradient products.
pub(crate) struct QuantisedRows {
    values: Vec<i16>,
    scales: Vec<f32>,
    depth: usize,
}

impl QuantisedRows {
    /// `depth` must be a multiple of [`BLOCK`].
    pub(crate) fn quantise(x: &[f32], rows: usize, depth: usize) -> Self {
        debug_assert!(depth.is_multiple_of(BLOCK));
        let mut values = vec![0i16; rows * depth];
        let mut scales = vec![0.0f32; rows * depth / BLOCK];
        quantise_blocks(&x[..rows * depth], &mut values, &mut scales);
        QuantisedRows {
            values,
            scales,
            depth,
        }
    }
}

/// Quantises consecutive blocks of `src` into `values`, a scale each.
fn quantise_blocks(src: &[f32], values: &mut [i16], scales: &mut [f32]) {
    require_vnni();
    // SAFETY: VNNI's CPUs have AVX-512F/BW (checked just above).
    unsafe { quantise_blocks_avx512(src, values, scales) }
}

/// # Safety
/// AVX-512F/BW must be available.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantise_blocks_avx512(src: &[f32], values: &mut [i16], scales: &mut [f32]) {
    for ((src, out), scale) in src
        .chunks_exact(BLOCK)
        .zip(values.chunks_exact_mut(BLOCK))
        .zip(scales.iter_mut())
    {
        // SAFETY: this function's features; whole blocks.
        *scale = unsafe { quantise_block(src, out) };
    }
}

/// One panel of [`QuantisedPanels`] from its `count` token rows.
fn pack_panel(rows: &[f32], count: usize, depth: usize, panel: &mut [i16], scales: &mut [f32]) {
    require_vnni();
    // SAFETY: VNNI's CPUs have AVX-512F/BW (checked just above).
    unsafe { pack_panel_avx512(rows, count, depth, panel, scales) }
}

/// # Safety
/// AVX-512F/BW must be available.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_panel_avx512(
    rows: &[f32],
    count: usize,
    depth: usize,
    panel: &mut [i16],
    scales: &mut [f32],
) {
    let mut block = [0u32; NR * BLOCK / 2]; // [token, pair in block]
    for b in 0..depth / BLOCK {
        for j in 0..count {
            let src = &rows[j * depth + b * BLOCK..][..BLOCK];
            let mut out = [0i16; BLOCK];
            // SAFETY: this function's features; a whole block.
            scales[b * NR + j] = unsafe { quantise_block(src, &mut out) };
            for (pair, two) in block[j * BLOCK / 2..(j + 1) * BLOCK / 2]
                .iter_mut()
                .zip(out.chunks_exact(2))
            {
                *pair = u32::from(two[0] as u16) | (u32::from(two[1] as u16) << 16);
            }
        }
        // Pairs are written in order; the reads walk the block's tokens.
        let rows = &mut panel[b * BLOCK * NR..(b + 1) * BLOCK * NR];
        for (pair, row) in rows.chunks_exact_mut(2 * NR).enumerate() {
            for (j, out) in row.chunks_exact_mut(2).take(count).enumerate() {
                let two = block[j * BLOCK / 2 + pair];
                out[0] = two as u16 as i16;
                out[1] = (two >> 16) as u16 as i16;
            }
        }
    }
}

/// xᵀ quantised in panels of NR tokens: panel p holds the pair
/// `(x[p·NR + j, k], x[p·NR + j, k + 1])` at `[k / 2, j]` and the scale of
/// token j's block b at `[b, j]`; zero past the last token.
pub(crate) struct QuantisedPanels {
    values: Vec<i16>,
    scales: Vec<f32>,
    depth: usize,
    tokens: usize,
}

impl QuantisedPanels {
    /// x [tokens, depth] row-major; `depth` must be a multiple of [`BLOCK`].
    pub(crate) fn pack(x: &[f32], tokens: usize, depth: usize) -> Self {
        debug_assert!(depth.is_multiple_of(BLOCK));
        let blocks = depth / BLOCK;
        let panels = tokens.div_ceil(NR);
        let mut values = vec![0i16; panels * depth * NR];
        let mut scales = vec![0.0f32; panels * blocks * NR];
        for (p, (panel, panel_scales)) in values
            .chunks_exact_mut(depth * NR)
            .zip(scales.chunks_exact_mut(blocks * NR))
            .enumerate()
        {
            let first = p * NR;
            let count = NR.min(tokens - first);
            pack_panel(
                &x[first * depth..(first + count) * depth],
                count,
                depth,
                panel,
                panel_scales,
            );
        }
        QuantisedPanels {
            values,
            scales,
            depth,
            tokens,
        }
    }

    /// Whether these are the panels of a [tokens, depth] input.
    pub(crate) fn holds(&self, tokens: usize, depth: usize) -> bool {
        self.tokens == tokens && self.depth == depth
    }

    /// `y[t, row_offset + i] = Σ_k a_i[k] · x[t, k]` for the `count` rows of
    /// `a` and every token; `y` rows are `width` apart.
    pub(crate) fn multiply_rows(
        &self,
        a: &[QuantisedRow<'_>; MR],
        count: usize,
        y: &mut [f32],
        width: usize,
        row_offset: usize,
    ) {
        require_vnni();
        let blocks = self.depth / BLOCK;
        for row in a {
            assert!(row.values.len() >= self.depth && row.scales.len() >= blocks);
        }
        let panels = self
            .values
            .chunks_exact(self.depth * NR)
            .zip(self.scales.chunks_exact(blocks * NR));
        for (p, (panel, scales)) in panels.enumerate() {
            // SAFETY: VNNI checked above; A rows checked above, each panel
            // holds `blocks` blocks of pairs and of scales.
            let c = unsafe { kernel(blocks, a, panel.as_ptr(), scales.as_ptr()) };
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

/// An NR-column strip of B for the input-gradient products: `depth` rows
/// (a multiple of [`BLOCK`]) as pairs, one scale per block and column.
pub(crate) struct Strip {
    pub pairs: Vec<i16>,
    pub scales: Vec<f32>,
}

impl Strip {
    pub(crate) fn new(depth: usize) -> Self {
        Strip {
            pairs: vec![0; depth * NR],
            scales: vec![0.0; depth / BLOCK * NR],
        }
    }

    /// `dst[t0 + i, at + j] = Σ_k a[t0 + i, k] · strip[k, j]` for every row
    /// of `a` and the first `count` columns; `dst` rows are `width` apart.
    pub(crate) fn multiply(
        &self,
        a: &QuantisedRows,
        rows: usize,
        count: usize,
        dst: &mut [f32],
        width: usize,
        at: usize,
    ) {
        self.multiply_part(a, 0..a.depth, rows, count, (dst, width, at), false);
    }

    /// [`Strip::multiply`] over the depths `part` of `a` (whole blocks),
    /// the strip holding those rows from its start; adds to `dst` when
    /// `accumulate`.
    pub(crate) fn multiply_part(
        &self,
        a: &QuantisedRows,
        part: std::ops::Range<usize>,
        rows: usize,
        count: usize,
        (dst, width, at): (&mut [f32], usize, usize),
        accumulate: bool,
    ) {
        require_vnni();
        assert!(part.start.is_multiple_of(BLOCK) && part.len().is_multiple_of(BLOCK));
        assert!(part.end <= a.depth);
        let blocks = part.len() / BLOCK;
        assert!(self.pairs.len() >= part.len() * NR && self.scales.len() >= blocks * NR);
        let a_blocks = a.depth / BLOCK;
        let row = |r: usize| QuantisedRow {
            values: &a.values[r * a.depth + part.start..r * a.depth + part.end],
            scales: &a.scales[r * a_blocks + part.start / BLOCK..(r + 1) * a_blocks],
        };
        let mut t0 = 0;
        while t0 < rows {
            let n = MR.min(rows - t0);
            let rows_a: [QuantisedRow<'_>; MR] = std::array::from_fn(|i| row(t0 + i.min(n - 1)));
            // SAFETY: VNNI checked above; every row of `a` holds `blocks`
            // blocks from `part.start`, and the strip as many (checked above).
            let c = unsafe { kernel(blocks, &rows_a, self.pairs.as_ptr(), self.scales.as_ptr()) };
            for (i, c_row) in c.iter().take(n).enumerate() {
                let start = (t0 + i) * width + at;
                let dst_row = &mut dst[start..start + count];
                if accumulate {
                    for (d, v) in dst_row.iter_mut().zip(c_row) {
                        *d += v;
                    }
                } else {
                    dst_row.copy_from_slice(&c_row[..count]);
                }
            }
            t0 += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_through_the_bits_rounds_to_nearest() {
        for v in [0.0f32, 0.49, 0.51, -0.51, 1.5, 2.5, -4096.0, 4095.6, -3.2] {
            assert_eq!(round_to_i16(v), v.round_ties_even() as i16, "{v}");
        }
    }

    #[test]
    fn a_block_keeps_its_values_within_half_a_step() {
        if !available() {
            eprintln!("no AVX-512 VNNI on this CPU: nothing is quantised");
            return;
        }
        let src: Vec<f32> = (0..BLOCK).map(|k| (k as f32 * 0.37).sin() * 3.0).collect();
        let mut q = [0i16; BLOCK];
        // SAFETY: VNNI's CPUs have AVX-512F/BW; whole blocks.
        let scale = unsafe { quantise_block(&src, &mut q) };
        let largest = src.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert_eq!(scale, largest / QMAX);
        for (v, &q) in src.iter().zip(&q) {
            assert!((v - f32::from(q) * scale).abs() <= 0.5 * scale * 1.0001);
            // The kernel's rounding is round_to_i16's (to nearest, ties even).
            assert_eq!(q, round_to_i16(v * (QMAX / largest)));
        }
        // SAFETY: as above.
        unsafe {
            assert_eq!(quantise_block(&[0.0; BLOCK], &mut q), 0.0);
            assert!(q.iter().all(|&q| q == 0));
            let mut bad = src.clone();
            bad[5] = f32::INFINITY;
            assert!(quantise_block(&bad, &mut q).is_nan());
        }
    }
}
