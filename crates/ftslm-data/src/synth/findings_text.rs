//! Writing the findings: staging and metastasis sites, molecular results
//! (including genes found unaltered), biomarkers, and incidental details.

use rand::seq::SliceRandom;
use rand::Rng;

use super::narrative::{Writer, ADJECTIVAL_SITES, COMORBIDITIES};
use super::phrasing::{alteration_text, capitalize, join_and, join_prose, lowercase_start};
use super::vocabulary::{Course, Staging};

impl Writer<'_, '_> {
    fn stage_phrase(&mut self, stage: &str) -> String {
        let case = self.case;
        match case.profile.spec.staging {
            Staging::Tnm => match (&case.tnm, self.rng.random_range(0..6)) {
                (Some(tnm), 0 | 1) if tnm.starts_with('p') => {
                    format!("pathologic stage {stage} ({tnm})")
                }
                (Some(tnm), 0) => format!("stage {stage} ({tnm})"),
                (Some(tnm), 1) => format!("{tnm}, stage {stage}"),
                (_, 2) => format!("clinical stage {stage}"),
                (_, 3) => format!("AJCC 8th edition stage {stage}"),
                _ => format!("stage {stage}"),
            },
            Staging::Figo => format!(
                "{} {stage}",
                self.pick(&["FIGO stage", "FIGO stage", "FIGO"])
            ),
            Staging::AnnArbor => format!(
                "{} {stage}",
                self.pick(&["Ann Arbor stage", "stage", "Lugano stage"])
            ),
            Staging::Iss => format!(
                "{} {stage}",
                self.pick(&["R-ISS stage", "ISS stage", "Revised ISS stage"])
            ),
            Staging::Rai => format!("Rai stage {stage}"),
            Staging::SclcExtent | Staging::CmlPhase | Staging::Unstaged => stage.to_string(),
        }
    }

    fn sites_phrase(&mut self) -> String {
        let case = self.case;
        if case.nodal {
            let node = case
                .sites
                .first()
                .copied()
                .unwrap_or("regional lymph nodes");
            if !node.ends_with("nodes") {
                return format!("involvement of the {node}");
            }
            return match self.rng.random_range(0..3) {
                0 => format!("involvement of the {node}"),
                1 => format!("biopsy-proven {node} involvement"),
                _ => format!("enlarged FDG-avid {node}"),
            };
        }
        let list = if case.sites.len() == 2 && self.chance(0.2) {
            format!("{} as well as the {}", case.sites[0], case.sites[1])
        } else {
            join_and(&case.sites)
        };
        let adjectival = case.sites.iter().all(|s| ADJECTIVAL_SITES.contains(s));
        match self.rng.random_range(0..4) {
            0 if adjectival => format!("{list} metastases"),
            1 => format!("metastatic disease involving the {list}"),
            2 => format!("lesions in the {list} consistent with metastases"),
            _ => format!("metastases to the {list}"),
        }
    }

    /// Stage and sites not already stated in the introduction.
    pub(super) fn staging_sentence(
        &mut self,
        need_stage: bool,
        need_sites: bool,
    ) -> Option<String> {
        let case = self.case;
        let need_stage = need_stage && case.stage.is_some();
        let need_sites = need_sites && !case.sites.is_empty();
        let scan = match case.profile.spec.course {
            Course::Solid => self.pick(&[
                "PET/CT",
                "CT of the chest, abdomen and pelvis",
                "CT and brain MRI",
                "PET-CT",
                "imaging",
            ]),
            _ => self.pick(&["PET/CT", "workup", "evaluation"]),
        };
        if need_stage {
            let stage = case.stage.unwrap_or_default();
            if case.profile.spec.staging == Staging::CmlPhase {
                return Some(format!("{} at diagnosis.", capitalize(stage)));
            }
            let phrase = self.stage_phrase(stage);
            if need_sites {
                let sites = self.sites_phrase();
                return Some(match self.rng.random_range(0..3) {
                    0 => format!("Staging {scan} showed {phrase} disease with {sites}."),
                    1 => format!("Staging workup: {phrase}, with {sites}."),
                    _ => format!(
                        "{} confirmed {phrase} disease with {sites}.",
                        capitalize(scan)
                    ),
                });
            }
            return Some(match self.rng.random_range(0..4) {
                0 => format!("{} at diagnosis.", capitalize(&phrase)),
                1 => format!("Disease was classified as {phrase}."),
                2 => format!("Staging workup was consistent with {phrase} disease."),
                _ => format!("Staging {scan} showed {phrase} disease."),
            });
        }
        if need_sites {
            let sites = self.sites_phrase();
            return Some(match self.rng.random_range(0..3) {
                0 => format!("{} showed {sites}.", capitalize(scan)),
                1 => format!("Imaging revealed {sites}."),
                _ => format!("Workup demonstrated {sites}."),
            });
        }
        (case.course_is_solid_early() && self.chance(0.3)).then(|| {
            self.pick(&[
                "No distant metastases were identified on staging imaging.",
                "Staging imaging showed no distant disease.",
                "Sentinel lymph node biopsy was negative.",
            ])
            .to_string()
        })
    }

