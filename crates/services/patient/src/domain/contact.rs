use kernel::{FieldError, Sensitive};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gender {
    Male,
    Female,
    Other,
    Unknown,
}

impl Gender {
    pub const ALL: [&'static str; 4] = ["MALE", "FEMALE", "OTHER", "UNKNOWN"];

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        Ok(match super::text::one_of(s, &Self::ALL)? {
            "MALE" => Gender::Male,
            "FEMALE" => Gender::Female,
            "OTHER" => Gender::Other,
            _ => Gender::Unknown,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Gender::Male => "MALE",
            Gender::Female => "FEMALE",
            Gender::Other => "OTHER",
            Gender::Unknown => "UNKNOWN",
        }
    }
}

/// An e-mail address of the ordinary `local@domain.tld` shape, at most 255 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(Sensitive<String>);

impl Email {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let s = s.trim();
        let invalid = || {
            FieldError::new(
                "",
                "invalid_email",
                "must be an e-mail address such as name@example.org",
            )
        };
        if s.len() > 255 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = s.split_once('@').ok_or_else(invalid)?;
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
            && labels
                .last()
                .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(char::is_alphabetic));
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(Sensitive::new(s.to_owned())))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// Addresses are matched without regard to case.
    pub fn search_key(&self) -> String {
        self.expose().to_lowercase()
    }
}

/// A phone number, kept in E.164 (`+15555550123`). US numbers may be written with ten
/// digits and the usual separators; others need their `+` country code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(Sensitive<String>);

impl Phone {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let s = s.trim();
        let invalid = || {
            FieldError::new(
                "",
                "invalid_phone",
                "must be a phone number: 10 US digits, or + and 8 to 15 digits",
            )
        };
        if s.len() > 25
            || !s
                .chars()
                .all(|c| c.is_ascii_digit() || " ()-.+".contains(c))
        {
            return Err(invalid());
        }
        if s.rfind('+').is_some_and(|i| i != 0) {
            return Err(invalid());
        }
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        let e164 = if s.starts_with('+') {
            (8..=15)
                .contains(&digits.len())
                .then(|| format!("+{digits}"))
        } else {
            match digits.len() {
                10 => Some(format!("+1{digits}")),
                11 if digits.starts_with('1') => Some(format!("+{digits}")),
                _ => None,
            }
        };
        let e164 = e164.ok_or_else(invalid)?;
        // North American numbers: area code and exchange never start with 0 or 1.
        if let Some(national) = e164.strip_prefix("+1").filter(|n| n.len() == 10) {
            let b = national.as_bytes();
            if b[0] < b'2' || b[3] < b'2' {
                return Err(invalid());
            }
        }
        Ok(Self(Sensitive::new(e164)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gender_is_one_of_four_codes() {
        assert_eq!(Gender::parse("FEMALE").unwrap(), Gender::Female);
        assert_eq!(Gender::parse("female").unwrap_err().code, "invalid_value");
        assert_eq!(Gender::parse("X").unwrap_err().code, "invalid_value");
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert!(Email::parse("ann.lee+lab@example-clinic.org").is_ok());
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.org",
            "ann@example",
            "ann@@example.org",
            "ann lee@example.org",
            "ann@exa mple.org",
            "ann@-x.org",
            "ann@example.c0m",
        ] {
            assert_eq!(
                Email::parse(bad).unwrap_err().code,
                "invalid_email",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn phones_are_kept_in_e164() {
        assert_eq!(
            Phone::parse("(555) 234-5678").unwrap().expose(),
            "+15552345678"
        );
        assert_eq!(
            Phone::parse("1-555-234-5678").unwrap().expose(),
            "+15552345678"
        );
        assert_eq!(
            Phone::parse("+44 20 7946 0958").unwrap().expose(),
            "+442079460958"
        );
        for bad in [
            "",
            "555-1234",
            "phone",
            "+1 555 234 5678 99999",
            "555+2345678",
            "(055) 234-5678",
            "555-134-5678",
        ] {
            assert_eq!(
                Phone::parse(bad).unwrap_err().code,
                "invalid_phone",
                "{bad:?}"
            );
        }
    }
}
