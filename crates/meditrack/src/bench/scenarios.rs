//! The request mix: one function per scenario, each making one request of its kind
//! against the hub, with synthetic data, and the 000 §9.1 SLA it is held to.

use serde_json::{Value, json};
use std::sync::Arc;

/// What the scenarios share: the hub, a client that sends the token, and ids to use.
#[derive(Debug)]
pub struct World {
    pub base: String,
    pub client: reqwest::Client,
    pub patients: Vec<String>,
    pub mrns: Vec<String>,
    /// Orders that REST results go to, in turn.
    pub orders: Vec<String>,
    /// Other orders, that HL7 results go to.
    pub hl7_orders: Vec<String>,
    pub last_names: Vec<&'static str>,
}

impl World {
    /// The first patient as the API serves it: the body the ceilings serve.
    pub async fn patient_json(&self) -> Result<Value, String> {
        self.client
            .get(format!(
                "{}/api/v1/patients/{}",
                self.base, self.patients[0]
            ))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    /// What it does, for the report.
    pub what: &'static str,
    /// p95 in milliseconds from 000 §9.1 (`None`: the spec names none).
    pub sla_ms: Option<f64>,
    /// Requests per second by default.
    pub rate: f64,
}

pub const ALL: [Scenario; 10] = [
    Scenario {
        name: "get-patient",
        what: "GET /api/v1/patients/{id}",
        sla_ms: Some(200.0),
        rate: 1000.0,
    },
    Scenario {
        name: "post-patient",
        what: "POST /api/v1/patients (durable)",
        sla_ms: Some(500.0),
        rate: 300.0,
    },
    Scenario {
        name: "search-name",
        what: "GET /api/v1/patients/search?lastName=<prefix>",
        sla_ms: Some(1000.0),
        rate: 300.0,
    },
    Scenario {
        name: "search-mrn",
        what: "GET /api/v1/patients/search?mrn=<mrn>",
        sla_ms: Some(1000.0),
        rate: 500.0,
    },
    Scenario {
        name: "timeline",
        what: "GET /api/v1/patients/{id}/timeline",
        sla_ms: Some(2000.0),
        rate: 500.0,
    },
    Scenario {
        name: "add-record",
        what: "POST /api/v1/patients/{id}/medical-records",
        sla_ms: None,
        rate: 300.0,
    },
    Scenario {
        name: "lab-order",
        what: "POST /api/v1/lab/orders",
        sla_ms: Some(500.0),
        rate: 300.0,
    },
    Scenario {
        name: "lab-results",
        what: "POST /api/v1/lab/results",
        sla_ms: None,
        rate: 200.0,
    },
    Scenario {
        name: "get-results",
        what: "GET /api/v1/lab/results/{orderId}",
        sla_ms: Some(300.0),
        rate: 500.0,
    },
    Scenario {
        name: "lab-pending",
        what: "GET /api/v1/lab/orders/pending",
        sla_ms: Some(1000.0),
        rate: 100.0,
    },
];

/// Whether the answer has `status`, once its body is read (the request is not done until
/// the answer is).
pub(super) async fn expect(
    r: reqwest::Result<reqwest::Response>,
    status: u16,
) -> Result<(), String> {
    let r = r.map_err(|e| e.to_string())?;
    if r.status().as_u16() == status {
        r.bytes().await.map_err(|e| e.to_string())?;
        Ok(())
    } else {
        Err(format!("status {}", r.status()))
    }
}

/// The `n`th of `items`, round and round.
pub(super) fn pick<T>(items: &[T], n: u64) -> &T {
    &items[(n as usize) % items.len()]
}

pub fn new_patient(n: u64) -> Value {
    json!({"firstName": "Bench", "lastName": format!("Load{}", n % 1000), "dateOfBirth": "1980-05-05",
           "phone": "(555) 234-5678", "email": format!("bench{n}@example.org"),
           "addresses": [{"addressType": "HOME", "streetLine1": "1 Bench Way", "city": "Springfield",
                          "state": "IL", "zipCode": "62701", "isPrimary": true}]})
}

pub fn lab_order(patient: &str) -> Value {
    json!({"patientId": patient, "priority": "ROUTINE",
           "tests": [{"testCode": "GLU", "testName": "Glucose", "loincCode": "2345-7"}],
           "orderingProviderId": "NPI1", "orderingProviderName": "Bench Provider"})
}

/// One request of scenario `name`, number `n`.
pub async fn request(world: Arc<World>, name: &'static str, n: u64) -> Result<(), String> {
    let w = &*world;
    let url = |path: String| format!("{}{path}", w.base);
    match name {
        "get-patient" => {
            let id = pick(&w.patients, n);
            expect(
                w.client
                    .get(url(format!("/api/v1/patients/{id}")))
                    .send()
                    .await,
                200,
            )
            .await
        }
        "post-patient" => {
            expect(
                w.client
                    .post(url("/api/v1/patients".into()))
                    .json(&new_patient(n))
                    .send()
                    .await,
                201,
            )
            .await
        }
        "search-name" => {
            let prefix: String = pick(&w.last_names, n).chars().take(3).collect();
            expect(
                w.client
                    .get(url(format!(
                        "/api/v1/patients/search?lastName={prefix}&limit=20"
                    )))
                    .send()
                    .await,
                200,
            )
            .await
        }
        "search-mrn" => {
            let mrn = pick(&w.mrns, n);
            expect(
                w.client
                    .get(url(format!("/api/v1/patients/search?mrn={mrn}")))
                    .send()
                    .await,
                200,
            )
            .await
        }
        "timeline" => {
            let id = pick(&w.patients, n);
            expect(
                w.client
                    .get(url(format!("/api/v1/patients/{id}/timeline")))
                    .send()
                    .await,
                200,
            )
            .await
        }
        "add-record" => {
            let id = pick(&w.patients, n);
            let body = json!({"recordType": "VISIT", "recordDate": "2026-01-02T10:00:00Z",
                              "providerId": "NPI1234567890", "diagnosisCodes": ["I10"], "notes": "Bench note"});
            expect(
                w.client
                    .post(url(format!("/api/v1/patients/{id}/medical-records")))
                    .json(&body)
                    .send()
                    .await,
                201,
            )
            .await
        }
        "lab-order" => {
            let id = pick(&w.patients, n);
            expect(
                w.client
                    .post(url("/api/v1/lab/orders".into()))
                    .json(&lab_order(id))
                    .send()
                    .await,
                201,
            )
            .await
        }
        "lab-results" => {
            let order = pick(&w.orders, n);
            let body = json!({"orderId": order, "results": [{"testCode": "GLU", "value": format!("{}", 70 + n % 60),
                              "unit": "mg/dL", "referenceRange": "70-99", "abnormalFlag": "N"}]});
            expect(
                w.client
                    .post(url("/api/v1/lab/results".into()))
                    .json(&body)
                    .send()
                    .await,
                200,
            )
            .await
        }
        "get-results" => {
            let order = pick(&w.orders, n);
            expect(
                w.client
                    .get(url(format!("/api/v1/lab/results/{order}")))
                    .send()
                    .await,
                200,
            )
            .await
        }
        "lab-pending" => {
            expect(
                w.client
                    .get(url("/api/v1/lab/orders/pending?limit=50".into()))
                    .send()
                    .await,
                200,
            )
            .await
        }
        other => Err(format!("no scenario {other}")),
    }
}
