use crate::escape::{escape, unescape};
use crate::{Delimiters, ErrorCode, Hl7Error, Location};

/// Segments that declare the delimiters in their own first fields.
const HEADERS: [&str; 3] = ["MSH", "BHS", "FHS"];

/// One segment: its id and its fields as written (escaped). Field `n` (counted from 1, as
/// HL7 does) is `fields[n - 1]`; in a header, field 1 is the field separator and field 2
/// the encoding characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    id: String,
    fields: Vec<String>,
    delimiters: Delimiters,
}

/// A value of a segment, as a view: a field, one repetition, a component or a
/// subcomponent. Views of views narrow further; asking for what is not there gives an
/// empty value rather than an error, since HL7 leaves trailing empty parts out.
#[derive(Debug, Clone, Copy)]
pub struct Value<'a> {
    raw: &'a str,
    delimiters: Delimiters,
    level: Level,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Field,
    Repetition,
    Component,
    Subcomponent,
    /// MSH-1 and MSH-2: delimiters themselves, never split.
    Literal,
}

impl<'a> Value<'a> {
    /// As written, escapes included.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// `""`: HL7's explicit null, "delete this value", as opposed to an empty field.
    pub fn is_null(&self) -> bool {
        self.raw == "\"\""
    }

    /// The text the value stands for, unescaped; `None` when empty or null.
    pub fn text(&self) -> Option<String> {
        if self.is_empty() || self.is_null() {
            return None;
        }
        Some(match self.level {
            Level::Literal => self.raw.to_owned(),
            _ => unescape(self.raw, &self.delimiters),
        })
    }

    /// Every repetition of a field (one for anything narrower).
    pub fn repetitions(&self) -> Vec<Value<'a>> {
        match self.level {
            Level::Field => self
                .raw
                .split(self.delimiters.repetition)
                .filter(|r| !r.is_empty())
                .map(|raw| self.narrowed(raw, Level::Repetition))
                .collect(),
            _ if self.is_empty() => Vec::new(),
            _ => vec![*self],
        }
    }

    /// Repetition `n` (from 1).
    pub fn repetition(&self, n: usize) -> Value<'a> {
        match self.level {
            Level::Field => self.nth(self.delimiters.repetition, n, Level::Repetition),
            _ if n == 1 => *self,
            _ => self.narrowed("", Level::Repetition),
        }
    }

    /// Component `n` (from 1) of the first repetition.
    pub fn component(&self, n: usize) -> Value<'a> {
        match self.level {
            Level::Field => self.repetition(1).component(n),
            Level::Repetition => self.nth(self.delimiters.component, n, Level::Component),
            _ if n == 1 => *self,
            _ => self.narrowed("", Level::Component),
        }
    }

    /// Subcomponent `n` (from 1) of the first component.
    pub fn subcomponent(&self, n: usize) -> Value<'a> {
        match self.level {
            Level::Field | Level::Repetition => self.component(1).subcomponent(n),
            Level::Component => self.nth(self.delimiters.subcomponent, n, Level::Subcomponent),
            _ if n == 1 => *self,
            _ => self.narrowed("", Level::Subcomponent),
        }
    }

    fn nth(&self, separator: char, n: usize, level: Level) -> Value<'a> {
        let raw = n
            .checked_sub(1)
            .and_then(|i| self.raw.split(separator).nth(i))
            .unwrap_or("");
        self.narrowed(raw, level)
    }

    fn narrowed(&self, raw: &'a str, level: Level) -> Value<'a> {
        Value {
            raw,
            delimiters: self.delimiters,
            level,
        }
    }
}

