//! Events from other services that the patient service applies: lab results, critical lab
//! results and filled prescriptions become timeline entries (000 §2.1.1, "Events Consumed"),
//! and ADT demographics from the lab's HL7 interface register or update patients.

use crate::adt::AdtError;
use crate::app::PatientService;
use crate::domain::timeline::{TimelineEntry, TimelineEvent};
use crate::store::SqlPatientStore;
use crate::store::append_external_entries;
use chrono::{DateTime, Utc};
use eventbus::BoxFuture;
use eventbus::consumer::{Consumer, Handler, HandlerError};
use eventbus::{EventSink, EventSource};
use events::lab::{LabAdtReceivedV1, LabCriticalResultV1, LabResultsAvailableV1};
use events::pharmacy::PrescriptionFilledV1;
use events::{EventEnvelope, EventPayload};
use kernel::TenantId;
use kernel::ids::{PatientId, TimelineEntryId};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use store::{Db, Tx};

pub const CONSUMER: &str = "patient";

/// The patient service's consumer group.
pub fn consumer(
    db: Db,
    service: Arc<PatientService<SqlPatientStore>>,
    source: Arc<dyn EventSource>,
    dead_letters: Arc<dyn EventSink>,
) -> Consumer {
    Consumer::new(CONSUMER, db, source, dead_letters)
        .on(
            LabAdtReceivedV1::EVENT_TYPE,
            LabAdtReceivedV1::TOPIC,
            Arc::new(FromAdt(service)),
        )
        .on(
            LabResultsAvailableV1::EVENT_TYPE,
            LabResultsAvailableV1::TOPIC,
            Arc::new(ToTimeline(lab_results)),
        )
        .on(
            LabCriticalResultV1::EVENT_TYPE,
            LabCriticalResultV1::TOPIC,
            Arc::new(ToTimeline(critical_result)),
        )
        .on(
            PrescriptionFilledV1::EVENT_TYPE,
            PrescriptionFilledV1::TOPIC,
            Arc::new(ToTimeline(prescription_filled)),
        )
}

fn lab_results(p: LabResultsAvailableV1) -> (PatientId, DateTime<Utc>, TimelineEvent) {
    let what = TimelineEvent::LabResultsAvailable {
        order_id: p.order_id,
        test_codes: p.test_codes,
        abnormal: p.abnormal,
    };
    (p.patient_id, p.reported_at, what)
}

fn critical_result(p: LabCriticalResultV1) -> (PatientId, DateTime<Utc>, TimelineEvent) {
    let what = TimelineEvent::LabCriticalResult {
        order_id: p.order_id,
        test_code: p.test_code,
        abnormal_flag: p.abnormal_flag,
    };
    (p.patient_id, p.reported_at, what)
}

fn prescription_filled(p: PrescriptionFilledV1) -> (PatientId, DateTime<Utc>, TimelineEvent) {
    let what = TimelineEvent::PrescriptionFilled {
        prescription_id: p.prescription_id,
        medication_code: p.medication_code,
        quantity: p.quantity,
    };
    (p.patient_id, p.filled_at, what)
}

/// Applies events of payload `P` as a timeline entry: which patient, when, and what.
struct ToTimeline<P>(fn(P) -> (PatientId, DateTime<Utc>, TimelineEvent));

impl<P: DeserializeOwned + EventPayload + Send + Sync> ToTimeline<P> {
    /// The entry of `event`, with its tenant. The entry takes the event's id: one event,
    /// one entry, however often it comes.
    fn entry(&self, event: &EventEnvelope) -> Result<(TenantId, TimelineEntry), HandlerError> {
        let (tenant, payload) = eventbus::consumer::parse::<P>(event)?;
        let (patient, at, what) = (self.0)(payload);
        let entry = TimelineEntry {
            id: TimelineEntryId::from_uuid(event.event_id.as_uuid()),
            patient_id: patient,
            occurred_at: at,
            event: what,
        };
        Ok((tenant, entry))
    }
}

impl<P: DeserializeOwned + EventPayload + Send + Sync> Handler for ToTimeline<P> {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move { self.handle_all(tx, &[event]).await })
    }

    /// The entries of `events` (one tenant's, as the consumer gives them) in one go.
    fn handle_all<'a>(
        &'a self,
        tx: &'a mut Tx,
        events: &'a [&'a EventEnvelope],
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let Some((tenant, entries)) =
                eventbus::consumer::one_tenant(events, |e| self.entry(e))?
            else {
                return Ok(());
            };
            if append_external_entries(tx, &tenant, &entries).await? {
                Ok(())
            } else {
                Err(HandlerError::Permanent(
                    "no such patient in this tenant".to_owned(),
                ))
            }
        })
    }
}

/// ADT demographics from the lab's HL7 interface: registers or updates the patient.
struct FromAdt(Arc<PatientService<SqlPatientStore>>);

impl Handler for FromAdt {
    fn own_transactions(&self) -> bool {
        true
    }

    fn handle<'a>(
        &'a self,
        _: &'a mut Tx,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let (tenant, payload) = eventbus::consumer::parse::<LabAdtReceivedV1>(event)?;
            self.0
                .apply_adt(tenant, event.correlation_id, &payload)
                .await
                .map_err(|e| match e {
                    AdtError::Invalid(m) => HandlerError::Permanent(m),
                    AdtError::Failed(m) => HandlerError::Transient(m),
                })
        })
    }
}
