//! The matmul precision of the products a thread starts, and whether this
//! CPU has the integer kernels `High` precision uses.

use std::cell::Cell;

/// How exactly the frozen weights' products are computed, as PyTorch's
/// `torch.set_float32_matmul_precision`: `Highest` multiplies in f32;
/// `High` lets CPUs with AVX-512 VNNI multiply 16-bit integers quantised in
/// blocks of 64 (each value to 2⁻¹³ of its block's largest, finer than
/// bf16's 2⁻⁹ of itself) at twice the f32 rate, accumulating exactly in
/// i32 and then in f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MatmulPrecision {
    Highest,
    #[default]
    High,
}

thread_local! {
    /// This thread's precision where [`with_matmul_precision`] set one.
    static THREAD_PRECISION: Cell<Option<MatmulPrecision>> =
        const { Cell::new(None) };
}

/// Runs `f` with the products it starts on this thread at `precision`.
pub fn with_matmul_precision<R>(precision: MatmulPrecision, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<MatmulPrecision>);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_PRECISION.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(THREAD_PRECISION.with(|p| p.replace(Some(precision))));
    f()
}

/// The precision products started on this thread run at now: the
/// innermost [`with_matmul_precision`] (a `ComputePolicy` sets it), else the
/// default, `High`.
pub fn matmul_precision() -> MatmulPrecision {
    THREAD_PRECISION.with(Cell::get).unwrap_or_default()
}

/// Whether this CPU has the 16-bit integer kernels `High` precision uses.
pub fn integer_products_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return crate::vnni::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether products started on this thread now may use the 16-bit integer
/// kernels (`High` precision on a CPU that has them).
#[inline]
pub fn integer_products() -> bool {
    matmul_precision() == MatmulPrecision::High && integer_products_available()
}
