//! Capacity: closed loops that find what the hub sustains, beside the ceilings measured
//! the same way in the same run (a bare axum handler serving the same JSON from memory,
//! and, on PostgreSQL, a raw insert and select of the same row), and HL7 ORU^R01 over
//! MLLP on one connection and on several (MLLP allows one message in flight per
//! connection, so it is closed loop by nature).

use super::load::{self, Measured};
use super::scenarios::{self, World};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

/// How long and how wide each capacity run is.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub workers: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// One of the HTTP scenarios, closed loop.
pub async fn scenario(w: Window, world: Arc<World>, name: &'static str) -> Measured {
    load::closed(w.workers, w.warmup, w.duration, move |_, n| {
        scenarios::request(world.clone(), name, n)
    })
    .await
}

/// The bare axum handler serving `body` from memory.
pub async fn axum_ceiling(w: Window, body: Value) -> Result<Measured, String> {
    let body = bytes_of(&body);
    let app = axum::Router::new().route(
        "/patient",
        axum::routing::get(move || {
            let body = body.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}/patient",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let measured = load::closed(w.workers, w.warmup, w.duration, move |_, _| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client.get(url).send().await.map_err(|e| e.to_string())?;
            r.bytes().await.map_err(|e| e.to_string())?;
            Ok(())
        }
    })
    .await;
    server.abort();
    Ok(measured)
}

fn bytes_of(v: &Value) -> axum::body::Bytes {
    axum::body::Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// A raw insert and a raw select by key of the same JSON row, on a pool as large as the
/// hub's default, in a table of their own: the database's own ceiling for one row.
pub struct PgCeiling {
    pool: sqlx::PgPool,
    body: Arc<Value>,
    /// Rows the select reads, stored before any run so that it can be measured first.
    ids: Arc<Vec<uuid::Uuid>>,
}

/// Rows stored for the select to read.
const SELECTED_ROWS: i64 = 10_000;

impl PgCeiling {
    pub async fn open(url: &str, body: Value) -> Result<Self, String> {
        use sqlx::postgres::PgPoolOptions;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect(url)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS bench_rows (id UUID PRIMARY KEY, body JSONB NOT NULL)",
        )
        .execute(&pool)
        .await
        .map_err(|e| e.to_string())?;
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
            "INSERT INTO bench_rows (id, body)
             SELECT gen_random_uuid(), $1 FROM generate_series(1, $2) RETURNING id",
        )
        .bind(sqlx::types::Json(&body))
        .bind(SELECTED_ROWS)
        .fetch_all(&pool)
        .await
        .map_err(|e| e.to_string())?;
        Ok(Self {
            pool,
            body: Arc::new(body),
            ids: Arc::new(ids),
        })
    }

    pub async fn insert(&self, w: Window) -> Measured {
        let (pool, body) = (self.pool.clone(), self.body.clone());
        load::closed(w.workers, w.warmup, w.duration, move |_, _| {
            let (pool, body) = (pool.clone(), body.clone());
            async move {
                sqlx::query("INSERT INTO bench_rows (id, body) VALUES ($1, $2)")
                    .bind(uuid::Uuid::now_v7())
                    .bind(sqlx::types::Json(&*body))
                    .execute(&pool)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            }
        })
        .await
    }

    pub async fn select(&self, w: Window) -> Measured {
        let (pool, ids) = (self.pool.clone(), self.ids.clone());
        load::closed(w.workers, w.warmup, w.duration, move |_, n| {
            let (pool, id) = (pool.clone(), ids[n as usize % ids.len()]);
            async move {
                let _: (sqlx::types::Json<Value>,) =
                    sqlx::query_as("SELECT body FROM bench_rows WHERE id = $1")
                        .bind(id)
                        .fetch_one(&pool)
                        .await
                        .map_err(|e| e.to_string())?;
                Ok(())
            }
        })
        .await
    }

    pub async fn close(self) {
        self.pool.close().await;
    }
}

/// An ORU^R01 with one final glucose result for `order` (its placer number is ours).
pub fn oru(control: &str, order: &str, value: u64) -> Vec<u8> {
    let flag = crate::seed::glucose_flag(value).as_str();
    format!(
        "MSH|^~\\&|LIS|BENCHLAB|MEDITRACK|HOSP|20260101083000||ORU^R01^ORU_R01|{control}|P|2.5.1\r\
PID|1||BENCH-UNKNOWN^^^HOSP^MR||Synthetic^Bench||19750412|F\r\
OBR|1|{order}-1^MEDITRACK|F-{control}^BENCHLAB|2345-7^Glucose^LN|||20260101071500\r\
OBX|1|NM|2345-7^Glucose^LN||{value}|mg/dL|70-99|{flag}|||F|||20260101080000\r"
    )
    .into_bytes()
}

/// ORU^R01 messages over `connections` MLLP connections, each sending the next frame once
/// the last is acknowledged (after commit): one message per frame, or with `batch` > 1 that
/// many in a batch (BHS … BTS), answered by a batch of ACKs. Every message has its own
/// control id and goes to the next of `orders` (`sent` counts the messages of earlier
/// runs, so a run starts where the last ended); an ACK other than AA counts as an error.
/// Throughput and errors count messages; latency is per frame.
pub async fn hl7(
    w: Window,
    connections: usize,
    batch: usize,
    addr: &str,
    orders: Arc<Vec<String>>,
    sent: Arc<AtomicUsize>,
) -> Result<Measured, String> {
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        let c = lab::mllp::MllpClient::connect(addr, Duration::from_secs(30))
            .await
            .map_err(|e| e.to_string())?;
        clients.push(Arc::new(Mutex::new(c)));
    }
    let clients = Arc::new(clients);
    let run = uuid::Uuid::now_v7().simple().to_string();
    let batch = batch.max(1);
    let mut m = load::closed(connections, w.warmup, w.duration, move |c, n| {
        let client = clients[c].clone();
        let mut frame = Vec::new();
        if batch > 1 {
            frame.extend_from_slice(b"BHS|^~\\&|LIS|BENCHLAB\r");
        }
        for i in 0..batch as u64 {
            let order = &orders[sent.fetch_add(1, Ordering::Relaxed) % orders.len()];
            let control = format!("B{}-{n}-{i}", &run[run.len() - 12..]);
            frame.extend(oru(&control, order, 60 + (n + i) % 80));
        }
        if batch > 1 {
            frame.extend(format!("BTS|{batch}\r").into_bytes());
        }
        async move {
            let ack = client
                .lock()
                .await
                .exchange(&frame)
                .await
                .map_err(|e| e.to_string())?;
            let accepted = ack.windows(4).filter(|w| w == b"|AA|").count();
            if accepted == batch {
                Ok(())
            } else {
                Err(format!(
                    "{} of {batch} not accepted: {}",
                    batch - accepted,
                    String::from_utf8_lossy(&ack).replace('\r', " | ")
                ))
            }
        }
    })
    .await;
    // A frame is `batch` messages, taken or not together.
    m.completed *= batch as u64;
    m.errors *= batch as u64;
    Ok(m)
}
