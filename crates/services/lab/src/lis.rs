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

/// The cancellation of `o`, as stored: the message of its `NW` with ORC-1 `CA`.
pub fn cancellation_for(event: &EventEnvelope, o: &LabOrder, settings: &LisSettings) -> Vec<u8> {
    let order = outbound(event, &crate::app::ordered_event(o), settings);
    cancel_order(&order, settings.style).encode().into_bytes()
}

/// The message for an order: what the LIS needs to run it and to answer with its id.
pub fn message_for(event: &EventEnvelope, o: &LabTestOrderedV1, settings: &LisSettings) -> Vec<u8> {
    new_order(&outbound(event, o, settings), settings.style)
        .encode()
        .into_bytes()
}

/// What the LIS is sent about order `o`, in a message whose control id is `event`'s id.
fn outbound(event: &EventEnvelope, o: &LabTestOrderedV1, settings: &LisSettings) -> OutboundOrder {
    OutboundOrder {
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
    }
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
            let (_, order) = eventbus::consumer::parse::<LabTestOrderedV1>(event)?;
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
            let (tenant, cancelled) = eventbus::consumer::parse::<LabTestCancelledV1>(event)?;
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
