//! `meditrack hl7 send FILE --to host:port`: sends the messages of a file over MLLP, one at
//! a time on one connection, each after the previous one's ACK, and reports the ACKs.

use hl7v2::{Batch, decode};
use std::path::Path;
use std::time::Duration;

/// The messages of a file: a batch file goes as one frame (its ACKs come back together);
/// otherwise each MSH starts a message. Line ends become the segment terminator `\r`.
pub fn messages_of(text: &str) -> Vec<Vec<u8>> {
    let lines: Vec<&str> = text
        .split(['\r', '\n'])
        .filter(|l| !l.trim().is_empty())
        .collect();
    if Batch::is_batch(text) {
        return vec![(lines.join("\r") + "\r").into_bytes()];
    }
    let mut out: Vec<String> = Vec::new();
    for line in lines {
        match out.last_mut() {
            Some(m) if !line.starts_with("MSH") => {
                m.push_str(line);
                m.push('\r');
            }
            _ => out.push(format!("{line}\r")),
        }
    }
    out.into_iter().map(String::into_bytes).collect()
}

/// One line per ACK (`CONTROL-ID AA`, or the code and the error), and whether all were AA.
pub async fn send(file: &Path, to: &str, timeout: Duration) -> Result<(String, bool), String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let messages = messages_of(&decode(&bytes));
    if messages.is_empty() {
        return Err(format!("{} holds no message", file.display()));
    }
    let acks = lab::mllp::send(to, &messages, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let mut report = String::new();
    let mut all_accepted = true;
    for ack in acks {
        let text = decode(&ack);
        for m in hl7v2::parse_batch(&text)
            .map(|b| b.messages)
            .unwrap_or_default()
            .into_iter()
            .flatten()
        {
            let msa = m.find("MSA");
            let field = |n| msa.and_then(|s| s.field(n).text()).unwrap_or_default();
            let code = field(1);
            all_accepted &= code == "AA";
            report.push_str(&format!("{} {code}", field(2)));
            let detail = field(3);
            if !detail.is_empty() {
                report.push_str(&format!(": {detail}"));
            }
            report.push('\n');
        }
    }
    Ok((report, all_accepted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_split_at_each_header_and_a_batch_goes_whole() {
        let two = "MSH|^~\\&|A\nPID|1\r\nMSH|^~\\&|B\n\nOBR|1\n";
        let m = messages_of(two);
        assert_eq!(
            m,
            [
                b"MSH|^~\\&|A\rPID|1\r".to_vec(),
                b"MSH|^~\\&|B\rOBR|1\r".to_vec()
            ]
        );
        let batch = "BHS|^~\\&|A\nMSH|^~\\&|A\nMSH|^~\\&|B\nBTS|2\n";
        assert_eq!(messages_of(batch).len(), 1);
    }
}
