//! The use cases as callers reach them: each access to PHI is recorded in the audit trail
//! (000 §5.3) before it is answered, and an answer the trail could not record is refused
//! (`503 audit.unavailable`). Refusals are recorded too, on a best-effort basis: a denial
//! the trail misses discloses nothing.

use crate::app::{Context, Discharge, Discharged, Outcome, PatientRef, PatientService};
use crate::domain::lab_order::{LabOrder, LabOrderRequest};
use crate::domain::medical_record::{MedicalRecord, NewMedicalRecord};
use crate::domain::timeline::TimelineEntry;
use crate::domain::{Demographics, Patient};
use crate::errors::*;
use crate::store::{PatientStore, PatientSummary, SearchCriteria};
use kernel::audit::{AuditAction, AuditOutcome, AuditRecord, AuditUnavailable};
use kernel::idempotency::IdempotencyKey;
use kernel::ids::PatientId;
use kernel::paging::{Page, PageRequest};
use uuid::Uuid;

/// The entries a successful call leaves, made from what it returned.
type Entries<'a, T> = Box<dyn FnOnce(&T) -> Vec<AuditRecord> + Send + 'a>;

/// What is recorded of one call: its entries when it succeeded, and whether a failure was a
/// refusal (the roles lack the permission, or a PATIENT reached for a record not theirs).
struct Audited<'a, T, E> {
    resource: &'a str,
    patient: Option<PatientId>,
    entries: Entries<'a, T>,
    refusal: fn(&E) -> Refusal,
}

/// How a failed call is recorded.
enum Refusal {
    /// Not a refusal (a conflict, an invalid input, a real not-found): nothing to record.
    None,
    /// The caller's roles lack the permission.
    Forbidden,
    /// Not found: a refusal only when a PATIENT asked for someone else's record.
    NotFound,
}

impl<S: PatientStore> PatientService<S> {
    fn entry(&self, ctx: &Context, action: AuditAction, resource: &str) -> AuditRecord {
        AuditRecord::by(&ctx.principal, &ctx.origin, action, resource, self.now())
    }

    /// One entry about `patient`'s `resource`, naming the record when `id` is given.
    fn about(
        &self,
        ctx: &Context,
        action: AuditAction,
        resource: &str,
        patient: PatientId,
        id: Option<String>,
    ) -> AuditRecord {
        let record = self.entry(ctx, action, resource).patient(patient.as_uuid());
        match id {
            Some(id) => record.resource(id),
            None => record,
        }
    }

    /// Records `result` as `audited` says, and answers it only once that is durable.
    async fn answered<T, E: From<AuditUnavailable>>(
        &self,
        ctx: &Context,
        result: Result<T, E>,
        audited: Audited<'_, T, E>,
    ) -> Result<T, E> {
        match result {
            Ok(value) => {
                self.audit.record((audited.entries)(&value)).await?;
                Ok(value)
            }
            Err(e) => {
                let refused = match (audited.refusal)(&e) {
                    Refusal::None => false,
                    Refusal::Forbidden => true,
                    Refusal::NotFound => matches!(
                        (ctx.principal.patient, audited.patient),
                        (Some(own), Some(asked)) if own != asked.as_uuid()
                    ),
                };
                if refused {
                    self.record_refusal(
                        ctx,
                        audited.resource,
                        audited.patient.map(|p| p.as_uuid()),
                    )
                    .await;
                }
                Err(e)
            }
        }
    }

    async fn record_refusal(&self, ctx: &Context, resource: &str, patient: Option<Uuid>) {
        let mut record = self
            .entry(ctx, AuditAction::Access, resource)
            .outcome(AuditOutcome::Denied);
        if let Some(p) = patient {
            record = record.patient(p);
        }
        if self.audit.record(vec![record]).await.is_err() {
            tracing::warn!("a refusal could not be recorded in the audit trail");
        }
    }

    pub async fn register(
        &self,
        ctx: &Context,
        d: Demographics,
        key: Option<&IdempotencyKey>,
    ) -> Result<Outcome<Patient>, RegisterPatientError> {
        self.register_as(ctx, PatientId::new(), d, key).await
    }

