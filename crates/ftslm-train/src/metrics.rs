//! The log history: one record per logged training interval or evaluation,
//! kept in the checkpoint's trainer_state.json and written out as
//! `metrics.jsonl`, one JSON object a line.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::error::TrainError;

/// A training log (`loss` present) or an evaluation (`eval_loss` present).
/// Field names are transformers' log_history keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    /// Optimizer steps completed (0: before training).
    pub step: u64,
    /// Epochs completed, fractional: the data position at this step.
    pub epoch: f64,
    /// Mean per-token training loss over the steps since the previous log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// The rate the latest step used (transformers logs the next step's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    /// The latest step's global gradient norm before clipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    /// Input tokens per second of step time (evaluation and saving excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
    /// Mean per-token loss over the whole evaluation set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
}

impl MetricRecord {
    pub fn train(
        step: u64,
        epoch: f64,
        loss: f64,
        learning_rate: f64,
        grad_norm: f64,
        tokens_per_second: f64,
    ) -> Self {
        MetricRecord {
            step,
            epoch,
            loss: Some(loss),
            learning_rate: Some(learning_rate),
            grad_norm: Some(grad_norm),
            tokens_per_second: Some(tokens_per_second),
            eval_loss: None,
        }
    }

    pub fn eval(step: u64, epoch: f64, eval_loss: f64) -> Self {
        MetricRecord {
            step,
            epoch,
            loss: None,
            learning_rate: None,
            grad_norm: None,
            tokens_per_second: None,
            eval_loss: Some(eval_loss),
        }
    }

    /// TensorBoard tag and value pairs for this record.
    pub fn scalars(&self) -> Vec<(&'static str, f64)> {
        [
            ("train/loss", self.loss),
            ("train/learning_rate", self.learning_rate),
            ("train/grad_norm", self.grad_norm),
            ("train/tokens_per_second", self.tokens_per_second),
            ("eval/loss", self.eval_loss),
        ]
        .into_iter()
        .filter_map(|(tag, v)| v.map(|v| (tag, v)))
        .collect()
    }
}

/// Rewrites `metrics.jsonl` with the whole history. Rewriting (rather than
/// appending) keeps the file atomic and equal to the checkpointed history after
/// a resume; a history is a few hundred short lines.
pub fn write_metrics_jsonl(path: &Path, history: &[MetricRecord]) -> Result<(), TrainError> {
    let mut text = String::new();
    for record in history {
        let line = serde_json::to_string(record).map_err(|e| {
            TrainError::io(
                "cannot serialise a record for",
                path,
                std::io::Error::other(e),
            )
        })?;
        text.push_str(&line);
        text.push('\n');
    }
    Ok(write_atomic(path, text.as_bytes())?)
}

/// Reads `metrics.jsonl` back (for tools and tests).
pub fn read_metrics_jsonl(path: &Path) -> Result<Vec<MetricRecord>, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io("cannot read", path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                TrainError::checkpoint(path, format!("line {}: not a metrics record: {e}", i + 1))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_omit_absent_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let history = vec![
            MetricRecord::eval(0, 0.0, 2.5),
            MetricRecord::train(10, 0.25, 0.1 + 0.2, 2e-4, 1.5, 1234.5),
        ];
        write_metrics_jsonl(&path, &history).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(
            first,
            serde_json::json!({"step": 0, "epoch": 0.0, "eval_loss": 2.5})
        );
        assert_eq!(
            read_metrics_jsonl(&path).unwrap(),
            history,
            "floats survive exactly"
        );
        assert_eq!(history[1].scalars().len(), 4);
    }
}
