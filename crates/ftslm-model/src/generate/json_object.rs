//! Constrained decoding of an extraction: the answer must be a JSON object
//! with exactly the task's keys, in order, each a string or null, laid out as
//! Python's `json.dumps` writes it (`", "` between items, `": "` after keys)
//! because that is the text the model was trained on. The grammar engine is
//! llguidance (the one llama.cpp and vLLM use): it compiles the JSON schema
//! against the tokenizer's vocabulary and hands out a token mask per step,
//! plus the tokens the grammar forces (keys, quotes, separators), which the
//! decoder appends without sampling.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{token_bytes_from_tokenizer_json, Matcher, ParserFactory};
use serde_json::{json, Map, Value};
use tokenizers::Tokenizer;

use crate::error::{ModelError, Result};
use crate::generate::constraint::{TokenConstraint, TokenMask};

/// The longest value the grammar lets a field have. An untrained model can
/// repeat itself inside a string forever; the cap closes the string instead,
/// so the answer stays a JSON object. The medical-IE data's longest value is
/// 150 characters.
pub const MAX_VALUE_CHARS: usize = 200;

/// The tokenizer as llguidance sees it: every token's bytes in a trie, and
/// the Hugging Face tokenizer for canonical tokenization of forced text.
struct VocabularyEnv {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for VocabularyEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        // Invalid UTF-8 runs fall back to the trie's greedy split; a string
        // the tokenizer rejects yields no tokens, which llguidance then
        // treats as "nothing forced" rather than a crash.
        self.trie.tokenize_with_greedy_fallback(s, |text| {
            self.tokenizer
                .encode(text, false)
                .map(|e| e.get_ids().to_vec())
                .unwrap_or_default()
        })
    }
}

/// Builds constraints for one tokenizer; the vocabulary is compiled once
/// (about a second for 49k tokens) and shared by every record.
pub struct JsonObjectGrammar {
    factory: ParserFactory,
}

impl std::fmt::Debug for JsonObjectGrammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonObjectGrammar").finish_non_exhaustive()
    }
}

impl JsonObjectGrammar {
    /// `end_of_turn` is the token that closes the assistant's turn.
    pub fn new(tokenizer: &Tokenizer, end_of_turn: u32) -> Result<Self> {
        let fail = |what: &str, e: String| {
            ModelError::Input(format!(
                "cannot build the JSON grammar's vocabulary ({what}): {e}"
            ))
        };
        let json_text = tokenizer
            .to_string(false)
            .map_err(|e| fail("serialising the tokenizer", e.to_string()))?;
        let json: Value = serde_json::from_str(&json_text)
            .map_err(|e| fail("reading the tokenizer", e.to_string()))?;
        let bytes = token_bytes_from_tokenizer_json(&json)
            .map_err(|e| fail("token bytes", e.to_string()))?;
        let mut info = TokRxInfo::new(bytes.len() as u32, end_of_turn);
        info.tok_end_of_turn = Some(end_of_turn);
        let trie = TokTrie::from(&info, &bytes);
        let env: TokEnv = Arc::new(VocabularyEnv {
            trie,
            tokenizer: tokenizer.clone(),
        });
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| fail("parser factory", e.to_string()))?;
        factory.quiet();
        Ok(JsonObjectGrammar { factory })
    }

    /// The schema: an object with exactly `keys`, in order, each a string
    /// (of at most [`MAX_VALUE_CHARS`]) or null.
    pub fn schema(keys: &[String]) -> Value {
        let properties: Map<String, Value> = keys
            .iter()
            .map(|k| {
                let value = json!({"type": ["string", "null"], "maxLength": MAX_VALUE_CHARS});
                (k.clone(), value)
            })
            .collect();
        json!({
            "x-guidance": {
                "whitespace_flexible": false,
                "item_separator": ", ",
                "key_separator": ": "
            },
            "type": "object",
            "properties": properties,
            "required": keys,
            "additionalProperties": false
        })
    }

    /// A fresh constraint for one record's answer.
    pub fn constraint(&self, keys: &[String]) -> Result<JsonObjectConstraint> {
        let grammar = TopLevelGrammar::from_json_schema(Self::schema(keys));
        let matcher = Matcher::new(self.factory.create_parser(grammar));
        if let Some(e) = matcher.get_error() {
            return Err(ModelError::Input(format!(
                "the JSON schema for keys {keys:?} does not compile: {e}"
            )));
        }
        Ok(JsonObjectConstraint { matcher })
    }
}

/// One answer's grammar state.
pub struct JsonObjectConstraint {
    matcher: Matcher,
}

impl TokenConstraint for JsonObjectConstraint {
    fn next_mask(&mut self) -> std::result::Result<Option<TokenMask>, String> {
        if self.matcher.is_stopped() {
            return match self.matcher.get_error() {
                Some(e) => Err(e),
                None => Ok(None),
            };
        }
        let mask = self.matcher.compute_mask().map_err(|e| e.to_string())?;
        Ok(Some(TokenMask::from_words(mask.as_slice().to_vec())))
    }

    fn consume(&mut self, token: u32) -> std::result::Result<(), String> {
        self.matcher.consume_token(token).map_err(|e| e.to_string())
    }

    fn forced(&mut self) -> std::result::Result<Vec<u32>, String> {
        if self.matcher.is_stopped() {
            return Ok(Vec::new());
        }
        let tokens = self.matcher.consume_ff_tokens();
        match self.matcher.get_error() {
            Some(e) => Err(e),
            None => Ok(tokens),
        }
    }
}
