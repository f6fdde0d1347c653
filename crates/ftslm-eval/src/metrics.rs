//! Field outcomes, token precision/recall/F1, and the aggregates over a run.
//!
//! Conventions, chosen so that every number is defined and JSON-serialisable:
//! * a pair where both sides are null is exact with F1 1 and adds no tokens;
//! * a pair where one side is null has F1 0;
//! * a ratio whose denominator is zero is 0, except that precision, recall and
//!   F1 over zero predicted *and* zero reference tokens are 1 (every slot was
//!   correctly null, so nothing was got wrong).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::normalize::{normalize, tokens};
use crate::report::RecordResult;

/// How one field of one record was scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FieldOutcome {
    /// Both values present and equal after normalisation.
    ExactMatch,
    /// Both values present but different; `f1 > 0` means partial overlap.
    Mismatch {
        precision: f64,
        recall: f64,
        f1: f64,
    },
    /// Both null.
    CorrectNull,
    /// The reference has a value, the prediction is null or missing.
    MissedValue,
    /// The reference is null, the prediction has a value.
    HallucinatedValue,
}

impl FieldOutcome {
    /// Exact matches and correct nulls both count as exact.
    pub fn is_exact(&self) -> bool {
        matches!(self, FieldOutcome::ExactMatch | FieldOutcome::CorrectNull)
    }
}

/// Word-token counts of one comparison or a sum of them (multiset overlap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCounts {
    pub true_positive: usize,
    pub predicted: usize,
    pub reference: usize,
}

impl TokenCounts {
    /// Counts of `predicted` against `reference` token lists.
    pub fn of(predicted: &[&str], reference: &[&str]) -> TokenCounts {
        let mut available: HashMap<&str, usize> = HashMap::new();
        for t in reference {
            *available.entry(t).or_default() += 1;
        }
        let mut true_positive = 0;
        for t in predicted {
            if let Some(n) = available.get_mut(t) {
                if *n > 0 {
                    *n -= 1;
                    true_positive += 1;
                }
            }
        }
        TokenCounts {
            true_positive,
            predicted: predicted.len(),
            reference: reference.len(),
        }
    }

    pub fn add(&mut self, other: TokenCounts) {
        self.true_positive += other.true_positive;
        self.predicted += other.predicted;
        self.reference += other.reference;
    }

    fn is_empty(&self) -> bool {
        self.predicted == 0 && self.reference == 0
    }

    pub fn precision(&self) -> f64 {
        if self.is_empty() {
            1.0
        } else {
            ratio(self.true_positive, self.predicted)
        }
    }

    pub fn recall(&self) -> f64 {
        if self.is_empty() {
            1.0
        } else {
            ratio(self.true_positive, self.reference)
        }
    }

    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        }
    }
}

/// One field of one record: the values, their normalised forms and the score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldResult {
    pub field: String,
    pub reference: Option<String>,
    pub prediction: Option<String>,
    pub normalized_reference: Option<String>,
    pub normalized_prediction: Option<String>,
    pub outcome: FieldOutcome,
    pub tokens: TokenCounts,
}

impl FieldResult {
    /// Token F1 of this pair: 1 for exact (including both null), 0 when one side is null.
    pub fn f1(&self) -> f64 {
        match &self.outcome {
            FieldOutcome::ExactMatch | FieldOutcome::CorrectNull => 1.0,
            FieldOutcome::Mismatch { f1, .. } => *f1,
            FieldOutcome::MissedValue | FieldOutcome::HallucinatedValue => 0.0,
        }
    }
}

/// Scores one prediction against one reference value.
pub fn score_field(field: &str, reference: Option<&str>, prediction: Option<&str>) -> FieldResult {
    let normalized_reference = reference.and_then(normalize);
    let normalized_prediction = prediction.and_then(normalize);
    let ref_tokens = normalized_reference
        .as_deref()
        .map(tokens)
        .unwrap_or_default();
    let pred_tokens = normalized_prediction
        .as_deref()
        .map(tokens)
        .unwrap_or_default();
    let counts = TokenCounts::of(&pred_tokens, &ref_tokens);
    let outcome = match (&normalized_reference, &normalized_prediction) {
        (None, None) => FieldOutcome::CorrectNull,
        (Some(_), None) => FieldOutcome::MissedValue,
        (None, Some(_)) => FieldOutcome::HallucinatedValue,
        (Some(r), Some(p)) if r == p => FieldOutcome::ExactMatch,
        (Some(_), Some(_)) => FieldOutcome::Mismatch {
            precision: counts.precision(),
            recall: counts.recall(),
            f1: counts.f1(),
        },
    };
    FieldResult {
        field: field.to_string(),
        reference: reference.map(str::to_string),
        prediction: prediction.map(str::to_string),
        normalized_reference,
        normalized_prediction,
        outcome,
        tokens: counts,
    }
}

/// Aggregates of one field over all records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldSummary {
    pub field: String,
    /// Exact matches plus correct nulls.
    pub exact: usize,
    pub exact_rate: f64,
    /// Micro over this field's token counts.
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub tokens: TokenCounts,
    pub correct_null: usize,
    pub missed_value: usize,
    pub hallucinated_value: usize,
    /// Both sides had a value and they differ.
    pub mismatch: usize,
}

