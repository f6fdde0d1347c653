//! What `ptxas -v` says of each kernel: registers, spills, shared memory.
//! The CI check compiles every kernel for the checked architectures and
//! refuses any spill (a spill puts a kernel's locals in slow local memory).

use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// One kernel's resources on one architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelResources {
    pub function: String,
    pub arch: String,
    pub registers: u32,
    pub spill_store_bytes: u32,
    pub spill_load_bytes: u32,
    pub stack_frame_bytes: u32,
    pub shared_bytes: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PtxasError {
    #[error("cannot run {ptxas}: {source}")]
    Spawn {
        ptxas: String,
        source: std::io::Error,
    },
    #[error("ptxas rejected the PTX for {arch}:\n{stderr}")]
    Rejected { arch: String, stderr: String },
    #[error("cannot write the PTX to {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Assembles `ptx` for `arch` ("sm_89") with `ptxas -v` and reads each
/// kernel's resources from its report. `work_dir` receives the PTX file.
pub fn assemble(
    ptxas: &Path,
    ptx: &str,
    arch: &str,
    work_dir: &Path,
    name: &str,
) -> Result<Vec<KernelResources>, PtxasError> {
    let input = work_dir.join(format!("{name}-{arch}.ptx"));
    std::fs::write(&input, ptx).map_err(|source| PtxasError::Write {
        path: input.display().to_string(),
        source,
    })?;
    let output = Command::new(ptxas)
        .arg("-v")
        .arg(format!("-arch={arch}"))
        .arg("-o")
        .arg(work_dir.join(format!("{name}-{arch}.cubin")))
        .arg(&input)
        .output()
        .map_err(|source| PtxasError::Spawn {
            ptxas: ptxas.display().to_string(),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(PtxasError::Rejected {
            arch: arch.to_string(),
            stderr,
        });
    }
    Ok(parse_report(&stderr, arch))
}

/// Reads `ptxas -v`'s report: per kernel, "Compiling entry function 'F'",
/// then "N bytes stack frame, N bytes spill stores, N bytes spill loads",
/// then "Used N registers, N bytes smem, ...".
pub fn parse_report(report: &str, arch: &str) -> Vec<KernelResources> {
    let mut kernels: Vec<KernelResources> = Vec::new();
    for line in report.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let function = rest.split('\'').next().unwrap_or_default().to_string();
            kernels.push(KernelResources {
                function,
                arch: arch.to_string(),
                registers: 0,
                spill_store_bytes: 0,
                spill_load_bytes: 0,
                stack_frame_bytes: 0,
                shared_bytes: 0,
            });
            continue;
        }
        let Some(kernel) = kernels.last_mut() else {
            continue;
        };
        if line.contains("stack frame") {
            kernel.stack_frame_bytes = number_before(line, "bytes stack frame");
            kernel.spill_store_bytes = number_before(line, "bytes spill stores");
            kernel.spill_load_bytes = number_before(line, "bytes spill loads");
        } else if line.contains("Used ") && line.contains("registers") {
            kernel.registers = number_before(line, "registers");
            kernel.shared_bytes = number_before(line, "bytes smem");
        }
    }
    kernels
}

/// The integer just before `label` in `line` (0 when absent).
fn number_before(line: &str, label: &str) -> u32 {
    line.split(label)
        .next()
        .filter(|head| head.len() < line.len())
        .and_then(|head| head.split([' ', ',']).rev().find(|w| !w.is_empty()))
        .and_then(|word| word.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_gives_each_kernels_registers_and_spills() {
        let report = "ptxas info    : 0 bytes gmem\n\
ptxas info    : Compiling entry function 'rms_norm_forward' for 'sm_89'\n\
ptxas info    : Function properties for rms_norm_forward\n\
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n\
ptxas info    : Used 18 registers, 128 bytes smem, 388 bytes cmem[0]\n\
ptxas info    : Compiling entry function 'rms_norm_backward' for 'sm_89'\n\
ptxas info    : Function properties for rms_norm_backward\n\
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
ptxas info    : Used 22 registers, 388 bytes cmem[0]\n";
        let kernels = parse_report(report, "sm_89");
        assert_eq!(kernels.len(), 2);
        assert_eq!(kernels[0].function, "rms_norm_forward");
        assert_eq!((kernels[0].registers, kernels[0].shared_bytes), (18, 128));
        assert_eq!(
            (
                kernels[0].spill_store_bytes,
                kernels[0].spill_load_bytes,
                kernels[0].stack_frame_bytes
            ),
            (4, 12, 8)
        );
        assert_eq!(
            (
                kernels[1].registers,
                kernels[1].spill_store_bytes,
                kernels[1].shared_bytes
            ),
            (22, 0, 0)
        );
    }
}
