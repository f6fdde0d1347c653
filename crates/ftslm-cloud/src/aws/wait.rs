//! Bounded polling: every wait in ftslm has a limit and says what it waited for,
//! and gives way to Ctrl-C (see [`request_interrupt`]).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::AwsError;

/// Set by the binary's Ctrl-C handler. Waits check it at every poll, so an
/// interrupted command gets to clean up (stop the instance) instead of dying
/// with the instance still billing.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Asks every wait in progress to end with [`AwsError::Interrupted`].
pub fn request_interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Forgets an earlier request, so that clean-up waits (stopping the instance)
/// run to the end.
pub fn clear_interrupt() {
    INTERRUPTED.store(false, Ordering::SeqCst);
}

pub fn interrupt_requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Calls `probe` every `interval` until it returns `Some`, or fails with
/// [`AwsError::Timeout`] naming `what` once `limit` has passed.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    limit: Duration,
    interval: Duration,
    mut probe: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, AwsError>>,
{
    let started = Instant::now();
    loop {
        if let Some(done) = probe().await? {
            return Ok(done);
        }
        if started.elapsed() >= limit {
            return Err(AwsError::Timeout {
                what: what.to_string(),
                waited: started.elapsed(),
            });
        }
        nap(interval).await?;
    }
}

/// [`poll_until`] for synchronous probes (each probe may `block_on` an SDK
/// call, and progress callbacks need not be `Send`): calls `probe` every
/// `aws.poll_interval()` until it returns `Some`, or fails with
/// [`AwsError::Timeout`] naming `what` once `limit` has passed since `started`,
/// or with [`AwsError::Interrupted`] soon after Ctrl-C.
pub fn wait_blocking<T>(
    aws: &super::Aws,
    what: &str,
    started: Instant,
    limit: Duration,
    mut probe: impl FnMut() -> Result<Option<T>, AwsError>,
) -> Result<T, AwsError> {
    loop {
        if let Some(done) = probe()? {
            return Ok(done);
        }
        let elapsed = started.elapsed();
        if elapsed >= limit {
            return Err(AwsError::Timeout {
                what: what.to_string(),
                waited: elapsed,
            });
        }
        // The last probe lands on the deadline rather than an interval past it.
        let pause = aws.poll_interval().min(limit - elapsed);
        let resume = Instant::now() + pause;
        // Short naps, so Ctrl-C is noticed within a fraction of a second.
        while Instant::now() < resume {
            if interrupt_requested() {
                return Err(AwsError::Interrupted);
            }
            std::thread::sleep((resume - Instant::now()).min(Duration::from_millis(200)));
        }
    }
}

/// Sleeps `pause` in short naps inside async code, ending early with
/// [`AwsError::Interrupted`] after Ctrl-C.
pub async fn nap(pause: Duration) -> Result<(), AwsError> {
    let resume = Instant::now() + pause;
    loop {
        if interrupt_requested() {
            return Err(AwsError::Interrupted);
        }
        let now = Instant::now();
        if now >= resume {
            return Ok(());
        }
        tokio::time::sleep((resume - now).min(Duration::from_millis(200))).await;
    }
}
