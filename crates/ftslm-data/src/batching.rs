//! Turning tokenized examples into rectangular batches with as little padding as
//! possible.
//!
//! Three strategies, compared by [`padding_fraction`]:
//! - pad to longest: batches in data order, each padded to its longest example
//!   (what the Python baseline does);
//! - length grouping: like transformers' `group_by_length`, examples are
//!   shuffled, cut into mega-batches, sorted by length inside each, so a batch
//!   holds examples of similar length;
//! - packing: several examples share one row, each with its own segment id and
//!   positions restarting at 0, so attention never crosses an example boundary.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::example::TokenizedExample;

/// Segment id of padding; real examples are numbered from 1 within a row.
pub const PAD_SEGMENT: u32 = 0;

/// How examples are laid out in rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchStrategy {
    PadToLongest,
    LengthGrouped,
    Packed,
}

/// A `[rows, seq_len]` batch, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub rows: usize,
    pub seq_len: usize,
    pub input_ids: Vec<u32>,
    pub answer_mask: Vec<bool>,
    /// Position of each token inside its own example (restarts at 0 per segment).
    pub position_ids: Vec<u32>,
    /// Which example of the row a token belongs to; [`PAD_SEGMENT`] for padding.
    pub segment_ids: Vec<u32>,
    /// The examples (indices into the input slice) in each row, in order.
    pub examples: Vec<Vec<usize>>,
}

impl Batch {
    /// Tokens that belong to an example (not padding).
    pub fn real_tokens(&self) -> usize {
        self.segment_ids
            .iter()
            .filter(|&&s| s != PAD_SEGMENT)
            .count()
    }

    pub fn slots(&self) -> usize {
        self.rows * self.seq_len
    }

    fn from_rows(rows: Vec<Vec<usize>>, examples: &[TokenizedExample], pad_id: u32) -> Batch {
        let seq_len = rows
            .iter()
            .map(|r| r.iter().map(|&i| examples[i].len()).sum::<usize>())
            .max()
            .unwrap_or(0);
        let n = rows.len() * seq_len;
        let mut b = Batch {
            rows: rows.len(),
            seq_len,
            input_ids: vec![pad_id; n],
            answer_mask: vec![false; n],
            position_ids: vec![0; n],
            segment_ids: vec![PAD_SEGMENT; n],
            examples: rows,
        };
        for (r, row) in b.examples.iter().enumerate() {
            let mut at = r * seq_len;
            for (s, &i) in row.iter().enumerate() {
                let ex = &examples[i];
                let span = at..at + ex.len();
                b.input_ids[span.clone()].copy_from_slice(&ex.input_ids);
                b.answer_mask[span.clone()].copy_from_slice(&ex.answer_mask);
                for (p, pos) in b.position_ids[span.clone()].iter_mut().enumerate() {
                    *pos = p as u32;
                }
                b.segment_ids[span].fill(s as u32 + 1);
                at += ex.len();
            }
        }
        b
    }
}

/// Share of the batches' slots that are padding.
pub fn padding_fraction(batches: &[Batch]) -> f64 {
    let slots: usize = batches.iter().map(Batch::slots).sum();
    if slots == 0 {
        return 0.0;
    }
    let real: usize = batches.iter().map(Batch::real_tokens).sum();
    (slots - real) as f64 / slots as f64
}

/// Lays out `examples` into batches of `batch_size` rows with the given strategy.
///
/// `max_seq_length` is the row capacity for packing (examples are already
/// truncated to it); `seed` drives the shuffles of length grouping and packing.
pub fn make_batches(
    examples: &[TokenizedExample],
    strategy: BatchStrategy,
    batch_size: usize,
    max_seq_length: usize,
    pad_id: u32,
    seed: u64,
) -> Vec<Batch> {
    let batch_size = batch_size.max(1);
    let rows: Vec<Vec<usize>> = match strategy {
        BatchStrategy::PadToLongest => (0..examples.len()).map(|i| vec![i]).collect(),
        BatchStrategy::LengthGrouped => length_grouped_order(examples, batch_size, seed)
            .into_iter()
            .map(|i| vec![i])
            .collect(),
        BatchStrategy::Packed => pack_rows(examples, max_seq_length, seed),
    };
    let mut batches: Vec<Batch> = rows
        .chunks(batch_size)
        .map(|chunk| Batch::from_rows(chunk.to_vec(), examples, pad_id))
        .collect();
    if strategy == BatchStrategy::Packed {
        // Rows were packed fullest-first; shuffle whole batches so training does
        // not see all the long examples first.
        batches.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9));
    }
    batches
}

