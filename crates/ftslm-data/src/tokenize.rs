//! Records to token ids with the answer mask: the one path training and
//! inference share.
//!
//! A record is rendered twice through the model's chat template: the prompt
//! (system + user turns, ending in the generation prompt) and the full
//! conversation (with the assistant's answer). The prompt must be a prefix of
//! the full conversation both as text and as token ids; the loss then covers
//! exactly what the model must produce after the generation prompt: the answer
//! and the end-of-turn token that stops generation. Template scaffolding after
//! that token (ChatML's trailing `"\n"`) is not a target, because at inference
//! generation stops at the end-of-turn token and never produces it.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use tokenizers::Tokenizer;

use crate::chat_template::{ChatTemplate, TemplateError};
use crate::example::TokenizedExample;
use crate::record::{ChatMessage, Record, SYSTEM_PROMPT};

mod control_text;

/// What can go wrong turning a record into token ids.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(
        "the text contains `{token}`, a control token of this model, and the chat template \
         from {origin} changes message text, so it cannot be kept as plain text; remove it"
    )]
    ControlTokenInText { token: String, origin: String },
    #[error("{}: not a model directory or .gguf file; pass a Hugging Face model directory (tokenizer.json, tokenizer_config.json) or a .gguf file", path.display())]
    ModelNotFound { path: PathBuf },
    #[error("model directory {} has no tokenizer.json; download it together with the model weights", dir.display())]
    MissingTokenizerJson { dir: PathBuf },
    #[error("{}: reading the tokenizer from GGUF metadata is not supported yet; put the original model's tokenizer.json (and tokenizer_config.json for its chat template) beside the .gguf file", gguf.display())]
    GgufWithoutTokenizerJson { gguf: PathBuf },
    #[error("cannot load tokenizer {}: {message}", path.display())]
    LoadTokenizer { path: PathBuf, message: String },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    GenerationConfig { path: PathBuf, reason: String },
    #[error("end-of-turn token {token} of the chat template from {origin} is not in the tokenizer's vocabulary; the template and tokenizer.json come from different models")]
    UnknownEndOfTurnToken { token: String, origin: String },
    #[error("the chat template from {origin} names no eos_token and no generation_config.json eos_token_id was given, so the end of an answer cannot be marked; set eos_token in tokenizer_config.json")]
    NoEndOfTurnToken { origin: String },
    #[error("tokenizer failed: {message}")]
    Tokenizer { message: String },
    #[error(
        "record has no assistant answer to train on; end a chat record with an assistant message"
    )]
    NoAnswer,
    #[error("the chat template from {origin} renders the prompt (with add_generation_prompt) differently from the start of the full conversation, so the answer cannot be separated from the prompt; use a template whose generation prompt is the start of the assistant turn")]
    PromptTextNotPrefix { origin: String },
    #[error("with the chat template from {origin}, the prompt's tokens are not a prefix of the full conversation's tokens (first difference at token {position}); the generation prompt must end on a token boundary")]
    PromptIdsNotPrefix { origin: String, position: usize },
    #[error("with the chat template from {origin}, no end-of-turn token (ids {ids:?}) follows the answer; the template must close the assistant turn")]
    MissingEndOfTurn { origin: String, ids: Vec<u32> },
    #[error("example needs {needed} tokens even with its narrative removed ({answer_tokens} of them answer), more than max_seq_length {max_seq_length}; raise max_seq_length or shorten the instruction or answer")]
    TooLong {
        needed: usize,
        answer_tokens: usize,
        max_seq_length: usize,
    },
}

/// The two renderings of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedExample {
    /// Messages without the answer, ending in the generation prompt.
    pub prompt_text: String,
    /// The whole conversation including the answer; starts with `prompt_text`.
    pub full_text: String,
}

