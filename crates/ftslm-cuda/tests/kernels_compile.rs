//! The one GPU check that runs on every commit, on a machine with no GPU:
//! every kernel file compiles with NVRTC for the A100, L4 and H100
//! architectures, `ptxas` assembles each, and no kernel spills registers.
//!
//! NVRTC and ptxas come from the PyPI wheels `scripts/test.sh` installs into
//! `.venv` (nvidia-cuda-nvrtc-cu12, -runtime-cu12 for the headers, -nvcc-cu12
//! for ptxas); it puts NVRTC on LD_LIBRARY_PATH and names the headers and
//! ptxas in `FTSLM_CUDA_INCLUDE` and `FTSLM_PTXAS`. Under `CI=true` a missing
//! tool fails the test; elsewhere it skips with a note.

use std::path::PathBuf;

use ftslm_cuda::compile::{compile_ptx, virtual_arch, CHECKED_CAPABILITIES};
use ftslm_cuda::kernels::KERNEL_FILES;
use ftslm_cuda::libraries::Libraries;
use ftslm_cuda::ptxas;

fn tools() -> Option<PathBuf> {
    let ptxas = std::env::var_os("FTSLM_PTXAS").map(PathBuf::from);
    let nvrtc = Libraries::probe().nvrtc;
    let missing = match (&ptxas, nvrtc.found) {
        (Some(p), true) if p.is_file() => return ptxas,
        (_, false) => format!("NVRTC ({}) is not on LD_LIBRARY_PATH", nvrtc.file_name()),
        _ => "FTSLM_PTXAS does not name ptxas".to_string(),
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{missing}: run the tests through scripts/test.sh, which installs the CUDA wheels");
    }
    eprintln!("skipped: {missing} (scripts/test.sh sets them up)");
    None
}

#[test]
fn every_kernel_compiles_for_a100_l4_and_h100_without_spilling() {
    let Some(ptxas) = tools() else { return };
    let work = tempfile::tempdir().unwrap();
    let mut table = Vec::new();
    for &capability in &CHECKED_CAPABILITIES {
        let arch = virtual_arch(capability).unwrap();
        let sm = format!("sm_{}{}", capability.0, capability.1);
        for file in KERNEL_FILES {
            let ptx = compile_ptx(file, arch).unwrap_or_else(|e| panic!("{e}"));
            let kernels = ptxas::assemble(&ptxas, &ptx, &sm, work.path(), file.name)
                .unwrap_or_else(|e| panic!("{}.cu: {e}", file.name));
            let mut names: Vec<&str> = kernels.iter().map(|k| k.function.as_str()).collect();
            names.sort_unstable();
            let mut expected = file.functions.to_vec();
            expected.sort_unstable();
            assert_eq!(
                names, expected,
                "{}.cu on {sm}: ptxas saw other kernels",
                file.name
            );
            table.extend(kernels);
        }
    }
    for k in &table {
        eprintln!(
            "{:<6} {:<30} {:>3} registers  {:>5} B smem  {} B spill stores  {} B spill loads",
            k.arch,
            k.function,
            k.registers,
            k.shared_bytes,
            k.spill_store_bytes,
            k.spill_load_bytes
        );
    }
    let spilling: Vec<_> = table
        .iter()
        .filter(|k| k.spill_store_bytes > 0 || k.spill_load_bytes > 0)
        .collect();
    assert!(
        spilling.is_empty(),
        "kernels spill registers: {spilling:#?}"
    );
    let kernels_per_arch = KERNEL_FILES
        .iter()
        .map(|f| f.functions.len())
        .sum::<usize>();
    assert_eq!(table.len(), kernels_per_arch * CHECKED_CAPABILITIES.len());
}
