//! Writing a case as a clinical note: the presentation, staging, molecular and
//! biomarker findings, then the treatment course (see `course_text.rs`).
//!
//! The variation is deliberate and layered (report headers, several templates
//! per sentence kind, facts placed inline or in their own sentence, optional
//! sentences, shuffled order, distractors such as grades and wild-type genes)
//! so that a model has to read the note rather than learn where a template puts
//! each value. What never varies is that every answer value is stated.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::case::{Case, Extent};
use super::phrasing::{
    alteration_adjective, alteration_text, capitalize, join_and, lowercase_start,
};
use super::vocabulary::{Course, Staging};

const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const HEADERS: &[&str] = &[
    "Clinic note",
    "Oncology consult",
    "Progress note",
    "Tumor board summary",
    "History of present illness",
    "Follow-up visit",
    "Referral letter",
    "Case summary",
    "Oncology follow-up",
    "Discharge summary",
    "HPI",
    "Assessment",
];
pub(super) const COMORBIDITIES: &[&str] = &[
    "hypertension",
    "type 2 diabetes",
    "hyperlipidemia",
    "COPD",
    "hypothyroidism",
    "atrial fibrillation",
    "chronic kidney disease",
    "coronary artery disease",
    "obesity",
    "osteoarthritis",
];
/// Sites that read naturally before "metastases" ("liver metastases", not "pleura metastases").
pub(super) const ADJECTIVAL_SITES: &[&str] = &[
    "liver",
    "lung",
    "bone",
    "brain",
    "adrenal gland",
    "contralateral lung",
];
const CLOSINGS: &[&str] = &[
    "Will discuss at multidisciplinary tumor board.",
    "Follow-up in 3 months.",
    "Supportive care needs were reviewed.",
    "Next visit in 6 weeks with labs.",
    "Goals of care were discussed with the family.",
];

/// Writes one case; holds the choices that must stay consistent across sentences.
pub(crate) struct Writer<'a, 'v> {
    pub(super) rng: &'a mut ChaCha8Rng,
    pub(super) case: &'a Case<'v>,
    /// "He", "She" or "The patient", chosen once per note.
    pub(super) subject: &'static str,
}

