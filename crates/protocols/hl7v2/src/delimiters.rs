use crate::{ErrorCode, Hl7Error, Location};

/// The separators of one message, from its header: MSH-1 and the encoding characters of
/// MSH-2 (component, repetition, escape, subcomponent, and from v2.7 truncation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: char,
    pub subcomponent: char,
    pub truncation: Option<char>,
}

impl Default for Delimiters {
    /// `|^~\&`, what nearly every sender uses.
    fn default() -> Self {
        Delimiters {
            field: '|',
            component: '^',
            repetition: '~',
            escape: '\\',
            subcomponent: '&',
            truncation: None,
        }
    }
}

impl Delimiters {
    /// MSH-2 as written.
    pub fn encoding_characters(&self) -> String {
        let mut s: String = [
            self.component,
            self.repetition,
            self.escape,
            self.subcomponent,
        ]
        .iter()
        .collect();
        s.extend(self.truncation);
        s
    }

    /// The delimiters a header segment (`MSH`, `BHS`, `FHS`) declares.
    pub(crate) fn from_header(line: &str) -> Result<Self, Hl7Error> {
        let id = line.get(..3).unwrap_or(line);
        let bad = |what: &str, field: usize| {
            Hl7Error::new(ErrorCode::DataType, format!("{id}-{field}: {what}"))
                .at(Location::field(id, 1, field))
        };
        let mut chars = line.chars().skip(3);
        let field = chars
            .next()
            .ok_or_else(|| bad("the field separator is missing", 1))?;
        let encoding: Vec<char> = chars.take_while(|c| *c != field).collect();
        if !(4..=5).contains(&encoding.len()) {
            return Err(bad(
                "the encoding characters must be 4 (or 5) characters",
                2,
            ));
        }
        let d = Delimiters {
            field,
            component: encoding[0],
            repetition: encoding[1],
            escape: encoding[2],
            subcomponent: encoding[3],
            truncation: encoding.get(4).copied(),
        };
        let all: Vec<char> = [d.field, d.component, d.repetition, d.escape, d.subcomponent]
            .into_iter()
            .chain(d.truncation)
            .collect();
        let distinct = all.iter().enumerate().all(|(i, c)| !all[..i].contains(c));
        if !distinct
            || all
                .iter()
                .any(|c| c.is_alphanumeric() || c.is_whitespace() || c.is_control())
        {
            return Err(bad(
                "delimiters must be distinct and neither letters, digits nor spaces",
                2,
            ));
        }
        Ok(d)
    }
}
