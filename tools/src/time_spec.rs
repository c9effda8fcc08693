//! Parsing the `--since TIME` argument into milliseconds since the Unix epoch.
//!
//! Three forms, tried in this order:
//!
//! ```text
//! 1732183200000           epoch milliseconds (digits only)
//! 10m, 1h 30m, 2days      a duration before now (humantime syntax)
//! 2026-11-21T10:00:00Z    RFC 3339; a missing zone means UTC, a space may replace the T
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use log_core::TimestampMs;

/// Parses `spec` relative to `now`.
pub fn parse_since(spec: &str, now: SystemTime) -> anyhow::Result<TimestampMs> {
    let spec = spec.trim();
    if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
        return spec
            .parse::<TimestampMs>()
            .with_context(|| format!("epoch milliseconds {spec:?} out of range"));
    }
    if let Ok(ago) = humantime::parse_duration(spec) {
        let at = now
            .checked_sub(ago)
            .ok_or_else(|| anyhow!("{spec:?} reaches back before the Unix epoch"))?;
        return system_time_ms(at);
    }
    match humantime::parse_rfc3339_weak(spec) {
        Ok(at) => system_time_ms(at),
        Err(error) => Err(anyhow!(
            "cannot read time {spec:?} ({error}): expected RFC 3339 (2026-11-21T10:00:00Z), \
             a duration before now (10m, 2h) or epoch milliseconds"
        )),
    }
}

/// Milliseconds since the Unix epoch.
pub fn system_time_ms(at: SystemTime) -> anyhow::Result<TimestampMs> {
    let since_epoch = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| anyhow!("time is before the Unix epoch"))?;
    TimestampMs::try_from(since_epoch.as_millis()).context("time too far in the future")
}

/// `2026-11-21T10:00:00.123Z` for a record timestamp; `-` for "none" (negative).
pub fn format_ms(timestamp: TimestampMs) -> String {
    match u64::try_from(timestamp) {
        Ok(ms) => {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        Err(_) => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_790_000_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(NOW_MS)
    }

    #[test]
    fn reads_epoch_milliseconds() {
        assert_eq!(
            parse_since("1732183200000", now()).unwrap(),
            1_732_183_200_000
        );
    }

    #[test]
    fn reads_a_duration_before_now() {
        assert_eq!(
            parse_since("10m", now()).unwrap(),
            (NOW_MS - 600_000) as i64
        );
        assert_eq!(
            parse_since("1h 30m", now()).unwrap(),
            (NOW_MS - 5_400_000) as i64
        );
    }

    #[test]
    fn reads_rfc3339_with_or_without_zone() {
        let expected = 1_795_255_200_000; // 2026-11-21T10:00:00Z
        assert_eq!(
            parse_since("2026-11-21T10:00:00Z", now()).unwrap(),
            expected
        );
        assert_eq!(parse_since("2026-11-21 10:00:00", now()).unwrap(), expected);
        assert_eq!(format_ms(expected), "2026-11-21T10:00:00.000Z");
    }

    #[test]
    fn refuses_nonsense() {
        let error = parse_since("yesterday-ish", now()).unwrap_err().to_string();
        assert!(error.contains("RFC 3339"), "{error}");
        assert_eq!(format_ms(-1), "-");
    }
}
