//! One error enum per operation (ARCHITECTURE.md §4). Codes are stable: clients match on
//! them. Display texts never contain PHI.

use crate::store::{ReadError, WriteError};
use kernel::operation_error;
use store::DbError;

/// Why an idempotency key could not be honoured.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error("this Idempotency-Key was used for a different request")]
    KeyReused,
    #[error(transparent)]
    Store(#[from] DbError),
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterPatientError {
    #[error("your roles do not allow this")]
    Forbidden,
    #[error("the audit trail cannot record this access; retry shortly")]
    AuditUnavailable,
    #[error("a patient with this MRN already exists")]
    DuplicateMrn,
    #[error("a patient with this SSN already exists")]
    DuplicateSsn,
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is being processed; retry shortly")]
    IdempotencyConflict,
    #[error("what the first request with this Idempotency-Key created no longer exists")]
    ReplayGone,
    #[error(transparent)]
    Store(#[from] DbError),
}

operation_error!(RegisterPatientError {
    Forbidden => ("auth.forbidden", Forbidden),
    AuditUnavailable => ("audit.unavailable", Unavailable),
    DuplicateMrn => ("patient.duplicate_mrn", Conflict),
    DuplicateSsn => ("patient.duplicate_ssn", Conflict),
    IdempotencyKeyReused => ("request.idempotency_key_reused", Invalid),
    IdempotencyConflict => ("request.idempotency_conflict", Conflict),
    ReplayGone => ("request.idempotent_resource_gone", NotFound),
    Store(_) => ("internal", Internal),
});

impl From<WriteError> for RegisterPatientError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::DuplicateMrn => Self::DuplicateMrn,
            WriteError::DuplicateSsn => Self::DuplicateSsn,
            WriteError::Db(e) => Self::Store(e),
            WriteError::IdempotencyKeyTaken => Self::IdempotencyConflict,
            // A registration neither needs an existing patient nor a version.
            WriteError::NotFound | WriteError::VersionConflict => {
                Self::Store(DbError::Invariant("registration conflicted unexpectedly"))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GetPatientError {
    #[error("your roles do not allow this")]
    Forbidden,
    #[error("the audit trail cannot record this access; retry shortly")]
    AuditUnavailable,
    #[error("patient not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] DbError),
}

operation_error!(GetPatientError {
    Forbidden => ("auth.forbidden", Forbidden),
    AuditUnavailable => ("audit.unavailable", Unavailable),
    NotFound => ("patient.not_found", NotFound),
    Store(_) => ("internal", Internal),
});

#[derive(Debug, thiserror::Error)]
pub enum UpdatePatientError {
    #[error("your roles do not allow this")]
    Forbidden,
    #[error("the audit trail cannot record this access; retry shortly")]
    AuditUnavailable,
    #[error("patient not found")]
    NotFound,
    #[error("the patient has changed since it was read; read it again and reapply the change")]
    VersionMismatch,
    #[error("the MRN of a patient cannot be changed")]
    MrnImmutable,
    #[error("a patient with this SSN already exists")]
    DuplicateSsn,
    #[error(transparent)]
    Store(#[from] DbError),
}

operation_error!(UpdatePatientError {
    Forbidden => ("auth.forbidden", Forbidden),
    AuditUnavailable => ("audit.unavailable", Unavailable),
    NotFound => ("patient.not_found", NotFound),
    VersionMismatch => ("patient.version_mismatch", PreconditionFailed),
    MrnImmutable => ("patient.mrn_immutable", Invalid),
    DuplicateSsn => ("patient.duplicate_ssn", Conflict),
    Store(_) => ("internal", Internal),
});

impl From<WriteError> for UpdatePatientError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NotFound => Self::NotFound,
            WriteError::VersionConflict => Self::VersionMismatch,
            WriteError::DuplicateSsn => Self::DuplicateSsn,
            WriteError::DuplicateMrn => Self::MrnImmutable,
            WriteError::Db(e) => Self::Store(e),
            WriteError::IdempotencyKeyTaken => {
                Self::Store(DbError::Invariant("no idempotency key is recorded here"))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeletePatientError {
    #[error("your roles do not allow this")]
    Forbidden,
    #[error("the audit trail cannot record this access; retry shortly")]
    AuditUnavailable,
    #[error("patient not found")]
    NotFound,
    #[error("the patient has changed since it was read; read it again")]
    VersionMismatch,
    #[error(transparent)]
    Store(#[from] DbError),
}

operation_error!(DeletePatientError {
    Forbidden => ("auth.forbidden", Forbidden),
    AuditUnavailable => ("audit.unavailable", Unavailable),
    NotFound => ("patient.not_found", NotFound),
    VersionMismatch => ("patient.version_mismatch", PreconditionFailed),
    Store(_) => ("internal", Internal),
});

impl From<WriteError> for DeletePatientError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NotFound => Self::NotFound,
            WriteError::VersionConflict => Self::VersionMismatch,
            WriteError::Db(e) => Self::Store(e),
            WriteError::IdempotencyKeyTaken => {
                Self::Store(DbError::Invariant("no idempotency key is recorded here"))
            }
            WriteError::DuplicateMrn | WriteError::DuplicateSsn => {
                Self::Store(DbError::Invariant("delete hit a unique constraint"))
            }
        }
    }
}

/// Writing something that belongs to a patient: a medical record, a lab order, a discharge.
#[derive(Debug, thiserror::Error)]
pub enum PatientSubresourceError {
    #[error("your roles do not allow this")]
    Forbidden,
    #[error("the audit trail cannot record this access; retry shortly")]
    AuditUnavailable,
    #[error("patient not found")]
    PatientNotFound,
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is being processed; retry shortly")]
    IdempotencyConflict,
    #[error("what the first request with this Idempotency-Key created no longer exists")]
    ReplayGone,
    #[error(transparent)]
    Store(#[from] DbError),
}

operation_error!(PatientSubresourceError {
    Forbidden => ("auth.forbidden", Forbidden),
    AuditUnavailable => ("audit.unavailable", Unavailable),
    PatientNotFound => ("patient.not_found", NotFound),
    IdempotencyKeyReused => ("request.idempotency_key_reused", Invalid),
    IdempotencyConflict => ("request.idempotency_conflict", Conflict),
    ReplayGone => ("request.idempotent_resource_gone", NotFound),
    Store(_) => ("internal", Internal),
});

impl From<WriteError> for PatientSubresourceError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NotFound => Self::PatientNotFound,
            WriteError::Db(e) => Self::Store(e),
            WriteError::IdempotencyKeyTaken => Self::IdempotencyConflict,
            WriteError::VersionConflict | WriteError::DuplicateMrn | WriteError::DuplicateSsn => {
                Self::Store(DbError::Invariant(
                    "a patient sub-resource write hit a patient constraint",
                ))
            }
        }
    }
}

/// Reading a list: search, medical records, timeline.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("your roles do not allow this")]
    Forbidden,
    #[error("the audit trail cannot record this access; retry shortly")]
    AuditUnavailable,
    #[error("patient not found")]
    PatientNotFound,
    #[error("the cursor is not one this API handed out")]
    BadCursor,
    #[error(transparent)]
    Store(#[from] DbError),
}

operation_error!(ListError {
    Forbidden => ("auth.forbidden", Forbidden),
    AuditUnavailable => ("audit.unavailable", Unavailable),
    PatientNotFound => ("patient.not_found", NotFound),
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

impl From<IdempotencyError> for RegisterPatientError {
    fn from(e: IdempotencyError) -> Self {
        match e {
            IdempotencyError::KeyReused => Self::IdempotencyKeyReused,
            IdempotencyError::Store(e) => Self::Store(e),
        }
    }
}

impl From<IdempotencyError> for PatientSubresourceError {
    fn from(e: IdempotencyError) -> Self {
        match e {
            IdempotencyError::KeyReused => Self::IdempotencyKeyReused,
            IdempotencyError::Store(e) => Self::Store(e),
        }
    }
}

auth::refusals_from!(
    RegisterPatientError,
    GetPatientError,
    UpdatePatientError,
    DeletePatientError,
    PatientSubresourceError,
    ListError
);
