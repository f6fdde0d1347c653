//! NVRTC compilation of the kernel files for one GPU architecture, with the
//! PTX cached per architecture in the user's cache folder, so a GPU pays
//! for the compile once per ftslm version, not once per run.

use std::path::{Path, PathBuf};

use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions};
use sha2::{Digest, Sha256};

use crate::kernels::KernelFile;
use crate::libraries::Libraries;

/// The virtual architectures ftslm compiles for (PTX is forward-compatible:
/// a newer GPU JIT-compiles the highest one at or below its capability).
const VIRTUAL_ARCHES: &[((u32, u32), &str)] = &[
    ((7, 0), "compute_70"),
    ((7, 5), "compute_75"),
    ((8, 0), "compute_80"),
    ((8, 6), "compute_86"),
    ((8, 9), "compute_89"),
    ((9, 0), "compute_90"),
];

/// The capabilities CI compiles every kernel for: A100, L4, H100.
pub const CHECKED_CAPABILITIES: [(u32, u32); 3] = [(8, 0), (8, 9), (9, 0)];

/// The PTX architecture for a GPU of `capability`: the highest known one
/// not above it. bf16 needs 8.0; older GPUs get `None`.
pub fn virtual_arch(capability: (u32, u32)) -> Option<&'static str> {
    VIRTUAL_ARCHES
        .iter()
        .rev()
        .find(|(cc, _)| *cc <= capability && *cc >= (8, 0))
        .map(|(_, arch)| *arch)
}

#[derive(Debug, thiserror::Error)]
pub enum KernelCompileError {
    #[error(
        "NVRTC (the CUDA kernel compiler, {library}) is not installed or not on the loader's \
         path; install the CUDA toolkit or `pip install nvidia-cuda-nvrtc-cu12` and add its lib \
         folder to LD_LIBRARY_PATH"
    )]
    NoNvrtc { library: String },
    #[error("compute capability {}.{} is below 8.0 (Ampere): the kernels compute in bf16", .0.0, .0.1)]
    UnsupportedGpu((u32, u32)),
    #[error("kernel file {file}.cu did not compile for {arch}:\n{log}")]
    Compile {
        file: &'static str,
        arch: &'static str,
        log: String,
    },
    #[error(
        "cannot create the kernel cache folder {path}: {source} (set XDG_CACHE_HOME to a \
         writable folder)"
    )]
    CacheDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the kernel cache {path}: {source}")]
    Cache {
        path: PathBuf,
        source: ftslm_fs::FsError,
    },
}

/// Folders holding `cuda_bf16.h`, in the order NVRTC should search them:
/// `$FTSLM_CUDA_INCLUDE` (colon-separated), `$CUDA_HOME/include`,
/// `$CUDA_PATH/include`, `/usr/local/cuda/include`. NVRTC 12 also carries
/// the header itself, so none found is not an error.
pub fn include_dirs() -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(list) = std::env::var_os("FTSLM_CUDA_INCLUDE") {
        candidates.extend(std::env::split_paths(&list));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(home) = std::env::var_os(var) {
            candidates.push(Path::new(&home).join("include"));
        }
    }
    candidates.push(PathBuf::from("/usr/local/cuda/include"));
    candidates
        .into_iter()
        .filter(|dir| dir.join("cuda_bf16.h").is_file())
        .collect()
}

/// NVRTC's version, "12.9".
pub fn nvrtc_version() -> Result<String, KernelCompileError> {
    require_nvrtc()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: NVRTC is loadable (checked above); nvrtcVersion writes two ints
    // through pointers to live locals.
    unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    Ok(format!("{major}.{minor}"))
}

fn require_nvrtc() -> Result<(), KernelCompileError> {
    let nvrtc = Libraries::probe().nvrtc;
    if nvrtc.found {
        Ok(())
    } else {
        Err(KernelCompileError::NoNvrtc {
            library: nvrtc.file_name(),
        })
    }
}

fn options(arch: &'static str) -> CompileOptions {
    CompileOptions {
        arch: Some(arch),
        include_paths: include_dirs()
            .into_iter()
            .map(|dir| dir.display().to_string())
            .collect(),
        // Exact division and square root: the statistics stay comparable to
        // the CPU engine's; the exponentials use the fast intrinsics explicitly.
        prec_div: Some(true),
        prec_sqrt: Some(true),
        fmad: Some(true),
        options: vec!["--std=c++17".into()],
        ..Default::default()
    }
}

/// Compiles one kernel file to PTX for `arch` ("compute_89").
pub fn compile_ptx(file: &KernelFile, arch: &'static str) -> Result<String, KernelCompileError> {
    require_nvrtc()?;
    compile_ptx_with_opts(file.program(), options(arch))
        .map(|ptx| ptx.to_src())
        .map_err(|e| KernelCompileError::Compile {
            file: file.name,
            arch,
            log: match e {
                CompileError::CompileError { log, .. } => log.to_string_lossy().into_owned(),
                other => other.to_string(),
            },
        })
}

/// PTX per architecture under one folder, keyed by the program, the options
/// and NVRTC's version, written atomically (two processes may fill it at
/// once; each writes whole files).
#[derive(Debug, Clone)]
pub struct KernelCache {
    dir: PathBuf,
}

impl KernelCache {
    /// `<user cache>/ftslm/cuda-kernels` (`$XDG_CACHE_HOME` or `~/.cache`).
    pub fn in_user_cache() -> Option<Self> {
        dirs::cache_dir().map(|d| KernelCache::at(d.join("ftslm").join("cuda-kernels")))
    }

    pub fn at(dir: PathBuf) -> Self {
        KernelCache { dir }
    }

    /// The cached PTX of `file` for a GPU of `capability`, compiled first if
    /// absent.
    pub fn ptx(
        &self,
        file: &KernelFile,
        capability: (u32, u32),
    ) -> Result<String, KernelCompileError> {
        let arch =
            virtual_arch(capability).ok_or(KernelCompileError::UnsupportedGpu(capability))?;
        let path = self.path(file, arch)?;
        if let Ok(ptx) = std::fs::read_to_string(&path) {
            return Ok(ptx);
        }
        let ptx = compile_ptx(file, arch)?;
        let arch_dir = self.dir.join(arch);
        std::fs::create_dir_all(&arch_dir).map_err(|source| KernelCompileError::CacheDir {
            path: arch_dir,
            source,
        })?;
        ftslm_fs::write_atomic(&path, ptx.as_bytes())
            .map_err(|source| KernelCompileError::Cache { path, source })?;
        Ok(ptx)
    }

    fn path(&self, file: &KernelFile, arch: &'static str) -> Result<PathBuf, KernelCompileError> {
        let mut key = Sha256::new();
        key.update(file.program());
        key.update(format!("{:?}", options(arch).options));
        key.update(nvrtc_version()?);
        let digest: String = key.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(self
            .dir
            .join(arch)
            .join(format!("{}-{digest}.ptx", file.name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_gpu_gets_the_highest_arch_not_above_it() {
        assert_eq!(virtual_arch((8, 9)), Some("compute_89"));
        assert_eq!(virtual_arch((8, 7)), Some("compute_86"));
        assert_eq!(virtual_arch((9, 0)), Some("compute_90"));
        assert_eq!(virtual_arch((12, 0)), Some("compute_90"));
        assert_eq!(virtual_arch((7, 5)), None, "no bf16 before Ampere");
    }
}
