//! Back-off schedules: how long the client waits before trying again.
//!
//! - `Backoff`: exponential, for requests that failed with a retriable error (producer
//!   sends, heartbeats, pulls): `initial`, doubling, capped at `max`. Kafka's producer uses
//!   100 ms to 1 s (`retry.backoff.ms`, `retry.backoff.max.ms`).
//! - `reconsume_delay`: how long a push consumer waits before giving messages back to a
//!   listener that answered `ReconsumeLater`. It walks RocketMQ's delay levels (1 s, 5 s,
//!   10 s, 30 s, 1 m, 2 m, …) and stops at a cap, so a message that keeps failing is retried
//!   forever at the cap rather than skipped.

use std::future::Future;
use std::time::Duration;

use crate::error::Result;

/// RocketMQ's delay levels, in milliseconds (`messageDelayLevel`).
pub const DELAY_LEVELS_MS: [u64; 18] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000,
    480_000, 540_000, 600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
];

/// An exponential back-off: `initial * 2^attempt`, capped at `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max }
    }

    /// The wait before retry number `attempt` (0 = the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// The wait before redelivering messages for the `attempt`-th time (1 = the first
/// redelivery), by the delay levels, capped at `max`.
pub fn reconsume_delay(attempt: u32, max: Duration) -> Duration {
    let level = (attempt.max(1) as usize - 1).min(DELAY_LEVELS_MS.len() - 1);
    Duration::from_millis(DELAY_LEVELS_MS[level]).min(max)
}

/// Runs `attempt` (given the attempt number, from 0) until it succeeds, fails with an error
/// that is not retriable, or has been retried `retries` times, waiting `backoff` between
/// attempts. `describe` names the operation in the debug log of each retry.
pub(crate) async fn with_retries<T, F, Fut>(
    describe: &str,
    retries: u32,
    backoff: Backoff,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut number = 0;
    loop {
        match attempt(number).await {
            Err(error) if error.is_retriable() && number < retries => {
                let delay = backoff.delay(number);
                tracing::debug!(operation = describe, attempt = number, %error, ?delay, "retrying");
                tokio::time::sleep(delay).await;
                number += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, ErrorCode, ServiceError};

    const QUICK: Backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(1));

    fn server(code: ErrorCode) -> Error {
        Error::Server(ServiceError::new(code, "test"))
    }

    #[tokio::test]
    async fn retriable_errors_are_retried_until_success() {
        let mut seen = Vec::new();
        let result = with_retries("test", 2, QUICK, |n| {
            seen.push(n);
            async move {
                match n {
                    0 => Err(server(ErrorCode::NotLeader)),
                    1 => Err(Error::Closed),
                    _ => Ok(n),
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2);
        assert_eq!(seen, [0, 1, 2]);
    }

    #[tokio::test]
    async fn retries_stop_at_the_limit_with_the_last_error() {
        let mut attempts = 0;
        let result: Result<()> = with_retries("test", 2, QUICK, |_| {
            attempts += 1;
            async { Err(server(ErrorCode::Busy)) }
        })
        .await;
        assert_eq!(result.unwrap_err().code(), Some(ErrorCode::Busy));
        assert_eq!(attempts, 3, "two retries after the first attempt");
    }

    #[tokio::test]
    async fn other_errors_fail_at_once() {
        let mut attempts = 0;
        let result: Result<()> = with_retries("test", 5, QUICK, |_| {
            attempts += 1;
            async { Err(server(ErrorCode::MessageTooLarge)) }
        })
        .await;
        assert_eq!(result.unwrap_err().code(), Some(ErrorCode::MessageTooLarge));
        assert_eq!(attempts, 1);
    }

    #[test]
    fn backoff_doubles_then_stays_at_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<u128> = (0..6).map(|a| backoff.delay(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn reconsume_delays_follow_the_levels_up_to_the_cap() {
        let cap = Duration::from_secs(60);
        let delays: Vec<u64> = (1..=7).map(|a| reconsume_delay(a, cap).as_secs()).collect();
        assert_eq!(delays, [1, 5, 10, 30, 60, 60, 60]);
        assert_eq!(reconsume_delay(0, cap), Duration::from_secs(1));
        assert_eq!(
            reconsume_delay(u32::MAX, Duration::MAX),
            Duration::from_secs(7200)
        );
    }
}
