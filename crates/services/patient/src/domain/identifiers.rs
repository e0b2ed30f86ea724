//! MRN, SSN and date of birth: the identifying value objects of 000 §2.1.1.

use chrono::{Datelike, NaiveDate};
use kernel::{FieldError, Sensitive};
use std::fmt;

/// Medical record number: 5 to 20 letters, digits and hyphens, starting and ending with a
/// letter or digit; kept in upper case so `mrn-1` and `MRN-1` are one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mrn(String);

impl Mrn {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let s = s.trim().to_ascii_uppercase();
        let ok = (5..=20).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
        if ok {
            Ok(Self(s))
        } else {
            Err(FieldError::new(
                "",
                "invalid_mrn",
                "must be 5 to 20 letters, digits or hyphens, starting and ending with a letter or digit",
            ))
        }
    }

    /// The MRN a tenant's n-th generated patient gets: `MRN` and nine digits.
    pub fn generated(n: i64) -> Self {
        Self(format!("MRN{n:09}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Mrn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// US Social Security number, `###-##-####`. Never printed: `Debug` shows `[redacted]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssn(Sensitive<String>);

impl Ssn {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let b = s.trim().as_bytes();
        let shape = b.len() == 11
            && b[3] == b'-'
            && b[6] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 3 || i == 6 || c.is_ascii_digit());
        if !shape {
            return Err(FieldError::new(
                "",
                "invalid_ssn",
                "must have the form ###-##-####",
            ));
        }
        let (area, group, serial) = (&b[0..3], &b[4..6], &b[7..11]);
        // The SSA never issues area 000, 666 or 900-999, group 00 or serial 0000.
        if area == b"000"
            || area == b"666"
            || area[0] == b'9'
            || group == b"00"
            || serial == b"0000"
        {
            return Err(FieldError::new(
                "",
                "invalid_ssn",
                "is not a number the SSA issues",
            ));
        }
        Ok(Self(Sensitive::new(s.trim().to_owned())))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// Whether `s` has the shape of an SSN, so a path segment can be told from an id.
    pub fn looks_like(s: &str) -> bool {
        s.len() == 11 && s.as_bytes()[3] == b'-' && s.as_bytes()[6] == b'-'
    }
}

/// A date of birth: not in the future, not before 1900.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateOfBirth(NaiveDate);

impl DateOfBirth {
    pub fn parse(s: &str, today: NaiveDate) -> Result<Self, FieldError> {
        let date = parse_date(s)?;
        Self::new(date, today)
    }

    pub fn new(date: NaiveDate, today: NaiveDate) -> Result<Self, FieldError> {
        if date > today {
            return Err(FieldError::new(
                "",
                "in_future",
                "must not be in the future",
            ));
        }
        if date.year() < 1900 {
            return Err(FieldError::new(
                "",
                "too_early",
                "must not be before 1900-01-01",
            ));
        }
        Ok(Self(date))
    }

    pub fn date(&self) -> NaiveDate {
        self.0
    }

    /// A date the database holds; it was checked when it was written.
    pub(crate) fn from_storage(date: NaiveDate) -> Self {
        Self(date)
    }
}

/// A calendar date as `YYYY-MM-DD`, and only that.
pub fn parse_date(s: &str) -> Result<NaiveDate, FieldError> {
    let s = s.trim();
    if s.len() != 10 {
        return Err(FieldError::new(
            "",
            "invalid_date",
            "must be a date YYYY-MM-DD",
        ));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| FieldError::new("", "invalid_date", "must be a date YYYY-MM-DD"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mrns_are_normalised_to_upper_case() {
        assert_eq!(Mrn::parse(" mrn-00042 ").unwrap().as_str(), "MRN-00042");
        assert_eq!(Mrn::generated(42).as_str(), "MRN000000042");
        assert!(Mrn::parse(Mrn::generated(i64::from(u32::MAX)).as_str()).is_ok());
    }

    #[test]
    fn malformed_mrns_are_rejected() {
        for bad in [
            "",
            "ABC1",
            "-ABCDE",
            "ABCDE-",
            "AB CD1",
            "A_BCDE",
            &"A".repeat(21),
            "MRN#1234",
        ] {
            assert_eq!(Mrn::parse(bad).unwrap_err().code, "invalid_mrn", "{bad:?}");
        }
    }

    #[test]
    fn ssns_must_have_the_issued_shape() {
        assert_eq!(Ssn::parse("123-45-6789").unwrap().expose(), "123-45-6789");
        for bad in [
            "123456789",
            "123-45-678",
            "12a-45-6789",
            "123-456-789",
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "987-65-4321",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert_eq!(Ssn::parse(bad).unwrap_err().code, "invalid_ssn", "{bad:?}");
        }
    }

    #[test]
    fn ssns_never_print() {
        let ssn = Ssn::parse("123-45-6789").unwrap();
        assert!(!format!("{ssn:?}").contains("6789"));
    }

    #[test]
    fn birth_dates_are_between_1900_and_today() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        assert!(DateOfBirth::parse("2026-11-25", today).is_ok());
        assert!(DateOfBirth::parse("1900-01-01", today).is_ok());
        assert_eq!(
            DateOfBirth::parse("2026-11-26", today).unwrap_err().code,
            "in_future"
        );
        assert_eq!(
            DateOfBirth::parse("1899-12-31", today).unwrap_err().code,
            "too_early"
        );
        for bad in [
            "2026-02-30",
            "26-01-01",
            "2026/01/01",
            "2026-1-1",
            "yesterday",
        ] {
            assert_eq!(
                DateOfBirth::parse(bad, today).unwrap_err().code,
                "invalid_date",
                "{bad}"
            );
        }
    }
}
