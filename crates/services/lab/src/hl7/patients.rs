//! ADT^A01, A04 and A08: patient demographics from a hospital system. The patient service
//! owns patients, so the lab only checks that the message says enough to register or
//! update one (identifier, family and given name, date of birth) by the patient service's
//! own rules (`kernel::person`), and hands it on as `lab.adt.received.v1` in the same
//! transaction that stores the message: it reaches the patient service through the
//! backbone, once. A message those rules refuse is answered AE naming the field; accepted,
//! it would reach the patient service only to be dead-lettered there.

use super::Applied;
use chrono::NaiveDate;
use events::lab::{AdtAddress, LabAdtReceivedV1};
use events::{EventEnvelope, EventMeta};
use hl7v2::messages::{PatientInfo, PatientMessage};
use hl7v2::{ErrorCode, Hl7Error, Location};
use kernel::FieldError;
use kernel::ids::PatientId;
use kernel::person::{DateOfBirth, Mrn, PersonName};
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
        meta.occurred_at.date_naive(),
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
/// is missing or not acceptable (identifier, family or given name, date of birth as of
/// `today`). The error never quotes the value: it is PHI.
pub(super) fn reported(
    message_id: Uuid,
    sender: &str,
    trigger: &str,
    p: &PatientInfo,
    patient_id: Option<PatientId>,
    today: NaiveDate,
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
        Hl7Error::missing("PID", 1, 5, "given name").at(Location::component("PID", 1, 5, 2))
    })?;
    let birth_date = p
        .birth_date
        .ok_or_else(|| Hl7Error::missing("PID", 1, 7, "date of birth"))?;
    acceptable(
        &mrn,
        &family,
        &given,
        p.name.middle.as_deref(),
        birth_date,
        today,
    )?;
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

/// Whether the patient service takes these: the first rule broken, at its PID component.
fn acceptable(
    mrn: &str,
    family: &str,
    given: &str,
    middle: Option<&str>,
    birth_date: NaiveDate,
    today: NaiveDate,
) -> Result<(), Hl7Error> {
    let refused = |e: FieldError, at: Location, what: &str| {
        Hl7Error::new(ErrorCode::DataType, format!("{what} {}", e.message)).at(at)
    };
    let pid = |field, component| Location::component("PID", 1, field, component);
    Mrn::parse(mrn).map_err(|e| refused(e, pid(3, 1), "the patient identifier (MRN)"))?;
    if let Err(errors) = PersonName::parse(Some(given), middle, Some(family))
        && let Some(e) = errors.into_iter().next()
    {
        let (component, what) = match e.field.as_str() {
            "lastName" => (1, "the family name"),
            "firstName" => (2, "the given name"),
            _ => (3, "the middle name"),
        };
        return Err(refused(e, pid(5, component), what));
    }
    DateOfBirth::new(birth_date, today)
        .map_err(|e| refused(e, Location::field("PID", 1, 7), "the date of birth"))?;
    Ok(())
}
