//! Writing the treatment course: one sentence per therapy in the order given
//! (sometimes two steps in one sentence), then the response assessment.

use rand::Rng;

use super::case::{Setting, Step};
use super::narrative::Writer;
use super::phrasing::{capitalize, regimen_text, with_article};
use super::responses::Frame;
use super::vocabulary::{Course, Therapy};

impl Writer<'_, '_> {
    /// "for 4 cycles" and the like, for infused combinations only: oral and
    /// hormonal agents are not counted in cycles.
    fn cycles(&mut self, therapy: &Therapy) -> String {
        let combination = matches!(therapy, Therapy::Drugs { agents, .. } if agents.len() >= 2 && agents.iter().all(|a| a.dose.is_none()));
        if !combination {
            return String::new();
        }
        let n = self.rng.random_range(2..9);
        match self.rng.random_range(0..8) {
            0 => format!(" for {n} cycles"),
            1 => format!(" x{n}"),
            2 => format!(" ({n} cycles)"),
            _ => String::new(),
        }
    }

    fn is_targeted(&self, therapy: &Therapy) -> Option<&'static str> {
        self.case
            .alterations
            .iter()
            .find(|a| a.targeted.iter().any(|t| std::ptr::eq(&t.item, therapy)))
            .map(|a| a.gene)
    }

    fn procedure_sentence(&mut self, text: &str) -> String {
        let s = self.subject;
        match self.rng.random_range(0..4) {
            0 => format!("{} was performed.", capitalize(text)),
            1 => format!("Treatment began with {text}."),
            2 => format!("{s} was treated with {text}."),
            _ => format!("{s} underwent {text}."),
        }
    }

    fn step_sentence(&mut self, step: &Step) -> String {
        let s = self.subject;
        let mid = self.subject_mid();
        let is_procedure = matches!(step.therapy, Therapy::Procedure(_));
        let r = regimen_text(self.rng, step.therapy);
        match step.setting {
            Setting::Surveillance => match self.rng.random_range(0..4) {
                0 => format!("{s} elected {r}."),
                1 => format!("Management has been {r}."),
                2 => format!("{s} is being followed with {r}."),
                _ => format!("{} was recommended.", capitalize(&r)),
            },
            Setting::Surgery => self.procedure_sentence(&r),
            Setting::Neoadjuvant => {
                let cycles = self.cycles(step.therapy);
                match self.rng.random_range(0..3) {
                    0 => format!("{s} received neoadjuvant {r}{cycles}."),
                    1 => format!("Neoadjuvant {r} was given{cycles}."),
                    _ => format!("{s} was treated with preoperative {r}{cycles}."),
                }
            }
            Setting::Adjuvant if is_procedure => match self.rng.random_range(0..2) {
                0 => format!("{s} then received {r}."),
                _ => format!("This was followed by {r}."),
            },
            Setting::Adjuvant => {
                let cycles = self.cycles(step.therapy);
                match self.rng.random_range(0..4) {
                    0 => format!("Adjuvant {r} was given{cycles}."),
                    1 => format!("{s} completed adjuvant {r}{cycles}."),
                    2 => format!("This was followed by adjuvant {r}."),
                    _ => format!("{s} then received adjuvant {r}."),
                }
            }
            Setting::Chemoradiation => match self.rng.random_range(0..4) {
                0 => format!("{s} was treated with {r} and concurrent radiotherapy."),
                1 => format!("{s} received concurrent radiotherapy with {r}."),
                2 => format!("Radiotherapy with concurrent {r} was delivered."),
                _ => format!("{s} completed radiotherapy with concurrent {r}."),
            },
            Setting::Consolidation if is_procedure => match self.rng.random_range(0..3) {
                0 => format!("{s} then underwent {r}."),
                1 => format!("This was followed by {r}."),
                _ => format!("{s} proceeded to {r}."),
            },
            Setting::Consolidation => {
                let kind = if self.case.profile.spec.course == Course::Brain {
                    "adjuvant"
                } else {
                    "consolidation"
                };
                match self.rng.random_range(0..3) {
                    0 => format!("{s} then received {kind} {r}."),
                    1 => format!("{} {r} followed.", capitalize(kind)),
                    _ => format!("This was followed by {kind} {r}."),
                }
            }
            Setting::FirstLine if is_procedure => match self.rng.random_range(0..2) {
                0 => format!("{s} underwent {r}."),
                _ => format!("{s} was treated with {r}."),
            },
            Setting::FirstLine => {
                if let Some(gene) = self.is_targeted(step.therapy) {
                    if self.chance(0.4) {
                        return match self.rng.random_range(0..2) {
                            0 => format!("Given the {gene} alteration, {mid} was started on {r}."),
                            _ => format!("{s} was started on targeted therapy with {r}."),
                        };
                    }
                }
                let course = self.case.profile.spec.course;
                if matches!(course, Course::AcuteLeukemia | Course::Myeloma) && self.chance(0.4) {
                    return format!("Induction therapy with {r} was given.");
                }
                let cycles = self.cycles(step.therapy);
                let line =
                    self.pick(&[" as first-line therapy", " as first-line treatment", "", ""]);
                match self.rng.random_range(0..6) {
                    0 => format!("First-line treatment with {r} was initiated."),
                    1 => format!("{s} received {r}{cycles}."),
                    2 => format!("Systemic therapy with {r} was begun."),
                    3 => format!("Treatment consisted of {r}{cycles}."),
                    4 => {
                        let year = self.rng.random_range(2017..2025);
                        format!("{s} began {r}{line} in {year}.")
                    }
                    _ => format!("{s} was started on {r}{line}."),
                }
            }
            Setting::LaterLine => {
                let months = self.rng.random_range(3..25);
                let after = self
                    .pick(&[" at {n} months", " after {n} months", ""])
                    .replace("{n}", &months.to_string());
                let heme = !matches!(self.case.profile.spec.course, Course::Solid | Course::Brain);
                if is_procedure {
                    return format!(
                        "{} {mid} underwent {r}.",
                        if heme {
                            "At relapse,"
                        } else {
                            "After progression,"
                        }
                    );
                }
                match self.rng.random_range(0..5) {
                    0 => format!("After progression{after}, therapy was changed to {r}."),
                    1 => format!("{s} progressed{after} and was switched to {r}."),
                    2 => format!("Second-line {r} was started at progression."),
                    3 if heme => format!("At relapse, {mid} received {r}."),
                    _ => format!("Following disease progression, {mid} received {r}."),
                }
            }
            Setting::Maintenance => match self.rng.random_range(0..3) {
                0 => format!("{s} continues on maintenance {r}."),
                1 => format!("Maintenance {r} was started."),
                _ => format!("{s} is now on maintenance {r}."),
            },
            Setting::Radiosurgery => match self.rng.random_range(0..3) {
                0 => format!("Brain metastases were treated with {r}."),
                1 => format!("{s} received {r} to the brain lesions."),
                _ => format!("Intracranial disease was managed with {r}."),
            },
            Setting::BoneRadiotherapy => match self.rng.random_range(0..2) {
                0 => format!("{s} received {r} to painful bone lesions."),
                _ => format!("{} was given to a painful spinal lesion.", capitalize(&r)),
            },
        }
    }

    /// Two steps a note usually tells in one breath, or `None` to tell them apart.
    fn paired_sentence(&mut self, first: &Step, second: &Step) -> Option<String> {
        let s = self.subject;
        match (first.setting, second.setting) {
            (Setting::Neoadjuvant, Setting::Surgery) if self.chance(0.6) => {
                let r = regimen_text(self.rng, first.therapy);
                let p = regimen_text(self.rng, second.therapy);
                Some(format!("{s} received neoadjuvant {r} followed by {p}."))
            }
            (Setting::Surgery, Setting::Adjuvant) if self.chance(0.4) => {
                let p = regimen_text(self.rng, first.therapy);
                let r = regimen_text(self.rng, second.therapy);
                let adjuvant = if matches!(second.therapy, Therapy::Procedure(_)) {
                    ""
                } else {
                    "adjuvant "
                };
                Some(format!("{s} underwent {p} followed by {adjuvant}{r}."))
            }
            (Setting::Chemoradiation, Setting::Consolidation)
                if self.chance(0.5) && matches!(second.therapy, Therapy::Drugs { .. }) =>
            {
                let r = regimen_text(self.rng, first.therapy);
                let c = regimen_text(self.rng, second.therapy);
                let kind = if self.case.profile.spec.course == Course::Brain {
                    "adjuvant"
                } else {
                    "consolidation"
                };
                Some(format!(
                    "{s} received radiotherapy with concurrent {r}, followed by {kind} {c}."
                ))
            }
            _ => None,
        }
    }

    /// The treatment course and the response, in order.
    pub(super) fn course_sentences(&mut self) -> Vec<String> {
        let steps = &self.case.steps;
        let mut sentences = Vec::new();
        let mut i = 0;
        while i < steps.len() {
            if i + 1 < steps.len() {
                if let Some(both) = self.paired_sentence(&steps[i], &steps[i + 1]) {
                    sentences.push(both);
                    i += 2;
                    continue;
                }
            }
            sentences.push(self.step_sentence(&steps[i]));
            i += 1;
        }
        let Some(response) = self.case.response else {
            sentences.push(
                self.pick(&[
                    "Response assessment is pending.",
                    "First restaging is planned after cycle 3.",
                    "It is too early to assess response.",
                    "Restaging scans are scheduled next month.",
                ])
                .to_string(),
            );
            return sentences;
        };
        let mergeable = matches!(
            response.frame,
            Frame::Imaging | Frame::Labs | Frame::Pet | Frame::Marrow
        );
        if mergeable && self.chance(0.25) {
            if let Some(last) = sentences.pop() {
                let stem = last.trim_end_matches('.');
                let stated = with_article(response.answer);
                // One does not "achieve" progression.
                let bad_news =
                    ["progressive disease", "refractory disease"].contains(&response.answer);
                let merged = match if bad_news {
                    0
                } else {
                    self.rng.random_range(0..3)
                } {
                    0 => format!("{stem}, with {stated} at first restaging."),
                    1 => format!("{stem} and achieved {stated}."),
                    _ => format!("{stem}, achieving {stated}."),
                };
                sentences.push(merged);
                return sentences;
            }
        }
        if self.chance(0.2) {
            let label = self.pick(&[
                "Best response",
                "Overall assessment",
                "Response assessment",
                "Current status",
            ]);
            sentences.push(format!("{label}: {}.", response.answer));
            return sentences;
        }
        let n = self.rng.random_range(2..7);
        let weeks = self.rng.random_range(6..13);
        let months = self.rng.random_range(3..25);
        let brain = self.case.profile.spec.course == Course::Brain;
        let frame = match response.frame {
            Frame::Imaging if brain => self.pick(&[
                "Follow-up MRI",
                "Brain MRI at {w} weeks",
                "The most recent MRI",
            ]),
            Frame::Imaging => self.pick(&[
                "Restaging CT after {n} cycles",
                "Interval imaging at {w} weeks",
                "Follow-up PET/CT",
                "The most recent CT of the chest, abdomen and pelvis",
                "Repeat imaging",
            ]),
            Frame::Pathology => self.pick(&[
                "Surgical pathology",
                "Final pathology at resection",
                "The resection specimen",
            ]),
            Frame::Surveillance => self.pick(&[
                "Surveillance imaging at {m} months",
                "Follow-up at {m} months",
                "The latest surveillance visit",
                "Clinical and imaging follow-up",
            ]),
            Frame::Marrow => self.pick(&[
                "Day 28 bone marrow biopsy",
                "Repeat bone marrow examination",
                "End-of-induction marrow evaluation",
            ]),
            Frame::Pet => self.pick(&[
                "End-of-treatment PET/CT",
                "Interim PET/CT after {n} cycles",
                "Restaging PET/CT",
            ]),
            Frame::Molecular => self.pick(&[
                "Quantitative PCR at {m} months",
                "Molecular monitoring at 12 months",
                "BCR-ABL1 monitoring at {m} months",
            ]),
            Frame::Labs if self.case.profile.spec.course == Course::Myeloma => self.pick(&[
                "Serum protein electrophoresis after {n} cycles",
                "Restaging labs after {n} cycles",
                "Repeat myeloma labs",
            ]),
            Frame::Labs => self.pick(&[
                "Restaging at {m} months",
                "Reassessment after {n} cycles",
                "Follow-up evaluation",
            ]),
        };
        let frame = frame
            .replace("{n}", &n.to_string())
            .replace("{w}", &weeks.to_string())
            .replace("{m}", &months.to_string());
        let finding = self.pick(response.findings);
        sentences.push(format!("{frame} {finding}."));
        sentences
    }
}
