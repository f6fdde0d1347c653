//! A run's history read back for people: `metrics.jsonl` (and
//! `run_summary.json` when present) summarised at a glance, the evaluations
//! as a table, losses as a terminal sparkline, and every logged step as CSV.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::error::TrainError;
use crate::metrics::MetricRecord;
use crate::run_dir::{METRICS_FILE, SUMMARY_FILE};

/// One run's logged history and, when it was written, its summary.
#[derive(Debug, Clone)]
pub struct RunHistory {
    /// What to call the run in tables and legends (its folder or timestamp).
    pub name: String,
    pub records: Vec<MetricRecord>,
    pub summary: Option<Value>,
}

/// An evaluation: its step and loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EvalPoint {
    pub step: u64,
    pub eval_loss: f64,
}

/// What `ftslm metrics` prints about one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryDigest {
    pub name: String,
    pub steps: u64,
    pub epochs: f64,
    pub wall_time_seconds: Option<f64>,
    /// Median of the logged tokens/s.
    pub tokens_per_second: Option<f64>,
    pub initial_eval: Option<EvalPoint>,
    pub best_eval: Option<EvalPoint>,
    pub final_eval: Option<EvalPoint>,
    pub first_train_loss: Option<f64>,
    pub last_train_loss: Option<f64>,
    /// (first, peak, last) learning rate logged.
    pub learning_rate: Option<(f64, f64, f64)>,
    /// (min, max) gradient norm logged.
    pub grad_norm: Option<(f64, f64)>,
    /// Why training stopped early (early stopping, a non-finite loss), if it did.
    pub stopped_early: Option<String>,
    pub evaluations: Vec<EvalPoint>,
}

