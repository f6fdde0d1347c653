//! Plain-text renderings of a summary and of a before/after comparison, for
//! terminals and logs. Rates print as percentages with one decimal; deltas are
//! percentage points computed from the printed values, so they always agree
//! with the two numbers beside them.

use crate::metrics::{EvalSummary, FieldSummary};

const MICRO_ROW: &str = "all fields (micro)";
const ARROW: &str = "→";

/// One row per field plus the micro row, then the run-level rates.
pub fn render_table(summary: &EvalSummary) -> String {
    let mut rows = vec![cells(&[
        "field",
        "exact",
        "precision",
        "recall",
        "F1",
        "correct-null",
        "missed",
        "hallucinated",
    ])];
    for f in &summary.fields {
        rows.push(vec![
            f.field.clone(),
            pct(f.exact_rate),
            pct(f.precision),
            pct(f.recall),
            pct(f.f1),
            f.correct_null.to_string(),
            f.missed_value.to_string(),
            f.hallucinated_value.to_string(),
        ]);
    }
    rows.push(vec![
        MICRO_ROW.to_string(),
        pct(summary.exact_rate),
        pct(summary.micro_precision),
        pct(summary.micro_recall),
        pct(summary.micro_f1),
        summary.correct_null.to_string(),
        summary.missed_value.to_string(),
        summary.hallucinated_value.to_string(),
    ]);
    let mut out = grid(&rows);
    out.push('\n');

    let n = summary.records;
    let mut lines = vec![
        ("records", records_line(summary)),
        (
            "JSON valid",
            rate_of(summary.json_valid_rate, summary.json_valid, n, ""),
        ),
        (
            "recovered from fence/prose",
            rate_of(summary.recovered_rate, summary.recovered, n, ""),
        ),
        (
            "all fields exact",
            rate_of(
                summary.all_fields_exact_rate,
                summary.all_fields_exact,
                n,
                "",
            ),
        ),
        (
            "hallucination rate",
            rate_of(
                summary.hallucination_rate,
                summary.hallucinated_value,
                summary.reference_null_slots,
                " reference-null fields",
            ),
        ),
        (
            "missed-value rate",
            rate_of(
                summary.missed_rate,
                summary.missed_value,
                summary.reference_value_slots,
                " reference-value fields",
            ),
        ),
    ];
    if let Some(loss) = summary.answer_loss {
        lines.push(("answer loss", format!("{loss:.4}")));
    }
    if let Some(seconds) = summary.generation_seconds {
        lines.push(("generation time", format!("{seconds:.1} s")));
    }
    out.push_str(&labelled(&lines));
    out
}

/// The fields' exact rate, F1, missed and hallucinated counts before → after
/// with signed deltas, then the run-level rates and the answer loss.
pub fn render_comparison(before: &EvalSummary, after: &EvalSummary) -> String {
    let mut rows = vec![cells(&["field", "exact", "F1", "missed", "hallucinated"])];
    let mut names: Vec<&str> = before.fields.iter().map(|f| f.field.as_str()).collect();
    for f in &after.fields {
        if !names.contains(&f.field.as_str()) {
            names.push(&f.field);
        }
    }
    for name in names {
        let (b, a) = (before.field(name), after.field(name));
        rows.push(vec![
            name.to_string(),
            opt_pct_change(b.map(|f| f.exact_rate), a.map(|f| f.exact_rate)),
            opt_pct_change(b.map(|f| f.f1), a.map(|f| f.f1)),
            opt_count_change(b.map(|f| f.missed_value), a.map(|f| f.missed_value)),
            opt_count_change(b.map(field_hallucinated), a.map(field_hallucinated)),
        ]);
    }
    rows.push(vec![
        MICRO_ROW.to_string(),
        pct_change(before.exact_rate, after.exact_rate),
        pct_change(before.micro_f1, after.micro_f1),
        count_change(before.missed_value, after.missed_value),
        count_change(before.hallucinated_value, after.hallucinated_value),
    ]);
    let mut out = grid(&rows);
    out.push('\n');

    let pairs = [
        ("JSON valid", before.json_valid_rate, after.json_valid_rate),
        (
            "micro precision",
            before.micro_precision,
            after.micro_precision,
        ),
        ("micro recall", before.micro_recall, after.micro_recall),
        ("micro F1", before.micro_f1, after.micro_f1),
        (
            "all fields exact",
            before.all_fields_exact_rate,
            after.all_fields_exact_rate,
        ),
        (
            "hallucination rate",
            before.hallucination_rate,
            after.hallucination_rate,
        ),
        ("missed-value rate", before.missed_rate, after.missed_rate),
    ];
    let mut lines = vec![(
        "records",
        format!("{} {ARROW} {}", before.records, after.records),
    )];
    lines.extend(pairs.iter().map(|&(label, b, a)| (label, pct_change(b, a))));
    if before.answer_loss.is_some() || after.answer_loss.is_some() {
        lines.push((
            "answer loss",
            loss_change(before.answer_loss, after.answer_loss),
        ));
    }
    out.push_str(&labelled(&lines));
    out
}

