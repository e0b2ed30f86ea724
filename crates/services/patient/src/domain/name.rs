use super::text;
use kernel::{FieldError, FieldErrors, Sensitive};

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
        let middle = errors.take("middleName", text::optional(middle, MAX_NAME));
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
    text::present(value).and_then(|v| text::required(v, MAX_NAME))
}

/// The form names are searched in: lower case, so prefix search ignores case.
pub fn search_key(s: &str) -> String {
    s.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn search_keys_ignore_case() {
        assert_eq!(search_key(" ÉLODIE "), "élodie");
    }
}