    /// Registers under an id another service already refers to (the lab, for a patient an
    /// order arrived for before the patient did).
    pub(crate) async fn register_as(
        &self,
        ctx: &Context,
        id: PatientId,
        d: Demographics,
        key: Option<&IdempotencyKey>,
    ) -> Result<Outcome<Patient>, RegisterPatientError> {
        let result = self.register_unaudited(ctx, id, d, key).await;
        let audited = Audited {
            resource: "Patient",
            patient: None,
            entries: Box::new(|o: &Outcome<Patient>| {
                let id = o.value.id;
                vec![self.about(
                    ctx,
                    AuditAction::Create,
                    "Patient",
                    id,
                    Some(id.to_string()),
                )]
            }),
            refusal: |e| match e {
                RegisterPatientError::Forbidden => Refusal::Forbidden,
                _ => Refusal::None,
            },
        };
        self.answered(ctx, result, audited).await
    }

    pub async fn get(&self, ctx: &Context, id: PatientId) -> Result<Patient, GetPatientError> {
        let result = self.get_unaudited(ctx, id).await;
        let audited = Audited {
            resource: "Patient",
            patient: Some(id),
            entries: Box::new(|_: &Patient| {
                vec![self.about(ctx, AuditAction::Read, "Patient", id, Some(id.to_string()))]
            }),
            refusal: |e| match e {
                GetPatientError::Forbidden => Refusal::Forbidden,
                GetPatientError::NotFound => Refusal::NotFound,
                _ => Refusal::None,
            },
        };
        self.answered(ctx, result, audited).await
    }

    pub async fn update(
        &self,
        ctx: &Context,
        id: PatientId,
        expected_version: Option<i64>,
        d: Demographics,
    ) -> Result<Patient, UpdatePatientError> {
        let result = self.update_unaudited(ctx, id, expected_version, d).await;
        let audited = Audited {
            resource: "Patient",
            patient: Some(id),
            entries: Box::new(|_: &Patient| {
                vec![self.about(
                    ctx,
                    AuditAction::Update,
                    "Patient",
                    id,
                    Some(id.to_string()),
                )]
            }),
            refusal: |e| match e {
                UpdatePatientError::Forbidden => Refusal::Forbidden,
                UpdatePatientError::NotFound => Refusal::NotFound,
                _ => Refusal::None,
            },
        };
        self.answered(ctx, result, audited).await
    }

    pub async fn delete(
        &self,
        ctx: &Context,
        id: PatientId,
        expected_version: Option<i64>,
    ) -> Result<(), DeletePatientError> {
        let result = self.delete_unaudited(ctx, id, expected_version).await;
        let audited = Audited {
            resource: "Patient",
            patient: Some(id),
            entries: Box::new(|_: &()| {
                vec![self.about(
                    ctx,
                    AuditAction::Delete,
                    "Patient",
                    id,
                    Some(id.to_string()),
                )]
            }),
            refusal: |e| match e {
                DeletePatientError::Forbidden => Refusal::Forbidden,
                _ => Refusal::None,
            },
        };
        self.answered(ctx, result, audited).await
    }

    /// One entry per patient the search returned: each is an access to that patient.
    pub async fn search(
        &self,
        ctx: &Context,
        criteria: &SearchCriteria,
        page: &PageRequest,
    ) -> Result<Page<PatientSummary>, ListError> {
        let result = self.search_unaudited(ctx, criteria, page).await;
        let audited = Audited {
            resource: "Patient",
            patient: None,
            entries: Box::new(|found: &Page<PatientSummary>| {
                let mut records: Vec<AuditRecord> = found
                    .items
                    .iter()
                    .map(|p| {
                        self.about(
                            ctx,
                            AuditAction::Search,
                            "Patient",
                            p.id,
                            Some(p.id.to_string()),
                        )
                    })
                    .collect();
                if records.is_empty() {
                    // A search that found nothing still says who looked.
                    records.push(self.entry(ctx, AuditAction::Search, "Patient"));
                }
                records
            }),
            refusal: list_refusal,
        };
        self.answered(ctx, result, audited).await
    }

    pub async fn add_medical_record(
        &self,
        ctx: &Context,
        patient_id: PatientId,
        new: NewMedicalRecord,
        key: Option<&IdempotencyKey>,
    ) -> Result<Outcome<MedicalRecord>, PatientSubresourceError> {
        let result = self
            .add_medical_record_unaudited(ctx, patient_id, new, key)
            .await;
        let audited = self.created(ctx, "MedicalRecord", patient_id, |r: &MedicalRecord| {
            r.id.to_string()
        });
        self.answered(ctx, result, audited).await
    }

