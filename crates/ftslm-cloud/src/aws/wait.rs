//! Bounded polling: every wait in ftslm has a limit and says what it waited for.

use std::future::Future;
use std::time::{Duration, Instant};

use super::AwsError;

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
        tokio::time::sleep(interval).await;
    }
}
