//! The audit trail's events (000 §2.2.2): one per entry appended, on `audit-events`.

use crate::{EventPayload, Topic};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An audit entry, as chained: identifiers only, never names or record contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntryRecordedV1 {
    pub entry_id: Uuid,
    /// The entry's place in its tenant's chain, from 1.
    pub seq: i64,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub roles: Vec<String>,
    pub action: String,
    pub resource_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<Uuid>,
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl EventPayload for AuditEntryRecordedV1 {
    const EVENT_TYPE: &'static str = "audit.entry.recorded.v1";
    const TOPIC: Topic = Topic::AuditEvents;
}
