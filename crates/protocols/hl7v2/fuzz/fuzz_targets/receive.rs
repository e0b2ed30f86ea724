//! Everything a receiver does with bytes off the wire must not panic: decode, parse as one
//! message and as a batch, interpret, and acknowledge.
#![no_main]

use hl7v2::{ack, messages, parse, parse_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = hl7v2::decode(data);
    let now = chrono::Utc::now();
    if let Ok(m) = parse(&text) {
        let outcome = messages::interpret(&m);
        let code = match &outcome {
            Ok(_) => ack::AckCode::Accept,
            Err(e) => ack::AckCode::for_error(e),
        };
        let reply = ack::acknowledge(Some(&m), code, outcome.as_ref().err(), "A", now);
        assert!(parse(&reply.encode()).is_ok());
    }
    if let Ok(batch) = parse_batch(&text) {
        for m in batch.messages.iter().flatten() {
            let _ = messages::interpret(m);
        }
    }
});
