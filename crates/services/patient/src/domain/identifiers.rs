//! MRN, SSN and date of birth: the identifying value objects of 000 §2.1.1. The MRN and
//! date of birth are the kernel's (`kernel::person`): the lab's HL7 interface checks the
//! demographics it hands on by the same rules.

use kernel::{FieldError, Sensitive};

pub use kernel::person::{DateOfBirth, Mrn, parse_date};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
