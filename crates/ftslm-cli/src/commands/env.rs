//! `ftslm env`: this machine as ftslm sees it — the CPU features its
//! kernels use, the threads, and what the CUDA probe found (GPUs, compute
//! capability, memory, driver, which libraries load).

use std::process::ExitCode;

use ftslm_cuda::CudaReport;
use serde::Serialize;

use crate::output::print_json;

#[derive(Serialize)]
struct EnvReport {
    ftslm_version: &'static str,
    cpu: CpuReport,
    cuda: CudaReport,
}

#[derive(Serialize)]
struct CpuReport {
    threads: usize,
    avx512f: bool,
    avx512_vnni: bool,
}

fn cpu() -> CpuReport {
    #[cfg(target_arch = "x86_64")]
    let (avx512f, avx512_vnni) = (
        std::is_x86_feature_detected!("avx512f"),
        std::is_x86_feature_detected!("avx512vnni"),
    );
    #[cfg(not(target_arch = "x86_64"))]
    let (avx512f, avx512_vnni) = (false, false);
    CpuReport {
        threads: ftslm_kernels::threads(),
        avx512f,
        avx512_vnni,
    }
}

pub fn run(json: bool) -> anyhow::Result<ExitCode> {
    let report = EnvReport {
        ftslm_version: env!("CARGO_PKG_VERSION"),
        cpu: cpu(),
        cuda: CudaReport::probe(),
    };
    if json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    println!("ftslm {}", report.ftslm_version);
    println!(
        "cpu: {} threads, AVX-512 {}, AVX-512 VNNI {}",
        report.cpu.threads,
        yes_no(report.cpu.avx512f),
        yes_no(report.cpu.avx512_vnni)
    );
    let cuda = &report.cuda;
    if let Some(version) = &cuda.driver_version {
        println!("cuda driver: {version}");
    }
    for gpu in &cuda.gpus {
        println!(
            "gpu {}: {} (compute capability {}.{}, {:.1} GiB)",
            gpu.index,
            gpu.name,
            gpu.compute_capability.0,
            gpu.compute_capability.1,
            gpu.total_memory_bytes as f64 / f64::from(1u32 << 30)
        );
    }
    for library in cuda.libraries.all() {
        let state = if library.found { "loaded" } else { "not found" };
        println!("  {:<24} {:<18} {state}", library.role, library.file_name());
    }
    match &cuda.unavailable {
        Some(why) => println!("compute device: cpu (no usable CUDA GPU: {why})"),
        None => println!("compute device: cpu (the GPU engine is not built yet; `ftslm selftest --device cuda` checks its kernels)"),
    }
    Ok(ExitCode::SUCCESS)
}