/// transformers' `LengthGroupedSampler` idea: random mega-batches of 50 batches,
/// each sorted longest first, so padding stays low but order stays random.
fn length_grouped_order(examples: &[TokenizedExample], batch_size: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mega = batch_size * 50;
    for chunk in order.chunks_mut(mega) {
        chunk.sort_by_key(|&i| std::cmp::Reverse(examples[i].len()));
    }
    order
}

/// First-fit decreasing: longest examples first, each into the first row with
/// room. An example longer than the capacity gets a row of its own.
fn pack_rows(examples: &[TokenizedExample], capacity: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    // Shuffle before the stable sort so equal lengths are not in file order.
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order.sort_by_key(|&i| std::cmp::Reverse(examples[i].len()));
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    for i in order {
        let len = examples[i].len();
        match free.iter().position(|&f| f >= len) {
            Some(r) => {
                rows[r].push(i);
                free[r] -= len;
            }
            None => {
                rows.push(vec![i]);
                free.push(capacity.saturating_sub(len));
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(len: usize, first: u32) -> TokenizedExample {
        TokenizedExample {
            input_ids: (first..first + len as u32).collect(),
            answer_mask: (0..len).map(|i| i >= len / 2).collect(),
            prompt_len: len / 2,
            truncated_tokens: 0,
        }
    }

    #[test]
    fn pad_to_longest_keeps_order_and_pads() {
        let xs = vec![ex(3, 0), ex(5, 10), ex(2, 20)];
        let b = make_batches(&xs, BatchStrategy::PadToLongest, 2, 8, 999, 0);
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].rows, b[0].seq_len), (2, 5));
        assert_eq!(&b[0].input_ids[..5], &[0, 1, 2, 999, 999]);
        assert_eq!(&b[0].segment_ids[..5], &[1, 1, 1, 0, 0]);
        assert!(!b[0].answer_mask[3]);
        assert_eq!(padding_fraction(&b[..1]), 2.0 / 10.0);
    }

    #[test]
    fn packing_restarts_positions_and_never_overflows() {
        let xs: Vec<_> = [5, 3, 4, 2, 6, 1]
            .iter()
            .enumerate()
            .map(|(i, &l)| ex(l, i as u32 * 100))
            .collect();
        let b = make_batches(&xs, BatchStrategy::Packed, 2, 7, 0, 1);
        let mut seen: Vec<usize> = b
            .iter()
            .flat_map(|b| b.examples.iter().flatten().copied())
            .collect();
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2, 3, 4, 5], "every example exactly once");
        for batch in &b {
            assert!(batch.seq_len <= 7);
            for r in 0..batch.rows {
                let row = r * batch.seq_len..(r + 1) * batch.seq_len;
                let segs = &batch.segment_ids[row.clone()];
                let pos = &batch.position_ids[row];
                for t in 0..segs.len() {
                    if segs[t] != PAD_SEGMENT && (t == 0 || segs[t - 1] != segs[t]) {
                        assert_eq!(pos[t], 0, "segment starts at position 0");
                    } else if segs[t] != PAD_SEGMENT {
                        assert_eq!(pos[t], pos[t - 1] + 1);
                    }
                }
            }
        }
        // 21 tokens in rows of 7: first-fit decreasing fills three rows exactly.
        assert_eq!(padding_fraction(&b), 0.0);
    }

    #[test]
    fn length_grouping_pads_less_than_data_order() {
        let xs: Vec<_> = (0..200).map(|i| ex(10 + (i * 37 % 90), 0)).collect();
        let plain = padding_fraction(&make_batches(
            &xs,
            BatchStrategy::PadToLongest,
            4,
            128,
            0,
            3,
        ));
        let grouped = padding_fraction(&make_batches(
            &xs,
            BatchStrategy::LengthGrouped,
            4,
            128,
            0,
            3,
        ));
        assert!(grouped < plain / 2.0, "grouped {grouped} vs plain {plain}");
    }
}
