//! The report: JSON (every number, for tools) and a Markdown table (for people), written
//! under `bench/results/` with the machine, the commit, the backend and the settings.

use super::events::EventsResult;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub cores: usize,
    pub memory_mb: u64,
    pub os: String,
}

impl Machine {
    pub fn this() -> Self {
        let memory_kb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(0);
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_mb: memory_kb / 1024,
            os: std::env::consts::OS.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioResult {
    pub name: &'static str,
    pub what: &'static str,
    /// Offered requests per second (open loop).
    pub rate: Option<f64>,
    /// Workers, or connections (closed loop).
    pub workers: Option<usize>,
    pub completed: u64,
    pub errors: u64,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub sla_p95_ms: Option<f64>,
    /// p95 within the SLA and under 0.5 % errors (000 §9.3's success rate of 99.5 %).
    pub sla_pass: Option<bool>,
}

/// One throughput as a share of another measured the same way in the same run. When the
/// two were measured in alternating rounds, the value is the median of the rounds' ratios
/// and `rounds` holds each, so a slow minute of the machine shows as spread rather than
/// moving the value.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ratio {
    pub name: &'static str,
    pub value: f64,
    /// Each round's ratio, in the order measured.
    pub rounds: Vec<f64>,
    pub target_at_least: Option<f64>,
    pub pass: Option<bool>,
}

impl Ratio {
    /// `ours[i] / ceiling[i]` for each round `i`.
    pub fn of(name: &'static str, ours: &[f64], ceiling: &[f64], target: Option<f64>) -> Self {
        let rounds: Vec<f64> = ours
            .iter()
            .zip(ceiling)
            .map(|(o, c)| o / c.max(1e-9))
            .collect();
        let value = median(&rounds);
        Ratio {
            name,
            value,
            rounds,
            target_at_least: target,
            pass: target.map(|t| value >= t),
        }
    }

    fn spread(&self) -> String {
        if self.rounds.len() < 2 {
            return String::new();
        }
        let (lo, hi) = self
            .rounds
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        format!(
            " (median of {} rounds, {:.0}–{:.0} %)",
            self.rounds.len(),
            lo * 100.0,
            hi * 100.0
        )
    }
}

pub(super) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// A search's p95 on the small and the large hub, measured in alternating rounds on both
/// while they are otherwise idle: the ratio of the medians.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPair {
    pub scenario: &'static str,
    pub small_p95_ms: f64,
    pub large_p95_ms: f64,
    /// Each round's p95, in the order measured.
    pub small_rounds_ms: Vec<f64>,
    pub large_rounds_ms: Vec<f64>,
    pub ratio: f64,
    pub target_at_most: f64,
    pub pass: bool,
}

impl ScalingPair {
    pub fn of(scenario: &'static str, small: &[f64], large: &[f64]) -> Self {
        let (small_p95_ms, large_p95_ms) = (median(small), median(large));
        let ratio = large_p95_ms / small_p95_ms.max(1e-9);
        ScalingPair {
            scenario,
            small_p95_ms,
            large_p95_ms,
            small_rounds_ms: small.to_vec(),
            large_rounds_ms: large.to_vec(),
            ratio,
            target_at_most: 1.5,
            pass: ratio <= 1.5,
        }
    }

    fn spread(rounds: &[f64]) -> String {
        if rounds.len() < 2 {
            return String::new();
        }
        let (lo, hi) = rounds
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        format!(" ({lo:.2}–{hi:.2})")
    }
}

/// Search p95 on the main hub and on a second one seeded larger, same offered rate.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchScaling {
    pub small_patients: u64,
    pub large_patients: u64,
    /// How fast `meditrack seed` loaded the large hub: bulk seeding at scale, where the
    /// main hub's rate is a small load's, of which fixed costs (`VACUUM`, index builds)
    /// are a larger share.
    pub large_seed_rate_per_second: f64,
    pub pairs: Vec<ScalingPair>,
}

/// One measure taken of the hub and of the peer FHIR server in the same rounds.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerRow {
    pub measure: String,
    /// `/s` (a throughput: more is better), `ms` (a latency: less is better) or `%` (a
    /// throughput as a share of the bare-axum ceiling of the same round).
    pub unit: &'static str,
    pub ours: f64,
    pub theirs: f64,
    /// Requests answered and failed on each side (summed over the rounds).
    pub our_completed: u64,
    pub our_errors: u64,
    pub their_completed: u64,
    pub their_errors: u64,
}

impl PeerRow {
    fn error_share(completed: u64, errors: u64) -> f64 {
        errors as f64 / (completed + errors).max(1) as f64
    }

