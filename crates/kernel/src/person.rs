//! A person's identifying demographics as every service takes them: the MRN, the name and
//! the date of birth (000 §2.1.1). The patient service holds patients; the lab's HL7
//! interface checks by these rules what it hands on to it, so a message the patient
//! service would refuse is refused to its sender (AE) instead of accepted and then
//! dead-lettered.

use crate::{FieldError, FieldErrors, Sensitive};
use chrono::{Datelike, NaiveDate};
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
    pub fn from_storage(date: NaiveDate) -> Self {
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

pub const MAX_NAME: usize = 100;

/// A person's name. `Debug` never shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName {
    first: Sensitive<String>,
    middle: Option<Sensitive<String>>,
    last: Sensitive<String>,
}

impl PersonName {
    /// Checks all three parts and reports every problem, rooted at `firstName` etc.
    pub fn parse(
        first: Option<&str>,
        middle: Option<&str>,
        last: Option<&str>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        let first = errors.take("firstName", part(first));
        let middle = errors.take("middleName", crate::text::optional(middle, MAX_NAME));
        let last = errors.take("lastName", part(last));
        errors.finish(|| {
            Some(Self {
                first: Sensitive::new(first?),
                middle: middle?.map(Sensitive::new),
                last: Sensitive::new(last?),
            })
        })
    }

    pub fn first(&self) -> &str {
        self.first.expose()
    }

    pub fn middle(&self) -> Option<&str> {
        self.middle.as_ref().map(|m| m.expose().as_str())
    }

    pub fn last(&self) -> &str {
        self.last.expose()
    }
}

fn part(value: Option<&str>) -> Result<String, FieldError> {
    crate::text::present(value).and_then(|v| crate::text::required(v, MAX_NAME))
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

    #[test]
    fn every_missing_part_is_reported_at_once() {
        let errors = PersonName::parse(None, None, Some(" ")).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            fields,
            vec![("firstName", "required"), ("lastName", "required")]
        );
    }

    #[test]
    fn names_are_trimmed_and_length_limited() {
        let n = PersonName::parse(Some(" Zoë "), Some(""), Some("O'Brien-Smith")).unwrap();
        assert_eq!(
            (n.first(), n.middle(), n.last()),
            ("Zoë", None, "O'Brien-Smith")
        );
        let long = "x".repeat(MAX_NAME + 1);
        assert_eq!(
            PersonName::parse(Some(&long), None, Some("a")).unwrap_err()[0].code,
            "too_long"
        );
    }

    #[test]
    fn names_never_print() {
        let n = PersonName::parse(Some("Quentin"), None, Some("Zebulon")).unwrap();
        let shown = format!("{n:?}");
        assert!(!shown.contains("Quentin") && !shown.contains("Zebulon"));
    }
}