impl Segment {
    /// An empty segment; a header gets its delimiter fields.
    pub fn new(id: &str, delimiters: Delimiters) -> Self {
        let fields = if HEADERS.contains(&id) {
            vec![
                delimiters.field.to_string(),
                delimiters.encoding_characters(),
            ]
        } else {
            Vec::new()
        };
        Segment {
            id: id.to_owned(),
            fields,
            delimiters,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn delimiters(&self) -> &Delimiters {
        &self.delimiters
    }

    /// How many fields it has, trailing empty ones included.
    pub fn field_count(&self) -> usize {
        self.fields.len()
    }

    /// Field `n` (from 1); empty when the segment has fewer fields.
    pub fn field(&self, n: usize) -> Value<'_> {
        let raw = n
            .checked_sub(1)
            .and_then(|i| self.fields.get(i))
            .map_or("", String::as_str);
        let level = if HEADERS.contains(&self.id.as_str()) && n <= 2 {
            Level::Literal
        } else {
            Level::Field
        };
        Value {
            raw,
            delimiters: self.delimiters,
            level,
        }
    }

    /// Sets field `n` to `raw`, already in the message's syntax (escaped, with its
    /// delimiters). The delimiter fields of a header cannot be set.
    pub fn set_raw(&mut self, n: usize, raw: impl Into<String>) -> &mut Self {
        let header = HEADERS.contains(&self.id.as_str());
        if n == 0 || (header && n <= 2) {
            return self;
        }
        if self.fields.len() < n {
            self.fields.resize(n, String::new());
        }
        self.fields[n - 1] = raw.into();
        self
    }

    /// Sets field `n` to `text`, escaped.
    pub fn set_text(&mut self, n: usize, text: &str) -> &mut Self {
        let raw = escape(text, &self.delimiters);
        self.set_raw(n, raw)
    }

    /// Sets field `n` to components, each escaped; trailing empty ones are left out.
    pub fn set_components(&mut self, n: usize, components: &[&str]) -> &mut Self {
        let raw = self.join_components(components);
        self.set_raw(n, raw)
    }

    /// Sets field `n` to repetitions of components.
    pub fn set_repetitions(&mut self, n: usize, repetitions: &[Vec<&str>]) -> &mut Self {
        let raw: Vec<String> = repetitions
            .iter()
            .map(|r| self.join_components(r))
            .collect();
        let raw = raw.join(&self.delimiters.repetition.to_string());
        self.set_raw(n, raw)
    }

    fn join_components(&self, components: &[&str]) -> String {
        let used = components
            .iter()
            .rposition(|c| !c.is_empty())
            .map_or(0, |i| i + 1);
        components[..used]
            .iter()
            .map(|c| escape(c, &self.delimiters))
            .collect::<Vec<_>>()
            .join(&self.delimiters.component.to_string())
    }

    /// The segment as written, without its terminator.
    pub fn encode(&self) -> String {
        let sep = self.delimiters.field.to_string();
        if HEADERS.contains(&self.id.as_str()) {
            // "MSH|^~\&|…": field 1 is the separator itself, so it is not joined again.
            let rest = self.fields.get(2..).unwrap_or_default();
            let mut out = format!(
                "{}{}{}",
                self.id,
                self.delimiters.field,
                self.fields.get(1).map_or("", String::as_str)
            );
            for f in rest {
                out.push_str(&sep);
                out.push_str(f);
            }
            out
        } else {
            let mut out = self.id.clone();
            for f in &self.fields {
                out.push_str(&sep);
                out.push_str(f);
            }
            out
        }
    }

    /// Reads one line in the syntax of `delimiters` (a header line declares its own).
    fn read(line: &str, delimiters: Delimiters, sequence: usize) -> Result<Self, Hl7Error> {
        if let Some(id) = HEADERS.iter().find(|h| line.starts_with(**h)) {
            let declared = Delimiters::from_header(line)?;
            let mut segment = Segment::new(id, declared);
            // After "MSH", the separator, and the encoding characters.
            let skip = 3 + declared.field.len_utf8() + declared.encoding_characters().len();
            let rest = line.get(skip..).unwrap_or("");
            if let Some(rest) = rest.strip_prefix(declared.field) {
                segment
                    .fields
                    .extend(rest.split(declared.field).map(str::to_owned));
            }
            return Ok(segment);
        }
        let id: String = line
            .chars()
            .take_while(|c| *c != delimiters.field)
            .collect();
        let valid_id = id.len() == 3
            && id.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && id
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !valid_id {
            return Err(Hl7Error::new(
                ErrorCode::SegmentSequence,
                format!("segment {sequence} does not start with a segment id"),
            )
            .at(Location::segment("", sequence)));
        }
        let rest = &line[id.len()..];
        let fields = match rest.strip_prefix(delimiters.field) {
            Some(rest) => rest.split(delimiters.field).map(str::to_owned).collect(),
            None => Vec::new(),
        };
        Ok(Segment {
            id,
            fields,
            delimiters,
        })
    }
}

/// One message: an MSH segment and those that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    segments: Vec<Segment>,
}

impl Message {
    /// A message starting with `header` (an MSH segment).
    pub fn new(header: Segment) -> Self {
        Message {
            segments: vec![header],
        }
    }

    pub fn header(&self) -> &Segment {
        &self.segments[0]
    }

