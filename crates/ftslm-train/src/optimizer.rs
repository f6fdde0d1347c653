//! AdamW as `torch.optim.AdamW` computes it (decoupled weight decay, bias
//! correction, eps added after the corrected square root), in f32 like torch
//! does for f32 parameters, with its state saved as safetensors.

use std::collections::{BTreeMap, HashMap};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::engine::ParamView;
use crate::error::TrainError;

/// Hyper-parameters, named like TrainingArguments' `adam_*` and `weight_decay`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// First and second moments of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Updates taken so far (torch keeps one per tensor; ours all move together).
    steps: u64,
    moments: BTreeMap<String, Moments>,
}

const FORMAT: &str = "ftslm-adamw-1";

impl AdamW {
    pub fn new(config: AdamWConfig) -> Self {
        AdamW {
            config,
            steps: 0,
            moments: BTreeMap::new(),
        }
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    pub fn moments(&self, name: &str) -> Option<&Moments> {
        self.moments.get(name)
    }

    /// One update of every tensor with its current gradient.
    pub fn step(&mut self, params: &mut [ParamView<'_>], lr: f64) -> Result<(), TrainError> {
        for p in params.iter() {
            if let Some(m) = self.moments.get(p.name) {
                if m.exp_avg.len() != p.value.len() || p.grad.len() != p.value.len() {
                    return Err(TrainError::ParameterShape {
                        name: p.name.to_string(),
                        expected: m.exp_avg.len(),
                        actual: p.value.len(),
                    });
                }
            }
        }
        self.steps += 1;
        let c = self.config;
        let t = self.steps as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        let (b1, b2, eps) = (c.beta1 as f32, c.beta2 as f32, c.eps as f32);
        let decay = (1.0 - lr * c.weight_decay) as f32;
        let step_size = (lr / bias1) as f32;
        let bias2_sqrt = bias2_sqrt as f32;
        for p in params.iter_mut() {
            let m = self
                .moments
                .entry(p.name.to_string())
                .or_insert_with(|| Moments {
                    exp_avg: vec![0.0; p.value.len()],
                    exp_avg_sq: vec![0.0; p.value.len()],
                });
            let values = p.value.iter_mut().zip(p.grad.iter());
            for ((x, &g), (ma, va)) in values.zip(m.exp_avg.iter_mut().zip(m.exp_avg_sq.iter_mut()))
            {
                *x *= decay;
                *ma = b1 * *ma + (1.0 - b1) * g;
                *va = b2 * *va + (1.0 - b2) * g * g;
                let denom = va.sqrt() / bias2_sqrt + eps;
                *x -= step_size * *ma / denom;
            }
        }
        Ok(())
    }

    /// The state as a safetensors file: `exp_avg.<name>` and `exp_avg_sq.<name>`
    /// per tensor, the step count in the metadata. The same state gives the
    /// same bytes (the metadata's keys sorted).
    pub fn to_safetensors(&self) -> Result<Vec<u8>, safetensors::SafeTensorError> {
        let bytes: Vec<(String, Vec<u8>, usize)> = self
            .moments
            .iter()
            .flat_map(|(name, m)| {
                [
                    (
                        format!("exp_avg.{name}"),
                        le_bytes(&m.exp_avg),
                        m.exp_avg.len(),
                    ),
                    (
                        format!("exp_avg_sq.{name}"),
                        le_bytes(&m.exp_avg_sq),
                        m.exp_avg_sq.len(),
                    ),
                ]
            })
            .collect();
        let mut views = Vec::with_capacity(bytes.len());
        for (name, data, len) in &bytes {
            views.push((name.clone(), TensorView::new(Dtype::F32, vec![*len], data)?));
        }
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("steps".to_string(), self.steps.to_string()),
        ]);
        safetensors::serialize(views, Some(metadata)).map(sorted_metadata)
    }

