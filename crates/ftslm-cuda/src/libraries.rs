//! Which of the CUDA shared libraries this process can open. cudarc loads
//! them lazily and panics when one is missing, so every path into cudarc
//! first asks here and turns a missing library into an error that names it.

use serde::Serialize;

/// One CUDA library and whether the dynamic loader found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Library {
    /// What it is, for people: "driver (libcuda)".
    pub role: &'static str,
    /// The base name cudarc searches for ("cuda", "cublasLt").
    pub name: &'static str,
    pub found: bool,
}

impl Library {
    /// The file names the loader tried, for "not found" messages.
    pub fn searched(&self) -> Vec<String> {
        cudarc::get_lib_name_candidates(self.name)
    }

    /// `libcublasLt.so` (the first name searched).
    pub fn file_name(&self) -> String {
        self.searched().into_iter().next().unwrap_or_default()
    }
}

/// The four libraries the CUDA backend needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Libraries {
    pub driver: Library,
    pub cublas: Library,
    pub cublas_lt: Library,
    pub nvrtc: Library,
}

impl Libraries {
    /// Tries to open each library (opening is cached by the loader).
    pub fn probe() -> Self {
        // The code that runs in each is the library's own initialiser, the
        // same a C program linking CUDA runs at start.
        // SAFETY: `is_culib_present` only dlopens the library by name and
        // closes it again.
        let driver = unsafe { cudarc::driver::sys::is_culib_present() };
        // SAFETY: as above.
        let cublas = unsafe { cudarc::cublas::sys::is_culib_present() };
        // SAFETY: as above.
        let cublas_lt = unsafe { cudarc::cublaslt::sys::is_culib_present() };
        // SAFETY: as above.
        let nvrtc = unsafe { cudarc::nvrtc::sys::is_culib_present() };
        Libraries {
            driver: Library {
                role: "driver (libcuda)",
                name: "cuda",
                found: driver,
            },
            cublas: Library {
                role: "cuBLAS",
                name: "cublas",
                found: cublas,
            },
            cublas_lt: Library {
                role: "cuBLASLt",
                name: "cublasLt",
                found: cublas_lt,
            },
            nvrtc: Library {
                role: "NVRTC (kernel compiler)",
                name: "nvrtc",
                found: nvrtc,
            },
        }
    }

    pub fn all(&self) -> [&Library; 4] {
        [&self.driver, &self.cublas, &self.cublas_lt, &self.nvrtc]
    }

    /// The libraries the loader could not open.
    pub fn missing(&self) -> Vec<&Library> {
        self.all().into_iter().filter(|l| !l.found).collect()
    }
}
