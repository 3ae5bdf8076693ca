//! Fixed-width forms of the worker's RFC 3339 UTC times, so columns line up
//! and a line read out of context still says the date and the zone.

/// `YYYY-MM-DD HH:MM:SS UTC` (23 characters), or the text itself when it is
/// not an RFC 3339 UTC time.
pub fn stamp(at: &str) -> String {
    match at.get(..19) {
        Some(head) if at.len() >= 20 && at.ends_with('Z') => {
            format!("{} UTC", head.replacen('T', " ", 1))
        }
        _ => at.to_owned(),
    }
}

/// `YYYY-MM-DD HH:MM:SS.mmm UTC` (27 characters): [`stamp`] with the
/// milliseconds, always three digits.
pub fn stamp_millis(at: &str) -> String {
    let (Some(head), true) = (at.get(..19), at.ends_with('Z')) else {
        return at.to_owned();
    };
    let fraction = at
        .get(19..at.len() - 1)
        .and_then(|f| f.strip_prefix('.'))
        .unwrap_or("");
    let millis: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(3)
        .collect();
    format!("{}.{millis} UTC", head.replacen('T', " ", 1))
}

/// `HH:MM:SS` (UTC), or the text itself when it is not an RFC 3339 time.
pub fn clock(at: &str) -> String {
    at.get(11..19).unwrap_or(at).to_owned()
}

/// `MM-DD HH:MM` (UTC), for narrow table cells.
pub fn short(at: &str) -> String {
    at.get(5..16)
        .map(|s| s.replacen('T', " ", 1))
        .unwrap_or_else(|| at.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_have_one_width_with_date_and_zone() {
        assert_eq!(stamp("2026-11-24T12:00:00Z"), "2026-11-24 12:00:00 UTC");
        assert_eq!(stamp("2026-11-24T12:00:00.5Z"), "2026-11-24 12:00:00 UTC");
        assert_eq!(
            stamp_millis("2026-11-24T12:00:00Z"),
            "2026-11-24 12:00:00.000 UTC"
        );
        assert_eq!(
            stamp_millis("2026-11-24T12:00:00.5Z"),
            "2026-11-24 12:00:00.500 UTC"
        );
        assert_eq!(
            stamp_millis("2026-11-24T12:00:00.123Z"),
            "2026-11-24 12:00:00.123 UTC"
        );
        assert_eq!(stamp("garbage"), "garbage");
        assert_eq!(short("2026-11-24T12:34:56Z"), "11-24 12:34");
        assert_eq!(clock("2026-11-24T12:34:56Z"), "12:34:56");
    }
}
