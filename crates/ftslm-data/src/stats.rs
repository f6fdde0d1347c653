//! What is in a dataset: how often each answer field is null, how varied its
//! values are, and how long the examples are in tokens against max_seq_length.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value;

use crate::record::Record;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldStats {
    pub field: String,
    /// Records whose answer has this field.
    pub present: usize,
    pub nulls: usize,
    pub null_rate: f64,
    /// Distinct non-null values.
    pub distinct: usize,
}

/// Per-field counts over the answers that are JSON objects, fields in first-seen order.
pub fn field_stats(records: &[Record]) -> Vec<FieldStats> {
    let mut order: Vec<String> = Vec::new();
    let mut present: HashMap<String, usize> = HashMap::new();
    let mut nulls: HashMap<String, usize> = HashMap::new();
    let mut values: HashMap<String, BTreeSet<String>> = HashMap::new();
    for record in records {
        let Some(fields) = record.answer_fields() else {
            continue;
        };
        for (k, v) in fields {
            if !present.contains_key(&k) {
                order.push(k.clone());
            }
            *present.entry(k.clone()).or_default() += 1;
            match v {
                Value::Null => *nulls.entry(k).or_default() += 1,
                Value::String(s) => {
                    values.entry(k).or_default().insert(s);
                }
                other => {
                    values.entry(k).or_default().insert(other.to_string());
                }
            }
        }
    }
    order
        .into_iter()
        .map(|field| {
            let present = present[&field];
            let nulls = nulls.get(&field).copied().unwrap_or(0);
            FieldStats {
                distinct: values.get(&field).map_or(0, BTreeSet::len),
                null_rate: nulls as f64 / present.max(1) as f64,
                field,
                present,
                nulls,
            }
        })
        .collect()
}

/// min / median / 95th percentile / max of a set of lengths (nearest-rank percentiles).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LengthSummary {
    pub min: usize,
    pub median: usize,
    pub p95: usize,
    pub max: usize,
    pub mean: f64,
}

impl LengthSummary {
    pub fn of(lengths: &[usize]) -> LengthSummary {
        if lengths.is_empty() {
            return LengthSummary {
                min: 0,
                median: 0,
                p95: 0,
                max: 0,
                mean: 0.0,
            };
        }
        let mut v = lengths.to_vec();
        v.sort_unstable();
        let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        LengthSummary {
            min: v[0],
            median: rank(0.5),
            p95: rank(0.95),
            max: v[v.len() - 1],
            mean: v.iter().sum::<usize>() as f64 / v.len() as f64,
        }
    }
}

/// Token lengths of one example, untruncated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExampleLength {
    pub prompt: usize,
    pub answer: usize,
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenStats {
    pub prompt: LengthSummary,
    pub answer: LengthSummary,
    pub total: LengthSummary,
    pub max_seq_length: usize,
    /// Examples longer than max_seq_length; their narrative is shortened, never the answer.
    pub over_max_seq_length: usize,
}

pub fn token_stats(lengths: &[ExampleLength], max_seq_length: usize) -> TokenStats {
    let pick = |f: fn(&ExampleLength) -> usize| lengths.iter().map(f).collect::<Vec<_>>();
    TokenStats {
        prompt: LengthSummary::of(&pick(|l| l.prompt)),
        answer: LengthSummary::of(&pick(|l| l.answer)),
        total: LengthSummary::of(&pick(|l| l.total)),
        max_seq_length,
        over_max_seq_length: lengths.iter().filter(|l| l.total > max_seq_length).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Answer, InstructionRecord};

    fn rec(out: &str) -> Record {
        Record::Instruction(InstructionRecord {
            instruction: "i".into(),
            input: "t".into(),
            output: Answer::Fields(serde_json::from_str(out).unwrap()),
        })
    }

    #[test]
    fn null_rates_and_distinct_values() {
        let rs = vec![
            rec(r#"{"a": "x", "b": null}"#),
            rec(r#"{"a": "x", "b": "y"}"#),
            rec(r#"{"a": "z", "b": null}"#),
            rec(r#"{"a": null, "b": null}"#),
        ];
        let s = field_stats(&rs);
        assert_eq!(s[0].field, "a");
        assert_eq!((s[0].nulls, s[0].distinct), (1, 2));
        assert_eq!(s[1].null_rate, 0.75);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<usize> = (1..=100).collect();
        let s = LengthSummary::of(&v);
        assert_eq!((s.min, s.median, s.p95, s.max), (1, 50, 95, 100));
        let t = token_stats(
            &[
                ExampleLength {
                    prompt: 5,
                    answer: 2,
                    total: 7,
                },
                ExampleLength {
                    prompt: 9,
                    answer: 3,
                    total: 12,
                },
            ],
            10,
        );
        assert_eq!(t.over_max_seq_length, 1);
        assert_eq!(t.answer.max, 3);
    }
}
