//! MLLP framing (HL7 v2 Minimal Lower Layer Protocol, release 2): each message travels as
//! `0x0B <message> 0x1C 0x0D`. Pure bytes in and out; the sockets are the caller's.
//!
//! The [`Deframer`] takes bytes as they arrive, in pieces of any size, and yields whole
//! frames: bytes outside a frame (line noise, a peer's keep-alives) are skipped, a start
//! byte inside an unfinished frame begins a new one (the unfinished one is dropped: it can
//! never be completed), and a frame over the size limit is reported once and skipped to
//! its end, so one oversized message does not end the connection.

pub const START: u8 = 0x0B;
pub const END: u8 = 0x1C;
pub const CR: u8 = 0x0D;

/// `message` as one MLLP frame.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START);
    out.extend_from_slice(message);
    out.push(END);
    out.push(CR);
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Message(Vec<u8>),
    /// A frame longer than the limit: its content is dropped.
    TooLarge,
}

#[derive(Debug)]
pub struct Deframer {
    limit: usize,
    state: State,
    buf: Vec<u8>,
    /// Bytes seen outside any frame, for the caller's metrics.
    pub skipped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a start byte.
    Outside,
    Inside,
    /// Inside, and the last byte was the end byte.
    Ending,
    /// Inside a frame over the limit, dropping bytes until its end.
    Skipping,
}

impl Deframer {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            state: State::Outside,
            buf: Vec::new(),
            skipped: 0,
        }
    }

    /// Whether a frame has started and not ended: bytes are owed.
    pub fn is_mid_frame(&self) -> bool {
        self.state != State::Outside
    }

    /// Takes the next bytes received; returns the frames they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        for &b in bytes {
            match (self.state, b) {
                (State::Outside, START) => {
                    self.buf.clear();
                    self.state = State::Inside;
                }
                (State::Outside, _) => self.skipped += 1,
                (State::Inside | State::Ending, START) => {
                    // A frame that never ended: it cannot be finished now.
                    self.skipped += self.buf.len() as u64;
                    self.buf.clear();
                    self.state = State::Inside;
                }
                (State::Inside, END) => self.state = State::Ending,
                (State::Ending, CR) => {
                    frames.push(Frame::Message(std::mem::take(&mut self.buf)));
                    self.state = State::Outside;
                }
                (State::Ending, _) => {
                    // A lone 0x1C is part of the message after all.
                    self.buf.push(END);
                    self.state = State::Inside;
                    self.take(b, &mut frames);
                }
                (State::Inside, _) => self.take(b, &mut frames),
                (State::Skipping, END) => {}
                (State::Skipping, CR) => self.state = State::Outside,
                (State::Skipping, START) => {
                    self.buf.clear();
                    self.state = State::Inside;
                }
                (State::Skipping, _) => {}
            }
        }
        frames
    }

    fn take(&mut self, b: u8, frames: &mut Vec<Frame>) {
        if b == END {
            self.state = State::Ending;
            return;
        }
        self.buf.push(b);
        if self.buf.len() > self.limit {
            self.buf = Vec::new();
            self.state = State::Skipping;
            frames.push(Frame::TooLarge);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Frame {
        Frame::Message(s.as_bytes().to_vec())
    }

    #[test]
    fn frames_split_anywhere_and_several_in_one_read_come_out_whole() {
        let mut stream = frame(b"MSH|one");
        stream.extend(frame(b"MSH|two"));
        stream.extend(frame(b"MSH|three"));
        for chunk in 1..stream.len() {
            let mut d = Deframer::new(1024);
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                got.extend(d.push(piece));
            }
            assert_eq!(
                got,
                [msg("MSH|one"), msg("MSH|two"), msg("MSH|three")],
                "{chunk}"
            );
            assert!(!d.is_mid_frame());
        }
    }

    #[test]
    fn garbage_between_frames_and_unfinished_frames_are_skipped() {
        let mut d = Deframer::new(1024);
        let mut stream = b"\r\nnoise".to_vec();
        stream.extend(frame(b"MSH|a"));
        stream.extend(b"\x0bMSH|never finished");
        stream.extend(frame(b"MSH|b"));
        stream.extend(b"\x1c\r");
        assert_eq!(d.push(&stream), [msg("MSH|a"), msg("MSH|b")]);
        assert!(d.skipped >= 7);
        // A lone 0x1C inside is content.
        assert_eq!(d.push(b"\x0bA\x1cB\x1c\r"), [msg("A\x1cB")]);
    }

    #[test]
    fn an_oversized_frame_is_reported_once_and_the_next_one_still_arrives() {
        let mut d = Deframer::new(8);
        let mut stream = frame(b"MSH|far too long for the limit");
        stream.extend(frame(b"MSH|ok"));
        assert_eq!(d.push(&stream), [Frame::TooLarge, msg("MSH|ok")]);
    }
}
