//! The JSON Schema of every event type, generated from the Rust types, and the rules for
//! changing one. Checked-in copies live in `crates/events/schemas/`; a test compares them
//! with the types and refuses incompatible changes to a `vN` type: removing a field,
//! changing a field's type, or adding a required field (new fields must be optional).
//! Such a change needs a new version (`…v2`) beside the old one.

use crate::audit::AuditEntryRecordedV1;
use crate::insurance::{
    InsuranceClaimProcessedV1, InsuranceEligibilityVerifiedV1, InsurancePreauthApprovedV1,
    InsurancePreauthDeniedV1,
};
use crate::lab::{
    LabAdtReceivedV1, LabCriticalResultV1, LabResultsAvailableV1, LabTestCancelledV1,
    LabTestOrderedV1,
};
use crate::patient::{
    PatientCreatedV1, PatientDeletedV1, PatientDischargedV1, PatientLabsRequestedV1,
    PatientUpdatedV1,
};
use crate::pharmacy::{
    DrugInteractionDetectedV1, MedicationDispensedV1, PrescriptionCreatedV1, PrescriptionFilledV1,
    PrescriptionReceivedV1,
};
use crate::{EventEnvelope, EventPayload};
use schemars::{JsonSchema, schema_for};
use serde_json::Value;

fn schema<T: JsonSchema>() -> Value {
    strip_prose(serde_json::to_value(schema_for!(T)).unwrap_or(Value::Null))
}

fn payload<P: EventPayload + JsonSchema>() -> (&'static str, Value) {
    (P::EVENT_TYPE, schema::<P>())
}

/// `(name, schema)` for the envelope and every event type.
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        ("envelope", schema::<EventEnvelope>()),
        payload::<PatientCreatedV1>(),
        payload::<PatientUpdatedV1>(),
        payload::<PatientDeletedV1>(),
        payload::<PatientDischargedV1>(),
        payload::<PatientLabsRequestedV1>(),
        payload::<LabTestOrderedV1>(),
        payload::<LabResultsAvailableV1>(),
        payload::<LabTestCancelledV1>(),
        payload::<LabCriticalResultV1>(),
        payload::<LabAdtReceivedV1>(),
        payload::<InsuranceEligibilityVerifiedV1>(),
        payload::<InsuranceClaimProcessedV1>(),
        payload::<InsurancePreauthApprovedV1>(),
        payload::<InsurancePreauthDeniedV1>(),
        payload::<PrescriptionCreatedV1>(),
        payload::<PrescriptionReceivedV1>(),
        payload::<PrescriptionFilledV1>(),
        payload::<MedicationDispensedV1>(),
        payload::<DrugInteractionDetectedV1>(),
        payload::<AuditEntryRecordedV1>(),
    ]
}

/// Doc comments become descriptions; editing one is not a change of contract.
fn strip_prose(mut v: Value) -> Value {
    if let Value::Object(map) = &mut v {
        map.remove("description");
        map.remove("title");
        for value in map.values_mut() {
            *value = strip_prose(value.take());
        }
    } else if let Value::Array(items) = &mut v {
        for item in items {
            *item = strip_prose(item.take());
        }
    }
    v
}

/// What in `new` would break a consumer written against `old`. Empty: compatible.
pub fn incompatibilities(old: &Value, new: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    compare("", old, new, old, new, &mut problems);
    problems
}

fn resolve<'a>(v: &'a Value, root: &'a Value) -> &'a Value {
    match v
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        Some(name) => root.get("$defs").and_then(|d| d.get(name)).unwrap_or(v),
        None => v,
    }
}

