//! The report: JSON (every number, for tools) and a Markdown table (for people), written
//! under `bench/results/` with the machine, the commit, the backend and the settings.

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

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioResult {
    pub name: &'static str,
    pub what: &'static str,
    pub rate: f64,
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

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub started_at: String,
    pub commit: String,
    pub backend: &'static str,
    pub machine: Machine,
    pub load_generator: &'static str,
    pub seeded_patients: u64,
    pub seed_rate_per_second: f64,
    pub warmup_seconds: f64,
    pub duration_seconds: f64,
    pub scenarios: Vec<ScenarioResult>,
    /// The same GET load against a bare axum handler serving the same JSON from memory.
    pub ceiling: Option<ScenarioResult>,
    /// GET patient throughput as a share of the ceiling's, at the same offered rate.
    pub get_patient_vs_ceiling: Option<f64>,
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

impl Report {
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "# MediTrack benchmark, {}\n\nCommit `{}`, backend **{}**, {} cores, {} MB memory ({}). Load generator: {}. \
             {} seeded patients ({:.0}/s). Each scenario: {:.0} s warm-up, {:.0} s measured.\n\n",
            self.started_at,
            self.commit,
            self.backend,
            self.machine.cores,
            self.machine.memory_mb,
            self.machine.os,
            self.load_generator,
            self.seeded_patients,
            self.seed_rate_per_second,
            self.warmup_seconds,
            self.duration_seconds
        );
        md.push_str("| scenario | offered /s | done /s | errors | p50 ms | p95 ms | p99 ms | max ms | SLA p95 | pass |\n");
        md.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
        for s in self.scenarios.iter().chain(&self.ceiling) {
            md.push_str(&format!(
                "| {} (`{}`) | {:.0} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
                s.name,
                s.what,
                s.rate,
                s.throughput,
                s.errors,
                s.p50_ms,
                s.p95_ms,
                s.p99_ms,
                s.max_ms,
                s.sla_p95_ms
                    .map_or("-".to_owned(), |v| format!("< {v:.0} ms")),
                match s.sla_pass {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "-",
                }
            ));
        }
        if let Some(r) = self.get_patient_vs_ceiling {
            md.push_str(&format!(
                "\nGET patient served {:.0} % of what the bare handler served at the same offered rate.\n",
                r * 100.0
            ));
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