/// A tokenizer, the chat template it belongs to, the system prompt, and the
/// token ids that end an assistant turn.
#[derive(Debug, Clone)]
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    template: ChatTemplate,
    system_prompt: String,
    end_of_turn_ids: Vec<u32>,
    /// The text of the vocabulary's special tokens (`<|im_end|>`, …).
    special_texts: Vec<String>,
    /// Their distinct first characters.
    special_starts: Vec<char>,
    /// The tokenizer with special tokens read as text, for message contents
    /// that contain one (built the first time one does).
    as_text: std::sync::OnceLock<Tokenizer>,
}

impl PromptTokenizer {
    /// Loads the tokenizer of a model directory or of a `.gguf` file (from
    /// tokenizer.json / tokenizer_config.json / generation_config.json beside
    /// it), with the training system prompt [`SYSTEM_PROMPT`].
    pub fn from_model_path(path: &Path) -> Result<Self, TokenizeError> {
        let is_gguf = path.is_file()
            && path
                .extension()
                .is_some_and(|ext| ext.eq_ignore_ascii_case("gguf"));
        let dir = if path.is_dir() {
            path.to_path_buf()
        } else if is_gguf {
            match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            }
        } else {
            return Err(TokenizeError::ModelNotFound {
                path: path.to_path_buf(),
            });
        };

        let tokenizer_json = dir.join("tokenizer.json");
        if !tokenizer_json.is_file() {
            return Err(if is_gguf {
                TokenizeError::GgufWithoutTokenizerJson {
                    gguf: path.to_path_buf(),
                }
            } else {
                TokenizeError::MissingTokenizerJson { dir }
            });
        }
        let tokenizer =
            Tokenizer::from_file(&tokenizer_json).map_err(|err| TokenizeError::LoadTokenizer {
                path: tokenizer_json.clone(),
                message: err.to_string(),
            })?;

        let config = dir.join("tokenizer_config.json");
        let template = if config.is_file() {
            ChatTemplate::from_tokenizer_config(&config)?
        } else {
            ChatTemplate::llama31()
        };

