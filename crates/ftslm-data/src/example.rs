//! A rendered, tokenized training example: what batching and the trainer consume.

/// Token ids of one conversation and which of them the loss is taken on.
///
/// `answer_mask[i]` is true when token `i` is a target: the assistant's answer
/// and its end-of-turn token. Everything else (system prompt, user turn,
/// template scaffolding, padding) is masked, as transformers' `-100` labels do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedExample {
    pub input_ids: Vec<u32>,
    pub answer_mask: Vec<bool>,
    /// Number of tokens up to and including the generation prompt.
    pub prompt_len: usize,
    /// Narrative tokens removed to fit `max_seq_length` (0 when it fit).
    pub truncated_tokens: usize,
}

impl TokenizedExample {
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// Number of tokens that carry loss.
    pub fn answer_tokens(&self) -> usize {
        self.answer_mask.iter().filter(|&&m| m).count()
    }

    /// transformers-style labels: the token id where it carries loss, else -100.
    pub fn labels(&self) -> Vec<i64> {
        self.input_ids
            .iter()
            .zip(&self.answer_mask)
            .map(|(&id, &m)| if m { id as i64 } else { -100 })
            .collect()
    }
}
