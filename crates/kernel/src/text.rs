//! Shared rules for free text fields.

use crate::FieldError;
use chrono::{DateTime, Utc};

/// A field that must be there (it may still be empty; the next check decides).
pub fn present(v: Option<&str>) -> Result<&str, FieldError> {
    v.ok_or_else(|| FieldError::new("", "required", "is required"))
}

/// Trimmed, non-empty, at most `max` characters, no control characters.
pub fn required(value: &str, max: usize) -> Result<String, FieldError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(FieldError::new("", "required", "must not be empty"));
    }
    bounded(v, max)
}

/// Like `required`, but empty or absent means `None`.
pub fn optional(value: Option<&str>, max: usize) -> Result<Option<String>, FieldError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => bounded(v, max).map(Some),
    }
}

fn bounded(v: &str, max: usize) -> Result<String, FieldError> {
    if v.chars().count() > max {
        return Err(FieldError::new(
            "",
            "too_long",
            format!("must be at most {max} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(FieldError::new(
            "",
            "invalid_characters",
            "must not contain control characters",
        ));
    }
    Ok(v.to_owned())
}

/// An identifier of another system (provider id, payer id, test code): letters, digits,
/// and `-`, `_`, `.`, 1 to `max` characters.
pub fn code(value: &str, max: usize) -> Result<String, FieldError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(FieldError::new("", "required", "must not be empty"));
    }
    if v.len() > max
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(FieldError::new(
            "",
            "invalid_format",
            format!("must be 1 to {max} letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(v.to_owned())
}

/// One of `allowed`, exactly as spelled there.
pub fn one_of(value: &str, allowed: &[&'static str]) -> Result<&'static str, FieldError> {
    allowed
        .iter()
        .find(|a| **a == value)
        .copied()
        .ok_or_else(|| {
            FieldError::new(
                "",
                "invalid_value",
                format!("must be one of {}", allowed.join(", ")),
            )
        })
}

/// How far ahead of our clock a client's timestamp may be and still count as "now".
const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// An RFC 3339 timestamp with an offset, not in the future.
pub fn timestamp(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, FieldError> {
    let t = DateTime::parse_from_rfc3339(s.trim())
        .map_err(|_| {
            FieldError::new(
                "",
                "invalid_timestamp",
                "must be an RFC 3339 timestamp such as 2026-03-01T14:30:00Z",
            )
        })?
        .with_timezone(&Utc);
    if t > now + CLOCK_SKEW {
        return Err(FieldError::new(
            "",
            "in_future",
            "must not be in the future",
        ));
    }
    if t.timestamp() < -2_208_988_800 {
        return Err(FieldError::new("", "too_early", "must not be before 1900"));
    }
    Ok(crate::clock::truncate_to_micros(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_is_trimmed_bounded_and_printable() {
        assert_eq!(required("  Ann ", 10).unwrap(), "Ann");
        assert_eq!(required("   ", 10).unwrap_err().code, "required");
        assert_eq!(required("abcdef", 5).unwrap_err().code, "too_long");
        assert_eq!(
            required("a\u{0}b", 5).unwrap_err().code,
            "invalid_characters"
        );
        assert_eq!(optional(Some(""), 5).unwrap(), None);
        assert_eq!(optional(None, 5).unwrap(), None);
    }

    #[test]
    fn codes_are_plain_identifiers() {
        assert_eq!(code("NPI-12.3_x", 20).unwrap(), "NPI-12.3_x");
        assert_eq!(code("a b", 20).unwrap_err().code, "invalid_format");
        assert_eq!(code("", 20).unwrap_err().code, "required");
        assert_eq!(code("abc", 2).unwrap_err().code, "invalid_format");
    }

    #[test]
    fn enumerations_are_exact() {
        assert_eq!(one_of("HOME", &["HOME", "WORK"]).unwrap(), "HOME");
        assert_eq!(
            one_of("home", &["HOME", "WORK"]).unwrap_err().code,
            "invalid_value"
        );
    }
}
