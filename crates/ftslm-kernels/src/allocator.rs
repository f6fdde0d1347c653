//! The allocator policy for training. A training step allocates and frees
//! the same activation buffers (hundreds of KiB to a few MiB each) layer
//! after layer. glibc serves such sizes with fresh `mmap`s and returns them
//! on `free`, and grows and shrinks each thread's heap a little at a time,
//! so every buffer paid its page faults and zeroing again: about 5% of a
//! step in `perf`. Keeping them on the heap, growing it in large steps and
//! not trimming it after each free lets the next layer reuse the pages
//! (measured in `ftslm bench train`: +5% tokens/s, a third of the page
//! faults, the same peak RSS).
//!
//! It changes the whole process, so no library calls it: the `ftslm`
//! binary does, at start. It lives here because it is `unsafe` code.

/// Largest allocation still served from the heap rather than by `mmap`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 256 << 20;
/// Free memory kept at the top of the heap before it is given back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 1 << 30;
/// Extra memory asked for whenever a heap grows.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TOP_PAD: libc::c_int = 64 << 20;

/// Applies the policy to this process; a no-op away from glibc. Call it
/// before any thread starts. Older glibc versions refuse
/// a threshold above 32 MiB; the trim threshold is then left alone too,
/// because setting it freezes the mmap threshold at its 128 KiB start
/// (measured: a third slower).
pub fn tune_for_training() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes parameters of glibc's allocator; it is
    // called before any thread starts.
    unsafe {
        if libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 {
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
            libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
        }
    }
}
