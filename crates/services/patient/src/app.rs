//! Use cases of the patient service: one async fn per command or query. Each takes the
//! caller's context, works on domain types and returns its own error enum.

use crate::domain::lab_order::{LabOrder, LabOrderRequest};
use crate::domain::medical_record::{MedicalRecord, NewMedicalRecord};
use crate::domain::patient::ReviseError;
use crate::domain::timeline::{TimelineEntry, TimelineEvent};
use crate::domain::{Demographics, Mrn, Patient, Ssn};
use crate::errors::*;
use crate::store::{
    IdempotencyRecord, OwnedIdempotencyRecord, PatientStore, PatientSummary, Registration,
    SearchCriteria, Write, WriteError,
};
use auth::{Permission, Scope};
use chrono::{DateTime, Utc};
use events::lab::OrderedTest;
use events::patient::{
    PatientCreatedV1, PatientDeletedV1, PatientDischargedV1, PatientLabsRequestedV1,
    PatientUpdatedV1,
};
use events::{EventEnvelope, EventMeta};
use kernel::audit::{AuditTrail, Origin};
use kernel::idempotency::IdempotencyKey;
use kernel::ids::{CorrelationId, LabOrderId, MedicalRecordId, PatientId, TimelineEntryId};
use kernel::paging::{Page, PageRequest};
use kernel::{Clock, Principal, TenantId};
use std::sync::Arc;
use uuid::Uuid;

pub const SOURCE: &str = "patient";
pub const REGISTRATIONS: &str = "meditrack_patient_registrations_total";
pub const DENIALS: &str = "meditrack_permission_denials_total";

/// Who is acting, and the correlation id every event written for this request carries.
#[derive(Debug, Clone)]
pub struct Context {
    pub principal: Principal,
    pub correlation_id: CorrelationId,
    /// Where the request came from, for the audit trail.
    pub origin: Origin,
}

impl Context {
    pub(crate) fn tenant(&self) -> &TenantId {
        &self.principal.tenant
    }

    /// The scope in which the caller holds `permission` (000 §5.1), or `Forbidden`.
    fn authorize(&self, permission: Permission) -> Result<Scope, auth::Forbidden> {
        auth::authorize(&self.principal, permission).inspect_err(|_| {
            metrics::counter!(DENIALS).increment(1);
            tracing::info!(subject = %self.principal.subject, ?permission, "permission denied");
        })
    }

    fn meta(&self, now: DateTime<Utc>) -> EventMeta {
        EventMeta {
            source: SOURCE,
            tenant: self.principal.tenant.clone(),
            correlation_id: self.correlation_id,
            causation_id: None,
            occurred_at: now,
        }
    }
}

/// How a patient is named in a path: by id, or by SSN on the routes 000 defines that way.
#[derive(Debug, Clone)]
pub enum PatientRef {
    Id(PatientId),
    Ssn(Ssn),
}

#[derive(Debug)]
pub struct PatientService<S> {
    store: S,
    clock: Arc<dyn Clock>,
    pub(crate) audit: Arc<dyn AuditTrail>,
}

