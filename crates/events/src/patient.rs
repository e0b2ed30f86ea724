//! Events the patient service publishes (000 §2.1.1). Payloads carry ids and codes, not
//! demographics: PHI travels by reference (ARCHITECTURE.md §5); consumers that need more
//! ask the patient API.

use crate::lab::OrderedTest;
use crate::{EventPayload, Topic};
use chrono::{DateTime, Utc};
use kernel::ids::{LabOrderId, PatientId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientCreatedV1 {
    pub patient_id: PatientId,
    pub mrn: String,
    pub registered_at: DateTime<Utc>,
}

impl EventPayload for PatientCreatedV1 {
    const EVENT_TYPE: &'static str = "patient.created.v1";
    const TOPIC: Topic = Topic::PatientEvents;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientUpdatedV1 {
    pub patient_id: PatientId,
    pub version: i64,
    /// Names of the fields that changed (`lastName`, `addresses`, ...), never their values.
    pub changed_fields: Vec<String>,
}

impl EventPayload for PatientUpdatedV1 {
    const EVENT_TYPE: &'static str = "patient.updated.v1";
    const TOPIC: Topic = Topic::PatientEvents;
}

/// Not in 000's list, but projections of patients elsewhere must learn of a soft delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientDeletedV1 {
    pub patient_id: PatientId,
    pub deleted_at: DateTime<Utc>,
}

impl EventPayload for PatientDeletedV1 {
    const EVENT_TYPE: &'static str = "patient.deleted.v1";
    const TOPIC: Topic = Topic::PatientEvents;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientDischargedV1 {
    pub patient_id: PatientId,
    pub discharged_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
}

impl EventPayload for PatientDischargedV1 {
    const EVENT_TYPE: &'static str = "patient.discharged.v1";
    const TOPIC: Topic = Topic::PatientEvents;
}

/// A clinician asked for lab tests through the patient API (`order-labs`). The lab service,
/// which owns lab orders, makes it a lab order with this id, exactly once, and announces
/// that as `lab.test.ordered.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientLabsRequestedV1 {
    /// The id the lab order will have.
    pub order_id: LabOrderId,
    pub patient_id: PatientId,
    pub mrn: String,
    pub tests: Vec<OrderedTest>,
    /// `STAT`, `URGENT` or `ROUTINE`.
    pub priority: String,
    pub ordering_provider_id: String,
    pub ordering_provider_name: String,
    #[serde(default)]
    pub diagnosis_codes: Vec<String>,
    pub requested_at: DateTime<Utc>,
}

impl EventPayload for PatientLabsRequestedV1 {
    const EVENT_TYPE: &'static str = "patient.labs.requested.v1";
    const TOPIC: Topic = Topic::PatientEvents;
}