    /// Reads what [`AdamW::to_safetensors`] wrote; `Err` holds the reason.
    pub fn from_safetensors(config: AdamWConfig, data: &[u8]) -> Result<AdamW, String> {
        let (_, meta) = SafeTensors::read_metadata(data).map_err(|e| e.to_string())?;
        let info = meta.metadata().clone().unwrap_or_default();
        if info.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(format!(
                "not an ftslm AdamW state (metadata format is not {FORMAT})"
            ));
        }
        let steps = info
            .get("steps")
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or("metadata `steps` is missing or not a number")?;
        let tensors = SafeTensors::deserialize(data).map_err(|e| e.to_string())?;
        let mut moments = BTreeMap::new();
        for name in tensors.names() {
            let Some(param) = name.strip_prefix("exp_avg.") else {
                continue;
            };
            let read = |key: &str| -> Result<Vec<f32>, String> {
                let t = tensors.tensor(key).map_err(|e| format!("{key}: {e}"))?;
                if t.dtype() != Dtype::F32 {
                    return Err(format!("{key}: expected F32, found {:?}", t.dtype()));
                }
                Ok(t.data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect())
            };
            let exp_avg = read(name)?;
            let exp_avg_sq = read(&format!("exp_avg_sq.{param}"))?;
            if exp_avg.len() != exp_avg_sq.len() {
                return Err(format!("moments of `{param}` differ in length"));
            }
            moments.insert(
                param.to_string(),
                Moments {
                    exp_avg,
                    exp_avg_sq,
                },
            );
        }
        Ok(AdamW {
            config,
            steps,
            moments,
        })
    }
}

