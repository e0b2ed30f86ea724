//! HL7 dates and times: DT (`YYYY[MM[DD]]`) and DTM (`YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]`).

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// A DTM as an instant. Missing parts count from their start (`2024` is 1 January 2024,
/// 00:00); a missing offset is read as UTC, which senders should not rely on: the offset
/// is what makes a time unambiguous.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    let (local, offset) = match s.rfind(['+', '-']) {
        Some(i) if i >= 4 => (&s[..i], Some(&s[i..])),
        _ => (s, None),
    };
    let (digits, fraction) = match local.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (local, None),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![4, 6, 8, 10, 12, 14].contains(&digits.len())
    {
        return None;
    }
    let part = |from: usize, len: usize, default: u32| -> Option<u32> {
        match digits.get(from..from + len) {
            Some(p) => p.parse().ok(),
            None => Some(default),
        }
    };
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(part(0, 4, 0)?).ok()?,
        part(4, 2, 1)?,
        part(6, 2, 1)?,
    )?;
    let nanos = match fraction {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 4 && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<u32>().ok()? * 10u32.pow(9 - u32::try_from(f.len()).ok()?)
        }
        Some(_) => return None,
    };
    let time =
        NaiveTime::from_hms_nano_opt(part(8, 2, 0)?, part(10, 2, 0)?, part(12, 2, 0)?, nanos)?;
    let naive = NaiveDateTime::new(date, time);
    let offset = match offset {
        None => FixedOffset::east_opt(0)?,
        Some(o) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let hhmm = &o[1..];
            if hhmm.len() != 4 || !hhmm.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let hours: i32 = hhmm[..2].parse().ok()?;
            let minutes: i32 = hhmm[2..].parse().ok()?;
            if hours > 14 || minutes > 59 {
                return None;
            }
            FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))?
        }
    };
    offset
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// A DT (or the date part of a DTM) as a calendar date; it needs year, month and day.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let digits = s.trim().get(..8)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
}

/// An instant as a DTM with seconds and an explicit offset.
pub fn format_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y%m%d%H%M%S+0000").to_string()
}

pub fn format_date(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_of_every_precision_and_offset() {
        let t = |s| parse_datetime(s).map(|t| t.to_rfc3339());
        assert_eq!(
            t("20240102123456").as_deref(),
            Some("2024-01-02T12:34:56+00:00")
        );
        assert_eq!(
            t("202401021234-0500").as_deref(),
            Some("2024-01-02T17:34:00+00:00")
        );
        assert_eq!(
            t("20240102123456.25+0100").as_deref(),
            Some("2024-01-02T11:34:56.250+00:00")
        );
        assert_eq!(t("2024").as_deref(), Some("2024-01-01T00:00:00+00:00"));
        for bad in [
            "",
            "2024010",
            "20241301",
            "20240230",
            "2024010212345",
            "20240102+5",
            "abc",
            "20240102.x",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
        let now = parse_datetime("20240102123456+0000").unwrap();
        assert_eq!(parse_datetime(&format_datetime(now)), Some(now));
    }

    #[test]
    fn dates_need_a_day() {
        assert_eq!(parse_date("19800229"), NaiveDate::from_ymd_opt(1980, 2, 29));
        assert_eq!(
            parse_date("198002291200"),
            NaiveDate::from_ymd_opt(1980, 2, 29)
        );
        assert_eq!(parse_date("198002"), None);
        assert_eq!(parse_date("19810229"), None);
    }
}
