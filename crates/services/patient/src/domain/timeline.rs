//! What happened to a patient, newest first: the patient's own changes, and (from issue 4
//! on) what other services report through events.

use chrono::{DateTime, Utc};
use kernel::ids::{LabOrderId, MedicalRecordId, PatientId, TimelineEntryId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    pub id: TimelineEntryId,
    pub patient_id: PatientId,
    pub occurred_at: DateTime<Utc>,
    pub event: TimelineEvent,
}

/// Details hold ids, codes and field names, never demographics: a timeline is shown in
/// many places.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub enum TimelineEvent {
    Registered {
        mrn: String,
    },
    Updated {
        version: i64,
        changed_fields: Vec<String>,
    },
    Deleted,
    MedicalRecordAdded {
        record_id: MedicalRecordId,
        record_type: String,
    },
    LabOrdered {
        order_id: LabOrderId,
        priority: String,
        test_codes: Vec<String>,
    },
    Discharged {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disposition: Option<String>,
    },
    /// Reported by the lab service (`lab.results.available.v1`).
    LabResultsAvailable {
        order_id: LabOrderId,
        test_codes: Vec<String>,
        abnormal: bool,
    },
    /// Reported by the lab service (`lab.critical.result.v1`): a result past a critical
    /// limit, which the ordering provider must hear of at once.
    LabCriticalResult {
        order_id: LabOrderId,
        test_code: String,
        abnormal_flag: String,
    },
    /// Reported by the pharmacy service (`prescription.filled.v1`).
    PrescriptionFilled {
        prescription_id: uuid::Uuid,
        medication_code: String,
        quantity: u32,
    },
}

impl TimelineEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            TimelineEvent::Registered { .. } => "REGISTERED",
            TimelineEvent::Updated { .. } => "UPDATED",
            TimelineEvent::Deleted => "DELETED",
            TimelineEvent::MedicalRecordAdded { .. } => "MEDICAL_RECORD_ADDED",
            TimelineEvent::LabOrdered { .. } => "LAB_ORDERED",
            TimelineEvent::Discharged { .. } => "DISCHARGED",
            TimelineEvent::LabResultsAvailable { .. } => "LAB_RESULTS_AVAILABLE",
            TimelineEvent::LabCriticalResult { .. } => "LAB_CRITICAL_RESULT",
            TimelineEvent::PrescriptionFilled { .. } => "PRESCRIPTION_FILLED",
        }
    }
}

impl TimelineEntry {
    pub fn new(patient_id: PatientId, occurred_at: DateTime<Utc>, event: TimelineEvent) -> Self {
        Self {
            id: TimelineEntryId::new(),
            patient_id,
            occurred_at,
            event,
        }
    }
}

pub const DISPOSITIONS: [&str; 7] = [
    "HOME",
    "HOME_HEALTH",
    "TRANSFER",
    "SKILLED_NURSING",
    "AGAINST_MEDICAL_ADVICE",
    "EXPIRED",
    "OTHER",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_details_serialize_with_their_type() {
        let e = TimelineEvent::Updated {
            version: 2,
            changed_fields: vec!["phone".into()],
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "UPDATED", "version": 2, "changedFields": ["phone"]})
        );
        assert_eq!(serde_json::from_value::<TimelineEvent>(json).unwrap(), e);
        assert_eq!(e.kind(), "UPDATED");
    }
}
