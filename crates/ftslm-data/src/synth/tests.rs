//! Checks on the tables themselves: a typo in the notation or a phrasing that
//! drops a word of its answer would otherwise surface only as a rare bad record.

use std::collections::BTreeSet;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::case::Case;
use super::markers::{MarkerDef, MARKERS};
use super::responses::ALL_RESPONSES;
use super::vocabulary::{unknown_marker_keys, Course, Phrased, Therapy};
use super::{tables_blood_brain, tables_gu_gyn_skin, tables_thoracic_gi, Vocabulary};

fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The words of `answer` missing from `text`, connectives aside.
fn missing_words(answer: &str, text: &str) -> Vec<String> {
    let have = words(text);
    words(answer)
        .into_iter()
        .filter(|w| !["and", "of", "the", "with"].contains(&w.as_str()) && !have.contains(w))
        .collect()
}

fn check_phrased(p: &Phrased, problems: &mut Vec<String>) {
    for phrasing in &p.phrasings {
        let missing = missing_words(p.answer, phrasing);
        if !missing.is_empty() {
            problems.push(format!(
                "{:?} lacks {missing:?} of answer {:?}",
                phrasing, p.answer
            ));
        }
    }
}

fn check_therapy(t: &Therapy, problems: &mut Vec<String>) {
    match t {
        Therapy::Procedure(p) => check_phrased(p, problems),
        Therapy::Drugs { agents, .. } => {
            for agent in agents {
                if agent.name.contains(['=', '!', '>', '*', '^', '|'])
                    || agent.name.trim() != agent.name
                    || agent.name.is_empty()
                {
                    problems.push(format!("agent {:?} carries notation; a procedure without `!` or a stray separator?", agent.name));
                }
            }
        }
    }
}

#[test]
fn every_phrasing_in_the_tables_states_all_words_of_its_answer() {
    let vocabulary = Vocabulary::load();
    let mut problems = Vec::new();
    for profile in vocabulary.profiles.iter().map(|w| &w.item) {
        profile
            .histologies
            .iter()
            .for_each(|h| check_phrased(&h.item, &mut problems));
        for pool in [
            &profile.surgery,
            &profile.perioperative,
            &profile.chemoradiation,
            &profile.consolidation,
            &profile.first_line,
            &profile.later_line,
            &profile.maintenance,
            &profile.surveillance,
        ] {
            pool.iter()
                .for_each(|t| check_therapy(&t.item, &mut problems));
        }
        for alteration in &profile.alterations {
            alteration
                .item
                .targeted
                .iter()
                .for_each(|t| check_therapy(&t.item, &mut problems));
        }
    }
    for t in [
        &vocabulary.radiosurgery,
        &vocabulary.bone_radiotherapy,
        &vocabulary.adjuvant_radiotherapy,
    ] {
        check_therapy(t, &mut problems);
    }
    for (key, def) in MARKERS {
        let (answer, phrasings): (&str, &[&str]) = match def {
            MarkerDef::Status { answer, phrasings }
            | MarkerDef::Valued {
                answer, phrasings, ..
            } => (answer, phrasings),
            MarkerDef::Serum { .. } => continue,
        };
        for phrasing in phrasings {
            let missing = missing_words(answer, phrasing);
            if !missing.is_empty() {
                problems.push(format!("marker {key}: {phrasing:?} lacks {missing:?}"));
            }
        }
    }
    for response in ALL_RESPONSES {
        for finding in response.findings {
            let missing = missing_words(response.answer, finding);
            if !missing.is_empty() {
                problems.push(format!(
                    "response {:?}: {finding:?} lacks {missing:?}",
                    response.answer
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "ungrounded phrasings:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_profile_parses_with_the_pools_its_course_needs() {
    let specs = tables_thoracic_gi::PROFILES
        .iter()
        .chain(tables_gu_gyn_skin::PROFILES)
        .chain(tables_blood_brain::PROFILES);
    let mut unknown = Vec::new();
    for spec in specs {
        unknown.extend(unknown_marker_keys(spec.markers));
    }
    assert!(
        unknown.is_empty(),
        "marker keys not defined in markers.rs: {unknown:?}"
    );
    let vocabulary = Vocabulary::load();
    assert!(
        vocabulary.profiles.len() >= 38,
        "only {} profiles",
        vocabulary.profiles.len()
    );
    for profile in vocabulary.profiles.iter().map(|w| &w.item) {
        let name = profile
            .histologies
            .first()
            .map(|h| h.item.answer)
            .unwrap_or("(no histology)");
        assert!(
            !profile.histologies.is_empty()
                && !profile.alterations.is_empty()
                && !profile.markers.is_empty(),
            "{name}: histology, alterations and markers are all required"
        );
        match profile.spec.course {
            Course::Brain => assert!(
                !profile.surgery.is_empty() && !profile.chemoradiation.is_empty(),
                "{name}"
            ),
            Course::Solid => assert!(
                !profile.first_line.is_empty() && !profile.sites.is_empty(),
                "{name}"
            ),
            _ => assert!(!profile.first_line.is_empty(), "{name}"),
        }
    }
}

#[test]
fn every_profile_yields_cases_with_a_treatment() {
    let vocabulary = Vocabulary::load();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut seen = BTreeSet::new();
    for _ in 0..20_000 {
        let case = Case::draw(&mut rng, &vocabulary).expect("the tables are not empty");
        assert!(
            !case.steps.is_empty(),
            "{} drew no treatment",
            case.histology.answer
        );
        seen.insert(case.histology.answer);
    }
    let all: BTreeSet<_> = vocabulary
        .profiles
        .iter()
        .flat_map(|w| w.item.histologies.iter().map(|h| h.item.answer))
        .collect();
    let never: Vec<_> = all.difference(&seen).collect();
    assert!(never.is_empty(), "never drawn in 20,000 cases: {never:?}");
}
