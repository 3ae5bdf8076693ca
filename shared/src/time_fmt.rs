//! Millisecond Unix timestamps and their RFC 3339 form on the wire.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the Unix epoch, UTC.
pub type UnixMillis = i64;

/// The current time in Unix milliseconds.
pub fn now_millis() -> UnixMillis {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

/// Formats Unix milliseconds as an RFC 3339 UTC time (`2026-11-24T12:00:00Z`,
/// with milliseconds when they are not zero).
pub fn rfc3339(millis: UnixMillis) -> String {
    let nanos = i128::from(millis) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| millis.to_string())
}

/// Parses an RFC 3339 time into Unix milliseconds.
pub fn parse_rfc3339(text: &str) -> Option<UnixMillis> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_whole_seconds_without_fraction() {
        assert_eq!(rfc3339(1_795_003_200_000), "2026-11-18T12:00:00Z");
        assert_eq!(
            parse_rfc3339("2026-11-18T12:00:00Z"),
            Some(1_795_003_200_000)
        );
    }
}
