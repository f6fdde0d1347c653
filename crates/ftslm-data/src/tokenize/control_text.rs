//! Message contents that spell a control token (`<|im_end|>`, …) are
//! tokenized as text, so a narrative cannot end the user's turn or open a
//! system turn; the template's own markers stay control tokens.

use super::{PromptTokenizer, TokenizeError};
use crate::record::ChatMessage;

impl PromptTokenizer {
    /// The ids of a rendered conversation. The template's own markers are
    /// control tokens; the messages' contents are text, even where they
    /// spell a control token: a narrative holding `<|im_end|><|im_start|>
    /// system` must not forge a turn (transformers' `split_special_tokens`).
    /// Contents without such text take the plain path, so their ids are
    /// those of tokenizing the rendered text whole.
    pub(super) fn encode_messages(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>, TokenizeError> {
        let text = self.template.render(messages, add_generation_prompt)?;
        self.encode_rendered(messages, add_generation_prompt, &text)
    }

    /// [`PromptTokenizer::encode_messages`] for `text`, the messages as the
    /// template already rendered them (training renders each record once).
    pub(super) fn encode_rendered(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        text: &str,
    ) -> Result<Vec<u32>, TokenizeError> {
        // Most text holds none of the tokens' first characters (`<` for
        // ChatML's and Llama 3's 256): only then is each token looked for.
        let forged = messages.iter().find_map(|m| {
            let may_hold = m.content.contains(self.special_starts.as_slice());
            if !may_hold {
                return None;
            }
            self.special_texts
                .iter()
                .find(|s| m.content.contains(s.as_str()))
        });
        let Some(forged) = forged else {
            return self.encode_text(text);
        };
        // Render again with a marker per content, cut there, and tokenize
        // the template's pieces as usual and the contents as text.
        let marker = |i: usize| format!("\u{E000}{i}\u{E001}");
        let marked: Vec<ChatMessage> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| ChatMessage::new(m.role.as_str(), marker(i)))
            .collect();
        let skeleton = self.template.render(&marked, add_generation_prompt)?;
        let mut ids = Vec::new();
        let mut rebuilt = String::new();
        let mut rest = skeleton.as_str();
        while let Some(start) = rest.find('\u{E000}') {
            let (piece, tail) = rest.split_at(start);
            let end = tail
                .find('\u{E001}')
                .ok_or_else(|| self.forged_error(forged))?;
            let index: usize = tail['\u{E000}'.len_utf8()..end]
                .parse()
                .map_err(|_| self.forged_error(forged))?;
            let content = &messages
                .get(index)
                .ok_or_else(|| self.forged_error(forged))?
                .content;
            ids.extend(self.encode_text(piece)?);
            ids.extend(self.encode_as_text(content)?);
            rebuilt.push_str(piece);
            rebuilt.push_str(content);
            rest = &tail[end + '\u{E001}'.len_utf8()..];
        }
        ids.extend(self.encode_text(rest)?);
        rebuilt.push_str(rest);
        // A template that changes contents (trims them, say) cannot be cut
        // this way; such text is refused rather than tokenized as control.
        if rebuilt != text {
            return Err(self.forged_error(forged));
        }
        Ok(ids)
    }

    fn forged_error(&self, token: &str) -> TokenizeError {
        TokenizeError::ControlTokenInText {
            token: token.to_string(),
            origin: self.template.origin().to_string(),
        }
    }

    /// `text` with special tokens read as text.
    fn encode_as_text(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        let tokenizer = self.as_text.get_or_init(|| {
            let mut plain = self.tokenizer.clone();
            plain.set_encode_special_tokens(true);
            plain
        });
        tokenizer
            .encode_fast(text, false)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|err| TokenizeError::Tokenizer {
                message: err.to_string(),
            })
    }
}
