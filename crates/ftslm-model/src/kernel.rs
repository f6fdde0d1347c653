//! The bridge from candle tensors to `ftslm_kernels`: a contiguous f32 (or
//! u8) tensor in CPU memory is viewed as the slice the kernels work on,
//! without a copy; any other tensor takes candle's own ops. The kernels'
//! products, precision and thread limit are re-exported here so that the
//! layer code has one place to reach them.

use candle_core::{Storage, Tensor};

#[cfg(target_arch = "x86_64")]
pub use ftslm_kernels::QuantisedMatrix;
pub use ftslm_kernels::{
    dense_matmul, dense_matmul_t, dot, dropout, exp, flush_subnormal, integer_products,
    integer_products_available, matmul_precision, max, norm, rope, softmax, sum, swiglu,
    thread_limit, threads, transpose, with_matmul_precision, with_thread_limit, MatmulPrecision,
};

/// Runs `f` on the values of a contiguous f32 tensor in CPU memory without
/// copying them; None for any other tensor.
pub fn with_cpu_f32<R>(tensor: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    with_cpu_values(tensor, f)
}

/// [`with_cpu_f32`] for a u8 tensor.
pub fn with_cpu_u8<R>(tensor: &Tensor, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    with_cpu_values(tensor, f)
}

fn with_cpu_values<T: candle_core::WithDType, R>(
    tensor: &Tensor,
    f: impl FnOnce(&[T]) -> R,
) -> Option<R> {
    let (storage, layout) = tensor.storage_and_layout();
    let (start, end) = layout.contiguous_offsets()?;
    match &*storage {
        Storage::Cpu(cpu) => cpu
            .as_slice::<T>()
            .ok()
            .map(|values| f(&values[start..end])),
        _ => None,
    }
}

/// [`with_cpu_f32`] for several tensors at once.
pub fn with_cpu_f32s<const N: usize, R>(
    tensors: [&Tensor; N],
    f: impl FnOnce([&[f32]; N]) -> R,
) -> Option<R> {
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let mut values: [&[f32]; N] = [&[]; N];
    for (slot, (storage, layout)) in values.iter_mut().zip(&guards) {
        let (start, end) = layout.contiguous_offsets()?;
        let Storage::Cpu(cpu) = &**storage else {
            return None;
        };
        *slot = &cpu.as_slice::<f32>().ok()?[start..end];
    }
    Some(f(values))
}