fn le_bytes(xs: &[f32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `file` with its header's `__metadata__` keys in sorted order. The
/// safetensors crate writes them in a `HashMap`'s order, which differs
/// from map to map, so identical runs wrote different bytes. The header
/// keeps its length (the same entries, reordered), so the offsets after it
/// hold; a header this cannot read is returned as it was.
fn sorted_metadata(mut file: Vec<u8>) -> Vec<u8> {
    let Some(len) = file
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(|b: [u8; 8]| u64::from_le_bytes(b) as usize)
    else {
        return file;
    };
    let Some(header) = file.get(8..8usize.saturating_add(len)) else {
        return file;
    };
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice(header) else {
        return file;
    };
    if let Some(serde_json::Value::Object(meta)) = map.get_mut("__metadata__") {
        meta.sort_keys();
    }
    let Ok(text) = serde_json::to_string(&map) else {
        return file;
    };
    if text.len() > len {
        return file;
    }
    let padded = format!("{text:<len$}");
    file[8..8 + len].copy_from_slice(padded.as_bytes());
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(
        name: &'a str,
        shape: &'a [usize],
        value: &'a mut [f32],
        grad: &'a mut [f32],
    ) -> ParamView<'a> {
        ParamView {
            name,
            shape,
            value,
            grad,
        }
    }

    /// The same state writes the same bytes every time (the metadata's
    /// keys came in a HashMap's order, new with each map), and reads back.
    #[test]
    fn the_same_state_writes_the_same_bytes() {
        let mut opt = AdamW::new(AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        });
        let (mut value, mut grad) = (vec![1.0f32, -2.0, 3.0], vec![0.5f32, 0.25, -1.0]);
        opt.step(&mut [view("w", &[3], &mut value, &mut grad)], 0.01)
            .unwrap();
        let first = opt.to_safetensors().unwrap();
        for _ in 0..32 {
            assert_eq!(opt.to_safetensors().unwrap(), first);
        }
        let header_len = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&first[8..8 + header_len]).unwrap();
        let (format, steps) = (
            header.find("\"format\"").unwrap(),
            header.find("\"steps\"").unwrap(),
        );
        assert!(format < steps, "{header}");
        let read = AdamW::from_safetensors(opt.config, &first).unwrap();
        assert_eq!(read.to_safetensors().unwrap(), first);
    }

    #[test]
    fn three_steps_match_the_formula_by_hand() {
        let config = AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let lr = 0.01;
        let mut opt = AdamW::new(config);
        let mut value = vec![1.0f32, -2.0];
        let grads = [[0.5f32, -1.0], [0.25, 2.0], [-1.0, 0.5]];
        for g in grads {
            let mut grad = g.to_vec();
            opt.step(&mut [view("w", &[2], &mut value, &mut grad)], lr)
                .unwrap();
        }
        // torch.optim.AdamW by hand, element 0 (x0 = 1, wd = 0.1, lr = 0.01):
        // t=1: x = 1*(1-0.001) = 0.999; m = 0.05; v = 0.00025
        //      mhat = 0.05/0.1 = 0.5; vhat = 0.00025/0.001 = 0.25; x -= 0.01*0.5/(0.5+1e-8)
        //      -> 0.999 - 0.01 = 0.989 (to 1e-8)
        // t=2: x = 0.989*0.999 = 0.988011; m = 0.045+0.025 = 0.07; v = 0.00024975+0.0000625 = 0.00031225
        //      mhat = 0.07/0.19 = 0.368421; vhat = 0.00031225/0.001999 = 0.156203
        //      x -= 0.01*0.368421/0.395225 -> 0.988011 - 0.0093218 = 0.9786892
        // t=3: x = 0.9786892*0.999 = 0.9777105; m = 0.063-0.1 = -0.037;
        //      v = 0.00031193775+0.001 = 0.00131193775
        //      mhat = -0.037/0.271 = -0.1365314; vhat = 0.00131193775/0.002997001 = 0.4377502
        //      x -= 0.01*(-0.1365314)/0.6616270 -> 0.9777105 + 0.0020636 = 0.9797741
        let x0 = {
            let mut x = 1.0f64;
            let (mut m, mut v) = (0.0f64, 0.0f64);
            for (t, g) in [0.5f64, 0.25, -1.0].into_iter().enumerate() {
                let t = t as i32 + 1;
                x *= 1.0 - lr * 0.1;
                m = 0.9 * m + 0.1 * g;
                v = 0.999 * v + 0.001 * g * g;
                let mhat = m / (1.0 - 0.9f64.powi(t));
                let vhat = v / (1.0 - 0.999f64.powi(t));
                x -= lr * mhat / (vhat.sqrt() + 1e-8);
            }
            x
        };
        assert!((x0 - 0.9797741).abs() < 2e-6, "hand arithmetic {x0}");
        assert!((value[0] as f64 - x0).abs() < 1e-6, "{} vs {x0}", value[0]);
        // Element 1 (x0 = -2, grads -1, 2, 0.5) with the same formula.
        let mut x = -2.0f64;
        let (mut m, mut v) = (0.0f64, 0.0f64);
        for (t, g) in [-1.0f64, 2.0, 0.5].into_iter().enumerate() {
            let t = t as i32 + 1;
            x *= 1.0 - lr * 0.1;
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            x -= lr * (m / (1.0 - 0.9f64.powi(t))) / ((v / (1.0 - 0.999f64.powi(t))).sqrt() + 1e-8);
        }
        assert!((value[1] as f64 - x).abs() < 1e-6, "{} vs {x}", value[1]);
        assert_eq!(opt.steps(), 3);
        let m = opt.moments("w").unwrap();
        assert!((m.exp_avg[0] as f64 - -0.037).abs() < 1e-7);
    }

    #[test]
    fn state_round_trips_through_safetensors() {
        let config = AdamWConfig {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-6,
            weight_decay: 0.0,
        };
        let mut opt = AdamW::new(config);
        let (mut a, mut ga) = (vec![0.1f32, 0.2, 0.3], vec![1.0f32, -1.0, 0.5]);
        let (mut b, mut gb) = (vec![7.0f32], vec![3.0f32]);
        opt.step(
            &mut [
                view("a", &[3], &mut a, &mut ga),
                view("layers.0.b", &[1], &mut b, &mut gb),
            ],
            1e-3,
        )
        .unwrap();
        let bytes = opt.to_safetensors().unwrap();
        let back = AdamW::from_safetensors(config, &bytes).unwrap();
        assert_eq!(back, opt);
        assert_eq!(back.steps(), 1);
        assert!(AdamW::from_safetensors(config, b"garbage").is_err());
    }

    #[test]
    fn a_changed_shape_is_an_error_not_a_panic() {
        let config = AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        let mut opt = AdamW::new(config);
        let (mut v, mut g) = (vec![1.0f32; 2], vec![1.0f32; 2]);
        opt.step(&mut [view("w", &[2], &mut v, &mut g)], 0.1)
            .unwrap();
        let (mut v3, mut g3) = (vec![1.0f32; 3], vec![1.0f32; 3]);
        let err = opt
            .step(&mut [view("w", &[3], &mut v3, &mut g3)], 0.1)
            .unwrap_err();
        assert!(
            matches!(
                err,
                TrainError::ParameterShape {
                    expected: 2,
                    actual: 3,
                    ..
                }
            ),
            "{err}"
        );
    }
}