impl RunHistory {
    /// Parses `metrics.jsonl` text (and `run_summary.json` text when given);
    /// `source` names the file in errors.
    pub fn parse(
        name: &str,
        metrics: &str,
        summary: Option<&str>,
        source: &Path,
    ) -> Result<Self, TrainError> {
        let mut records = Vec::new();
        for (i, line) in metrics.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record: MetricRecord = serde_json::from_str(line).map_err(|e| {
                TrainError::checkpoint(source, format!("line {}: not a metrics record: {e}", i + 1))
            })?;
            records.push(record);
        }
        let summary = match summary {
            Some(text) => Some(serde_json::from_str(text).map_err(|e| {
                TrainError::checkpoint(source, format!("run_summary.json is not JSON: {e}"))
            })?),
            None => None,
        };
        Ok(RunHistory {
            name: name.to_string(),
            records,
            summary,
        })
    }

    /// A run directory: its `metrics.jsonl`, and `run_summary.json` if present.
    pub fn read_dir(dir: &Path) -> Result<Self, TrainError> {
        let metrics_path = dir.join(METRICS_FILE);
        let metrics = std::fs::read_to_string(&metrics_path)
            .map_err(|e| TrainError::io("cannot read", &metrics_path, e))?;
        let summary = std::fs::read_to_string(dir.join(SUMMARY_FILE)).ok();
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        Self::parse(&name, &metrics, summary.as_deref(), &metrics_path)
    }

    /// Evaluations in step order, one per step (a resumed run may log the
    /// same evaluation twice; the later one is kept).
    pub fn evaluations(&self) -> Vec<EvalPoint> {
        let mut by_step = BTreeMap::new();
        for r in &self.records {
            if let Some(eval_loss) = r.eval_loss {
                by_step.insert(r.step, eval_loss);
            }
        }
        by_step
            .into_iter()
            .map(|(step, eval_loss)| EvalPoint { step, eval_loss })
            .collect()
    }

    /// Training logs in step order, one per step.
    pub fn training_logs(&self) -> Vec<&MetricRecord> {
        let mut by_step = BTreeMap::new();
        for r in &self.records {
            if r.loss.is_some() {
                by_step.insert(r.step, r);
            }
        }
        by_step.into_values().collect()
    }

    /// The values of one training field against the step.
    pub fn series(&self, field: fn(&MetricRecord) -> Option<f64>) -> Vec<(u64, f64)> {
        self.training_logs()
            .into_iter()
            .filter_map(|r| field(r).map(|v| (r.step, v)))
            .collect()
    }

    pub fn digest(&self) -> HistoryDigest {
        let evaluations = self.evaluations();
        let logs = self.training_logs();
        let number = |key: &str| self.summary.as_ref().and_then(|s| s.get(key)?.as_f64());
        let steps = self.records.iter().map(|r| r.step).max().unwrap_or(0);
        let epochs = self.records.iter().map(|r| r.epoch).fold(0.0, f64::max);
        let mut rates: Vec<f64> = logs.iter().filter_map(|r| r.tokens_per_second).collect();
        rates.sort_by(f64::total_cmp);
        let lrs: Vec<f64> = logs.iter().filter_map(|r| r.learning_rate).collect();
        let norms: Vec<f64> = logs.iter().filter_map(|r| r.grad_norm).collect();
        let best = evaluations
            .iter()
            .copied()
            .min_by(|a, b| a.eval_loss.total_cmp(&b.eval_loss));
        HistoryDigest {
            name: self.name.clone(),
            steps,
            epochs,
            wall_time_seconds: number("wall_time_seconds"),
            tokens_per_second: (!rates.is_empty()).then(|| rates[rates.len() / 2]),
            initial_eval: evaluations.first().copied().filter(|e| e.step == 0),
            best_eval: best,
            final_eval: evaluations.last().copied(),
            first_train_loss: logs.first().and_then(|r| r.loss),
            last_train_loss: logs.last().and_then(|r| r.loss),
            learning_rate: (!lrs.is_empty()).then(|| {
                let peak = lrs.iter().copied().fold(f64::MIN, f64::max);
                (lrs[0], peak, lrs[lrs.len() - 1])
            }),
            grad_norm: (!norms.is_empty()).then(|| {
                (
                    norms.iter().copied().fold(f64::MAX, f64::min),
                    norms.iter().copied().fold(f64::MIN, f64::max),
                )
            }),
            stopped_early: self
                .summary
                .as_ref()
                .and_then(|s| s.get("stopped_early")?.as_str().map(str::to_string)),
            evaluations,
        }
    }

    /// One row per logged step: `step`, `epoch`, then the logged fields any
    /// record has; the training log and the evaluation of one step share a
    /// row, with empty cells where a step lacks a field.
    pub fn to_csv(&self) -> String {
        runs_to_csv(std::slice::from_ref(self))
    }

    /// The logged fields of each step, keyed by step.
    fn rows(&self) -> BTreeMap<u64, BTreeMap<&'static str, f64>> {
        let mut rows: BTreeMap<u64, BTreeMap<&'static str, f64>> = BTreeMap::new();
        for r in &self.records {
            let row = rows.entry(r.step).or_default();
            row.insert("epoch", r.epoch);
            for (column, value) in [
                ("loss", r.loss),
                ("learning_rate", r.learning_rate),
                ("grad_norm", r.grad_norm),
                ("tokens_per_second", r.tokens_per_second),
                ("eval_loss", r.eval_loss),
            ] {
                if let Some(v) = value {
                    row.insert(column, v);
                }
            }
        }
        rows
    }
}

