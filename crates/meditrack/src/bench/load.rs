//! The load generator: open loop. Requests are scheduled at a fixed rate whatever the hub
//! answers, and each one's latency is measured from when it was *due*, not from when it
//! was sent, so a slow answer that delays the next request is counted against the hub
//! (no coordinated omission: the approach of wrk2). Latencies go into an HdrHistogram.
//!
//! For capacity, and for protocols that allow one outstanding message per connection
//! (MLLP), [`closed`] runs a closed loop instead: a fixed number of workers each send the
//! next request as soon as the last is answered, so throughput is what the hub sustains.

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

    /// Several runs as one: their requests, errors, seconds and latencies together, so the
    /// throughput is their mean.
    pub fn merged(runs: &[Measured]) -> Measured {
        let mut all = Measured {
            completed: 0,
            errors: 0,
            seconds: 0.0,
            histogram: new_histogram(),
        };
        for run in runs {
            all.completed += run.completed;
            all.errors += run.errors;
            all.seconds += run.seconds;
            let _ = all.histogram.add(&run.histogram);
        }
        all
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, 60_000_000);
    let _ = histogram.record(micros);
}

/// Runs `request(worker, n)` in `workers` closed loops for the warm-up (not measured),
/// then for `duration`; each latency counts from the request's send.
pub async fn closed<F, Fut>(
    workers: usize,
    warmup: Duration,
    duration: Duration,
    request: F,
) -> Measured
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let request = Arc::new(request);
    let start = Instant::now();
    let (measure_from, end) = (start + warmup, start + warmup + duration);
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let request = request.clone();
            tokio::spawn(async move {
                let (mut histogram, mut completed, mut errors) = (new_histogram(), 0u64, 0u64);
                let mut n = w as u64;
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let outcome = request(w, n).await;
                    n += workers as u64;
                    if sent < measure_from {
                        continue;
                    }
                    match outcome {
                        Ok(()) => {
                            completed += 1;
                            record(&mut histogram, sent.elapsed());
                        }
                        Err(e) => {
                            if errors == 0 {
                                tracing::warn!(error = %e, "a benchmark request failed");
                            }
                            errors += 1;
                        }
                    }
                }
                (histogram, completed, errors)
            })
        })
        .collect();
    let mut total = Measured {
        completed: 0,
        errors: 0,
        seconds: duration.as_secs_f64(),
        histogram: new_histogram(),
    };
    for t in tasks {
        if let Ok((h, c, e)) = t.await {
            let _ = total.histogram.add(h);
            total.completed += c;
            total.errors += e;
        }
    }
    total
}

/// Runs `request(n)` at `load.rate` for the warm-up (not measured), then for the duration.
pub async fn run<F, Fut>(load: Load, request: F) -> Measured
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let request = Arc::new(request);
    let histogram = Arc::new(Mutex::new(new_histogram()));
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
                    record(&mut *histogram.lock().await, latency);
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