    /// Whether `value` says anything: not over no answers, and not a p95 where more than
    /// 5 % of the requests failed (the 95th percentile of them all is then a failure).
    fn meaningful(&self, completed: u64, errors: u64) -> bool {
        completed > 0 && (self.unit != "ms" || Self::error_share(completed, errors) <= 0.05)
    }

    /// `value` as the table shows it, with its share of errors when that is over the
    /// 0.5 % of 000 §9.3 (a side that could not keep up).
    fn cell(&self, value: f64, completed: u64, errors: u64) -> String {
        let share = Self::error_share(completed, errors) * 100.0;
        if !self.meaningful(completed, errors) {
            return format!("fell behind ({share:.1} % errors)");
        }
        let shown = match self.unit {
            "%" => format!("{:.1} %", value * 100.0),
            "ms" => format!("{value:.2} ms"),
            _ => format!("{value:.0}/s"),
        };
        if share >= 0.5 {
            format!("{shown} ({share:.1} % errors)")
        } else {
            shown
        }
    }

    fn ratio(&self) -> String {
        if self.meaningful(self.our_completed, self.our_errors)
            && self.meaningful(self.their_completed, self.their_errors)
        {
            format!("{:.2}", self.ours / self.theirs.max(1e-9))
        } else {
            "-".to_owned()
        }
    }
}

/// Another FHIR server measured beside the hub (`--fhir-peer`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerComparison {
    pub url: String,
    /// What its CapabilityStatement says it is.
    pub software: String,
    /// Patients created in it through its API before the rounds.
    pub patients: usize,
    pub fill_per_second: f64,
    pub rounds: usize,
    pub rows: Vec<PeerRow>,
}

impl PeerComparison {
    fn markdown(&self, md: &mut String) {
        md.push_str(&format!(
            "\n## Side by side with another FHIR server: {} at {}\n\n\
             The peer was given {} synthetic patients through its FHIR API first ({:.0} creates/s \
             on 16 connections); MediTrack holds its seeded ones. Each measure alternates between \
             the two ({} rounds; a figure is the median of the rounds; more than 0.5 % errors is \
             shown beside it, and a p95 with more than 5 % errors, which would be the p95 of the \
             answered few, is shown as falling behind). For throughput more is better, for p95 less. MediTrack \
             runs with authentication (a signed bearer token on every request) and its audit trail \
             (every read committed to the trail before it is answered); the peer as it was started.\n\n\
             | measure | MediTrack | peer | MediTrack ÷ peer |\n|---|---|---|---|\n",
            self.software, self.url, self.patients, self.fill_per_second, self.rounds
        ));
        for r in &self.rows {
            md.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                r.measure,
                r.cell(r.ours, r.our_completed, r.our_errors),
                r.cell(r.theirs, r.their_completed, r.their_errors),
                r.ratio()
            ));
        }
    }
}

/// The hub process itself.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HubFigures {
    /// From `meditrack serve` starting (on the seeded data) to its first ready answer.
    pub cold_start_ms: f64,
    /// Resident memory once ready, before any load.
    pub idle_rss_mb: f64,
    /// The most resident memory over the whole run (VmHWM).
    pub peak_rss_mb: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub started_at: String,
    pub commit: String,
    pub backend: &'static str,
    pub backbone: &'static str,
    pub machine: Machine,
    pub load_generator: &'static str,
    pub seeded_patients: u64,
    pub seeded_lab_orders: u64,
    /// Orders placed for the HL7 scenarios, which send each its result in turn.
    pub hl7_orders: usize,
    /// `None` for a hub given by `--url`: the harness did not seed it.
    pub seed_rate_per_second: Option<f64>,
    pub warmup_seconds: f64,
    pub duration_seconds: f64,
    /// The hub measured, when given by `--url` (else the harness started it).
    pub given_url: Option<String>,
    /// `None` for a hub given by `--url`: its process is not the harness's to watch.
    pub hub: Option<HubFigures>,
    /// Open loop, against the 000 §9.1 SLAs.
    pub scenarios: Vec<ScenarioResult>,
    /// Closed loop: what the hub sustains, with the ceilings and HL7.
    pub capacity: Vec<ScenarioResult>,
    pub ratios: Vec<Ratio>,
    /// Events through the backbone during each write load that makes many.
    pub events: Vec<EventsResult>,
    pub search_scaling: Option<SearchScaling>,
    /// Another FHIR server measured beside the hub, when given.
    pub peer: Option<PeerComparison>,
}

