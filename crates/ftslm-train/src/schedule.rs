//! Learning-rate schedules as transformers' `get_scheduler` defines them.
//!
//! Like torch's `LambdaLR`, the rate for the optimizer update that follows `k`
//! earlier updates is `base_lr * factor(k)`; so with warmup the very first
//! update uses a rate of 0, exactly as a transformers run does.

use serde::{Deserialize, Serialize};

/// The configuration's type, so `training.lr_scheduler_type` needs no mapping.
pub use ftslm_config::LrSchedulerType;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub kind: LrSchedulerType,
    pub base_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl LrSchedule {
    /// The multiplier of `base_lr` after `k` completed updates.
    pub fn factor(&self, k: u64) -> f64 {
        let (k, warmup, total) = (k as f64, self.warmup_steps as f64, self.total_steps as f64);
        if k < warmup {
            return k / warmup.max(1.0);
        }
        let progress = (k - warmup) / (total - warmup).max(1.0);
        match self.kind {
            LrSchedulerType::Constant => 1.0,
            LrSchedulerType::Linear => ((total - k) / (total - warmup).max(1.0)).max(0.0),
            LrSchedulerType::Cosine => {
                (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
        }
    }

    /// The learning rate of the update that follows `k` completed updates.
    pub fn lr(&self, k: u64) -> f64 {
        self.base_lr * self.factor(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: LrSchedulerType) -> LrSchedule {
        LrSchedule {
            kind,
            base_lr: 2e-4,
            warmup_steps: 100,
            total_steps: 1410,
        }
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() <= 1e-15, "{a} vs {b}");
    }

    // Formulas transcribed from transformers.optimization:
    //   warmup:  step / max(1, warmup)
    //   linear:  max(0, (total - step) / max(1, total - warmup))
    //   cosine:  max(0, 0.5 * (1 + cos(pi * 2 * 0.5 * (step - warmup) / max(1, total - warmup))))
    #[test]
    fn warmup_is_shared_and_starts_at_zero() {
        for kind in [
            LrSchedulerType::Linear,
            LrSchedulerType::Cosine,
            LrSchedulerType::Constant,
        ] {
            let s = sched(kind);
            close(s.lr(0), 0.0);
            close(s.lr(1), 2e-4 * 1.0 / 100.0);
            close(s.lr(50), 2e-4 * 0.5);
            close(s.lr(99), 2e-4 * 99.0 / 100.0);
            close(s.lr(100), 2e-4);
        }
    }

    #[test]
    fn linear_decays_to_zero() {
        let s = sched(LrSchedulerType::Linear);
        close(s.lr(755), 2e-4 * (1410.0 - 755.0) / 1310.0);
        close(s.lr(1409), 2e-4 * 1.0 / 1310.0);
        close(s.lr(1410), 0.0);
        close(s.lr(2000), 0.0);
    }

    #[test]
    fn cosine_follows_half_a_wave() {
        let s = sched(LrSchedulerType::Cosine);
        let expect =
            |k: f64| 2e-4 * 0.5 * (1.0 + (std::f64::consts::PI * (k - 100.0) / 1310.0).cos());
        close(s.lr(755), expect(755.0));
        close(s.lr(755), 2e-4 * 0.5);
        close(s.lr(428), expect(428.0));
        close(s.lr(1410), 0.0);
    }

    #[test]
    fn constant_holds_after_warmup() {
        let s = sched(LrSchedulerType::Constant);
        close(s.lr(1000), 2e-4);
        let no_warmup = LrSchedule {
            warmup_steps: 0,
            ..s
        };
        close(no_warmup.lr(0), 2e-4);
    }
}
