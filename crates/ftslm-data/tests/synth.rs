//! The synthetic generator's contract: deterministic bytes, the real data set's
//! record shape and null rates, a broad vocabulary, and answers that can be
//! read off their narratives.

use std::collections::{BTreeSet, HashSet};
use std::sync::OnceLock;

use ftslm_data::synth::{generate, write_splits, SynthError, SynthSpec};
use ftslm_data::{Answer, InstructionRecord, MEDICAL_IE_FIELDS};
use serde_json::{Map, Value};

/// Null rates measured on the real 4,500-record training set.
const REAL_NULL_RATES: [(&str, f64); 7] = [
    ("cancer_type", 0.0),
    ("stage", 0.021),
    ("gene_mutation", 0.221),
    ("biomarker", 0.224),
    ("treatment", 0.0),
    ("response", 0.009),
    ("metastasis_site", 0.302),
];

fn five_thousand() -> &'static [InstructionRecord] {
    static RECORDS: OnceLock<Vec<InstructionRecord>> = OnceLock::new();
    RECORDS.get_or_init(|| generate(5000, 42))
}

fn fields(record: &InstructionRecord) -> &Map<String, Value> {
    match &record.output {
        Answer::Fields(map) => map,
        Answer::Text(text) => panic!("answer is free text, not the seven fields: {text}"),
    }
}

fn null_rate(records: &[InstructionRecord], field: &str) -> f64 {
    let nulls = records
        .iter()
        .filter(|r| fields(r)[field].is_null())
        .count();
    nulls as f64 / records.len() as f64
}

#[test]
fn same_seed_writes_identical_bytes_and_another_seed_differs() {
    let spec = SynthSpec {
        train: 300,
        validation: 60,
        seed: 42,
    };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    write_splits(a.path(), &spec).unwrap();
    write_splits(b.path(), &spec).unwrap();
    write_splits(c.path(), &SynthSpec { seed: 43, ..spec }).unwrap();
    for name in ["train.jsonl", "validation.jsonl"] {
        let first = std::fs::read(a.path().join(name)).unwrap();
        let second = std::fs::read(b.path().join(name)).unwrap();
        let other = std::fs::read(c.path().join(name)).unwrap();
        assert!(!first.is_empty(), "{name} is empty");
        assert_eq!(
            first, second,
            "{name} differs between two runs with seed 42"
        );
        assert_ne!(first, other, "{name} is the same for seeds 42 and 43");
    }
}

#[test]
fn training_records_do_not_depend_on_the_validation_count() {
    let short = generate(100, 9);
    let long = generate(250, 9);
    assert_eq!(short.as_slice(), &long[..100]);
}

#[test]
fn records_have_the_seven_fields_in_order_with_string_or_null_values() {
    for (i, record) in five_thousand().iter().enumerate() {
        assert_eq!(
            record.instruction,
            "Extract all cancer-related entities from the text."
        );
        assert!(
            !record.input.trim().is_empty(),
            "record {i} has an empty narrative"
        );
        let map = fields(record);
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        assert_eq!(keys, MEDICAL_IE_FIELDS, "record {i} keys");
        for (key, value) in map {
            match value {
                Value::Null => {}
                Value::String(s) => assert!(!s.trim().is_empty(), "record {i}: {key} is blank"),
                other => panic!("record {i}: {key} is {other}, not a string or null"),
            }
        }
    }
}

#[test]
fn default_splits_are_written_compactly_with_no_narrative_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested/synthetic");
    let summary = write_splits(&out, &SynthSpec::default()).unwrap();
    assert_eq!((summary.train, summary.validation), (4500, 500));
    assert_eq!(summary.train_path, out.join("train.jsonl"));
    assert_eq!(summary.validation_path, out.join("validation.jsonl"));

    let mut seen = HashSet::new();
    for (path, expected) in [(&summary.train_path, 4500), (&summary.validation_path, 500)] {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), expected, "{}", path.display());
        for line in lines {
            let record: InstructionRecord = serde_json::from_str(line).unwrap();
            assert_eq!(
                serde_json::to_string(&record).unwrap(),
                line,
                "not compact JSON"
            );
            assert!(seen.insert(record.input), "narrative repeated: {line}");
        }
    }
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["train.jsonl", "validation.jsonl"],
        "temporary files left behind"
    );
}

