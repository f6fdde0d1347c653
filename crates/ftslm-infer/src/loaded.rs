//! The model a user runs on text: base (in its stored precision, or NF4 on
//! request), an optional PEFT adapter applied unmerged, and the prompt
//! tokenizer with the task the adapter was trained for, so inference sees
//! exactly the training prompt.

use std::path::Path;

use candle_core::Device;
use ftslm_data::synth::INSTRUCTION;
use ftslm_data::task::sha256_hex;
use ftslm_data::tokenize::PromptTokenizer;
use ftslm_data::{TrainedTask, MEDICAL_IE_FIELDS, SYSTEM_PROMPT, TASK_FILE};
use ftslm_model::{ComputePolicy, LlamaModel, LoraAdapter};
use ftslm_source::{FrozenBase, ModelSource};

use crate::error::InferenceError;

pub struct LoadedModel {
    pub model: LlamaModel,
    pub adapter: Option<LoraAdapter>,
    pub tokenizer: PromptTokenizer,
    pub base: FrozenBase,
    pub task: InferenceTask,
    /// How generation and the answer loss compute (precision, threads).
    pub policy: ComputePolicy,
    /// What the caller should tell the user: which prompt was chosen and why.
    pub notes: Vec<String>,
}

/// What the caller says about the task; `None` takes the adapter's
/// `ftslm_task.json`, else the medical task's defaults.
#[derive(Debug, Clone, Default)]
pub struct TaskChoice {
    pub system_prompt: Option<String>,
    pub instruction: Option<String>,
    /// Use the adapter with a base other than the one it was trained on.
    pub allow_other_base: bool,
}

/// The prompt and schema inference uses: the training run's, unless the
/// caller overrides them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceTask {
    pub system_prompt: String,
    pub instruction: String,
    /// The answer object's fields, which constrained decoding allows.
    pub fields: Vec<String>,
    /// The adapter's task record, when it has one.
    pub recorded: Option<TrainedTask>,
}

impl InferenceTask {
    /// Chooses each part: the caller's, else the record's, else the default,
    /// with a note where the caller overrides what the adapter was trained with.
    fn choose(recorded: Option<TrainedTask>, choice: &TaskChoice, notes: &mut Vec<String>) -> Self {
        let mut pick = |given: &Option<String>,
                        trained: Option<&str>,
                        default: &str,
                        what: &str| match (given, trained) {
            (Some(g), Some(t)) if g != t => {
                notes.push(format!(
                    "{what} differs from the one the adapter was trained with \
                         ({TASK_FILE}); using the one given"
                ));
                g.clone()
            }
            (Some(g), _) => g.clone(),
            (None, Some(t)) => t.to_string(),
            (None, None) => default.to_string(),
        };
        let r = recorded.as_ref();
        let system_prompt = pick(
            &choice.system_prompt,
            r.map(|t| t.system_prompt.as_str()),
            SYSTEM_PROMPT,
            "--system-prompt",
        );
        let instruction = pick(
            &choice.instruction,
            r.and_then(|t| t.instruction.as_deref()),
            INSTRUCTION,
            "--instruction",
        );
        let fields = match r {
            Some(t) if !t.fields.is_empty() => t.fields.clone(),
            _ => MEDICAL_IE_FIELDS.iter().map(|f| f.to_string()).collect(),
        };
        InferenceTask {
            system_prompt,
            instruction,
            fields,
            recorded,
        }
    }
}

