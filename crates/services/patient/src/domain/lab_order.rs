//! A request for laboratory tests, recorded by the patient service and handed to the lab
//! service, which owns lab orders, through `patient.labs.requested.v1`.

use chrono::{DateTime, Utc};
use kernel::ids::{LabOrderId, PatientId};

pub use kernel::lab_request::{
    LabOrderInput, LabOrderRequest, MAX_TESTS, OrderedTest, PRIORITIES, TestInput,
};

#[derive(Debug, Clone, PartialEq)]
pub struct LabOrder {
    pub id: LabOrderId,
    pub patient_id: PatientId,
    pub request: LabOrderRequest,
    pub ordered_at: DateTime<Utc>,
}
