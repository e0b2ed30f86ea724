//! Insurance events (000 §2.1.3). Amounts are integer cents, so no consumer rounds money.

use crate::{EventPayload, Topic};
use chrono::{DateTime, NaiveDate, Utc};
use kernel::ids::PatientId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A payer answered an eligibility inquiry (X12 270/271).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsuranceEligibilityVerifiedV1 {
    pub patient_id: PatientId,
    pub policy_id: Uuid,
    pub payer_id: String,
    pub eligible: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copay_cents: Option<i64>,
    pub verified_at: DateTime<Utc>,
}

impl EventPayload for InsuranceEligibilityVerifiedV1 {
    const EVENT_TYPE: &'static str = "insurance.eligibility.verified.v1";
    const TOPIC: Topic = Topic::InsuranceEvents;
}

/// A claim was adjudicated (X12 835 or the payer's API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsuranceClaimProcessedV1 {
    pub claim_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_number: Option<String>,
    pub patient_id: PatientId,
    pub policy_id: Uuid,
    /// `PROCESSING`, `PAID` or `DENIED` (000 §4.1, insurance_claims).
    pub status: String,
    pub billed_cents: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_cents: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid_cents: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_responsibility_cents: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial_reason: Option<String>,
    pub processed_at: DateTime<Utc>,
}

impl EventPayload for InsuranceClaimProcessedV1 {
    const EVENT_TYPE: &'static str = "insurance.claim.processed.v1";
    const TOPIC: Topic = Topic::InsuranceEvents;
}

/// A pre-authorization was approved; what waited for it (a lab order, a prescription)
/// may go ahead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsurancePreauthApprovedV1 {
    pub preauth_id: Uuid,
    pub patient_id: PatientId,
    pub policy_id: Uuid,
    pub service_type: String,
    pub service_code: String,
    pub approval_number: String,
    /// The lab order or prescription this authorizes, when it was requested for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units_approved: Option<u32>,
    pub decided_at: DateTime<Utc>,
}

impl EventPayload for InsurancePreauthApprovedV1 {
    const EVENT_TYPE: &'static str = "insurance.preauth.approved.v1";
    const TOPIC: Topic = Topic::InsuranceEvents;
}

/// A pre-authorization was denied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsurancePreauthDeniedV1 {
    pub preauth_id: Uuid,
    pub patient_id: PatientId,
    pub policy_id: Uuid,
    pub service_type: String,
    pub service_code: String,
    /// The lab order or prescription it was requested for, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_id: Option<Uuid>,
    pub denial_reason: String,
    pub decided_at: DateTime<Utc>,
}

impl EventPayload for InsurancePreauthDeniedV1 {
    const EVENT_TYPE: &'static str = "insurance.preauth.denied.v1";
    const TOPIC: Topic = Topic::InsuranceEvents;
}
