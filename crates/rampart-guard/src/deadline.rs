//! A timeout that costs nothing when the work is already done.
//!
//! `tokio::time::timeout` registers a timer on every call, which on the message path costs
//! more than an in-process scan of a short message. [`within`] polls the future once first
//! and arms the timer only if it is still pending (a clamd round trip, a large file on a
//! blocking thread).

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

/// The future's deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// Run `fut` to completion, or fail with [`Elapsed`] after `limit`. A future that completes
/// on its first poll never touches the timer.
pub async fn within<F: Future>(limit: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = pin!(fut);
    let first = poll_fn(|cx| {
        Poll::Ready(match fut.as_mut().poll(cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        })
    })
    .await;
    match first {
        Some(v) => Ok(v),
        None => tokio::time::timeout(limit, fut).await.map_err(|_| Elapsed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_futures_pass_through() {
        assert_eq!(within(Duration::from_millis(1), async { 7 }).await, Ok(7));
    }

    #[tokio::test]
    async fn pending_futures_get_the_deadline() {
        let slow = tokio::time::sleep(Duration::from_secs(5));
        assert_eq!(within(Duration::from_millis(20), slow).await, Err(Elapsed));
        let ok = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            1
        };
        assert_eq!(within(Duration::from_secs(5), ok).await, Ok(1));
    }
}
