use super::identifiers::parse_date;
use super::text;
use chrono::NaiveDate;
use kernel::{FieldError, FieldErrors};
use std::fmt;

pub const RELATIONSHIPS: [&str; 4] = ["SELF", "SPOUSE", "CHILD", "OTHER"];

/// A patient's coverage with one payer (000 §4.1, patient_insurance).
#[derive(Clone, PartialEq, Eq)]
pub struct Insurance {
    pub(crate) policy_number: String,
    pub(crate) payer_id: String,
    pub(crate) payer_name: String,
    pub(crate) group_number: Option<String>,
    pub(crate) policy_holder_name: Option<String>,
    pub(crate) relationship_to_insured: Option<&'static str>,
    pub(crate) effective_date: NaiveDate,
    pub(crate) termination_date: Option<NaiveDate>,
    pub(crate) is_primary: bool,
}

impl fmt::Debug for Insurance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Insurance({}, [redacted])", self.payer_id)
    }
}

#[derive(Debug, Default)]
pub struct InsuranceInput<'a> {
    pub policy_number: Option<&'a str>,
    pub payer_id: Option<&'a str>,
    pub payer_name: Option<&'a str>,
    pub group_number: Option<&'a str>,
    pub policy_holder_name: Option<&'a str>,
    pub relationship_to_insured: Option<&'a str>,
    pub effective_date: Option<&'a str>,
    pub termination_date: Option<&'a str>,
    pub is_primary: Option<bool>,
}

impl Insurance {
    pub fn parse(input: &InsuranceInput<'_>) -> Result<Self, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        let policy_number = errors.take(
            "policyNumber",
            text::present(input.policy_number).and_then(|v| text::code(v, 50)),
        );
        let payer_id = errors.take(
            "payerId",
            text::present(input.payer_id).and_then(|v| text::code(v, 50)),
        );
        let payer_name = errors.take(
            "payerName",
            text::present(input.payer_name).and_then(|v| text::required(v, 255)),
        );
        let group_number = errors.take(
            "groupNumber",
            input
                .group_number
                .filter(|g| !g.trim().is_empty())
                .map(|g| text::code(g, 50))
                .transpose(),
        );
        let policy_holder_name = errors.take(
            "policyHolderName",
            text::optional(input.policy_holder_name, 255),
        );
        let relationship = errors.take(
            "relationshipToInsured",
            input
                .relationship_to_insured
                .map(|r| text::one_of(r, &RELATIONSHIPS))
                .transpose(),
        );
        let effective_date = errors.take(
            "effectiveDate",
            text::present(input.effective_date).and_then(parse_date),
        );
        let termination_date = errors.take(
            "terminationDate",
            input.termination_date.map(parse_date).transpose(),
        );
        if let (Some(from), Some(Some(to))) = (effective_date, termination_date)
            && to < from
        {
            errors.push(FieldError::new(
                "terminationDate",
                "before_effective_date",
                "must not be before effectiveDate",
            ));
        }
        errors.finish(|| {
            Some(Self {
                policy_number: policy_number?,
                payer_id: payer_id?,
                payer_name: payer_name?,
                group_number: group_number?,
                policy_holder_name: policy_holder_name?,
                relationship_to_insured: relationship?,
                effective_date: effective_date?,
                termination_date: termination_date?,
                is_primary: input.is_primary.unwrap_or(false),
            })
        })
    }

    pub fn policy_number(&self) -> &str {
        &self.policy_number
    }
    pub fn payer_id(&self) -> &str {
        &self.payer_id
    }
    pub fn payer_name(&self) -> &str {
        &self.payer_name
    }
    pub fn group_number(&self) -> Option<&str> {
        self.group_number.as_deref()
    }
    pub fn policy_holder_name(&self) -> Option<&str> {
        self.policy_holder_name.as_deref()
    }
    pub fn relationship_to_insured(&self) -> Option<&'static str> {
        self.relationship_to_insured
    }
    pub fn effective_date(&self) -> NaiveDate {
        self.effective_date
    }
    pub fn termination_date(&self) -> Option<NaiveDate> {
        self.termination_date
    }
    pub fn is_primary(&self) -> bool {
        self.is_primary
    }

    /// Maps a stored relationship back to its constant; the CHECK constraint keeps it valid.
    pub(crate) fn relationship_from_storage(r: Option<&str>) -> Option<&'static str> {
        r.and_then(|r| RELATIONSHIPS.iter().find(|k| **k == r).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> InsuranceInput<'static> {
        InsuranceInput {
            policy_number: Some("POL-1"),
            payer_id: Some("PAYER-9"),
            payer_name: Some("Synthetic Health Plan"),
            effective_date: Some("2026-01-01"),
            ..Default::default()
        }
    }

    #[test]
    fn coverage_parses_with_only_the_required_fields() {
        let i = Insurance::parse(&input()).unwrap();
        assert_eq!(
            (i.payer_id(), i.relationship_to_insured(), i.is_primary()),
            ("PAYER-9", None, false)
        );
    }

    #[test]
    fn coverage_cannot_end_before_it_starts() {
        let bad = InsuranceInput {
            termination_date: Some("2025-12-31"),
            ..input()
        };
        let e = Insurance::parse(&bad).unwrap_err();
        assert_eq!(
            (e[0].field.as_str(), e[0].code),
            ("terminationDate", "before_effective_date")
        );
    }

    #[test]
    fn relationship_must_be_a_known_code() {
        let bad = InsuranceInput {
            relationship_to_insured: Some("COUSIN"),
            ..input()
        };
        assert_eq!(
            Insurance::parse(&bad).unwrap_err()[0].field,
            "relationshipToInsured"
        );
    }
}
