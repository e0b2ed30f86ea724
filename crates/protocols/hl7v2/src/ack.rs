//! Acknowledgements (original mode): `AA` accepted, `AE` error in the content (the sender
//! should fix it), `AR` rejected (a kind of message this receiver does not take). The ACK
//! answers in the message's own delimiters and version, addressed back to its sender, and
//! echoes its control id (MSH-10) in MSA-2.

use crate::message::Segment;
use crate::{Delimiters, Hl7Error, Message, time};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    Accept,
    Error,
    Reject,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }

    /// `AR` for a kind of message we do not take, `AE` for anything else wrong with it.
    pub fn for_error(e: &Hl7Error) -> Self {
        if e.code.is_rejection() {
            AckCode::Reject
        } else {
            AckCode::Error
        }
    }
}

/// Who acknowledges, when the message did not say whom it was for.
pub const DEFAULT_APPLICATION: &str = "MEDITRACK";

/// The version an ACK uses when the message did not say its own.
const DEFAULT_VERSION: &str = "2.5.1";

/// The acknowledgement of `original` (or, when not even its header could be read, a bare
/// one): `code`, `error` in an ERR segment, `control_id` as the ACK's own MSH-10.
pub fn acknowledge(
    original: Option<&Message>,
    code: AckCode,
    error: Option<&Hl7Error>,
    control_id: &str,
    now: DateTime<Utc>,
) -> Message {
    let header = original.map(Message::header);
    let delimiters = original.map_or_else(Delimiters::default, Message::delimiters);
    let theirs = |n: usize| {
        header
            .map(|h| h.field(n).raw().to_owned())
            .unwrap_or_default()
    };
    let version = header
        .and_then(|h| h.field(12).component(1).text())
        .unwrap_or_else(|| DEFAULT_VERSION.to_owned());
    let trigger = header
        .and_then(|h| h.field(9).component(2).text())
        .unwrap_or_default();
    let mut msh = Segment::new("MSH", delimiters);
    let ours = theirs(5);
    if ours.is_empty() {
        msh.set_text(3, DEFAULT_APPLICATION);
    } else {
        msh.set_raw(3, ours);
    }
    msh.set_raw(4, theirs(6))
        .set_raw(5, theirs(3))
        .set_raw(6, theirs(4))
        .set_text(7, &time::format_datetime(now))
        .set_components(9, &["ACK", &trigger, "ACK"])
        .set_text(10, control_id);
    let processing = theirs(11);
    if processing.is_empty() {
        msh.set_text(11, "P");
    } else {
        msh.set_raw(11, processing);
    }
    msh.set_text(12, &version);
    let mut ack = Message::new(msh);
    let original_id = header
        .map(|h| h.field(10).raw().to_owned())
        .unwrap_or_default();
    let msa = ack.push("MSA");
    msa.set_text(1, code.as_str()).set_raw(2, original_id);
    if let Some(e) = error {
        msa.set_text(3, &e.message);
        push_error(&mut ack, e, &version);
    }
    ack
}

/// ERR as the message's version has it: ERR-2 to ERR-4 from 2.5, ERR-1 before.
fn push_error(ack: &mut Message, e: &Hl7Error, version: &str) {
    let number = |n: Option<usize>| n.map(|n| n.to_string()).unwrap_or_default();
    let (segment, sequence, field, repetition, component, subcomponent) = match &e.location {
        Some(l) => (
            l.segment.clone(),
            l.sequence.to_string(),
            number(l.field),
            number(l.repetition.or(l.field.map(|_| 1))),
            number(l.component),
            number(l.subcomponent),
        ),
        None => Default::default(),
    };
    let code = e.code.code().to_string();
    let err = ack.push("ERR");
    if at_least_2_5(version) {
        err.set_components(
            2,
            &[
                &segment,
                &sequence,
                &field,
                &repetition,
                &component,
                &subcomponent,
            ],
        )
        .set_components(3, &[&code, e.code.text(), "HL70357"])
        .set_text(4, "E")
        .set_text(8, &e.message);
    } else {
        // ELD: segment ^ sequence ^ field ^ code & text & table.
        let sub = err.delimiters().subcomponent.to_string();
        let escaped = |s: &str| crate::escape::escape(s, err.delimiters());
        let coded = [escaped(&code), escaped(e.code.text()), "HL70357".to_owned()].join(&sub);
        let comp = err.delimiters().component.to_string();
        let raw = [escaped(&segment), sequence, field, coded].join(&comp);
        err.set_raw(1, raw);
    }
}

fn at_least_2_5(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segments::{ErrorSegment, Msa, Msh};
    use crate::{ErrorCode, Location, parse};

    fn now() -> DateTime<Utc> {
        time::parse_datetime("20240102030405").unwrap()
    }

    #[test]
    fn an_ack_answers_the_sender_and_echoes_the_control_id() {
        let m =
            parse("MSH|^~\\&|LAB|LABFAC|MT|HOSP|20240101||ORU^R01^ORU_R01|ABC-1|P|2.5.1").unwrap();
        let ack = acknowledge(Some(&m), AckCode::Accept, None, "ACK-9", now());
        assert_eq!(
            ack.encode(),
            "MSH|^~\\&|MT|HOSP|LAB|LABFAC|20240102030405+0000||ACK^R01^ACK|ACK-9|P|2.5.1\rMSA|AA|ABC-1\r"
        );
        let back = parse(&ack.encode()).unwrap();
        assert_eq!(
            Msh::of(back.header()).unwrap().control_id().as_deref(),
            Some("ACK-9")
        );
    }

    #[test]
    fn errors_name_the_field_in_the_versions_own_err() {
        let e = Hl7Error::missing("PID", 1, 3, "patient identifier");
        let m = parse("MSH|^~\\&|LAB||||20240101||ORU^R01|X1|P|2.5").unwrap();
        let ack = acknowledge(Some(&m), AckCode::for_error(&e), Some(&e), "A1", now());
        let err = ErrorSegment::of(&ack.segments()[2]).unwrap();
        assert_eq!(err.location().as_deref(), Some("PID-3"));
        assert_eq!(err.error_code().as_deref(), Some("101"));
        assert_eq!(
            Msa::of(&ack.segments()[1]).unwrap().code().as_deref(),
            Some("AE")
        );

        let old = parse("MSH|^~\\&|LAB||||20240101||ORU^R01|X1|P|2.3").unwrap();
        let ack = acknowledge(Some(&old), AckCode::Error, Some(&e), "A2", now());
        assert!(
            ack.encode()
                .contains("\rERR|PID^1^3^101&Required field missing&HL70357\r")
        );
        let err = ErrorSegment::of(&ack.segments()[2]).unwrap();
        assert_eq!(err.location().as_deref(), Some("PID-3"));
        assert_eq!(err.error_code().as_deref(), Some("101"));

        let rejected = Hl7Error::new(ErrorCode::UnsupportedMessageType, "not taken")
            .at(Location::field("MSH", 1, 9));
        assert_eq!(AckCode::for_error(&rejected), AckCode::Reject);
    }

    #[test]
    fn a_message_without_a_readable_header_still_gets_an_ack() {
        let e = Hl7Error::new(ErrorCode::SegmentSequence, "no MSH");
        let ack = acknowledge(None, AckCode::Reject, Some(&e), "A3", now());
        let text = ack.encode();
        assert!(text.starts_with("MSH|^~\\&|MEDITRACK|"), "{text}");
        assert!(text.contains("\rMSA|AR||no MSH\r"), "{text}");
    }
}
