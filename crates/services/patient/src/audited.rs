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

/// What a refused call is recorded as.
enum Refused {
    /// The caller's roles lack the permission.
    Forbidden,
    /// A PATIENT reached for a record that is not theirs (answered 404).
    OutOfScope,
}

impl<S: PatientStore> PatientService<S> {
    fn entry(&self, ctx: &Context, action: AuditAction, resource: &str) -> AuditRecord {
        AuditRecord::by(&ctx.principal, &ctx.origin, action, resource, self.now())
    }

    async fn audit(&self, records: Vec<AuditRecord>) -> Result<(), AuditUnavailable> {
        self.audit.record(records).await
    }

    async fn refused(
        &self,
        ctx: &Context,
        why: Option<Refused>,
        resource: &str,
        patient: Option<Uuid>,
    ) {
        if why.is_none() {
            return;
        }
        let mut record = self
            .entry(ctx, AuditAction::Access, resource)
            .outcome(AuditOutcome::Denied);
        if let Some(p) = patient {
            record = record.patient(p);
        }
        if self.audit(vec![record]).await.is_err() {
            tracing::warn!("a refusal could not be recorded in the audit trail");
        }
    }

    /// Why a not-found answer was a refusal: the caller is a patient and this is not them.
    fn out_of_scope(ctx: &Context, patient: PatientId) -> Option<Refused> {
        match ctx.principal.patient {
            Some(own) if own != patient.as_uuid() => Some(Refused::OutOfScope),
            _ => None,
        }
    }

    pub async fn register(
        &self,
        ctx: &Context,
        d: Demographics,
        key: Option<&IdempotencyKey>,
    ) -> Result<Outcome<Patient>, RegisterPatientError> {
        match self.register_unaudited(ctx, d, key).await {
            Ok(outcome) => {
                let id = outcome.value.id;
                self.audit(vec![
                    self.entry(ctx, AuditAction::Create, "Patient")
                        .resource(id)
                        .patient(id.as_uuid()),
                ])
                .await?;
                Ok(outcome)
            }
            Err(RegisterPatientError::Forbidden) => {
                self.refused(ctx, Some(Refused::Forbidden), "Patient", None)
                    .await;
                Err(RegisterPatientError::Forbidden)
            }
            Err(e) => Err(e),
        }
    }

    pub async fn get(&self, ctx: &Context, id: PatientId) -> Result<Patient, GetPatientError> {
        match self.get_unaudited(ctx, id).await {
            Ok(patient) => {
                self.audit(vec![
                    self.entry(ctx, AuditAction::Read, "Patient")
                        .resource(id)
                        .patient(id.as_uuid()),
                ])
                .await?;
                Ok(patient)
            }
            Err(e) => {
                let why = match &e {
                    GetPatientError::Forbidden => Some(Refused::Forbidden),
                    GetPatientError::NotFound => Self::out_of_scope(ctx, id),
                    _ => None,
                };
                self.refused(ctx, why, "Patient", Some(id.as_uuid())).await;
                Err(e)
            }
        }
    }

    pub async fn update(
        &self,
        ctx: &Context,
        id: PatientId,
        expected_version: Option<i64>,
        d: Demographics,
    ) -> Result<Patient, UpdatePatientError> {
        match self.update_unaudited(ctx, id, expected_version, d).await {
            Ok(patient) => {
                self.audit(vec![
                    self.entry(ctx, AuditAction::Update, "Patient")
                        .resource(id)
                        .patient(id.as_uuid()),
                ])
                .await?;
                Ok(patient)
            }
            Err(e) => {
                let why = match &e {
                    UpdatePatientError::Forbidden => Some(Refused::Forbidden),
                    UpdatePatientError::NotFound => Self::out_of_scope(ctx, id),
                    _ => None,
                };
                self.refused(ctx, why, "Patient", Some(id.as_uuid())).await;
                Err(e)
            }
        }
    }

    pub async fn delete(
        &self,
        ctx: &Context,
        id: PatientId,
        expected_version: Option<i64>,
    ) -> Result<(), DeletePatientError> {
        match self.delete_unaudited(ctx, id, expected_version).await {
            Ok(()) => {
                self.audit(vec![
                    self.entry(ctx, AuditAction::Delete, "Patient")
                        .resource(id)
                        .patient(id.as_uuid()),
                ])
                .await?;
                Ok(())
            }
            Err(DeletePatientError::Forbidden) => {
                self.refused(ctx, Some(Refused::Forbidden), "Patient", Some(id.as_uuid()))
                    .await;
                Err(DeletePatientError::Forbidden)
            }
            Err(e) => Err(e),
        }
    }

