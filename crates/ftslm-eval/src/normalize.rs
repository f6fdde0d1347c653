//! Normalisation of one field value before comparison.
//!
//! The rules, in the order they apply:
//!
//! 1. Lowercase. Clinical terms are case-insensitive ("Stage IIIA" is "stage iiia").
//! 2. Split into list items on `,` `;` `&`, on the word `and`, and on a `+` with
//!    whitespace on both sides or letters/digits on both sides ("a + b", "a+b").
//!    A comma between a digit and exactly three digits is a thousands separator,
//!    not a list separator.
//! 3. Inside an item:
//!    * `-` between letters/digits becomes a space, so "HER2-positive" equals
//!      "HER2 positive" and "PD-L1" equals "PD L1";
//!    * `+` or `-` right after a word (and not followed by one) is kept as a
//!      suffix, because "ER+" and "ER-" mean opposite things;
//!    * `/`, `_` and all other punctuation become spaces ("ER+/PR-" → "er+ pr-");
//!    * apostrophes are dropped without a space ("Hodgkin's" → "hodgkins");
//!    * `.` between digits and `%` after a number are kept ("2.5", "50 %" → "50%");
//!    * whitespace is collapsed and trimmed.
//! 4. Items that are empty or a null word ("null", "none", "n/a", "na", "nil",
//!    "not applicable", "not mentioned", "not reported", "not specified", "not
//!    stated") are dropped; no items left means the value is null.
//! 5. The items are sorted and deduplicated and joined by ", ", so a reordered
//!    or repeated list compares equal to the reference.
//!
//! Tokens for precision/recall are the whitespace-separated words of all items.

/// Words that mean "no value" when they make up a whole item. "n/a" appears as
/// "n a" because the slash has already become a space.
const NULL_WORDS: [&str; 11] = [
    "null",
    "none",
    "n a",
    "na",
    "nil",
    "not applicable",
    "not mentioned",
    "not reported",
    "not specified",
    "not stated",
    "",
];

/// The normalised value, or `None` when it is null after normalisation.
pub fn normalize(raw: &str) -> Option<String> {
    let items = normalize_items(raw);
    if items.is_empty() {
        None
    } else {
        Some(items.join(", "))
    }
}

/// The sorted, deduplicated, normalised list items of a value; empty when null.
pub fn normalize_items(raw: &str) -> Vec<String> {
    let lower = raw.to_lowercase();
    let mut items: Vec<String> = split_items(&lower)
        .iter()
        .map(|item| clean_item(item))
        .filter(|item| !is_null_word(item))
        .collect();
    items.sort();
    items.dedup();
    items
}

/// Whether an already-normalised item is one of the words that mean null.
pub fn is_null_word(item: &str) -> bool {
    NULL_WORDS.contains(&item)
}

/// The word tokens of a normalised value (the output of [`normalize`]).
pub fn tokens(normalized: &str) -> Vec<&str> {
    normalized
        .split([',', ' '])
        .filter(|t| !t.is_empty())
        .collect()
}

/// Unicode dashes models emit in place of the ASCII hyphen; treating them alike
/// keeps "PD–L1" from scoring differently from "PD-L1".
fn is_dash(c: char) -> bool {
    matches!(
        c,
        '-' | '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2014}' | '\u{2212}'
    )
}

fn split_items(lower: &str) -> Vec<String> {
    let chars: Vec<char> = lower.chars().collect();
    let mut pieces = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|j| chars.get(j)).copied();
        let next = chars.get(i + 1).copied();
        let separator = match c {
            ';' | '&' => true,
            ',' => !is_thousands_comma(&chars, i),
            '+' => {
                let spaced =
                    prev.is_some_and(char::is_whitespace) && next.is_some_and(char::is_whitespace);
                let joined = prev.is_some_and(char::is_alphanumeric)
                    && next.is_some_and(char::is_alphanumeric);
                spaced || joined
            }
            _ => false,
        };
        if separator {
            pieces.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    pieces.push(current);

    // "and" is only a separator as a whole word; splitting on whitespace first
    // keeps "band" or "standard" intact.
    let mut items = Vec::new();
    for piece in pieces {
        let mut item: Vec<&str> = Vec::new();
        for word in piece.split_whitespace() {
            if word == "and" {
                items.push(item.join(" "));
                item.clear();
            } else {
                item.push(word);
            }
        }
        items.push(item.join(" "));
    }
    items
}

/// "1,000": a digit, a comma, exactly three digits, then no further digit.
fn is_thousands_comma(chars: &[char], i: usize) -> bool {
    let digit = |j: usize| chars.get(j).is_some_and(char::is_ascii_digit);
    i > 0 && digit(i - 1) && digit(i + 1) && digit(i + 2) && digit(i + 3) && !digit(i + 4)
}

fn clean_item(item: &str) -> String {
    let chars: Vec<char> = item.chars().collect();
    let mut out = String::with_capacity(item.len());
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|j| chars.get(j)).copied();
        let next = chars.get(i + 1).copied();
        let prev_alnum = prev.is_some_and(char::is_alphanumeric);
        let next_alnum = next.is_some_and(char::is_alphanumeric);
        match c {
            c if c.is_alphanumeric() => out.push(c),
            '\'' | '\u{2019}' => {}
            c if is_dash(c) => {
                if prev_alnum && !next_alnum {
                    out.push('-');
                } else {
                    out.push(' ');
                }
            }
            '+' if prev_alnum => out.push('+'),
            '.' if prev.is_some_and(|p| p.is_ascii_digit())
                && next.is_some_and(|n| n.is_ascii_digit()) =>
            {
                out.push('.')
            }
            // Only thousands commas survive splitting; "1,000" becomes "1000".
            ',' if prev.is_some_and(|p| p.is_ascii_digit()) => {}
            '%' => {
                let number_before = chars[..i]
                    .iter()
                    .rev()
                    .find(|p| !p.is_whitespace())
                    .is_some_and(char::is_ascii_digit);
                if number_before {
                    let kept = out.trim_end().len();
                    out.truncate(kept);
                    out.push('%');
                } else {
                    out.push(' ');
                }
            }
            _ => out.push(' '),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}
