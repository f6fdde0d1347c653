//! Strict and lenient reading of raw model output.

use ftslm_eval::parse::{parse_output, value_text};
use serde_json::json;

const FIELDS: [&str; 3] = ["cancer_type", "stage", "treatment"];

#[test]
fn strict_json_object_is_valid() {
    let p = parse_output(
        r#"  {"cancer_type": "Melanoma", "stage": null, "treatment": "surgery"}  "#,
        &FIELDS,
    );
    assert!(p.json_valid);
    assert!(!p.recovered);
    assert!(p.is_parsed());
    assert_eq!(p.get("cancer_type"), Some("Melanoma"));
    assert_eq!(p.get("stage"), None);
    assert_eq!(p.get("treatment"), Some("surgery"));
    assert!(p.missing_keys.is_empty() && p.extra_keys.is_empty() && p.type_errors.is_empty());
    assert_eq!(p.error, None);
    let order: Vec<&str> = p.predictions.iter().map(|x| x.field.as_str()).collect();
    assert_eq!(order, FIELDS);
}

#[test]
fn fenced_output_is_recovered_not_valid() {
    let text =
        "```json\n{\"cancer_type\": \"Melanoma\", \"stage\": \"IV\", \"treatment\": null}\n```";
    let p = parse_output(text, &FIELDS);
    assert!(!p.json_valid);
    assert!(p.recovered);
    assert_eq!(p.get("stage"), Some("IV"));
}

#[test]
fn trailing_prose_and_braces_in_strings_are_recovered() {
    let text = "Sure {here} is the answer: {\"cancer_type\": \"odd } name\", \"stage\": \"I\", \
                \"treatment\": \"surgery\"} Let me know if you need more.";
    let p = parse_output(text, &FIELDS);
    assert!(p.recovered && !p.json_valid);
    assert_eq!(p.get("cancer_type"), Some("odd } name"));
    assert_eq!(p.get("treatment"), Some("surgery"));
}

#[test]
fn invalid_output_predicts_every_field_missing() {
    for text in [
        "",
        "The patient has melanoma.",
        "{\"cancer_type\": \"Mel",
        "[1, 2]",
    ] {
        let p = parse_output(text, &FIELDS);
        assert!(!p.json_valid && !p.recovered, "{text:?}");
        assert_eq!(p.predictions.len(), 3);
        assert!(p.predictions.iter().all(|x| x.value.is_none()));
        assert!(p.error.is_some());
    }
    let p = parse_output("[1, 2]", &FIELDS);
    assert!(p.error.unwrap_or_default().contains("not an object"));
}

#[test]
fn missing_and_extra_keys_are_listed() {
    let p = parse_output(
        r#"{"cancer_type": "Melanoma", "grade": "3", "notes": null}"#,
        &FIELDS,
    );
    assert!(p.json_valid);
    assert_eq!(p.missing_keys, vec!["stage", "treatment"]);
    assert_eq!(p.extra_keys, vec!["grade", "notes"]);
    assert_eq!(p.get("stage"), None);
}

#[test]
fn non_string_values_are_scored_as_text_but_flagged() {
    let p = parse_output(
        r#"{"cancer_type": ["Melanoma", "Lymphoma"], "stage": 4, "treatment": null}"#,
        &FIELDS,
    );
    assert!(p.json_valid);
    assert_eq!(p.type_errors, vec!["cancer_type", "stage"]);
    assert_eq!(p.get("cancer_type"), Some("Melanoma, Lymphoma"));
    assert_eq!(p.get("stage"), Some("4"));
}

#[test]
fn value_text_forms() {
    assert_eq!(value_text(&json!(null)), None);
    assert_eq!(value_text(&json!("x")), Some("x".to_string()));
    assert_eq!(value_text(&json!(true)), Some("true".to_string()));
    assert_eq!(value_text(&json!(2.5)), Some("2.5".to_string()));
    assert_eq!(value_text(&json!(["a", null, 3])), Some("a, 3".to_string()));
    assert_eq!(
        value_text(&json!({"k": "v"})),
        Some(r#"{"k":"v"}"#.to_string())
    );
}
