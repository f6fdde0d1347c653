//! A Hugging Face `tokenizers::Tokenizer` rebuilt from a GGUF file's
//! `tokenizer.ggml.*` metadata, for GGUF models that come without a
//! tokenizer.json. Only byte-level BPE (`tokenizer.ggml.model = "gpt2"`) is
//! rebuilt; its pre-tokenizer is chosen by llama.cpp's `tokenizer.ggml.pre`
//! name, reproducing the tokenizer.json the model was converted from.

use std::path::Path;

use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, PostProcessorWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
    Tokenizer,
};

use crate::error::{ModelError, Result};
use crate::loader::gguf::{GgufFile, MetadataReader};

/// llama.cpp's token types (`llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Llama 3's split (its tokenizer.json `Split` pattern): letters with one
/// leading non-letter, numbers in groups of up to three, punctuation runs,
/// newlines, and whitespace not followed by a word.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

#[derive(Debug, Clone)]
pub struct GgufTokenizer {
    pub tokenizer: Tokenizer,
    /// `tokenizer.chat_template` (Jinja), if the file has one.
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    /// Whether encoding prepends the BOS token (`tokenizer.ggml.add_bos_token`).
    pub add_bos_token: bool,
}

impl GgufTokenizer {
    pub fn from_gguf(path: &Path) -> Result<Self> {
        Self::from_file(&GgufFile::open(path)?)
    }

    pub fn from_file(file: &GgufFile) -> Result<Self> {
        let m = file.reader();
        let fail = |problem: String| ModelError::Gguf {
            path: file.path().to_path_buf(),
            problem,
        };
        let model = m.str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(ModelError::Unsupported {
                path: file.path().to_path_buf(),
                problem: format!(
                    "tokenizer.ggml.model is `{model}`; only byte-level BPE (`gpt2`) tokenizers are rebuilt from GGUF metadata — put the model's tokenizer.json beside the file"
                ),
            });
        }
        let tokens = required(
            &m,
            "tokenizer.ggml.tokens",
            m.opt_strings("tokenizer.ggml.tokens"),
        )?;
        let merges = required(
            &m,
            "tokenizer.ggml.merges",
            m.opt_strings("tokenizer.ggml.merges"),
        )?;
        let token_types = m.opt_ints("tokenizer.ggml.token_type")?;
        if let Some(types) = &token_types {
            if types.len() != tokens.len() {
                return Err(m.error(
                    "tokenizer.ggml.token_type",
                    format!("has {} entries for {} tokens", types.len(), tokens.len()),
                ));
            }
        }

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.to_string(), id as u32))
            .collect();
        let merges = merges
            .iter()
            .enumerate()
            .map(|(i, merge)| {
                split_merge(merge).ok_or_else(|| {
                    m.error(
                        "tokenizer.ggml.merges",
                        format!("[{i}] `{merge}` is not two tokens separated by a space"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| {
                fail(format!(
                    "cannot build the BPE model from tokenizer.ggml.tokens/merges: {e}"
                ))
            })?;

        let mut tokenizer = Tokenizer::new(bpe);
        let pre = m.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer(pre, &m)?));
        tokenizer.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));

        // Control tokens are special (never split, skipped when decoding);
        // user-defined ones are matched whole but decoded as text.
        let (mut special, mut user) = (Vec::new(), Vec::new());
        for (id, token) in tokens.iter().enumerate() {
            match token_types.as_ref().map_or(1, |t| t[id]) {
                TOKEN_TYPE_CONTROL => special.push(AddedToken::from(token.to_string(), true)),
                TOKEN_TYPE_USER_DEFINED => user.push(AddedToken::from(token.to_string(), false)),
                _ => {}
            }
        }
        tokenizer.add_special_tokens(&special);
        tokenizer.add_tokens(&user);

        let token_at = |key: &str| -> Result<(Option<u32>, Option<String>)> {
            let Some(id) = m.opt_u32(key)? else {
                return Ok((None, None));
            };
            match tokens.get(id as usize) {
                Some(token) => Ok((Some(id), Some(token.to_string()))),
                None => Err(m.error(
                    key,
                    format!("({id}) is outside the {} tokens", tokens.len()),
                )),
            }
        };
        let (bos_token_id, bos_token) = token_at("tokenizer.ggml.bos_token_id")?;
        let (eos_token_id, eos_token) = token_at("tokenizer.ggml.eos_token_id")?;
        let add_bos_token = m.opt_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(false);
        let post = match (&bos_token, bos_token_id) {
            (Some(bos), Some(id)) if add_bos_token => {
                let processor = TemplateProcessing::builder()
                    .try_single(format!("{bos} $A"))
                    .and_then(|b| b.try_pair(format!("{bos} $A:0 {bos}:1 $B:1")))
                    .map_err(|e| fail(format!("cannot prepend BOS `{bos}`: {e}")))?
                    .special_tokens(vec![(bos.clone(), id)])
                    .build()
                    .map_err(|e| fail(format!("cannot prepend BOS `{bos}`: {e}")))?;
                PostProcessorWrapper::Template(processor)
            }
            _ => PostProcessorWrapper::ByteLevel(ByteLevel::default()),
        };
        tokenizer.with_post_processor(Some(post));

        Ok(GgufTokenizer {
            tokenizer,
            chat_template: m.opt_str("tokenizer.chat_template")?.map(str::to_string),
            bos_token,
            eos_token,
            bos_token_id,
            eos_token_id,
            add_bos_token,
        })
    }
}

fn required<'a, T>(m: &MetadataReader<'a>, key: &str, value: Result<Option<T>>) -> Result<T> {
    value?.ok_or_else(|| m.error(key, "is missing".into()))
}

/// "Ġ t" → ("Ġ", "t"). Byte-level tokens never contain a plain space, but a
/// merge may start with one in other vocabularies, so the split point is the
/// first space after the first character (as llama.cpp splits).
fn split_merge(merge: &str) -> Option<(String, String)> {
    let first = merge.chars().next()?.len_utf8();
    let at = first + merge[first..].find(' ')?;
    let (left, right) = (&merge[..at], &merge[at + 1..]);
    (!right.is_empty()).then(|| (left.to_string(), right.to_string()))
}

/// The pre-tokenizer of the tokenizer.json that llama.cpp's `pre` name stands for.
fn pre_tokenizer(pre: &str, m: &MetadataReader) -> Result<PreTokenizerWrapper> {
    let byte_level =
        |use_regex: bool| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, use_regex));
    match pre {
        // SmolLM2 / StarCoder: every digit alone, then GPT-2's split.
        "smollm" | "starcoder" => Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            byte_level(true),
        ]))),
        "llama-bpe" | "llama3" | "default" => {
            let split = Split::new(
                SplitPattern::Regex(LLAMA3_SPLIT.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| m.error("tokenizer.ggml.pre", format!("cannot compile Llama 3's split: {e}")))?;
            Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Split(split),
                byte_level(false),
            ])))
        }
        "gpt-2" | "gpt2" => Ok(byte_level(true)),
        other => Err(m.error(
            "tokenizer.ggml.pre",
            format!(
                "is `{other}`, a pre-tokenizer not rebuilt here (smollm, llama-bpe, default and gpt-2 are); put the model's tokenizer.json beside the file"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_split_at_the_first_inner_space() {
        assert_eq!(split_merge("Ġ t"), Some(("Ġ".into(), "t".into())));
        assert_eq!(split_merge("  x"), Some((" ".into(), "x".into())));
        assert_eq!(split_merge("ab"), None);
        assert_eq!(split_merge("a "), None);
    }
}
