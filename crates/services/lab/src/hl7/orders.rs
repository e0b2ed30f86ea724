//! ORM^O01 and OML^O21 from an EHR: `NW` places a lab order per ORC/OBR group, for a
//! patient the lab knows (PID-3 MRN, from `patient.created.v1`); `CA` cancels the order
//! the group names. The EHR's order number (ORC-2/OBR-2) identifies the order from then
//! on, so a new order sent again is recognized and not placed twice.

use super::Applied;
use crate::app::ordered_event;
use crate::domain::{LabOrder, NewLabOrder, Priority};
use crate::store::hl7::{order_by_number, patient_by_mrn};
use crate::store::{WriteError, insert_order, remember_patient, update_order};
use chrono::{DateTime, Utc};
use events::lab::LabTestCancelledV1;
use events::{EventEnvelope, EventMeta};
use hl7v2::messages::{OrderMessage, OrderedTest as Hl7Order};
use hl7v2::{ErrorCode, Hl7Error, Location};
use kernel::TenantId;
use kernel::ids::{LabOrderId, PatientId};
use kernel::lab_request::{LabOrderRequest, OrderedTest};
use store::{DbError, Tx};

pub(super) async fn apply(
    tx: &mut Tx,
    tenant: &TenantId,
    meta: &EventMeta,
    (message_id, sender): (uuid::Uuid, &str),
    message: OrderMessage,
    now: DateTime<Utc>,
) -> Result<Result<Applied, Hl7Error>, DbError> {
    let mrn = message
        .patient
        .as_ref()
        .and_then(|p| p.identifiers.first())
        .map(|i| i.id.clone());
    let mut events = Vec::new();
    for (i, group) in message.orders.into_iter().enumerate() {
        let sequence = i + 1;
        let Some(placer) = group.placer_order.clone() else {
            return Ok(Err(Hl7Error::missing(
                "ORC",
                sequence,
                2,
                "placer order number",
            )));
        };
        let existing = order_by_number(tx, tenant, "placer_order", &placer).await?;
        match (group.control.as_str(), existing) {
            // Placed before: the same order, nothing more to do.
            ("NW", Some(_)) => {}
            ("NW", None) => {
                let Some(mrn) = &mrn else {
                    return Ok(Err(Hl7Error::missing("PID", 1, 3, "patient identifier")));
                };
                let patient = match patient_by_mrn(tx, tenant, mrn).await? {
                    Some(p) => p,
                    // An order for a patient not heard of yet: the lab gives the patient
                    // the id its order will carry, and hands the demographics to the
                    // patient service to register under that id.
                    None => {
                        let id = PatientId::new();
                        remember_patient(tx, tenant, id.as_uuid(), mrn, now).await?;
                        let info = message.patient.as_ref();
                        match info.map(|p| {
                            super::patients::reported(
                                message_id,
                                sender,
                                "ORM",
                                p,
                                Some(id),
                                now.date_naive(),
                            )
                        }) {
                            Some(Ok(event)) => {
                                let key = format!("adt:{tenant}");
                                events.push(EventEnvelope::new(meta, key, &event));
                            }
                            _ => tracing::info!(
                                "an HL7 order for a new patient without full demographics: the patient service is not told"
                            ),
                        }
                        id.as_uuid()
                    }
                };
                let order = match new_order(tenant, &group, patient, mrn, &placer, sequence, now) {
                    Ok(o) => o,
                    Err(e) => return Ok(Err(e)),
                };
                match insert_order(tx, &order).await {
                    Ok(()) => {}
                    Err(WriteError::Db(e)) => return Err(e),
                    Err(_) => return Err(DbError::Invariant("a new order id was taken")),
                }
                events.push(EventEnvelope::new(meta, order.id, &ordered_event(&order)));
            }
            ("CA" | "OC", Some(mut order)) => {
                let before = order.clone();
                if order.cancel(group.notes.first().cloned(), now).is_ok() {
                    match update_order(tx, &before, &order).await {
                        Ok(()) => {}
                        Err(WriteError::Db(e)) => return Err(e),
                        Err(_) => {
                            return Err(DbError::Invariant("an order changed during a cancel"));
                        }
                    }
                    let event = LabTestCancelledV1 {
                        order_id: order.id,
                        patient_id: order.patient_id,
                        cancelled_by: format!("hl7:{placer}"),
                        reason: order.cancel_reason.clone(),
                        cancelled_at: now,
                    };
                    events.push(EventEnvelope::new(meta, order.id, &event));
                }
            }
            ("CA" | "OC", None) => {
                return Ok(Err(Hl7Error::new(
                    ErrorCode::UnknownKey,
                    "ORC-2 (placer order number) names no order known here",
                )
                .at(Location::field("ORC", sequence, 2))));
            }
            _ => {
                return Ok(Err(Hl7Error::new(
                    ErrorCode::TableValueNotFound,
                    "ORC-1 (order control) must be NW, CA or OC here",
                )
                .at(Location::field("ORC", sequence, 1))));
            }
        }
    }
    Ok(Ok(Applied {
        status: "APPLIED",
        events,
        unmatched: Vec::new(),
        changed: Vec::new(),
    }))
}

