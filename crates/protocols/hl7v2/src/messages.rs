//! The messages MediTrack takes in, read into plain structures: ORU^R01 (results),
//! ORM^O01 and OML^O21 (orders), ADT^A01, A04 and A08 (patients). [`interpret`] says which
//! one a message is, or why it cannot be taken: AR for a kind we do not take, AE (with
//! the field) for content that is missing or malformed.

use crate::segments::{
    Address, CodedValue, Identifier, Msh, Nte, Obr, Obx, Orc, PersonName, Pid, Provider, Pv1, Spm,
};
use crate::time::{parse_date, parse_datetime};
use crate::{ErrorCode, Hl7Error, Location, Message, Segment};
use chrono::{DateTime, NaiveDate, Utc};

#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Results(ResultMessage),
    Orders(OrderMessage),
    Patient(PatientMessage),
}

/// What every message's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub sending_application: Option<String>,
    pub sending_facility: Option<String>,
    pub message_code: String,
    pub trigger_event: String,
    pub control_id: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientInfo {
    pub identifiers: Vec<Identifier>,
    pub name: PersonName,
    pub birth_date: Option<NaiveDate>,
    pub sex: Option<String>,
    pub address: Option<Address>,
    pub phone: Option<String>,
    pub ssn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecimenInfo {
    pub id: Option<String>,
    pub kind: Option<CodedValue>,
    pub collected_at: Option<DateTime<Utc>>,
    pub received_at: Option<DateTime<Utc>>,
    pub condition: Option<CodedValue>,
}

/// ORU^R01: results, grouped by the order (OBR) they answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultMessage {
    pub header: Header,
    pub patient: Option<PatientInfo>,
    pub orders: Vec<ReportedOrder>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReportedOrder {
    /// The patient these results are for: the PID before them (one message may report
    /// on several patients).
    pub patient: Option<PatientInfo>,
    pub placer_order: Option<String>,
    pub filler_order: Option<String>,
    pub service: CodedValue,
    pub status: Option<String>,
    pub observed_at: Option<DateTime<Utc>>,
    pub ordering_provider: Option<Provider>,
    pub observations: Vec<ObservationResult>,
    pub notes: Vec<String>,
    pub specimens: Vec<SpecimenInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservationResult {
    pub code: CodedValue,
    pub sub_id: Option<String>,
    pub value_type: Option<String>,
    pub value: Option<String>,
    pub units: Option<String>,
    pub reference_range: Option<String>,
    pub abnormal_flags: Vec<String>,
    pub status: Option<String>,
    pub observed_at: Option<DateTime<Utc>>,
    pub performed_by: Option<Provider>,
    pub notes: Vec<String>,
}

/// ORM^O01 or OML^O21: orders from an EHR.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderMessage {
    pub header: Header,
    pub patient: Option<PatientInfo>,
    pub orders: Vec<OrderedTest>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderedTest {
    /// ORC-1: `NW` new, `CA` cancel, …
    pub control: String,
    pub placer_order: Option<String>,
    pub filler_order: Option<String>,
    pub service: Option<CodedValue>,
    pub priority: Option<String>,
    pub ordering_provider: Option<Provider>,
    pub requested_at: Option<DateTime<Utc>>,
    pub diagnoses: Vec<CodedValue>,
    pub notes: Vec<String>,
    pub specimens: Vec<SpecimenInfo>,
}

/// ADT^A01 (admit), A04 (register) or A08 (update patient information).
#[derive(Debug, Clone, PartialEq)]
pub struct PatientMessage {
    pub header: Header,
    pub patient: PatientInfo,
    pub patient_class: Option<String>,
    pub attending_doctor: Option<Provider>,
}

/// Which message `m` is, read; or why it cannot be taken.
pub fn interpret(m: &Message) -> Result<Inbound, Hl7Error> {
    let header = header(m)?;
    let body = Body::new(m);
    match (header.message_code.as_str(), header.trigger_event.as_str()) {
        ("ORU", "R01") => results(header, &body).map(Inbound::Results),
        ("ORM", "O01") | ("OML", "O21") => orders(header, &body).map(Inbound::Orders),
        ("ADT", "A01" | "A04" | "A08") => patient_message(header, &body).map(Inbound::Patient),
        ("ORU" | "ORM" | "OML" | "ADT", _) => Err(Hl7Error::new(
            ErrorCode::UnsupportedEventCode,
            format!(
                "{} messages are taken for events {}",
                header.message_code,
                match header.message_code.as_str() {
                    "ORU" => "R01",
                    "ADT" => "A01, A04 and A08",
                    "ORM" => "O01",
                    _ => "O21",
                }
            ),
        )
        .at(Location::component("MSH", 1, 9, 2))),
        _ => Err(Hl7Error::new(
            ErrorCode::UnsupportedMessageType,
            "this message type is not taken here (ORU^R01, ORM^O01, OML^O21, ADT^A01/A04/A08 are)",
        )
        .at(Location::component("MSH", 1, 9, 1))),
    }
}

fn header(m: &Message) -> Result<Header, Hl7Error> {
    let msh = Msh(m.header());
    let message_code = msh
        .message_code()
        .ok_or_else(|| Hl7Error::missing("MSH", 1, 9, "message type"))?;
    let control_id = msh
        .control_id()
        .ok_or_else(|| Hl7Error::missing("MSH", 1, 10, "message control id"))?;
    let version = msh
        .version()
        .ok_or_else(|| Hl7Error::missing("MSH", 1, 12, "version id"))?;
    if !version.starts_with("2.") {
        return Err(Hl7Error::new(
            ErrorCode::UnsupportedVersionId,
            "only HL7 version 2 messages are taken",
        )
        .at(Location::field("MSH", 1, 12)));
    }
    Ok(Header {
        sending_application: msh.sending_application(),
        sending_facility: msh.sending_facility(),
        message_code,
        trigger_event: msh.trigger_event().unwrap_or_default(),
        control_id,
        version,
    })
}

/// The segments after MSH, each with its occurrence number (for error locations).
struct Body<'a> {
    segments: Vec<(&'a Segment, usize)>,
}

impl<'a> Body<'a> {
    fn new(m: &'a Message) -> Self {
        let mut seen: Vec<(&str, usize)> = Vec::new();
        let segments = m
            .segments()
            .iter()
            .skip(1)
            .map(|s| {
                let n = match seen.iter_mut().find(|(id, _)| *id == s.id()) {
                    Some((_, n)) => {
                        *n += 1;
                        *n
                    }
                    None => {
                        seen.push((s.id(), 1));
                        1
                    }
                };
                (s, n)
            })
            .collect();
        Body { segments }
    }
}

fn when(
    raw: Option<String>,
    segment: &str,
    sequence: usize,
    field: usize,
    what: &str,
) -> Result<Option<DateTime<Utc>>, Hl7Error> {
    match raw {
        None => Ok(None),
        Some(s) => parse_datetime(&s)
            .map(Some)
            .ok_or_else(|| Hl7Error::malformed(segment, sequence, field, what)),
    }
}

fn patient(pid: &Segment, sequence: usize) -> Result<PatientInfo, Hl7Error> {
    let p = Pid(pid);
    let birth_date = match p.birth_date() {
        None => None,
        Some(raw) => Some(
            parse_date(&raw)
                .ok_or_else(|| Hl7Error::malformed("PID", sequence, 7, "date of birth"))?,
        ),
    };
    Ok(PatientInfo {
        identifiers: p.identifiers(),
        name: p.name(),
        birth_date,
        sex: p.sex(),
        address: p.address(),
        phone: p.phone(),
        ssn: p.ssn(),
    })
}

fn specimen(spm: &Segment, sequence: usize) -> Result<SpecimenInfo, Hl7Error> {
    let s = Spm(spm);
    Ok(SpecimenInfo {
        id: s.specimen_id(),
        kind: s.specimen_type(),
        collected_at: when(s.collected_at(), "SPM", sequence, 17, "collection time")?,
        received_at: when(s.received_at(), "SPM", sequence, 18, "received time")?,
        condition: s.condition(),
    })
}

fn results(header: Header, body: &Body<'_>) -> Result<ResultMessage, Hl7Error> {
    let mut patient_info = None;
    let mut current: Option<PatientInfo> = None;
    let mut orders: Vec<ReportedOrder> = Vec::new();
    let mut pending_orc: Option<&Segment> = None;
    for &(s, n) in &body.segments {
        match s.id() {
            "PID" => {
                let p = patient(s, n)?;
                patient_info.get_or_insert_with(|| p.clone());
                current = Some(p);
            }
            "ORC" => pending_orc = Some(s),
            "OBR" => {
                let obr = Obr(s);
                let orc = pending_orc.take().map(Orc);
                let service = obr
                    .universal_service_id()
                    .ok_or_else(|| Hl7Error::missing("OBR", n, 4, "universal service id"))?;
                orders.push(ReportedOrder {
                    patient: current.clone(),
                    placer_order: obr
                        .placer_order_number()
                        .or_else(|| orc.and_then(|o| o.placer_order_number())),
                    filler_order: obr
                        .filler_order_number()
                        .or_else(|| orc.and_then(|o| o.filler_order_number())),
                    service,
                    status: obr.result_status(),
                    observed_at: when(obr.observed_at(), "OBR", n, 7, "observation time")?,
                    ordering_provider: obr
                        .ordering_provider()
                        .or_else(|| orc.and_then(|o| o.ordering_provider())),
                    observations: Vec::new(),
                    notes: Vec::new(),
                    specimens: Vec::new(),
                });
            }
            "OBX" => {
                let order = orders.last_mut().ok_or_else(|| {
                    Hl7Error::new(ErrorCode::SegmentSequence, "an OBX before any OBR")
                        .at(Location::segment("OBX", n))
                })?;
                let obx = Obx(s);
                let code = obx
                    .observation_id()
                    .ok_or_else(|| Hl7Error::missing("OBX", n, 3, "observation identifier"))?;
                order.observations.push(ObservationResult {
                    code,
                    sub_id: obx.sub_id(),
                    value_type: obx.value_type(),
                    value: obx.value(),
                    units: obx.units(),
                    reference_range: obx.reference_range(),
                    abnormal_flags: obx.abnormal_flags(),
                    status: obx.result_status(),
                    observed_at: when(
                        obx.observed_at().or_else(|| obx.analyzed_at()),
                        "OBX",
                        n,
                        14,
                        "observation time",
                    )?,
                    performed_by: obx.responsible_observer(),
                    notes: Vec::new(),
                });
            }
            "NTE" => {
                let Some(comment) = Nte(s).comment() else {
                    continue;
                };
                // A note belongs to what it follows: the last result, else the order.
                if let Some(order) = orders.last_mut() {
                    match order.observations.last_mut() {
                        Some(obx) => obx.notes.push(comment),
                        None => order.notes.push(comment),
                    }
                }
            }
            "SPM" => {
                if let Some(order) = orders.last_mut() {
                    order.specimens.push(specimen(s, n)?);
                }
            }
            _ => {}
        }
    }
    if orders.is_empty() {
        return Err(Hl7Error::missing("OBR", 1, 4, "an OBR segment"));
    }
    Ok(ResultMessage {
        header,
        patient: patient_info,
        orders,
    })
}

fn orders(header: Header, body: &Body<'_>) -> Result<OrderMessage, Hl7Error> {
    let mut patient_info = None;
    let mut orders: Vec<OrderedTest> = Vec::new();
    // Whether the last order still waits for its OBR (an ORC opens one, an OBR fills it).
    let mut open = false;
    for &(s, n) in &body.segments {
        match s.id() {
            "PID" if patient_info.is_none() => patient_info = Some(patient(s, n)?),
            "ORC" => {
                let orc = Orc(s);
                let control = orc
                    .order_control()
                    .ok_or_else(|| Hl7Error::missing("ORC", n, 1, "order control"))?;
                orders.push(OrderedTest {
                    control,
                    placer_order: orc.placer_order_number(),
                    filler_order: orc.filler_order_number(),
                    service: None,
                    priority: orc.priority(),
                    ordering_provider: orc.ordering_provider(),
                    requested_at: when(orc.transaction_at(), "ORC", n, 9, "transaction time")?,
                    diagnoses: Vec::new(),
                    notes: Vec::new(),
                    specimens: Vec::new(),
                });
                open = true;
            }
            "OBR" => {
                let obr = Obr(s);
                if !open {
                    return Err(Hl7Error::new(
                        ErrorCode::SegmentSequence,
                        "an OBR must follow its ORC",
                    )
                    .at(Location::segment("OBR", n)));
                }
                open = false;
                let Some(order) = orders.last_mut() else {
                    continue;
                };
                order.service = Some(
                    obr.universal_service_id()
                        .ok_or_else(|| Hl7Error::missing("OBR", n, 4, "universal service id"))?,
                );
                order.priority = obr.priority().or(order.priority.take());
                order.placer_order = order
                    .placer_order
                    .take()
                    .or_else(|| obr.placer_order_number());
                order.filler_order = order
                    .filler_order
                    .take()
                    .or_else(|| obr.filler_order_number());
                order.ordering_provider = order
                    .ordering_provider
                    .take()
                    .or_else(|| obr.ordering_provider());
            }
            "DG1" => {
                if let (Some(order), Some(code)) = (orders.last_mut(), CodedValue::read(s.field(3)))
                {
                    order.diagnoses.push(code);
                }
            }
            "NTE" => {
                if let (Some(order), Some(c)) = (orders.last_mut(), Nte(s).comment()) {
                    order.notes.push(c);
                }
            }
            "SPM" => {
                if let Some(order) = orders.last_mut() {
                    order.specimens.push(specimen(s, n)?);
                }
            }
            _ => {}
        }
    }
    if orders.is_empty() {
        return Err(Hl7Error::missing("ORC", 1, 1, "an ORC segment"));
    }
    for (i, o) in orders.iter().enumerate() {
        if o.control == "NW" && o.service.is_none() {
            return Err(Hl7Error::missing(
                "OBR",
                i + 1,
                4,
                "the test of a new order",
            ));
        }
    }
    Ok(OrderMessage {
        header,
        patient: patient_info,
        orders,
    })
}

fn patient_message(header: Header, body: &Body<'_>) -> Result<PatientMessage, Hl7Error> {
    let (pid, n) = body
        .segments
        .iter()
        .find(|(s, _)| s.id() == "PID")
        .copied()
        .ok_or_else(|| Hl7Error::missing("PID", 1, 3, "a PID segment"))?;
    let info = patient(pid, n)?;
    if info.identifiers.is_empty() {
        return Err(Hl7Error::missing("PID", n, 3, "patient identifier"));
    }
    if info.name.family.is_none() {
        return Err(
            Hl7Error::missing("PID", n, 5, "family name").at(Location::component("PID", n, 5, 1))
        );
    }
    let pv1 = body.segments.iter().find_map(|(s, _)| Pv1::of(s));
    Ok(PatientMessage {
        header,
        patient: info,
        patient_class: pv1.and_then(|v| v.patient_class()),
        attending_doctor: pv1.and_then(|v| v.attending_doctor()),
    })
}
