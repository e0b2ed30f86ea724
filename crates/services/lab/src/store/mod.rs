//! The lab store port, and its adapter over SQLite and PostgreSQL (`sql.rs`). An order is
//! saved whole, with the events its change produced, in one transaction.

mod bulk;
pub use bulk::{BULK_TABLES, BulkBatch};
pub(crate) mod direct;
pub mod hl7;
pub(crate) mod lookup;
mod rows;
pub(crate) mod run;
mod sql;

pub use sql::SqlLabStore;
pub(crate) use sql::{
    HeardOf, adopt_patient_id, insert_order, load_order, remember_patient, remember_patients,
    update_order,
};

use crate::domain::LabOrder;
use events::EventEnvelope;
use kernel::TenantId;
use kernel::ids::LabOrderId;
use kernel::paging::{Page, PageRequest};
use std::future::Future;
use store::DbError;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the order is not at the expected version")]
    VersionConflict,
    #[error("no such order")]
    NotFound,
    #[error("an order with this id exists")]
    Exists,
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

pub trait LabStore: Send + Sync + 'static {
    /// A new order, with its events.
    fn insert(
        &self,
        order: &LabOrder,
        events: &[EventEnvelope],
    ) -> impl Future<Output = Result<(), WriteError>> + Send;
    /// The order as changed from `before` (as it was read: its version is the one
    /// expected), with its events.
    fn update(
        &self,
        before: &LabOrder,
        after: &LabOrder,
        events: &[EventEnvelope],
    ) -> impl Future<Output = Result<(), WriteError>> + Send;
    fn order(
        &self,
        tenant: &TenantId,
        id: LabOrderId,
    ) -> impl Future<Output = Result<Option<LabOrder>, DbError>> + Send;
    /// Orders still to be worked on (PENDING, COLLECTED, IN_PROGRESS, not waiting for
    /// insurance), STAT first, then URGENT, then ROUTINE, oldest first within each.
    fn pending(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<LabOrder>, ReadError>> + Send;
    /// HL7 results still waiting for an order, newest first.
    fn unmatched(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<hl7::Unmatched>, ReadError>> + Send;
    /// The HL7 messages received and what became of them, newest first.
    fn messages(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<hl7::MessageSummary>, ReadError>> + Send;
    fn message(
        &self,
        tenant: &TenantId,
        id: uuid::Uuid,
    ) -> impl Future<Output = Result<Option<hl7::MessageSummary>, DbError>> + Send;
    /// Applies `change` to the order and closes the unmatched entry, in one transaction.
    fn reconcile(
        &self,
        tenant: &TenantId,
        unmatched: uuid::Uuid,
        order: LabOrderId,
        by: &str,
        change: Reconciliation<'_>,
    ) -> impl Future<Output = Result<LabOrder, ReconcileFailure>> + Send;
}

/// What reconciling does to the order: the change, and the events it makes.
pub type Reconciliation<'a> = Box<
    dyn FnOnce(
            &mut LabOrder,
            &hl7::Unmatched,
        ) -> Result<Vec<EventEnvelope>, crate::domain::Transition>
        + Send
        + 'a,
>;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileFailure {
    #[error("no such unmatched result")]
    UnmatchedNotFound,
    #[error("already reconciled")]
    AlreadyReconciled,
    #[error("no such order")]
    OrderNotFound,
    #[error("{0}")]
    Refused(crate::domain::Transition),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Db(#[from] DbError),
}
