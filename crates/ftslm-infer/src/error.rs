//! What inference can fail on, each naming the file or record and the fix.

use std::path::PathBuf;

use ftslm_data::task::TaskError;
use ftslm_data::tokenize::TokenizeError;
use ftslm_model::ModelError;
use ftslm_source::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error(transparent)]
    Source(#[from] SourceError),

    #[error(transparent)]
    Task(#[from] TaskError),

    #[error(transparent)]
    Model(#[from] ModelError),

    #[error(transparent)]
    Tokenize(#[from] TokenizeError),

    #[error("cannot load the adapter {} onto the model {}: {source}", adapter.display(), model.display())]
    Adapter {
        adapter: PathBuf,
        model: PathBuf,
        #[source]
        source: Box<ModelError>,
    },

    /// The adapter's task record names a base whose weights differ.
    #[error(
        "the adapter {} was trained on {trained_on} (weights sha256 {trained_digest}), but the \
         model {} has other weights (sha256 {digest}); pass the base it was trained on, or \
         allow another base (--allow-other-base) to use it anyway",
        adapter.display(),
        model.display()
    )]
    OtherBase {
        adapter: PathBuf,
        trained_on: String,
        trained_digest: String,
        model: PathBuf,
        digest: String,
    },

    #[error(
        "the tokenizer has no end-of-turn token, so a constrained answer could not end; \
         decode unconstrained (--unconstrained)"
    )]
    NoEndOfTurn,

    #[error(
        "line {line}: the answer is not a JSON object, so there are no fields to score — \
         evaluation needs extraction records"
    )]
    NotExtraction { line: usize },

    #[error(
        "the prompt is {tokens} tokens, more than the {limit} the model reads \
         (max_seq_length); shorten it"
    )]
    PromptTooLong { tokens: usize, limit: usize },
}
