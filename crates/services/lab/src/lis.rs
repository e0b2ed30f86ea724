//! Orders to the laboratory's LIS: each `lab.test.ordered.v1` (written to the outbox with
//! its order) becomes an ORM^O01 or OML^O21 (ORC-1 `NW`) sent over MLLP to the configured
//! endpoint, and each `lab.test.cancelled.v1` the same message with ORC-1 `CA` for the
//! order as stored (the event names only the order; both events are keyed by it, so a
//! cancellation goes out after its order). A message counts as delivered once the LIS
//! answers AA. Connection failures and timeouts are
//! retried with backoff by the consumer, and the event is dead-lettered after the last
//! attempt; an AE or AR (the LIS refuses the content) is dead-lettered at once. The
//! message's control id is the event id, so an LIS that sees a resend can tell.

use crate::domain::LabOrder;
use crate::mllp;
use eventbus::BoxFuture;
use eventbus::consumer::{Consumer, Handler, HandlerError, RetryPolicy};
use eventbus::{EventSink, EventSource};
use events::lab::{LabTestCancelledV1, LabTestOrderedV1};
use events::{EventEnvelope, EventPayload};
use hl7v2::build::{OrderPatient, OrderStyle, OrderTest, OutboundOrder, cancel_order, new_order};
use kernel::TenantId;
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
            Arc::new(SendOrder(settings.clone())),
        )
        .on(
            LabTestCancelledV1::EVENT_TYPE,
            LabTestCancelledV1::TOPIC,
            Arc::new(SendCancellation(settings)),
        )
}

struct SendOrder(LisSettings);

struct SendCancellation(LisSettings);

/// The patient as the LIS knows them: by MRN, else by our id. The lab holds patients by
/// reference (id and MRN); demographics stay with the patient service.
fn patient(mrn: &str, id: impl ToString) -> OrderPatient {
    OrderPatient {
        id: if mrn.is_empty() {
            id.to_string()
        } else {
            mrn.to_owned()
        },
        family: String::new(),
        given: String::new(),
        birth_date: None,
        sex: None,
    }
}

/// ORC-7's priority: `S` stat, `A` as soon as possible (urgent), `R` routine.
fn priority(p: &str) -> String {
    match p {
        "STAT" => "S",
        "URGENT" => "A",
        _ => "R",
    }
    .to_owned()
}

/// The cancellation of `o`, as stored: the same order and tests as its `NW`.
pub fn cancellation_for(event: &EventEnvelope, o: &LabOrder, settings: &LisSettings) -> Vec<u8> {
    let order = OutboundOrder {
        control_id: event.event_id.to_string(),
        sent_at: chrono::Utc::now(),
        sending_facility: settings.facility.clone(),
        receiving_application: "LIS".to_owned(),
        receiving_facility: String::new(),
        patient: patient(o.mrn.as_deref().unwrap_or_default(), o.patient_id),
        placer_order: o.id.to_string(),
        priority: priority(o.priority.as_str()),
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
    cancel_order(&order, settings.style).encode().into_bytes()
}

/// The message for an order: what the LIS needs to run it and to answer with its id.
pub fn message_for(event: &EventEnvelope, o: &LabTestOrderedV1, settings: &LisSettings) -> Vec<u8> {
    let order = OutboundOrder {
        control_id: event.event_id.to_string(),
        sent_at: chrono::Utc::now(),
        sending_facility: settings.facility.clone(),
        receiving_application: "LIS".to_owned(),
        receiving_facility: String::new(),
        patient: patient(&o.mrn, o.patient_id),
        placer_order: o.order_id.to_string(),
        priority: priority(&o.priority),
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
            deliver(&self.0, message).await
        })
    }
}

impl Handler for SendCancellation {
    /// Sending is not a database write: the order is read in the transaction given.
    fn own_transactions(&self) -> bool {
        true
    }

    fn handle<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let cancelled: LabTestCancelledV1 = serde_json::from_value(event.payload.clone())
                .map_err(|_| {
                    HandlerError::Permanent(
                        "the payload does not match lab.test.cancelled.v1".to_owned(),
                    )
                })?;
            let tenant = TenantId::parse(&event.tenant_id).map_err(|_| {
                HandlerError::Permanent("the event's tenant id is not valid".to_owned())
            })?;
            let order = crate::store::load_order(tx, &tenant, cancelled.order_id)
                .await?
                .ok_or_else(|| HandlerError::Permanent("the cancelled order is gone".to_owned()))?;
            deliver(&self.0, cancellation_for(event, &order, &self.0)).await
        })
    }
}

/// Sends `message` and reads the LIS's answer: delivered on AA (or CA), retried when
/// there is no answer, dead-lettered when the LIS refuses it.
async fn deliver(settings: &LisSettings, message: Vec<u8>) -> Result<(), HandlerError> {
    let acks = mllp::send(&settings.endpoint, &[message], settings.ack_timeout)
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
                "the LIS refused the message ({other})"
            )))
        }
    }
}