fn required(v: &Value) -> Vec<&str> {
    v.get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn compare(
    path: &str,
    old: &Value,
    new: &Value,
    old_root: &Value,
    new_root: &Value,
    problems: &mut Vec<String>,
) {
    let (old, new) = (resolve(old, old_root), resolve(new, new_root));
    if old.get("type") != new.get("type") || old.get("format") != new.get("format") {
        problems.push(format!(
            "{}: type changed from {} to {}",
            if path.is_empty() { "(root)" } else { path },
            describe(old),
            describe(new)
        ));
        return;
    }
    if let Some(old_props) = old.get("properties").and_then(Value::as_object) {
        let new_props = new.get("properties").and_then(Value::as_object);
        for (name, old_prop) in old_props {
            let at = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            match new_props.and_then(|p| p.get(name)) {
                None => problems.push(format!("{at}: removed")),
                Some(new_prop) => compare(&at, old_prop, new_prop, old_root, new_root, problems),
            }
        }
        let was_required = required(old);
        for name in required(new) {
            if !was_required.contains(&name) {
                let at = if path.is_empty() {
                    name.to_owned()
                } else {
                    format!("{path}.{name}")
                };
                problems.push(format!(
                    "{at}: newly required (new fields must be optional)"
                ));
            }
        }
    }
    if let (Some(old_items), Some(new_items)) = (old.get("items"), new.get("items")) {
        compare(
            &format!("{path}[]"),
            old_items,
            new_items,
            old_root,
            new_root,
            problems,
        );
    }
}

fn describe(v: &Value) -> String {
    match (v.get("type"), v.get("format")) {
        (Some(t), Some(f)) => format!("{t} ({f})"),
        (Some(t), None) => t.to_string(),
        _ => "something else".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(props: Value, required: &[&str]) -> Value {
        json!({"type": "object", "properties": props, "required": required})
    }

    #[test]
    fn removing_a_field_is_incompatible() {
        let old = object(
            json!({"a": {"type": "string"}, "b": {"type": "string"}}),
            &["a"],
        );
        let new = object(json!({"a": {"type": "string"}}), &["a"]);
        assert_eq!(incompatibilities(&old, &new), vec!["b: removed"]);
    }

    #[test]
    fn changing_a_type_is_incompatible_even_when_nested() {
        let old = object(
            json!({"tests": {"type": "array", "items": {"$ref": "#/$defs/T"}}}),
            &[],
        );
        let mut old = old;
        old["$defs"] = json!({"T": object(json!({"code": {"type": "string"}}), &["code"])});
        let mut new = old.clone();
        new["$defs"]["T"]["properties"]["code"] = json!({"type": "integer"});
        assert_eq!(
            incompatibilities(&old, &new),
            vec![r#"tests[].code: type changed from "string" to "integer""#]
        );
    }

    #[test]
    fn new_fields_must_be_optional() {
        let old = object(json!({"a": {"type": "string"}}), &["a"]);
        let optional = object(
            json!({"a": {"type": "string"}, "b": {"type": ["string", "null"]}}),
            &["a"],
        );
        assert!(incompatibilities(&old, &optional).is_empty());
        let required = object(
            json!({"a": {"type": "string"}, "b": {"type": "string"}}),
            &["a", "b"],
        );
        assert_eq!(
            incompatibilities(&old, &required),
            vec!["b: newly required (new fields must be optional)"]
        );
    }

    #[test]
    fn every_event_type_has_a_schema_with_camel_case_fields() {
        let all = all();
        // Every event type 000 §2 names, plus our patient.deleted.v1, the request that hands
        // order-labs to the lab service, ADT demographics the lab's HL7 interface hands on, the audit trail's audit.entry.recorded.v1, and the
        // envelope.
        let mut names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            vec![
                "audit.entry.recorded.v1",
                "drug.interaction.detected.v1",
                "envelope",
                "insurance.claim.processed.v1",
                "insurance.eligibility.verified.v1",
                "insurance.preauth.approved.v1",
                "insurance.preauth.denied.v1",
                "lab.adt.received.v1",
                "lab.critical.result.v1",
                "lab.results.available.v1",
                "lab.test.cancelled.v1",
                "lab.test.ordered.v1",
                "medication.dispensed.v1",
                "patient.created.v1",
                "patient.deleted.v1",
                "patient.discharged.v1",
                "patient.labs.requested.v1",
                "patient.updated.v1",
                "prescription.created.v1",
                "prescription.filled.v1",
                "prescription.received.v1",
            ]
        );
        let (_, created) = all
            .iter()
            .find(|(n, _)| *n == "patient.created.v1")
            .unwrap();
        assert!(
            created["properties"].get("patientId").is_some(),
            "{created}"
        );
        assert!(created.get("description").is_none());
    }
}
