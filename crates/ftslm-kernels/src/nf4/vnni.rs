//! The NF4 products on `crate::vnni`'s 16-bit integer kernel, for
//! matrices whose rows are whole NF4 blocks (`in_features` a multiple of 64):
//!
//! * forward `y = x·Wᵀ` as `yᵀ = W·xᵀ`: A is MR rows of W decoded to
//!   `round(code · 2¹²)` with the block's absmax / 2¹² as scale (the code
//!   book to 2⁻¹³), B is xᵀ quantised in token panels;
//! * input gradient `dx = dy·W`: A is dy quantised row by row, B an NR-wide
//!   column strip of W. The strip lies in one block column, but each row of
//!   it has its own absmax, which varies along the depth; the strip is
//!   therefore quantised against the largest absmax of the column.

use std::arch::x86_64::*;
use std::ops::Range;

use crate::vnni::{
    require_vnni, QuantisedPanels, QuantisedRow, QuantisedRows, Strip, BLOCK, MR, NR, QMAX,
};

use super::avx512::unpack_codes;
use super::{Nf4Tensor, NF4_BLOCK_SIZE, NF4_CODE};

impl Nf4Tensor {
    /// Whether the integer products can run on this matrix.
    pub(super) fn fits_vnni(&self) -> bool {
        NF4_BLOCK_SIZE == BLOCK
            && self.in_features().is_multiple_of(BLOCK)
            && self.shape()[0].is_multiple_of(BLOCK)
    }

    /// Row `o` of W as `round(code · QMAX)` with one scale per block.
    ///
    /// # Safety
    /// AVX-512F/BW must be available; `o` is a row of the matrix and the
    /// buffers hold one row and its blocks.
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn decode_row_i16(&self, o: usize, values: &mut [i16], scales: &mut [f32]) {
        let depth = self.in_features();
        let table: [f32; 16] = std::array::from_fn(|c| (NF4_CODE[c] * QMAX).round());
        // SAFETY: the table holds exactly 16 f32.
        let table = unsafe { _mm512_loadu_ps(table.as_ptr()) };
        let first_block = o * depth / BLOCK;
        for (b, scale) in scales[..depth / BLOCK].iter_mut().enumerate() {
            *scale = self.absmax.block_absmax(first_block + b) / QMAX;
        }
        for (g, group) in values[..depth].chunks_exact_mut(16).enumerate() {
            let element = o * depth + g * 16;
            let bytes = &self.packed[element / 2..element / 2 + 8];
            // SAFETY: `bytes` holds the 8 bytes read; `group` the 16 written.
            unsafe {
                let codes = unpack_codes(bytes);
                let ints = _mm512_cvtps_epi32(_mm512_permutexvar_ps(codes, table));
                _mm256_storeu_si256(group.as_mut_ptr().cast(), _mm512_cvtepi32_epi16(ints));
            }
        }
    }