fn new_order(
    tenant: &TenantId,
    group: &Hl7Order,
    patient: uuid::Uuid,
    mrn: &str,
    placer: &str,
    sequence: usize,
    now: DateTime<Utc>,
) -> Result<LabOrder, Hl7Error> {
    let service = group
        .service
        .as_ref()
        .ok_or_else(|| Hl7Error::missing("OBR", sequence, 4, "universal service id"))?;
    let provider = group
        .ordering_provider
        .as_ref()
        .ok_or_else(|| Hl7Error::missing("ORC", sequence, 12, "ordering provider"))?;
    let provider_id = provider
        .id
        .clone()
        .ok_or_else(|| Hl7Error::missing("ORC", sequence, 12, "ordering provider id"))?;
    let provider_name = provider
        .display_name()
        .unwrap_or_else(|| provider_id.clone());
    let test_code = kernel::text::code(&service.code, 50)
        .map_err(|_| Hl7Error::malformed("OBR", sequence, 4, "test code"))?;
    let loinc = match (service.is_loinc(), kernel::codes::loinc(&service.code)) {
        (true, Ok(l)) => Some(l),
        _ => None,
    };
    let mut diagnoses = Vec::new();
    for d in &group.diagnoses {
        let code = kernel::codes::icd10cm(&d.code)
            .map_err(|_| Hl7Error::malformed("DG1", 1, 3, "ICD-10-CM diagnosis code"))?;
        if !diagnoses.contains(&code) {
            diagnoses.push(code);
        }
    }
    let priority = match group.priority.as_deref() {
        Some("S") => Priority::Stat,
        Some("A") => Priority::Urgent,
        _ => Priority::Routine,
    };
    let new = NewLabOrder {
        patient_id: PatientId::from_uuid(patient),
        mrn: Some(mrn.chars().take(20).collect()),
        request: LabOrderRequest {
            tests: vec![OrderedTest {
                test_code,
                test_name: service
                    .text
                    .clone()
                    .unwrap_or_else(|| service.code.clone())
                    .chars()
                    .take(255)
                    .collect(),
                loinc_code: loinc,
            }],
            priority: priority.as_str(),
            ordering_provider_id: provider_id.chars().take(50).collect(),
            ordering_provider_name: provider_name.chars().take(255).collect(),
            diagnosis_codes: diagnoses,
        },
        requires_preauthorization: false,
    };
    let mut order = LabOrder::place(
        LabOrderId::new(),
        tenant.clone(),
        new,
        group.requested_at.unwrap_or(now),
    );
    order.placer_order = Some(placer.chars().take(50).collect());
    Ok(order)
}