/// The CSV of several runs: as `RunHistory::to_csv`, with a leading `run`
/// column when there is more than one; columns are the union over all runs.
pub fn runs_to_csv(runs: &[RunHistory]) -> String {
    const FIELDS: [&str; 6] = [
        "epoch",
        "loss",
        "learning_rate",
        "grad_norm",
        "tokens_per_second",
        "eval_loss",
    ];
    let tables: Vec<_> = runs.iter().map(|r| (r.name.as_str(), r.rows())).collect();
    let present: Vec<&str> = FIELDS
        .into_iter()
        .filter(|f| {
            tables
                .iter()
                .any(|(_, rows)| rows.values().any(|row| row.contains_key(f)))
        })
        .collect();
    let with_run = runs.len() > 1;
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<&str> = Vec::new();
    if with_run {
        header.push("run");
    }
    header.push("step");
    header.extend(&present);
    // Writing into a Vec cannot fail.
    let _ = out.write_record(&header);
    for (name, rows) in &tables {
        for (step, row) in rows {
            let mut cells: Vec<String> = Vec::with_capacity(header.len());
            if with_run {
                cells.push((*name).to_string());
            }
            cells.push(step.to_string());
            cells.extend(
                present
                    .iter()
                    .map(|f| row.get(f).map_or_else(String::new, f64::to_string)),
            );
            let _ = out.write_record(&cells);
        }
    }
    let bytes = out.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

/// Values as a one-line chart of block characters, low to high, sampled to
/// at most `width` points.
pub fn sparkline(values: &[f64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() || width == 0 {
        return String::new();
    }
    let (lo, hi) = finite
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let n = finite.len();
    let take = n.min(width);
    (0..take)
        .map(|i| {
            let v = finite[i * n / take];
            let level = if hi > lo {
                (v - lo) / (hi - lo) * 7.0
            } else {
                3.0
            };
            BARS[(level.round() as usize).min(7)]
        })
        .collect()
}

/// The digest as the text `ftslm metrics` prints.
pub fn render_digest(d: &HistoryDigest, history: &RunHistory) -> String {
    let mut out = String::new();
    let eval = |e: Option<EvalPoint>| {
        e.map_or("–".to_string(), |e| {
            format!("{:.4} (step {})", e.eval_loss, e.step)
        })
    };
    let _ = writeln!(out, "run {}", d.name);
    let _ = writeln!(
        out,
        "  steps {}  epochs {:.3}  wall time {}  tokens/s {}",
        d.steps,
        d.epochs,
        d.wall_time_seconds.map_or("–".into(), |s| format!(
            "{:.0} s ({:.1} min)",
            s,
            s / 60.0
        )),
        d.tokens_per_second
            .map_or("–".into(), |t| format!("{t:.0} (median)"))
    );
    let _ = writeln!(
        out,
        "  eval loss  initial {}  best {}  final {}",
        eval(d.initial_eval),
        eval(d.best_eval),
        eval(d.final_eval)
    );
    let _ = writeln!(
        out,
        "  train loss first {}  last {}",
        d.first_train_loss.map_or("–".into(), |l| format!("{l:.4}")),
        d.last_train_loss.map_or("–".into(), |l| format!("{l:.4}"))
    );
    if let Some((first, peak, last)) = d.learning_rate {
        let _ = writeln!(
            out,
            "  learning rate {first:.2e} → peak {peak:.2e} → {last:.2e}"
        );
    }
    if let Some((lo, hi)) = d.grad_norm {
        let _ = writeln!(out, "  grad norm {lo:.3} … {hi:.3}");
    }
    if let Some(why) = &d.stopped_early {
        let _ = writeln!(out, "  stopped early: {why}");
    }
    let train: Vec<f64> = history
        .series(|r| r.loss)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    if !train.is_empty() {
        let _ = writeln!(out, "  train loss {}", sparkline(&train, 60));
    }
    let evals: Vec<f64> = d.evaluations.iter().map(|e| e.eval_loss).collect();
    if evals.len() > 1 {
        let _ = writeln!(out, "  eval loss  {}", sparkline(&evals, 60));
    }
    if !d.evaluations.is_empty() {
        let _ = writeln!(out, "  evaluations:\n    {:>7}  {:>9}", "step", "eval loss");
        for e in &d.evaluations {
            let best = d.best_eval.is_some_and(|b| b.step == e.step);
            let _ = writeln!(
                out,
                "    {:>7}  {:>9.4}{}",
                e.step,
                e.eval_loss,
                if best { "  ← best" } else { "" }
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"{"step":0,"epoch":0.0,"eval_loss":1.64}
{"step":5,"epoch":0.1,"loss":1.49,"learning_rate":0.0004,"grad_norm":0.65,"tokens_per_second":257.5}
{"step":10,"epoch":0.2,"loss":1.20,"learning_rate":0.00035,"grad_norm":0.63,"tokens_per_second":260.8}
{"step":10,"epoch":0.2,"eval_loss":0.78}
{"step":15,"epoch":0.3,"loss":0.53,"learning_rate":0.00001,"grad_norm":0.9,"tokens_per_second":242.0}
{"step":15,"epoch":0.3,"eval_loss":0.80}
"#;

    fn history() -> RunHistory {
        let summary = r#"{"wall_time_seconds": 184.7, "stopped_early": null}"#;
        RunHistory::parse("run", METRICS, Some(summary), Path::new("metrics.jsonl")).unwrap()
    }

    #[test]
    fn the_digest_finds_initial_best_and_final_evaluations_and_ranges() {
        let d = history().digest();
        assert_eq!((d.steps, d.epochs), (15, 0.3));
        assert_eq!(
            d.initial_eval,
            Some(EvalPoint {
                step: 0,
                eval_loss: 1.64
            })
        );
        assert_eq!(
            d.best_eval,
            Some(EvalPoint {
                step: 10,
                eval_loss: 0.78
            })
        );
        assert_eq!(
            d.final_eval,
            Some(EvalPoint {
                step: 15,
                eval_loss: 0.80
            })
        );
        assert_eq!(
            (d.first_train_loss, d.last_train_loss),
            (Some(1.49), Some(0.53))
        );
        assert_eq!(d.learning_rate, Some((0.0004, 0.0004, 0.00001)));
        assert_eq!(d.grad_norm, Some((0.63, 0.9)));
        assert_eq!(d.tokens_per_second, Some(257.5));
        assert_eq!(d.wall_time_seconds, Some(184.7));
        let text = render_digest(&d, &history());
        assert!(text.contains("best 0.7800 (step 10)"), "{text}");
        assert!(text.contains("0.7800  ← best"), "{text}");
    }

    #[test]
    fn csv_has_one_row_per_step_with_the_evaluation_beside_the_log() {
        let csv = history().to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "step,epoch,loss,learning_rate,grad_norm,tokens_per_second,eval_loss"
        );
        assert_eq!(lines.len(), 1 + 4, "{csv}");
        assert_eq!(lines[1], "0,0,,,,,1.64");
        assert_eq!(lines[3], "10,0.2,1.2,0.00035,0.63,260.8,0.78");
    }

    #[test]
    fn compared_runs_share_one_csv_with_a_run_column_and_the_union_of_columns() {
        let mut other = RunHistory::parse(
            "b, second",
            "{\"step\":1,\"epoch\":0.5,\"loss\":2.0}\n",
            None,
            Path::new("m.jsonl"),
        )
        .unwrap();
        other.records.push(MetricRecord {
            step: 1,
            eval_loss: Some(1.5),
            ..other.records[0].clone()
        });
        let csv = runs_to_csv(&[history(), other]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "run,step,epoch,loss,learning_rate,grad_norm,tokens_per_second,eval_loss"
        );
        assert_eq!(lines.len(), 1 + 4 + 1, "{csv}");
        assert_eq!(lines[5], "\"b, second\",1,0.5,2,,,,1.5");
    }

    #[test]
    fn a_bad_line_is_named_and_sparklines_span_low_to_high() {
        let err = RunHistory::parse("r", "{\"step\":1}\nnot json\n", None, Path::new("m.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") || err.contains("line 2"), "{err}");
        assert_eq!(sparkline(&[1.0, 2.0, 3.0], 10), "▁▅█");
        assert_eq!(sparkline(&[], 10), "");
    }
}
