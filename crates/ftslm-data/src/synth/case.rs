//! One synthetic patient: the clinical facts drawn before any sentence is
//! written, so that the answer and the narrative are two views of the same case.
//!
//! The draws keep the facts coherent the way a clinic would: stage follows the
//! extent of disease, metastasis sites follow stage, targeted drugs follow the
//! alteration found, and the response is the kind of assessment that fits the
//! last treatment (pathology after neoadjuvant therapy, marrow after induction).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::markers::{draw_marker, MarkerValue};
use super::responses::*;
use super::vocabulary::{
    one, pick, pick_pair, Alteration, Course, Phrased, Pool, Profile, Sexes, Staging, Therapy,
};
use super::Vocabulary;

/// How often a field is left out, matched to the original training set.
const NO_ALTERATION: f64 = 0.22;
const NO_MARKER: f64 = 0.22;
const NO_RESPONSE: f64 = 0.009;
/// Metastatic disease whose sites the note does not name.
const DISTANT_WITHOUT_SITES: f64 = 0.05;
const REGIONAL_NODES_NAMED: f64 = 0.85;
/// The tables weigh early, regional and distant disease as a clinic sees them;
/// the original data set is 61% stage IV, so distant disease is drawn more often.
const EXTENT_SKEW: [u32; 3] = [4, 6, 12];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Extent {
    Early,
    Regional,
    Distant,
}

/// Why a therapy was given; decides the words around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Setting {
    Surveillance,
    Surgery,
    Neoadjuvant,
    Adjuvant,
    Chemoradiation,
    Consolidation,
    FirstLine,
    LaterLine,
    Maintenance,
    Radiosurgery,
    BoneRadiotherapy,
}

pub(crate) struct Step<'v> {
    pub setting: Setting,
    pub therapy: &'v Therapy,
}

/// The facts of one case.
pub(crate) struct Case<'v> {
    pub profile: &'v Profile,
    pub histology: &'v Phrased,
    pub age: u32,
    pub female: bool,
    pub extent: Extent,
    pub stage: Option<&'static str>,
    /// TNM notation consistent with the stage, for TNM-staged cancers.
    pub tnm: Option<String>,
    pub alterations: Vec<&'v Alteration>,
    /// Genes the profile tests for that were not found altered, for "wild-type" mentions.
    pub other_genes: Vec<&'static str>,
    pub markers: Vec<MarkerValue>,
    pub steps: Vec<Step<'v>>,
    pub response: Option<&'static ResponseDef>,
    /// Metastasis sites (or the involved regional nodes when `nodal`), in answer order.
    pub sites: Vec<&'static str>,
    pub nodal: bool,
}

impl<'v> Case<'v> {
    pub(crate) fn draw(rng: &mut ChaCha8Rng, vocabulary: &'v Vocabulary) -> Option<Case<'v>> {
        let profile = pick(rng, &vocabulary.profiles)?;
        let spec = profile.spec;
        let histology = pick(rng, &profile.histologies)?;
        let age = rng.random_range(spec.ages.0..=spec.ages.1);
        let female = match spec.sexes {
            Sexes::Female => true,
            Sexes::Male => false,
            Sexes::MostlyFemale => rng.random_bool(0.99),
            Sexes::Any => rng.random_bool(0.5),
        };
        let extent = match pick_pair(
            rng,
            &[
                (Extent::Early, spec.extents[0] * EXTENT_SKEW[0]),
                (Extent::Regional, spec.extents[1] * EXTENT_SKEW[1]),
                (Extent::Distant, spec.extents[2] * EXTENT_SKEW[2]),
            ],
        ) {
            Some(extent) => extent,
            None => Extent::Distant,
        };
        let stage = draw_stage(rng, spec.staging, extent);
        let alterations = draw_alterations(rng, &profile.alterations);
        let mut other_genes: Vec<&'static str> = Vec::new();
        for alteration in &profile.alterations {
            let gene = alteration.item.gene;
            if !other_genes.contains(&gene) && !alterations.iter().any(|a| a.gene == gene) {
                other_genes.push(gene);
            }
        }
        let markers = draw_markers(rng, profile);
        let (sites, nodal) = draw_sites(rng, profile, extent);
        let mut case = Case {
            profile,
            histology,
            age,
            female,
            extent,
            stage,
            tnm: None,
            alterations,
            other_genes,
            markers,
            steps: Vec::new(),
            response: None,
            sites,
            nodal,
        };
        let responses = case.plan_therapy(rng, vocabulary);
        if !rng.random_bool(NO_RESPONSE) {
            case.response = pick_pair(rng, responses);
        }
        if spec.staging == Staging::Tnm {
            let pathologic = case.steps.first().map(|s| s.setting) == Some(Setting::Surgery);
            case.tnm = case.stage.map(|s| tnm_for(rng, s, pathologic));
        }
        Some(case)
    }

    fn first_line(&self, rng: &mut ChaCha8Rng) -> Option<&'v Therapy> {
        for alteration in &self.alterations {
            if !alteration.targeted.is_empty() && rng.random_bool(0.85) {
                return pick(rng, &alteration.targeted);
            }
        }
        pick(rng, &self.profile.first_line)
    }

