use std::fmt;

/// HL7 table 0357 (message error condition codes), as ERR-3 carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    SegmentSequence,
    RequiredFieldMissing,
    DataType,
    TableValueNotFound,
    UnsupportedMessageType,
    UnsupportedEventCode,
    UnsupportedProcessingId,
    UnsupportedVersionId,
    UnknownKey,
    DuplicateKey,
    RecordLocked,
    ApplicationError,
}

impl ErrorCode {
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::SegmentSequence => 100,
            ErrorCode::RequiredFieldMissing => 101,
            ErrorCode::DataType => 102,
            ErrorCode::TableValueNotFound => 103,
            ErrorCode::UnsupportedMessageType => 200,
            ErrorCode::UnsupportedEventCode => 201,
            ErrorCode::UnsupportedProcessingId => 202,
            ErrorCode::UnsupportedVersionId => 203,
            ErrorCode::UnknownKey => 204,
            ErrorCode::DuplicateKey => 205,
            ErrorCode::RecordLocked => 206,
            ErrorCode::ApplicationError => 207,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            ErrorCode::SegmentSequence => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataType => "Data type error",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedEventCode => "Unsupported event code",
            ErrorCode::UnsupportedProcessingId => "Unsupported processing id",
            ErrorCode::UnsupportedVersionId => "Unsupported version id",
            ErrorCode::UnknownKey => "Unknown key identifier",
            ErrorCode::DuplicateKey => "Duplicate key identifier",
            ErrorCode::RecordLocked => "Application record locked",
            ErrorCode::ApplicationError => "Application internal error",
        }
    }

    /// Whether the sender should not resend as is (AR) rather than fix the content (AE):
    /// the message is of a kind this receiver does not take.
    pub fn is_rejection(self) -> bool {
        matches!(
            self,
            ErrorCode::UnsupportedMessageType
                | ErrorCode::UnsupportedEventCode
                | ErrorCode::UnsupportedProcessingId
                | ErrorCode::UnsupportedVersionId
        )
    }
}

/// Where in a message something is: ERR-2 (segment id, its occurrence, field, repetition,
/// component, subcomponent), all counted from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub segment: String,
    pub sequence: usize,
    pub field: Option<usize>,
    pub repetition: Option<usize>,
    pub component: Option<usize>,
    pub subcomponent: Option<usize>,
}

impl Location {
    pub fn segment(id: &str, sequence: usize) -> Self {
        Location {
            segment: id.to_owned(),
            sequence,
            field: None,
            repetition: None,
            component: None,
            subcomponent: None,
        }
    }

    pub fn field(id: &str, sequence: usize, field: usize) -> Self {
        Location {
            field: Some(field),
            ..Self::segment(id, sequence)
        }
    }

    pub fn component(id: &str, sequence: usize, field: usize, component: usize) -> Self {
        Location {
            component: Some(component),
            ..Self::field(id, sequence, field)
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.segment)?;
        if self.sequence > 1 {
            write!(f, "[{}]", self.sequence)?;
        }
        if let Some(field) = self.field {
            write!(f, "-{field}")?;
            if let Some(c) = self.component {
                write!(f, ".{c}")?;
                if let Some(s) = self.subcomponent {
                    write!(f, ".{s}")?;
                }
            }
        }
        Ok(())
    }
}

/// Why a message cannot be taken. `message` names fields, never their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Hl7Error {
    pub code: ErrorCode,
    /// Boxed: errors travel in every `Result` of the parser, and are rare.
    pub location: Option<Box<Location>>,
    pub message: String,
}

impl Hl7Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Hl7Error {
            code,
            location: None,
            message: message.into(),
        }
    }

    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(Box::new(location));
        self
    }

    /// A required field that is empty.
    pub fn missing(segment: &str, sequence: usize, field: usize, what: &str) -> Self {
        Hl7Error::new(
            ErrorCode::RequiredFieldMissing,
            format!("{segment}-{field} ({what}) is required"),
        )
        .at(Location::field(segment, sequence, field))
    }

    /// A field whose value is not of its type (a date that is not a date).
    pub fn malformed(segment: &str, sequence: usize, field: usize, what: &str) -> Self {
        Hl7Error::new(
            ErrorCode::DataType,
            format!("{segment}-{field} ({what}) is not valid"),
        )
        .at(Location::field(segment, sequence, field))
    }
}
