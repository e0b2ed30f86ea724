use super::{codes, text};
use chrono::{DateTime, Utc};
use kernel::ids::{MedicalRecordId, PatientId};
use kernel::{FieldError, FieldErrors, Sensitive};

pub const RECORD_TYPES: [&str; 5] = ["VISIT", "LAB", "IMAGING", "PROCEDURE", "MEDICATION"];
pub use kernel::codes::{MAX_CODES, code_list};
pub use kernel::text::timestamp as parse_timestamp;
pub const MAX_NOTES: usize = 20_000;
/// Clocks of the systems that send us records drift; a record dated a little ahead of ours
/// is not a mistake.

#[derive(Debug, Clone, PartialEq)]
pub struct MedicalRecord {
    pub id: MedicalRecordId,
    pub patient_id: PatientId,
    pub record_type: &'static str,
    pub record_date: DateTime<Utc>,
    pub provider_id: String,
    pub diagnosis_codes: Vec<String>,
    pub procedure_codes: Vec<String>,
    pub notes: Option<Sensitive<String>>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

#[derive(Debug, Default)]
pub struct MedicalRecordInput<'a> {
    pub record_type: Option<&'a str>,
    pub record_date: Option<&'a str>,
    pub provider_id: Option<&'a str>,
    pub diagnosis_codes: &'a [String],
    pub procedure_codes: &'a [String],
    pub notes: Option<&'a str>,
}

/// A medical record as checked, before it has an id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMedicalRecord {
    pub record_type: &'static str,
    pub record_date: DateTime<Utc>,
    pub provider_id: String,
    pub diagnosis_codes: Vec<String>,
    pub procedure_codes: Vec<String>,
    pub notes: Option<Sensitive<String>>,
}

impl NewMedicalRecord {
    pub fn parse(
        input: &MedicalRecordInput<'_>,
        now: DateTime<Utc>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        let record_type = errors.take(
            "recordType",
            text::present(input.record_type).and_then(|v| text::one_of(v, &RECORD_TYPES)),
        );
        let record_date = errors.take(
            "recordDate",
            text::present(input.record_date).and_then(|v| parse_timestamp(v, now)),
        );
        let provider_id = errors.take(
            "providerId",
            text::present(input.provider_id).and_then(|v| text::code(v, 50)),
        );
        let diagnosis_codes = code_list(
            &mut errors,
            "diagnosisCodes",
            input.diagnosis_codes,
            codes::icd10cm,
        );
        let procedure_codes = code_list(
            &mut errors,
            "procedureCodes",
            input.procedure_codes,
            codes::cpt,
        );
        let notes = errors.take("notes", notes(input.notes));
        errors.finish(|| {
            Some(Self {
                record_type: record_type?,
                record_date: record_date?,
                provider_id: provider_id?,
                diagnosis_codes: diagnosis_codes?,
                procedure_codes: procedure_codes?,
                notes: notes?,
            })
        })
    }
}

fn notes(v: Option<&str>) -> Result<Option<Sensitive<String>>, FieldError> {
    match v {
        None => Ok(None),
        Some(n) if n.trim().is_empty() => Ok(None),
        // Notes are prose: line breaks and tabs belong there, other control characters don't.
        Some(n)
            if n.chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) =>
        {
            Err(FieldError::new(
                "",
                "invalid_characters",
                "must not contain control characters",
            ))
        }
        Some(n) if n.chars().count() > MAX_NOTES => Err(FieldError::new(
            "",
            "too_long",
            format!("must be at most {MAX_NOTES} characters"),
        )),
        Some(n) => Ok(Some(Sensitive::new(n.to_owned()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_visit_with_codes_parses_and_codes_are_normalised() {
        let dx = vec!["e11.65".to_owned(), "E1165".to_owned()];
        let px = vec!["99213".to_owned()];
        let input = MedicalRecordInput {
            record_type: Some("VISIT"),
            record_date: Some("2026-11-20T09:30:00-05:00"),
            provider_id: Some("NPI1234567890"),
            diagnosis_codes: &dx,
            procedure_codes: &px,
            notes: Some("line one\nline two"),
        };
        let r = NewMedicalRecord::parse(&input, now()).unwrap();
        assert_eq!(r.diagnosis_codes, vec!["E11.65"]);
        assert_eq!(
            r.record_date,
            "2026-11-20T14:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn bad_codes_are_reported_at_their_index() {
        let dx = vec!["E11.65".to_owned(), "nope".to_owned()];
        let input = MedicalRecordInput {
            record_type: Some("SURGERY"),
            record_date: Some("2030-01-01T00:00:00Z"),
            provider_id: None,
            diagnosis_codes: &dx,
            ..Default::default()
        };
        let fields: Vec<_> = NewMedicalRecord::parse(&input, now())
            .unwrap_err()
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("recordType".to_owned(), "invalid_value"),
                ("recordDate".to_owned(), "in_future"),
                ("providerId".to_owned(), "required"),
                ("diagnosisCodes[1]".to_owned(), "invalid_icd10cm"),
            ]
        );
    }

    #[test]
    fn timestamps_need_an_offset() {
        assert!(parse_timestamp("2026-11-20T09:30:00", now()).is_err());
        assert!(parse_timestamp("2026-11-25T12:04:00Z", now()).is_ok());
    }
}
