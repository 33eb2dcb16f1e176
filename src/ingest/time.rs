//! Turning the providers' many ways of writing a moment into a UTC [`Timestamp`].
//!
//! - Unix time as a number or a numeric string, in seconds, with or without a fraction
//!   (SendPulse, Mailgun); milliseconds are recognised by their size and converted.
//! - Text with an offset or `Z` (RFC 3339): exact.
//! - Text without an offset (Opptima sends Colombian local time): the source's time zone is
//!   assumed and the result is marked [`TimeQuality::AssumedTz`].

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde_json::value::RawValue;

use crate::event::TimeQuality;
use crate::ingest::fields::{JsonType, clip, scalar_text};

/// Seconds values above this are taken to be milliseconds (year 5138 in seconds).
const MILLIS_THRESHOLD: i64 = 100_000_000_000;
/// Milliseconds values above this are taken to be microseconds.
const MICROS_THRESHOLD: i64 = 100_000_000_000_000;
/// How far past the receive time an event may claim to be before it gets a warning.
const FUTURE_TOLERANCE: SignedDuration = SignedDuration::from_hours(24);

/// A moment read from a provider, with how far to trust it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadTime {
    /// The instant, in UTC.
    pub at: Timestamp,
    /// Whether the instant was sent as such or computed from local time.
    pub quality: TimeQuality,
}

/// Reads a raw JSON time value. `zone` is used for local times without an offset.
/// Returns a warning text when the value cannot be used.
pub fn read_time(raw: &RawValue, zone: &TimeZone) -> Result<ReadTime, String> {
    let text = match scalar_text(raw) {
        Ok(Some(text)) => text,
        Ok(None) => return Err("is null".to_owned()),
        Err(found) => return Err(format!("expected a time, found {found}")),
    };
    let text = text.trim();
    if text.is_empty() {
        return Err("is empty".to_owned());
    }
    if JsonType::of(raw) == JsonType::Number || looks_numeric(text) {
        return unix(text).map(|at| ReadTime {
            at,
            quality: TimeQuality::Exact,
        });
    }
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(ReadTime {
            at,
            quality: TimeQuality::Exact,
        });
    }
    match text.parse::<DateTime>() {
        Ok(local) => local
            .to_zoned(zone.clone())
            .map(|zoned| ReadTime {
                at: zoned.timestamp(),
                quality: TimeQuality::AssumedTz,
            })
            .map_err(|error| format!("`{}`: {error}", clip(text, 64))),
        Err(_) => Err(format!("`{}` is not a recognised time", clip(text, 64))),
    }
}

/// Returns a warning when `at` lies implausibly far after `received_at`.
pub fn future_warning(at: Timestamp, received_at: Timestamp) -> Option<String> {
    let ahead = at.duration_since(received_at);
    (ahead > FUTURE_TOLERANCE).then(|| {
        format!(
            "occurred_at is {} hours after received_at; check the source's time zone",
            ahead.as_hours()
        )
    })
}

