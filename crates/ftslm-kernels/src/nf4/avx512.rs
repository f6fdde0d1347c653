//! The NF4 products on AVX-512, built on `crate::avx512`'s kernel:
//!
//! * forward `y = x·Wᵀ` is computed as `yᵀ = W·xᵀ`: A is MR rows of W
//!   decoded straight from the codes, 16 at a time, B is xᵀ in token panels;
//! * input gradient `dx = dy·W`: A is MR rows of dy as they lie in memory,
//!   B is an NR-wide column strip of W decoded for every output row.
//!
//! Each decoded value is used by a whole panel of tokens before it is
//! dropped, so W is decoded once per call and never exists in f32 at full size.

use std::arch::x86_64::*;
use std::ops::Range;

use crate::avx512::{
    a_operand, kernel, require_avx512, rows_of, store_rows, TokenPanels, LANES, MR, NR,
};

use super::{Nf4Tensor, NF4_BLOCK_SIZE, NF4_CODE};

impl Nf4Tensor {
    /// Decodes flat elements `start .. start + out.len()` with vector
    /// lookups where the span lies on whole 16-value groups (they never
    /// straddle a 64-value block), element by element otherwise.
    fn decode_span_avx512(&self, start: usize, out: &mut [f32]) {
        if !start.is_multiple_of(LANES) || !out.len().is_multiple_of(LANES) {
            self.decode_span(start, out);
            return;
        }
        require_avx512();
        // SAFETY: AVX-512F checked just above; the span lies inside the
        // matrix (the callers' invariant, as for decode_span).
        unsafe { self.decode_groups(start, out) }
    }

    /// # Safety
    /// AVX-512F must be available; `start` and `out.len()` are multiples of
    /// 16 and the span lies inside the matrix.
    #[target_feature(enable = "avx512f")]
    unsafe fn decode_groups(&self, start: usize, out: &mut [f32]) {
        // SAFETY: NF4_CODE holds exactly 16 f32.
        let code = unsafe { _mm512_loadu_ps(NF4_CODE.as_ptr()) };
        for (g, group) in out.chunks_exact_mut(LANES).enumerate() {
            let element = start + g * LANES;
            let scale = _mm512_set1_ps(self.absmax.block_absmax(element / NF4_BLOCK_SIZE));
            let bytes = &self.packed[element / 2..element / 2 + LANES / 2];
            // SAFETY: `bytes` holds the 8 bytes read; `group` the 16 written.
            unsafe {
                let codes = unpack_codes(bytes);
                let values = _mm512_mul_ps(_mm512_permutexvar_ps(codes, code), scale);
                _mm512_storeu_ps(group.as_mut_ptr(), values);
            }
        }
    }

    /// `dst[t, o - rows.start] = x[t, :] · W[o, :]` for `o` in `rows` (W's
    /// rows, the output's columns); `dst` rows are `rows.len()` apart.
    pub(super) fn matmul_t_avx512(&self, xt: &TokenPanels, rows: Range<usize>, dst: &mut [f32]) {
        let depth = self.in_features();
        let width = rows.len();
        let mut w_rows = vec![0.0f32; MR * depth]; // [MR, in_features]
        let mut first = rows.start;
        while first < rows.end {
            let count = MR.min(rows.end - first);
            for (i, row) in w_rows.chunks_exact_mut(depth).take(count).enumerate() {
                self.decode_span_avx512((first + i) * depth, row);
            }
            let a = rows_of(&w_rows, 0, count, depth, 0);
            xt.multiply_rows(&a, count, dst, width, first - rows.start);
            first += count;
        }
    }

    /// `dst[t, i - cols.start] = Σ_o dy[t, o] · W[o, i]` for `i` in `cols`
    /// (W's columns); `dst` rows are `cols.len()` apart.
    pub(super) fn matmul_avx512(
        &self,
        dy: &[f32],
        tokens: usize,
        cols: Range<usize>,
        dst: &mut [f32],
    ) {
        require_avx512();
        let [out_features, in_features] = self.shape();
        let width = cols.len();
        let mut strip = vec![0.0f32; out_features * NR]; // [out_features, NR]
        let mut first = cols.start;
        while first < cols.end {
            let count = NR.min(cols.end - first);
            if count < NR {
                strip.fill(0.0);
            }
            for (o, strip_row) in strip.chunks_exact_mut(NR).enumerate() {
                self.decode_span_avx512(o * in_features + first, &mut strip_row[..count]);
            }
            let mut t0 = 0;
            while t0 < tokens {
                let rows = MR.min(tokens - t0);
                let a = a_operand(&rows_of(dy, t0, rows, out_features, 0), out_features);
                // SAFETY: AVX-512F checked at the top of this function;
                // each dy row holds out_features values, the strip as many rows of NR.
                let c = unsafe { kernel(out_features, &a, strip.as_ptr(), NR) };
                store_rows(&c, rows, count, dst, (t0, first - cols.start), width, false);
                t0 += rows;
            }
            first += count;
        }
    }
}

/// The 16 codes packed in `bytes[..8]`, one per i32 lane: a byte holds
/// element 2i in its high nibble and 2i + 1 in its low one.
///
/// # Safety
/// AVX-512F must be available; `bytes` holds at least 8 bytes.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn unpack_codes(bytes: &[u8]) -> __m512i {
    debug_assert!(bytes.len() >= 8);
    let shifts = _mm512_set_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
    // SAFETY: the caller keeps 8 bytes readable.
    let eight = unsafe { _mm_loadl_epi64(bytes.as_ptr().cast()) };
    let doubled = _mm_unpacklo_epi8(eight, eight); // b0 b0 b1 b1 …
    _mm512_and_si512(
        _mm512_srlv_epi32(_mm512_cvtepu8_epi32(doubled), shifts),
        _mm512_set1_epi32(0x0f),
    )
}
