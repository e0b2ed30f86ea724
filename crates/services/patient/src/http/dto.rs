//! The JSON shapes of the patient API (camelCase forms of 000 §4.1's columns). Inputs are
//! loose on purpose (everything optional, strings as strings) so that the domain parsers
//! can report every problem at once; unknown fields are rejected.

use crate::app::Discharged;
use crate::domain::address::AddressInput;
use crate::domain::insurance::InsuranceInput;
use crate::domain::lab_order::{LabOrder, LabOrderInput, TestInput};
use crate::domain::medical_record::{MedicalRecord, MedicalRecordInput};
use crate::domain::patient::DemographicsInput;
use crate::domain::timeline::TimelineEntry;
use crate::domain::{Address, Insurance, Patient};
use crate::store::PatientSummary;
use chrono::{DateTime, NaiveDate, Utc};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatientIn {
    // Read-only: ignored, except `id` and `mrn`, which must match (see http.rs).
    pub id: Option<String>,
    #[serde(default, rename = "version")]
    _version: Option<IgnoredAny>,
    #[serde(default, rename = "createdAt")]
    _created_at: Option<IgnoredAny>,
    #[serde(default, rename = "updatedAt")]
    _updated_at: Option<IgnoredAny>,
    #[serde(default, rename = "createdBy")]
    _created_by: Option<IgnoredAny>,
    #[serde(default, rename = "updatedBy")]
    _updated_by: Option<IgnoredAny>,

    pub mrn: Option<String>,
    pub ssn: Option<String>,
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub date_of_birth: Option<String>,
    pub gender: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    #[serde(default)]
    pub addresses: Option<Vec<AddressIn>>,
    #[serde(default)]
    pub insurance: Option<Vec<InsuranceIn>>,
}

