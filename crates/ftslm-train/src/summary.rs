//! `run_summary.json`: the few numbers a person or a pipeline checks after a
//! run, and the peak memory the process reached.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Eval loss before the first optimizer step.
    pub initial_eval_loss: Option<f64>,
    /// Eval loss after the last step (of the last weights, even when
    /// final_model is the best ones).
    pub final_eval_loss: Option<f64>,
    pub best_step: Option<u64>,
    pub best_eval_loss: Option<f64>,
    /// Mean training loss of the last logged interval.
    pub final_train_loss: Option<f64>,
    pub steps: u64,
    pub max_steps: u64,
    pub epochs: f64,
    /// Tokens processed in training (prompt and answer, no padding).
    pub tokens_seen: u64,
    /// Training wall time over all sessions of the run.
    pub wall_time_seconds: f64,
    /// Peak resident memory of this process (VmHWM); `None` where /proc is absent.
    pub peak_rss_bytes: Option<u64>,
    /// Why training stopped before `max_steps`, if it did.
    pub stopped_early: Option<String>,
    /// Where the trained adapter is (final_model/).
    pub final_model: String,
    /// `best_model/`, when an evaluation produced one.
    pub best_model: Option<String>,
}

/// The process's peak resident set size, from `VmHWM` in /proc/self/status.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

/// Memory the system can give this process now without swapping
/// (MemAvailable), where the system says; None elsewhere.
pub fn available_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut parts = line["MemAvailable:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    (parts.next() == Some("kB")).then_some(value * 1024)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut parts = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_hwm_in_bytes() {
        let status = "Name:\tftslm\nVmPeak:\t  999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("VmRSS: 1 kB"), None);
        if cfg!(target_os = "linux") {
            assert!(
                peak_rss_bytes().unwrap() > 1024 * 1024,
                "a test process uses over 1 MiB"
            );
        }
    }
}