    /// Columns `first .. first + count` (count ≤ NR, inside one block column)
    /// of every row, as pairs of rows, against the column's largest absmax.
    ///
    /// # Safety
    /// AVX-512F/BW must be available; the columns lie inside the matrix.
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn decode_strip(
        &self,
        first: usize,
        count: usize,
        absmax: &mut [f32],
        strip: &mut Strip,
    ) {
        let [out_features, in_features] = self.shape();
        for (o, value) in absmax[..out_features].iter_mut().enumerate() {
            *value = self.absmax.block_absmax((o * in_features + first) / BLOCK);
        }
        let largest = absmax[..out_features]
            .iter()
            .fold(0.0f32, |m, &v| m.max(v.abs()));
        let column_scale = if largest > 0.0 { largest / QMAX } else { 0.0 };
        strip.scales.fill(column_scale);
        let inverse = if largest > 0.0 { QMAX / largest } else { 0.0 };
        // SAFETY: NF4_CODE holds exactly 16 f32.
        let table = unsafe { _mm512_loadu_ps(NF4_CODE.as_ptr()) };
        let low = _mm512_set1_epi32(0xffff);
        let decode = |o: usize, half: usize| {
            let start = o * in_features + first + half * 16;
            let span = count.saturating_sub(half * 16).min(16);
            let codes: [u8; 8] = if span == 16 {
                let mut codes = [0u8; 8];
                codes.copy_from_slice(&self.packed[start / 2..start / 2 + 8]);
                codes
            } else {
                // Codes past `count` decode as zero (code 7 is 0.0 in NF4).
                let mut codes = [0x77u8; 8];
                for e in 0..span {
                    let byte = self.packed[(start + e) / 2];
                    let code = if e % 2 == 0 { byte >> 4 } else { byte & 0x0f };
                    let shift = if e % 2 == 0 { 4 } else { 0 };
                    codes[e / 2] = (codes[e / 2] & !(0x0f << shift)) | (code << shift);
                }
                codes
            };
            // SAFETY: this function's features are the callee's.
            unsafe { scaled_codes(&codes, table, absmax[o] * inverse) }
        };
        // The strip's codes lie one row of W apart: each pair of rows reads
        // two cache lines the prefetchers did not foresee. Ask for them
        // PREFETCH_ROWS rows ahead.
        const PREFETCH_ROWS: usize = 16;
        for (pair, row) in strip.pairs.chunks_exact_mut(2 * NR).enumerate() {
            let o = 2 * pair;
            for ahead in [o + PREFETCH_ROWS, o + PREFETCH_ROWS + 1] {
                if ahead < out_features {
                    let at = (ahead * in_features + first) / 2;
                    // SAFETY: a prefetch of a byte inside `packed` (ahead is a row).
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(self.packed.as_ptr().add(at).cast()) };
                }
            }
            for half in 0..2 {
                let even = decode(o, half);
                let odd = decode(o + 1, half);
                let pairs =
                    _mm512_or_si512(_mm512_and_si512(even, low), _mm512_slli_epi32(odd, 16));
                // SAFETY: the row holds 2·NR i16, two vectors of 16 pairs.
                unsafe { _mm512_storeu_si512(row.as_mut_ptr().add(half * NR).cast(), pairs) };
            }
        }
    }

    /// `dst[t, o - rows.start] = x[t, :] · W[o, :]` for `o` in `rows`;
    /// `dst` rows are `rows.len()` apart.
    pub(super) fn matmul_t_vnni(&self, xq: &QuantisedPanels, rows: Range<usize>, dst: &mut [f32]) {
        require_vnni();
        let depth = self.in_features();
        let blocks = depth / BLOCK;
        let width = rows.len();
        let mut values = vec![0i16; MR * depth];
        let mut scales = vec![0.0f32; MR * blocks];
        let mut first = rows.start;
        while first < rows.end {
            let count = MR.min(rows.end - first);
            for (i, (v, s)) in values
                .chunks_exact_mut(depth)
                .zip(scales.chunks_exact_mut(blocks))
                .take(count)
                .enumerate()
            {
                // SAFETY: VNNI (with F and BW) checked above; the row is in the matrix.
                unsafe { self.decode_row_i16(first + i, v, s) };
            }
            let a: [QuantisedRow<'_>; MR] = std::array::from_fn(|i| {
                let i = i.min(count - 1);
                QuantisedRow {
                    values: &values[i * depth..(i + 1) * depth],
                    scales: &scales[i * blocks..(i + 1) * blocks],
                }
            });
            xq.multiply_rows(&a, count, dst, width, first - rows.start);
            first += count;
        }
    }

    /// `dst[t, i - cols.start] = Σ_o dy[t, o] · W[o, i]` for `i` in `cols`;
    /// `dst` rows are `cols.len()` apart. `cols.start` is a multiple of NR.
    pub(super) fn matmul_vnni(
        &self,
        dyq: &QuantisedRows,
        tokens: usize,
        cols: Range<usize>,
        dst: &mut [f32],
    ) {
        require_vnni();
        let out_features = self.shape()[0];
        let mut strip = Strip::new(out_features);
        let mut absmax = vec![0.0f32; out_features];
        let mut first = cols.start;
        while first < cols.end {
            let count = NR.min(cols.end - first);
            // SAFETY: VNNI (with F and BW) checked above; the strip is in the matrix.
            unsafe { self.decode_strip(first, count, &mut absmax, &mut strip) };
            strip.multiply(dyq, tokens, count, dst, cols.len(), first - cols.start);
            first += count;
        }
    }
}

/// `round(table[code] · factor)` for the 16 codes in `codes[..8]` (element
/// 2i in byte i's high nibble, 2i + 1 in its low one).
///
/// # Safety
/// AVX-512F must be available.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn scaled_codes(codes: &[u8; 8], table: __m512, factor: f32) -> __m512i {
    // SAFETY: this function's features; `codes` holds 8 bytes.
    let codes = unsafe { unpack_codes(codes) };
    let values = _mm512_permutexvar_ps(codes, table);
    _mm512_cvtps_epi32(_mm512_mul_ps(values, _mm512_set1_ps(factor)))
}
