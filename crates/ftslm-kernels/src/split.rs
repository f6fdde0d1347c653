//! How a product's output columns are shared among threads: each thread
//! fills a private [rows, its columns] buffer and the parts are copied into
//! place, so no two threads ever write the same memory.

use std::cell::Cell;
use std::ops::Range;
use std::sync::OnceLock;

/// Below this many multiply-adds a product stays on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 22;

thread_local! {
    /// At most this many threads per product started from this thread.
    static THREAD_LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The threads a product may use at most: RAYON_NUM_THREADS when set (as
/// candle and rayon read it), else the CPUs this process may run on. Read
/// once, at the first product, as candle and rayon size their pools once.
/// A `ComputePolicy` narrows it per thread ([`with_thread_limit`]).
pub fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

/// Runs `f` with every product it starts on this thread using at most
/// `limit` threads (1: kept on the calling thread, for callers that already
/// keep one piece of work per core, as the rows of a batch).
pub fn with_thread_limit<R>(limit: usize, f: impl FnOnce() -> R) -> R {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_LIMIT.with(|limit| limit.set(self.0));
        }
    }
    let _restore = Restore(THREAD_LIMIT.with(|l| l.replace(limit.max(1))));
    f()
}

/// The thread limit products started on this thread run under now.
pub fn thread_limit() -> usize {
    THREAD_LIMIT.with(Cell::get)
}

/// Threads worth using for `rows` activations against a `[out, in]` weight,
/// never more than `max_parts` independent column ranges.
pub(crate) fn worker_count(rows: usize, shape: [usize; 2], max_parts: usize) -> usize {
    let macs = rows.saturating_mul(shape[0]).saturating_mul(shape[1]);
    if macs < PARALLEL_MIN_MACS {
        return 1;
    }
    let cores = threads().min(THREAD_LIMIT.with(Cell::get));
    cores.min(max_parts).max(1)
}

/// Splits `0..len` into at most `parts` contiguous ranges whose starts are
/// multiples of `align`.
pub(crate) fn split_range(len: usize, parts: usize, align: usize) -> Vec<Range<usize>> {
    let chunk = len.div_ceil(parts).div_ceil(align) * align;
    (0..len)
        .step_by(chunk.max(1))
        .map(|start| start..(start + chunk).min(len))
        .collect()
}

/// Runs `work(columns, local)` for each column range on its own thread, each
/// writing a private `[rows, columns.len()]` buffer.
pub(crate) fn run_split<F>(
    ranges: Vec<Range<usize>>,
    work: F,
    rows: usize,
) -> Vec<(Range<usize>, Vec<f32>)>
where
    F: Fn(Range<usize>, &mut [f32]) + Sync,
{
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .into_iter()
            .map(|columns| {
                scope.spawn(move || {
                    let mut local = vec![0.0f32; rows * columns.len()];
                    work(columns.clone(), &mut local);
                    (columns, local)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Copies per-thread `[rows, range.len()]` buffers into their columns of `dst[rows, width]`.
pub(crate) fn scatter_columns(
    parts: &[(Range<usize>, Vec<f32>)],
    rows: usize,
    dst: &mut [f32],
    width: usize,
) {
    for (columns, local) in parts {
        for (r, local_row) in local.chunks_exact(columns.len()).take(rows).enumerate() {
            dst[r * width + columns.start..r * width + columns.end].copy_from_slice(local_row);
        }
    }
}
