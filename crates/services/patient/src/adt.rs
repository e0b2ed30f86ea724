//! ADT demographics handed on by the lab service's HL7 interface (`lab.adt.received.v1`):
//! a patient unknown under the MRN is registered with it; a known one is updated with what
//! the message says, keeping what it does not say (SSN, e-mail, insurance, and phone and
//! address when absent). Applied through the same use cases as the API, as the HL7 sender
//! (audited as `hl7:<sender>`), and exactly once: a registration carries the message id
//! as its idempotency key, and an update that changes nothing is not made.

use crate::app::{Context, PatientService};
use crate::domain::address::AddressInput;
use crate::domain::patient::DemographicsInput;
use crate::domain::{Demographics, Mrn};
use crate::errors::{RegisterPatientError, UpdatePatientError};
use crate::store::{PatientStore, SearchCriteria};
use events::lab::LabAdtReceivedV1;
use kernel::audit::Origin;
use kernel::idempotency::IdempotencyKey;
use kernel::ids::CorrelationId;
use kernel::paging::PageRequest;
use kernel::role::Role;
use kernel::{Principal, TenantId};

#[derive(Debug, thiserror::Error)]
pub enum AdtError {
    /// The message cannot become a patient (a rule of ours it breaks): not worth retrying.
    #[error("the ADT demographics are not acceptable: {0}")]
    Invalid(String),
    #[error("the ADT demographics could not be applied: {0}")]
    Failed(String),
}

impl<S: PatientStore> PatientService<S> {
    pub async fn apply_adt(
        &self,
        tenant: TenantId,
        correlation_id: CorrelationId,
        e: &LabAdtReceivedV1,
    ) -> Result<(), AdtError> {
        let ctx = Context {
            principal: Principal {
                subject: format!("hl7:{}", e.sender).chars().take(100).collect(),
                tenant,
                roles: vec![Role::Nurse],
                patient: None,
                provider: None,
                supervisor: false,
            },
            correlation_id,
            origin: Origin::default(),
        };
        let reported = self.reported(e)?;
        let Some(mrn) = reported.mrn.clone() else {
            return Err(AdtError::Invalid("no MRN".to_owned()));
        };
        let criteria = SearchCriteria {
            mrn: Some(mrn),
            ..Default::default()
        };
        let page = PageRequest {
            limit: 1,
            cursor: None,
        };
        let known = self
            .store()
            .search(&ctx.principal.tenant, &criteria, &page)
            .await
            .map_err(|e| AdtError::Failed(e.to_string()))?
            .items
            .into_iter()
            .next();
        let Some(known) = known else {
            let key = IdempotencyKey {
                key: format!("adt-{}", e.message_id),
                request_digest: format!("{:0>64}", e.message_id.simple()),
            };
            let id = e.patient_id.unwrap_or_default();
            return match self
                .register_as(&ctx, id, reported.clone(), Some(&key))
                .await
            {
                Ok(_) => Ok(()),
                // Registered meanwhile under this MRN: then it is an update after all.
                Err(RegisterPatientError::DuplicateMrn) => Err(AdtError::Failed(
                    "registered concurrently; retried as an update".to_owned(),
                )),
                Err(other) => Err(AdtError::Failed(other.to_string())),
            };
        };
        let current = self
            .store()
            .patient(&ctx.principal.tenant, known.id)
            .await
            .map_err(|e| AdtError::Failed(e.to_string()))?
            .ok_or_else(|| AdtError::Failed("the patient vanished".to_owned()))?;
        let merged = Demographics {
            mrn: Some(current.mrn.clone()),
            ssn: current.ssn.clone(),
            name: reported.name,
            date_of_birth: reported.date_of_birth,
            gender: reported.gender.or(current.gender),
            phone: reported.phone.or(current.phone.clone()),
            email: current.email.clone(),
            addresses: if reported.addresses.is_empty() {
                current.addresses.clone()
            } else {
                reported.addresses
            },
            insurance: current.insurance.clone(),
        };
        let unchanged = merged.name == current.name
            && merged.date_of_birth == current.date_of_birth
            && merged.gender == current.gender
            && merged.phone == current.phone
            && merged.addresses == current.addresses;
        if unchanged {
            return Ok(());
        }
        match self
            .update(&ctx, current.id, Some(current.version), merged)
            .await
        {
            Ok(_) => Ok(()),
            Err(UpdatePatientError::VersionMismatch) => {
                Err(AdtError::Failed("changed concurrently; retried".to_owned()))
            }
            Err(other) => Err(AdtError::Invalid(other.to_string())),
        }
    }

    /// The demographics the message reports: name and date of birth must be acceptable;
    /// a phone, sex or address that is not is left out rather than losing the patient.
    fn reported(&self, e: &LabAdtReceivedV1) -> Result<Demographics, AdtError> {
        let dob = e.birth_date.format("%Y-%m-%d").to_string();
        let gender = match e.sex.as_deref() {
            Some("F") => Some("FEMALE"),
            Some("M") => Some("MALE"),
            Some("O" | "A" | "N") => Some("OTHER"),
            Some("U") => Some("UNKNOWN"),
            _ => None,
        };
        let address = e.address.as_ref().map(|a| AddressInput {
            address_type: Some("HOME"),
            street_line1: Some(&a.street),
            street_line2: a.other.as_deref(),
            city: Some(&a.city),
            state: Some(&a.state),
            zip_code: Some(&a.zip),
            country: a.country.as_deref(),
            is_primary: Some(true),
        });
        let core = || DemographicsInput {
            mrn: Some(&e.mrn),
            first_name: Some(&e.given_name),
            middle_name: e.middle_name.as_deref(),
            last_name: Some(&e.family_name),
            date_of_birth: Some(&dob),
            ..Default::default()
        };
        let full = DemographicsInput {
            gender,
            phone: e.phone.as_deref(),
            addresses: address.into_iter().collect(),
            ..core()
        };
        if let Ok(d) = Demographics::parse(&full, self.today()) {
            return Ok(d);
        }
        Mrn::parse(&e.mrn)
            .map_err(|_| AdtError::Invalid("the MRN is not one we take".to_owned()))?;
        Demographics::parse(&core(), self.today()).map_err(|errors| {
            AdtError::Invalid(
                errors
                    .iter()
                    .map(|f| f.field.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
    }
}
