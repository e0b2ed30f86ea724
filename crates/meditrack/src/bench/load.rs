//! The load generator: open loop. Requests are scheduled at a fixed rate whatever the hub
//! answers, and each one's latency is measured from when it was *due*, not from when it
//! was sent, so a slow answer that delays the next request is counted against the hub
//! (no coordinated omission: the approach of wrk2). Latencies go into an HdrHistogram.

use hdrhistogram::Histogram;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};

/// How one scenario is driven.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Requests per second, scheduled.
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    /// Requests in flight at most; a request due when all are busy is counted as an error
    /// (the hub fell that far behind).
    pub max_in_flight: usize,
}

#[derive(Debug, Clone)]
pub struct Measured {
    pub completed: u64,
    pub errors: u64,
    pub seconds: f64,
    pub histogram: Histogram<u64>,
}

impl Measured {
    pub fn throughput(&self) -> f64 {
        self.completed as f64 / self.seconds.max(1e-9)
    }

    /// A percentile in milliseconds.
    pub fn ms(&self, percentile: f64) -> f64 {
        self.histogram.value_at_quantile(percentile / 100.0) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.histogram.max() as f64 / 1000.0
    }
}

/// Runs `request(n)` at `load.rate` for the warm-up (not measured), then for the duration.
pub async fn run<F, Fut>(load: Load, request: F) -> Measured
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let request = Arc::new(request);
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
    ));
    let (completed, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let slots = Arc::new(Semaphore::new(load.max_in_flight));
    let interval = Duration::from_secs_f64(1.0 / load.rate.max(0.001));
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let end = measure_from + load.duration;
    let mut tasks = Vec::new();
    let mut n: u64 = 0;
    loop {
        let due = start + interval.mul_f64(n as f64);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let measured = due >= measure_from;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if measured {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            n += 1;
            continue;
        };
        let (request, histogram, completed, errors) = (
            request.clone(),
            histogram.clone(),
            completed.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let outcome = request(n).await;
            let latency = due.elapsed();
            drop(slot);
            if !measured {
                return;
            }
            match outcome {
                Ok(()) => {
                    completed.fetch_add(1, Ordering::Relaxed);
                    let micros = u64::try_from(latency.as_micros())
                        .unwrap_or(u64::MAX)
                        .max(1);
                    let _ = histogram.lock().await.record(micros.min(60_000_000));
                }
                Err(e) => {
                    if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        tracing::warn!(error = %e, "a benchmark request failed");
                    }
                }
            }
        }));
        // Keep the task list short: finished ones are dropped as we go.
        if tasks.len() > 4 * load.max_in_flight {
            tasks.retain(|t| !t.is_finished());
        }
        n += 1;
    }
    for t in tasks {
        let _ = t.await;
    }
    let seconds = load.duration.as_secs_f64();
    let histogram = histogram.lock().await.clone();
    Measured {
        completed: completed.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        seconds,
        histogram,
    }
}