#[test]
fn an_output_path_that_is_a_file_is_reported_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let err = write_splits(&blocker, &SynthSpec::default()).unwrap_err();
    assert!(matches!(err, SynthError::CreateDir { .. }), "{err:?}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[test]
fn null_rates_are_close_to_the_real_data() {
    for (field, real) in REAL_NULL_RATES {
        let synthetic = null_rate(five_thousand(), field);
        assert!(
            (synthetic - real).abs() <= 0.06,
            "{field}: synthetic null rate {synthetic:.3} vs real {real:.3}"
        );
    }
}

#[test]
fn null_rates_are_close_to_the_real_file_when_present() {
    let path = ftslm_testkit::require_shared!("data/medical-ie/train.jsonl");
    let real: Vec<InstructionRecord> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for field in MEDICAL_IE_FIELDS {
        let (r, s) = (null_rate(&real, field), null_rate(five_thousand(), field));
        assert!(
            (r - s).abs() <= 0.06,
            "{field}: synthetic {s:.3} vs real {r:.3}"
        );
    }
}

#[test]
fn vocabulary_is_broad() {
    let distinct = |field: &str| -> BTreeSet<&str> {
        five_thousand()
            .iter()
            .filter_map(|r| fields(r)[field].as_str())
            .collect()
    };
    let cancers = distinct("cancer_type");
    let treatments = distinct("treatment");
    assert!(cancers.len() >= 25, "only {} cancer types", cancers.len());
    assert!(
        treatments.len() >= 200,
        "only {} treatments",
        treatments.len()
    );
    assert!(distinct("gene_mutation").len() >= 60);
    assert!(distinct("response").len() >= 15);
}

#[test]
fn narratives_are_about_as_long_as_real_ones() {
    let mut lengths: Vec<usize> = five_thousand().iter().map(|r| r.input.len()).collect();
    lengths.sort_unstable();
    let median = lengths[lengths.len() / 2];
    assert!(
        (300..=550).contains(&median),
        "median narrative length {median}"
    );
    assert!(
        lengths[lengths.len() - 1] < 1500,
        "longest narrative {}",
        lengths[lengths.len() - 1]
    );
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Words annotators use to join items, which the note need not contain.
const JOINERS: &[&str] = &["and", "then", "plus", "with", "followed", "by"];

/// How a note may name an answer word differently.
fn alternatives(word: &str) -> Vec<String> {
    let adjective = match word {
        "liver" => Some("hepatic"),
        "lung" => Some("pulmonary"),
        "bone" => Some("osseous"),
        "brain" => Some("intracranial"),
        "peritoneum" => Some("peritoneal"),
        "pleura" => Some("pleural"),
        "omentum" => Some("omental"),
        "spleen" => Some("splenic"),
        _ => None,
    };
    let mut out: Vec<String> = adjective.into_iter().map(String::from).collect();
    // Roman stage groups also appear as arabic numbers: "iiib" as "3b".
    let numeral_len = word
        .find(|c: char| c != 'i' && c != 'v')
        .unwrap_or(word.len());
    let number = match &word[..numeral_len] {
        "i" => Some(1),
        "ii" => Some(2),
        "iii" => Some(3),
        "iv" => Some(4),
        _ => None,
    };
    if let Some(n) = number {
        out.push(format!("{n}{}", &word[numeral_len..]));
    }
    out
}

#[test]
fn every_answer_word_can_be_found_in_its_narrative() {
    for record in five_thousand() {
        let narrative: HashSet<String> = words(&record.input).into_iter().collect();
        for (field, value) in fields(record) {
            let Some(value) = value.as_str() else {
                continue;
            };
            for word in words(value) {
                if JOINERS.contains(&word.as_str()) || narrative.contains(&word) {
                    continue;
                }
                assert!(
                    alternatives(&word)
                        .iter()
                        .any(|alt| narrative.contains(alt)),
                    "{field} {value:?}: {word:?} is not in the narrative: {}",
                    record.input
                );
            }
        }
    }
}
