//! Who may do what: the roles and the permission matrix of 000 §5.1, as one declarative
//! table ([`MATRIX`]). Every use case names the [`Permission`] it needs; [`access`] says
//! whether a caller's roles grant it, and to which records.
//!
//! It also holds what proves who the caller is: access-token validation against an OIDC
//! issuer's keys ([`token`]), and the pieces of the built-in issuer (signing [`keys`],
//! [`password`] hashing), and the keys that seal fields at rest ([`sealing`]).
//!
//! Reading of the spec: HEALTHCARE_ADMIN's "full system access" is system administration
//! (users, configuration, the audit trail) plus the cells the matrix gives it (patient
//! DELETE, claim CREATE); it is not clinical access to every record, which HIPAA's
//! minimum-necessary rule (§164.502(b)) would not allow.

pub mod keys;
mod matrix;
pub mod password;
pub mod random;
pub mod sealing;
mod secret_file;
pub mod token;

pub use kernel::Role;
pub use matrix::MATRIX;

/// What a use case needs. The rows of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    PatientRead,
    PatientWrite,
    /// A patient's own contact details (phone, email, addresses).
    PatientContactUpdate,
    PatientDelete,
    MedicalRecordRead,
    MedicalRecordCreate,
    LabOrderCreate,
    LabOrderRead,
    LabOrderUpdateStatus,
    LabOrderCancel,
    LabResultRead,
    LabResultWrite,
    LabResultVerify,
    PrescriptionCreate,
    PrescriptionRead,
    PrescriptionFill,
    ClaimCreate,
    ClaimRead,
    ClaimUpdate,
    AuditRead,
    UserManage,
}

impl Permission {
    pub const ALL: [Permission; 21] = [
        Permission::PatientRead,
        Permission::PatientWrite,
        Permission::PatientContactUpdate,
        Permission::PatientDelete,
        Permission::MedicalRecordRead,
        Permission::MedicalRecordCreate,
        Permission::LabOrderCreate,
        Permission::LabOrderRead,
        Permission::LabOrderUpdateStatus,
        Permission::LabOrderCancel,
        Permission::LabResultRead,
        Permission::LabResultWrite,
        Permission::LabResultVerify,
        Permission::PrescriptionCreate,
        Permission::PrescriptionRead,
        Permission::PrescriptionFill,
        Permission::ClaimCreate,
        Permission::ClaimRead,
        Permission::ClaimUpdate,
        Permission::AuditRead,
        Permission::UserManage,
    ];
}

/// How far a cell of the matrix reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grant {
    /// Only records of the caller's own patient (`PATIENT(own)`).
    Own,
    /// Only callers marked as supervisors (`LAB_TECHNICIAN(supervisor)`).
    Supervisor,
    /// Every record of the caller's tenant.
    Tenant,
}

/// What a caller may do for one permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Every record of the tenant.
    Tenant,
    /// Only the records of this patient (the caller's own).
    OwnPatient,
    Denied,
}

/// The caller's facts that matter for access.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub roles: &'a [Role],
    /// The patient a PATIENT user is (the token's `patient_id` claim).
    pub patient: Option<uuid::Uuid>,
    pub supervisor: bool,
}

/// The widest access any of the caller's roles grants for `permission`.
pub fn access(caller: &Caller<'_>, permission: Permission) -> Access {
    let mut best = Access::Denied;
    for role in caller.roles {
        let Some(grant) = matrix::grant(*role, permission) else {
            continue;
        };
        match grant {
            Grant::Tenant => return Access::Tenant,
            Grant::Supervisor if caller.supervisor => return Access::Tenant,
            Grant::Supervisor => {}
            Grant::Own if caller.patient.is_some() => best = Access::OwnPatient,
            Grant::Own => {}
        }
    }
    best
}

/// What a use case may touch once its permission is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every record of the caller's tenant.
    Tenant,
    /// Only the records of this patient: a PATIENT user's own.
    Patient(uuid::Uuid),
}

impl Scope {
    /// Whether a record of `patient` is within reach. A record outside it is answered as
    /// if it did not exist (404), so its existence is not revealed.
    pub fn admits(&self, patient: uuid::Uuid) -> bool {
        match self {
            Scope::Tenant => true,
            Scope::Patient(own) => *own == patient,
        }
    }
}

/// None of the caller's roles grants the permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forbidden(pub Permission);

/// The scope in which `principal` holds `permission`, or why not. Decided from the token
/// alone, before any record is read, so a refusal says nothing about what exists.
pub fn authorize(
    principal: &kernel::Principal,
    permission: Permission,
) -> Result<Scope, Forbidden> {
    let caller = Caller {
        roles: &principal.roles,
        patient: principal.patient,
        supervisor: principal.supervisor,
    };
    match (access(&caller, permission), principal.patient) {
        (Access::Tenant, _) => Ok(Scope::Tenant),
        (Access::OwnPatient, Some(own)) => Ok(Scope::Patient(own)),
        _ => Err(Forbidden(permission)),
    }
}

/// `From` the two refusals every operation error shares: the caller's roles lack the
/// permission (`Forbidden`), or the audit trail cannot record the access
/// (`AuditUnavailable`). Each listed enum needs both variants.
#[macro_export]
macro_rules! refusals_from {
    ($($ty:ident),+ $(,)?) => {
        $(impl From<$crate::Forbidden> for $ty {
            fn from(_: $crate::Forbidden) -> Self {
                Self::Forbidden
            }
        }
        impl From<::kernel::audit::AuditUnavailable> for $ty {
            fn from(_: ::kernel::audit::AuditUnavailable) -> Self {
                Self::AuditUnavailable
            }
        })+
    };
}
