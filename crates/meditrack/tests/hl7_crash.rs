//! ACK only after a durable commit, proven on the real executable: a lab sends results
//! over MLLP and the hub is killed (SIGKILL) before the lab reads the ACK, once at once
//! (the commit probably had not happened) and once a moment later (it had). The lab sends
//! again with `meditrack hl7 send`, as an interface engine would: each time exactly one
//! result is stored, however the kill fell.

#![allow(clippy::unwrap_used)]

mod common;

use common::{BIN, free_port, logged_in, serve, temp_dir};
use hl7v2::mllp::frame;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn oru(control: &str, order: &str, value: &str) -> String {
    format!(
        "MSH|^~\\&|LIS|CITYLAB|MEDITRACK|HOSP|20240315083000||ORU^R01|{control}|P|2.5.1\r\
PID|1||MRN-1^^^HOSP^MR||Synthetic^Dana\r\
OBR|1|{order}-1^MEDITRACK|F-{control}^CITYLAB|2345-7^Glucose^LN\r\
OBX|1|NM|2345-7^Glucose^LN||{value}|mg/dL|70-99|H|||F\r"
    )
}

async fn start(dir: &Path, port: u16, hl7: u16) -> common::Process {
    serve(
        dir,
        port,
        &[],
        &[("MEDITRACK_HL7_LISTEN", &format!("127.0.0.1:{hl7}"))],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_whose_ack_was_lost_in_a_crash_is_stored_exactly_once_when_sent_again() {
    let dir = temp_dir("hl7-crash");
    let (port, hl7) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let mut hub = start(&dir, port, hl7).await;
    let (client, _) = logged_in(&dir, &[], &base, "DOCTOR,LAB_TECHNICIAN").await;

    for (round, wait) in [(1, Duration::ZERO), (2, Duration::from_millis(500))] {
        let body = json!({
            "patientId": "01890a5d-ac96-774b-bcce-b302099a8057",
            "tests": [{"testCode": "GLU", "testName": "Glucose", "loincCode": "2345-7"}],
            "orderingProviderId": "NPI1", "orderingProviderName": "Synthetic Provider"
        });
        let order: Value = client
            .post(format!("{base}/api/v1/lab/orders"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = order["id"].as_str().unwrap().to_owned();
        let message = oru(&format!("CRASH-{round}"), &id, "150");

        // Sent, and the hub dies before the lab reads any answer.
        let mut socket = TcpStream::connect(("127.0.0.1", hl7)).await.unwrap();
        socket.write_all(&frame(message.as_bytes())).await.unwrap();
        tokio::time::sleep(wait).await;
        hub.kill_9();
        drop(socket);
        hub = start(&dir, port, hl7).await;

        // The lab did not get its ACK, so it sends again.
        let file = dir.join(format!("round-{round}.hl7"));
        std::fs::write(&file, message.replace('\r', "\n")).unwrap();
        let sent = Command::new(BIN)
            .args([
                "hl7",
                "send",
                file.to_str().unwrap(),
                "--to",
                &format!("127.0.0.1:{hl7}"),
            ])
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&sent.stdout);
        assert!(
            sent.status.success(),
            "round {round}: {report} {}",
            String::from_utf8_lossy(&sent.stderr)
        );
        assert_eq!(report.trim(), format!("CRASH-{round} AA"));

        let stored: Value = client
            .get(format!("{base}/api/v1/lab/results/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let test = &stored["tests"][0];
        assert_eq!(test["result"]["value"], "150", "round {round}: {stored}");
        assert_eq!(
            test["history"].as_array().unwrap().len(),
            0,
            "round {round}: one result, not two"
        );
    }
    hub.kill_9();
    let _ = std::fs::remove_dir_all(dir);
}
