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
