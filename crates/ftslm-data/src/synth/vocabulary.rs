//! The clinical vocabulary the generator draws from, and the small text notation
//! the cancer tables are written in.
//!
//! Forty cancer profiles written as Rust struct literals would run to thousands
//! of lines of formatter output and hide the clinical content; a compact notation
//! keeps each profile readable on one screen, and `tests` below parse every table
//! so a typo fails the build's tests rather than a user's run.
//!
//! Notation: items are separated by `|`; an item may end in `*N` (relative weight,
//! default 1); `=` separates the answer text from other narrative phrasings of the
//! same thing (every phrasing must contain every word of the answer, so the
//! answer stays recoverable from the narrative). A therapy item is either a drug
//! regimen, agents joined by `+`, optionally `@dose` after an agent and ` (ACRONYM)`
//! at the end, or a procedure, prefixed with `!`. An alteration item is
//! `GENE detail > targeted therapy, targeted therapy`, with `^` in front when it
//! is a germline finding. A marker slot is `PERCENT key/key`: the chance the slot
//! is reported, and the marker keys (see `markers.rs`) one of which is drawn.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::markers::{marker_by_key, MarkerDef};

/// How a cancer is staged; decides the words the narrative uses for the stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Staging {
    Tnm,
    Figo,
    AnnArbor,
    Iss,
    Rai,
    SclcExtent,
    CmlPhase,
    Unstaged,
}

/// The clinical course a cancer follows: which therapy sequences and which kinds
/// of response assessment apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Course {
    Solid,
    Brain,
    Lymphoma,
    AcuteLeukemia,
    Cll,
    Cml,
    Myeloma,
}

/// Which sexes a cancer occurs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sexes {
    Any,
    Female,
    Male,
    /// Breast cancer: about one case in a hundred is in a man.
    MostlyFemale,
}

/// A cancer as written in the tables.
pub(crate) struct ProfileSpec {
    pub weight: u32,
    pub course: Course,
    pub staging: Staging,
    pub sexes: Sexes,
    pub ages: (u32, u32),
    /// Relative weights of early, regional and distant disease at presentation.
    pub extents: [u32; 3],
    pub histologies: &'static str,
    pub alterations: &'static str,
    pub markers: &'static str,
    pub surgery: &'static str,
    pub perioperative: &'static str,
    /// Agents given with concurrent radiotherapy.
    pub chemoradiation: &'static str,
    /// What follows chemoradiation or induction (durvalumab, transplant, ...).
    pub consolidation: &'static str,
    pub first_line: &'static str,
    pub later_line: &'static str,
    pub maintenance: &'static str,
    /// Observation strategies offered for early disease (active surveillance).
    pub surveillance: &'static str,
    /// Distant metastasis sites.
    pub sites: &'static str,
    /// Regional lymph node stations (or the regional site) involved in stage III.
    pub nodes: &'static str,
    /// Pathology details the narrative may mention but the answer never extracts.
    pub pathology: &'static str,
    pub symptoms: &'static str,
}

/// A profile with nothing filled in, for `..BLANK` in the tables.
pub(crate) const BLANK: ProfileSpec = ProfileSpec {
    weight: 1,
    course: Course::Solid,
    staging: Staging::Tnm,
    sexes: Sexes::Any,
    ages: (40, 85),
    extents: [20, 22, 58],
    histologies: "",
    alterations: "",
    markers: "",
    surgery: "",
    perioperative: "",
    chemoradiation: "",
    consolidation: "",
    first_line: "",
    later_line: "",
    maintenance: "",
    surveillance: "",
    sites: "",
    nodes: "",
    pathology: "",
    symptoms: "",
};

/// An item with its relative weight.
#[derive(Debug)]
pub(crate) struct Weighted<T> {
    pub item: T,
    pub weight: u32,
}

pub(crate) type Pool<T> = Vec<Weighted<T>>;

/// Draws one item in proportion to its weight; `None` for an empty pool.
pub(crate) fn pick<'a, T>(rng: &mut ChaCha8Rng, pool: &'a [Weighted<T>]) -> Option<&'a T> {
    let total: u32 = pool.iter().map(|w| w.weight).sum();
    if total == 0 {
        return None;
    }
    let mut ticket = rng.random_range(0..total);
    for entry in pool {
        if ticket < entry.weight {
            return Some(&entry.item);
        }
        ticket -= entry.weight;
    }
    None
}

