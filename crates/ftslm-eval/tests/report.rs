//! The JSON report on disk, the table, and the before/after comparison.

use ftslm_eval::{render_comparison, render_table, EvalError, EvalReport, RecordMeta, Scorer};
use serde_json::{json, Map, Value};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn fields() -> Vec<String> {
    ["cancer_type", "stage", "treatment"]
        .map(String::from)
        .to_vec()
}

fn references() -> Vec<Map<String, Value>> {
    vec![
        obj(
            json!({"cancer_type": "Lung adenocarcinoma", "stage": "Stage IIIA",
                   "treatment": "carboplatin, paclitaxel, pembrolizumab"}),
        ),
        obj(json!({"cancer_type": "Breast cancer", "stage": null, "treatment": "tamoxifen"})),
        obj(json!({"cancer_type": "Melanoma", "stage": null, "treatment": null})),
    ]
}

/// The three-record run of tests/scoring.rs: micro F1 16/21 = 76.2%, JSON valid
/// 2/3, all fields exact 1/3, cancer_type exact 2/3, treatment missed 1.
fn before() -> EvalReport {
    let refs = references();
    let outputs = [
        r#"{"cancer_type": "lung adenocarcinoma", "stage": "stage iiia", "treatment": "carboplatin and paclitaxel"}"#,
        "Here you go:\n```json\n{\"cancer_type\": \"breast carcinoma\", \"stage\": \"II\", \"treatment\": null}\n```",
        r#"{"cancer_type": "Melanoma", "stage": "None", "treatment": null}"#,
    ];
    let mut s = Scorer::new(fields());
    for (i, (r, o)) in refs.iter().zip(outputs).enumerate() {
        s.add(
            r,
            o,
            RecordMeta {
                index: i,
                id: Some(format!("rec-{i}")),
                line: Some(i + 1),
            },
        );
    }
    s.set_generation_seconds(12.34);
    s.finish(Some(1.5))
}

/// Every output equals its reference.
fn after() -> EvalReport {
    let mut s = Scorer::new(fields());
    for (i, r) in references().iter().enumerate() {
        let output = Value::Object(r.clone()).to_string();
        s.add(
            r,
            &output,
            RecordMeta {
                index: i,
                ..RecordMeta::default()
            },
        );
    }
    s.finish(Some(0.25))
}

fn line_starting<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in\n{text}"))
}

#[test]
fn table_shows_fields_micro_row_and_rates() {
    let table = render_table(&before().summary);
    let header = line_starting(&table, "field");
    for column in [
        "exact",
        "precision",
        "recall",
        "F1",
        "correct-null",
        "missed",
        "hallucinated",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let words = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        words(line_starting(&table, "cancer_type")),
        [
            "cancer_type",
            "66.7%",
            "80.0%",
            "80.0%",
            "80.0%",
            "0",
            "0",
            "0"
        ]
    );
    assert_eq!(
        words(line_starting(&table, "treatment")),
        [
            "treatment",
            "33.3%",
            "100.0%",
            "50.0%",
            "66.7%",
            "1",
            "1",
            "0"
        ]
    );
    assert_eq!(
        words(line_starting(&table, "all fields (micro)")),
        ["all", "fields", "(micro)", "55.6%", "80.0%", "72.7%", "76.2%", "2", "1", "1"]
    );
    assert!(line_starting(&table, "JSON valid:").ends_with("66.7% (2/3)"));
    assert!(line_starting(&table, "all fields exact:").ends_with("33.3% (1/3)"));
    assert!(line_starting(&table, "hallucination rate:").contains("33.3% (1/3"));
    assert!(line_starting(&table, "answer loss:").ends_with("1.5000"));
    assert!(line_starting(&table, "generation time:").ends_with("12.3 s"));

    let mut summary = after().summary;
    summary.answer_loss = None;
    let table = render_table(&summary);
    assert!(!table.contains("answer loss") && !table.contains("generation time"));
    assert!(line_starting(&table, "all fields exact:").ends_with("100.0% (3/3)"));
}

