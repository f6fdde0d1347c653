//! Choosing the next token from the logits: greedy (the default, and what
//! the goldens use), or temperature / top-k / top-p sampling from a seeded
//! generator so that a `--seed` reproduces a run.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::generate::constraint::TokenMask;

/// How to pick each next token.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampling {
    Greedy,
    Random {
        temperature: f32,
        /// Keep only the k most likely tokens.
        top_k: Option<usize>,
        /// Keep the smallest set of most likely tokens whose mass reaches p.
        top_p: Option<f32>,
        seed: u64,
    },
}

impl Sampling {
    /// transformers' convention: temperature 0 (or none) means greedy.
    pub fn from_flags(
        temperature: Option<f32>,
        top_k: Option<usize>,
        top_p: Option<f32>,
        seed: Option<u64>,
    ) -> Sampling {
        match temperature {
            Some(t) if t > 0.0 => Sampling::Random {
                temperature: t,
                top_k,
                top_p,
                seed: seed.unwrap_or(0),
            },
            _ => Sampling::Greedy,
        }
    }

    /// A problem with the settings, phrased for the flag that set it.
    pub fn problem(&self) -> Option<String> {
        let Sampling::Random {
            temperature,
            top_k,
            top_p,
            ..
        } = self
        else {
            return None;
        };
        if !temperature.is_finite() {
            return Some(format!(
                "--temperature {temperature} is not a number; use e.g. 0.7, or 0 for greedy"
            ));
        }
        if *top_k == Some(0) {
            return Some("--top-k 0 would allow no token; use 1 or more, or leave it out".into());
        }
        match top_p {
            Some(p) if !(*p > 0.0 && *p <= 1.0) => {
                Some(format!("--top-p {p} is outside (0, 1]; use e.g. 0.9"))
            }
            _ => None,
        }
    }
}

/// Draws tokens as [`Sampling`] says; one per sequence so that batching
/// does not change what a seeded sequence produces.
#[derive(Debug)]
pub struct Sampler {
    sampling: Sampling,
    rng: ChaCha8Rng,
}

impl Sampler {
    pub fn new(sampling: Sampling) -> Self {
        let seed = match &sampling {
            Sampling::Random { seed, .. } => *seed,
            Sampling::Greedy => 0,
        };
        Sampler {
            sampling,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The next token among those `mask` allows (all when `None`); `None`
    /// when the mask allows nothing in the model's vocabulary.
    pub fn pick(&mut self, logits: &[f32], mask: Option<&TokenMask>) -> Option<u32> {
        let allowed = |i: usize| mask.is_none_or(|m| m.allows(i as u32));
        match &self.sampling {
            Sampling::Greedy => greedy(logits, allowed),
            Sampling::Random {
                temperature,
                top_k,
                top_p,
                ..
            } => {
                let mut candidates: Vec<(u32, f32)> = logits
                    .iter()
                    .enumerate()
                    .filter(|&(i, l)| allowed(i) && l.is_finite())
                    .map(|(i, &l)| (i as u32, l / temperature))
                    .collect();
                if candidates.is_empty() {
                    return None;
                }
                candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
                if let Some(k) = top_k {
                    candidates.truncate((*k).max(1));
                }
                let max = candidates[0].1;
                let mut probs: Vec<f32> = candidates.iter().map(|c| (c.1 - max).exp()).collect();
                let total: f32 = probs.iter().sum();
                probs.iter_mut().for_each(|p| *p /= total);
                if let Some(p) = top_p {
                    // Keep tokens until the mass before them reaches p: the
                    // most likely token always stays.
                    let mut mass = 0.0;
                    let keep = probs
                        .iter()
                        .take_while(|&&q| {
                            let before = mass;
                            mass += q;
                            before < *p
                        })
                        .count();
                    probs.truncate(keep.max(1));
                }
                let total: f32 = probs.iter().sum();
                let mut draw = self.rng.random::<f32>() * total;
                for (i, q) in probs.iter().enumerate() {
                    if draw < *q {
                        return Some(candidates[i].0);
                    }
                    draw -= q;
                }
                Some(candidates[probs.len() - 1].0)
            }
        }
    }
}

/// The first index of the largest allowed logit, as torch.argmax breaks ties.
fn greedy(logits: &[f32], allowed: impl Fn(usize) -> bool) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &l) in logits.iter().enumerate() {
        if allowed(i) && !l.is_nan() && best.is_none_or(|(_, b)| l > b) {
            best = Some((i, l));
        }
    }
    best.map(|(i, _)| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum_among_allowed_tokens() {
        let logits = [0.5, 3.0, 3.0, -1.0];
        let mut s = Sampler::new(Sampling::Greedy);
        assert_eq!(s.pick(&logits, None), Some(1));
        let mask = TokenMask::from_allowed(4, [0, 3]);
        assert_eq!(s.pick(&logits, Some(&mask)), Some(0));
        assert_eq!(s.pick(&logits, Some(&TokenMask::from_allowed(4, []))), None);
    }

    #[test]
    fn top_k_one_is_greedy_and_seeds_reproduce() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let mut k1 = Sampler::new(Sampling::from_flags(Some(1.5), Some(1), None, Some(3)));
        let mut g = Sampler::new(Sampling::Greedy);
        assert_eq!(k1.pick(&logits, None), g.pick(&logits, None));

        let draw = |seed| {
            let mut s = Sampler::new(Sampling::from_flags(
                Some(1.0),
                None,
                Some(0.95),
                Some(seed),
            ));
            (0..20)
                .map(|_| s.pick(&logits, None).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_p_keeps_only_the_head_of_the_distribution() {
        // token 2 carries ~0.9 of the mass: with p = 0.5 nothing else is drawn
        let logits = [0.0, 0.0, 5.0, 0.0];
        let mut s = Sampler::new(Sampling::from_flags(Some(1.0), None, Some(0.5), Some(1)));
        assert!((0..200).all(|_| s.pick(&logits, None) == Some(2)));
        let mut wide = Sampler::new(Sampling::from_flags(Some(1.0), None, Some(1.0), Some(1)));
        assert!((0..400).any(|_| wide.pick(&logits, None) != Some(2)));
    }

    #[test]
    fn bad_flags_are_named() {
        let p = Sampling::from_flags(Some(0.7), None, Some(1.5), None).problem();
        assert!(p.unwrap().contains("--top-p 1.5"));
        assert!(Sampling::from_flags(Some(0.7), Some(0), None, None)
            .problem()
            .unwrap()
            .contains("--top-k"));
        assert_eq!(
            Sampling::from_flags(Some(0.0), None, None, None),
            Sampling::Greedy
        );
    }
}
