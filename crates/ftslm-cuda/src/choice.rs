//! `--device auto|cpu|cuda[:N]` (config key `compute.device`): what the user
//! asked for, before anything is probed.

use std::fmt;
use std::str::FromStr;

/// The device a command was asked to compute on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// A CUDA GPU when one and its libraries load, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// GPU `N` (0 when not given).
    Cuda(usize),
}

/// The spellings, for error messages and help.
pub const DEVICE_SPELLINGS: &str = "auto, cpu, cuda or cuda:N (N = the GPU's index, from 0)";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not a device; use {DEVICE_SPELLINGS}")]
pub struct BadDevice {
    pub given: String,
}

impl FromStr for DeviceChoice {
    type Err = BadDevice;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadDevice {
            given: s.to_string(),
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(index) => index.parse().map(DeviceChoice::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_parses_and_prints_back() {
        for (text, choice) in [
            ("auto", DeviceChoice::Auto),
            ("CPU", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(0)),
            ("cuda:3", DeviceChoice::Cuda(3)),
        ] {
            assert_eq!(text.parse::<DeviceChoice>(), Ok(choice), "{text}");
            assert_eq!(choice.to_string().parse::<DeviceChoice>(), Ok(choice));
        }
        for bad in ["", "cuda:", "cuda:-1", "cuda:x", "tpu", "metal"] {
            let err = bad.parse::<DeviceChoice>().unwrap_err();
            assert!(err.to_string().contains("cuda:N"), "{err}");
        }
    }
}
