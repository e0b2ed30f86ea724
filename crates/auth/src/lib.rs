//! Who may do what: the roles and the permission matrix of 000 §5.1, as one declarative
//! table ([`MATRIX`]). Every use case names the [`Permission`] it needs; [`access`] says
//! whether a caller's roles grant it, and to which records.
//!
//! Reading of the spec: HEALTHCARE_ADMIN's "full system access" is system administration
//! (users, configuration, the audit trail) plus the cells the matrix gives it (patient
//! DELETE, claim CREATE); it is not clinical access to every record, which HIPAA's
//! minimum-necessary rule (§164.502(b)) would not allow.

mod matrix;

pub use matrix::MATRIX;

/// The roles of 000 §5.1, as they appear in the token's `realm_access.roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    HealthcareAdmin,
    Doctor,
    Nurse,
    LabTechnician,
    Pharmacist,
    InsuranceAgent,
    Patient,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::HealthcareAdmin,
        Role::Doctor,
        Role::Nurse,
        Role::LabTechnician,
        Role::Pharmacist,
        Role::InsuranceAgent,
        Role::Patient,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::HealthcareAdmin => "HEALTHCARE_ADMIN",
            Role::Doctor => "DOCTOR",
            Role::Nurse => "NURSE",
            Role::LabTechnician => "LAB_TECHNICIAN",
            Role::Pharmacist => "PHARMACIST",
            Role::InsuranceAgent => "INSURANCE_AGENT",
            Role::Patient => "PATIENT",
        }
    }

    /// The role a token names; `None` for roles this hub does not use (Keycloak adds its
    /// own, such as `offline_access`).
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }
}

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
