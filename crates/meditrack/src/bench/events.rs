//! Events through outbox → backbone → consumer, read from the hub's own `/metrics`: how
//! many consumers handled (`meditrack_events_handled_total`) and how long after their
//! producer's commit (`meditrack_event_end_to_end_seconds`, a histogram), summed over
//! every consumer. The bench reads it before a write load and again once the consumers
//! have caught up, so the rate counts the drain too.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const END_TO_END: &str = "meditrack_event_end_to_end_seconds";

/// One reading: the histogram's cumulative bucket counts by upper bound, and its count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    buckets: BTreeMap<u64, u64>,
    count: u64,
}

/// A bucket bound in nanoseconds, to order and key them exactly.
fn bound(le: &str) -> Option<u64> {
    if le == "+Inf" {
        return Some(u64::MAX);
    }
    le.parse::<f64>().ok().map(|s| (s * 1e9).round() as u64)
}

fn label<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    line[start..].split('"').next()
}

impl Reading {
    pub fn parse(metrics: &str) -> Self {
        let mut r = Reading::default();
        for line in metrics.lines() {
            let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            if line.starts_with(&format!("{END_TO_END}_bucket{{")) {
                if let Some(le) = label(line, "le").and_then(bound) {
                    *r.buckets.entry(le).or_default() += value as u64;
                }
            } else if line.starts_with(&format!("{END_TO_END}_count")) {
                r.count += value as u64;
            }
        }
        r
    }

    /// What happened between `earlier` and this reading.
    fn since(&self, earlier: &Reading) -> Reading {
        Reading {
            buckets: self
                .buckets
                .iter()
                .map(|(le, n)| {
                    (
                        *le,
                        n - earlier.buckets.get(le).copied().unwrap_or(0).min(*n),
                    )
                })
                .collect(),
            count: self.count - earlier.count.min(self.count),
        }
    }

    /// The bucket bound (ms) under which `q` of the events fell: an upper bound on the
    /// quantile, as fine as the buckets.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let want = (q * self.count as f64).ceil() as u64;
        self.buckets
            .iter()
            .find(|(_, n)| **n >= want.max(1))
            .map(|(le, _)| {
                if *le == u64::MAX {
                    f64::INFINITY
                } else {
                    *le as f64 / 1e6
                }
            })
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsResult {
    pub backbone: &'static str,
    /// The write load that produced them.
    pub load: String,
    pub handled: u64,
    /// From the load's start until the consumers caught up.
    pub seconds: f64,
    pub per_second: f64,
    /// Upper bounds, from the histogram's buckets.
    pub p50_ms_at_most: Option<f64>,
    pub p95_ms_at_most: Option<f64>,
    pub sla_p95_ms: f64,
    pub sla_pass: bool,
}

pub async fn read(client: &reqwest::Client, base: &str) -> Result<Reading, String> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    Ok(Reading::parse(&text))
}

/// Sends `poke` (a write that raises an event) and waits until a consumer has handled an
/// event, so that a measurement does not begin while consumers are still joining their
/// groups: Kafka hands out partitions seconds after a consumer subscribes, and the events
/// of those seconds would count as slow, or, past the settling below, not at all.
pub async fn wait_live(
    client: &reqwest::Client,
    base: &str,
    poke: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    let before = read(client, base).await?;
    poke.await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while read(client, base).await?.count <= before.count {
        if Instant::now() > deadline {
            return Err(
                "no event was handled within a minute of a registration: is the backbone up?"
                    .to_owned(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// What the consumers have handled once they stop (no change for a second, at most a
/// minute).
pub async fn quiet(client: &reqwest::Client, base: &str) -> Result<Reading, String> {
    let mut last = read(client, base).await?;
    let mut quiet_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while quiet_since.elapsed() < Duration::from_secs(1) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = read(client, base).await?;
        if now.count != last.count {
            quiet_since = Instant::now();
        }
        last = now;
    }
    Ok(last)
}

/// Waits until the consumers stop handling ([`quiet`]), then reports what they did since `before`, counting from `started`.
pub async fn settle(
    client: &reqwest::Client,
    base: &str,
    before: &Reading,
    started: Instant,
    backbone: &'static str,
    load: String,
) -> Result<EventsResult, String> {
    let last = quiet(client, base).await?;
    // The quiet second at the end is not the consumers' time.
    let seconds = (started.elapsed().as_secs_f64() - 1.0).max(1e-3);
    let delta = last.since(before);
    let p95 = delta.quantile_ms(0.95);
    Ok(EventsResult {
        backbone,
        load,
        handled: delta.count,
        seconds,
        per_second: delta.count as f64 / seconds,
        p50_ms_at_most: delta.quantile_ms(0.50),
        p95_ms_at_most: p95,
        sla_p95_ms: 1000.0,
        sla_pass: delta.count > 0 && p95.is_some_and(|p| p < 1000.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# TYPE meditrack_event_end_to_end_seconds histogram
meditrack_event_end_to_end_seconds_bucket{consumer="lab",le="0.01"} 90
meditrack_event_end_to_end_seconds_bucket{consumer="lab",le="0.1"} 99
meditrack_event_end_to_end_seconds_bucket{consumer="lab",le="+Inf"} 100
meditrack_event_end_to_end_seconds_count{consumer="lab"} 100
meditrack_event_end_to_end_seconds_bucket{consumer="audit",le="0.01"} 10
meditrack_event_end_to_end_seconds_bucket{consumer="audit",le="0.1"} 100
meditrack_event_end_to_end_seconds_bucket{consumer="audit",le="+Inf"} 100
meditrack_event_end_to_end_seconds_count{consumer="audit"} 100
"#;

    #[test]
    fn quantiles_are_read_from_the_buckets_summed_over_consumers() {
        let r = Reading::parse(SAMPLE);
        assert_eq!(r.count, 200);
        // 100 of 200 fell under 10 ms; 199 under 100 ms.
        assert_eq!(r.quantile_ms(0.5), Some(10.0));
        assert_eq!(r.quantile_ms(0.95), Some(100.0));
        assert_eq!(r.quantile_ms(0.999), Some(f64::INFINITY));
    }

    #[test]
    fn a_later_reading_counts_only_what_happened_since() {
        let before = Reading::parse(SAMPLE);
        let after = Reading::parse(&SAMPLE.replace("} 100\n", "} 300\n"));
        let d = after.since(&before);
        assert_eq!(d.count, 400);
        assert_eq!(d.quantile_ms(0.95), Some(f64::INFINITY));
    }
}
