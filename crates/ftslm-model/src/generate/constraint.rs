//! What may come next: a constraint narrows each step's choice to a set of
//! tokens (a JSON grammar, for extraction) and follows the tokens chosen.

/// Allowed next tokens, one bit per vocabulary id (bit `i % 32` of word
/// `i / 32`), the layout grammar engines hand out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMask {
    words: Vec<u32>,
}

impl TokenMask {
    pub fn from_words(words: Vec<u32>) -> Self {
        TokenMask { words }
    }

    pub fn from_allowed(vocab: usize, allowed: impl IntoIterator<Item = u32>) -> Self {
        let mut words = vec![0u32; vocab.div_ceil(32)];
        for t in allowed {
            if let Some(w) = words.get_mut(t as usize / 32) {
                *w |= 1 << (t % 32);
            }
        }
        TokenMask { words }
    }

    pub fn allows(&self, token: u32) -> bool {
        self.words
            .get(token as usize / 32)
            .is_some_and(|w| w & (1 << (token % 32)) != 0)
    }

    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// A constraint on one sequence's continuation. Errors are plain messages:
/// they end that sequence (reported with its output), not the batch.
pub trait TokenConstraint {
    /// The tokens allowed next, or `None` when the constraint is complete
    /// and generation must stop.
    fn next_mask(&mut self) -> Result<Option<TokenMask>, String>;

    /// Follows a chosen token.
    fn consume(&mut self, token: u32) -> Result<(), String>;

    /// Tokens the constraint leaves no choice about, already followed; the
    /// decoder appends them without sampling (one forward pass for all).
    fn forced(&mut self) -> Result<Vec<u32>, String> {
        Ok(Vec::new())
    }
}