impl LoadedModel {
    /// Loads `model` (directory or .gguf) with `adapter`; `nf4` re-quantizes
    /// the frozen projections to NF4 instead of keeping their stored precision.
    /// The adapter's task record sets the prompt and fields (`choice`
    /// overrides it), and a base other than the one it names is refused
    /// before the weights are loaded. `policy` says how it computes.
    pub fn load(
        model: &Path,
        adapter: Option<&Path>,
        nf4: bool,
        choice: &TaskChoice,
        policy: ComputePolicy,
    ) -> Result<Self, InferenceError> {
        let source = ModelSource::locate(model)?;
        let mut notes = Vec::new();
        let recorded = match adapter {
            Some(dir) => TrainedTask::read(dir)?,
            None => None,
        };
        match (adapter, &recorded) {
            (Some(dir), Some(task)) if !choice.allow_other_base => {
                check_base(&source, dir, task)?;
            }
            (Some(dir), None) => notes.push(format!(
                "{} has no {TASK_FILE} (not trained by this ftslm), so the medical task's \
                 prompt and fields are used; --system-prompt and --instruction set others",
                dir.display()
            )),
            _ => {}
        }
        let task = InferenceTask::choose(recorded, choice, &mut notes);
        let base = if nf4 {
            FrozenBase::Nf4 { double_quant: true }
        } else if source.is_gguf() && !small_gguf(source.weights()) {
            FrozenBase::Gguf
        } else {
            FrozenBase::F32
        };
        let (model_weights, _notes) = source.load(base, &Device::Cpu)?;
        let adapter = match adapter {
            Some(dir) => Some(
                LoraAdapter::load_peft(dir, model_weights.config(), &Device::Cpu).map_err(
                    |source| InferenceError::Adapter {
                        adapter: dir.to_path_buf(),
                        model: model.to_path_buf(),
                        source: Box::new(source),
                    },
                )?,
            ),
            None => None,
        };
        let tokenizer = source.prompt_tokenizer(&task.system_prompt)?;
        if let Some(recorded) = &task.recorded {
            if sha256_hex(tokenizer.template().source().as_bytes()) != recorded.chat_template_sha256
            {
                notes.push(format!(
                    "the chat template of {} is not the one the adapter was trained with; \
                     prompts will be rendered differently from training",
                    model.display()
                ));
            }
        }
        Ok(LoadedModel {
            model: model_weights,
            adapter,
            tokenizer,
            base,
            task,
            policy,
            notes,
        })
    }

    pub fn stop_ids(&self) -> Vec<u32> {
        self.tokenizer.end_of_turn_ids().to_vec()
    }
}

/// Refuses an adapter on a base whose weights differ from the ones it was
/// trained on: LoRA deltas on other weights give plausible-looking nonsense.
fn check_base(
    source: &ModelSource,
    adapter: &Path,
    task: &TrainedTask,
) -> Result<(), InferenceError> {
    let have = source.identity()?;
    if have.weights_sha256 != task.base_model.weights_sha256 {
        return Err(InferenceError::OtherBase {
            adapter: adapter.to_path_buf(),
            trained_on: task.base_model.name_or_path.clone(),
            trained_digest: short(&task.base_model.weights_sha256).to_string(),
            model: source.path.clone(),
            digest: short(&have.weights_sha256).to_string(),
        });
    }
    Ok(())
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// GGUF files up to this size are dequantized once at load for inference:
/// the values are exactly the stored ones (the block decoders are the same),
/// but decoding then reads plain f32 instead of decoding every block at every
/// step — several times faster for one token at a time. SmolLM2-135M's Q4_1
/// file (~90 MB) becomes ~540 MB; an 8B file stays in its blocks.
const DEQUANTIZE_GGUF_BELOW_BYTES: u64 = 256 << 20;

fn small_gguf(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() < DEQUANTIZE_GGUF_BELOW_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftslm_data::task::{BaseModelIdentity, TASK_FORMAT};

    fn recorded() -> TrainedTask {
        TrainedTask {
            format: TASK_FORMAT,
            system_prompt: "Catalogue cars.".into(),
            instruction: Some("List the make.".into()),
            fields: vec!["make".into()],
            chat_template_sha256: String::new(),
            max_seq_length: 256,
            base_model: BaseModelIdentity {
                name_or_path: "m".into(),
                weights_sha256: String::new(),
            },
        }
    }

    #[test]
    fn the_record_sets_the_task_and_a_choice_overrides_it_with_a_note() {
        let mut notes = Vec::new();
        let task = InferenceTask::choose(Some(recorded()), &TaskChoice::default(), &mut notes);
        assert_eq!(task.system_prompt, "Catalogue cars.");
        assert_eq!(task.instruction, "List the make.");
        assert_eq!(task.fields, ["make"]);
        assert!(notes.is_empty(), "{notes:?}");

        let choice = TaskChoice {
            system_prompt: Some("Be brief.".into()),
            instruction: Some("List the make.".into()),
            allow_other_base: false,
        };
        let task = InferenceTask::choose(Some(recorded()), &choice, &mut notes);
        assert_eq!(task.system_prompt, "Be brief.");
        // Only the prompt that differs is noted.
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("--system-prompt differs"), "{notes:?}");

        let task = InferenceTask::choose(None, &TaskChoice::default(), &mut notes);
        assert_eq!(task.system_prompt, SYSTEM_PROMPT);
        assert_eq!(task.instruction, INSTRUCTION);
        assert_eq!(task.fields, MEDICAL_IE_FIELDS);
    }
}
