//! ftslm-kernels owns all of ftslm's `unsafe` code and the CPU arithmetic
//! of the training hot path, on plain slices (no tensor library):
//!
//! * the products: frozen weights dense (`dense`), in NF4 (`nf4`, stored
//!   bit for bit as bitsandbytes does) and the LM head quantised to 16-bit
//!   integers (`QuantisedMatrix`), on one register-blocked AVX-512 kernel
//!   (`avx512`) and its AVX-512 VNNI integer twin (`vnni`), with portable
//!   loops for other CPUs; threads split a product's output columns
//!   (`split`) under the caller's thread limit and matmul precision
//!   (`precision`), both set per thread by the model's `ComputePolicy`;
//! * the element-wise passes around them, forward and backward: RMSNorm
//!   (`norm`), SwiGLU (`swiglu`), RoPE (`rope`), the causal and
//!   cross-entropy softmaxes (`softmax`), LoRA dropout masks (`dropout`),
//!   each compiled a second time for AVX-512 through `wide_fn!`;
//! * the read-only memory map of weight files (`mapped_file`), and the
//!   allocator policy the `ftslm` binary sets for training (`allocator`;
//!   no library calls it).
//!
//! These are the CPU backend's operations. Every public function checks the
//! lengths it is handed against the shape it is told, in every build, before
//! any raw indexing; the rest of the workspace forbids unsafe code.

pub mod allocator;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
pub mod dense;
pub mod dropout;
mod exp;
pub mod mapped_file;
pub mod nf4;
pub mod norm;
#[cfg(target_arch = "x86_64")]
pub mod peak;
pub mod precision;
#[cfg(target_arch = "x86_64")]
mod quantised_matrix;
pub mod rope;
pub mod softmax;
mod split;
pub mod swiglu;
#[cfg(target_arch = "x86_64")]
pub(crate) mod vnni;
mod wide;

pub use dense::{dense_matmul, dense_matmul_t, transpose};
pub use exp::exp;
pub use mapped_file::MappedFile;
pub use precision::{
    integer_products, integer_products_available, matmul_precision, with_matmul_precision,
    MatmulPrecision,
};
#[cfg(target_arch = "x86_64")]
pub use quantised_matrix::QuantisedMatrix;
pub(crate) use split::{run_split, scatter_columns, split_range, worker_count};
pub use split::{thread_limit, threads, with_thread_limit};
pub use wide::{dot, max, sum};
pub(crate) use wide::{wide_fn, written_vec};

/// Whether this CPU runs the AVX-512 kernels (checked once, then cached).
#[inline]
pub(crate) fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return avx512::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `value`, or 0 where it is subnormal. Probabilities and their gradients
/// underflow into that range (a softmax over 49k logits, a sharp attention
/// row), and every FMA touching a subnormal takes a microcode assist that
/// made one attention backward ten times slower; values below 1.2e-38 carry
/// nothing a step could use.
#[inline]
pub fn flush_subnormal(value: f32) -> f32 {
    if value.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        value
    }
}
