//! Events the lab service applies (000 §2.1.2, "Events Consumed"), each in the consumer's
//! transaction with its inbox entry, so each takes effect exactly once:
//! - `patient.created.v1`: the patient joins the lab's projection (for matching results);
//!   orders the lab placed over HL7 under an id of its own for that MRN move to theirs;
//! - `patient.labs.requested.v1`: an `order-labs` request becomes the lab order it names;
//! - `insurance.preauth.approved.v1`: an order waiting for its pre-authorization may go on.

use crate::app::ordered_event;
use crate::domain::{LabOrder, NewLabOrder};
use crate::store::hl7::patient_by_mrn;
use crate::store::{
    HeardOf, WriteError, adopt_patient_id, insert_order, load_order, remember_patients,
    update_order,
};
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
use std::collections::HashSet;
use std::sync::Arc;
use store::{Db, Tx};
use uuid::Uuid;

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
            Arc::new(PatientsCreated),
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

/// `patient.created.v1`: a batch's patients join the projection together, in a statement
/// or a few; each one already known is then looked at alone.
struct PatientsCreated;

impl Handler for PatientsCreated {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move { self.handle_all(tx, &[event]).await })
    }

    fn handle_all<'a>(
        &'a self,
        tx: &'a mut Tx,
        events: &'a [&'a EventEnvelope],
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let Some((tenant, created)) = eventbus::consumer::one_tenant(
                events,
                eventbus::consumer::parse::<PatientCreatedV1>,
            )?
            else {
                return Ok(());
            };
            let heard: Vec<HeardOf<'_>> = created
                .iter()
                .map(|p| HeardOf {
                    id: p.patient_id.as_uuid(),
                    mrn: &p.mrn,
                    at: p.registered_at,
                })
                .collect();
            let joined: HashSet<Uuid> = remember_patients(tx, &tenant, &heard)
                .await?
                .into_iter()
                .collect();
            for p in created
                .iter()
                .filter(|p| !joined.contains(&p.patient_id.as_uuid()))
            {
                known_already(tx, &tenant, p).await?;
            }
            Ok(())
        })
    }
}

/// A patient created whom the projection held already: by this id (a repeat, nothing to
/// do), or by MRN under an id the lab minted.
async fn known_already(
    tx: &mut Tx,
    tenant: &TenantId,
    p: &PatientCreatedV1,
) -> Result<(), HandlerError> {
    let id = p.patient_id.as_uuid();
    if let Some(minted) = patient_by_mrn(tx, tenant, &p.mrn).await?
        && minted != id
    {
        // An HL7 order for this MRN came before this event did, and the lab gave the
        // patient an id of its own (`hl7::orders`). An MRN never changes hands, so the id
        // is the patient service's: the lab's orders move to it, and results matched by MRN
        // from now on land there too.
        let moved = adopt_patient_id(tx, tenant, minted, id, chrono::Utc::now()).await?;
        tracing::info!(
            orders = moved,
            "orders placed over HL7 before the patient was heard of moved to the patient's id"
        );
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::direct::tests::{lab_db, placed};
    use crate::store::remember_patient;
    use kernel::ids::PatientId;
    use store::Scope;
    use testkit::TestDatabase;

    testkit::on_both_databases!(
        orders_placed_over_hl7_under_an_id_of_the_labs_move_to_the_patients_own
    );

    /// The patient service had the patient already; the lab, not yet told, took an ORM for
    /// their MRN and gave them an id of its own. When `patient.created.v1` arrives, the
    /// patient's id stands and the order goes with it; another patient's order stays.
    async fn orders_placed_over_hl7_under_an_id_of_the_labs_move_to_the_patients_own(
        database: TestDatabase,
    ) {
        let db = lab_db(&database, 2).await;
        let tenant = TenantId::parse("t").unwrap();
        let (minted, own) = (PatientId::new(), PatientId::new());
        let mut theirs = placed();
        theirs.patient_id = minted;
        let other = placed();
        let mut tx = db.begin_in(Scope::Tenant(&tenant)).await.unwrap();
        let at = chrono::Utc::now();
        remember_patient(&mut tx, &tenant, minted.as_uuid(), "MRN-LAG-1", at)
            .await
            .unwrap();
        insert_order(&mut tx, &theirs).await.unwrap();
        insert_order(&mut tx, &other).await.unwrap();
        tx.commit().await.unwrap();

        let created = PatientCreatedV1 {
            patient_id: own,
            mrn: "MRN-LAG-1".to_owned(),
            registered_at: at,
        };
        let meta = EventMeta {
            source: "patient",
            tenant: tenant.clone(),
            correlation_id: kernel::ids::CorrelationId::new(),
            causation_id: None,
            occurred_at: at,
        };
        let event = EventEnvelope::new(&meta, own, &created);
        let newcomer = PatientId::new();
        let newcomer_created = EventEnvelope::new(
            &meta,
            newcomer,
            &PatientCreatedV1 {
                patient_id: newcomer,
                mrn: "MRN-NEW-1".to_owned(),
                registered_at: at,
            },
        );
        // In a batch beside a patient the lab never heard of, then again alone: the second
        // time finds the patient's own id and changes nothing.
        let mut tx = db.begin_in(Scope::Tenant(&tenant)).await.unwrap();
        PatientsCreated
            .handle_all(&mut tx, &[&newcomer_created, &event])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut tx = db.begin_in(Scope::Tenant(&tenant)).await.unwrap();
        PatientsCreated.handle(&mut tx, &event).await.unwrap();
        tx.commit().await.unwrap();

        let mut tx = db.begin_in(Scope::Tenant(&tenant)).await.unwrap();
        let known = patient_by_mrn(&mut tx, &tenant, "MRN-LAG-1").await.unwrap();
        let joined = patient_by_mrn(&mut tx, &tenant, "MRN-NEW-1").await.unwrap();
        let moved = load_order(&mut tx, &tenant, theirs.id)
            .await
            .unwrap()
            .unwrap();
        let kept = load_order(&mut tx, &tenant, other.id)
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(known, Some(own.as_uuid()));
        assert_eq!(joined, Some(newcomer.as_uuid()));
        assert_eq!(
            (moved.patient_id, moved.version),
            (own, theirs.version + 1),
            "moved once, a new version"
        );
        assert_eq!(
            (kept.patient_id, kept.version),
            (other.patient_id, other.version)
        );
    }
}
