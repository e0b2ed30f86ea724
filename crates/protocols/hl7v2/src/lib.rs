//! HL7 version 2 messages, as exchanged with laboratories, analyzers and EHRs (2.3 to 2.5.1).
//!
//! - [`parse`] reads one message, [`parse_batch`] a stream of messages with or without
//!   batch envelopes (FHS/BHS … BTS/FTS). The delimiters come from each header (MSH-1,
//!   MSH-2); segments may end in `\r`, `\n` or `\r\n`; Z-segments are kept like any other.
//! - Values are kept as they were written (escaped), so a message encodes back to the text
//!   it came from; [`Value::text`] unescapes on demand, and the setters of [`Segment`]
//!   escape what they are given.
//! - [`segments`] gives typed access to the segments MediTrack reads, [`messages`]
//!   interprets ORU^R01, ORM^O01, OML^O21 and ADT^A01/A04/A08, and [`build`] writes the
//!   orders MediTrack sends. [`ack`] builds the acknowledgement of a message, and [`mllp`]
//!   frames messages for the wire.
//! - Nothing here panics on any input: every problem is an [`Hl7Error`] naming where it is
//!   (for the ACK's ERR segment) and never quoting the value, which may be PHI.

pub mod ack;
pub mod build;
mod delimiters;
mod error;
pub mod escape;
mod message;
pub mod messages;
pub mod mllp;
pub mod segments;
pub mod time;

pub use delimiters::Delimiters;
pub use error::{ErrorCode, Hl7Error, Location};
pub use message::{Batch, Message, Segment, Value, decode, parse, parse_batch};