    pub fn delimiters(&self) -> Delimiters {
        self.segments[0].delimiters
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// A new segment at the end, in this message's syntax; returned to be filled in.
    pub fn push(&mut self, id: &str) -> &mut Segment {
        let segment = Segment::new(id, self.delimiters());
        self.segments.push(segment);
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// The first segment with this id.
    pub fn find(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    /// MSH-10, the sender's id for this message.
    pub fn control_id(&self) -> Option<String> {
        self.header().field(10).text()
    }

    /// MSH-9: message code, trigger event and structure (`ORU`, `R01`, `ORU_R01`).
    pub fn message_type(&self) -> (String, String, String) {
        let f = self.header().field(9);
        let part = |n| f.component(n).text().unwrap_or_default();
        (part(1), part(2), part(3))
    }

    /// The message as sent: each segment ended by a carriage return.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            out.push_str(&s.encode());
            out.push('\r');
        }
        out
    }
}

/// Messages received together, with their batch envelope if they had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// FHS, BHS, BTS and FTS as received.
    pub envelope: Vec<Segment>,
    /// Each message, or why it could not be read: one bad message does not spoil the others.
    pub messages: Vec<Result<Message, Hl7Error>>,
    /// Each message's text as received (segments ended by `\r`), in the same order.
    pub texts: Vec<String>,
}

impl Batch {
    /// Whether `input` starts with a batch envelope (FHS or BHS) rather than a message.
    pub fn is_batch(input: &str) -> bool {
        lines(input)
            .next()
            .is_some_and(|l| l.starts_with("FHS") || l.starts_with("BHS"))
    }
}

/// Text from bytes as received: UTF-8 when it is, else ISO 8859-1 (one character per byte),
/// HL7's usual 8-bit character set.
pub fn decode(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().copied().map(char::from).collect(),
    }
}

/// The segments' lines: `\r`, `\n` and `\r\n` all end one; blank lines are skipped.
fn lines(input: &str) -> impl Iterator<Item = &str> {
    input
        .trim_start_matches('\u{feff}')
        .split(['\r', '\n'])
        .filter(|l| !l.trim().is_empty())
}

/// Reads exactly one message.
pub fn parse(input: &str) -> Result<Message, Hl7Error> {
    let mut lines = lines(input);
    let first = lines.next().ok_or_else(|| {
        Hl7Error::new(ErrorCode::SegmentSequence, "the message is empty")
            .at(Location::segment("MSH", 1))
    })?;
    if !first.starts_with("MSH") {
        return Err(Hl7Error::new(
            ErrorCode::SegmentSequence,
            "a message must start with an MSH segment",
        )
        .at(Location::segment("MSH", 1)));
    }
    let mut message = Message::new(Segment::read(first, Delimiters::default(), 1)?);
    let delimiters = message.delimiters();
    for (i, line) in lines.enumerate() {
        let segment = Segment::read(line, delimiters, i + 2)?;
        if HEADERS.contains(&segment.id.as_str()) {
            return Err(Hl7Error::new(
                ErrorCode::SegmentSequence,
                format!("a second header ({}) inside one message", segment.id),
            )
            .at(Location::segment(&segment.id, 1)));
        }
        message.segments.push(segment);
    }
    Ok(message)
}

