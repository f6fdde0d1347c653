//! Element-wise loops (activations, normalisation, softmax) compiled for
//! the widest vectors this CPU has. The crate is built for baseline x86-64,
//! where such loops vectorise four f32 wide; a function defined with
//! [`wide_fn!`] also has a copy for AVX-512F, sixteen wide, chosen at run
//! time, without a hand-written copy of each loop for each instruction set.

/// Defines a function whose body is compiled twice: for AVX-512F, run on
/// CPUs that have it, and for the crate's baseline target otherwise.
///
/// The body is an `#[inline(always)]` inner function, so its loops and the
/// `#[inline(always)]` helpers they call (`kernel::exp`, [`dot`], [`max`])
/// are compiled into each copy. (A closure handed to a `#[target_feature]`
/// function is not enough: it stays a function of its own, compiled for the
/// baseline, and runs four wide with a scalar exponential.)
macro_rules! wide_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            fn with_avx512($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            if $crate::avx512_available() {
                // SAFETY: AVX-512F was detected just above.
                return unsafe { with_avx512($($arg),*) };
            }
            body($($arg),*)
        }
    };
}
pub(crate) use wide_fn;

/// A vector of `len` values that `fill` writes, without zeroing the buffer
/// first. The training binary's allocator keeps freed buffers for reuse, so
/// `vec![0.0; len]` is a memset of memory about to be overwritten: 5% of a
/// training step, summed over the element-wise passes and the products.
///
/// # Safety
/// `fill` must write every one of the `len` values it is handed.
#[inline(always)]
pub(crate) unsafe fn written_vec<T>(
    len: usize,
    fill: impl FnOnce(&mut [std::mem::MaybeUninit<T>]),
) -> Vec<T> {
    let mut values = Vec::with_capacity(len);
    fill(&mut values.spare_capacity_mut()[..len]);
    // SAFETY: the caller's `fill` wrote all `len` values.
    unsafe { values.set_len(len) };
    values
}

/// Σ a[i]·b[i] in sixteen running sums, so that the loop vectorises (a
/// single running sum is a chain the compiler must keep in order).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let (a_chunks, b_chunks) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (a, b) in a_chunks.zip(b_chunks) {
        for ((lane, x), y) in lanes.iter_mut().zip(a).zip(b) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Σ values, in sixteen running sums (see [`dot`]).
#[inline(always)]
pub fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = values.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The largest value (−∞ for none), in sixteen running maxima so that
/// the search vectorises.
#[inline(always)]
pub fn max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = values.chunks_exact(16);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = m.max(v);
        }
    }
    tail.iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_covers_full_chunks_and_the_tail() {
        for len in [0, 1, 15, 16, 17, 33, 576] {
            let a: Vec<f32> = (0..len).map(|i| (i % 7) as f32 - 3.0).collect();
            let b: Vec<f32> = (0..len).map(|i| (i % 5) as f32 * 0.5).collect();
            let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert_eq!(dot(&a, &b), want, "length {len}");
        }
    }

    #[test]
    fn sum_covers_full_chunks_and_the_tail() {
        for len in [0, 1, 16, 17, 50] {
            let values: Vec<f32> = (0..len).map(|i| (i % 9) as f32 - 4.0).collect();
            assert_eq!(sum(&values), values.iter().sum::<f32>(), "length {len}");
        }
    }

    #[test]
    fn max_finds_the_largest_in_chunks_and_tail() {
        assert_eq!(max(&[]), f32::NEG_INFINITY);
        for len in [1, 16, 17, 40] {
            for at in [0, len / 2, len - 1] {
                let mut values = vec![-1.0f32; len];
                values[at] = 2.5;
                assert_eq!(max(&values), 2.5, "length {len}, at {at}");
            }
        }
    }
}
