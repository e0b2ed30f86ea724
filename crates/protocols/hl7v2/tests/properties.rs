//! Properties that hold for every input: values survive escaping, built messages read
//! back as built, and nothing panics on any bytes at all.

use hl7v2::escape::{escape, unescape};
use hl7v2::{Delimiters, Message, Segment, ack, messages, parse, parse_batch};
use proptest::prelude::*;

/// Delimiter sets a sender may declare: five distinct printable non-alphanumerics.
fn delimiters() -> impl Strategy<Value = Delimiters> {
    let pool: Vec<char> = "|^~\\&#@*$%!+=:;/?<>".chars().collect();
    proptest::sample::subsequence(pool, 5)
        .prop_shuffle()
        .prop_map(|c| Delimiters {
            field: c[0],
            component: c[1],
            repetition: c[2],
            escape: c[3],
            subcomponent: c[4],
            truncation: None,
        })
}

/// Any text but HL7's explicit null (`""`), which reads back as no value by design.
fn text() -> impl Strategy<Value = String> {
    any::<String>().prop_filter("not the explicit null", |s| s != "\"\"")
}

fn segment_id() -> impl Strategy<Value = String> {
    ("[A-Z][A-Z0-9]{2}").prop_filter("not a header", |s| {
        !["MSH", "BHS", "FHS", "BTS", "FTS"].contains(&s.as_str())
    })
}

/// A segment body: fields of repetitions of components, every component non-empty.
type Fields = Vec<Vec<Vec<String>>>;

fn fields() -> impl Strategy<Value = Fields> {
    let component = text().prop_filter("non-empty", |s| !s.is_empty());
    proptest::collection::vec(
        proptest::collection::vec(proptest::collection::vec(component, 1..4), 1..3),
        1..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_text_survives_escaping(s in text(), d in delimiters()) {
        let escaped = escape(&s, &d);
        prop_assert!(!escaped.contains(['\r', '\n']));
        prop_assert!(!escaped.contains(d.field) && !escaped.contains(d.component));
        prop_assert_eq!(unescape(&escaped, &d), s);
    }

    #[test]
    fn built_messages_read_back_as_built(
        d in delimiters(),
        body in proptest::collection::vec((segment_id(), fields()), 0..5),
    ) {
        let mut m = Message::new(Segment::new("MSH", d));
        for (id, fields) in &body {
            let s = m.push(id);
            for (i, reps) in fields.iter().enumerate() {
                let reps: Vec<Vec<&str>> = reps
                    .iter()
                    .map(|r| r.iter().map(String::as_str).collect())
                    .collect();
                s.set_repetitions(i + 1, &reps);
            }
        }
        let text = m.encode();
        let read = parse(&text).unwrap();
        prop_assert_eq!(&read, &m);
        prop_assert_eq!(read.encode(), text);
        for (segment, (id, fields)) in read.segments()[1..].iter().zip(&body) {
            prop_assert_eq!(segment.id(), id.as_str());
            for (i, reps) in fields.iter().enumerate() {
                let got: Vec<Vec<String>> = segment
                    .field(i + 1)
                    .repetitions()
                    .iter()
                    .map(|r| {
                        (1..=reps[0].len().max(3))
                            .map(|c| r.component(c).text().unwrap_or_default())
                            .filter(|c| !c.is_empty())
                            .collect()
                    })
                    .collect();
                prop_assert_eq!(&got, reps);
            }
        }
    }

    #[test]
    fn framing_survives_any_bytes_and_finds_every_frame_between_them(
        noise in proptest::collection::vec(any::<u8>(), 0..200),
        messages in proptest::collection::vec("[A-Za-z0-9|^~&\\\r]{1,50}", 1..5),
        split in 1usize..64,
    ) {
        use hl7v2::mllp::{Deframer, Frame, frame};
        let mut d = Deframer::new(1 << 16);
        let _ = d.push(&noise);
        // Whatever the noise left half-open ends at the first new frame.
        let mut stream = Vec::new();
        for m in &messages {
            stream.extend(frame(m.as_bytes()));
        }
        let mut got = Vec::new();
        for piece in stream.chunks(split) {
            got.extend(d.push(piece));
        }
        let want: Vec<Frame> = messages.iter().map(|m| Frame::Message(m.as_bytes().to_vec())).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn no_input_makes_it_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        exercise(&hl7v2::decode(&bytes));
    }

    #[test]
    fn no_header_followed_by_anything_makes_it_panic(rest in any::<String>()) {
        exercise(&format!("MSH|^~\\&|{rest}"));
        exercise(&format!("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5\rPID|{rest}\rOBR|1|||{rest}\rOBX|{rest}"));
    }
}

/// Everything a receiver does with a message.
fn exercise(text: &str) {
    let now = chrono::Utc::now();
    if let Ok(m) = parse(text) {
        let outcome = messages::interpret(&m);
        let code = match &outcome {
            Ok(_) => ack::AckCode::Accept,
            Err(e) => ack::AckCode::for_error(e),
        };
        let reply = ack::acknowledge(Some(&m), code, outcome.as_ref().err(), "A", now);
        assert!(parse(&reply.encode()).is_ok(), "an ACK always reads back");
        for s in m.segments() {
            for f in 1..=s.field_count() + 1 {
                let v = s.field(f);
                let _ = (v.text(), v.component(2).subcomponent(2).text());
            }
        }
    }
    if let Ok(batch) = parse_batch(text) {
        for m in batch.messages.iter().flatten() {
            let _ = messages::interpret(m);
        }
    }
    let _ = ack::acknowledge(None, ack::AckCode::Reject, None, "A", now);
}