    /// One entry per patient the search returned: each is an access to that patient.
    pub async fn search(
        &self,
        ctx: &Context,
        criteria: &SearchCriteria,
        page: &PageRequest,
    ) -> Result<Page<PatientSummary>, ListError> {
        match self.search_unaudited(ctx, criteria, page).await {
            Ok(found) => {
                let mut records: Vec<AuditRecord> = found
                    .items
                    .iter()
                    .map(|p| {
                        self.entry(ctx, AuditAction::Search, "Patient")
                            .resource(p.id)
                            .patient(p.id.as_uuid())
                    })
                    .collect();
                if records.is_empty() {
                    // A search that found nothing still says who looked.
                    records.push(self.entry(ctx, AuditAction::Search, "Patient"));
                }
                self.audit(records).await?;
                Ok(found)
            }
            Err(ListError::Forbidden) => {
                self.refused(ctx, Some(Refused::Forbidden), "Patient", None)
                    .await;
                Err(ListError::Forbidden)
            }
            Err(e) => Err(e),
        }
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
        self.subresource(ctx, result, "MedicalRecord", patient_id, |r| {
            r.id.to_string()
        })
        .await
    }

    pub async fn medical_records(
        &self,
        ctx: &Context,
        patient_id: PatientId,
        page: &PageRequest,
    ) -> Result<Page<MedicalRecord>, ListError> {
        let result = self.medical_records_unaudited(ctx, patient_id, page).await;
        let ids = result
            .as_ref()
            .ok()
            .map(|p| p.items.iter().map(|r| r.id.to_string()).collect::<Vec<_>>());
        self.patient_list(ctx, result, "MedicalRecord", patient_id, ids)
            .await
    }

    pub async fn timeline(
        &self,
        ctx: &Context,
        patient_id: PatientId,
        page: &PageRequest,
    ) -> Result<Page<TimelineEntry>, ListError> {
        let result = self.timeline_unaudited(ctx, patient_id, page).await;
        self.patient_list(ctx, result, "Timeline", patient_id, None)
            .await
    }

    pub async fn order_labs(
        &self,
        ctx: &Context,
        who: PatientRef,
        request: LabOrderRequest,
        key: Option<&IdempotencyKey>,
    ) -> Result<Outcome<LabOrder>, PatientSubresourceError> {
        match self.order_labs_unaudited(ctx, who, request, key).await {
            Ok(outcome) => {
                let patient = outcome.value.patient_id;
                self.audit(vec![
                    self.entry(ctx, AuditAction::Create, "LabOrder")
                        .resource(outcome.value.id)
                        .patient(patient.as_uuid()),
                ])
                .await?;
                Ok(outcome)
            }
            Err(PatientSubresourceError::Forbidden) => {
                self.refused(ctx, Some(Refused::Forbidden), "LabOrder", None)
                    .await;
                Err(PatientSubresourceError::Forbidden)
            }
            Err(e) => Err(e),
        }
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
        self.subresource(ctx, result, "Encounter", patient_id, |_| {
            patient_id.to_string()
        })
        .await
    }

    async fn subresource<T>(
        &self,
        ctx: &Context,
        result: Result<Outcome<T>, PatientSubresourceError>,
        resource: &str,
        patient: PatientId,
        id: impl Fn(&T) -> String,
    ) -> Result<Outcome<T>, PatientSubresourceError> {
        match result {
            Ok(outcome) => {
                self.audit(vec![
                    self.entry(ctx, AuditAction::Create, resource)
                        .resource(id(&outcome.value))
                        .patient(patient.as_uuid()),
                ])
                .await?;
                Ok(outcome)
            }
            Err(e) => {
                let why = match &e {
                    PatientSubresourceError::Forbidden => Some(Refused::Forbidden),
                    PatientSubresourceError::PatientNotFound => Self::out_of_scope(ctx, patient),
                    _ => None,
                };
                self.refused(ctx, why, resource, Some(patient.as_uuid()))
                    .await;
                Err(e)
            }
        }
    }

    /// A read of one patient's list: one entry per item shown when `ids` names them, else
    /// one for the list.
    async fn patient_list<T>(
        &self,
        ctx: &Context,
        result: Result<Page<T>, ListError>,
        resource: &str,
        patient: PatientId,
        ids: Option<Vec<String>>,
    ) -> Result<Page<T>, ListError> {
        match result {
            Ok(page) => {
                let base = self
                    .entry(ctx, AuditAction::Read, resource)
                    .patient(patient.as_uuid());
                let records = match ids {
                    Some(ids) if !ids.is_empty() => ids
                        .into_iter()
                        .map(|id| base.clone().resource(id))
                        .collect(),
                    _ => vec![base],
                };
                self.audit(records).await?;
                Ok(page)
            }
            Err(e) => {
                let why = match &e {
                    ListError::Forbidden => Some(Refused::Forbidden),
                    ListError::PatientNotFound => Self::out_of_scope(ctx, patient),
                    _ => None,
                };
                self.refused(ctx, why, resource, Some(patient.as_uuid()))
                    .await;
                Err(e)
            }
        }
    }
}
