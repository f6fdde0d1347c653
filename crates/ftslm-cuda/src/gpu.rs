//! One GPU opened for work: its context, the one stream every launch goes
//! to, and every kernel of `kernels/` compiled for it and loaded.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, DriverError, LaunchConfig};
use cudarc::nvrtc::Ptx;

use crate::compile::{KernelCache, KernelCompileError};
use crate::kernels::KERNEL_FILES;
use crate::probe::Gpu;

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(transparent)]
    Compile(#[from] KernelCompileError),
    #[error("CUDA driver: {0}")]
    Driver(#[from] DriverError),
    #[error("no kernel named {0} was loaded")]
    NoKernel(String),
    #[error("no user cache folder to keep compiled kernels in; set XDG_CACHE_HOME")]
    NoCache,
}

/// A GPU with its kernels loaded.
pub struct GpuDevice {
    pub gpu: Gpu,
    pub context: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    functions: HashMap<&'static str, CudaFunction>,
}

impl GpuDevice {
    /// Opens `gpu`, compiles (or takes from `cache`) every kernel file for
    /// its architecture and loads every kernel. The caller has checked,
    /// through the probe, that the driver and NVRTC load.
    pub fn open(gpu: &Gpu, cache: &KernelCache) -> Result<Self, GpuError> {
        let context = CudaContext::new(gpu.index)?;
        let stream = context.default_stream();
        let mut functions = HashMap::new();
        for file in KERNEL_FILES {
            let ptx = cache.ptx(file, gpu.compute_capability)?;
            let module = context.load_module(Ptx::from_src(ptx))?;
            for &name in file.functions {
                functions.insert(name, module.load_function(name)?);
            }
        }
        Ok(GpuDevice {
            gpu: gpu.clone(),
            context,
            stream,
            functions,
        })
    }

    /// The loaded kernel `name`.
    pub fn kernel(&self, name: &str) -> Result<&CudaFunction, GpuError> {
        self.functions
            .get(name)
            .ok_or_else(|| GpuError::NoKernel(name.to_string()))
    }

    /// Kernels loaded, for reports.
    pub fn kernel_count(&self) -> usize {
        self.functions.len()
    }
}

/// Threads per block of the element-wise and row kernels (a multiple of
/// the warp, as the block reductions require).
pub const BLOCK: u32 = 256;

/// One thread per element of `n`.
pub fn per_element(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((n as u64).div_ceil(u64::from(BLOCK)).max(1) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row of `rows`.
pub fn per_row(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.max(1) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}