        let generation_config = dir.join("generation_config.json");
        let extra_ids = if generation_config.is_file() {
            read_eos_token_ids(&generation_config)?
        } else {
            Vec::new()
        };
        PromptTokenizer::with_end_of_turn_ids(tokenizer, template, SYSTEM_PROMPT, &extra_ids)
    }

    /// Builds one from parts; the end of a turn is the template's end-of-turn
    /// token.
    pub fn new(
        tokenizer: Tokenizer,
        template: ChatTemplate,
        system_prompt: impl Into<String>,
    ) -> Result<Self, TokenizeError> {
        PromptTokenizer::with_end_of_turn_ids(tokenizer, template, system_prompt, &[])
    }

    /// Like [`new`](Self::new), with further ids that also end a turn (a
    /// generation_config.json `eos_token_id`).
    pub fn with_end_of_turn_ids(
        mut tokenizer: Tokenizer,
        template: ChatTemplate,
        system_prompt: impl Into<String>,
        extra_ids: &[u32],
    ) -> Result<Self, TokenizeError> {
        // A tokenizer.json may carry truncation or padding settings; either would
        // silently change the ids, and lengths are managed here instead.
        tokenizer
            .with_truncation(None)
            .map_err(|err| TokenizeError::Tokenizer {
                message: err.to_string(),
            })?;
        tokenizer.with_padding(None);

        let mut end_of_turn_ids = Vec::new();
        if let Some(token) = template.end_of_turn_token() {
            let id = tokenizer.token_to_id(token).ok_or_else(|| {
                TokenizeError::UnknownEndOfTurnToken {
                    token: token.to_string(),
                    origin: template.origin().to_string(),
                }
            })?;
            end_of_turn_ids.push(id);
        }
        for &id in extra_ids {
            if !end_of_turn_ids.contains(&id) {
                end_of_turn_ids.push(id);
            }
        }
        if end_of_turn_ids.is_empty() {
            return Err(TokenizeError::NoEndOfTurnToken {
                origin: template.origin().to_string(),
            });
        }
        let mut special_texts: Vec<String> = tokenizer
            .get_added_tokens_decoder()
            .into_values()
            .filter(|t| t.special && !t.content.is_empty())
            .map(|t| t.content)
            .collect();
        special_texts.sort();
        let mut special_starts: Vec<char> = special_texts
            .iter()
            .filter_map(|s| s.chars().next())
            .collect();
        special_starts.sort_unstable();
        special_starts.dedup();
        Ok(PromptTokenizer {
            tokenizer,
            template,
            system_prompt: system_prompt.into(),
            end_of_turn_ids,
            special_texts,
            special_starts,
            as_text: std::sync::OnceLock::new(),
        })
    }

    /// Renders the prompt and the full conversation of a record.
    pub fn render(&self, record: &Record) -> Result<RenderedExample, TokenizeError> {
        if let Record::Chat(messages) = record {
            if messages.last().is_none_or(|m| m.role != "assistant") {
                return Err(TokenizeError::NoAnswer);
            }
        }
        let prompt_text = self
            .template
            .render(&record.messages(&self.system_prompt, false), true)?;
        let full_text = self
            .template
            .render(&record.messages(&self.system_prompt, true), false)?;
        if !full_text.starts_with(&prompt_text) {
            return Err(TokenizeError::PromptTextNotPrefix {
                origin: self.template.origin().to_string(),
            });
        }
        Ok(RenderedExample {
            prompt_text,
            full_text,
        })
    }

    /// Token ids and answer mask of a record, at most `max_seq_length` long.
    ///
    /// An example that does not fit loses tokens from the end of its narrative
    /// (the instruction record's input, or a chat record's last user message);
    /// it is re-rendered each time so the template stays intact. The answer is
    /// never cut: if even an empty narrative does not fit, it is an error.
    pub fn encode(
        &self,
        record: &Record,
        max_seq_length: usize,
    ) -> Result<TokenizedExample, TokenizeError> {
        // A narrative far beyond what can fit is cut in characters first:
        // tokenizing a 50 MB record whole took 7 GB and 80 s, only for all
        // but its first max_seq_length tokens to be dropped.
        if let Some(cut) = narrative(record).and_then(|n| char_cut(n, max_seq_length)) {
            let mut example = self.encode(&with_narrative(record, cut), max_seq_length)?;
            example.truncated_tokens = example.truncated_tokens.max(1);
            return Ok(example);
        }
        let full = self.encode_whole(record)?;
        if full.len() <= max_seq_length {
            return Ok(full);
        }
        let too_long = |example: &TokenizedExample| TokenizeError::TooLong {
            needed: example.len(),
            answer_tokens: example.answer_tokens(),
            max_seq_length,
        };
        let Some(narrative) = narrative(record) else {
            return Err(too_long(&full));
        };
        let empty = self.encode_whole(&with_narrative(record, ""))?;
        if empty.len() > max_seq_length {
            return Err(too_long(&empty));
        }

        let encoding =
            self.tokenizer
                .encode(narrative, false)
                .map_err(|err| TokenizeError::Tokenizer {
                    message: err.to_string(),
                })?;
        let starts: Vec<usize> = encoding.get_offsets().iter().map(|o| o.0).collect();
        let narrative_tokens = starts.len();
        // The narrative keeping its first `keep` tokens: cut where token `keep`
        // starts, on a character boundary (byte-level tokens can split one).
        let prefix = |keep: usize| -> &str {
            if keep == 0 {
                return "";
            }
            let mut cut = starts.get(keep).copied().unwrap_or(narrative.len());
            cut = cut.min(narrative.len());
            while !narrative.is_char_boundary(cut) {
                cut -= 1;
            }
            &narrative[..cut]
        };

        // Search the largest `keep` that fits. Tokens at the cut can merge
        // differently in context, so the length is only nearly linear in
        // `keep`: step by the measured excess first, then bisect.
        let (mut fits, mut best) = (0usize, empty);
        let mut too_big = narrative_tokens;
        let mut guess = narrative_tokens.saturating_sub(full.len() - max_seq_length);
        let mut steps = 0;
        while too_big - fits > 1 {
            let keep = if steps < 4 {
                guess.clamp(fits + 1, too_big - 1)
            } else {
                fits + (too_big - fits) / 2
            };
            steps += 1;
            let example = self.encode_whole(&with_narrative(record, prefix(keep)))?;
            if example.len() <= max_seq_length {
                guess = keep + (max_seq_length - example.len()).max(1);
                fits = keep;
                best = example;
            } else {
                guess = keep.saturating_sub(example.len() - max_seq_length);
                too_big = keep;
            }
        }
        best.truncated_tokens = narrative_tokens - fits;
        Ok(best)
    }

    /// The prompt ids of a record for inference: everything up to and
    /// including the generation prompt, exactly as in training.
    pub fn encode_prompt(&self, record: &Record) -> Result<Vec<u32>, TokenizeError> {
        self.encode_prompt_messages(&record.messages(&self.system_prompt, false))
    }

    /// The prompt ids of a conversation (the caller supplies any system turn).
    pub fn encode_prompt_messages(
        &self,
        messages: &[ChatMessage],
    ) -> Result<Vec<u32>, TokenizeError> {
        self.encode_messages(messages, true)
    }

    /// Text of token ids, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizeError> {
        self.tokenizer
            .decode(ids, false)
            .map_err(|err| TokenizeError::Tokenizer {
                message: err.to_string(),
            })
    }

    /// The vocabulary entry of each id (e.g. `Ġpatient`), for per-token display.
    pub fn token_strings(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&id| {
                self.tokenizer
                    .id_to_token(id)
                    .unwrap_or_else(|| format!("<unknown id {id}>"))
            })
            .collect()
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// The id that fills padding slots: the first end-of-turn id. Training,
    /// the bench and `data stats` share this rule; the engine strips padding
    /// before computing, so the id never reaches the model.
    pub fn pad_id(&self) -> u32 {
        self.end_of_turn_ids.first().copied().unwrap_or(0)
    }

    pub fn system_prompt(&self) -> &str {
        &self.system_prompt
    }

    /// Ids that end an assistant turn: the template's end-of-turn token first,
    /// then generation_config.json's `eos_token_id`s.
    pub fn end_of_turn_ids(&self) -> &[u32] {
        &self.end_of_turn_ids
    }

    /// Ids of a rendered text. Special tokens are not added: the template
    /// already writes them.
    fn encode_text(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        self.tokenizer
            .encode_fast(text, false)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|err| TokenizeError::Tokenizer {
                message: err.to_string(),
            })
    }

    /// The record without any length limit.
    fn encode_whole(&self, record: &Record) -> Result<TokenizedExample, TokenizeError> {
        let rendered = self.render(record)?;
        let prompt_ids = self.encode_rendered(
            &record.messages(&self.system_prompt, false),
            true,
            &rendered.prompt_text,
        )?;
        let input_ids = self.encode_rendered(
            &record.messages(&self.system_prompt, true),
            false,
            &rendered.full_text,
        )?;
        if !input_ids.starts_with(&prompt_ids) {
            let position = prompt_ids
                .iter()
                .zip(&input_ids)
                .position(|(a, b)| a != b)
                .unwrap_or(input_ids.len().min(prompt_ids.len()));
            return Err(TokenizeError::PromptIdsNotPrefix {
                origin: self.template.origin().to_string(),
                position,
            });
        }
        let prompt_len = prompt_ids.len();
        let end_of_turn = input_ids[prompt_len..]
            .iter()
            .position(|id| self.end_of_turn_ids.contains(id))
            .map(|offset| prompt_len + offset)
            .ok_or_else(|| TokenizeError::MissingEndOfTurn {
                origin: self.template.origin().to_string(),
                ids: self.end_of_turn_ids.clone(),
            })?;
        let answer_mask = (0..input_ids.len())
            .map(|i| i >= prompt_len && i <= end_of_turn)
            .collect();
        Ok(TokenizedExample {
            input_ids,
            answer_mask,
            prompt_len,
            truncated_tokens: 0,
        })
    }
}

