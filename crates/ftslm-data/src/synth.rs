//! The deterministic synthetic data generator behind `ftslm data synth`: short
//! oncology notes across some forty cancers, each with the seven-field answer of
//! the medical-IE task, so the pipeline can be trained and demonstrated without
//! the original data set.
//!
//! A case is drawn first (`case.rs`), then written as a note (`narrative.rs`,
//! `course_text.rs`) and as an answer (here), so the two always agree. Every
//! non-null answer value is stated in the note with all of its words; the note
//! varies everything around it. One `ChaCha8Rng` seeded from the user's seed
//! drives every choice over ordered tables, so a seed gives the same bytes on
//! every machine.

mod case;
mod course_text;
mod findings_text;
mod markers;
mod narrative;
mod phrasing;
mod responses;
mod tables_blood_brain;
mod tables_gu_gyn_skin;
mod tables_thoracic_gi;
mod vocabulary;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use ftslm_fs::write_atomic;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

use crate::record::{Answer, InstructionRecord, MEDICAL_IE_FIELDS};
use case::Case;
use phrasing::therapy_answer;
use vocabulary::{phrased, therapy, Pool, Profile, Therapy, Weighted};

/// The instruction every record of the medical-IE task carries.
pub const INSTRUCTION: &str = "Extract all cancer-related entities from the text.";

/// How many records to write and from which seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthSpec {
    pub train: usize,
    pub validation: usize,
    pub seed: u64,
}

impl Default for SynthSpec {
    /// The size of the original data set.
    fn default() -> Self {
        SynthSpec {
            train: 4500,
            validation: 500,
            seed: 42,
        }
    }
}

/// What `write_splits` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    pub train_path: PathBuf,
    pub validation_path: PathBuf,
    pub train: usize,
    pub validation: usize,
}

