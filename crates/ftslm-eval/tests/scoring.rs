//! Field outcomes, token P/R/F1 and the aggregates, against numbers worked out by hand.

use ftslm_eval::metrics::{score_field, FieldOutcome, TokenCounts};
use ftslm_eval::{RecordMeta, Scorer};
use serde_json::{json, Map, Value};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

fn fields() -> Vec<String> {
    ["cancer_type", "stage", "treatment"]
        .map(String::from)
        .to_vec()
}

#[test]
fn exact_match_after_normalisation() {
    for (reference, prediction) in [
        ("Lung adenocarcinoma", "Lung adenocarcinoma"),
        ("Stage IIIA", "stage iiia"),
        ("HER2-positive", "HER2 positive"),
        ("carboplatin, paclitaxel", "paclitaxel and carboplatin"),
    ] {
        let r = score_field("f", Some(reference), Some(prediction));
        assert_eq!(
            r.outcome,
            FieldOutcome::ExactMatch,
            "{reference:?} vs {prediction:?}"
        );
        assert_eq!(r.f1(), 1.0);
        assert_eq!(r.tokens.true_positive, r.tokens.reference);
    }
}

#[test]
fn partial_overlap_has_hand_computed_precision_recall_f1() {
    let r = score_field(
        "treatment",
        Some("carboplatin, paclitaxel, pembrolizumab"),
        Some("carboplatin and paclitaxel"),
    );
    assert_eq!(
        r.tokens,
        TokenCounts {
            true_positive: 2,
            predicted: 2,
            reference: 3
        }
    );
    let FieldOutcome::Mismatch {
        precision,
        recall,
        f1,
    } = r.outcome
    else {
        panic!("expected a mismatch, got {:?}", r.outcome);
    };
    assert!(close(precision, 1.0));
    assert!(close(recall, 2.0 / 3.0));
    assert!(close(f1, 0.8));
    assert!(close(r.f1(), 0.8));
}

#[test]
fn tokens_are_a_multiset() {
    // Reference has "cancer" once; a prediction repeating it gets credit once.
    let r = score_field("f", Some("breast cancer"), Some("cancer cancer"));
    assert_eq!(
        r.tokens,
        TokenCounts {
            true_positive: 1,
            predicted: 2,
            reference: 2
        }
    );
    let FieldOutcome::Mismatch {
        precision,
        recall,
        f1,
    } = r.outcome
    else {
        panic!("expected a mismatch");
    };
    assert!(close(precision, 0.5) && close(recall, 0.5) && close(f1, 0.5));
}

#[test]
fn disjoint_values_are_a_mismatch_with_zero_f1() {
    let r = score_field("stage", Some("II"), Some("IV"));
    assert_eq!(
        r.outcome,
        FieldOutcome::Mismatch {
            precision: 0.0,
            recall: 0.0,
            f1: 0.0
        }
    );
}

#[test]
fn null_outcomes() {
    let both = score_field("f", None, None);
    assert_eq!(both.outcome, FieldOutcome::CorrectNull);
    assert_eq!(both.f1(), 1.0);
    assert_eq!(both.tokens, TokenCounts::default());

    let missed = score_field("f", Some("Melanoma"), None);
    assert_eq!(missed.outcome, FieldOutcome::MissedValue);
    assert_eq!(missed.f1(), 0.0);
    assert_eq!(
        missed.tokens,
        TokenCounts {
            true_positive: 0,
            predicted: 0,
            reference: 1
        }
    );

    let hallucinated = score_field("f", None, Some("stage IV"));
    assert_eq!(hallucinated.outcome, FieldOutcome::HallucinatedValue);
    assert_eq!(hallucinated.f1(), 0.0);
    assert_eq!(
        hallucinated.tokens,
        TokenCounts {
            true_positive: 0,
            predicted: 2,
            reference: 0
        }
    );
}

#[test]
fn null_words_count_as_null_on_both_sides() {
    assert_eq!(
        score_field("f", None, Some("None")).outcome,
        FieldOutcome::CorrectNull
    );
    assert_eq!(
        score_field("f", Some("null"), Some("N/A")).outcome,
        FieldOutcome::CorrectNull
    );
    assert_eq!(
        score_field("f", Some("Melanoma"), Some("null")).outcome,
        FieldOutcome::MissedValue
    );
    let r = score_field("f", None, Some("none"));
    assert_eq!(r.prediction.as_deref(), Some("none"));
    assert_eq!(r.normalized_prediction, None);
}

