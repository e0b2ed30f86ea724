pub use kernel::person::{MAX_NAME, PersonName};

/// The form names are searched in: lower case, so prefix search ignores case.
pub fn search_key(s: &str) -> String {
    s.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_keys_ignore_case() {
        assert_eq!(search_key(" ÉLODIE "), "élodie");
    }
}
