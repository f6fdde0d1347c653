//! Normalisation rules, each against the case it exists for.

use ftslm_eval::normalize::{is_null_word, normalize, normalize_items, tokens};

fn norm(s: &str) -> String {
    normalize(s).unwrap_or_else(|| panic!("{s:?} normalised to null"))
}

#[test]
fn case_whitespace_and_trailing_punctuation_do_not_matter() {
    assert_eq!(norm("Stage IIIA"), "stage iiia");
    assert_eq!(norm("  stage   iiia. "), "stage iiia");
    assert_eq!(norm("Stage\tIIIA"), norm("stage iiia"));
}

#[test]
fn hyphen_slash_and_underscore_between_words_become_spaces() {
    assert_eq!(norm("HER2-positive"), "her2 positive");
    assert_eq!(norm("HER2 positive"), "her2 positive");
    assert_eq!(norm("PD-L1"), "pd l1");
    assert_eq!(norm("HER2/neu"), "her2 neu");
    assert_eq!(norm("non_small cell"), "non small cell");
    // An en dash is treated as a hyphen.
    assert_eq!(norm("PD\u{2013}L1"), "pd l1");
}

#[test]
fn sign_suffixes_are_kept_because_they_carry_meaning() {
    assert_eq!(norm("ER+/PR-"), "er+ pr-");
    assert_eq!(norm("HER2+"), "her2+");
    assert_ne!(norm("HER2+"), norm("HER2-"));
    assert_ne!(norm("HER2-"), norm("HER2"));
}

#[test]
fn decimals_percentages_and_thousands_survive() {
    assert_eq!(norm("Ki-67 30.5%"), "ki 67 30.5%");
    assert_eq!(norm("PD-L1 50 %"), "pd l1 50%");
    assert_eq!(norm("CA-125 1,200 U/mL"), "ca 125 1200 u ml");
}

#[test]
fn apostrophes_join_and_brackets_vanish() {
    assert_eq!(norm("Hodgkin's lymphoma"), "hodgkins lymphoma");
    assert_eq!(
        norm("non-small cell lung cancer (NSCLC)"),
        "non small cell lung cancer nsclc"
    );
}

#[test]
fn list_separators_are_equivalent_and_order_does_not_matter() {
    let expected = "carboplatin, paclitaxel";
    for text in [
        "carboplatin, paclitaxel",
        "paclitaxel, carboplatin",
        "carboplatin and paclitaxel",
        "carboplatin + paclitaxel",
        "carboplatin+paclitaxel",
        "carboplatin; paclitaxel",
        "Paclitaxel & Carboplatin",
        "carboplatin, paclitaxel, carboplatin",
    ] {
        assert_eq!(norm(text), expected, "{text:?}");
    }
}

#[test]
fn and_inside_a_word_is_not_a_separator() {
    assert_eq!(norm("standard chemotherapy"), "standard chemotherapy");
    assert_eq!(normalize_items("brand, band").len(), 2);
}

#[test]
fn null_words_and_empty_values_are_null() {
    for text in [
        "null",
        "None",
        "N/A",
        "n/a",
        "NA",
        "",
        "   ",
        "-",
        "Not mentioned",
        "none; n/a",
    ] {
        assert_eq!(normalize(text), None, "{text:?}");
    }
    assert!(is_null_word("none"));
    assert!(!is_null_word("nonet"));
    // A null item inside a real list is dropped, not the whole list.
    assert_eq!(norm("surgery, none"), "surgery");
}

#[test]
fn tokens_are_the_words_of_all_items() {
    let n = norm("HER2-positive, ER+ and PR-");
    assert_eq!(n, "er+, her2 positive, pr-");
    assert_eq!(tokens(&n), vec!["er+", "her2", "positive", "pr-"]);
}
