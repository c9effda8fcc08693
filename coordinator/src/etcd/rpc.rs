//! How a call to etcd fails: every request runs under a timeout, every etcd-client error
//! becomes a coordinator `Error` (`Unavailable`, retriable, unless etcd refused the request
//! itself), and background tasks retry with a capped exponential back-off.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};

/// First pause of a background retry.
pub const RETRY_PAUSE_MIN: Duration = Duration::from_millis(50);
/// Longest pause of a background retry.
pub const RETRY_PAUSE_MAX: Duration = Duration::from_secs(2);

/// Runs one etcd request, failing with `Unavailable` when it errs or takes longer than
/// `timeout`.
pub async fn within<T>(
    timeout: Duration,
    what: &str,
    request: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(unavailable(what, error)),
        Err(_) => Err(Error::Unavailable(format!(
            "{what}: etcd did not answer within {timeout:?}"
        ))),
    }
}

/// Maps an etcd-client error: a request etcd refused as malformed (too many operations in a
/// transaction, a value too large) is `InvalidArgument`; everything else (connection lost,
/// no leader, timeouts) is `Unavailable`.
pub fn unavailable(what: &str, error: etcd_client::Error) -> Error {
    if let etcd_client::Error::GRpcStatus(status) = &error {
        if status.code() as i32 == GRPC_INVALID_ARGUMENT {
            return Error::InvalidArgument(format!(
                "{what}: etcd refused it: {}",
                status.message()
            ));
        }
    }
    Error::Unavailable(format!("{what}: {error}"))
}

/// gRPC's status code for a malformed request.
const GRPC_INVALID_ARGUMENT: i32 = 3;

/// A capped exponential back-off for background retries.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub fn new() -> Backoff {
        Backoff {
            next: RETRY_PAUSE_MIN,
        }
    }

    /// The pause before the next attempt; doubles up to `RETRY_PAUSE_MAX`.
    pub fn next(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(RETRY_PAUSE_MAX);
        pause
    }

    /// After a success: the next failure starts from the shortest pause again.
    pub fn reset(&mut self) {
        self.next = RETRY_PAUSE_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::new();
        assert_eq!(backoff.next(), RETRY_PAUSE_MIN);
        assert_eq!(backoff.next(), RETRY_PAUSE_MIN * 2);
        for _ in 0..20 {
            assert!(backoff.next() <= RETRY_PAUSE_MAX);
        }
        assert_eq!(backoff.next(), RETRY_PAUSE_MAX);
        backoff.reset();
        assert_eq!(backoff.next(), RETRY_PAUSE_MIN);
    }
}