impl<S: PatientStore> PatientService<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>, audit: Arc<dyn AuditTrail>) -> Self {
        Self {
            store,
            clock,
            audit,
        }
    }

    pub(crate) fn store(&self) -> &S {
        &self.store
    }

    pub fn today(&self) -> chrono::NaiveDate {
        self.clock.now().date_naive()
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(crate) async fn register_unaudited(
        &self,
        ctx: &Context,
        id: PatientId,
        d: Demographics,
        key: Option<&IdempotencyKey>,
    ) -> Result<Outcome<Patient>, RegisterPatientError> {
        ctx.authorize(Permission::PatientWrite)?;
        if let Some(id) = self.earlier_outcome(ctx, key, operation::REGISTER).await? {
            let patient = self
                .store
                .patient(ctx.tenant(), PatientId::from_uuid(id))
                .await?;
            return patient
                .map(Outcome::replayed)
                .ok_or(RegisterPatientError::ReplayGone);
        }
        let now = self.clock.now();
        let (meta, actor, tenant) = (
            ctx.meta(now),
            ctx.principal.subject.clone(),
            ctx.tenant().clone(),
        );
        let mrn = d.mrn.clone();
        let build = move |mrn: Mrn| {
            let patient = Patient::register(id, tenant.clone(), mrn, d.clone(), &actor, now);
            let events = vec![EventEnvelope::new(
                &meta,
                patient.id,
                &PatientCreatedV1 {
                    patient_id: patient.id,
                    mrn: patient.mrn.to_string(),
                    registered_at: now,
                },
            )];
            let timeline = TimelineEntry::new(
                patient.id,
                now,
                TimelineEvent::Registered {
                    mrn: patient.mrn.to_string(),
                },
            );
            Registration {
                patient,
                timeline,
                events,
            }
        };
        let idempotency = key.map(|k| OwnedIdempotencyRecord {
            key: k.key.clone(),
            operation: operation::REGISTER,
            request_digest: k.request_digest.clone(),
            resource_id: id.as_uuid(),
        });
        let patient = self
            .store
            .register(ctx.tenant(), mrn, build, idempotency)
            .await?;
        metrics::counter!(REGISTRATIONS).increment(1);
        tracing::info!(patient_id = %patient.id, "patient registered");
        Ok(Outcome::new(patient))
    }

    pub(crate) async fn get_unaudited(
        &self,
        ctx: &Context,
        id: PatientId,
    ) -> Result<Patient, GetPatientError> {
        if !ctx.authorize(Permission::PatientRead)?.admits(id.as_uuid()) {
            return Err(GetPatientError::NotFound);
        }
        self.store
            .patient(ctx.tenant(), id)
            .await?
            .ok_or(GetPatientError::NotFound)
    }

    pub(crate) async fn update_unaudited(
        &self,
        ctx: &Context,
        id: PatientId,
        expected_version: Option<i64>,
        d: Demographics,
    ) -> Result<Patient, UpdatePatientError> {
        // Clinicians may change anything; a patient only their own contact details.
        let contact_only = match ctx.authorize(Permission::PatientWrite) {
            Ok(_) => false,
            Err(_) => {
                if !ctx
                    .authorize(Permission::PatientContactUpdate)?
                    .admits(id.as_uuid())
                {
                    return Err(UpdatePatientError::NotFound);
                }
                true
            }
        };
        let mut patient = self
            .store
            .patient(ctx.tenant(), id)
            .await?
            .ok_or(UpdatePatientError::NotFound)?;
        if let Some(expected) = expected_version
            && expected != patient.version
        {
            return Err(UpdatePatientError::VersionMismatch);
        }
        let read_version = patient.version;
        let now = self.clock.now();
        let changed = patient
            .revise(d, &ctx.principal.subject, now)
            .map_err(|e| match e {
                ReviseError::MrnImmutable => UpdatePatientError::MrnImmutable,
            })?;
        if changed.is_empty() {
            return Ok(patient);
        }
        if contact_only && changed.iter().any(|f| !Patient::CONTACT_FIELDS.contains(f)) {
            return Err(UpdatePatientError::Forbidden);
        }
        let changed: Vec<String> = changed.into_iter().map(str::to_owned).collect();
        let events = [EventEnvelope::new(
            &ctx.meta(now),
            patient.id,
            &PatientUpdatedV1 {
                patient_id: patient.id,
                version: patient.version,
                changed_fields: changed.clone(),
            },
        )];
        let timeline = TimelineEntry::new(
            patient.id,
            now,
            TimelineEvent::Updated {
                version: patient.version,
                changed_fields: changed,
            },
        );
        let change = crate::store::Change::Update {
            patient: &patient,
            expected_version: read_version,
        };
        // A version conflict here means someone else updated between our read and our write.
        self.write(ctx, change, &timeline, &events, None).await?;
        Ok(patient)
    }

    pub(crate) async fn delete_unaudited(
        &self,
        ctx: &Context,
        id: PatientId,
        expected_version: Option<i64>,
    ) -> Result<(), DeletePatientError> {
        ctx.authorize(Permission::PatientDelete)?;
        let patient = self
            .store
            .patient(ctx.tenant(), id)
            .await?
            .ok_or(DeletePatientError::NotFound)?;
        if let Some(expected) = expected_version
            && expected != patient.version
        {
            return Err(DeletePatientError::VersionMismatch);
        }
        let now = self.clock.now();
        let events = [EventEnvelope::new(
            &ctx.meta(now),
            id,
            &PatientDeletedV1 {
                patient_id: id,
                deleted_at: now,
            },
        )];
        let timeline = TimelineEntry::new(id, now, TimelineEvent::Deleted);
        let change = crate::store::Change::Delete {
            id,
            expected_version: patient.version,
            at: now,
        };
        self.write(ctx, change, &timeline, &events, None).await?;
        tracing::info!(patient_id = %id, "patient soft-deleted");
        Ok(())
    }

    pub(crate) async fn search_unaudited(
        &self,
        ctx: &Context,
        criteria: &SearchCriteria,
        page: &PageRequest,
    ) -> Result<Page<PatientSummary>, ListError> {
        let mut criteria = criteria.clone();
        if let Scope::Patient(own) = ctx.authorize(Permission::PatientRead)? {
            criteria.only = Some(PatientId::from_uuid(own));
        }
        self.store
            .search(ctx.tenant(), &criteria, page)
            .await
            .map_err(Into::into)
    }

    pub(crate) async fn add_medical_record_unaudited(
        &self,
        ctx: &Context,
        patient_id: PatientId,
        new: NewMedicalRecord,
        key: Option<&IdempotencyKey>,
    ) -> Result<Outcome<MedicalRecord>, PatientSubresourceError> {
        ctx.authorize(Permission::MedicalRecordCreate)?;
        if let Some(id) = self
            .earlier_outcome(ctx, key, operation::ADD_MEDICAL_RECORD)
            .await?
        {
            let record = self
                .store
                .medical_record(ctx.tenant(), MedicalRecordId::from_uuid(id))
                .await?;
            return record
                .map(Outcome::replayed)
                .ok_or(PatientSubresourceError::ReplayGone);
        }
        let now = self.clock.now();
        let record = MedicalRecord {
            id: MedicalRecordId::new(),
            patient_id,
            record_type: new.record_type,
            record_date: new.record_date,
            provider_id: new.provider_id,
            diagnosis_codes: new.diagnosis_codes,
            procedure_codes: new.procedure_codes,
            notes: new.notes,
            created_at: now,
            created_by: ctx.principal.subject.clone(),
        };
        let timeline = TimelineEntry::new(
            patient_id,
            record.record_date,
            TimelineEvent::MedicalRecordAdded {
                record_id: record.id,
                record_type: record.record_type.to_owned(),
            },
        );
        self.write(
            ctx,
            crate::store::Change::AddMedicalRecord(&record),
            &timeline,
            &[],
            idempotency_record(key, operation::ADD_MEDICAL_RECORD, record.id.as_uuid()),
        )
        .await?;
        Ok(Outcome::new(record))
    }

    pub(crate) async fn medical_records_unaudited(
        &self,
        ctx: &Context,
        patient_id: PatientId,
        page: &PageRequest,
    ) -> Result<Page<MedicalRecord>, ListError> {
        self.require_patient(ctx, Permission::MedicalRecordRead, patient_id)
            .await?;
        self.store
            .medical_records(ctx.tenant(), patient_id, page)
            .await
            .map_err(Into::into)
    }

    pub(crate) async fn timeline_unaudited(
        &self,
        ctx: &Context,
        patient_id: PatientId,
        page: &PageRequest,
    ) -> Result<Page<TimelineEntry>, ListError> {
        self.require_patient(ctx, Permission::MedicalRecordRead, patient_id)
            .await?;
        self.store
            .timeline(ctx.tenant(), patient_id, page)
            .await
            .map_err(Into::into)
    }

    pub(crate) async fn order_labs_unaudited(
        &self,
        ctx: &Context,
        who: PatientRef,
        request: LabOrderRequest,
        key: Option<&IdempotencyKey>,
    ) -> Result<Outcome<LabOrder>, PatientSubresourceError> {
        ctx.authorize(Permission::LabOrderCreate)?;
        if let Some(id) = self
            .earlier_outcome(ctx, key, operation::ORDER_LABS)
            .await?
        {
            let order = self
                .store
                .lab_order(ctx.tenant(), LabOrderId::from_uuid(id))
                .await?;
            return order
                .map(Outcome::replayed)
                .ok_or(PatientSubresourceError::ReplayGone);
        }
        let patient = match who {
            PatientRef::Id(id) => self.store.patient(ctx.tenant(), id).await?,
            PatientRef::Ssn(ssn) => self.store.patient_by_ssn(ctx.tenant(), &ssn).await?,
        }
        .ok_or(PatientSubresourceError::PatientNotFound)?;
        let now = self.clock.now();
        let order = LabOrder {
            id: LabOrderId::new(),
            patient_id: patient.id,
            request,
            ordered_at: now,
        };
        let r = &order.request;
        // The lab service owns lab orders: this asks it for one, with this id.
        let payload = PatientLabsRequestedV1 {
            order_id: order.id,
            patient_id: patient.id,
            mrn: patient.mrn.to_string(),
            tests: r
                .tests
                .iter()
                .map(|t| OrderedTest {
                    test_code: t.test_code.clone(),
                    test_name: t.test_name.clone(),
                    loinc_code: t.loinc_code.clone(),
                })
                .collect(),
            priority: r.priority.to_owned(),
            ordering_provider_id: r.ordering_provider_id.clone(),
            ordering_provider_name: r.ordering_provider_name.clone(),
            diagnosis_codes: r.diagnosis_codes.clone(),
            requested_at: now,
        };
        // Keyed by patient, so the lab order follows the patient's own events in order.
        let events = [EventEnvelope::new(&ctx.meta(now), patient.id, &payload)];
        let timeline = TimelineEntry::new(
            patient.id,
            now,
            TimelineEvent::LabOrdered {
                order_id: order.id,
                priority: r.priority.to_owned(),
                test_codes: r.tests.iter().map(|t| t.test_code.clone()).collect(),
            },
        );
        self.write(
            ctx,
            crate::store::Change::OrderLabs(&order),
            &timeline,
            &events,
            idempotency_record(key, operation::ORDER_LABS, order.id.as_uuid()),
        )
        .await?;
        tracing::info!(patient_id = %patient.id, order_id = %order.id, "lab tests ordered");
        Ok(Outcome::new(order))
    }

    pub(crate) async fn discharge_unaudited(
        &self,
        ctx: &Context,
        patient_id: PatientId,
        discharge: Discharge,
        key: Option<&IdempotencyKey>,
    ) -> Result<Outcome<Discharged>, PatientSubresourceError> {
        ctx.authorize(Permission::PatientWrite)?;
        if let Some(id) = self.earlier_outcome(ctx, key, operation::DISCHARGE).await? {
            let entry = self
                .store
                .timeline_entry(ctx.tenant(), TimelineEntryId::from_uuid(id))
                .await?;
            return match entry {
                Some(TimelineEntry {
                    patient_id,
                    occurred_at,
                    event: TimelineEvent::Discharged { disposition },
                    ..
                }) => Ok(Outcome::replayed(Discharged {
                    patient_id,
                    discharged_at: occurred_at,
                    disposition,
                })),
                _ => Err(PatientSubresourceError::ReplayGone),
            };
        }
        let now = self.clock.now();
        let at = discharge.discharged_at.unwrap_or(now);
        let disposition = discharge.disposition.map(str::to_owned);
        let events = [EventEnvelope::new(
            &ctx.meta(now),
            patient_id,
            &PatientDischargedV1 {
                patient_id,
                discharged_at: at,
                disposition: disposition.clone(),
            },
        )];
        let timeline = TimelineEntry::new(
            patient_id,
            at,
            TimelineEvent::Discharged {
                disposition: disposition.clone(),
            },
        );
        self.write(
            ctx,
            crate::store::Change::Touch(patient_id),
            &timeline,
            &events,
            idempotency_record(key, operation::DISCHARGE, timeline.id.as_uuid()),
        )
        .await?;
        Ok(Outcome::new(Discharged {
            patient_id,
            discharged_at: at,
            disposition,
        }))
    }

    /// The caller holds `permission` for this patient, and the patient exists.
    async fn require_patient(
        &self,
        ctx: &Context,
        permission: Permission,
        id: PatientId,
    ) -> Result<(), ListError> {
        if !ctx.authorize(permission)?.admits(id.as_uuid()) {
            return Err(ListError::PatientNotFound);
        }
        match self.store.patient_exists(ctx.tenant(), id).await? {
            true => Ok(()),
            false => Err(ListError::PatientNotFound),
        }
    }

    async fn write(
        &self,
        ctx: &Context,
        change: crate::store::Change<'_>,
        timeline: &TimelineEntry,
        events: &[EventEnvelope],
        idempotency: Option<IdempotencyRecord<'_>>,
    ) -> Result<(), WriteError> {
        self.store
            .write(Write {
                tenant: ctx.tenant(),
                actor: &ctx.principal.subject,
                change,
                timeline,
                events,
                idempotency,
            })
            .await
    }

    /// What an earlier request with the same key created, if there was one. The same key
    /// for another operation or another request is refused.
    async fn earlier_outcome(
        &self,
        ctx: &Context,
        key: Option<&IdempotencyKey>,
        operation: &str,
    ) -> Result<Option<Uuid>, IdempotencyError> {
        let Some(key) = key else { return Ok(None) };
        match self
            .store
            .used_idempotency_key(ctx.tenant(), &key.key)
            .await?
        {
            None => Ok(None),
            Some(used)
                if used.operation == operation && used.request_digest == key.request_digest =>
            {
                Ok(Some(used.resource_id))
            }
            Some(_) => Err(IdempotencyError::KeyReused),
        }
    }
}

