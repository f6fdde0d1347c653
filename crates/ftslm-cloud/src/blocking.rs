//! Running the async AWS SDK from ftslm's synchronous code on a small runtime the
//! caller owns. Tokio refuses to block inside another runtime (the CLI may have
//! one), so in that case the work runs on a scoped helper thread.

use std::future::Future;

use tokio::runtime::{Handle, Runtime};

/// Runs `future` to completion on `runtime`, from any context. Returns `None` if
/// the helper thread panicked (the SDK never should).
pub(crate) fn block_on<F>(runtime: &Runtime, future: F) -> Option<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    if Handle::try_current().is_err() {
        return Some(runtime.block_on(future));
    }
    std::thread::scope(|scope| scope.spawn(|| runtime.block_on(future)).join().ok())
}