fn field_hallucinated(f: &FieldSummary) -> usize {
    f.hallucinated_value
}

fn cells(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| t.to_string()).collect()
}

fn records_line(summary: &EvalSummary) -> String {
    if summary.failed > 0 {
        format!("{} ({} failed)", summary.records, summary.failed)
    } else {
        summary.records.to_string()
    }
}

/// "66.7% (2/3)" with an optional note after the counts.
fn rate_of(rate: f64, num: usize, den: usize, note: &str) -> String {
    format!("{} ({num}/{den}{note})", pct(rate))
}

/// A rate as printed: percent with one decimal.
fn pct(rate: f64) -> String {
    format!("{:.1}%", points(rate))
}

/// A rate in percent, rounded to the printed decimal.
fn points(rate: f64) -> f64 {
    (rate * 1000.0).round() / 10.0
}

/// `+1.5` or `-0.3`; never `-0.0`, which would suggest a loss that did not happen.
fn signed(delta: f64, decimals: usize) -> String {
    let scale = 10f64.powi(decimals as i32);
    let rounded = (delta * scale).round() / scale;
    let rounded = if rounded == 0.0 { 0.0 } else { rounded };
    format!("{rounded:+.decimals$}")
}

fn pct_change(before: f64, after: f64) -> String {
    let delta = points(after) - points(before);
    format!(
        "{} {ARROW} {} ({})",
        pct(before),
        pct(after),
        signed(delta, 1)
    )
}

fn opt_pct_change(before: Option<f64>, after: Option<f64>) -> String {
    match (before, after) {
        (Some(b), Some(a)) => pct_change(b, a),
        (b, a) => format!("{} {ARROW} {}", opt(b.map(pct)), opt(a.map(pct))),
    }
}

fn count_change(before: usize, after: usize) -> String {
    let delta = after as i64 - before as i64;
    format!("{before} {ARROW} {after} ({delta:+})")
}

fn opt_count_change(before: Option<usize>, after: Option<usize>) -> String {
    match (before, after) {
        (Some(b), Some(a)) => count_change(b, a),
        (b, a) => format!(
            "{} {ARROW} {}",
            opt(b.map(|v| v.to_string())),
            opt(a.map(|v| v.to_string()))
        ),
    }
}

fn loss_change(before: Option<f64>, after: Option<f64>) -> String {
    let show = |v: Option<f64>| opt(v.map(|v| format!("{v:.4}")));
    match (before, after) {
        (Some(b), Some(a)) => {
            let delta = (a * 1e4).round() / 1e4 - (b * 1e4).round() / 1e4;
            format!(
                "{} {ARROW} {} ({})",
                show(before),
                show(after),
                signed(delta, 4)
            )
        }
        _ => format!("{} {ARROW} {}", show(before), show(after)),
    }
}

fn opt(text: Option<String>) -> String {
    text.unwrap_or_else(|| "n/a".to_string())
}

/// Rows as aligned columns: the first left-aligned, the rest right-aligned.
fn grid(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if c == 0 {
                line.push_str(&format!("{cell:<width$}"));
            } else {
                line.push_str(&format!("  {cell:>width$}"));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// "label:  value" lines with the values aligned.
fn labelled(lines: &[(&str, String)]) -> String {
    let width = lines
        .iter()
        .map(|(l, _)| l.chars().count() + 1)
        .max()
        .unwrap_or(0);
    lines
        .iter()
        .map(|(label, value)| format!("{:<width$}  {value}\n", format!("{label}:")))
        .collect()
}
