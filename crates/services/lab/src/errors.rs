//! One error enum per kind of operation (ARCHITECTURE.md §4). Codes are stable: clients
//! match on them. Display texts never contain PHI.

use crate::domain::Transition;
use crate::store::{ReadError, WriteError};
use kernel::{OperationError, operation_error};
use store::DbError;

#[derive(Debug, thiserror::Error)]
pub enum CreateOrderError {
    #[error("your roles do not allow this")]
    Forbidden,
    #[error("the audit trail cannot record this access; retry shortly")]
    AuditUnavailable,
    #[error(transparent)]
    Store(#[from] DbError),
}

operation_error!(CreateOrderError {
    Forbidden => ("auth.forbidden", Forbidden),
    AuditUnavailable => ("audit.unavailable", Unavailable),
    Store(_) => ("internal", Internal),
});

/// Reading or changing one order.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("your roles do not allow this")]
    Forbidden,
    #[error("the audit trail cannot record this access; retry shortly")]
    AuditUnavailable,
    #[error("lab order not found")]
    NotFound,
    #[error("the order has changed since it was read; read it again and reapply the change")]
    VersionMismatch,
    #[error("{0}")]
    Refused(Transition),
    #[error(transparent)]
    Store(#[from] DbError),
}

operation_error!(OrderError {
    Forbidden => ("auth.forbidden", Forbidden),
    AuditUnavailable => ("audit.unavailable", Unavailable),
    NotFound => ("lab.order_not_found", NotFound),
    VersionMismatch => ("lab.version_mismatch", PreconditionFailed),
    Refused(Transition::Illegal { .. }) => ("lab.illegal_transition", Conflict),
    Refused(Transition::Closed(_)) => ("lab.order_closed", Conflict),
    Refused(Transition::AwaitingPreauthorization) => ("lab.awaiting_preauthorization", Conflict),
    Refused(Transition::ResultsNotFinal(_)) => ("lab.results_not_final", Conflict),
    Refused(Transition::UnknownTest(_)) => ("lab.unknown_test", Invalid),
    Refused(Transition::UnknownSpecimen(_)) => ("lab.specimen_not_found", NotFound),
    Refused(Transition::NothingToVerify) => ("lab.nothing_to_verify", Conflict),
    Store(_) => ("internal", Internal),
});

impl From<Transition> for OrderError {
    fn from(t: Transition) -> Self {
        Self::Refused(t)
    }
}

impl From<WriteError> for OrderError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NotFound => Self::NotFound,
            WriteError::VersionConflict => Self::VersionMismatch,
            WriteError::Db(e) => Self::Store(e),
            WriteError::Exists => Self::Store(DbError::Invariant("an update inserted an order")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("your roles do not allow this")]
    Forbidden,
    #[error("the audit trail cannot record this access; retry shortly")]
    AuditUnavailable,
    #[error("the cursor is not one this API handed out")]
    BadCursor,
    #[error(transparent)]
    Store(#[from] DbError),
}

operation_error!(ListError {
    Forbidden => ("auth.forbidden", Forbidden),
    AuditUnavailable => ("audit.unavailable", Unavailable),
    BadCursor => ("request.invalid_cursor", Invalid),
    Store(_) => ("internal", Internal),
});

impl From<ReadError> for ListError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::BadCursor => Self::BadCursor,
            ReadError::Db(e) => Self::Store(e),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("your roles do not allow this")]
    Forbidden,
    #[error("the audit trail cannot record this access; retry shortly")]
    AuditUnavailable,
    #[error("no such unmatched result")]
    UnmatchedNotFound,
    #[error("this result was reconciled already")]
    AlreadyReconciled,
    #[error(transparent)]
    Order(#[from] OrderError),
}

impl OperationError for ReconcileError {
    fn code(&self) -> &'static str {
        match self {
            Self::Forbidden => "auth.forbidden",
            Self::AuditUnavailable => "audit.unavailable",
            Self::UnmatchedNotFound => "lab.unmatched_not_found",
            Self::AlreadyReconciled => "lab.already_reconciled",
            Self::Order(e) => e.code(),
        }
    }

    fn kind(&self) -> kernel::ErrorKind {
        match self {
            Self::Forbidden => kernel::ErrorKind::Forbidden,
            Self::AuditUnavailable => kernel::ErrorKind::Unavailable,
            Self::UnmatchedNotFound => kernel::ErrorKind::NotFound,
            Self::AlreadyReconciled => kernel::ErrorKind::Conflict,
            Self::Order(e) => e.kind(),
        }
    }
}

impl From<crate::store::ReconcileFailure> for ReconcileError {
    fn from(e: crate::store::ReconcileFailure) -> Self {
        use crate::store::ReconcileFailure as F;
        match e {
            F::UnmatchedNotFound => Self::UnmatchedNotFound,
            F::AlreadyReconciled => Self::AlreadyReconciled,
            F::OrderNotFound => Self::Order(OrderError::NotFound),
            F::Refused(t) => Self::Order(OrderError::Refused(t)),
            F::Write(w) => Self::Order(w.into()),
            F::Db(d) => Self::Order(OrderError::Store(d)),
        }
    }
}

auth::refusals_from!(CreateOrderError, OrderError, ListError, ReconcileError);
