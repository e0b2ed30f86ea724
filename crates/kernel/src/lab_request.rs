//! A request for laboratory tests as clinicians make it (tests, priority, ordering
//! provider, diagnoses): the patient service takes it on `order-labs`, the lab service on
//! `POST /api/v1/lab/orders`, and both check it by these same rules.

use crate::codes::{self, code_list};
use crate::text;
use crate::{FieldError, FieldErrors};

pub const PRIORITIES: [&str; 3] = ["STAT", "URGENT", "ROUTINE"];
pub const MAX_TESTS: usize = 50;

#[derive(Debug, Clone, PartialEq)]
pub struct OrderedTest {
    pub test_code: String,
    pub test_name: String,
    pub loinc_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LabOrderRequest {
    pub tests: Vec<OrderedTest>,
    pub priority: &'static str,
    pub ordering_provider_id: String,
    pub ordering_provider_name: String,
    pub diagnosis_codes: Vec<String>,
}

#[derive(Debug, Default)]
pub struct TestInput<'a> {
    pub test_code: Option<&'a str>,
    pub test_name: Option<&'a str>,
    pub loinc_code: Option<&'a str>,
}

#[derive(Debug, Default)]
pub struct LabOrderInput<'a> {
    pub tests: Vec<TestInput<'a>>,
    pub priority: Option<&'a str>,
    pub ordering_provider_id: Option<&'a str>,
    pub ordering_provider_name: Option<&'a str>,
    pub diagnosis_codes: &'a [String],
}

impl LabOrderRequest {
    pub fn parse(input: &LabOrderInput<'_>) -> Result<Self, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        if input.tests.is_empty() {
            errors.push(FieldError::new(
                "tests",
                "required",
                "at least one test is required",
            ));
        } else if input.tests.len() > MAX_TESTS {
            errors.push(FieldError::new(
                "tests",
                "too_many",
                format!("at most {MAX_TESTS} tests"),
            ));
        }
        let mut tests = Vec::new();
        for (i, t) in input.tests.iter().enumerate().take(MAX_TESTS) {
            let at = |f: &str| format!("tests[{i}].{f}");
            let code = errors.take(
                &at("testCode"),
                text::present(t.test_code).and_then(|v| text::code(v, 50)),
            );
            let name = errors.take(
                &at("testName"),
                text::present(t.test_name).and_then(|v| text::required(v, 255)),
            );
            let loinc = errors.take(&at("loincCode"), t.loinc_code.map(codes::loinc).transpose());
            if let (Some(test_code), Some(test_name), Some(loinc_code)) = (code, name, loinc) {
                tests.push(OrderedTest {
                    test_code,
                    test_name,
                    loinc_code,
                });
            }
        }
        let priority = errors.take(
            "priority",
            input
                .priority
                .map_or(Ok("ROUTINE"), |p| text::one_of(p, &PRIORITIES)),
        );
        let provider_id = errors.take(
            "orderingProviderId",
            text::present(input.ordering_provider_id).and_then(|v| text::code(v, 50)),
        );
        let provider_name = errors.take(
            "orderingProviderName",
            text::present(input.ordering_provider_name).and_then(|v| text::required(v, 255)),
        );
        let diagnosis_codes = code_list(
            &mut errors,
            "diagnosisCodes",
            input.diagnosis_codes,
            codes::icd10cm,
        );
        errors.finish(|| {
            Some(Self {
                tests,
                priority: priority?,
                ordering_provider_id: provider_id?,
                ordering_provider_name: provider_name?,
                diagnosis_codes: diagnosis_codes?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_needs_tests_and_a_provider_and_defaults_to_routine() {
        let ok = LabOrderInput {
            tests: vec![TestInput {
                test_code: Some("CBC"),
                test_name: Some("Complete blood count"),
                loinc_code: Some("58410-2"),
            }],
            ordering_provider_id: Some("PRV-1"),
            ordering_provider_name: Some("Synthetic Provider"),
            ..Default::default()
        };
        assert_eq!(LabOrderRequest::parse(&ok).unwrap().priority, "ROUTINE");

        let fields: Vec<_> = LabOrderRequest::parse(&LabOrderInput {
            priority: Some("ASAP"),
            ..Default::default()
        })
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect();
        assert_eq!(
            fields,
            vec![
                "tests",
                "priority",
                "orderingProviderId",
                "orderingProviderName"
            ]
        );
    }

    #[test]
    fn each_test_is_checked_at_its_index() {
        let bad = LabOrderInput {
            tests: vec![TestInput {
                test_code: Some("CBC"),
                test_name: None,
                loinc_code: Some("58410-3"),
            }],
            ordering_provider_id: Some("PRV-1"),
            ordering_provider_name: Some("Synthetic Provider"),
            ..Default::default()
        };
        let fields: Vec<_> = LabOrderRequest::parse(&bad)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, vec!["tests[0].testName", "tests[0].loincCode"]);
    }
}