/// Three records, every number below worked out by hand:
///
/// | record | field       | outcome                     | tp | pred | ref |
/// |--------|-------------|-----------------------------|----|------|-----|
/// | 1      | cancer_type | exact                       | 2  | 2    | 2   |
/// | 1      | stage       | exact                       | 2  | 2    | 2   |
/// | 1      | treatment   | mismatch (P 1, R 2/3)       | 2  | 2    | 3   |
/// | 2      | cancer_type | mismatch (P 1/2, R 1/2)     | 1  | 2    | 2   |
/// | 2      | stage       | hallucinated                | 0  | 1    | 0   |
/// | 2      | treatment   | missed                      | 0  | 0    | 1   |
/// | 3      | cancer_type | exact                       | 1  | 1    | 1   |
/// | 3      | stage       | correct null ("None")       | 0  | 0    | 0   |
/// | 3      | treatment   | correct null                | 0  | 0    | 0   |
///
/// Totals: tp 8, predicted 10, reference 11 → P 0.8, R 8/11, F1 16/21.
fn three_record_scorer() -> Scorer {
    let mut s = Scorer::new(fields());
    s.add(
        &obj(json!({"cancer_type": "Lung adenocarcinoma", "stage": "Stage IIIA",
                    "treatment": "carboplatin, paclitaxel, pembrolizumab"})),
        r#"{"cancer_type": "lung adenocarcinoma", "stage": "stage iiia", "treatment": "carboplatin and paclitaxel"}"#,
        RecordMeta { index: 0, id: Some("a".into()), line: Some(1) },
    );
    s.add(
        &obj(json!({"cancer_type": "Breast cancer", "stage": null, "treatment": "tamoxifen"})),
        "Here you go:\n```json\n{\"cancer_type\": \"breast carcinoma\", \"stage\": \"II\", \"treatment\": null}\n```",
        RecordMeta { index: 1, id: Some("b".into()), line: Some(2) },
    );
    s.add(
        &obj(json!({"cancer_type": "Melanoma", "stage": null, "treatment": null})),
        r#"{"cancer_type": "Melanoma", "stage": "None", "treatment": null}"#,
        RecordMeta {
            index: 2,
            id: Some("c".into()),
            line: Some(3),
        },
    );
    s
}

#[test]
fn aggregate_over_three_records() {
    let report = three_record_scorer().finish(Some(0.5));
    let s = &report.summary;
    assert_eq!(s.records, 3);
    assert_eq!(
        s.tokens,
        TokenCounts {
            true_positive: 8,
            predicted: 10,
            reference: 11
        }
    );
    assert!(close(s.micro_precision, 0.8));
    assert!(close(s.micro_recall, 8.0 / 11.0));
    assert!(close(s.micro_f1, 16.0 / 21.0));
    assert_eq!((s.json_valid, s.recovered, s.failed), (2, 1, 0));
    assert!(close(s.json_valid_rate, 2.0 / 3.0));
    assert!(close(s.recovered_rate, 1.0 / 3.0));
    assert_eq!(s.all_fields_exact, 1);
    assert!(close(s.all_fields_exact_rate, 1.0 / 3.0));
    assert!(close(s.exact_rate, 5.0 / 9.0));
    assert_eq!((s.reference_null_slots, s.reference_value_slots), (3, 6));
    assert_eq!(
        (
            s.correct_null,
            s.missed_value,
            s.hallucinated_value,
            s.mismatch
        ),
        (2, 1, 1, 2)
    );
    assert!(close(s.hallucination_rate, 1.0 / 3.0));
    assert!(close(s.missed_rate, 1.0 / 6.0));
    assert_eq!(s.answer_loss, Some(0.5));

    let ct = s.field("cancer_type").expect("cancer_type summary");
    assert_eq!((ct.exact, ct.mismatch), (2, 1));
    assert!(close(ct.exact_rate, 2.0 / 3.0));
    assert!(close(ct.precision, 0.8) && close(ct.recall, 0.8) && close(ct.f1, 0.8));

    let st = s.field("stage").expect("stage summary");
    assert_eq!(
        (st.exact, st.correct_null, st.hallucinated_value),
        (2, 1, 1)
    );
    assert!(close(st.precision, 2.0 / 3.0) && close(st.recall, 1.0) && close(st.f1, 0.8));

    let tr = s.field("treatment").expect("treatment summary");
    assert_eq!(
        (tr.exact, tr.correct_null, tr.missed_value, tr.mismatch),
        (1, 1, 1, 1)
    );
    assert!(close(tr.precision, 1.0) && close(tr.recall, 0.5) && close(tr.f1, 2.0 / 3.0));

    let ids: Vec<_> = report.records.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids, [Some("a".into()), Some("b".into()), Some("c".into())]);
    assert!(report.records[1].recovered);
}