    fn push(&mut self, setting: Setting, therapy: Option<&'v Therapy>) -> bool {
        match therapy {
            Some(therapy) => {
                self.steps.push(Step { setting, therapy });
                true
            }
            None => false,
        }
    }

    /// A later line different from everything given so far, when the profile has one.
    fn push_later_line(&mut self, rng: &mut ChaCha8Rng) -> bool {
        for _ in 0..4 {
            if let Some(therapy) = pick(rng, &self.profile.later_line) {
                if !self.steps.iter().any(|s| std::ptr::eq(s.therapy, therapy)) {
                    return self.push(Setting::LaterLine, Some(therapy));
                }
            }
        }
        false
    }

    /// Fills `steps` in the order given and returns the responses that fit.
    fn plan_therapy(&mut self, rng: &mut ChaCha8Rng, vocabulary: &'v Vocabulary) -> ResponsePool {
        let p = self.profile;
        match p.spec.course {
            Course::Solid => match self.extent {
                Extent::Early => self.plan_early(rng, vocabulary),
                Extent::Regional => self.plan_regional(rng, vocabulary),
                Extent::Distant => self.plan_distant(rng, vocabulary),
            },
            Course::Brain => {
                self.push(Setting::Surgery, pick(rng, &p.surgery));
                self.push(Setting::Chemoradiation, pick(rng, &p.chemoradiation));
                if rng.random_bool(0.85) {
                    self.push(Setting::Consolidation, pick(rng, &p.consolidation));
                }
                if rng.random_bool(0.3) {
                    self.push_later_line(rng);
                }
                BRAIN
            }
            Course::Lymphoma | Course::Cll => {
                let watch = self.extent == Extent::Early
                    && rng.random_bool(if p.spec.course == Course::Cll {
                        0.5
                    } else {
                        0.3
                    });
                if watch && self.push(Setting::Surveillance, pick(rng, &p.surveillance)) {
                    return UNDER_SURVEILLANCE;
                }
                let first = self.first_line(rng);
                self.push(Setting::FirstLine, first);
                if self.extent == Extent::Early && rng.random_bool(0.5) {
                    self.push(Setting::Consolidation, pick(rng, &p.consolidation));
                }
                if rng.random_bool(0.22) {
                    self.push_later_line(rng);
                } else if rng.random_bool(0.25) {
                    self.push(Setting::Maintenance, pick(rng, &p.maintenance));
                }
                if p.spec.course == Course::Cll {
                    CLL
                } else {
                    LYMPHOMA
                }
            }
            Course::AcuteLeukemia | Course::Cml | Course::Myeloma => {
                let first = self.first_line(rng);
                self.push(Setting::FirstLine, first);
                let consolidated = rng.random_bool(0.6)
                    && self.push(Setting::Consolidation, pick(rng, &p.consolidation));
                if rng.random_bool(0.2) {
                    self.push_later_line(rng);
                } else if (consolidated || rng.random_bool(0.3)) && rng.random_bool(0.6) {
                    self.push(Setting::Maintenance, pick(rng, &p.maintenance));
                }
                match p.spec.course {
                    Course::AcuteLeukemia => ACUTE_LEUKEMIA,
                    Course::Cml => CML,
                    _ => MYELOMA,
                }
            }
        }
    }

    fn plan_early(&mut self, rng: &mut ChaCha8Rng, vocabulary: &'v Vocabulary) -> ResponsePool {
        let p = self.profile;
        if rng.random_bool(0.25) && self.push(Setting::Surveillance, pick(rng, &p.surveillance)) {
            return UNDER_SURVEILLANCE;
        }
        if self.push(Setting::Surgery, pick(rng, &p.surgery)) {
            if rng.random_bool(0.45) {
                self.push(Setting::Adjuvant, pick(rng, &p.perioperative));
            }
            if rng.random_bool(0.2) {
                self.push(Setting::Adjuvant, Some(&vocabulary.adjuvant_radiotherapy));
            }
            return CURATIVE;
        }
        if self.push(Setting::Chemoradiation, pick(rng, &p.chemoradiation)) {
            if rng.random_bool(0.5) {
                self.push(Setting::Consolidation, pick(rng, &p.consolidation));
            }
            return AFTER_CHEMORADIATION;
        }
        self.plan_distant(rng, vocabulary)
    }

