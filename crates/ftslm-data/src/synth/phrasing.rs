//! Small wording helpers shared by the sentence writers: lists, capitals,
//! regimens and alterations as a clinician would write them.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::vocabulary::{one, Alteration, Therapy};

/// "a", "a and b", "a, b and c": how answers join items inside one value.
pub(crate) fn join_and(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [only] => (*only).to_string(),
        [head @ .., last] => format!("{} and {last}", head.join(", ")),
    }
}

/// A list as prose, in one of several styles a note might use.
pub(crate) fn join_prose(rng: &mut ChaCha8Rng, items: &[&str]) -> String {
    if items.len() < 2 {
        return join_and(items);
    }
    match rng.random_range(0..5) {
        0 => items.join(", "),
        1 if items.len() == 2 => format!("{} as well as {}", items[0], items[1]),
        2 => items.join("; "),
        _ => join_and(items),
    }
}

/// Upper-cases the first letter when the sentence opens with an ordinary word;
/// leaves tokens such as "cT3N2M0" or "p16" alone, whose case carries meaning.
pub(crate) fn capitalize(text: &str) -> String {
    let first_word = text.split([' ', ',']).next().unwrap_or("");
    let ordinary = !first_word.is_empty()
        && first_word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-');
    if !ordinary {
        return text.to_string();
    }
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// The answer text of one therapy: agents joined with "and", or the procedure.
pub(crate) fn therapy_answer(therapy: &Therapy, with_radiotherapy: bool) -> String {
    let mut names: Vec<&str> = match therapy {
        Therapy::Drugs { agents, .. } => agents.iter().map(|a| a.name).collect(),
        Therapy::Procedure(p) => vec![p.answer],
    };
    if with_radiotherapy {
        names.push("radiotherapy");
    }
    join_and(&names)
}

/// A regimen as written in a note: joined several ways, sometimes with its
/// acronym or the dose of a single oral agent.
pub(crate) fn regimen_text(rng: &mut ChaCha8Rng, therapy: &Therapy) -> String {
    match therapy {
        Therapy::Procedure(p) => (*one(rng, &p.phrasings)).to_string(),
        Therapy::Drugs { agents, acronym } => {
            let names: Vec<&str> = agents.iter().map(|a| a.name).collect();
            let mut text = match names.as_slice() {
                [only] => match agents[0].dose {
                    Some(dose) if rng.random_bool(0.5) => format!("{only} {dose}"),
                    _ => (*only).to_string(),
                },
                [a, b] => match rng.random_range(0..6) {
                    0 => format!("{a} plus {b}"),
                    1 => format!("{a} with {b}"),
                    2 => format!("{a} + {b}"),
                    3 => format!("{a}/{b}"),
                    _ => format!("{a} and {b}"),
                },
                _ => match rng.random_range(0..5) {
                    0 => names.join(" + "),
                    1 => format!(
                        "{}, and {}",
                        names[..names.len() - 1].join(", "),
                        names[names.len() - 1]
                    ),
                    2 => format!(
                        "{} plus {}",
                        names[..names.len() - 1].join(", "),
                        names[names.len() - 1]
                    ),
                    _ => join_and(&names),
                },
            };
            if let Some(acronym) = acronym {
                match rng.random_range(0..4) {
                    0 | 1 => text = format!("{text} ({acronym})"),
                    2 => text = format!("{acronym} ({text})"),
                    _ => {}
                }
            }
            text
        }
    }
}

/// A protein change such as L858R or W288fs, which reads as "a ... mutation".
fn is_point_change(detail: &str) -> bool {
    let mut chars = detail.chars();
    !detail.contains(' ')
        && chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && detail.chars().any(|c| c.is_ascii_digit())
}

/// One alteration as a report states it; every form keeps the gene and detail words.
pub(crate) fn alteration_text(
    rng: &mut ChaCha8Rng,
    alteration: &Alteration,
    germline_test: bool,
) -> String {
    let (g, d) = (alteration.gene, alteration.detail);
    if alteration.germline && germline_test {
        return format!("{g} {d}");
    }
    if alteration.germline {
        return match rng.random_range(0..3) {
            0 => format!("germline {g} {d}"),
            1 => format!("{g} {d} (germline)"),
            _ => format!("{g} {d} identified on germline testing"),
        };
    }
    if is_point_change(d) {
        let vaf = rng.random_range(8..62);
        return match rng.random_range(0..6) {
            0 => format!("{g} {d} mutation"),
            1 => format!("{d} mutation in {g}"),
            2 => format!("{g} p.{d}"),
            3 => format!("{g} {d} (VAF {vaf}%)"),
            _ => format!("{g} {d}"),
        };
    }
    if d == "fusion" && rng.random_bool(0.3) {
        return format!("{g} {d} on RNA sequencing");
    }
    format!("{g} {d}")
}

/// The adjective form used before a histology ("EGFR L858R-mutant"), for point changes only.
pub(crate) fn alteration_adjective(alteration: &Alteration) -> Option<String> {
    (is_point_change(alteration.detail) && !alteration.germline)
        .then(|| format!("{} {}-mutant", alteration.gene, alteration.detail))
}

/// "a partial response" but "stable disease": the article a response takes after "with".
pub(crate) fn with_article(answer: &str) -> String {
    if answer.ends_with("response") {
        format!("a {answer}")
    } else {
        answer.to_string()
    }
}

/// Lower-cases a sentence's first letter when joining it after a semicolon.
pub(crate) fn lowercase_start(text: &str) -> String {
    let first_word = text.split(' ').next().unwrap_or("");
    let ordinary = first_word
        .chars()
        .skip(1)
        .all(|c| c.is_ascii_lowercase() || c == '-' || c == ':');
    if !ordinary {
        return text.to_string();
    }
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_join_like_prose() {
        assert_eq!(join_and(&["a"]), "a");
        assert_eq!(join_and(&["a", "b"]), "a and b");
        assert_eq!(join_and(&["a", "b", "c"]), "a, b and c");
    }

    #[test]
    fn capitals_spare_case_sensitive_tokens() {
        assert_eq!(
            capitalize("stage IIIB at diagnosis."),
            "Stage IIIB at diagnosis."
        );
        assert_eq!(capitalize("cT3N2M0, stage IIIB."), "cT3N2M0, stage IIIB.");
        assert_eq!(capitalize("p16 positive."), "p16 positive.");
        assert_eq!(capitalize("EGFR L858R."), "EGFR L858R.");
    }

    #[test]
    fn point_changes_are_told_from_structural_ones() {
        assert!(is_point_change("L858R"));
        assert!(is_point_change("W288fs"));
        assert!(!is_point_change("exon 19 deletion"));
        assert!(!is_point_change("185delAG"));
        assert!(!is_point_change("fusion"));
    }
}
