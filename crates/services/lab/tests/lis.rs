//! The whole loop with a laboratory, on both backends: an order placed through REST goes
//! out as an ORM to a (test) LIS over MLLP; the LIS answers with an ORU naming our order;
//! the result lands on the order and on the patient's timeline, and being critical, raises
//! `lab.critical.result.v1`; an order cancelled afterwards is cancelled at the LIS. An LIS
//! that refuses an order gets it dead-lettered.

#![allow(clippy::unwrap_used)]

use hl7v2::mllp::{Deframer, Frame, frame};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use testkit::{TEST_TENANT, TestApp, client_with, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A test LIS: answers every message with `code` and hands each message to the test.
async fn fake_lis(code: &'static str) -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut d = Deframer::new(1 << 20);
                let mut buf = [0u8; 8192];
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    for f in d.push(&buf[..n]) {
                        let Frame::Message(m) = f else { continue };
                        let text = String::from_utf8(m).unwrap();
                        let message = hl7v2::parse(&text).unwrap();
                        let ack = hl7v2::ack::acknowledge(
                            Some(&message),
                            if code == "AA" {
                                hl7v2::ack::AckCode::Accept
                            } else {
                                hl7v2::ack::AckCode::Error
                            },
                            None,
                            "LIS-ACK",
                            chrono::Utc::now(),
                        );
                        let _ = tx.send(text);
                        if socket
                            .write_all(&frame(ack.encode().as_bytes()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn received(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .expect("the LIS got the order")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_order_goes_to_the_lis_and_its_result_comes_back_to_the_timeline() {
    let (lis, rx) = fake_lis("AA").await;
    let app = TestApp::sqlite_with(|c| c.lis_endpoint = Some(lis)).await;
    round_trip(app, rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_order_goes_to_the_lis_and_its_result_comes_back_to_the_timeline() {
    let (lis, rx) = fake_lis("AA").await;
    let Some(app) = TestApp::postgres_with(|c| c.lis_endpoint = Some(lis)).await else {
        return;
    };
    round_trip(app, rx).await;
}

/// Places `order` through the API; its id.
async fn place(app: &TestApp, doctor: &reqwest::Client, order: &Value) -> String {
    let (status, o) = json(
        doctor
            .post(app.url("/api/v1/lab/orders"))
            .json(order)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{o}");
    o["id"].as_str().unwrap().to_owned()
}

async fn round_trip(app: TestApp, mut rx: mpsc::UnboundedReceiver<String>) {
    let body = json!({"firstName": "Loop", "lastName": "Closed", "dateOfBirth": "1970-01-01"});
    let (_, p) = json(app.post_json("/api/v1/patients", &body).await).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let doctor = client_with(&app.token(&["DOCTOR"], TEST_TENANT, None));
    let order = json!({
        "patientId": pid, "mrn": p["mrn"],
        "tests": [{"testCode": "K", "testName": "Potassium", "loincCode": "2823-3"}],
        "priority": "STAT",
        "orderingProviderId": "NPI1", "orderingProviderName": "Synthetic Provider",
        "diagnosisCodes": ["E87.5"]
    });
    let id = place(&app, &doctor, &order).await;

    let orm = received(&mut rx).await;
    let m = hl7v2::parse(&orm).unwrap();
    assert_eq!(m.message_type().0, "ORM");
    let orc = m.find("ORC").unwrap();
    assert_eq!(orc.field(1).raw(), "NW");
    let placer = orc.field(2).component(1).text().unwrap();
    assert_eq!(placer, format!("{id}-1"));
    let obr = m.find("OBR").unwrap();
    assert_eq!(obr.field(4).component(1).raw(), "K");
    assert_eq!(obr.field(4).component(4).raw(), "2823-3");
    assert_eq!(
        m.find("PID").unwrap().field(3).component(1).text(),
        p["mrn"].as_str().map(str::to_owned)
    );
    assert_eq!(m.find("DG1").unwrap().field(3).component(1).raw(), "E87.5");

    // The LIS reports a critical potassium for it.
    let oru = format!(
        "MSH|^~\\&|LIS|CITYLAB|MEDITRACK|HOSP|20240315083000||ORU^R01|LIS-1|P|2.5.1\r\
PID|1||{mrn}^^^HOSP^MR\r\
OBR|1|{placer}^MEDITRACK|LAB-9^CITYLAB|2823-3^Potassium^LN\r\
OBX|1|NM|2823-3^Potassium^LN||7.2|mmol/L|3.5-5.1|HH|||F\r",
        mrn = p["mrn"].as_str().unwrap()
    );
    let acks = lab::mllp::send(
        &app.mllp.unwrap().to_string(),
        &[oru.into_bytes()],
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&acks[0]).contains("MSA|AA|LIS-1"));

    let deadline = Instant::now() + Duration::from_secs(15);
    let kinds = loop {
        let (_, page) = json(app.get(&format!("/api/v1/patients/{pid}/timeline")).await).await;
        let kinds: Vec<String> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
            .collect();
        if kinds.iter().any(|k| k == "LAB_CRITICAL_RESULT")
            && kinds.iter().any(|k| k == "LAB_RESULTS_AVAILABLE")
        {
            break kinds;
        }
        assert!(Instant::now() < deadline, "{kinds:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(kinds.contains(&"REGISTERED".to_owned()));
    let (_, results) = json(
        doctor
            .get(app.url(&format!("/api/v1/lab/results/{id}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(results["status"], "COMPLETED");
    assert_eq!(results["tests"][0]["result"]["value"], "7.2");

    // An order cancelled after it went out is cancelled at the LIS too: each of its tests
    // by the placer number it was sent with.
    let order = json!({
        "patientId": pid, "mrn": p["mrn"],
        "tests": [{"testCode": "K", "testName": "Potassium"}, {"testCode": "NA", "testName": "Sodium"}],
        "orderingProviderId": "NPI1", "orderingProviderName": "Synthetic Provider"
    });
    let id = place(&app, &doctor, &order).await;
    let placed = received(&mut rx).await;
    assert_eq!(
        hl7v2::parse(&placed)
            .unwrap()
            .find("ORC")
            .unwrap()
            .field(1)
            .raw(),
        "NW"
    );
    let (status, cancelled) = json(
        doctor
            .post(app.url(&format!("/api/v1/lab/orders/{id}/cancel")))
            .json(&json!({"reason": "drawn in error"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    let ca = received(&mut rx).await;
    let m = hl7v2::parse(&ca).unwrap();
    let orcs: Vec<(String, Option<String>)> = m
        .segments()
        .iter()
        .filter(|s| s.id() == "ORC")
        .map(|s| (s.field(1).raw().to_owned(), s.field(2).component(1).text()))
        .collect();
    assert_eq!(
        orcs,
        [
            ("CA".to_owned(), Some(format!("{id}-1"))),
            ("CA".to_owned(), Some(format!("{id}-2")))
        ],
        "{ca}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_the_lis_refuses_is_dead_lettered() {
    let (lis, mut rx) = fake_lis("AE").await;
    let app = TestApp::sqlite_with(|c| c.lis_endpoint = Some(lis)).await;
    let doctor = client_with(&app.token(&["DOCTOR"], TEST_TENANT, None));
    let order = json!({
        "patientId": "01890a5d-ac96-774b-bcce-b302099a8057",
        "tests": [{"testCode": "K", "testName": "Potassium"}],
        "orderingProviderId": "NPI1", "orderingProviderName": "Synthetic Provider"
    });
    let answer = doctor
        .post(app.url("/api/v1/lab/orders"))
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    received(&mut rx).await;
    let log = app.event_log().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let letters: Vec<Value> = log
            .records("dlq-events", 0, 100)
            .await
            .unwrap()
            .iter()
            .map(|d| serde_json::from_str(&d.payload).unwrap())
            .collect();
        if let Some(l) = letters.iter().find(|l| l["consumer"] == "lab-lis") {
            assert_eq!(l["attempts"], 1, "a refusal is not retried: {l}");
            assert!(l["error"].as_str().unwrap().contains("refused"), "{l}");
            break;
        }
        assert!(Instant::now() < deadline, "not dead-lettered: {letters:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
