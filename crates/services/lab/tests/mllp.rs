//! HL7 over MLLP on real TCP sockets, on both backends: results land on their orders (or in
//! the unmatched queue, never nowhere), ACKs come only after the commit and name what was
//! wrong, resends have no second effect, and framing survives split reads and noise.

#![allow(clippy::unwrap_used)]

use hl7v2::mllp::{Deframer, Frame, frame};
use serde_json::{Value, json};
use std::time::Duration;
use testkit::{TEST_TENANT, TestApp, client_with, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

testkit::on_both_backends!(
    results_land_on_their_order_once_however_often_they_are_sent,
    a_stream_of_messages_split_anywhere_with_noise_between_gets_one_ack_each,
    results_for_unknown_orders_wait_in_the_unmatched_queue,
    bad_messages_get_ae_or_ar_naming_the_field_and_change_nothing,
    orders_from_an_ehr_are_placed_once_and_can_be_cancelled,
    a_batch_is_acknowledged_message_by_message,
    a_batch_is_taken_in_order_each_message_seeing_those_before_it,
    batches_for_one_order_sent_at_once_on_many_connections_all_land_once,
    batches_over_the_same_orders_sent_at_once_each_build_on_the_last,
    adt_messages_register_and_update_patients_through_the_patient_service,
    nothing_of_a_messages_content_reaches_the_logs,
    results_for_one_order_sent_at_once_on_many_connections_all_land_once,
    two_result_groups_for_one_order_in_one_message_both_land,
    a_batch_of_results_stores_what_its_messages_store_one_at_a_time,
);

const TIMEOUT: Duration = Duration::from_secs(10);

fn addr(app: &TestApp) -> String {
    app.mllp.unwrap().to_string()
}

async fn send(app: &TestApp, message: &str) -> String {
    let acks = lab::mllp::send(&addr(app), &[message.as_bytes().to_vec()], TIMEOUT)
        .await
        .unwrap();
    String::from_utf8(acks[0].clone()).unwrap()
}

/// Sends each frame on a connection of its own, all at once; their ACKs, in order.
async fn send_at_once(app: &TestApp, frames: impl Iterator<Item = String>) -> Vec<String> {
    let sends: Vec<_> = frames
        .map(|frame| {
            let address = addr(app);
            tokio::spawn(async move {
                let acks = lab::mllp::send(&address, &[frame.into_bytes()], TIMEOUT)
                    .await
                    .unwrap();
                String::from_utf8(acks[0].clone()).unwrap()
            })
        })
        .collect();
    let mut acks = Vec::with_capacity(sends.len());
    for s in sends {
        acks.push(s.await.unwrap());
    }
    acks
}

/// MSA-1 of an ACK.
fn code(ack: &str) -> &str {
    ack.split('\r')
        .find(|s| s.starts_with("MSA|"))
        .and_then(|s| s.split('|').nth(1))
        .unwrap_or("")
}

fn err_location(ack: &str) -> String {
    let m = hl7v2::parse(ack).unwrap();
    m.segments()
        .iter()
        .find_map(hl7v2::segments::ErrorSegment::of)
        .and_then(|e| e.location())
        .unwrap_or_default()
}

fn staff(app: &TestApp) -> reqwest::Client {
    client_with(&app.token(&["DOCTOR", "LAB_TECHNICIAN"], TEST_TENANT, None))
}

async fn order(app: &TestApp) -> String {
    let body = json!({
        "patientId": "01890a5d-ac96-774b-bcce-b302099a8057",
        "tests": [{"testCode": "GLU", "testName": "Glucose", "loincCode": "2345-7"},
                  {"testCode": "K", "testName": "Potassium", "loincCode": "2823-3"}],
        "priority": "STAT",
        "orderingProviderId": "NPI1", "orderingProviderName": "Synthetic Provider"
    });
    let (status, o) = json(
        staff(app)
            .post(app.url("/api/v1/lab/orders"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{o}");
    o["id"].as_str().unwrap().to_owned()
}

fn oru(control: &str, placer: &str, glucose: &str, flag: &str) -> String {
    format!(
        "MSH|^~\\&|LIS|CITYLAB|MEDITRACK|HOSP|20240315083000||ORU^R01^ORU_R01|{control}|P|2.5.1\r\
PID|1||MRN-UNKNOWN^^^HOSP^MR||Synthetic^Dana||19750412|F\r\
OBR|1|{placer}^MEDITRACK|F-{control}^CITYLAB|24323-8^Metabolic panel^LN|||20240315071500\r\
OBX|1|NM|2345-7^Glucose^LN||{glucose}|mg/dL|70-99|{flag}|||F|||20240315080000\r\
OBX|2|NM|2823-3^Potassium^LN||4.1|mmol/L|3.5-5.1|N|||F\r"
    )
}

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, body) = json(staff(app).get(app.url(path)).send().await.unwrap()).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

async fn lab_event_types(app: &TestApp) -> Vec<String> {
    let db = app.db("lab").await;
    let rows = store::outbox::read(&db, 0, 10_000).await.unwrap();
    db.close().await;
    rows.into_iter().map(|r| r.envelope.0.event_type).collect()
}

async fn results_land_on_their_order_once_however_often_they_are_sent(app: TestApp) {
    let id = order(&app).await;
    let message = oru("LAB-1", &format!("{id}-1"), "612", "HH");
    let first = send(&app, &message).await;
    assert_eq!(code(&first), "AA", "{first}");
    assert!(
        first.contains("|LAB-1\r") || first.contains("MSA|AA|LAB-1"),
        "echoes MSH-10: {first}"
    );
    // Sent again (its ACK was lost, say): the same answer, no second effect.
    let again = send(&app, &message).await;
    assert_eq!(again, first);

    let o = get(&app, &format!("/api/v1/lab/orders/{id}")).await;
    assert_eq!(
        o["status"], "COMPLETED",
        "final results from the lab complete it: {o}"
    );
    assert_eq!(o["fillerOrder"], "F-LAB-1");
    let glu = &o["tests"][0];
    assert_eq!(
        (
            glu["result"]["value"].as_str(),
            glu["result"]["final"].as_bool()
        ),
        (Some("612"), Some(true))
    );
    assert_eq!(
        glu["history"].as_array().unwrap().len(),
        0,
        "one result, not two"
    );
    let types = lab_event_types(&app).await;
    assert_eq!(
        types,
        [
            "lab.test.ordered.v1",
            "lab.critical.result.v1",
            "lab.results.available.v1"
        ]
    );
    let messages = get(&app, "/api/v1/lab/messages").await;
    let items = messages["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        (
            items[0]["status"].as_str(),
            items[0]["ackCode"].as_str(),
            items[0]["controlId"].as_str()
        ),
        (Some("APPLIED"), Some("AA"), Some("LAB-1"))
    );
    let one = get(
        &app,
        &format!("/api/v1/lab/messages/{}", items[0]["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(one["messageType"], "ORU^R01");
}

async fn a_stream_of_messages_split_anywhere_with_noise_between_gets_one_ack_each(app: TestApp) {
    let id = order(&app).await;
    let mut stream = b"\r\n garbage before \x1c\r".to_vec();
    for n in 1..=3 {
        stream.extend(frame(oru(&format!("S-{n}"), &id, "90", "N").as_bytes()));
        stream.extend(b"noise");
    }
    let mut socket = TcpStream::connect(addr(&app)).await.unwrap();
    for piece in stream.chunks(7) {
        socket.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut deframer = Deframer::new(1 << 20);
    let mut acks = Vec::new();
    let mut buf = [0u8; 4096];
    while acks.len() < 3 {
        let n = tokio::time::timeout(TIMEOUT, socket.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early");
        for f in deframer.push(&buf[..n]) {
            let Frame::Message(m) = f else {
                panic!("{f:?}")
            };
            acks.push(String::from_utf8(m).unwrap());
        }
    }
    for (n, ack) in acks.iter().enumerate() {
        assert_eq!(code(ack), "AA", "{ack}");
        assert!(
            ack.contains(&format!("MSA|AA|S-{}", n + 1)),
            "in order: {ack}"
        );
    }
    // The same connection still takes a message after an oversized one.
    let huge = format!(
        "MSH|^~\\&|A|B|||20240101||ORU^R01|BIG|P|2.5\rNTE|1||{}",
        "x".repeat(1_100_000)
    );
    socket.write_all(&frame(huge.as_bytes())).await.unwrap();
    socket
        .write_all(&frame(oru("S-4", &id, "91", "N").as_bytes()))
        .await
        .unwrap();
    let mut more = Vec::new();
    while more.len() < 2 {
        let n = tokio::time::timeout(TIMEOUT, socket.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early");
        for f in deframer.push(&buf[..n]) {
            let Frame::Message(m) = f else {
                panic!("{f:?}")
            };
            more.push(String::from_utf8(m).unwrap());
        }
    }
    assert_eq!((code(&more[0]), code(&more[1])), ("AR", "AA"), "{more:?}");
}

async fn results_for_unknown_orders_wait_in_the_unmatched_queue(app: TestApp) {
    let ack = send(&app, &oru("U-1", "NOT-OURS-77", "100", "H")).await;
    assert_eq!(code(&ack), "AA", "accepted, stored, not dropped: {ack}");
    let queue = get(&app, "/api/v1/lab/results/unmatched").await;
    let items = queue["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{queue}");
    let u = &items[0];
    assert_eq!(
        (
            u["reason"].as_str(),
            u["placerOrder"].as_str(),
            u["patientIdentifier"].as_str()
        ),
        (
            Some("no order found"),
            Some("NOT-OURS-77"),
            Some("MRN-UNKNOWN")
        )
    );
    assert_eq!(u["observations"].as_array().unwrap().len(), 2);
    assert_eq!(u["observations"][0]["value"], "100");
    let messages = get(&app, "/api/v1/lab/messages").await;
    assert_eq!(messages["items"][0]["status"], "UNMATCHED");

    // Known order, unknown test: the rest lands, that one waits.
    let id = order(&app).await;
    let msg = oru("U-2", &id, "95", "N").replace("2823-3^Potassium^LN", "9999-9^Mystery^LN");
    assert_eq!(code(&send(&app, &msg).await), "AA");
    let queue = get(&app, "/api/v1/lab/results/unmatched").await;
    assert_eq!(queue["items"][0]["reason"], "no such test in the order");
    assert_eq!(
        get(&app, "/api/v1/lab/messages").await["items"][0]["status"],
        "PARTLY_UNMATCHED"
    );
    let patient = client_with(&app.token(
        &["PATIENT"],
        TEST_TENANT,
        Some("01890a5d-ac96-774b-bcce-b302099a8057"),
    ));
    let r = patient
        .get(app.url("/api/v1/lab/results/unmatched"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Someone decides the first message's results are this order's.
    let first = queue["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["reason"] == "no order found")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = order(&app).await;
    let url = app.url(&format!("/api/v1/lab/results/unmatched/{first}/reconcile"));
    let (status, reconciled) = json(
        staff(&app)
            .post(&url)
            .json(&json!({"orderId": other}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{reconciled}");
    assert_eq!(reconciled["status"], "COMPLETED", "{reconciled}");
    assert_eq!(reconciled["tests"][0]["result"]["value"], "100");
    let (status, again) = json(
        staff(&app)
            .post(&url)
            .json(&json!({"orderId": other}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, again["code"].as_str()),
        (409, Some("lab.already_reconciled"))
    );
    let queue = get(&app, "/api/v1/lab/results/unmatched").await;
    assert_eq!(
        queue["items"].as_array().unwrap().len(),
        1,
        "only the mystery test waits"
    );
}

async fn bad_messages_get_ae_or_ar_naming_the_field_and_change_nothing(app: TestApp) {
    let id = order(&app).await;
    let unsupported = "MSH|^~\\&|A|B|||20240101||SIU^S12|X-1|P|2.5\rSCH|1";
    let ack = send(&app, unsupported).await;
    assert_eq!(
        (code(&ack), err_location(&ack).as_str()),
        ("AR", "MSH-9"),
        "{ack}"
    );
    let missing = oru("X-2", &id, "90", "N").replace("24323-8^Metabolic panel^LN", "");
    let ack = send(&app, &missing).await;
    assert_eq!(
        (code(&ack), err_location(&ack).as_str()),
        ("AE", "OBR-4"),
        "{ack}"
    );
    let bad_date = oru("X-3", &id, "90", "N").replace("20240315080000", "yesterday");
    let ack = send(&app, &bad_date).await;
    assert_eq!(
        (code(&ack), err_location(&ack).as_str()),
        ("AE", "OBX-14"),
        "{ack}"
    );
    let not_hl7 = send(&app, "hello there").await;
    assert_eq!(code(&not_hl7), "AR", "{not_hl7}");

    let o = get(&app, &format!("/api/v1/lab/orders/{id}")).await;
    assert_eq!(
        (o["status"].as_str(), o["version"].as_i64()),
        (Some("PENDING"), Some(1))
    );
    assert_eq!(lab_event_types(&app).await, ["lab.test.ordered.v1"]);
    let messages = get(&app, "/api/v1/lab/messages").await;
    let statuses: Vec<&str> = messages["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["REJECTED"; 4]);
    assert_eq!(messages["items"][1]["errorLocation"], "OBX-14");
}

async fn orders_from_an_ehr_are_placed_once_and_can_be_cancelled(app: TestApp) {
    let body = json!({"firstName": "Hl7", "lastName": "Order", "dateOfBirth": "1990-01-01"});
    let (_, p) = json(app.post_json("/api/v1/patients", &body).await).await;
    let mrn = p["mrn"].as_str().unwrap().to_owned();
    let orm = |control: &str, action: &str| {
        format!(
            "MSH|^~\\&|EHR|CLINIC|MEDITRACK|LAB|20240102||ORM^O01|{control}|P|2.3\r\
PID|1||{mrn}^^^CLINIC^MR||Order^Hl7||19900101|F\r\
ORC|{action}|EHR-555|||||^^^^^S||20240102101500|||NPI9^Doc^Ann\r\
OBR|1|EHR-555||2345-7^Glucose^LN\r\
DG1|1||R73.9^Hyperglycemia^I10\r"
        )
    };
    // The lab learns of the patient through patient.created.v1.
    let lab = app.db("lab").await;
    for _ in 0..300 {
        let known: i64 = store::on_pool!(&lab, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM lab_patients WHERE mrn = $1"
        )
        .bind(&mrn)
        .fetch_one(c)
        .await)
        .unwrap();
        if known == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lab.close().await;
    let ack = send(&app, &orm("O-first", "NW")).await;
    assert_eq!(code(&ack), "AA", "{ack}");
    // Sent again under a new control id: recognized by its placer number.
    assert_eq!(code(&send(&app, &orm("O-again", "NW")).await), "AA");
    let pending = get(&app, "/api/v1/lab/orders/pending").await;
    let items = pending["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{pending}");
    let o = &items[0];
    assert_eq!(
        (
            o["priority"].as_str(),
            o["patientId"].as_str(),
            o["tests"][0]["loincCode"].as_str()
        ),
        (Some("STAT"), p["id"].as_str(), Some("2345-7"))
    );
    assert_eq!(o["diagnosisCodes"], json!(["R73.9"]));
    assert_eq!(code(&send(&app, &orm("O-cancel", "CA")).await), "AA");
    let id = o["id"].as_str().unwrap();
    assert_eq!(
        get(&app, &format!("/api/v1/lab/orders/{id}")).await["status"],
        "CANCELLED"
    );
    // An order for a patient not known yet: placed, and the patient registered with the
    // id the order carries.
    let unknown = orm("O-unknown", "NW")
        .replace(&mrn, "MRN-NEWCOMER")
        .replace("Order^Hl7", "Newcomer^Nell")
        .replace("EHR-555", "EHR-556");
    let ack = send(&app, &unknown).await;
    assert_eq!(code(&ack), "AA", "{ack}");
    let pending = get(&app, "/api/v1/lab/orders/pending").await;
    let placed = pending["items"][0]["patientId"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..300 {
        let (_, found) = json(app.get("/api/v1/patients/search?mrn=MRN-NEWCOMER").await).await;
        if let Some(p) = found["items"].as_array().unwrap().first() {
            assert_eq!(p["id"].as_str(), Some(placed.as_str()));
            assert_eq!(p["lastName"], "Newcomer");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the new patient was not registered");
}

async fn a_batch_is_acknowledged_message_by_message(app: TestApp) {
    let id = order(&app).await;
    let bad = oru("B-2", &id, "90", "N").replace("24323-8^Metabolic panel^LN", "");
    let batch = format!(
        "FHS|^~\\&|LIS\rBHS|^~\\&|LIS\r{}{}{}BTS|3\rFTS|1\r",
        oru("B-1", &id, "88", "N"),
        bad,
        oru("B-3", "NOT-OURS", "99", "N")
    );
    let ack = send(&app, &batch).await;
    let (codes, _) = batch_acks(&ack);
    assert_eq!(codes, ["B-1 AA", "B-2 AE", "B-3 AA"], "{ack}");
    assert!(
        ack.starts_with("FHS|") && ack.contains("\rBTS|3\r"),
        "{ack}"
    );
    let o = get(&app, &format!("/api/v1/lab/orders/{id}")).await;
    assert_eq!(o["tests"][0]["result"]["value"], "88");
}

/// Each ACK of a batch's ACK batch, as `MSA-2 MSA-1`, and the ACK messages themselves.
fn batch_acks(ack: &str) -> (Vec<String>, Vec<String>) {
    let parsed = hl7v2::parse_batch(ack).unwrap();
    let codes = parsed
        .messages
        .iter()
        .map(|m| {
            let m = m.as_ref().unwrap();
            let msa = m.find("MSA").unwrap();
            format!("{} {}", msa.field(2).raw(), msa.field(1).raw())
        })
        .collect();
    (codes, parsed.texts)
}

/// On SQLite a batch's results are written together, one commit for many messages; each
/// message must still see what those before it did, as if each had been committed alone.
async fn a_batch_is_taken_in_order_each_message_seeing_those_before_it(app: TestApp) {
    let id = order(&app).await;
    let path = format!("/api/v1/lab/orders/{id}");
    let version = get(&app, &path).await["version"].as_i64().unwrap();
    let orm = "MSH|^~\\&|EHR|CLINIC|MEDITRACK|LAB|20240102||ORM^O01|BO-1|P|2.3\r\
PID|1||MRN-BATCHER^^^CLINIC^MR||Batcher^Bea||19900101|F\r\
ORC|NW|EHR-777|||||^^^^^S||20240102101500|||NPI9^Doc^Ann\r\
OBR|1|EHR-777||2345-7^Glucose^LN\r";
    let for_placed = "MSH|^~\\&|LIS|CITYLAB|MEDITRACK|HOSP|20240315083000||ORU^R01|BO-2|P|2.5.1\r\
PID|1||MRN-BATCHER^^^HOSP^MR||Batcher^Bea||19900101|F\r\
OBR|1|EHR-777|F-BO-2^CITYLAB|2345-7^Glucose^LN|||20240315071500\r\
OBX|1|NM|2345-7^Glucose^LN||77|mg/dL|70-99|N|||F\r";
    let messages = [
        oru("BA-1", &id, "612", "HH"),
        oru("BA-2", &id, "101", "H"),
        // Repeated within the batch: answered as the first time, no second effect.
        oru("BA-1", &id, "612", "HH"),
        "MSH|^~\\&|LIS|CITYLAB|MEDITRACK|HOSP|20240315083000||ORU^R01|BA-BAD|P|2.5.1\r".to_owned(),
        // An order placed between the results, and a result for it right after.
        orm.to_owned(),
        for_placed.to_owned(),
        oru("BA-3", &id, "99", "N"),
    ];
    let batch = format!(
        "BHS|^~\\&|LIS\r{}BTS|{}\r",
        messages.concat(),
        messages.len()
    );
    let ack = send(&app, &batch).await;
    let (codes, acks) = batch_acks(&ack);
    assert_eq!(
        codes,
        [
            "BA-1 AA",
            "BA-2 AA",
            "BA-1 AA",
            "BA-BAD AE",
            "BO-1 AA",
            "BO-2 AA",
            "BA-3 AA"
        ],
        "{ack}"
    );
    assert_eq!(acks[2], acks[0], "a repeat gets the first answer");

    let o = get(&app, &path).await;
    for test in 0..2 {
        assert_eq!(
            o["tests"][test]["history"].as_array().map(Vec::len),
            Some(2),
            "three results, the newest standing: {o}"
        );
    }
    assert_eq!(o["tests"][0]["result"]["value"], "99", "{o}");
    // Each message changed the order as the one before it left it (two changes each).
    assert_eq!(o["version"].as_i64(), Some(version + 6), "{o}");
    let lab = app.db("lab").await;
    let placed: String = store::on_pool!(&lab, |c| sqlx::query_scalar(
        "SELECT status FROM lab_orders WHERE placer_order = 'EHR-777'"
    )
    .fetch_one(c)
    .await)
    .unwrap();
    let stored: i64 = store::on_pool!(&lab, |c| sqlx::query_scalar(
        "SELECT COUNT(*) FROM hl7_messages WHERE control_id LIKE 'B%'"
    )
    .fetch_one(c)
    .await)
    .unwrap();
    lab.close().await;
    assert_eq!(
        placed, "COMPLETED",
        "the result found the order placed before it"
    );
    assert_eq!(stored, 6, "each message once, the repeat not again");

    // The whole batch again: the same answers, nothing changed.
    let again = send(&app, &batch).await;
    assert_eq!(batch_acks(&again).1, acks);
    assert_eq!(get(&app, &path).await["version"], o["version"]);
}

/// On PostgreSQL a batch is one transaction: one that finds its order changed by another
/// connection's batch is rolled back and taken message by message, so none is lost or
/// applied twice.
async fn batches_for_one_order_sent_at_once_on_many_connections_all_land_once(app: TestApp) {
    let id = order(&app).await;
    let path = format!("/api/v1/lab/orders/{id}");
    let version = get(&app, &path).await["version"].as_i64().unwrap();
    let batches = (0..4).map(|c| {
        let messages: String = (0..5)
            .map(|n| oru(&format!("RB-{c}-{n}"), &id, "101", "H"))
            .collect();
        format!("BHS|^~\\&|LIS\r{messages}BTS|5\r")
    });
    for ack in send_at_once(&app, batches).await {
        let (codes, _) = batch_acks(&ack);
        assert!(codes.iter().all(|c| c.ends_with(" AA")), "{ack}");
        assert_eq!(codes.len(), 5);
    }
    let o = get(&app, &path).await;
    for test in 0..2 {
        assert_eq!(
            o["tests"][test]["history"].as_array().map(Vec::len),
            Some(19),
            "twenty results, the newest standing: {o}"
        );
    }
    assert_eq!(o["version"].as_i64(), Some(version + 40), "{o}");
}

/// Runs of results for several orders, one each, sent at once on several connections, each
/// going round the orders from another one. On SQLite each run is read ahead in a snapshot
/// and written later at the versions read, so a run whose snapshot another connection's
/// run made stale must be read again inside its write; on PostgreSQL two runs'
/// transactions can deadlock over their orders (this left the loser's batch
/// unacknowledged), and the one PostgreSQL gives up on is taken message by message. Every
/// result lands once.
async fn batches_over_the_same_orders_sent_at_once_each_build_on_the_last(app: TestApp) {
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(order(&app).await);
    }
    let mut versions = Vec::new();
    for id in &ids {
        let o = get(&app, &format!("/api/v1/lab/orders/{id}")).await;
        versions.push(o["version"].as_i64().unwrap());
    }
    let batches = (0..4).map(|c| {
        // Each connection goes round the orders from another one.
        let messages: String = (0..ids.len())
            .map(|n| {
                let id = &ids[(n + c) % ids.len()];
                oru(&format!("SO-{c}-{n}"), id, "101", "H")
            })
            .collect();
        format!("BHS|^~\\&|LIS\r{messages}BTS|{}\r", ids.len())
    });
    for ack in send_at_once(&app, batches).await {
        let (codes, _) = batch_acks(&ack);
        assert!(codes.iter().all(|c| c.ends_with(" AA")), "{ack}");
        assert_eq!(codes.len(), ids.len());
    }
    for (id, version) in ids.iter().zip(versions) {
        let o = get(&app, &format!("/api/v1/lab/orders/{id}")).await;
        // Four results, each two changes, none lost to a stale read.
        assert_eq!(o["version"].as_i64(), Some(version + 8), "{o}");
        assert_eq!(
            o["tests"][0]["history"].as_array().map(Vec::len),
            Some(3),
            "four results, the newest standing: {o}"
        );
    }
}

async fn adt_messages_register_and_update_patients_through_the_patient_service(app: TestApp) {
    let adt = |control: &str, trigger: &str, family: &str, extra: &str| {
        format!(
            "MSH|^~\\&|ADT1|GOOD HEALTH|MEDITRACK|LAB|20240101||ADT^{trigger}^ADT_A01|{control}|P|2.5.1\r\
EVN|{trigger}|20240101\r\
PID|1||ADT-10001^^^GOOD HEALTH^MR||{family}^Adam^A||19610615|M|||2222 Home Street^^Greensboro^NC^27401{extra}\r\
PV1|1|I|2000^2012^01\r"
        )
    };
    let ack = send(&app, &adt("A-1", "A04", "Everyman", "")).await;
    assert_eq!(code(&ack), "AA", "{ack}");
    // Sent again: the same answer; sent anew: still one patient.
    assert_eq!(send(&app, &adt("A-1", "A04", "Everyman", "")).await, ack);
    assert_eq!(
        code(&send(&app, &adt("A-2", "A04", "Everyman", "")).await),
        "AA"
    );
    let search = |expect: &'static str| {
        let app = &app;
        async move {
            for _ in 0..300 {
                let (status, page) =
                    json(app.get("/api/v1/patients/search?mrn=ADT-10001").await).await;
                assert_eq!(status, 200, "{page}");
                if page["items"][0]["lastName"] == expect {
                    return page;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("no patient {expect}")
        }
    };
    let page = search("Everyman").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let p = &page["items"][0];
    assert_eq!(
        (
            p["firstName"].as_str(),
            p["dateOfBirth"].as_str(),
            p["gender"].as_str()
        ),
        (Some("Adam"), Some("1961-06-15"), Some("MALE"))
    );
    let id = p["id"].as_str().unwrap().to_owned();
    let (_, full) = json(app.get(&format!("/api/v1/patients/{id}")).await).await;
    assert_eq!(full["addresses"][0]["city"], "Greensboro");

    // A08 updates the same patient.
    assert_eq!(
        code(&send(&app, &adt("A-3", "A08", "Newname", "")).await),
        "AA"
    );
    let page = search("Newname").await;
    assert_eq!(page["items"][0]["id"], id.as_str());

    let no_dob = adt("A-4", "A04", "Nobirth", "").replace("19610615", "");
    let ack = send(&app, &no_dob).await;
    assert_eq!(
        (code(&ack), err_location(&ack).as_str()),
        ("AE", "PID-7"),
        "{ack}"
    );
    // What the patient service would refuse is refused here, naming the component,
    // rather than accepted and then dead-lettered on the way to it.
    let refused = [
        (
            adt("A-5", "A04", "Short", "").replace("ADT-10001", "AB1"),
            "PID-3",
        ),
        (
            adt("A-6", "A04", "Future", "").replace("19610615", "29990101"),
            "PID-7",
        ),
        (adt("A-7", "A04", &"L".repeat(101), ""), "PID-5"),
    ];
    for (message, location) in refused {
        let ack = send(&app, &message).await;
        assert_eq!(
            (code(&ack), err_location(&ack).as_str()),
            ("AE", location),
            "{ack}"
        );
        assert!(!ack.contains("AB1") && !ack.contains("LLLL"), "{ack}");
    }
    let handed_on = lab_event_types(&app)
        .await
        .into_iter()
        .filter(|t| t == "lab.adt.received.v1")
        .count();
    assert_eq!(handed_on, 3);
}

async fn nothing_of_a_messages_content_reaches_the_logs(app: TestApp) {
    let adt = "MSH|^~\\&|ADT1|H|MEDITRACK|LAB|20240101||ADT^A04|PHI-1|P|2.5.1\r\
PID|1||MRN-PHI-42^^^H^MR||Zebulonia^Quintessa||19550707|F|||9 Quasar Lane^^Vexford^NC^27401\r";
    assert_eq!(code(&send(&app, adt).await), "AA");
    let oru = "MSH|^~\\&|LIS|LAB|||20240101||ORU^R01|PHI-2|P|2.5.1\r\
PID|1||MRN-PHI-42^^^H^MR||Zebulonia^Quintessa\r\
OBR|1|NOPE||2345-7^Glucose^LN\r\
OBX|1|ST|2345-7^Glucose^LN||Xylophonic-finding|||A|||F\r";
    assert_eq!(code(&send(&app, oru).await), "AA");
    let bad = "MSH|^~\\&|LIS|LAB|||20240101||ORU^R01|PHI-3|P|2.5.1\r\
PID|1||MRN-PHI-42^^^H^MR||Zebulonia^Quintessa||not-a-date\r\
OBR|1|NOPE||2345-7^Glucose^LN\r";
    assert_eq!(code(&send(&app, bad).await), "AE");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = testkit::captured_logs();
    for secret in [
        "Zebulonia",
        "Quintessa",
        "MRN-PHI-42",
        "19550707",
        "Quasar",
        "Xylophonic",
        "not-a-date",
    ] {
        assert!(!logs.contains(secret), "{secret} was logged");
    }
    assert!(
        logs.contains("HL7 message refused"),
        "the logs are captured"
    );
}

/// Messages are matched to their orders before their writer's turn; one that finds its
/// order changed by another meanwhile starts over, so none is lost or applied twice.
async fn results_for_one_order_sent_at_once_on_many_connections_all_land_once(app: TestApp) {
    let id = order(&app).await;
    let version = get(&app, &format!("/api/v1/lab/orders/{id}")).await["version"]
        .as_i64()
        .unwrap();
    let messages = (0..8).map(|n| oru(&format!("RACE-{n}"), &id, "101", "H"));
    for ack in send_at_once(&app, messages).await {
        assert_eq!(code(&ack), "AA", "{ack}");
    }
    let o = get(&app, &format!("/api/v1/lab/orders/{id}")).await;
    for test in 0..2 {
        assert_eq!(
            o["tests"][test]["history"].as_array().map(Vec::len),
            Some(7),
            "eight results, the newest standing: {o}"
        );
    }
    // Each message changed the order as the one before it left it, none over a version
    // another had already replaced: its two results are two changes each time.
    assert_eq!(o["version"].as_i64(), Some(version + 16), "{o}");
}

/// The second group continues from the first's change to the order, not from the order
/// as stored.
async fn two_result_groups_for_one_order_in_one_message_both_land(app: TestApp) {
    let id = order(&app).await;
    let message = format!(
        "MSH|^~\\&|LIS|CITYLAB|MEDITRACK|HOSP|20240315083000||ORU^R01^ORU_R01|TWO-1|P|2.5.1\r\
PID|1||MRN-UNKNOWN^^^HOSP^MR||Synthetic^Dana||19750412|F\r\
OBR|1|{id}^MEDITRACK|F-TWO^CITYLAB|2345-7^Glucose^LN|||20240315071500\r\
OBX|1|NM|2345-7^Glucose^LN||95|mg/dL|70-99|N|||F\r\
OBR|2|{id}^MEDITRACK|F-TWO^CITYLAB|2823-3^Potassium^LN|||20240315071500\r\
OBX|1|NM|2823-3^Potassium^LN||4.4|mmol/L|3.5-5.1|N|||F\r"
    );
    let ack = send(&app, &message).await;
    assert_eq!(code(&ack), "AA", "{ack}");
    let o = get(&app, &format!("/api/v1/lab/orders/{id}")).await;
    assert_eq!(
        (
            o["status"].as_str(),
            o["tests"][0]["result"]["value"].as_str(),
            o["tests"][1]["result"]["value"].as_str()
        ),
        (Some("COMPLETED"), Some("95"), Some("4.4")),
        "{o}"
    );
}

/// On PostgreSQL a run of results for different orders is read in two statements and
/// written in one per table (on SQLite, read ahead in a snapshot and written in one direct
/// write); what it stores must be what the same messages store sent one at a time: the
/// orders, the messages' statuses, the unmatched queue and the events.
async fn a_batch_of_results_stores_what_its_messages_store_one_at_a_time(app: TestApp) {
    let messages = |prefix: &str, ids: &[String]| {
        [
            oru(&format!("{prefix}-1"), &ids[0], "612", "HH"),
            oru(&format!("{prefix}-2"), &ids[1], "95", "N")
                .replace("2823-3^Potassium^LN", "9999-9^Mystery^LN"),
            oru(
                &format!("{prefix}-3"),
                &format!("NOT-OURS-{prefix}"),
                "100",
                "H",
            ),
            oru(&format!("{prefix}-4"), &format!("{}-1", ids[2]), "88", "N"),
            oru(&format!("{prefix}-5"), &ids[3], "3.9", "L"),
        ]
    };
    let (mut batched, mut single) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        batched.push(order(&app).await);
        single.push(order(&app).await);
    }
    let before = lab_event_types(&app).await.len();
    let batch = messages("BT", &batched);
    let ack = send(
        &app,
        &format!("BHS|^~\\&|LIS\r{}BTS|{}\r", batch.concat(), batch.len()),
    )
    .await;
    let (codes, _) = batch_acks(&ack);
    assert_eq!(
        codes,
        ["BT-1 AA", "BT-2 AA", "BT-3 AA", "BT-4 AA", "BT-5 AA"]
    );
    let after_batch = lab_event_types(&app).await;
    for message in messages("ST", &single) {
        assert_eq!(code(&send(&app, &message).await), "AA");
    }
    let after_single = lab_event_types(&app).await;
    let mut of_batch = after_batch[before..].to_vec();
    let mut of_single = after_single[after_batch.len()..].to_vec();
    of_batch.sort();
    of_single.sort();
    assert_eq!(of_batch, of_single);
    assert!(of_batch.contains(&"lab.critical.result.v1".to_owned()));

    let summary = |o: &Value| {
        let tests: Vec<Value> = o["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                json!([
                    t["status"],
                    t["result"]["value"],
                    t["result"]["final"],
                    t["history"].as_array().map(Vec::len)
                ])
            })
            .collect();
        json!([
            o["status"],
            o["version"],
            o["fillerOrder"].is_string(),
            tests
        ])
    };
    for (b, s) in batched.iter().zip(&single) {
        let b = get(&app, &format!("/api/v1/lab/orders/{b}")).await;
        let s = get(&app, &format!("/api/v1/lab/orders/{s}")).await;
        assert_eq!(summary(&b), summary(&s), "{b}\n{s}");
    }
    let items = get(&app, "/api/v1/lab/messages?limit=50").await["items"]
        .as_array()
        .unwrap()
        .clone();
    let status = |control: &str| {
        items
            .iter()
            .find(|m| m["controlId"] == control)
            .map(|m| m["status"].clone())
    };
    for n in 1..=5 {
        let (b, s) = (status(&format!("BT-{n}")), status(&format!("ST-{n}")));
        assert!(b.is_some(), "BT-{n} is stored");
        assert_eq!(b, s, "message {n}");
    }
    let queue = get(&app, "/api/v1/lab/results/unmatched").await;
    let mut parked: Vec<(String, usize)> = queue["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["reason"].as_str().unwrap().to_owned(),
                u["observations"].as_array().unwrap().len(),
            )
        })
        .collect();
    parked.sort();
    let expected = |reason: &str, n| (reason.to_owned(), n);
    assert_eq!(
        parked,
        [
            expected("no order found", 2),
            expected("no order found", 2),
            expected("no such test in the order", 1),
            expected("no such test in the order", 1),
        ]
    );
}