/// Draws one of `(item, weight)` pairs in proportion to its weight.
pub(crate) fn pick_pair<T: Copy>(rng: &mut ChaCha8Rng, items: &[(T, u32)]) -> Option<T> {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    if total == 0 {
        return None;
    }
    let mut ticket = rng.random_range(0..total);
    for (item, weight) in items {
        if ticket < *weight {
            return Some(*item);
        }
        ticket -= weight;
    }
    None
}

/// Draws one of a plain list uniformly. The list must not be empty: callers
/// pass static tables or pools checked for emptiness first (the tests cover both).
pub(crate) fn one<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// An answer value and the ways a narrative may state it.
#[derive(Debug)]
pub(crate) struct Phrased {
    pub answer: &'static str,
    /// Always starts with the answer itself.
    pub phrasings: Vec<&'static str>,
}

/// One drug of a regimen.
#[derive(Debug)]
pub(crate) struct Agent {
    pub name: &'static str,
    pub dose: Option<&'static str>,
}

/// Something given or done to treat the cancer.
#[derive(Debug)]
pub(crate) enum Therapy {
    Drugs {
        agents: Vec<Agent>,
        acronym: Option<&'static str>,
    },
    Procedure(Phrased),
}

/// A somatic or germline alteration and the therapies that target it.
#[derive(Debug)]
pub(crate) struct Alteration {
    pub answer: &'static str,
    pub gene: &'static str,
    pub detail: &'static str,
    pub germline: bool,
    pub targeted: Pool<Therapy>,
}

/// Markers reported together by chance `percent`, one of `options` drawn.
pub(crate) struct MarkerSlot {
    pub percent: u32,
    pub options: Vec<&'static MarkerDef>,
}

/// A profile parsed from its notation.
pub(crate) struct Profile {
    pub spec: &'static ProfileSpec,
    pub histologies: Pool<Phrased>,
    pub alterations: Pool<Alteration>,
    pub markers: Vec<MarkerSlot>,
    pub surgery: Pool<Therapy>,
    pub perioperative: Pool<Therapy>,
    pub chemoradiation: Pool<Therapy>,
    pub consolidation: Pool<Therapy>,
    pub first_line: Pool<Therapy>,
    pub later_line: Pool<Therapy>,
    pub maintenance: Pool<Therapy>,
    pub surveillance: Pool<Therapy>,
    pub sites: Pool<&'static str>,
    pub nodes: Pool<&'static str>,
    pub pathology: Vec<&'static str>,
    pub symptoms: Vec<&'static str>,
}

impl Profile {
    pub(crate) fn parse(spec: &'static ProfileSpec) -> Profile {
        Profile {
            spec,
            histologies: pool(spec.histologies, phrased),
            alterations: pool(spec.alterations, alteration),
            markers: marker_slots(spec.markers),
            surgery: pool(spec.surgery, procedure),
            perioperative: pool(spec.perioperative, therapy),
            chemoradiation: pool(spec.chemoradiation, therapy),
            consolidation: pool(spec.consolidation, therapy),
            first_line: pool(spec.first_line, therapy),
            later_line: pool(spec.later_line, therapy),
            maintenance: pool(spec.maintenance, therapy),
            surveillance: pool(spec.surveillance, procedure),
            sites: pool(spec.sites, |s| s),
            nodes: pool(spec.nodes, |s| s),
            pathology: plain_list(spec.pathology),
            symptoms: plain_list(spec.symptoms),
        }
    }
}

/// `a*3 | b | c*2` as (text, weight) pairs, empty items skipped.
fn weighted_items(list: &'static str) -> impl Iterator<Item = (&'static str, u32)> {
    list.split('|').filter_map(|raw| {
        let item = raw.trim();
        if item.is_empty() {
            return None;
        }
        Some(match item.rsplit_once('*') {
            Some((text, weight)) => match weight.trim().parse::<u32>() {
                Ok(w) => (text.trim(), w),
                Err(_) => (item, 1),
            },
            None => (item, 1),
        })
    })
}

fn pool<T>(list: &'static str, parse: impl Fn(&'static str) -> T) -> Pool<T> {
    weighted_items(list)
        .map(|(text, weight)| Weighted {
            item: parse(text),
            weight,
        })
        .collect()
}

