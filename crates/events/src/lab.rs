//! Laboratory events, all published by the lab service, which owns lab orders:
//! `lab.test.ordered.v1` announces an order it holds, whether placed on its own API or
//! requested through the patient API (`patient.labs.requested.v1`).

use crate::{EventPayload, Topic};
use chrono::{DateTime, NaiveDate, Utc};
use kernel::ids::{LabOrderId, PatientId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabTestOrderedV1 {
    pub order_id: LabOrderId,
    pub patient_id: PatientId,
    pub mrn: String,
    pub tests: Vec<OrderedTest>,
    /// `STAT`, `URGENT` or `ROUTINE` (000 §4.1, lab_orders).
    pub priority: String,
    pub ordering_provider_id: String,
    pub ordering_provider_name: String,
    #[serde(default)]
    pub diagnosis_codes: Vec<String>,
    pub ordered_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderedTest {
    pub test_code: String,
    pub test_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loinc_code: Option<String>,
}

impl EventPayload for LabTestOrderedV1 {
    const EVENT_TYPE: &'static str = "lab.test.ordered.v1";
    const TOPIC: Topic = Topic::LabEvents;
}

/// Results of a lab order are ready (000 §2.1.2). Values travel by reference: consumers
/// that show them read the lab API; the event says which order and which tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabResultsAvailableV1 {
    pub order_id: LabOrderId,
    pub patient_id: PatientId,
    pub test_codes: Vec<String>,
    /// Whether any result is outside its reference range.
    #[serde(default)]
    pub abnormal: bool,
    pub reported_at: DateTime<Utc>,
}

impl EventPayload for LabResultsAvailableV1 {
    const EVENT_TYPE: &'static str = "lab.results.available.v1";
    const TOPIC: Topic = Topic::LabEvents;
}

/// A lab order was cancelled before it completed (000 §2.1.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabTestCancelledV1 {
    pub order_id: LabOrderId,
    pub patient_id: PatientId,
    /// Who cancelled it: a provider or technician id, never a name.
    pub cancelled_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub cancelled_at: DateTime<Utc>,
}

impl EventPayload for LabTestCancelledV1 {
    const EVENT_TYPE: &'static str = "lab.test.cancelled.v1";
    const TOPIC: Topic = Topic::LabEvents;
}

/// One result crossed a critical limit (HH/LL, or a per-LOINC limit); raised once per
/// result so that the ordering provider can be told at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabCriticalResultV1 {
    pub order_id: LabOrderId,
    /// The result (lab test) that is critical: at most one event per result.
    pub result_id: uuid::Uuid,
    pub patient_id: PatientId,
    pub test_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loinc_code: Option<String>,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// `HH`, `LL`, or the flag the result carried when a configured limit made it critical.
    pub abnormal_flag: String,
    pub ordering_provider_id: String,
    pub reported_at: DateTime<Utc>,
}

impl EventPayload for LabCriticalResultV1 {
    const EVENT_TYPE: &'static str = "lab.critical.result.v1";
    const TOPIC: Topic = Topic::LabEvents;
}

/// The lab service's HL7 interface received patient demographics (ADT^A01, A04 or A08) from
/// a hospital system. The patient service owns patients and applies it: it registers the
/// patient under this MRN, or updates the one it has. Unlike other events this one carries
/// demographics, because it is how they arrive; keyed by tenant (`adt:<tenant>`), so one
/// tenant's ADT messages are applied in the order they came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabAdtReceivedV1 {
    /// The message in the lab service's HL7 log; also the idempotency key of its effect.
    pub message_id: uuid::Uuid,
    /// `A01`, `A04` or `A08`.
    pub trigger: String,
    /// MSH-3^MSH-4 of the sender.
    pub sender: String,
    /// The id to register a new patient under, when the lab already refers to it (an
    /// order that arrived for a patient not known yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<PatientId>,
    pub mrn: String,
    pub family_name: String,
    pub given_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    pub birth_date: NaiveDate,
    /// HL7 table 0001: `F`, `M`, `O`, `U`, `A`, `N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<AdtAddress>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdtAddress {
    pub street: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<String>,
    pub city: String,
    pub state: String,
    pub zip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

impl EventPayload for LabAdtReceivedV1 {
    const EVENT_TYPE: &'static str = "lab.adt.received.v1";
    const TOPIC: Topic = Topic::LabEvents;
}
