//! Where the training micro-batches come from, epoch by epoch.
//!
//! Each epoch's order is drawn from a ChaCha8 generator seeded with the run's
//! seed on a stream numbered by the epoch, so the order of epoch `e` depends on
//! nothing else: a resumed run rebuilds it from `(seed, epoch)` and skips to
//! the saved position.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::engine::EngineError;

/// Micro-batches for each epoch. An implementation may re-batch every epoch
/// (length grouping or packing with a new shuffle) as long as the result is a
/// pure function of `epoch` and the numbers drawn from `rng`.
pub trait EpochSource {
    type Batch;

    /// Micro-batches in every epoch; sizes the schedule before training starts.
    fn batches_per_epoch(&self) -> usize;

    /// The micro-batches of `epoch` (from 0) in training order.
    fn epoch_batches(
        &self,
        epoch: u64,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Self::Batch>, EngineError>;
}

/// The generator for one epoch's order.
pub fn epoch_rng(seed: u64, epoch: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    rng
}

/// Fixed micro-batches whose order is reshuffled every epoch (transformers'
/// RandomSampler, at micro-batch granularity).
#[derive(Debug, Clone)]
pub struct ShuffledBatches<B> {
    batches: Vec<B>,
}

impl<B> ShuffledBatches<B> {
    pub fn new(batches: Vec<B>) -> Self {
        ShuffledBatches { batches }
    }
}

impl<B: Clone> EpochSource for ShuffledBatches<B> {
    type Batch = B;

    fn batches_per_epoch(&self) -> usize {
        self.batches.len()
    }

    fn epoch_batches(&self, _epoch: u64, rng: &mut ChaCha8Rng) -> Result<Vec<B>, EngineError> {
        let mut order: Vec<usize> = (0..self.batches.len()).collect();
        order.shuffle(rng);
        Ok(order.into_iter().map(|i| self.batches[i].clone()).collect())
    }
}

/// Fixed micro-batches in the same given order every epoch (the bench's
/// file order, as the Python baseline reads its records).
#[derive(Debug, Clone)]
pub struct InOrderBatches<B> {
    batches: Vec<B>,
}

impl<B> InOrderBatches<B> {
    pub fn new(batches: Vec<B>) -> Self {
        InOrderBatches { batches }
    }
}

impl<B: Clone> EpochSource for InOrderBatches<B> {
    type Batch = B;

    fn batches_per_epoch(&self) -> usize {
        self.batches.len()
    }

    fn epoch_batches(&self, _epoch: u64, _rng: &mut ChaCha8Rng) -> Result<Vec<B>, EngineError> {
        Ok(self.batches.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_depends_only_on_seed_and_epoch() {
        let src = ShuffledBatches::new((0..20).collect::<Vec<u32>>());
        let a = src.epoch_batches(1, &mut epoch_rng(7, 1)).unwrap();
        let b = src.epoch_batches(1, &mut epoch_rng(7, 1)).unwrap();
        let other_epoch = src.epoch_batches(2, &mut epoch_rng(7, 2)).unwrap();
        let other_seed = src.epoch_batches(1, &mut epoch_rng(8, 1)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, other_epoch);
        assert_ne!(a, other_seed);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>(), "a permutation");
    }
}