#[test]
fn comparison_shows_before_after_and_signed_deltas() {
    let text = render_comparison(&before().summary, &after().summary);
    let cancer = line_starting(&text, "cancer_type");
    assert!(cancer.contains("66.7% → 100.0% (+33.3)"), "{cancer}");
    assert!(cancer.contains("80.0% → 100.0% (+20.0)"), "{cancer}");
    let treatment = line_starting(&text, "treatment");
    assert!(treatment.contains("1 → 0 (-1)"), "{treatment}");
    let stage = line_starting(&text, "stage");
    assert!(
        stage.contains("1 → 0 (-1)") && stage.contains("80.0% → 100.0% (+20.0)"),
        "{stage}"
    );
    assert!(line_starting(&text, "JSON valid:").ends_with("66.7% → 100.0% (+33.3)"));
    assert!(line_starting(&text, "micro F1:").ends_with("76.2% → 100.0% (+23.8)"));
    assert!(line_starting(&text, "all fields exact:").ends_with("33.3% → 100.0% (+66.7)"));
    assert!(line_starting(&text, "answer loss:").ends_with("1.5000 → 0.2500 (-1.2500)"));

    // Regression direction and the example of the spec: deltas from printed values.
    let mut b = before().summary;
    let mut a = after().summary;
    b.micro_f1 = 0.41249;
    a.micro_f1 = 0.7846;
    let text = render_comparison(&b, &a);
    assert!(
        line_starting(&text, "micro F1:").ends_with("41.2% → 78.5% (+37.3)"),
        "{text}"
    );
    let text = render_comparison(&a, &b);
    assert!(line_starting(&text, "micro F1:").ends_with("78.5% → 41.2% (-37.3)"));
    let same = render_comparison(&a, &a);
    assert!(line_starting(&same, "micro F1:").ends_with("(+0.0)"));

    a.answer_loss = None;
    let text = render_comparison(&b, &a);
    assert!(line_starting(&text, "answer loss:").ends_with("1.5000 → n/a"));
}

#[test]
fn report_round_trips_through_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("eval_report.json");
    let report = before();
    report.write_json(&path).expect("write");
    let back = EvalReport::read_json(&path).expect("read");
    assert_eq!(back, report);
    assert_eq!(back.summary.generation_seconds, Some(12.34));
    assert_eq!(back.records[1].raw_output, report.records[1].raw_output);
    // Only the report is left behind: the temporary file was renamed.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("eval_report.json")]);

    // Overwriting replaces the old content.
    after().write_json(&path).expect("overwrite");
    assert_eq!(
        EvalReport::read_json(&path).expect("read").summary.micro_f1,
        1.0
    );
}

#[test]
fn reading_a_broken_report_names_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("broken.json");
    std::fs::write(&path, "{\"summary\": {\"records\": 3").expect("write");
    let err = EvalReport::read_json(&path).expect_err("broken JSON");
    assert!(matches!(err, EvalError::Parse { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("line 1"), "{message}");

    std::fs::write(&path, "{\"summary\": 1, \"records\": []}").expect("write");
    let message = EvalReport::read_json(&path)
        .expect_err("wrong shape")
        .to_string();
    assert!(
        message.contains("broken.json") && message.contains("invalid type"),
        "{message}"
    );

    let missing = dir.path().join("absent.json");
    let err = EvalReport::read_json(&missing).expect_err("missing file");
    assert!(matches!(err, EvalError::Read { .. }));
    assert!(err.to_string().contains("absent.json"));
}

#[test]
fn writing_into_a_missing_directory_fails_with_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("no-such-dir").join("report.json");
    let err = before().write_json(&path).expect_err("missing directory");
    assert!(matches!(err, EvalError::Write { .. }));
    assert!(err.to_string().contains("report.json"));
}