/// The text truncation may shorten: an instruction record's input, or a chat
/// record's last user message.
/// Characters per token beyond which text cannot fit whatever it holds:
/// real text runs 3–5 characters a token. Inputs are cut (training) or
/// refused (inference) above `max_seq_length` times this, before tokenizing.
pub const MAX_CHARS_PER_TOKEN: usize = 16;

/// The prefix of `text` within `max_seq_length`'s character budget, where
/// `text` is longer than it; None when it fits.
pub fn char_cut(text: &str, max_seq_length: usize) -> Option<&str> {
    let budget = max_seq_length.saturating_mul(MAX_CHARS_PER_TOKEN);
    text.char_indices().nth(budget).map(|(at, _)| &text[..at])
}

/// The narrative of a record that [`PromptTokenizer::encode`] cuts before
/// tokenizing, with its length in characters; None when it fits.
pub fn overlong_narrative(record: &Record, max_seq_length: usize) -> Option<usize> {
    let n = narrative(record)?;
    char_cut(n, max_seq_length).map(|_| n.chars().count())
}

fn narrative(record: &Record) -> Option<&str> {
    match record {
        Record::Instruction(r) => Some(&r.input),
        Record::Chat(messages) => messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.content.as_str()),
    }
}

fn with_narrative(record: &Record, text: &str) -> Record {
    match record {
        Record::Instruction(r) => {
            let mut r = r.clone();
            r.input = text.to_string();
            Record::Instruction(r)
        }
        Record::Chat(messages) => {
            let mut messages = messages.clone();
            if let Some(m) = messages.iter_mut().rev().find(|m| m.role == "user") {
                m.content = text.to_string();
            }
            Record::Chat(messages)
        }
    }
}