/// The names under which idempotency keys record what they did.
mod operation {
    pub const REGISTER: &str = "patient.register";
    pub const ADD_MEDICAL_RECORD: &str = "patient.add_medical_record";
    pub const ORDER_LABS: &str = "patient.order_labs";
    pub const DISCHARGE: &str = "patient.discharge";
}

fn idempotency_record<'a>(
    key: Option<&'a IdempotencyKey>,
    operation: &'a str,
    resource_id: Uuid,
) -> Option<IdempotencyRecord<'a>> {
    key.map(|k| IdempotencyRecord {
        key: &k.key,
        operation,
        request_digest: &k.request_digest,
        resource_id,
    })
}

/// The result of a command that may be a retry: `replayed` when an earlier request with the
/// same idempotency key did the work and this is its outcome.
#[derive(Debug, Clone)]
pub struct Outcome<T> {
    pub value: T,
    pub replayed: bool,
}

impl<T> Outcome<T> {
    fn new(value: T) -> Self {
        Self {
            value,
            replayed: false,
        }
    }

    fn replayed(value: T) -> Self {
        Self {
            value,
            replayed: true,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Discharge {
    pub discharged_at: Option<DateTime<Utc>>,
    pub disposition: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct Discharged {
    pub patient_id: PatientId,
    pub discharged_at: DateTime<Utc>,
    pub disposition: Option<String>,
}