    fn plan_regional(&mut self, rng: &mut ChaCha8Rng, vocabulary: &'v Vocabulary) -> ResponsePool {
        let p = self.profile;
        // Only combinations are given before surgery in these tables; single
        // agents and procedures there are adjuvant-only (tamoxifen, BCG, RAI).
        let neoadjuvant = p
            .perioperative
            .iter()
            .filter(|w| matches!(&w.item, Therapy::Drugs { agents, .. } if agents.len() >= 2))
            .count();
        let mut options: Vec<(u8, u32)> = Vec::new();
        if !p.surgery.is_empty() && neoadjuvant > 0 {
            options.push((0, 3));
        }
        if !p.surgery.is_empty() && !p.perioperative.is_empty() {
            options.push((1, 2));
        }
        if !p.chemoradiation.is_empty() {
            options.push((2, 3));
        }
        if !p.surgery.is_empty() {
            options.push((3, 1));
        }
        match pick_pair(rng, &options) {
            Some(0) => {
                let combos: Pool<&Therapy> = p
                    .perioperative
                    .iter()
                    .filter(
                        |w| matches!(&w.item, Therapy::Drugs { agents, .. } if agents.len() >= 2),
                    )
                    .map(|w| super::vocabulary::Weighted {
                        item: &w.item,
                        weight: w.weight,
                    })
                    .collect();
                self.push(Setting::Neoadjuvant, pick(rng, &combos).copied());
                self.push(Setting::Surgery, pick(rng, &p.surgery));
                if rng.random_bool(0.3) {
                    self.push(Setting::Adjuvant, pick(rng, &p.perioperative));
                }
                AFTER_NEOADJUVANT
            }
            Some(1) => {
                self.push(Setting::Surgery, pick(rng, &p.surgery));
                self.push(Setting::Adjuvant, pick(rng, &p.perioperative));
                if rng.random_bool(0.25) {
                    self.push(Setting::Adjuvant, Some(&vocabulary.adjuvant_radiotherapy));
                }
                CURATIVE
            }
            Some(2) => {
                self.push(Setting::Chemoradiation, pick(rng, &p.chemoradiation));
                let operated =
                    rng.random_bool(0.35) && self.push(Setting::Surgery, pick(rng, &p.surgery));
                if rng.random_bool(0.6) {
                    self.push(Setting::Consolidation, pick(rng, &p.consolidation));
                }
                if operated {
                    AFTER_NEOADJUVANT
                } else {
                    AFTER_CHEMORADIATION
                }
            }
            Some(_) => {
                self.push(Setting::Surgery, pick(rng, &p.surgery));
                CURATIVE
            }
            None => self.plan_distant(rng, vocabulary),
        }
    }

    fn plan_distant(&mut self, rng: &mut ChaCha8Rng, vocabulary: &'v Vocabulary) -> ResponsePool {
        let p = self.profile;
        let first = self.first_line(rng);
        let radiosurgery = self.sites.contains(&"brain") && rng.random_bool(0.45);
        let before = rng.random_bool(0.5);
        if radiosurgery && before {
            self.push(Setting::Radiosurgery, Some(&vocabulary.radiosurgery));
        }
        self.push(Setting::FirstLine, first);
        if radiosurgery && !before {
            self.push(Setting::Radiosurgery, Some(&vocabulary.radiosurgery));
        }
        if self.sites.contains(&"bone") && rng.random_bool(0.3) {
            self.push(
                Setting::BoneRadiotherapy,
                Some(&vocabulary.bone_radiotherapy),
            );
        }
        if rng.random_bool(0.3) {
            self.push_later_line(rng);
        } else if rng.random_bool(0.2) {
            self.push(Setting::Maintenance, pick(rng, &p.maintenance));
        }
        ADVANCED
    }
}