pub fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn yes_no(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "-",
    }
}

fn table(md: &mut String, rows: &[ScenarioResult], load: &str) {
    md.push_str(&format!(
        "| scenario | {load} | done /s | errors | p50 ms | p95 ms | p99 ms | max ms | SLA p95 | pass |\n"
    ));
    md.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for s in rows {
        md.push_str(&format!(
            "| {} (`{}`) | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
            s.name,
            s.what,
            match (s.rate, s.workers) {
                (Some(r), _) => format!("{r:.0}"),
                (None, Some(w)) => w.to_string(),
                (None, None) => "-".to_owned(),
            },
            s.throughput,
            s.errors,
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            s.max_ms,
            s.sla_p95_ms
                .map_or("-".to_owned(), |v| format!("< {v:.0} ms")),
            yes_no(s.sla_pass)
        ));
    }
}

fn at_most(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |v| format!("≤ {v} ms"))
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "# MediTrack benchmark, {}\n\nCommit `{}`, backend **{}**, backbone **{}**, {} cores, {} MB memory ({}). \
             {} seeded patients and {} lab orders ({}). Each run: {:.0} s warm-up, {:.0} s measured.\n\n\
             Load generator: {}.\n\n",
            self.started_at,
            self.commit,
            self.backend,
            self.backbone,
            self.machine.cores,
            self.machine.memory_mb,
            self.machine.os,
            self.seeded_patients,
            self.seeded_lab_orders,
            match (self.seed_rate_per_second, &self.given_url) {
                (Some(rate), _) => format!("{rate:.0} patients/s"),
                (None, Some(url)) => format!("seeded beforehand; hub given: {url}"),
                (None, None) => "seed rate not measured".to_owned(),
            },
            self.warmup_seconds,
            self.duration_seconds,
            self.load_generator,
        );
        if self.hl7_orders > 0 {
            md.push_str(&format!(
                "HL7 results go to {} orders placed for them, one result to each in turn \
                 (a correction once every order has one).\n\n",
                self.hl7_orders
            ));
        }
        if !self.scenarios.is_empty() {
            md.push_str("## SLA scenarios (open loop, 000 §9.1)\n\n");
            table(&mut md, &self.scenarios, "offered /s");
        }
        if !self.capacity.is_empty() {
            md.push_str("\n## Capacity (closed loop) and ceilings\n\n");
            table(&mut md, &self.capacity, "workers");
        }
        if !self.ratios.is_empty() {
            md.push_str("\n| ratio of throughputs | value | target | pass |\n|---|---|---|---|\n");
            for r in &self.ratios {
                md.push_str(&format!(
                    "| {} | {:.0} %{} | {} | {} |\n",
                    r.name,
                    r.value * 100.0,
                    r.spread(),
                    r.target_at_least
                        .map_or("-".to_owned(), |t| format!("≥ {:.0} %", t * 100.0)),
                    yes_no(r.pass)
                ));
            }
        }
        for e in &self.events {
            md.push_str(&format!(
                "\n## Events (outbox → {} → consumers)\n\nDuring {}: {} events handled in {:.1} s \
                 (**{:.0}/s** until the consumers caught up); end-to-end p50 {}, p95 {} \
                 (bucket bounds of `meditrack_event_end_to_end_seconds`); SLA p95 < {:.0} ms: {}.\n",
                e.backbone,
                e.load,
                e.handled,
                e.seconds,
                e.per_second,
                at_most(e.p50_ms_at_most),
                at_most(e.p95_ms_at_most),
                e.sla_p95_ms,
                yes_no(Some(e.sla_pass))
            ));
        }
        if let Some(s) = &self.search_scaling {
            md.push_str(&format!(
                "\n## Search scaling: {} vs {} patients\n\nBoth hubs otherwise idle, measured in alternating rounds (open loop, the scenario's offered rate); each p95 is the median of the rounds, their range in brackets.\n\n| scenario | p95 ms at {} | p95 ms at {} | ratio | target | pass |\n|---|---|---|---|---|---|\n",
                s.small_patients, s.large_patients, s.small_patients, s.large_patients
            ));
            let scale_seeding = format!(
                "\nThe {} patients were seeded at {:.0} patients/s (target ≥ 20,000/s: {}).\n",
                s.large_patients,
                s.large_seed_rate_per_second,
                yes_no(Some(s.large_seed_rate_per_second >= 20_000.0))
            );
            for p in &s.pairs {
                md.push_str(&format!(
                    "| {} | {:.2}{} | {:.2}{} | {:.2} | ≤ {} | {} |\n",
                    p.scenario,
                    p.small_p95_ms,
                    ScalingPair::spread(&p.small_rounds_ms),
                    p.large_p95_ms,
                    ScalingPair::spread(&p.large_rounds_ms),
                    p.ratio,
                    p.target_at_most,
                    yes_no(Some(p.pass))
                ));
            }
            md.push_str(&scale_seeding);
        }
        if let Some(peer) = &self.peer {
            peer.markdown(&mut md);
        }
        match &self.hub {
            Some(hub) => md.push_str(&format!(
                "\n## The hub process\n\n| figure | value | target | pass |\n|---|---|---|---|\n\
                 | cold start to ready | {:.0} ms | < 500 ms | {} |\n\
                 | resident memory, idle | {:.1} MB | < 50 MB | {} |\n\
                 | resident memory, peak over the run | {:.1} MB | < 200 MB | {} |\n",
                hub.cold_start_ms,
                yes_no(Some(hub.cold_start_ms < 500.0)),
                hub.idle_rss_mb,
                yes_no(Some(hub.idle_rss_mb < 50.0)),
                hub.peak_rss_mb,
                yes_no(Some(hub.peak_rss_mb < 200.0)),
            )),
            None => md.push_str(
                "\n## The hub process\n\nNot measured: the hub was given by `--url`, \
                 so its start and memory are not the harness's to watch.\n",
            ),
        }
        md
    }

    /// Writes `<stamp>-<backend>.json` and `.md` into `dir`; returns the JSON's path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let stem = format!(
            "{}-{}",
            self.started_at.replace([':', '-'], ""),
            self.backend
        );
        let json = dir.join(format!("{stem}.json"));
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&json, text + "\n").map_err(|e| format!("{}: {e}", json.display()))?;
        std::fs::write(dir.join(format!("{stem}.md")), self.markdown())
            .map_err(|e| e.to_string())?;
        Ok(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_of_rounds_is_their_median_and_shows_their_spread() {
        // The second round's ceiling ran in a slow minute: the median ignores it.
        let r = Ratio::of(
            "GET",
            &[100.0, 90.0, 110.0],
            &[1000.0, 300.0, 1000.0],
            Some(0.2),
        );
        assert_eq!(r.rounds.len(), 3);
        assert!((r.value - 0.11).abs() < 1e-9, "{}", r.value);
        assert_eq!(r.pass, Some(false));
        assert_eq!(r.spread(), " (median of 3 rounds, 10–30 %)");
    }

    #[test]
    fn a_peer_that_could_not_keep_up_shows_its_errors_and_no_figure_over_no_answers() {
        let row = |theirs: f64, completed: u64, errors: u64| PeerRow {
            measure: "search".to_owned(),
            unit: "ms",
            ours: 5.0,
            theirs,
            our_completed: 3000,
            our_errors: 0,
            their_completed: completed,
            their_errors: errors,
        };
        let kept_up = row(2.5, 3000, 3);
        assert_eq!(kept_up.cell(kept_up.theirs, 3000, 3), "2.50 ms");
        assert_eq!(kept_up.ratio(), "2.00");
        let some_failed = row(4.0, 2940, 60);
        assert_eq!(some_failed.cell(4.0, 2940, 60), "4.00 ms (2.0 % errors)");
        assert_eq!(some_failed.ratio(), "1.25");
        // A p95 of the answered few is not the p95 of the requests.
        let behind = row(19_000.0, 900, 2100);
        assert_eq!(
            behind.cell(19_000.0, 900, 2100),
            "fell behind (70.0 % errors)"
        );
        assert_eq!(behind.ratio(), "-");
        let none = row(0.0, 0, 3000);
        assert_eq!(none.cell(0.0, 0, 3000), "fell behind (100.0 % errors)");
        assert_eq!(none.ratio(), "-");
        // A throughput with errors still says how much was done.
        let mut created = row(800.0, 8000, 800);
        created.unit = "/s";
        assert_eq!(created.cell(800.0, 8000, 800), "800/s (9.1 % errors)");
    }

    #[test]
    fn an_even_number_of_rounds_takes_the_middle_two_and_one_round_shows_no_spread() {
        let r = Ratio::of("GET", &[1.0, 2.0, 3.0, 4.0], &[10.0; 4], None);
        assert!((r.value - 0.25).abs() < 1e-9, "{}", r.value);
        let one = Ratio::of("POST", &[5.0], &[10.0], None);
        assert_eq!(one.value, 0.5);
        assert_eq!(one.spread(), "");
    }
}
