//! Pharmacy events (000 §2.1.4).

use crate::{EventPayload, Topic};
use chrono::{DateTime, Utc};
use kernel::ids::PatientId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A prescription was dispensed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrescriptionFilledV1 {
    pub prescription_id: Uuid,
    pub patient_id: PatientId,
    /// RxNorm or NDC code of what was dispensed.
    pub medication_code: String,
    pub quantity: u32,
    pub filled_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pharmacy_id: Option<String>,
}

impl EventPayload for PrescriptionFilledV1 {
    const EVENT_TYPE: &'static str = "prescription.filled.v1";
    const TOPIC: Topic = Topic::PharmacyEvents;
}

/// A clinician created a prescription (000 §2.1.4, `POST /api/v1/pharmacy/prescriptions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrescriptionCreatedV1 {
    pub prescription_id: Uuid,
    pub patient_id: PatientId,
    /// RxNorm or NDC code of what was prescribed.
    pub medication_code: String,
    pub medication_name: String,
    pub dosage: String,
    pub quantity: u32,
    #[serde(default)]
    pub refills: u32,
    pub prescriber_id: String,
    pub created_at: DateTime<Utc>,
}

impl EventPayload for PrescriptionCreatedV1 {
    const EVENT_TYPE: &'static str = "prescription.created.v1";
    const TOPIC: Topic = Topic::PharmacyEvents;
}

/// A pharmacy received a prescription (from the API or an NCPDP SCRIPT NewRx).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrescriptionReceivedV1 {
    pub prescription_id: Uuid,
    pub patient_id: PatientId,
    pub medication_code: String,
    pub quantity: u32,
    /// How it arrived: `API` or `NCPDP`.
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pharmacy_id: Option<String>,
    pub received_at: DateTime<Utc>,
}

impl EventPayload for PrescriptionReceivedV1 {
    const EVENT_TYPE: &'static str = "prescription.received.v1";
    const TOPIC: Topic = Topic::PharmacyEvents;
}

/// Medication left the pharmacy's inventory for a patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MedicationDispensedV1 {
    pub prescription_id: Uuid,
    pub patient_id: PatientId,
    pub medication_code: String,
    pub quantity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pharmacy_id: Option<String>,
    pub dispensed_at: DateTime<Utc>,
}

impl EventPayload for MedicationDispensedV1 {
    const EVENT_TYPE: &'static str = "medication.dispensed.v1";
    const TOPIC: Topic = Topic::PharmacyEvents;
}

/// A prescription interacts with another medication of the same patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrugInteractionDetectedV1 {
    pub prescription_id: Uuid,
    pub patient_id: PatientId,
    pub medication_code: String,
    pub interacting_medication_code: String,
    /// `MINOR`, `MODERATE`, `MAJOR` or `CONTRAINDICATED`.
    pub severity: String,
    pub detected_at: DateTime<Utc>,
}

impl EventPayload for DrugInteractionDetectedV1 {
    const EVENT_TYPE: &'static str = "drug.interaction.detected.v1";
    const TOPIC: Topic = Topic::PharmacyEvents;
}