fn draw_stage(rng: &mut ChaCha8Rng, staging: Staging, extent: Extent) -> Option<&'static str> {
    let pool: &[(&'static str, u32)] = match (staging, extent) {
        (Staging::Tnm | Staging::Figo, Extent::Early) => &[
            ("I", 2),
            ("IA", 2),
            ("IB", 2),
            ("II", 2),
            ("IIA", 3),
            ("IIB", 2),
        ],
        (Staging::Tnm | Staging::Figo, Extent::Regional) => {
            &[("III", 3), ("IIIA", 3), ("IIIB", 3), ("IIIC", 2)]
        }
        (Staging::Tnm | Staging::Figo, Extent::Distant) => &[("IV", 12), ("IVA", 1), ("IVB", 1)],
        (Staging::AnnArbor, Extent::Early) => {
            &[("I", 1), ("IA", 1), ("II", 2), ("IIA", 2), ("IIB", 1)]
        }
        (Staging::AnnArbor, Extent::Regional) => &[("III", 1), ("IIIA", 1), ("IIIB", 1)],
        (Staging::AnnArbor, Extent::Distant) => &[("IV", 2), ("IVA", 1), ("IVB", 1)],
        (Staging::Iss, Extent::Early) => &[("I", 1)],
        (Staging::Iss, Extent::Regional) => &[("II", 1)],
        (Staging::Iss, Extent::Distant) => &[("III", 1)],
        (Staging::Rai, Extent::Early) => &[("0", 1), ("I", 2)],
        (Staging::Rai, Extent::Regional) => &[("II", 1)],
        (Staging::Rai, Extent::Distant) => &[("III", 1), ("IV", 1)],
        (Staging::SclcExtent, Extent::Distant) => &[("extensive-stage", 1)],
        (Staging::SclcExtent, _) => &[("limited-stage", 1)],
        (Staging::CmlPhase, _) => &[("chronic phase", 9), ("accelerated phase", 1)],
        (Staging::Unstaged, _) => &[],
    };
    pick_pair(rng, pool)
}

/// TNM categories that fit an AJCC stage group in most solid tumors.
fn tnm_for(rng: &mut ChaCha8Rng, stage: &str, pathologic: bool) -> String {
    let prefix = if pathologic { "p" } else { "c" };
    let body = match stage {
        "I" | "IA" => *one(rng, &["T1aN0M0", "T1bN0M0", "T1cN0M0", "T1N0M0"]),
        "IB" => "T2aN0M0",
        "II" | "IIA" => *one(rng, &["T2N0M0", "T2aN0M0", "T1cN1M0"]),
        "IIB" => *one(rng, &["T3N0M0", "T2bN1M0", "T2N1M0"]),
        "IVA" | "IVB" | "IV" => *one(
            rng,
            &[
                "T2N2M1", "T3N1M1a", "T4N2M1b", "T1N0M1c", "T2N1M1b", "T4N3M1c", "T3N2M1",
            ],
        ),
        _ => *one(
            rng,
            &["T3N1M0", "T4N0M0", "T2N2M0", "T3N2M0", "T4N2M0", "T1N3M0"],
        ),
    };
    format!("{prefix}{body}")
}

fn draw_alterations<'v>(rng: &mut ChaCha8Rng, pool: &'v Pool<Alteration>) -> Vec<&'v Alteration> {
    let mut found = Vec::new();
    if pool.is_empty() || rng.random_bool(NO_ALTERATION) {
        return found;
    }
    if let Some(first) = pick(rng, pool) {
        found.push(first);
        if rng.random_bool(0.12) {
            for _ in 0..4 {
                if let Some(second) = pick(rng, pool) {
                    if second.gene != first.gene {
                        found.push(second);
                        break;
                    }
                }
            }
        }
    }
    found
}

fn draw_markers(rng: &mut ChaCha8Rng, profile: &Profile) -> Vec<MarkerValue> {
    let mut drawn = Vec::new();
    if profile.markers.is_empty() || rng.random_bool(NO_MARKER) {
        return drawn;
    }
    for slot in &profile.markers {
        if rng.random_range(0..100) < slot.percent {
            let def = *one(rng, &slot.options);
            drawn.push(draw_marker(rng, def));
        }
    }
    if drawn.is_empty() {
        let slot = one(rng, &profile.markers);
        let def = *one(rng, &slot.options);
        drawn.push(draw_marker(rng, def));
    }
    drawn
}

fn draw_sites(
    rng: &mut ChaCha8Rng,
    profile: &Profile,
    extent: Extent,
) -> (Vec<&'static str>, bool) {
    if profile.spec.course != Course::Solid {
        return (Vec::new(), false);
    }
    match extent {
        Extent::Distant if !rng.random_bool(DISTANT_WITHOUT_SITES) => {
            let wanted = match rng.random_range(0..20) {
                0..=9 => 1,
                10..=16 => 2,
                _ => 3,
            };
            let mut sites: Vec<&'static str> = Vec::new();
            for _ in 0..wanted * 4 {
                if sites.len() == wanted {
                    break;
                }
                if let Some(site) = pick(rng, &profile.sites) {
                    if !sites.contains(site) {
                        sites.push(site);
                    }
                }
            }
            (sites, false)
        }
        Extent::Regional if rng.random_bool(REGIONAL_NODES_NAMED) => {
            match pick(rng, &profile.nodes) {
                Some(node) => (vec![*node], true),
                None => (Vec::new(), false),
            }
        }
        _ => (Vec::new(), false),
    }
}
