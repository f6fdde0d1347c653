//! Parsers for flag values that must be in a range: each refusal names the
//! range, and clap names the flag.

use ftslm_config::LossOn;

/// `--loss-on`: the configuration's `dataset.loss_on` values.
pub(super) fn loss_on(value: &str) -> Result<LossOn, String> {
    LossOn::from_name(value).ok_or_else(|| format!("expected one of {}", LossOn::NAMES.join(", ")))
}

/// A count that must be at least 1 (a batch, a token budget).
pub(super) fn at_least_one(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".into()),
        Err(e) => Err(format!("{e}; give a whole number, at least 1")),
    }
}

/// A sampling temperature: finite and not negative (0 is greedy).
pub(super) fn temperature(value: &str) -> Result<f32, String> {
    match value.parse::<f32>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        Ok(_) => Err("must be a finite number, 0 (greedy) or more".into()),
        Err(e) => Err(format!("{e}; give a number, 0 (greedy) or more")),
    }
}

/// A probability mass in (0, 1].
pub(super) fn probability(value: &str) -> Result<f32, String> {
    match value.parse::<f32>() {
        Ok(p) if p > 0.0 && p <= 1.0 => Ok(p),
        Ok(_) => Err("must be in (0, 1]".into()),
        Err(e) => Err(format!("{e}; give a number in (0, 1]")),
    }
}

/// A narrative to extract from: not empty or blank.
pub(super) fn narrative(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        Err("is empty; give the narrative to extract from".into())
    } else {
        Ok(value.to_string())
    }
}
