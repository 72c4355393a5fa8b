//! Times as people and scripts read them: RFC 3339 in JSON and YAML, and in
//! tables the distance from now, shortened as kubectl does (`45s`, `5m`,
//! `2d`; `in 29d` for times to come).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// A timestamp as RFC 3339 UTC (`2026-12-08T02:03:44Z`), or null.
pub fn rfc3339(t: Option<&prost_types::Timestamp>) -> Value {
    t.and_then(system_time).map_or(Value::Null, |t| {
        Value::String(humantime::format_rfc3339_seconds(t).to_string())
    })
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds; null for zero
/// (the API's "never").
pub fn rfc3339_ms(ms: i64) -> Value {
    if ms <= 0 {
        return Value::Null;
    }
    let t = UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs());
    Value::String(humantime::format_rfc3339_millis(t).to_string())
}

/// Unix seconds as RFC 3339 UTC; null for zero.
pub fn rfc3339_s(s: i64) -> Value {
    rfc3339_ms(s.saturating_mul(1000))
}

/// How long ago (or, prefixed `in `, until) a timestamp is; empty when
/// there is none.
pub fn relative(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(system_time)
        .map_or_else(String::new, |t| relative_to(t, SystemTime::now()))
}

/// [`relative`] for Unix milliseconds; `-` for zero.
pub fn relative_ms(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_owned();
    }
    relative_to(
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs()),
        SystemTime::now(),
    )
}

fn system_time(t: &prost_types::Timestamp) -> Option<SystemTime> {
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).unwrap_or(0);
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

fn relative_to(t: SystemTime, now: SystemTime) -> String {
    match now.duration_since(t) {
        Ok(ago) => short(ago),
        Err(e) => format!("in {}", short(e.duration())),
    }
}

/// kubectl's `HumanDuration`: two units while the larger one is small,
/// one after.
fn short(d: Duration) -> String {
    let s = d.as_secs();
    let (m, h, days) = (s / 60, s / 3600, s / 86_400);
    let years = days / 365;
    if s < 120 {
        format!("{s}s")
    } else if m < 10 && !s.is_multiple_of(60) {
        format!("{m}m{}s", s % 60)
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 && !m.is_multiple_of(60) {
        format!("{h}h{}m", m % 60)
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 && !h.is_multiple_of(24) {
        format!("{days}d{}h", h % 24)
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if years < 8 && !days.is_multiple_of(365) {
        format!("{years}y{}d", days % 365)
    } else {
        format!("{years}y")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations_read_like_kubectl() {
        let cases = [
            (45, "45s"),
            (119, "119s"),
            (5 * 60 + 30, "5m30s"),
            (5 * 60, "5m"),
            (42 * 60 + 10, "42m"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (20 * 3600, "20h"),
            (2 * 86_400 + 3 * 3600, "2d3h"),
            (30 * 86_400, "30d"),
            (3 * 365 * 86_400 + 86_400, "3y1d"),
            (9 * 365 * 86_400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(short(Duration::from_secs(secs)), want, "{secs} s");
        }
    }

    #[test]
    fn past_and_future_and_rfc3339() {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_691_252);
        let before = now - Duration::from_secs(300);
        assert_eq!(relative_to(before, now), "5m");
        assert_eq!(
            relative_to(now + Duration::from_secs(2 * 86_400), now),
            "in 2d"
        );
        let ts = prost_types::Timestamp {
            seconds: 1_796_691_252,
            nanos: 0,
        };
        assert_eq!(
            rfc3339(Some(&ts)),
            Value::String("2026-12-08T00:54:12Z".into())
        );
        assert_eq!(rfc3339(None), Value::Null);
        assert_eq!(rfc3339_ms(0), Value::Null);
        assert_eq!(
            rfc3339_ms(1_796_691_252_123),
            Value::String("2026-12-08T00:54:12.123Z".into())
        );
    }
}