#[derive(thiserror::Error, Debug)]
pub enum SynthError {
    #[error("cannot create output directory {path}: {source}; check that its parent exists and is writable, or choose another --out")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}; check free disk space and write permission on its directory")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot move a finished file into place as {to}: {source}; check that {to} is not a directory and that its directory is writable")]
    Rename { to: PathBuf, source: std::io::Error },
    #[error("cannot encode a record for {path}: {source}; this is a bug in the generator, please report it")]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The parsed tables plus the few therapies every solid tumor shares.
pub(crate) struct Vocabulary {
    pub profiles: Pool<Profile>,
    pub radiosurgery: Therapy,
    pub bone_radiotherapy: Therapy,
    pub adjuvant_radiotherapy: Therapy,
}

impl Vocabulary {
    fn load() -> Vocabulary {
        let profiles = tables_thoracic_gi::PROFILES
            .iter()
            .chain(tables_gu_gyn_skin::PROFILES)
            .chain(tables_blood_brain::PROFILES)
            .map(|spec| Weighted {
                item: Profile::parse(spec),
                weight: spec.weight,
            })
            .collect();
        Vocabulary {
            profiles,
            radiosurgery: therapy("!stereotactic radiosurgery = stereotactic radiosurgery (SRS) = Gamma Knife stereotactic radiosurgery"),
            bone_radiotherapy: Therapy::Procedure(phrased("radiotherapy = palliative radiotherapy = external beam radiotherapy")),
            adjuvant_radiotherapy: Therapy::Procedure(phrased("radiotherapy = adjuvant radiotherapy = postoperative radiotherapy = radiotherapy to the tumor bed")),
        }
    }
}

/// The seven-field answer of a case, keys in the task's order.
fn answer(case: &Case) -> Map<String, Value> {
    let text = |parts: Vec<String>, separator: &str| -> Value {
        if parts.is_empty() {
            Value::Null
        } else {
            Value::String(parts.join(separator))
        }
    };
    let values = [
        Value::String(case.histology.answer.to_string()),
        case.stage
            .map_or(Value::Null, |s| Value::String(s.to_string())),
        text(
            case.alterations
                .iter()
                .map(|a| a.answer.to_string())
                .collect(),
            "; ",
        ),
        text(
            case.markers.iter().map(|m| m.answer.clone()).collect(),
            "; ",
        ),
        text(
            case.steps
                .iter()
                .map(|s| therapy_answer(s.therapy, s.setting == case::Setting::Chemoradiation))
                .collect(),
            "; ",
        ),
        case.response
            .map_or(Value::Null, |r| Value::String(r.answer.to_string())),
        text(case.sites.iter().map(|s| s.to_string()).collect(), ", "),
    ];
    MEDICAL_IE_FIELDS
        .iter()
        .map(|k| k.to_string())
        .zip(values)
        .collect()
}

/// After this many redraws in a row that repeat an earlier note, the next note
/// is told apart by a case number so that generation always terminates.
const MAX_REDRAWS: u32 = 64;

/// `n` records from one seed; inputs are all distinct.
pub fn generate(n: usize, seed: u64) -> Vec<InstructionRecord> {
    let vocabulary = Vocabulary::load();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Membership only; never iterated, so it cannot affect the output order.
    let mut seen: HashSet<String> = HashSet::with_capacity(n);
    let mut records = Vec::with_capacity(n);
    let mut redraws = 0;
    while records.len() < n {
        let Some(case) = Case::draw(&mut rng, &vocabulary) else {
            continue;
        };
        if case.steps.is_empty() {
            continue;
        }
        let mut input = narrative::Writer::new(&mut rng, &case).compose();
        if seen.contains(&input) {
            redraws += 1;
            if redraws < MAX_REDRAWS {
                continue;
            }
            input = format!("Case {}: {input}", records.len() + 1);
        }
        redraws = 0;
        seen.insert(input.clone());
        records.push(InstructionRecord {
            instruction: INSTRUCTION.to_string(),
            input,
            output: Answer::Fields(answer(&case)),
        });
    }
    records
}

/// Writes DIR/train.jsonl and DIR/validation.jsonl (creating DIR), one compact
/// JSON object per line, with no narrative shared between or within the two
/// files. Each file is written to a temporary file in DIR and renamed.
/// The files [`write_splits`] writes into its folder.
pub const SYNTH_TRAIN_FILE: &str = "train.jsonl";
pub const SYNTH_VALIDATION_FILE: &str = "validation.jsonl";

pub fn write_splits(dir: &Path, spec: &SynthSpec) -> Result<SynthSummary, SynthError> {
    fs::create_dir_all(dir).map_err(|source| SynthError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    // One stream for both splits keeps them disjoint, and training records come
    // first so the training file does not change with --validation.
    let records = generate(spec.train.saturating_add(spec.validation), spec.seed);
    let (train, validation) = records.split_at(spec.train.min(records.len()));
    let train_path = dir.join(SYNTH_TRAIN_FILE);
    let validation_path = dir.join(SYNTH_VALIDATION_FILE);
    write_jsonl_atomically(&train_path, train)?;
    write_jsonl_atomically(&validation_path, validation)?;
    Ok(SynthSummary {
        train_path,
        validation_path,
        train: train.len(),
        validation: validation.len(),
    })
}

fn write_jsonl_atomically(path: &Path, records: &[InstructionRecord]) -> Result<(), SynthError> {
    let mut text = String::new();
    for record in records {
        let line = serde_json::to_string(record).map_err(|source| SynthError::Encode {
            path: path.to_path_buf(),
            source,
        })?;
        text.push_str(&line);
        text.push('\n');
    }
    write_atomic(path, text.as_bytes()).map_err(|e| match e.action {
        "write" => SynthError::Write {
            path: e.path,
            source: e.source,
        },
        _ => SynthError::Rename {
            to: e.path,
            source: e.source,
        },
    })
}

#[cfg(test)]
mod tests;
