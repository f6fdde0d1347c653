//! This machine's own arithmetic peaks, from registers: the benchmarks
//! divide a kernel's rate by them.

use std::arch::x86_64::*;

/// f32 FMAs on 24 independent AVX-512 chains (`iterations × 24 × 16`
/// multiply-adds, as the product kernel keeps 24 accumulators); None
/// without AVX-512F.
pub fn f32_fma_loop(iterations: usize) -> Option<f32> {
    #[target_feature(enable = "avx512f")]
    fn run(iterations: usize) -> f32 {
        let mut acc = [_mm512_set1_ps(0.0); 24];
        let a = _mm512_set1_ps(0.999_999);
        let b = _mm512_set1_ps(1e-7);
        for _ in 0..iterations {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        let mut total = _mm512_setzero_ps();
        for v in acc {
            total = _mm512_add_ps(total, v);
        }
        _mm512_reduce_add_ps(total)
    }
    if !crate::avx512_available() {
        return None;
    }
    // SAFETY: AVX-512F was detected just above.
    Some(unsafe { run(iterations) })
}

/// The 16-bit integer kernel's instruction (`vpdpwssd`) on 24 chains:
/// `iterations × 24 × 32` multiply-adds; None without AVX-512 VNNI.
pub fn int16_dot_loop(iterations: usize) -> Option<i32> {
    #[target_feature(enable = "avx512f,avx512vnni")]
    fn run(iterations: usize) -> i32 {
        let mut acc = [_mm512_setzero_si512(); 24];
        let a = _mm512_set1_epi16(3);
        let b = _mm512_set1_epi16(-2);
        for _ in 0..iterations {
            for v in acc.iter_mut() {
                *v = _mm512_dpwssd_epi32(*v, a, b);
            }
        }
        let mut total = _mm512_setzero_si512();
        for v in acc {
            total = _mm512_add_epi32(total, v);
        }
        _mm512_reduce_add_epi32(total)
    }
    if !crate::integer_products_available() {
        return None;
    }
    // SAFETY: AVX-512F and VNNI were detected just above.
    Some(unsafe { run(iterations) })
}