fn plain_list(list: &'static str) -> Vec<&'static str> {
    weighted_items(list).map(|(text, _)| text).collect()
}

/// `answer = phrasing = phrasing`.
pub(crate) fn phrased(text: &'static str) -> Phrased {
    let mut parts = text.split('=').map(str::trim).filter(|p| !p.is_empty());
    let answer = parts.next().unwrap_or(text);
    let mut phrasings = vec![answer];
    phrasings.extend(parts);
    Phrased { answer, phrasings }
}

/// A procedure, whether or not the table marked it with `!`.
fn procedure(text: &'static str) -> Therapy {
    Therapy::Procedure(phrased(text.trim_start_matches('!').trim()))
}

/// `a@dose+b (ACR)` or `!procedure = phrasing`.
pub(crate) fn therapy(text: &'static str) -> Therapy {
    if let Some(procedure) = text.strip_prefix('!') {
        return Therapy::Procedure(phrased(procedure.trim()));
    }
    let (body, acronym) = match text.strip_suffix(')').and_then(|t| t.rsplit_once(" (")) {
        Some((body, acronym)) => (body, Some(acronym.trim())),
        None => (text, None),
    };
    let agents = body
        .split('+')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| match a.split_once('@') {
            Some((name, dose)) => Agent {
                name: name.trim(),
                dose: Some(dose.trim()),
            },
            None => Agent {
                name: a,
                dose: None,
            },
        })
        .collect();
    Therapy::Drugs { agents, acronym }
}

/// `^GENE detail > therapy, therapy`.
fn alteration(text: &'static str) -> Alteration {
    let (finding, targeted) = match text.split_once('>') {
        Some((finding, targeted)) => (finding.trim(), targeted),
        None => (text.trim(), ""),
    };
    let (germline, answer) = match finding.strip_prefix('^') {
        Some(rest) => (true, rest.trim()),
        None => (false, finding),
    };
    let (gene, detail) = answer.split_once(' ').unwrap_or((answer, ""));
    let targeted = targeted
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| Weighted {
            item: therapy(t),
            weight: 1,
        })
        .collect();
    Alteration {
        answer,
        gene,
        detail: detail.trim(),
        germline,
        targeted,
    }
}

/// `90 tps | 40 tmb-high/tmb-low`; unknown keys are dropped (a test rejects them).
fn marker_slots(list: &'static str) -> Vec<MarkerSlot> {
    weighted_items(list)
        .filter_map(|(text, _)| {
            let (percent, keys) = text.split_once(' ')?;
            let percent = percent.trim().parse::<u32>().ok()?;
            let options: Vec<_> = keys
                .split('/')
                .filter_map(|k| marker_by_key(k.trim()))
                .collect();
            (!options.is_empty()).then_some(MarkerSlot { percent, options })
        })
        .collect()
}

/// Marker keys a table names that `markers.rs` does not define.
#[cfg(test)]
pub(crate) fn unknown_marker_keys(list: &'static str) -> Vec<&'static str> {
    weighted_items(list)
        .flat_map(|(text, _)| {
            text.split_once(' ')
                .map(|(_, keys)| keys)
                .unwrap_or(text)
                .split('/')
        })
        .map(str::trim)
        .filter(|k| marker_by_key(k).is_none())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_acronyms_doses_and_procedures_parse() {
        let p = pool("FOLFOX+bevacizumab*4 | cytarabine+daunorubicin (7+3) | osimertinib@80 mg daily | !lobectomy = right upper lobectomy", therapy);
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].weight, 4);
        match &p[1].item {
            Therapy::Drugs { agents, acronym } => {
                assert_eq!(agents.len(), 2);
                assert_eq!(*acronym, Some("7+3"));
            }
            other => panic!("expected drugs, got {other:?}"),
        }
        match &p[2].item {
            Therapy::Drugs { agents, .. } => assert_eq!(agents[0].dose, Some("80 mg daily")),
            other => panic!("expected drugs, got {other:?}"),
        }
        match &p[3].item {
            Therapy::Procedure(ph) => {
                assert_eq!(ph.phrasings, vec!["lobectomy", "right upper lobectomy"])
            }
            other => panic!("expected procedure, got {other:?}"),
        }
    }

    #[test]
    fn alterations_carry_gene_detail_germline_and_targets() {
        let a = alteration("^BRCA2 pathogenic variant > olaparib, talazoparib");
        assert!(a.germline);
        assert_eq!(
            (a.gene, a.detail, a.answer),
            ("BRCA2", "pathogenic variant", "BRCA2 pathogenic variant")
        );
        assert_eq!(a.targeted.len(), 2);
    }
}
