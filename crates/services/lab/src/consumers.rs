//! Events the lab service applies (000 §2.1.2, "Events Consumed"), each in the consumer's
//! transaction with its inbox entry, so each takes effect exactly once:
//! - `patient.created.v1`: the patient joins the lab's projection (for matching results);
//! - `patient.labs.requested.v1`: an `order-labs` request becomes the lab order it names;
//! - `insurance.preauth.approved.v1`: an order waiting for its pre-authorization may go on.

use crate::app::ordered_event;
use crate::domain::{LabOrder, NewLabOrder};
use crate::store::{WriteError, insert_order, load_order, remember_patient, update_order};
use eventbus::BoxFuture;
use eventbus::consumer::{Consumer, Handler, HandlerError};
use eventbus::{EventSink, EventSource};
use events::insurance::InsurancePreauthApprovedV1;
use events::patient::{PatientCreatedV1, PatientLabsRequestedV1};
use events::{EventEnvelope, EventMeta, EventPayload};
use kernel::TenantId;
use kernel::ids::LabOrderId;
use kernel::lab_request::{LabOrderRequest, OrderedTest, PRIORITIES};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use store::{Db, Tx};

pub const CONSUMER: &str = "lab";

/// The lab service's consumer group.
pub fn consumer(
    db: Db,
    source: Arc<dyn EventSource>,
    dead_letters: Arc<dyn EventSink>,
) -> Consumer {
    Consumer::new(CONSUMER, db, source, dead_letters)
        .on(
            PatientCreatedV1::EVENT_TYPE,
            PatientCreatedV1::TOPIC,
            Arc::new(Apply(patient_created)),
        )
        .on(
            PatientLabsRequestedV1::EVENT_TYPE,
            PatientLabsRequestedV1::TOPIC,
            Arc::new(Apply(labs_requested)),
        )
        .on(
            InsurancePreauthApprovedV1::EVENT_TYPE,
            InsurancePreauthApprovedV1::TOPIC,
            Arc::new(Apply(preauth_approved)),
        )
}

/// What one handler does: given the transaction, the envelope, its tenant and the payload.
type HandlerFn<P> = for<'a> fn(
    &'a mut Tx,
    &'a EventEnvelope,
    TenantId,
    P,
) -> BoxFuture<'a, Result<(), HandlerError>>;

/// Applies events of payload `P`.
struct Apply<P>(HandlerFn<P>);

impl<P: DeserializeOwned + EventPayload + Send + Sync> Handler for Apply<P> {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        match eventbus::consumer::parse::<P>(event) {
            Ok((tenant, payload)) => (self.0)(tx, event, tenant, payload),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

/// Events written because of `event`: same tenant and correlation, caused by it.
fn meta_after(event: &EventEnvelope, tenant: TenantId) -> EventMeta {
    EventMeta {
        source: crate::SERVICE,
        tenant,
        correlation_id: event.correlation_id,
        causation_id: Some(event.event_id),
        occurred_at: chrono::Utc::now(),
    }
}

fn patient_created<'a>(
    tx: &'a mut Tx,
    _: &'a EventEnvelope,
    tenant: TenantId,
    p: PatientCreatedV1,
) -> BoxFuture<'a, Result<(), HandlerError>> {
    Box::pin(async move {
        remember_patient(tx, &tenant, p.patient_id.as_uuid(), &p.mrn, p.registered_at).await?;
        Ok(())
    })
}

fn labs_requested<'a>(
    tx: &'a mut Tx,
    event: &'a EventEnvelope,
    tenant: TenantId,
    p: PatientLabsRequestedV1,
) -> BoxFuture<'a, Result<(), HandlerError>> {
    Box::pin(async move {
        let priority = PRIORITIES
            .iter()
            .find(|x| **x == p.priority)
            .ok_or_else(|| HandlerError::Permanent("an unknown priority".to_owned()))?;
        let new = NewLabOrder {
            patient_id: p.patient_id,
            mrn: Some(p.mrn).filter(|m| !m.is_empty()),
            request: LabOrderRequest {
                tests: p
                    .tests
                    .into_iter()
                    .map(|t| OrderedTest {
                        test_code: t.test_code,
                        test_name: t.test_name,
                        loinc_code: t.loinc_code,
                    })
                    .collect(),
                priority,
                ordering_provider_id: p.ordering_provider_id,
                ordering_provider_name: p.ordering_provider_name,
                diagnosis_codes: p.diagnosis_codes,
            },
            requires_preauthorization: false,
        };
        let order = LabOrder::place(p.order_id, tenant.clone(), new, p.requested_at);
        match insert_order(tx, &order).await {
            // Requested before (a redelivery the inbox could not see): it is the same order.
            Err(WriteError::Exists) => return Ok(()),
            Err(WriteError::Db(e)) => return Err(e.into()),
            Err(_) => return Err(HandlerError::Permanent("the order conflicted".to_owned())),
            Ok(()) => {}
        }
        let announce =
            EventEnvelope::new(&meta_after(event, tenant), order.id, &ordered_event(&order));
        store::outbox::append(tx, &[announce]).await?;
        Ok(())
    })
}

fn preauth_approved<'a>(
    tx: &'a mut Tx,
    _: &'a EventEnvelope,
    tenant: TenantId,
    p: InsurancePreauthApprovedV1,
) -> BoxFuture<'a, Result<(), HandlerError>> {
    Box::pin(async move {
        // An approval for something else (a prescription, a procedure) is not ours.
        let Some(subject) = p.subject_id else {
            return Ok(());
        };
        let Some(mut order) = load_order(tx, &tenant, LabOrderId::from_uuid(subject)).await? else {
            return Ok(());
        };
        let before = order.clone();
        order.authorize(p.approval_number, chrono::Utc::now());
        if order.version != before.version {
            update_order(tx, &before, &order)
                .await
                .map_err(|e| match e {
                    WriteError::Db(e) => HandlerError::from(e),
                    other => HandlerError::Transient(other.to_string()),
                })?;
        }
        Ok(())
    })
}