#[test]
fn failures_count_as_invalid_with_every_field_missing() {
    let mut s = Scorer::new(fields());
    let r = s.add_failure(
        &obj(json!({"cancer_type": "Melanoma", "stage": null})),
        None,
        "generation failed: out of memory".into(),
        RecordMeta {
            index: 7,
            ..RecordMeta::default()
        },
    );
    assert_eq!(r.index, 7);
    assert_eq!(r.raw_output, None);
    assert!(!r.json_valid && !r.recovered);
    let outcomes: Vec<_> = r.fields.iter().map(|f| f.outcome.clone()).collect();
    // The reference omits "treatment": an absent reference key is null.
    assert_eq!(
        outcomes,
        [
            FieldOutcome::MissedValue,
            FieldOutcome::CorrectNull,
            FieldOutcome::CorrectNull
        ]
    );
    let summary = s.finish(None).summary;
    assert_eq!((summary.failed, summary.json_valid), (1, 0));
    assert_eq!(summary.json_valid_rate, 0.0);
    assert_eq!(summary.missed_rate, 1.0);
}

#[test]
fn unparseable_output_scores_all_fields_missing() {
    let mut s = Scorer::new(fields());
    let r = s.add(
        &obj(json!({"cancer_type": "Melanoma", "stage": "IV", "treatment": null})),
        "The patient has stage IV melanoma.",
        RecordMeta::default(),
    );
    assert!(!r.json_valid && r.parse_error.is_some() && r.error.is_none());
    assert!(r.fields.iter().all(|f| f.prediction.is_none()));
    let s = s.finish(None).summary;
    assert_eq!((s.missed_value, s.correct_null, s.micro_f1), (2, 1, 0.0));
}

#[test]
fn extra_missing_and_type_errors_are_counted() {
    let mut s = Scorer::new(fields());
    let reference = obj(json!({"cancer_type": "Melanoma", "stage": "4", "treatment": null}));
    let r = s.add(
        &reference,
        r#"{"cancer_type": "Melanoma", "stage": 4, "grade": "high"}"#,
        RecordMeta::default(),
    );
    assert_eq!(r.missing_keys, ["treatment"]);
    assert_eq!(r.extra_keys, ["grade"]);
    assert_eq!(r.type_errors, ["stage"]);
    // The number still scores through its text form.
    assert_eq!(r.fields[1].outcome, FieldOutcome::ExactMatch);
    let summary = s.finish(None).summary;
    assert_eq!(
        (
            summary.records_with_missing_keys,
            summary.records_with_extra_keys,
            summary.records_with_type_errors
        ),
        (1, 1, 1)
    );
    assert_eq!(summary.all_fields_exact, 1);
}

#[test]
fn empty_run_has_defined_numbers() {
    let s = Scorer::medical().finish(None).summary;
    assert_eq!(s.records, 0);
    assert_eq!(s.fields.len(), 7);
    assert_eq!(
        (s.json_valid_rate, s.exact_rate, s.hallucination_rate),
        (0.0, 0.0, 0.0)
    );
    assert_eq!(s.micro_f1, 1.0);
}

#[test]
fn add_record_takes_the_reference_from_a_data_record() {
    use ftslm_data::{Answer, InstructionRecord, Record};
    let record = Record::Instruction(InstructionRecord {
        instruction: "Extract.".into(),
        input: "note".into(),
        output: Answer::Fields(obj(
            json!({"cancer_type": "Melanoma", "stage": null, "treatment": null}),
        )),
    });
    let mut s = Scorer::new(fields());
    let r = s
        .add_record(
            &record,
            r#"{"cancer_type": "melanoma", "stage": null, "treatment": null}"#,
            RecordMeta::default(),
        )
        .expect("object answer");
    assert!(r.fields.iter().all(|f| f.outcome.is_exact()));

    let text = Record::Instruction(InstructionRecord {
        instruction: "Summarise.".into(),
        input: "note".into(),
        output: Answer::Text("free text".into()),
    });
    let err = s.add_record(
        &text,
        "{}",
        RecordMeta {
            index: 4,
            ..RecordMeta::default()
        },
    );
    let message = err
        .map(|_| ())
        .expect_err("text answer has no fields")
        .to_string();
    assert!(message.contains("record 4"), "{message}");
}
