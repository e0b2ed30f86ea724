//! What travels over HTTP: request bodies (unknown fields refused) and answers.

use crate::domain::{LabOrder, LabTest, ResultRevision, Specimen};
use crate::store::hl7::{MessageSummary, Unmatched, UnmatchedObservation};
use chrono::{DateTime, Utc};
use kernel::lab_request::{LabOrderInput, TestInput};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OrderIn {
    pub patient_id: Option<String>,
    pub mrn: Option<String>,
    #[serde(default)]
    tests: Vec<TestIn>,
    priority: Option<String>,
    ordering_provider_id: Option<String>,
    ordering_provider_name: Option<String>,
    #[serde(default)]
    diagnosis_codes: Vec<String>,
    #[serde(default)]
    pub requires_preauthorization: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TestIn {
    test_code: Option<String>,
    test_name: Option<String>,
    loinc_code: Option<String>,
}

impl OrderIn {
    pub fn request(&self) -> LabOrderInput<'_> {
        LabOrderInput {
            tests: self
                .tests
                .iter()
                .map(|t| TestInput {
                    test_code: t.test_code.as_deref(),
                    test_name: t.test_name.as_deref(),
                    loinc_code: t.loinc_code.as_deref(),
                })
                .collect(),
            priority: self.priority.as_deref(),
            ordering_provider_id: self.ordering_provider_id.as_deref(),
            ordering_provider_name: self.ordering_provider_name.as_deref(),
            diagnosis_codes: &self.diagnosis_codes,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StatusIn {
    pub status: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CancelIn {
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SpecimenIn {
    pub specimen_type: Option<String>,
    pub collected_at: Option<String>,
    pub collected_by: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReceiptIn {
    pub received_at: Option<String>,
    pub condition: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConditionIn {
    pub condition: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReconcileIn {
    pub order_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResultsIn {
    pub order_id: Option<String>,
    #[serde(default)]
    pub results: Vec<ResultIn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResultIn {
    pub test_code: Option<String>,
    pub value: Option<String>,
    pub unit: Option<String>,
    pub reference_range: Option<String>,
    pub abnormal_flag: Option<String>,
    pub performed_at: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderOut {
    id: String,
    patient_id: String,
    mrn: Option<String>,
    status: &'static str,
    priority: &'static str,
    ordering_provider_id: String,
    ordering_provider_name: String,
    diagnosis_codes: Vec<String>,
    tests: Vec<TestOut>,
    specimens: Vec<SpecimenOut>,
    ordered_at: DateTime<Utc>,
    collected_at: Option<DateTime<Utc>>,
    received_at: Option<DateTime<Utc>>,
    reported_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    cancel_reason: Option<String>,
    awaiting_preauthorization: bool,
    preauthorization: Option<String>,
    filler_order: Option<String>,
    version: i64,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TestOut {
    id: String,
    test_code: String,
    test_name: String,
    loinc_code: Option<String>,
    status: &'static str,
    /// The result that stands (the newest revision), if any.
    result: Option<ResultOut>,
    /// Earlier revisions, oldest first: what corrections replaced. Left out of lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<ResultOut>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ResultOut {
    id: String,
    value: String,
    unit: Option<String>,
    reference_range: Option<String>,
    abnormal_flag: Option<&'static str>,
    /// Verified by a supervisor: a final result.
    #[serde(rename = "final")]
    is_final: bool,
    correction: bool,
    critical: bool,
    performed_by: String,
    performed_at: DateTime<Utc>,
    verified_by: Option<String>,
    verified_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SpecimenOut {
    id: String,
    specimen_type: &'static str,
    collected_at: DateTime<Utc>,
    collected_by: String,
    received_at: Option<DateTime<Utc>>,
    condition: Option<String>,
}

impl From<&ResultRevision> for ResultOut {
    fn from(r: &ResultRevision) -> Self {
        Self {
            id: r.id.to_string(),
            value: r.value.clone(),
            unit: r.unit.clone(),
            reference_range: r.reference_range.clone(),
            abnormal_flag: r.abnormal_flag.map(|f| f.as_str()),
            is_final: r.is_final(),
            correction: r.correction,
            critical: r.critical.is_some(),
            performed_by: r.performed_by.clone(),
            performed_at: r.performed_at,
            verified_by: r.verified_by.clone(),
            verified_at: r.verified_at,
        }
    }
}

impl From<&LabTest> for TestOut {
    fn from(t: &LabTest) -> Self {
        let (history, current) = match t.results.split_last() {
            Some((last, earlier)) => (earlier, Some(last)),
            None => (&[][..], None),
        };
        Self {
            id: t.id.to_string(),
            test_code: t.test_code.clone(),
            test_name: t.test_name.clone(),
            loinc_code: t.loinc_code.clone(),
            status: t.status.as_str(),
            result: current.map(ResultOut::from),
            history: Some(history.iter().map(ResultOut::from).collect()),
        }
    }
}

impl OrderOut {
    /// An order as a list shows it: each test's current result, without the history of
    /// corrections (a work list of 50 orders would otherwise carry every revision of each).
    pub fn listed(o: &LabOrder) -> Self {
        let mut out = Self::from(o);
        for t in &mut out.tests {
            t.history = None;
        }
        out
    }
}

impl From<&Specimen> for SpecimenOut {
    fn from(s: &Specimen) -> Self {
        Self {
            id: s.id.to_string(),
            specimen_type: s.specimen_type.as_str(),
            collected_at: s.collected_at,
            collected_by: s.collected_by.clone(),
            received_at: s.received_at,
            condition: s.condition.clone(),
        }
    }
}

impl From<&LabOrder> for OrderOut {
    fn from(o: &LabOrder) -> Self {
        Self {
            id: o.id.to_string(),
            patient_id: o.patient_id.to_string(),
            mrn: o.mrn.clone(),
            status: o.status.as_str(),
            priority: o.priority.as_str(),
            ordering_provider_id: o.ordering_provider_id.clone(),
            ordering_provider_name: o.ordering_provider_name.clone(),
            diagnosis_codes: o.diagnosis_codes.clone(),
            tests: o.tests.iter().map(TestOut::from).collect(),
            specimens: o.specimens.iter().map(SpecimenOut::from).collect(),
            ordered_at: o.ordered_at,
            collected_at: o.collected_at,
            received_at: o.received_at,
            reported_at: o.reported_at,
            cancelled_at: o.cancelled_at,
            cancel_reason: o.cancel_reason.clone(),
            awaiting_preauthorization: o.awaiting_preauthorization,
            preauthorization: o.preauthorization.clone(),
            filler_order: o.filler_order.clone(),
            version: o.version,
            updated_at: o.updated_at,
        }
    }
}

/// `GET /api/v1/lab/results/{orderId}`: an order's results, test by test.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultsOut {
    order_id: String,
    patient_id: String,
    status: &'static str,
    reported_at: Option<DateTime<Utc>>,
    tests: Vec<TestOut>,
}

impl From<&LabOrder> for ResultsOut {
    fn from(o: &LabOrder) -> Self {
        Self {
            order_id: o.id.to_string(),
            patient_id: o.patient_id.to_string(),
            status: o.status.as_str(),
            reported_at: o.reported_at,
            tests: o.tests.iter().map(TestOut::from).collect(),
        }
    }
}

/// A result no order could take, as the reconciliation queue shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnmatchedOut {
    id: String,
    message_id: String,
    reason: String,
    patient_identifier: Option<String>,
    placer_order: Option<String>,
    filler_order: Option<String>,
    service_code: Option<String>,
    observations: Vec<UnmatchedObservation>,
    received_at: DateTime<Utc>,
    status: String,
}

impl From<&Unmatched> for UnmatchedOut {
    fn from(u: &Unmatched) -> Self {
        Self {
            id: u.id.to_string(),
            message_id: u.message_id.to_string(),
            reason: u.reason.clone(),
            patient_identifier: u.patient_identifier.clone(),
            placer_order: u.placer_order.clone(),
            filler_order: u.filler_order.clone(),
            service_code: u.service_code.clone(),
            observations: u.observations.clone(),
            received_at: u.received_at,
            status: u.status.clone(),
        }
    }
}

/// What became of an HL7 message: its status and the ACK code it got, not its content.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageOut {
    id: String,
    sender: Option<String>,
    control_id: Option<String>,
    message_type: Option<String>,
    received_at: DateTime<Utc>,
    status: String,
    ack_code: String,
    error_code: Option<String>,
    error_location: Option<String>,
    error_text: Option<String>,
}

impl From<MessageSummary> for MessageOut {
    fn from(m: MessageSummary) -> Self {
        Self {
            id: m.message_id.to_string(),
            sender: m.sender,
            control_id: m.control_id,
            message_type: m.message_type,
            received_at: m.received_at,
            status: m.status,
            ack_code: m.ack_code,
            error_code: m.error_code,
            error_location: m.error_location,
            error_text: m.error_text,
        }
    }
}
