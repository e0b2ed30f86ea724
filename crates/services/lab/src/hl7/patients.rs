//! ADT^A01, A04 and A08: patient demographics from a hospital system. The patient service
//! owns patients, so the lab only checks that the message says enough to register or
//! update one (identifier, family and given name, date of birth), and hands it on as
//! `lab.adt.received.v1` in the same transaction that stores the message: it reaches the
//! patient service through the backbone, once.

use super::Applied;
use events::lab::{AdtAddress, LabAdtReceivedV1};
use events::{EventEnvelope, EventMeta};
use hl7v2::Hl7Error;
use hl7v2::messages::{PatientInfo, PatientMessage};
use kernel::ids::PatientId;
use uuid::Uuid;

pub(super) fn apply(
    meta: &EventMeta,
    message_id: Uuid,
    sender: &str,
    m: PatientMessage,
) -> Result<Applied, Hl7Error> {
    let event = reported(
        message_id,
        sender,
        &m.header.trigger_event,
        &m.patient,
        None,
    )?;
    let key = format!("adt:{}", meta.tenant);
    Ok(Applied {
        status: "APPLIED",
        events: vec![EventEnvelope::new(meta, key, &event)],
        unmatched: Vec::new(),
        changed: Vec::new(),
    })
}

/// The demographics of a PID segment, as the patient service takes them: `Err` names what
/// is missing (identifier, family or given name, date of birth).
pub(super) fn reported(
    message_id: Uuid,
    sender: &str,
    trigger: &str,
    p: &PatientInfo,
    patient_id: Option<PatientId>,
) -> Result<LabAdtReceivedV1, Hl7Error> {
    // The medical record number: the identifier typed MR, else the first.
    let mrn = p
        .identifiers
        .iter()
        .find(|i| i.kind.as_deref() == Some("MR"))
        .or_else(|| p.identifiers.first())
        .map(|i| i.id.clone())
        .ok_or_else(|| Hl7Error::missing("PID", 1, 3, "patient identifier"))?;
    let family = p
        .name
        .family
        .clone()
        .ok_or_else(|| Hl7Error::missing("PID", 1, 5, "family name"))?;
    let given = p.name.given.clone().ok_or_else(|| {
        Hl7Error::missing("PID", 1, 5, "given name").at(hl7v2::Location::component("PID", 1, 5, 2))
    })?;
    let birth_date = p
        .birth_date
        .ok_or_else(|| Hl7Error::missing("PID", 1, 7, "date of birth"))?;
    let address = p.address.clone().and_then(|a| {
        Some(AdtAddress {
            street: a.street?,
            other: a.other,
            city: a.city?,
            state: a.state?,
            zip: a.zip?,
            country: a.country,
        })
    });
    Ok(LabAdtReceivedV1 {
        message_id,
        trigger: trigger.to_owned(),
        sender: sender.to_owned(),
        patient_id,
        mrn,
        family_name: family,
        given_name: given,
        middle_name: p.name.middle.clone(),
        birth_date,
        sex: p.sex.clone(),
        phone: p.phone.clone(),
        address,
    })
}