/// `eos_token_id` of a generation_config.json: an id, a list of ids, or absent.
fn read_eos_token_ids(path: &Path) -> Result<Vec<u32>, TokenizeError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenizeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let config: Json =
        serde_json::from_str(&text).map_err(|err| TokenizeError::GenerationConfig {
            path: path.to_path_buf(),
            reason: format!("not valid JSON ({err}); fix or re-download it"),
        })?;
    let bad = || TokenizeError::GenerationConfig {
        path: path.to_path_buf(),
        reason: "`eos_token_id` must be a token id or a list of token ids".into(),
    };
    let as_id = |v: &Json| v.as_u64().and_then(|id| u32::try_from(id).ok());
    match config.get("eos_token_id") {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(items)) => items.iter().map(|v| as_id(v).ok_or_else(bad)).collect(),
        Some(value) => as_id(value).map(|id| vec![id]).ok_or_else(bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eos_token_id_may_be_an_id_a_list_or_absent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("generation_config.json");
        for (text, expected) in [
            (r#"{"eos_token_id": 2}"#, Some(vec![2])),
            (
                r#"{"eos_token_id": [128001, 128009]}"#,
                Some(vec![128001, 128009]),
            ),
            (r#"{"bos_token_id": 1}"#, Some(vec![])),
            (r#"{"eos_token_id": "2"}"#, None),
            (r#"{"eos_token_id": [-1]}"#, None),
        ] {
            std::fs::write(&path, text).unwrap();
            let got = read_eos_token_ids(&path);
            match expected {
                Some(ids) => assert_eq!(got.unwrap(), ids, "{text}"),
                None => assert!(
                    got.unwrap_err().to_string().contains("eos_token_id"),
                    "{text}"
                ),
            }
        }
    }

    #[test]
    fn narrative_of_a_chat_record_is_its_last_user_message() {
        let record = Record::Chat(vec![
            ChatMessage::new("user", "first"),
            ChatMessage::new("assistant", "a"),
            ChatMessage::new("user", "second"),
            ChatMessage::new("assistant", "b"),
        ]);
        assert_eq!(narrative(&record), Some("second"));
        let Record::Chat(shortened) = with_narrative(&record, "sec") else {
            panic!("kind changed");
        };
        assert_eq!(shortened[0].content, "first");
        assert_eq!(shortened[2].content, "sec");
    }
}
