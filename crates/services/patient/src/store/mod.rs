//! The patient store port, and its adapter over SQLite and PostgreSQL (`sql.rs`).

// First: its bind macros serve the modules after it.
#[macro_use]
mod statements;
mod bulk;
pub use bulk::{BULK_TABLES, BulkBatch};
mod mrn_blocks;
mod registration;
mod rows;
mod sealing;
mod search;
mod sql;

pub use sealing::{KeyringCheckError, Reseal};
pub use sql::{SqlPatientStore, append_external_entries};

use crate::domain::lab_order::LabOrder;
use crate::domain::medical_record::MedicalRecord;
use crate::domain::timeline::TimelineEntry;
use crate::domain::{Email, Mrn, Patient, Phone, Ssn};
use chrono::{DateTime, NaiveDate, Utc};
use events::EventEnvelope;
use kernel::TenantId;
use kernel::ids::{LabOrderId, MedicalRecordId, PatientId, TimelineEntryId};
use kernel::paging::{Page, PageRequest};
use std::future::Future;
use store::DbError;
use uuid::Uuid;

/// A state change, written in one transaction with its timeline entry and its events.
/// Registrations have a path of their own ([`PatientStore::register`]).
#[derive(Debug)]
pub enum Change<'a> {
    /// Replaces the patient if it is still at `expected_version`.
    Update {
        patient: &'a Patient,
        expected_version: i64,
    },
    Delete {
        id: PatientId,
        expected_version: i64,
        at: DateTime<Utc>,
    },
    AddMedicalRecord(&'a MedicalRecord),
    OrderLabs(&'a LabOrder),
    /// Nothing but the timeline entry and the events, for a live patient.
    Touch(PatientId),
}

#[derive(Debug)]
pub struct Write<'a> {
    pub tenant: &'a TenantId,
    pub actor: &'a str,
    pub change: Change<'a>,
    pub timeline: &'a TimelineEntry,
    pub events: &'a [EventEnvelope],
    /// Recorded with the change, so a retry finds the change or nothing at all.
    pub idempotency: Option<IdempotencyRecord<'a>>,
}

/// A registration once its MRN is known: the patient, its timeline entry and its events.
#[derive(Debug)]
pub struct Registration {
    pub patient: Patient,
    pub timeline: TimelineEntry,
    pub events: Vec<EventEnvelope>,
}

/// Generated MRNs can collide with MRNs clients chose themselves; a few tries get past them.
pub const MRN_ATTEMPTS: usize = 5;

/// An [`IdempotencyRecord`] that owns its strings, for a write that runs after its request
/// let go of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedIdempotencyRecord {
    pub key: String,
    pub operation: &'static str,
    pub request_digest: String,
    pub resource_id: Uuid,
}

impl OwnedIdempotencyRecord {
    pub fn borrowed(&self) -> IdempotencyRecord<'_> {
        IdempotencyRecord {
            key: &self.key,
            operation: self.operation,
            request_digest: &self.request_digest,
            resource_id: self.resource_id,
        }
    }
}

/// What an `Idempotency-Key` produced: which operation, for which request, creating what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord<'a> {
    pub key: &'a str,
    pub operation: &'a str,
    pub request_digest: &'a str,
    pub resource_id: Uuid,
}

/// An `Idempotency-Key` already used in the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedIdempotencyKey {
    pub operation: String,
    pub request_digest: String,
    pub resource_id: Uuid,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("patient not found")]
    NotFound,
    #[error("the patient is not at the expected version")]
    VersionConflict,
    #[error("MRN taken")]
    DuplicateMrn,
    #[error("SSN taken")]
    DuplicateSsn,
    #[error("idempotency key taken by a concurrent request")]
    IdempotencyKeyTaken,
    #[error(transparent)]
    Db(#[from] DbError),
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("bad cursor")]
    BadCursor,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Search filters, all optional, combined with AND. Names match case-insensitively by prefix.
#[derive(Debug, Clone, Default)]
pub struct SearchCriteria {
    pub last_name: Option<String>,
    pub first_name: Option<String>,
    pub date_of_birth: Option<NaiveDate>,
    pub mrn: Option<Mrn>,
    pub phone: Option<Phone>,
    pub email: Option<Email>,
    /// Only this patient: the caller may see no other (a PATIENT user searching).
    pub only: Option<PatientId>,
}

/// A search hit: the patient without SSN, addresses and insurance, which a list does not need.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientSummary {
    pub id: PatientId,
    pub mrn: String,
    pub first_name: String,
    pub middle_name: Option<String>,
    pub last_name: String,
    pub date_of_birth: NaiveDate,
    pub gender: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The patient store port. Every method is scoped to one tenant; nothing crosses tenants.
pub trait PatientStore: Send + Sync + 'static {
    fn write(&self, write: Write<'_>) -> impl Future<Output = Result<(), WriteError>> + Send;
    /// Registers the patient `build` makes for `mrn`, or for the tenant's next generated MRN
    /// when `mrn` is `None`; a generated MRN a client already took is passed over for the
    /// next, up to [`MRN_ATTEMPTS`] times, then it is `DuplicateMrn`.
    fn register<B>(
        &self,
        tenant: &TenantId,
        mrn: Option<Mrn>,
        build: B,
        idempotency: Option<OwnedIdempotencyRecord>,
    ) -> impl Future<Output = Result<Patient, WriteError>> + Send
    where
        B: Fn(Mrn) -> Registration + Send + Sync + 'static;
    fn next_mrn(&self, tenant: &TenantId) -> impl Future<Output = Result<Mrn, DbError>> + Send;
    /// A live (not deleted) patient.
    fn patient(
        &self,
        tenant: &TenantId,
        id: PatientId,
    ) -> impl Future<Output = Result<Option<Patient>, DbError>> + Send;
    fn patient_by_ssn(
        &self,
        tenant: &TenantId,
        ssn: &Ssn,
    ) -> impl Future<Output = Result<Option<Patient>, DbError>> + Send;
    fn patient_exists(
        &self,
        tenant: &TenantId,
        id: PatientId,
    ) -> impl Future<Output = Result<bool, DbError>> + Send;
    fn search(
        &self,
        tenant: &TenantId,
        criteria: &SearchCriteria,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<PatientSummary>, ReadError>> + Send;
    fn medical_records(
        &self,
        tenant: &TenantId,
        patient: PatientId,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<MedicalRecord>, ReadError>> + Send;
    fn timeline(
        &self,
        tenant: &TenantId,
        patient: PatientId,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<TimelineEntry>, ReadError>> + Send;
    fn used_idempotency_key(
        &self,
        tenant: &TenantId,
        key: &str,
    ) -> impl Future<Output = Result<Option<UsedIdempotencyKey>, DbError>> + Send;
    fn medical_record(
        &self,
        tenant: &TenantId,
        id: MedicalRecordId,
    ) -> impl Future<Output = Result<Option<MedicalRecord>, DbError>> + Send;
    fn lab_order(
        &self,
        tenant: &TenantId,
        id: LabOrderId,
    ) -> impl Future<Output = Result<Option<LabOrder>, DbError>> + Send;
    fn timeline_entry(
        &self,
        tenant: &TenantId,
        id: TimelineEntryId,
    ) -> impl Future<Output = Result<Option<TimelineEntry>, DbError>> + Send;
}
