//! The permission matrix of 000 §5.1, one row per permission. Rows the spec leaves out
//! (medical records, contact details, audit, users) follow its role descriptions.

use crate::{Grant, Permission, Role};
use Grant::{Own, Supervisor, Tenant};
use Permission as P;
use Role::{Doctor, HealthcareAdmin, InsuranceAgent, LabTechnician, Nurse, Patient, Pharmacist};

pub const MATRIX: &[(Permission, &[(Role, Grant)])] = &[
    // Patient data — READ: [DOCTOR, NURSE, PATIENT(own)], WRITE: [DOCTOR, NURSE],
    // DELETE: [HEALTHCARE_ADMIN]; PATIENT: "update personal information".
    (
        P::PatientRead,
        &[(Doctor, Tenant), (Nurse, Tenant), (Patient, Own)],
    ),
    (P::PatientWrite, &[(Doctor, Tenant), (Nurse, Tenant)]),
    (
        P::PatientContactUpdate,
        &[(Doctor, Tenant), (Nurse, Tenant), (Patient, Own)],
    ),
    (P::PatientDelete, &[(HealthcareAdmin, Tenant)]),
    // DOCTOR: "create medical records"; NURSE: "limited medical record access";
    // PATIENT: "read own medical records".
    (
        P::MedicalRecordRead,
        &[(Doctor, Tenant), (Nurse, Tenant), (Patient, Own)],
    ),
    (P::MedicalRecordCreate, &[(Doctor, Tenant)]),
    // Lab orders.
    (P::LabOrderCreate, &[(Doctor, Tenant)]),
    (
        P::LabOrderRead,
        &[
            (Doctor, Tenant),
            (Nurse, Tenant),
            (LabTechnician, Tenant),
            (Patient, Own),
        ],
    ),
    (P::LabOrderUpdateStatus, &[(LabTechnician, Tenant)]),
    (
        P::LabOrderCancel,
        &[(Doctor, Tenant), (LabTechnician, Tenant)],
    ),
    // Lab results.
    (
        P::LabResultRead,
        &[
            (Doctor, Tenant),
            (Nurse, Tenant),
            (LabTechnician, Tenant),
            (Patient, Own),
        ],
    ),
    (P::LabResultWrite, &[(LabTechnician, Tenant)]),
    (P::LabResultVerify, &[(LabTechnician, Supervisor)]),
    // Prescriptions.
    (P::PrescriptionCreate, &[(Doctor, Tenant)]),
    (
        P::PrescriptionRead,
        &[(Doctor, Tenant), (Pharmacist, Tenant), (Patient, Own)],
    ),
    (P::PrescriptionFill, &[(Pharmacist, Tenant)]),
    // Insurance claims.
    (
        P::ClaimCreate,
        &[(HealthcareAdmin, Tenant), (InsuranceAgent, Tenant)],
    ),
    (
        P::ClaimRead,
        &[(Doctor, Tenant), (InsuranceAgent, Tenant), (Patient, Own)],
    ),
    (P::ClaimUpdate, &[(InsuranceAgent, Tenant)]),
    // HEALTHCARE_ADMIN: user and configuration management; the audit trail (issue 5).
    (P::AuditRead, &[(HealthcareAdmin, Tenant)]),
    (P::UserManage, &[(HealthcareAdmin, Tenant)]),
];

/// The cell for `(role, permission)`; `None`: denied.
pub(crate) fn grant(role: Role, permission: Permission) -> Option<Grant> {
    MATRIX
        .iter()
        .find(|(p, _)| *p == permission)
        .and_then(|(_, cells)| cells.iter().find(|(r, _)| *r == role))
        .map(|(_, g)| *g)
}
