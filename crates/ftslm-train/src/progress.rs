//! How a run reports itself while it goes: a progress bar on a terminal, plain
//! log lines when stderr is a file or pipe (CloudWatch, CI), or nothing.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::metrics::MetricRecord;

/// What the loop tells the outside world; the loop does not care which.
pub trait Progress {
    /// Training starts (or resumes) at `step` of `total` optimizer steps.
    fn start(&mut self, step: u64, total: u64);
    /// An optimizer step finished.
    fn step(&mut self, step: u64);
    /// A training log or evaluation was recorded.
    fn record(&mut self, record: &MetricRecord);
    /// A notable event (resume, removed debris, checkpoint, early stop).
    fn note(&mut self, message: &str);
    fn finish(&mut self);
}

/// A bar when stderr is a terminal, log lines otherwise.
pub fn for_stderr() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(BarProgress::default())
    } else {
        Box::new(LineProgress)
    }
}

fn describe(r: &MetricRecord) -> String {
    let mut parts = vec![format!("step {}", r.step), format!("epoch {:.2}", r.epoch)];
    if let Some(v) = r.loss {
        parts.push(format!("loss {v:.4}"));
    }
    if let Some(v) = r.learning_rate {
        parts.push(format!("lr {v:.3e}"));
    }
    if let Some(v) = r.grad_norm {
        parts.push(format!("grad_norm {v:.3}"));
    }
    if let Some(v) = r.tokens_per_second {
        parts.push(format!("{v:.0} tok/s"));
    }
    if let Some(v) = r.eval_loss {
        parts.push(format!("eval_loss {v:.4}"));
    }
    parts.join("  ")
}

/// One line on stderr per record and note.
#[derive(Debug, Default)]
pub struct LineProgress;

impl Progress for LineProgress {
    fn start(&mut self, step: u64, total: u64) {
        eprintln!("training: step {step} of {total}");
    }
    fn step(&mut self, _step: u64) {}
    fn record(&mut self, record: &MetricRecord) {
        eprintln!("{}", describe(record));
    }
    fn note(&mut self, message: &str) {
        eprintln!("{message}");
    }
    fn finish(&mut self) {}
}

/// An indicatif bar: step/total, last loss, lr, tokens/s, ETA.
#[derive(Default)]
pub struct BarProgress {
    bar: Option<ProgressBar>,
    last_eval: Option<f64>,
}

impl Progress for BarProgress {
    fn start(&mut self, step: u64, total: u64) {
        let bar = ProgressBar::new(total).with_position(step);
        let style = ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos}/{len} {msg} [{elapsed_precise} < {eta}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.reset_eta();
        self.bar = Some(bar);
    }
    fn step(&mut self, step: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(step);
        }
    }
    fn record(&mut self, r: &MetricRecord) {
        let Some(bar) = &self.bar else { return };
        if let Some(v) = r.eval_loss {
            self.last_eval = Some(v);
            bar.println(describe(r));
        }
        if let (Some(loss), Some(lr), Some(tps)) = (r.loss, r.learning_rate, r.tokens_per_second) {
            let eval = self
                .last_eval
                .map(|v| format!(" eval {v:.4}"))
                .unwrap_or_default();
            bar.set_message(format!("loss {loss:.4} lr {lr:.2e} {tps:.0} tok/s{eval}"));
        }
    }
    fn note(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None => eprintln!("{message}"),
        }
    }
    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}

/// Reports nothing (tests, library callers with their own reporting).
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _: u64, _: u64) {}
    fn step(&mut self, _: u64) {}
    fn record(&mut self, _: &MetricRecord) {}
    fn note(&mut self, _: &str) {}
    fn finish(&mut self) {}
}

/// Keeps every note and record (tests and callers that want the notes).
#[derive(Debug, Default, Clone)]
pub struct RecordingProgress {
    pub notes: Vec<String>,
    pub records: Vec<MetricRecord>,
}

impl Progress for RecordingProgress {
    fn start(&mut self, _: u64, _: u64) {}
    fn step(&mut self, _: u64) {}
    fn record(&mut self, record: &MetricRecord) {
        self.records.push(record.clone());
    }
    fn note(&mut self, message: &str) {
        self.notes.push(message.to_string());
    }
    fn finish(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_describe_what_was_recorded() {
        let line = describe(&MetricRecord::train(10, 0.5, 1.23456, 2e-4, 0.75, 812.0));
        assert_eq!(
            line,
            "step 10  epoch 0.50  loss 1.2346  lr 2.000e-4  grad_norm 0.750  812 tok/s"
        );
        assert!(describe(&MetricRecord::eval(0, 0.0, 2.5)).ends_with("eval_loss 2.5000"));
    }

    #[test]
    fn bar_accepts_records_without_a_terminal() {
        let mut p = BarProgress::default();
        p.start(3, 10);
        p.step(4);
        p.record(&MetricRecord::eval(4, 0.1, 1.5));
        p.record(&MetricRecord::train(4, 0.1, 1.0, 1e-4, 0.5, 100.0));
        assert_eq!(p.last_eval, Some(1.5));
        assert_eq!(p.bar.as_ref().map(|b| b.position()), Some(4));
        p.finish();
        assert!(p.bar.is_none());
    }
}
