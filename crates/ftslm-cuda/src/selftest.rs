//! `ftslm selftest --device cuda`: opens the GPU, compiles and loads every
//! kernel for it, and checks each against the CPU engine's function on the
//! same inputs (`checks`). On a machine without a usable GPU it fails
//! before any work with the probe's sentence (`DeviceError::NoCuda`).

mod checks;

use std::time::Instant;

use serde::Serialize;

use crate::choice::DeviceChoice;
use crate::compile::{nvrtc_version, KernelCache};
use crate::gpu::{GpuDevice, GpuError};
use crate::probe::{select, CudaReport, DeviceError, Gpu, Selected};

/// One check and what it measured.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub shape: String,
    /// The bound, in words: "|gpu − cpu| ≤ 2⁻⁷·|cpu| + 1e-6·max|cpu|".
    pub tolerance: String,
    /// The largest |gpu − cpu| over the outputs.
    pub max_abs_error: f64,
    /// The largest error as a fraction of its element's bound (≤ 1 passes).
    pub worst_fraction_of_bound: f64,
    pub passed: bool,
}
/// What `selftest` found.
#[derive(Debug, Clone, Serialize)]
pub struct SelftestReport {
    pub gpu: Gpu,
    pub driver_version: Option<String>,
    pub nvrtc_version: String,
    pub kernels_loaded: usize,
    pub checks: Vec<Check>,
    pub seconds: f64,
}

impl SelftestReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SelftestError {
    #[error(transparent)]
    NoDevice(#[from] DeviceError),
    #[error("selftest checks a GPU against the CPU engine; --device cpu leaves nothing to check. Use --device cuda[:N]")]
    CpuAsked,
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

/// Runs every check on the GPU `choice` names (`auto` = the first GPU).
pub fn run(choice: DeviceChoice) -> Result<SelftestReport, SelftestError> {
    let started = Instant::now();
    let report = CudaReport::probe();
    let choice = match choice {
        DeviceChoice::Cpu => return Err(SelftestError::CpuAsked),
        DeviceChoice::Auto => DeviceChoice::Cuda(0),
        cuda => cuda,
    };
    let Selected::Cuda(gpu) = select(choice, &report)? else {
        unreachable!("a CUDA choice selects a GPU or fails")
    };
    let cache = KernelCache::in_user_cache().ok_or(GpuError::NoCache)?;
    let nvrtc_version = nvrtc_version().map_err(GpuError::from)?;
    let device = GpuDevice::open(&gpu, &cache)?;
    let checks = checks::run(&device)?;
    Ok(SelftestReport {
        gpu,
        driver_version: report.driver_version,
        nvrtc_version,
        kernels_loaded: device.kernel_count(),
        checks,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine with no NVIDIA driver (CI's), selftest says so in one
    /// sentence and does no work.
    #[test]
    fn without_a_gpu_selftest_names_what_is_missing() {
        if CudaReport::probe().unavailable.is_none() {
            return; // a GPU machine: gpu-check.sh runs the real thing
        }
        let err = run(DeviceChoice::Cuda(0)).unwrap_err();
        assert!(err.to_string().starts_with("no CUDA device: "), "{err}");
        assert!(matches!(
            run(DeviceChoice::Cpu),
            Err(SelftestError::CpuAsked)
        ));
    }
}
