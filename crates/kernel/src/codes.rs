//! Shapes of clinical code systems. These check the form of a code, not that it exists in
//! the current release of the code set: that needs the licensed tables.

use crate::{FieldError, FieldErrors};

/// The most codes a list (diagnoses, procedures) may hold.
pub const MAX_CODES: usize = 50;

/// ICD-10-CM: a letter (not U, which is reserved), a digit, a digit or letter, then
/// optionally a dot and one to four digits or letters (`E11.65`, `S72.001A`, `Z00.00`).
/// Accepted without the dot too (`E1165`), and stored with it.
pub fn icd10cm(s: &str) -> Result<String, FieldError> {
    let s = s.trim().to_ascii_uppercase();
    let compact: String = s.chars().filter(|c| *c != '.').collect();
    let dots = s.matches('.').count();
    let b = compact.as_bytes();
    let ok = (3..=7).contains(&b.len())
        && b[0].is_ascii_uppercase()
        && b[0] != b'U'
        && b[1].is_ascii_digit()
        && b[2..].iter().all(u8::is_ascii_alphanumeric)
        && (dots == 0 || (dots == 1 && s.find('.') == Some(3) && b.len() > 3));
    if !ok {
        return Err(FieldError::new(
            "",
            "invalid_icd10cm",
            "must be an ICD-10-CM code such as E11.65",
        ));
    }
    Ok(if b.len() > 3 {
        format!("{}.{}", &compact[..3], &compact[3..])
    } else {
        compact
    })
}

/// CPT: five characters, four digits then a digit (Category I), `F` (Category II),
/// `T` (Category III) or `U` (proprietary laboratory analyses).
pub fn cpt(s: &str) -> Result<String, FieldError> {
    let s = s.trim().to_ascii_uppercase();
    let b = s.as_bytes();
    let ok = b.len() == 5
        && b[..4].iter().all(u8::is_ascii_digit)
        && (b[4].is_ascii_digit() || matches!(b[4], b'F' | b'T' | b'U'));
    if ok {
        Ok(s)
    } else {
        Err(FieldError::new(
            "",
            "invalid_cpt",
            "must be a CPT code such as 99213 or 0001U",
        ))
    }
}

/// LOINC: one to seven digits, a hyphen and a check digit (`2345-7`). The check digit is
/// verified (mod 10), catching most typos.
pub fn loinc(s: &str) -> Result<String, FieldError> {
    let s = s.trim();
    let invalid = || FieldError::new("", "invalid_loinc", "must be a LOINC code such as 2345-7");
    let (body, check) = s.split_once('-').ok_or_else(invalid)?;
    if body.is_empty()
        || body.len() > 7
        || !body.bytes().all(|b| b.is_ascii_digit())
        || check.len() != 1
    {
        return Err(invalid());
    }
    let check = check
        .bytes()
        .next()
        .filter(u8::is_ascii_digit)
        .ok_or_else(invalid)?
        - b'0';
    if loinc_check_digit(body) != check {
        return Err(FieldError::new(
            "",
            "invalid_loinc",
            "has a wrong check digit",
        ));
    }
    Ok(s.to_owned())
}

/// The Mod 10 algorithm LOINC uses (Luhn, doubling from the rightmost digit).
fn loinc_check_digit(body: &str) -> u8 {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                x / 10 + x % 10
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// Checks every code of a list, reporting each bad one at its index, and the list length.
pub fn code_list(
    errors: &mut FieldErrors,
    field: &str,
    raw: &[String],
    parse: fn(&str) -> Result<String, FieldError>,
) -> Option<Vec<String>> {
    if raw.len() > MAX_CODES {
        errors.push(FieldError::new(
            field,
            "too_many",
            format!("at most {MAX_CODES} codes"),
        ));
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut ok = true;
    for (i, code) in raw.iter().enumerate() {
        match errors.take(&format!("{field}[{i}]"), parse(code)) {
            Some(c) if !out.contains(&c) => out.push(c),
            Some(_) => {}
            None => ok = false,
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icd10cm_codes_are_normalised() {
        assert_eq!(icd10cm("e11.65").unwrap(), "E11.65");
        assert_eq!(icd10cm("E1165").unwrap(), "E11.65");
        assert_eq!(icd10cm("S72.001A").unwrap(), "S72.001A");
        assert_eq!(icd10cm("I10").unwrap(), "I10");
        for bad in [
            "",
            "E1",
            "11.65",
            "EE1.65",
            "E11.",
            "E1.165",
            "U07.1",
            "E11.65432",
            "E11..6",
        ] {
            assert_eq!(icd10cm(bad).unwrap_err().code, "invalid_icd10cm", "{bad:?}");
        }
    }

    #[test]
    fn cpt_codes_have_five_characters() {
        for good in ["99213", "0001U", "3074F", "0042T"] {
            assert_eq!(cpt(good).unwrap(), good);
        }
        for bad in ["9921", "992134", "A9213", "9921X"] {
            assert_eq!(cpt(bad).unwrap_err().code, "invalid_cpt", "{bad:?}");
        }
    }

    #[test]
    fn loinc_check_digits_are_verified() {
        for good in ["2345-7", "718-7", "58410-2", "4548-4"] {
            assert_eq!(loinc(good).unwrap(), good);
        }
        for bad in ["2345-8", "2345", "-7", "12345678-1", "2345-77"] {
            assert_eq!(loinc(bad).unwrap_err().code, "invalid_loinc", "{bad:?}");
        }
    }
}
