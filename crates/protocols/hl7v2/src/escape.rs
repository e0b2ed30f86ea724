//! HL7 escape sequences. A value's delimiters are written `\F\` (field), `\S\` (component),
//! `\T\` (subcomponent), `\R\` (repetition), `\E\` (escape) and, from v2.7, `\P\`
//! (truncation); other characters by their bytes as `\Xhh…\`. Reading also takes the
//! formatting escapes: `\.br\` is a line break, `\H\` and `\N\` (highlighting) are dropped,
//! and sequences we do not interpret (`\Cxxyy\`, `\Mxxyyzz\`, `\Z…\`, `\.sp\`, …) are kept
//! as they were written.

use crate::Delimiters;

/// `text` as a value in a message with delimiters `d`.
pub fn escape(text: &str, d: &Delimiters) -> String {
    let mut out = String::with_capacity(text.len());
    let e = d.escape;
    for c in text.chars() {
        let named = if c == d.field {
            Some('F')
        } else if c == d.component {
            Some('S')
        } else if c == d.subcomponent {
            Some('T')
        } else if c == d.repetition {
            Some('R')
        } else if c == d.escape {
            Some('E')
        } else if Some(c) == d.truncation {
            Some('P')
        } else {
            None
        };
        match named {
            Some(n) => {
                out.push(e);
                out.push(n);
                out.push(e);
            }
            // Segment terminators and other control characters cannot appear as they are.
            None if c.is_control() => {
                out.push(e);
                out.push('X');
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("{b:02X}"));
                }
                out.push(e);
            }
            None => out.push(c),
        }
    }
    out
}

/// The text a value (as written in a message with delimiters `d`) stands for.
pub fn unescape(raw: &str, d: &Delimiters) -> String {
    let e = d.escape;
    if !raw.contains(e) {
        return raw.to_owned();
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find(e) {
        out.push_str(&rest[..start]);
        let after = &rest[start + e.len_utf8()..];
        let Some(end) = after.find(e) else {
            // An escape character that opens nothing: keep it as written.
            out.push_str(&rest[start..]);
            return out;
        };
        let sequence = &after[..end];
        match sequence {
            "F" => out.push(d.field),
            "S" => out.push(d.component),
            "T" => out.push(d.subcomponent),
            "R" => out.push(d.repetition),
            "E" => out.push(d.escape),
            "P" if d.truncation.is_some() => out.extend(d.truncation),
            ".br" => out.push('\n'),
            "H" | "N" => {}
            _ => match sequence.strip_prefix('X').and_then(hex) {
                Some(text) => out.push_str(&text),
                None => {
                    out.push(e);
                    out.push_str(sequence);
                    out.push(e);
                }
            },
        }
        rest = &after[end + e.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// `\Xhh…\`: bytes in hexadecimal, as UTF-8 when they are, else one character per byte
/// (ISO 8859-1, HL7's usual 8-bit character set).
fn hex(digits: &str) -> Option<String> {
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok())
        .collect();
    let bytes = bytes?;
    Some(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => e.into_bytes().into_iter().map(char::from).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters_and_controls_are_escaped_and_read_back() {
        let d = Delimiters::default();
        let text = "a|b^c&d~e\\f\rg\nh";
        let escaped = escape(text, &d);
        assert_eq!(escaped, "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X0D\\g\\X0A\\h");
        assert_eq!(unescape(&escaped, &d), text);
    }

    #[test]
    fn formatting_and_unknown_sequences() {
        let d = Delimiters::default();
        assert_eq!(unescape("line1\\.br\\line2", &d), "line1\nline2");
        assert_eq!(unescape("\\H\\bold\\N\\", &d), "bold");
        assert_eq!(unescape("\\X4A4B\\", &d), "JK");
        assert_eq!(unescape("\\XC3A9\\", &d), "é");
        assert_eq!(unescape("\\XE9\\", &d), "é", "a Latin-1 byte");
        assert_eq!(unescape("\\Zlocal\\x", &d), "\\Zlocal\\x");
        assert_eq!(unescape("\\X4\\", &d), "\\X4\\", "odd hex is kept");
        assert_eq!(unescape("trailing\\", &d), "trailing\\");
        assert_eq!(unescape("\\C2842\\", &d), "\\C2842\\");
    }
}
