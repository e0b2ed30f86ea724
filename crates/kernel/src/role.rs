//! The roles of 000 §5.1. What each may do is the permission matrix in the `auth` crate.

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

/// The realm role that makes a LAB_TECHNICIAN a supervisor (`LAB_TECHNICIAN(supervisor)` in
/// the matrix: may verify results).
pub const SUPERVISOR_ROLE: &str = "LAB_SUPERVISOR";