/// Reads one or more messages, in a batch envelope (FHS/BHS … BTS/FTS) or not.
pub fn parse_batch(input: &str) -> Result<Batch, Hl7Error> {
    let mut envelope = Vec::new();
    let mut chunks: Vec<Vec<&str>> = Vec::new();
    let mut delimiters = Delimiters::default();
    for line in lines(input) {
        if line.starts_with("MSH") {
            chunks.push(vec![line]);
            continue;
        }
        let envelope_segment = ["FHS", "BHS", "BTS", "FTS"]
            .iter()
            .any(|id| line.starts_with(id));
        if envelope_segment {
            let segment = Segment::read(line, delimiters, envelope.len() + 1)?;
            if HEADERS.contains(&segment.id.as_str()) {
                delimiters = segment.delimiters;
            }
            envelope.push(segment);
            continue;
        }
        match chunks.last_mut() {
            Some(chunk) => chunk.push(line),
            None => {
                return Err(Hl7Error::new(
                    ErrorCode::SegmentSequence,
                    "segments before the first MSH",
                )
                .at(Location::segment("MSH", 1)));
            }
        }
    }
    if chunks.is_empty() {
        return Err(
            Hl7Error::new(ErrorCode::SegmentSequence, "no message (no MSH segment)")
                .at(Location::segment("MSH", 1)),
        );
    }
    let texts: Vec<String> = chunks
        .into_iter()
        .map(|chunk| {
            let mut t = chunk.join("\r");
            t.push('\r');
            t
        })
        .collect();
    let messages = texts.iter().map(|t| parse(t)).collect();
    Ok(Batch {
        envelope,
        messages,
        texts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORU: &str = "MSH|^~\\&|LAB|FAC|MEDITRACK|HOSP|20240102120000||ORU^R01^ORU_R01|CTRL-1|P|2.5.1\r\
PID|1||MRN123^^^HOSP^MR~999-99-9999^^^SSA^SS||Doe^Jane^Q||19800229|F\r\
OBR|1|PLC-1|FIL-1|2345-7^Glucose^LN\r\
OBX|1|NM|2345-7^Glucose^LN||182|mg/dL|70-99|H|||F\r\
ZXT|custom\\F\\value|kept\r";

    #[test]
    fn reads_fields_components_repetitions_and_escapes() {
        let m = parse(ORU).unwrap();
        assert_eq!(m.control_id().as_deref(), Some("CTRL-1"));
        assert_eq!(
            m.message_type(),
            ("ORU".into(), "R01".into(), "ORU_R01".into())
        );
        let msh = m.header();
        assert_eq!(msh.field(1).raw(), "|");
        assert_eq!(msh.field(2).raw(), "^~\\&");
        assert_eq!(msh.field(12).text().as_deref(), Some("2.5.1"));
        let pid = m.find("PID").unwrap();
        let ids = pid.field(3).repetitions();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[1].component(4).text().as_deref(), Some("SSA"));
        assert_eq!(pid.field(5).component(2).text().as_deref(), Some("Jane"));
        assert!(pid.field(5).component(9).is_empty());
        let z = m.find("ZXT").unwrap();
        assert_eq!(z.field(1).text().as_deref(), Some("custom|value"));
        assert_eq!(m.encode(), ORU, "encodes back to what it read");
    }

    #[test]
    fn tolerates_line_feeds_and_other_delimiters() {
        let crlf = ORU.replace('\r', "\r\n");
        assert_eq!(parse(&crlf).unwrap().encode(), ORU);
        let lf = ORU.replace('\r', "\n");
        assert_eq!(parse(&lf).unwrap().encode(), ORU);
        let other = "MSH#@*$%#A#B\rPID#1##X@Y*Z";
        let m = parse(other).unwrap();
        let pid = m.find("PID").unwrap();
        assert_eq!(pid.field(3).component(2).text().as_deref(), Some("Y"));
        assert_eq!(pid.field(3).repetitions().len(), 2);
    }

    #[test]
    fn refuses_what_is_not_a_message() {
        for bad in [
            "",
            "PID|1",
            "MSH|^~|x",
            "MSH|^~\\&|A\rpid|1",
            "MSH|^~\\&|A\rPI|1",
            "MSH|^^\\&|A",
            "MSH|^~\\&|A\rMSH|^~\\&|B",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn batches_are_split_into_messages_and_a_bad_one_spoils_no_other() {
        let input = format!(
            "FHS|^~\\&|LAB\rBHS|^~\\&|LAB\r{ORU}MSH|^~\\&|LAB|FAC\r1BAD|x\r{ORU}BTS|3\rFTS|1\r"
        );
        let batch = parse_batch(&input).unwrap();
        assert_eq!(batch.envelope.len(), 4);
        assert_eq!(batch.messages.len(), 3);
        assert!(batch.messages[0].is_ok() && batch.messages[2].is_ok());
        assert!(batch.messages[1].is_err());
        assert!(parse_batch("PID|1\rMSH|^~\\&|A").is_err());
    }

    #[test]
    fn building_escapes_values_and_leaves_out_trailing_empties() {
        let mut m = Message::new(Segment::new("MSH", Delimiters::default()));
        m.push("PID")
            .set_components(5, &["O^Brien", "Pat", "", ""])
            .set_repetitions(3, &[vec!["A1", "", "", "X"], vec!["B2"]])
            .set_text(8, "F");
        assert_eq!(
            m.encode(),
            "MSH|^~\\&\rPID|||A1^^^X~B2||O\\S\\Brien^Pat|||F\r"
        );
        let back = parse(&m.encode()).unwrap();
        let pid = back.find("PID").unwrap();
        assert_eq!(pid.field(5).component(1).text().as_deref(), Some("O^Brien"));
    }
}