fn looks_numeric(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty()
        && digits.bytes().any(|b| b.is_ascii_digit())
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Parses Unix time written in decimal, keeping the fraction exactly.
fn unix(text: &str) -> Result<Timestamp, String> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    if text.contains(['e', 'E']) {
        // Exponent notation: rare, and precise enough through f64 for seconds.
        let seconds: f64 = text
            .parse()
            .map_err(|_| format!("`{}` is not a Unix time", clip(text, 40)))?;
        return from_parts(seconds.trunc() as i64, (seconds.fract() * 1e9) as i64, text);
    }
    let whole: i64 = whole
        .parse()
        .map_err(|_| format!("`{}` is not a Unix time", clip(text, 40)))?;
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{}` is not a Unix time", clip(text, 40)));
    }
    let mut nanos: i64 = 0;
    for (position, digit) in fraction.bytes().take(9).enumerate() {
        nanos += i64::from(digit - b'0') * 10_i64.pow(8 - position as u32);
    }
    from_parts(whole, nanos, text)
}

fn from_parts(whole: i64, nanos: i64, text: &str) -> Result<Timestamp, String> {
    if whole <= 0 {
        return Err(format!("`{}` is not a plausible Unix time", clip(text, 40)));
    }
    let result = if whole >= MICROS_THRESHOLD {
        Timestamp::from_microsecond(whole)
    } else if whole >= MILLIS_THRESHOLD {
        Timestamp::from_millisecond(whole)
    } else {
        Timestamp::new(whole, nanos as i32)
    };
    result.map_err(|_| format!("`{}` is out of range", clip(text, 40)))
}

/// Reads a configured zone: an IANA name (`America/Bogota`), `UTC`, or a fixed offset
/// (`-05:00`, `-5`, `UTC-5`).
pub fn parse_zone(text: &str) -> Result<TimeZone, String> {
    let trimmed = text.trim();
    if let Ok(zone) = TimeZone::get(trimmed) {
        return Ok(zone);
    }
    let offset_text = trimmed
        .strip_prefix("UTC")
        .or_else(|| trimmed.strip_prefix("GMT"))
        .unwrap_or(trimmed);
    parse_offset(offset_text)
        .map(TimeZone::fixed)
        .ok_or_else(|| format!("`{trimmed}` is neither a time zone name nor an offset like -05:00"))
}

fn parse_offset(text: &str) -> Option<Offset> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = match rest.split_once(':') {
        Some((hours, minutes)) => (hours.parse::<i32>().ok()?, minutes.parse::<i32>().ok()?),
        None => (rest.parse::<i32>().ok()?, 0),
    };
    if !(0..=14).contains(&hours) || !(0..60).contains(&minutes) {
        return None;
    }
    Offset::from_seconds(sign * (hours * 3600 + minutes * 60)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    fn bogota() -> TimeZone {
        parse_zone("America/Bogota").unwrap()
    }

    #[test]
    fn colombian_local_time_becomes_utc() {
        let read = read_time(&raw(r#""2020-10-05 17:40:54""#), &bogota()).unwrap();
        assert_eq!(read.at.to_string(), "2020-10-05T22:40:54Z");
        assert_eq!(read.quality, TimeQuality::AssumedTz);
    }

    #[test]
    fn fixed_offset_zone_matches_bogota() {
        let zone = parse_zone("UTC-5").unwrap();
        let read = read_time(&raw(r#""2020-10-05T17:40:54""#), &zone).unwrap();
        assert_eq!(read.at.to_string(), "2020-10-05T22:40:54Z");
        assert_eq!(parse_zone("-05:00").unwrap(), zone);
    }

    #[test]
    fn unix_seconds_in_every_shape() {
        let zone = TimeZone::UTC;
        for text in ["1490954061", r#""1490954061""#, "1490954061.0"] {
            let read = read_time(&raw(text), &zone).unwrap();
            assert_eq!(read.at.as_second(), 1_490_954_061, "{text}");
            assert_eq!(read.quality, TimeQuality::Exact);
        }
        let fractional = read_time(&raw("1521472262.908181"), &zone).unwrap();
        assert_eq!(fractional.at.to_string(), "2018-03-19T15:11:02.908181Z");
        let millis = read_time(&raw("1490954061123"), &zone).unwrap();
        assert_eq!(millis.at.as_millisecond(), 1_490_954_061_123);
    }

    #[test]
    fn text_with_offset_is_exact() {
        let read = read_time(&raw(r#""2022-07-22T01:35:33.268Z""#), &bogota()).unwrap();
        assert_eq!(read.at.to_string(), "2022-07-22T01:35:33.268Z");
        assert_eq!(read.quality, TimeQuality::Exact);
    }

    #[test]
    fn nonsense_is_refused_with_a_reason() {
        let zone = TimeZone::UTC;
        assert!(read_time(&raw(r#""yesterday""#), &zone).is_err());
        assert!(read_time(&raw("0"), &zone).is_err());
        assert!(read_time(&raw("-5"), &zone).is_err());
        assert!(read_time(&raw(r#""""#), &zone).is_err());
        assert!(read_time(&raw("[1]"), &zone).is_err());
        assert!(read_time(&raw("99999999999999999999"), &zone).is_err());
        assert!(read_time(&raw(r#""2020-13-45 99:00:00""#), &zone).is_err());
    }

    #[test]
    fn far_future_gets_a_warning() {
        let received: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let next_week: Timestamp = "2024-01-08T00:00:00Z".parse().unwrap();
        assert!(future_warning(next_week, received).is_some());
        assert!(future_warning(received, received).is_none());
    }

    #[test]
    fn bad_zones_are_refused() {
        assert!(parse_zone("Mars/Olympus").is_err());
        assert!(parse_zone("+25:00").is_err());
    }
}
