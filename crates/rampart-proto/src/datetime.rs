//! XEP-0082: XMPP date and time profiles (the DateTime profile, always written in UTC).

use chrono::{DateTime, SecondsFormat, Utc};

use crate::ParseError;

/// Format as `2026-11-26T16:27:37.123Z`: UTC, millisecond precision, trailing `Z`.
pub fn format(dt: &DateTime<Utc>) -> String {
    dt.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parse a XEP-0082 DateTime (`CCYY-MM-DDThh:mm:ss[.sss]TZD`, where TZD is `Z` or `±hh:mm`),
/// converting to UTC. Fractional seconds of any length are accepted.
pub fn parse(s: &str) -> Result<DateTime<Utc>, ParseError> {
    let bad = || ParseError::DateTime(s.chars().take(64).collect());
    // XEP-0082 requires the 'T' separator and a four-digit year; chrono's RFC 3339 parser is
    // slightly more lenient (space separator), so check the shape first.
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 64 || b[10] != b'T' || !b[..4].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn format_millis_z() {
        let dt = Utc.with_ymd_and_hms(2026, 11, 26, 16, 27, 37).unwrap()
            + chrono::Duration::milliseconds(123);
        assert_eq!(format(&dt), "2026-11-26T16:27:37.123Z");
        let whole = Utc.with_ymd_and_hms(2001, 2, 3, 4, 5, 6).unwrap();
        assert_eq!(format(&whole), "2001-02-03T04:05:06.000Z");
    }

    #[test]
    fn parse_forms() {
        let dt = Utc.with_ymd_and_hms(1969, 7, 21, 2, 56, 15).unwrap();
        assert_eq!(parse("1969-07-21T02:56:15Z").unwrap(), dt);
        assert_eq!(parse("1969-07-20T21:56:15-05:00").unwrap(), dt);
        assert_eq!(parse("1969-07-21T04:56:15+02:00").unwrap(), dt);
        let frac = parse("1969-07-21T02:56:15.123456Z").unwrap();
        assert_eq!(frac.timestamp_subsec_micros(), 123456);
        let ms = dt + chrono::Duration::milliseconds(5);
        assert_eq!(parse(&format(&ms)).unwrap(), ms);
    }

    #[test]
    fn parse_invalid() {
        for s in [
            "",
            "1969-07-21",
            "1969-07-21T02:56:15",
            "1969-07-21 02:56:15Z",
            "1969-13-21T02:56:15Z",
            "1969-07-21T25:56:15Z",
            "69-07-21T02:56:15Z",
            "1969-07-21T02:56:15+0500",
            "yesterday at noon, roughly",
        ] {
            assert!(matches!(parse(s), Err(ParseError::DateTime(_))), "{s}");
        }
    }
}