    fn molecular_test(&mut self) -> &'static str {
        let case = self.case;
        if !case.alterations.is_empty() && case.alterations.iter().all(|a| a.germline) {
            return self.pick(&[
                "Germline genetic testing",
                "Germline panel testing",
                "Hereditary cancer panel testing",
            ]);
        }
        match case.profile.spec.course {
            Course::Solid | Course::Brain => self.pick(&[
                "Next-generation sequencing",
                "NGS of the primary tumor",
                "Tumor genomic profiling",
                "Molecular testing",
                "Comprehensive genomic profiling",
                "Plasma ctDNA testing",
                "A targeted NGS panel",
            ]),
            _ => self.pick(&[
                "Next-generation sequencing",
                "Molecular testing",
                "A targeted NGS panel",
                "Molecular studies",
            ]),
        }
    }

    pub(super) fn molecular_sentence(&mut self) -> Option<String> {
        let case = self.case;
        if case.alterations.is_empty() {
            return self.negative_genes_sentence(0.55, false);
        }
        let test = self.molecular_test();
        let germline_test = test.starts_with("Germline") || test.starts_with("Hereditary");
        let texts: Vec<String> = case
            .alterations
            .iter()
            .map(|a| alteration_text(self.rng, a, germline_test))
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let list = join_and(&refs);
        let mut sentence = match self.rng.random_range(0..6) {
            0 => format!("{test} identified {list}"),
            1 => format!("{test} revealed {list}"),
            2 => format!(
                "{} {} detected on {}",
                capitalize(&list),
                if texts.len() > 1 { "were" } else { "was" },
                lowercase_start(test)
            ),
            3 => format!("Molecular profile: {list}"),
            4 => format!("The tumor harbors {list}"),
            _ => format!("Genomic testing was positive for {list}"),
        };
        let negatives = self.some_other_genes();
        if !negatives.is_empty() && self.chance(0.35) {
            let word = self.pick(&["wild-type", "negative", "not detected"]);
            sentence.push_str(&format!("; {} {word}", join_and(&negatives)));
        }
        sentence.push('.');
        Some(sentence)
    }

    fn some_other_genes(&mut self) -> Vec<&'static str> {
        let mut genes = self.case.other_genes.clone();
        genes.shuffle(self.rng);
        genes.truncate(self.rng.random_range(1..4));
        genes
    }

    /// What a note says about genes found unaltered: often nothing, sometimes
    /// which genes were tested, so that a gene name alone never implies a
    /// mutation. `genes_only` when an alteration was already named, so the note
    /// does not go on to say that no testing was done.
    pub(super) fn negative_genes_sentence(
        &mut self,
        silent: f64,
        genes_only: bool,
    ) -> Option<String> {
        if self.chance(silent) {
            return None;
        }
        let genes = self.some_other_genes();
        if genes_only && genes.is_empty() {
            return None;
        }
        let list = join_and(&genes);
        let choice = if genes_only {
            self.rng.random_range(0..2)
        } else {
            self.rng.random_range(0..6)
        };
        Some(match choice {
            0 if !genes.is_empty() => {
                format!("Genomic profiling was negative for {list} alterations.")
            }
            1 if !genes.is_empty() => format!(
                "{list} {} wild-type on NGS.",
                if genes.len() > 1 { "were" } else { "was" }
            ),
            2 => "Molecular testing was not performed.".to_string(),
            3 => "NGS results are pending.".to_string(),
            4 => "Tumor tissue was insufficient for molecular testing.".to_string(),
            _ => "NGS showed no actionable alterations.".to_string(),
        })
    }

    pub(super) fn marker_sentence(&mut self) -> Option<String> {
        let case = self.case;
        if case.markers.is_empty() {
            return match self.rng.random_range(0..10) {
                7 => Some("Tumor markers were within normal limits.".to_string()),
                8 => Some("Biomarker testing is pending.".to_string()),
                9 if case.profile.spec.course == Course::Solid => {
                    Some("PD-L1 testing was not performed.".to_string())
                }
                _ => None,
            };
        }
        let tissue: Vec<&str> = case
            .markers
            .iter()
            .filter(|m| !m.serum)
            .map(|m| m.phrase.as_str())
            .collect();
        let serum: Vec<&str> = case
            .markers
            .iter()
            .filter(|m| m.serum)
            .map(|m| m.phrase.as_str())
            .collect();
        let tissue_sentence = (!tissue.is_empty()).then(|| {
            let list = join_prose(self.rng, &tissue);
            match self.rng.random_range(0..5) {
                0 => format!("Biomarker testing showed {list}."),
                1 => format!("Biomarkers: {list}."),
                2 => format!("Additional testing showed {list}."),
                3 => format!("Tumor testing was notable for {list}."),
                _ => format!("Pathology was notable for {list}."),
            }
        });
        let serum_sentence = (!serum.is_empty()).then(|| {
            let list = join_prose(self.rng, &serum);
            match self.rng.random_range(0..4) {
                0 => format!("Labs were notable for {list}."),
                1 => format!("Laboratory studies showed {list}."),
                2 => format!("Tumor markers: {list}."),
                _ => format!("Baseline labs included {list}."),
            }
        });
        match (tissue_sentence, serum_sentence) {
            (Some(t), Some(s)) => Some(format!("{t} {s}")),
            (t, s) => t.or(s),
        }
    }

    pub(super) fn filler(&mut self) -> String {
        match self.rng.random_range(0..4) {
            0 => format!("ECOG performance status {}.", self.rng.random_range(0..3)),
            1 => {
                let mut picked = vec![self.pick(COMORBIDITIES), self.pick(COMORBIDITIES)];
                picked.dedup();
                format!("Comorbidities include {}.", join_and(&picked))
            }
            2 => {
                let status = self.pick(&["former", "current", "never"]);
                let years = if status == "never" {
                    String::new()
                } else {
                    format!(
                        " with a {}-pack-year history",
                        self.rng.random_range(10..60)
                    )
                };
                format!("{} is a {status} smoker{years}.", self.subject)
            }
            _ => format!(
                "Past medical history is notable for {}.",
                self.pick(COMORBIDITIES)
            ),
        }
    }
}