impl PatientIn {
    pub fn demographics(&self) -> DemographicsInput<'_> {
        DemographicsInput {
            mrn: self.mrn.as_deref(),
            ssn: self.ssn.as_deref(),
            first_name: self.first_name.as_deref(),
            middle_name: self.middle_name.as_deref(),
            last_name: self.last_name.as_deref(),
            date_of_birth: self.date_of_birth.as_deref(),
            gender: self.gender.as_deref(),
            phone: self.phone.as_deref(),
            email: self.email.as_deref(),
            addresses: self
                .addresses
                .iter()
                .flatten()
                .map(AddressIn::input)
                .collect(),
            insurance: self
                .insurance
                .iter()
                .flatten()
                .map(InsuranceIn::input)
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddressIn {
    address_type: Option<String>,
    street_line1: Option<String>,
    street_line2: Option<String>,
    city: Option<String>,
    state: Option<String>,
    zip_code: Option<String>,
    country: Option<String>,
    is_primary: Option<bool>,
}

impl AddressIn {
    fn input(&self) -> AddressInput<'_> {
        AddressInput {
            address_type: self.address_type.as_deref(),
            street_line1: self.street_line1.as_deref(),
            street_line2: self.street_line2.as_deref(),
            city: self.city.as_deref(),
            state: self.state.as_deref(),
            zip_code: self.zip_code.as_deref(),
            country: self.country.as_deref(),
            is_primary: self.is_primary,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InsuranceIn {
    policy_number: Option<String>,
    payer_id: Option<String>,
    payer_name: Option<String>,
    group_number: Option<String>,
    policy_holder_name: Option<String>,
    relationship_to_insured: Option<String>,
    effective_date: Option<String>,
    termination_date: Option<String>,
    is_primary: Option<bool>,
}

impl InsuranceIn {
    fn input(&self) -> InsuranceInput<'_> {
        InsuranceInput {
            policy_number: self.policy_number.as_deref(),
            payer_id: self.payer_id.as_deref(),
            payer_name: self.payer_name.as_deref(),
            group_number: self.group_number.as_deref(),
            policy_holder_name: self.policy_holder_name.as_deref(),
            relationship_to_insured: self.relationship_to_insured.as_deref(),
            effective_date: self.effective_date.as_deref(),
            termination_date: self.termination_date.as_deref(),
            is_primary: self.is_primary,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PatientOut<'a> {
    id: String,
    mrn: &'a str,
    ssn: Option<&'a str>,
    first_name: &'a str,
    middle_name: Option<&'a str>,
    last_name: &'a str,
    date_of_birth: NaiveDate,
    gender: Option<&'static str>,
    phone: Option<&'a str>,
    email: Option<&'a str>,
    addresses: Vec<AddressOut<'a>>,
    insurance: Vec<InsuranceOut<'a>>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    created_by: &'a str,
    updated_by: &'a str,
}

impl<'a> From<&'a Patient> for PatientOut<'a> {
    fn from(p: &'a Patient) -> Self {
        Self {
            id: p.id.to_string(),
            mrn: p.mrn.as_str(),
            ssn: p.ssn.as_ref().map(|s| s.expose()),
            first_name: p.name.first(),
            middle_name: p.name.middle(),
            last_name: p.name.last(),
            date_of_birth: p.date_of_birth.date(),
            gender: p.gender.map(|g| g.as_str()),
            phone: p.phone.as_ref().map(|x| x.expose()),
            email: p.email.as_ref().map(|x| x.expose()),
            addresses: p.addresses.iter().map(AddressOut::from).collect(),
            insurance: p.insurance.iter().map(InsuranceOut::from).collect(),
            version: p.version,
            created_at: p.created_at,
            updated_at: p.updated_at,
            created_by: &p.created_by,
            updated_by: &p.updated_by,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AddressOut<'a> {
    address_type: &'static str,
    street_line1: &'a str,
    street_line2: Option<&'a str>,
    city: &'a str,
    state: &'a str,
    zip_code: &'a str,
    country: &'a str,
    is_primary: bool,
}

impl<'a> From<&'a Address> for AddressOut<'a> {
    fn from(a: &'a Address) -> Self {
        Self {
            address_type: a.address_type(),
            street_line1: a.street_line1(),
            street_line2: a.street_line2(),
            city: a.city(),
            state: a.state(),
            zip_code: a.zip_code(),
            country: a.country(),
            is_primary: a.is_primary(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InsuranceOut<'a> {
    policy_number: &'a str,
    payer_id: &'a str,
    payer_name: &'a str,
    group_number: Option<&'a str>,
    policy_holder_name: Option<&'a str>,
    relationship_to_insured: Option<&'static str>,
    effective_date: NaiveDate,
    termination_date: Option<NaiveDate>,
    is_primary: bool,
}

impl<'a> From<&'a Insurance> for InsuranceOut<'a> {
    fn from(i: &'a Insurance) -> Self {
        Self {
            policy_number: i.policy_number(),
            payer_id: i.payer_id(),
            payer_name: i.payer_name(),
            group_number: i.group_number(),
            policy_holder_name: i.policy_holder_name(),
            relationship_to_insured: i.relationship_to_insured(),
            effective_date: i.effective_date(),
            termination_date: i.termination_date(),
            is_primary: i.is_primary(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PatientSummaryOut {
    id: String,
    mrn: String,
    first_name: String,
    middle_name: Option<String>,
    last_name: String,
    date_of_birth: NaiveDate,
    gender: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<PatientSummary> for PatientSummaryOut {
    fn from(p: PatientSummary) -> Self {
        Self {
            id: p.id.to_string(),
            mrn: p.mrn,
            first_name: p.first_name,
            middle_name: p.middle_name,
            last_name: p.last_name,
            date_of_birth: p.date_of_birth,
            gender: p.gender,
            phone: p.phone,
            email: p.email,
            version: p.version,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MedicalRecordIn {
    record_type: Option<String>,
    record_date: Option<String>,
    provider_id: Option<String>,
    #[serde(default)]
    diagnosis_codes: Vec<String>,
    #[serde(default)]
    procedure_codes: Vec<String>,
    notes: Option<String>,
}

impl MedicalRecordIn {
    pub fn input(&self) -> MedicalRecordInput<'_> {
        MedicalRecordInput {
            record_type: self.record_type.as_deref(),
            record_date: self.record_date.as_deref(),
            provider_id: self.provider_id.as_deref(),
            diagnosis_codes: &self.diagnosis_codes,
            procedure_codes: &self.procedure_codes,
            notes: self.notes.as_deref(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MedicalRecordOut {
    id: String,
    patient_id: String,
    record_type: &'static str,
    record_date: DateTime<Utc>,
    provider_id: String,
    diagnosis_codes: Vec<String>,
    procedure_codes: Vec<String>,
    notes: Option<String>,
    created_at: DateTime<Utc>,
    created_by: String,
}

impl From<MedicalRecord> for MedicalRecordOut {
    fn from(r: MedicalRecord) -> Self {
        Self {
            id: r.id.to_string(),
            patient_id: r.patient_id.to_string(),
            record_type: r.record_type,
            record_date: r.record_date,
            provider_id: r.provider_id,
            diagnosis_codes: r.diagnosis_codes,
            procedure_codes: r.procedure_codes,
            notes: r.notes.map(|n| n.into_inner()),
            created_at: r.created_at,
            created_by: r.created_by,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntryOut {
    id: String,
    occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    event: crate::domain::timeline::TimelineEvent,
}

impl From<TimelineEntry> for TimelineEntryOut {
    fn from(e: TimelineEntry) -> Self {
        Self {
            id: e.id.to_string(),
            occurred_at: e.occurred_at,
            event: e.event,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabOrderIn {
    #[serde(default)]
    tests: Vec<TestIn>,
    priority: Option<String>,
    ordering_provider_id: Option<String>,
    ordering_provider_name: Option<String>,
    #[serde(default)]
    diagnosis_codes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TestIn {
    test_code: Option<String>,
    test_name: Option<String>,
    loinc_code: Option<String>,
}

impl LabOrderIn {
    pub fn input(&self) -> LabOrderInput<'_> {
        LabOrderInput {
            tests: self
                .tests
                .iter()
                .map(|t| TestInput {
                    test_code: t.test_code.as_deref(),
                    test_name: t.test_name.as_deref(),
                    loinc_code: t.loinc_code.as_deref(),
                })
                .collect(),
            priority: self.priority.as_deref(),
            ordering_provider_id: self.ordering_provider_id.as_deref(),
            ordering_provider_name: self.ordering_provider_name.as_deref(),
            diagnosis_codes: &self.diagnosis_codes,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabOrderOut {
    order_id: String,
    patient_id: String,
    status: &'static str,
    priority: &'static str,
    tests: Vec<TestOut>,
    ordering_provider_id: String,
    ordering_provider_name: String,
    diagnosis_codes: Vec<String>,
    ordered_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TestOut {
    test_code: String,
    test_name: String,
    loinc_code: Option<String>,
}

impl From<LabOrder> for LabOrderOut {
    fn from(o: LabOrder) -> Self {
        Self {
            order_id: o.id.to_string(),
            patient_id: o.patient_id.to_string(),
            // Recorded here and handed to the lab service by `patient.labs.requested.v1`.
            status: "REQUESTED",
            priority: o.request.priority,
            tests: o
                .request
                .tests
                .into_iter()
                .map(|t| TestOut {
                    test_code: t.test_code,
                    test_name: t.test_name,
                    loinc_code: t.loinc_code,
                })
                .collect(),
            ordering_provider_id: o.request.ordering_provider_id,
            ordering_provider_name: o.request.ordering_provider_name,
            diagnosis_codes: o.request.diagnosis_codes,
            ordered_at: o.ordered_at,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DischargeIn {
    pub discharged_at: Option<String>,
    pub disposition: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DischargedOut {
    patient_id: String,
    discharged_at: DateTime<Utc>,
    disposition: Option<String>,
}

impl From<Discharged> for DischargedOut {
    fn from(d: Discharged) -> Self {
        Self {
            patient_id: d.patient_id.to_string(),
            discharged_at: d.discharged_at,
            disposition: d.disposition,
        }
    }
}