/// Aggregates over a whole evaluation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSummary {
    pub records: usize,
    /// Records with a record-level error (e.g. generation failed).
    pub failed: usize,
    pub json_valid: usize,
    pub json_valid_rate: f64,
    /// Records read only by the lenient path (fences, prose).
    pub recovered: usize,
    pub recovered_rate: f64,
    pub records_with_missing_keys: usize,
    pub records_with_extra_keys: usize,
    pub records_with_type_errors: usize,
    pub all_fields_exact: usize,
    pub all_fields_exact_rate: f64,
    pub fields: Vec<FieldSummary>,
    /// Exact slots (including correct nulls) over all slots.
    pub exact_rate: f64,
    pub micro_precision: f64,
    pub micro_recall: f64,
    pub micro_f1: f64,
    pub tokens: TokenCounts,
    pub correct_null: usize,
    pub missed_value: usize,
    pub hallucinated_value: usize,
    pub mismatch: usize,
    pub reference_null_slots: usize,
    pub reference_value_slots: usize,
    /// Hallucinated values over reference-null slots.
    pub hallucination_rate: f64,
    /// Missed values over reference-value slots.
    pub missed_rate: f64,
    /// Mean negative log-likelihood of the reference answers, when the caller measured it.
    pub answer_loss: Option<f64>,
    /// Wall-clock seconds spent generating, when the caller measured it.
    pub generation_seconds: Option<f64>,
}

impl EvalSummary {
    /// Aggregates `records` over `fields` (records' results for other fields are ignored).
    pub fn from_records(
        fields: &[String],
        records: &[RecordResult],
        answer_loss: Option<f64>,
    ) -> EvalSummary {
        let n = records.len();
        let count =
            |pred: &dyn Fn(&RecordResult) -> bool| records.iter().filter(|r| pred(r)).count();
        let field_summaries: Vec<FieldSummary> = fields
            .iter()
            .map(|field| summarize_field(field, records))
            .collect();
        let all_fields_exact = count(&|r| {
            fields.iter().all(|f| {
                r.fields
                    .iter()
                    .find(|fr| &fr.field == f)
                    .is_some_and(|fr| fr.outcome.is_exact())
            })
        });

        let mut tokens = TokenCounts::default();
        let (mut exact, mut correct_null, mut missed, mut hallucinated, mut mismatch) =
            (0, 0, 0, 0, 0);
        for f in &field_summaries {
            tokens.add(f.tokens);
            exact += f.exact;
            correct_null += f.correct_null;
            missed += f.missed_value;
            hallucinated += f.hallucinated_value;
            mismatch += f.mismatch;
        }
        let reference_null_slots = correct_null + hallucinated;
        let reference_value_slots = exact - correct_null + mismatch + missed;
        let json_valid = count(&|r| r.json_valid);
        let recovered = count(&|r| r.recovered);
        EvalSummary {
            records: n,
            failed: count(&|r| r.error.is_some()),
            json_valid,
            json_valid_rate: ratio(json_valid, n),
            recovered,
            recovered_rate: ratio(recovered, n),
            records_with_missing_keys: count(&|r| !r.missing_keys.is_empty()),
            records_with_extra_keys: count(&|r| !r.extra_keys.is_empty()),
            records_with_type_errors: count(&|r| !r.type_errors.is_empty()),
            all_fields_exact,
            all_fields_exact_rate: ratio(all_fields_exact, n),
            fields: field_summaries,
            exact_rate: ratio(exact, n * fields.len()),
            micro_precision: tokens.precision(),
            micro_recall: tokens.recall(),
            micro_f1: tokens.f1(),
            tokens,
            correct_null,
            missed_value: missed,
            hallucinated_value: hallucinated,
            mismatch,
            reference_null_slots,
            reference_value_slots,
            hallucination_rate: ratio(hallucinated, reference_null_slots),
            missed_rate: ratio(missed, reference_value_slots),
            answer_loss,
            generation_seconds: None,
        }
    }

    /// The summary of `field`, if it was scored.
    pub fn field(&self, field: &str) -> Option<&FieldSummary> {
        self.fields.iter().find(|f| f.field == field)
    }
}

fn summarize_field(field: &str, records: &[RecordResult]) -> FieldSummary {
    let mut s = FieldSummary {
        field: field.to_string(),
        exact: 0,
        exact_rate: 0.0,
        precision: 0.0,
        recall: 0.0,
        f1: 0.0,
        tokens: TokenCounts::default(),
        correct_null: 0,
        missed_value: 0,
        hallucinated_value: 0,
        mismatch: 0,
    };
    for result in records
        .iter()
        .filter_map(|r| r.fields.iter().find(|f| f.field == field))
    {
        s.tokens.add(result.tokens);
        match result.outcome {
            FieldOutcome::ExactMatch => s.exact += 1,
            FieldOutcome::CorrectNull => {
                s.exact += 1;
                s.correct_null += 1;
            }
            FieldOutcome::Mismatch { .. } => s.mismatch += 1,
            FieldOutcome::MissedValue => s.missed_value += 1,
            FieldOutcome::HallucinatedValue => s.hallucinated_value += 1,
        }
    }
    s.exact_rate = ratio(s.exact, records.len());
    s.precision = s.tokens.precision();
    s.recall = s.tokens.recall();
    s.f1 = s.tokens.f1();
    s
}

/// `num / den`, or 0 when there is nothing to divide by.
pub fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}