    /// One entry per record shown.
    pub async fn medical_records(
        &self,
        ctx: &Context,
        patient_id: PatientId,
        page: &PageRequest,
    ) -> Result<Page<MedicalRecord>, ListError> {
        let result = self.medical_records_unaudited(ctx, patient_id, page).await;
        let audited = Audited {
            resource: "MedicalRecord",
            patient: Some(patient_id),
            entries: Box::new(|shown: &Page<MedicalRecord>| {
                let read = |id| self.about(ctx, AuditAction::Read, "MedicalRecord", patient_id, id);
                if shown.items.is_empty() {
                    return vec![read(None)];
                }
                shown
                    .items
                    .iter()
                    .map(|r| read(Some(r.id.to_string())))
                    .collect()
            }),
            refusal: list_refusal,
        };
        self.answered(ctx, result, audited).await
    }

    pub async fn timeline(
        &self,
        ctx: &Context,
        patient_id: PatientId,
        page: &PageRequest,
    ) -> Result<Page<TimelineEntry>, ListError> {
        let result = self.timeline_unaudited(ctx, patient_id, page).await;
        let audited = Audited {
            resource: "Timeline",
            patient: Some(patient_id),
            entries: Box::new(|_: &Page<TimelineEntry>| {
                vec![self.about(ctx, AuditAction::Read, "Timeline", patient_id, None)]
            }),
            refusal: list_refusal,
        };
        self.answered(ctx, result, audited).await
    }

    pub async fn order_labs(
        &self,
        ctx: &Context,
        who: PatientRef,
        request: LabOrderRequest,
        key: Option<&IdempotencyKey>,
    ) -> Result<Outcome<LabOrder>, PatientSubresourceError> {
        let result = self.order_labs_unaudited(ctx, who, request, key).await;
        // By SSN, the patient is known only once found: no out-of-scope refusal to name.
        let audited = Audited {
            resource: "LabOrder",
            patient: None,
            entries: Box::new(|o: &Outcome<LabOrder>| {
                let order = &o.value;
                vec![self.about(
                    ctx,
                    AuditAction::Create,
                    "LabOrder",
                    order.patient_id,
                    Some(order.id.to_string()),
                )]
            }),
            refusal: |e| match e {
                PatientSubresourceError::Forbidden => Refusal::Forbidden,
                _ => Refusal::None,
            },
        };
        self.answered(ctx, result, audited).await
    }

    pub async fn discharge(
        &self,
        ctx: &Context,
        patient_id: PatientId,
        discharge: Discharge,
        key: Option<&IdempotencyKey>,
    ) -> Result<Outcome<Discharged>, PatientSubresourceError> {
        let result = self
            .discharge_unaudited(ctx, patient_id, discharge, key)
            .await;
        let audited = self.created(ctx, "Encounter", patient_id, move |_: &Discharged| {
            patient_id.to_string()
        });
        self.answered(ctx, result, audited).await
    }

    /// A thing created for a patient, named by `id`.
    fn created<'a, T: 'a>(
        &'a self,
        ctx: &'a Context,
        resource: &'a str,
        patient: PatientId,
        id: impl Fn(&T) -> String + Send + 'a,
    ) -> Audited<'a, Outcome<T>, PatientSubresourceError> {
        Audited {
            resource,
            patient: Some(patient),
            entries: Box::new(move |o: &Outcome<T>| {
                vec![self.about(
                    ctx,
                    AuditAction::Create,
                    resource,
                    patient,
                    Some(id(&o.value)),
                )]
            }),
            refusal: |e| match e {
                PatientSubresourceError::Forbidden => Refusal::Forbidden,
                PatientSubresourceError::PatientNotFound => Refusal::NotFound,
                _ => Refusal::None,
            },
        }
    }
}

fn list_refusal(e: &ListError) -> Refusal {
    match e {
        ListError::Forbidden => Refusal::Forbidden,
        ListError::PatientNotFound => Refusal::NotFound,
        _ => Refusal::None,
    }
}