impl<'a, 'v> Writer<'a, 'v> {
    pub(crate) fn new(rng: &'a mut ChaCha8Rng, case: &'a Case<'v>) -> Self {
        let subject = if rng.random_bool(0.2) {
            "The patient"
        } else if case.female {
            "She"
        } else {
            "He"
        };
        Writer { rng, case, subject }
    }

    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// One of the words given, uniformly; "" for an empty list.
    pub(super) fn pick(&mut self, items: &[&'static str]) -> &'static str {
        let i = self.rng.random_range(0..items.len().max(1));
        items.get(i).copied().unwrap_or_default()
    }

    /// The subject in the middle of a sentence.
    pub(super) fn subject_mid(&self) -> String {
        match self.subject {
            "The patient" => "the patient".to_string(),
            s => s.to_ascii_lowercase(),
        }
    }

    fn month_year(&mut self) -> String {
        let month = self.pick(MONTHS);
        format!("{month} {}", self.rng.random_range(2016..2025))
    }

    /// The whole note.
    pub(crate) fn compose(mut self) -> String {
        let case = self.case;
        let stage_inline = case.stage.is_some() && self.chance(0.4);
        let sites_inline =
            !case.sites.is_empty() && !case.nodal && case.sites.len() <= 2 && self.chance(0.3);
        let alteration_inline =
            case.alterations.len() == 1 && !case.alterations[0].germline && self.chance(0.2);

        let mut intro = self.intro(stage_inline, sites_inline, alteration_inline);
        if self.chance(0.3) {
            let header = match case.profile.spec.course {
                Course::Brain if self.chance(0.5) => "Neuro-oncology note",
                Course::Solid | Course::Brain => self.pick(HEADERS),
                _ if self.chance(0.5) => "Hematology clinic note",
                _ => self.pick(HEADERS),
            };
            intro = format!("{header}: {intro}");
        }

        let mut facts: Vec<String> = Vec::new();
        facts.extend(self.staging_sentence(!stage_inline, !sites_inline));
        if !case.profile.pathology.is_empty() && self.chance(0.35) {
            let detail = self.pick(&case.profile.pathology);
            let label = self.pick(&["Notable features", "Additional findings", "Of note"]);
            let sentence = format!("{label}: {detail}.");
            facts.push(sentence);
        }
        let molecular = if alteration_inline {
            self.negative_genes_sentence(0.7, true)
        } else {
            self.molecular_sentence()
        };
        let markers = self.marker_sentence();
        match (molecular, markers) {
            (Some(m), Some(b)) if self.chance(0.25) => {
                facts.push(format!(
                    "{}; {}",
                    m.trim_end_matches('.'),
                    lowercase_start(&b)
                ));
            }
            (m, b) => {
                facts.extend(m);
                facts.extend(b);
            }
        }
        if self.chance(0.35) {
            facts.push(self.filler());
        }
        facts.shuffle(self.rng);
        let moved_late = if facts.len() > 1 && self.chance(0.12) {
            facts.pop()
        } else {
            None
        };

        let mut sentences = vec![intro];
        sentences.extend(facts);
        sentences.extend(self.course_sentences());
        sentences.extend(moved_late);
        if self.chance(0.15) {
            sentences.push(self.pick(CLOSINGS).to_string());
        }
        sentences.join(" ")
    }

    /// "67-year-old woman" and its variants. Forms that need the sentence start
    /// ("64M", "A 64-year-old", "patient" as the noun) are used only there, since
    /// mid-sentence callers already wrote "Patient is a".
    fn age_sex(&mut self, sentence_start: bool) -> String {
        let age = self.case.age;
        let female = self.case.female;
        let noun = match self.rng.random_range(0..10) {
            0 if sentence_start => "patient",
            1..=5 => {
                if female {
                    "woman"
                } else {
                    "man"
                }
            }
            _ => {
                if female {
                    "female"
                } else {
                    "male"
                }
            }
        };
        let sex_letter = if female { "F" } else { "M" };
        let sex_word = if female { "female" } else { "male" };
        match self.rng.random_range(0..10) {
            0 if sentence_start => format!("{age}{sex_letter}"),
            1 => format!("{age} y/o {sex_word}"),
            2 | 3 if sentence_start => format!(
                "{} {age}-year-old {noun}",
                capitalize(self.article_for_age())
            ),
            _ => format!("{age}-year-old {noun}"),
        }
    }

    /// "an" before ages spoken with a vowel sound: 8, 11, 18, 80-89.
    fn article_for_age(&self) -> &'static str {
        let age = self.case.age;
        if age == 8 || age == 11 || age == 18 || (80..90).contains(&age) {
            "an"
        } else {
            "a"
        }
    }

    /// The diagnosis phrase, carrying stage, sites or the alteration when placed inline.
    fn disease(
        &mut self,
        stage_inline: bool,
        sites_inline: bool,
        alteration_inline: bool,
    ) -> String {
        let case = self.case;
        let histology = self.pick(&case.histology.phrasings);
        let mut before = String::new();
        let mut after = String::new();
        let course = case.profile.spec.course;
        if course == Course::Solid && !(stage_inline && case.extent == Extent::Distant) {
            let modifier = match case.extent {
                Extent::Distant if !sites_inline => self.pick(&[
                    "metastatic ",
                    "de novo metastatic ",
                    "advanced ",
                    "widely metastatic ",
                    "",
                ]),
                Extent::Regional if case.nodal && self.chance(0.3) => "node-positive ",
                Extent::Regional => self.pick(&["locally advanced ", ""]),
                Extent::Early => self.pick(&["early-stage ", "localized ", "", ""]),
                Extent::Distant => "",
            };
            before.push_str(modifier);
        } else if course != Course::Solid && course != Course::Brain && self.chance(0.3) {
            before.push_str("newly diagnosed ");
        }
        if stage_inline {
            if let Some(stage) = case.stage {
                match case.profile.spec.staging {
                    Staging::CmlPhase => after.push_str(&format!(" in {stage}")),
                    Staging::SclcExtent => before.push_str(&format!("{stage} ")),
                    Staging::Figo => before.push_str(&format!("FIGO stage {stage} ")),
                    Staging::Iss => {
                        before.push_str(&format!("{} stage {stage} ", self.pick(&["R-ISS", "ISS"])))
                    }
                    Staging::Rai => before.push_str(&format!("Rai stage {stage} ")),
                    Staging::Tnm | Staging::AnnArbor | Staging::Unstaged => {
                        before.push_str(&format!("stage {stage} "))
                    }
                }
            }
        }
        if alteration_inline {
            if let Some(alteration) = case.alterations.first() {
                match alteration_adjective(alteration) {
                    Some(adjective) if self.chance(0.5) => before = format!("{before}{adjective} "),
                    _ => after.push_str(&format!(
                        " harboring {}",
                        alteration_text(self.rng, alteration, false)
                    )),
                }
            }
        }
        if sites_inline {
            let list = join_and(&case.sites);
            let adjectival = case.sites.iter().all(|s| ADJECTIVAL_SITES.contains(s));
            if !adjectival || self.chance(0.5) {
                after.push_str(&format!(
                    "{} metastatic to the {list}",
                    if after.is_empty() { "" } else { "," }
                ));
            } else {
                after.push_str(&format!(" with {list} metastases"));
            }
        }
        format!("{before}{histology}{after}")
    }

    fn intro(&mut self, stage_inline: bool, sites_inline: bool, alteration_inline: bool) -> String {
        let disease = self.disease(stage_inline, sites_inline, alteration_inline);
        let symptoms = &self.case.profile.symptoms;
        let template = self.rng.random_range(0..9);
        match template {
            1 | 2 if !symptoms.is_empty() => {
                let who = self.age_sex(true);
                let symptom = self.pick(symptoms);
                if template == 1 {
                    format!("{who} presenting with {symptom}, found to have {disease}.")
                } else {
                    format!("{who} who presented with {symptom} and was diagnosed with {disease}.")
                }
            }
            3 => format!(
                "Patient is {} {} with {disease}.",
                self.article_for_age(),
                self.age_sex(false)
            ),
            4 => format!(
                "{} in {} {}.",
                capitalize(&disease),
                self.article_for_age(),
                self.age_sex(false)
            ),
            5 => {
                let who = self.age_sex(true);
                format!("{who} with {disease} diagnosed in {}.", self.month_year())
            }
            6 => format!(
                "This is {} {} with {disease}.",
                self.article_for_age(),
                self.age_sex(false)
            ),
            7 => format!(
                "{} referred for management of {disease}.",
                self.age_sex(true)
            ),
            _ => format!("{} with {disease}.", self.age_sex(true)),
        }
    }
}

impl Case<'_> {
    pub(super) fn course_is_solid_early(&self) -> bool {
        self.profile.spec.course == Course::Solid && self.extent == Extent::Early
    }
}
