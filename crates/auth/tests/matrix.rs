//! Every role × permission cell, allowed and denied, against the matrix of 000 §5.1 written
//! out again here by hand: a change to the table that the spec does not make fails.

use auth::{Access, Caller, Permission, Role, access};
use std::collections::BTreeMap;

/// `T`: the whole tenant; `O`: own records only; `S`: supervisors only; `-`: denied.
/// Columns: ADMIN DOCTOR NURSE LAB_TECH PHARMACIST INSURANCE PATIENT.
const EXPECTED: &[(Permission, &str)] = &[
    (Permission::PatientRead, "-TT---O"),
    (Permission::PatientWrite, "-TT----"),
    (Permission::PatientContactUpdate, "-TT---O"),
    (Permission::PatientDelete, "T------"),
    (Permission::MedicalRecordRead, "-TT---O"),
    (Permission::MedicalRecordCreate, "-T-----"),
    (Permission::LabOrderCreate, "-T-----"),
    (Permission::LabOrderRead, "-TTT--O"),
    (Permission::LabOrderUpdateStatus, "---T---"),
    (Permission::LabOrderCancel, "-T-T---"),
    (Permission::LabResultRead, "-TTT--O"),
    (Permission::LabResultWrite, "---T---"),
    (Permission::LabResultVerify, "---S---"),
    (Permission::PrescriptionCreate, "-T-----"),
    (Permission::PrescriptionRead, "-T--T-O"),
    (Permission::PrescriptionFill, "----T--"),
    (Permission::ClaimCreate, "T----T-"),
    (Permission::ClaimRead, "-T---TO"),
    (Permission::ClaimUpdate, "-----T-"),
    (Permission::AuditRead, "T------"),
    (Permission::UserManage, "T------"),
];

fn caller(role: Role, supervisor: bool) -> (Vec<Role>, Option<uuid::Uuid>, bool) {
    let patient = (role == Role::Patient).then(uuid::Uuid::now_v7);
    (vec![role], patient, supervisor)
}

fn access_of(role: Role, permission: Permission, supervisor: bool) -> Access {
    let (roles, patient, supervisor) = caller(role, supervisor);
    access(
        &Caller {
            roles: &roles,
            patient,
            supervisor,
        },
        permission,
    )
}

#[test]
fn every_role_and_permission_is_allowed_or_denied_as_the_spec_says() {
    let expected: BTreeMap<Permission, &str> = EXPECTED.iter().copied().collect();
    assert_eq!(
        expected.len(),
        Permission::ALL.len(),
        "every permission has a row"
    );
    for permission in Permission::ALL {
        let row = expected[&permission];
        for (role, cell) in Role::ALL.into_iter().zip(row.chars()) {
            let plain = access_of(role, permission, false);
            let supervising = access_of(role, permission, true);
            let (want_plain, want_supervising) = match cell {
                'T' => (Access::Tenant, Access::Tenant),
                'O' => (Access::OwnPatient, Access::OwnPatient),
                'S' => (Access::Denied, Access::Tenant),
                _ => (Access::Denied, Access::Denied),
            };
            assert_eq!(
                (plain, supervising),
                (want_plain, want_supervising),
                "{} {permission:?}",
                role.name()
            );
        }
    }
}

#[test]
fn a_patient_user_without_a_patient_claim_reaches_nothing_of_their_own() {
    let roles = [Role::Patient];
    let caller = Caller {
        roles: &roles,
        patient: None,
        supervisor: false,
    };
    assert_eq!(access(&caller, Permission::PatientRead), Access::Denied);
}

#[test]
fn several_roles_give_the_widest_access() {
    let roles = [Role::Patient, Role::Nurse];
    let caller = Caller {
        roles: &roles,
        patient: Some(uuid::Uuid::now_v7()),
        supervisor: false,
    };
    assert_eq!(access(&caller, Permission::PatientRead), Access::Tenant);
    assert_eq!(
        access(&caller, Permission::PrescriptionRead),
        Access::OwnPatient
    );
}

#[test]
fn roles_are_read_by_their_token_names() {
    for role in Role::ALL {
        assert_eq!(Role::parse(role.name()), Some(role));
    }
    assert_eq!(Role::parse("offline_access"), None);
    assert_eq!(Role::parse("doctor"), None, "names are exact");
}
