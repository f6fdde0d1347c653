//! `--device` / `compute.device`: the device a computing command runs on,
//! decided before any model is loaded.

use anyhow::{anyhow, bail};
use ftslm_cuda::{CudaReport, DeviceChoice, Selected};
use ftslm_model::ComputePolicy;

use super::load_config;
use crate::cli::GlobalArgs;
use crate::output::note;

/// How the engine and the inference model compute: on the device the flag
/// (or `compute.device`) chooses, with the flags' matmul precision and the
/// machine's threads (`RAYON_NUM_THREADS` when set).
pub fn compute_policy(global: &GlobalArgs) -> anyhow::Result<ComputePolicy> {
    let choice = device_choice(global)?;
    let report = CudaReport::probe();
    let selected = ftslm_cuda::select(choice, &report)
        .map_err(|e| anyhow!("{e}. Use --device cpu (or auto) to compute on the CPU"))?;
    match selected {
        Selected::Cpu { note: Some(why) } => note(global.quiet, why),
        Selected::Cpu { note: None } => {}
        // The probe found a usable GPU; the engine that would use it is
        // the part of the CUDA backend not built yet.
        Selected::Cuda(gpu) if choice == DeviceChoice::Auto => note(
            global.quiet,
            format!(
                "computing on the CPU: found {} ({}), but ftslm's GPU engine is not built yet; \
                 `ftslm selftest --device cuda` checks its kernels",
                gpu.name,
                gpu.arch()
            ),
        ),
        Selected::Cuda(gpu) => bail!(
            "found {} ({}), but ftslm's GPU training and inference engine is not built yet: this \
             build computes on the CPU only. Use --device cpu (or auto); `ftslm selftest --device \
             cuda` checks the GPU kernels built so far",
            gpu.name,
            gpu.arch()
        ),
    }
    Ok(ComputePolicy::default().with_precision(global.matmul_precision.into()))
}

/// `--device`, else `compute.device` from the configuration.
pub fn device_choice(global: &GlobalArgs) -> anyhow::Result<DeviceChoice> {
    if let Some(choice) = global.device {
        return Ok(choice);
    }
    let config = load_config(global, false)?;
    let spelled = config.compute()?.device;
    let origin = config
        .get("compute.device")
        .map(|v| v.source.to_string())
        .unwrap_or_default();
    spelled
        .parse()
        .map_err(|e| anyhow!("compute.device ({origin}): {e}"))
}
