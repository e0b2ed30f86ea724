use crate::Topic;
use chrono::{DateTime, Utc};
use kernel::TenantId;
use kernel::ids::{CorrelationId, EventId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A typed event payload: knows its versioned type name and its topic.
pub trait EventPayload: Serialize {
    const EVENT_TYPE: &'static str;
    const TOPIC: Topic;
}

/// Who caused an event: carried into every envelope written on behalf of one request.
#[derive(Debug, Clone)]
pub struct EventMeta {
    pub source: &'static str,
    pub tenant: TenantId,
    pub correlation_id: CorrelationId,
    pub causation_id: Option<EventId>,
    pub occurred_at: DateTime<Utc>,
}

/// The envelope of ARCHITECTURE.md §5. `key` is the aggregate id: the partition key, so
/// that one aggregate's events stay in order. Keys and envelope fields never carry PHI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventEnvelope {
    pub event_id: EventId,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub source: String,
    pub tenant_id: String,
    pub key: String,
    pub correlation_id: CorrelationId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<EventId>,
    pub payload: serde_json::Value,
}

impl EventEnvelope {
    pub fn new<P: EventPayload>(meta: &EventMeta, key: impl ToString, payload: &P) -> Self {
        Self {
            event_id: EventId::new(),
            event_type: P::EVENT_TYPE.to_owned(),
            occurred_at: meta.occurred_at,
            source: meta.source.to_owned(),
            tenant_id: meta.tenant.as_str().to_owned(),
            key: key.to_string(),
            correlation_id: meta.correlation_id,
            causation_id: meta.causation_id,
            // Payload structs hold only strings, numbers and ids: serializing cannot fail.
            payload: serde_json::to_value(payload).unwrap_or(serde_json::Value::Null),
        }
    }

    /// The JSON of `EventEnvelope::new(meta, key, payload)` under `event_id`, written in one
    /// pass: the payload is serialized in place rather than built as a `Value` first (a map
    /// of owned keys and values per event). For relays that publish thousands a second.
    /// The document is the same but for the order of the payload's keys, which JSON leaves
    /// free.
    pub fn json_of<P: EventPayload>(
        meta: &EventMeta,
        event_id: EventId,
        key: &str,
        payload: &P,
    ) -> Result<String, serde_json::Error> {
        serde_json::to_string(&InPlace {
            event_id,
            event_type: P::EVENT_TYPE,
            occurred_at: meta.occurred_at,
            source: meta.source,
            tenant_id: meta.tenant.as_str(),
            key,
            correlation_id: meta.correlation_id,
            causation_id: meta.causation_id,
            payload,
        })
    }

    pub fn topic(&self) -> Option<Topic> {
        topic_of(&self.event_type)
    }
}

/// `EventEnvelope` as written by `EventEnvelope::json_of`: the same fields, the payload borrowed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InPlace<'a, P> {
    event_id: EventId,
    event_type: &'static str,
    occurred_at: DateTime<Utc>,
    source: &'a str,
    tenant_id: &'a str,
    key: &'a str,
    correlation_id: CorrelationId,
    #[serde(skip_serializing_if = "Option::is_none")]
    causation_id: Option<EventId>,
    payload: &'a P,
}

/// Which topic an event type travels on, by its domain prefix (000 §3.1).
pub fn topic_of(event_type: &str) -> Option<Topic> {
    let domain = event_type.split('.').next()?;
    Some(match domain {
        "patient" => Topic::PatientEvents,
        "lab" => Topic::LabEvents,
        "insurance" => Topic::InsuranceEvents,
        "prescription" | "pharmacy" => Topic::PharmacyEvents,
        "audit" => Topic::AuditEvents,
        "notification" => Topic::NotificationEvents,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patient::PatientDischargedV1;
    use kernel::ids::PatientId;

    #[test]
    fn an_envelope_written_in_place_reads_back_as_the_envelope_built() {
        let patient = PatientId::new();
        let payload = PatientDischargedV1 {
            patient_id: patient,
            discharged_at: Utc::now(),
            disposition: Some("home".into()),
        };
        for causation_id in [None, Some(EventId::new())] {
            let meta = EventMeta {
                source: "patient",
                tenant: TenantId::parse("t1").unwrap(),
                correlation_id: CorrelationId::new(),
                causation_id,
                occurred_at: Utc::now(),
            };
            let mut built = EventEnvelope::new(&meta, patient, &payload);
            built.event_id = EventId::new();
            let json =
                EventEnvelope::json_of(&meta, built.event_id, &patient.to_string(), &payload)
                    .unwrap();
            let read: EventEnvelope = serde_json::from_str(&json).unwrap();
            assert_eq!(read, built);
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&json).unwrap(),
                serde_json::to_value(&built).unwrap(),
                "the same document, key order aside"
            );
        }
    }

    #[test]
    fn envelopes_carry_type_key_and_camel_case_fields() {
        let meta = EventMeta {
            source: "patient",
            tenant: TenantId::parse("t1").unwrap(),
            correlation_id: CorrelationId::new(),
            causation_id: None,
            occurred_at: Utc::now(),
        };
        let patient = PatientId::new();
        let env = EventEnvelope::new(
            &meta,
            patient,
            &PatientDischargedV1 {
                patient_id: patient,
                discharged_at: meta.occurred_at,
                disposition: None,
            },
        );
        assert_eq!(env.topic(), Some(Topic::PatientEvents));
        let json = serde_json::to_value(&env).unwrap();
        assert_eq!(json["eventType"], "patient.discharged.v1");
        assert_eq!(json["key"], patient.to_string());
        assert_eq!(json["tenantId"], "t1");
        assert!(json.get("causationId").is_none());
        assert_eq!(json["payload"]["patientId"], patient.to_string());
    }

    #[test]
    fn consumers_ignore_fields_they_do_not_know() {
        let json = serde_json::json!({
            "eventId": "01900000-0000-7000-8000-000000000001", "eventType": "lab.results.available.v1",
            "occurredAt": "2026-11-25T10:00:00Z", "source": "lab", "tenantId": "t", "key": "k",
            "correlationId": "01900000-0000-7000-8000-000000000002", "addedInV1_1": true,
            "payload": {"orderId": "01900000-0000-7000-8000-000000000003",
                        "patientId": "01900000-0000-7000-8000-000000000004",
                        "testCodes": [], "reportedAt": "2026-11-25T10:00:00Z", "futureField": {"x": 1}}
        });
        let envelope: EventEnvelope = serde_json::from_value(json).unwrap();
        let payload: crate::lab::LabResultsAvailableV1 =
            serde_json::from_value(envelope.payload).unwrap();
        assert!(
            !payload.abnormal,
            "a field added later with a default may be absent"
        );
    }

    #[test]
    fn event_types_map_to_the_topics_of_the_spec() {
        assert_eq!(topic_of("lab.test.ordered.v1"), Some(Topic::LabEvents));
        assert_eq!(
            topic_of("prescription.filled.v1"),
            Some(Topic::PharmacyEvents)
        );
        assert_eq!(topic_of("unknown.v1"), None);
    }
}
