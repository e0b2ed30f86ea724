//! Postal addresses. Only US addresses are accepted for now: state and ZIP rules are US
//! rules, and 000 §4.1 defaults the country to USA.

use super::text;
use kernel::{FieldError, FieldErrors};
use std::fmt;

pub const ADDRESS_TYPES: [&str; 3] = ["HOME", "WORK", "BILLING"];

/// USPS codes: the states, DC, the territories and the military "states".
const US_STATES: [&str; 62] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", "DC", "AS", "GU", "MP", "PR", "VI", "UM", "FM", "MH", "PW", "AA", "AE",
];
const MILITARY_PACIFIC: &str = "AP";

#[derive(Clone, PartialEq, Eq)]
pub struct Address {
    pub(crate) address_type: &'static str,
    pub(crate) street_line1: String,
    pub(crate) street_line2: Option<String>,
    pub(crate) city: String,
    pub(crate) state: String,
    pub(crate) zip_code: String,
    pub(crate) country: String,
    pub(crate) is_primary: bool,
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({}, [redacted])", self.address_type)
    }
}

/// An address as received, before any check.
#[derive(Debug, Default)]
pub struct AddressInput<'a> {
    pub address_type: Option<&'a str>,
    pub street_line1: Option<&'a str>,
    pub street_line2: Option<&'a str>,
    pub city: Option<&'a str>,
    pub state: Option<&'a str>,
    pub zip_code: Option<&'a str>,
    pub country: Option<&'a str>,
    pub is_primary: Option<bool>,
}

impl Address {
    pub fn parse(input: &AddressInput<'_>) -> Result<Self, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        let address_type = errors.take(
            "addressType",
            text::present(input.address_type).and_then(|v| text::one_of(v, &ADDRESS_TYPES)),
        );
        let street_line1 = errors.take(
            "streetLine1",
            text::present(input.street_line1).and_then(|v| text::required(v, 255)),
        );
        let street_line2 = errors.take("streetLine2", text::optional(input.street_line2, 255));
        let city = errors.take(
            "city",
            text::present(input.city).and_then(|v| text::required(v, 100)),
        );
        let state = errors.take("state", text::present(input.state).and_then(parse_state));
        let zip_code = errors.take("zipCode", text::present(input.zip_code).and_then(parse_zip));
        let country = errors.take("country", parse_country(input.country));
        errors.finish(|| {
            Some(Self {
                address_type: address_type?,
                street_line1: street_line1?,
                street_line2: street_line2?,
                city: city?,
                state: state?,
                zip_code: zip_code?,
                country: country?,
                is_primary: input.is_primary.unwrap_or(false),
            })
        })
    }

    pub fn address_type(&self) -> &'static str {
        self.address_type
    }
    pub fn street_line1(&self) -> &str {
        &self.street_line1
    }
    pub fn street_line2(&self) -> Option<&str> {
        self.street_line2.as_deref()
    }
    pub fn city(&self) -> &str {
        &self.city
    }
    pub fn state(&self) -> &str {
        &self.state
    }
    pub fn zip_code(&self) -> &str {
        &self.zip_code
    }
    pub fn country(&self) -> &str {
        &self.country
    }
    pub fn is_primary(&self) -> bool {
        self.is_primary
    }

    /// Rebuilds an address the database holds; it was checked when it was written.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_storage(
        address_type: &str,
        street_line1: String,
        street_line2: Option<String>,
        city: String,
        state: String,
        zip_code: String,
        country: String,
        is_primary: bool,
    ) -> Self {
        let address_type = ADDRESS_TYPES
            .iter()
            .find(|t| **t == address_type)
            .copied()
            .unwrap_or("HOME");
        Self {
            address_type,
            street_line1,
            street_line2,
            city,
            state,
            zip_code,
            country,
            is_primary,
        }
    }
}

pub fn parse_state(s: &str) -> Result<String, FieldError> {
    let s = s.trim().to_ascii_uppercase();
    if US_STATES.contains(&s.as_str()) || s == MILITARY_PACIFIC {
        Ok(s)
    } else {
        Err(FieldError::new(
            "",
            "invalid_state",
            "must be a two-letter US state or territory code such as NY",
        ))
    }
}

/// `12345` or `12345-6789`.
pub fn parse_zip(s: &str) -> Result<String, FieldError> {
    let s = s.trim();
    let b = s.as_bytes();
    let digits = |r: &[u8]| r.iter().all(u8::is_ascii_digit);
    let ok = match b.len() {
        5 => digits(b),
        10 => digits(&b[..5]) && b[5] == b'-' && digits(&b[6..]),
        _ => false,
    };
    if ok && &b[..5] != b"00000" {
        Ok(s.to_owned())
    } else {
        Err(FieldError::new(
            "",
            "invalid_zip",
            "must be a US ZIP code: 12345 or 12345-6789",
        ))
    }
}

fn parse_country(s: Option<&str>) -> Result<String, FieldError> {
    match s.map(|c| c.trim().to_ascii_uppercase()).as_deref() {
        None | Some("") | Some("USA") | Some("US") => Ok("USA".to_owned()),
        Some(_) => Err(FieldError::new(
            "",
            "unsupported_country",
            "only US addresses (USA) are supported",
        )),
    }
}

/// At most one address of a patient is primary.
pub fn check_single_primary(flags: impl Iterator<Item = bool>) -> Result<(), FieldError> {
    if flags.filter(|p| *p).count() > 1 {
        Err(FieldError::new(
            "",
            "multiple_primary",
            "at most one entry may be primary",
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> AddressInput<'static> {
        AddressInput {
            address_type: Some("HOME"),
            street_line1: Some("1 Synthetic Way"),
            city: Some("Springfield"),
            state: Some("il"),
            zip_code: Some("62701-1234"),
            ..Default::default()
        }
    }

    #[test]
    fn a_complete_us_address_parses_and_defaults_to_usa() {
        let a = Address::parse(&input()).unwrap();
        assert_eq!(
            (a.state(), a.country(), a.is_primary()),
            ("IL", "USA", false)
        );
    }

    #[test]
    fn every_bad_part_is_named() {
        let bad = AddressInput {
            address_type: Some("MOON"),
            state: Some("XX"),
            zip_code: Some("1234"),
            country: Some("FR"),
            ..input()
        };
        let codes: Vec<_> = Address::parse(&bad)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect();
        assert_eq!(
            codes,
            vec![
                ("addressType".to_owned(), "invalid_value"),
                ("state".to_owned(), "invalid_state"),
                ("zipCode".to_owned(), "invalid_zip"),
                ("country".to_owned(), "unsupported_country"),
            ]
        );
    }

    #[test]
    fn zip_codes_have_five_or_nine_digits() {
        assert!(parse_zip("10001").is_ok());
        for bad in ["1000", "100011", "10001-12", "1000a", "00000", "10001 1234"] {
            assert!(parse_zip(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_one_primary() {
        assert!(check_single_primary([true, false].into_iter()).is_ok());
        assert!(check_single_primary([true, true].into_iter()).is_err());
    }
}
