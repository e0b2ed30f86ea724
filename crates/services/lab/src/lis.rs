//! Orders to the laboratory's LIS: each `lab.test.ordered.v1` (written to the outbox with
//! its order) becomes an ORM^O01 or OML^O21 sent over MLLP to the configured endpoint, and
//! counts as delivered once the LIS answers AA. Connection failures and timeouts are
//! retried with backoff by the consumer, and the event is dead-lettered after the last
//! attempt; an AE or AR (the LIS refuses the content) is dead-lettered at once. The
//! message's control id is the event id, so an LIS that sees a resend can tell.

use crate::mllp;
use eventbus::BoxFuture;
use eventbus::consumer::{Consumer, Handler, HandlerError, RetryPolicy};
use eventbus::{EventSink, EventSource};
use events::lab::LabTestOrderedV1;
use events::{EventEnvelope, EventPayload};
use hl7v2::build::{OrderPatient, OrderStyle, OrderTest, OutboundOrder, new_order};
use std::sync::Arc;
use std::time::Duration;
use store::{Db, Tx};

pub const CONSUMER: &str = "lab-lis";
pub const SENT: &str = "meditrack_lis_orders_sent_total";

#[derive(Debug, Clone)]
pub struct LisSettings {
    /// `host:port` of the LIS's MLLP listener.
    pub endpoint: String,
    pub style: OrderStyle,
    /// Attempts before an order is dead-lettered.
    pub max_attempts: u32,
    pub ack_timeout: Duration,
    /// MSH-4 of what we send.
    pub facility: String,
}

/// The consumer group that sends orders to the LIS.
pub fn consumer(
    db: Db,
    source: Arc<dyn EventSource>,
    dead_letters: Arc<dyn EventSink>,
    settings: LisSettings,
) -> Consumer {
    let attempts = settings.max_attempts.max(1);
    Consumer::new(CONSUMER, db, source, dead_letters)
        .with_retry(RetryPolicy {
            max_attempts: attempts,
        })
        .on(
            LabTestOrderedV1::EVENT_TYPE,
            LabTestOrderedV1::TOPIC,
            Arc::new(SendOrder(settings)),
        )
}

struct SendOrder(LisSettings);

/// The message for an order: what the LIS needs to run it and to answer with its id.
pub fn message_for(event: &EventEnvelope, o: &LabTestOrderedV1, settings: &LisSettings) -> Vec<u8> {
    let order = OutboundOrder {
        control_id: event.event_id.to_string(),
        sent_at: chrono::Utc::now(),
        sending_facility: settings.facility.clone(),
        receiving_application: "LIS".to_owned(),
        receiving_facility: String::new(),
        // The lab holds patients by reference (id and MRN); demographics stay with the
        // patient service.
        patient: OrderPatient {
            id: if o.mrn.is_empty() {
                o.patient_id.to_string()
            } else {
                o.mrn.clone()
            },
            family: String::new(),
            given: String::new(),
            birth_date: None,
            sex: None,
        },
        placer_order: o.order_id.to_string(),
        priority: match o.priority.as_str() {
            "STAT" => "S",
            "URGENT" => "A",
            _ => "R",
        }
        .to_owned(),
        tests: o
            .tests
            .iter()
            .map(|t| OrderTest {
                code: t.test_code.clone(),
                name: t.test_name.clone(),
                loinc: t.loinc_code.clone(),
            })
            .collect(),
        provider_id: o.ordering_provider_id.clone(),
        provider_name: o.ordering_provider_name.clone(),
        diagnoses: o.diagnosis_codes.clone(),
        ordered_at: o.ordered_at,
    };
    new_order(&order, settings.style).encode().into_bytes()
}

impl Handler for SendOrder {
    /// Sending is not a database write: nothing to do inside the inbox transaction.
    fn own_transactions(&self) -> bool {
        true
    }

    fn handle<'a>(
        &'a self,
        _: &'a mut Tx,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let order: LabTestOrderedV1 =
                serde_json::from_value(event.payload.clone()).map_err(|_| {
                    HandlerError::Permanent(
                        "the payload does not match lab.test.ordered.v1".to_owned(),
                    )
                })?;
            let message = message_for(event, &order, &self.0);
            let acks = mllp::send(&self.0.endpoint, &[message], self.0.ack_timeout)
                .await
                .map_err(|e| HandlerError::Transient(e.to_string()))?;
            let ack = hl7v2::decode(&acks[0]);
            let code = hl7v2::parse(&ack)
                .ok()
                .and_then(|m| m.find("MSA").and_then(|s| s.field(1).text()))
                .unwrap_or_default();
            match code.as_str() {
                "AA" | "CA" => {
                    metrics::counter!(SENT, "outcome" => "accepted").increment(1);
                    Ok(())
                }
                "" => Err(HandlerError::Transient(
                    "the LIS answered with no acknowledgement code".to_owned(),
                )),
                other => {
                    metrics::counter!(SENT, "outcome" => "refused").increment(1);
                    Err(HandlerError::Permanent(format!(
                        "the LIS refused the order ({other})"
                    )))
                }
            }
        })
    }
}
