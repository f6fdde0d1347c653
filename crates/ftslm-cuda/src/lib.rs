//! ftslm-cuda owns ftslm's side of NVIDIA GPUs that needs no tensor
//! library: the CUDA libraries opened at run time (`libraries`: a machine
//! without them builds, links and runs ftslm on the CPU), what the driver
//! says of its GPUs and which device a command computes on (`probe`,
//! `choice`), the backend's CUDA C kernels (`kernels`, sources in
//! `kernels/*.cu`) with their NVRTC compilation cached per architecture
//! (`compile`) and the register/spill check of their machine code
//! (`ptxas`), and the checks of those kernels against the CPU engine's
//! (`selftest`).
//!
//! Next to `ftslm-kernels` it is the one other crate with `unsafe` code:
//! calls into the CUDA driver and kernel launches, each with a `// SAFETY:`
//! comment.

pub mod choice;
pub mod compile;
pub mod gpu;
pub mod kernels;
pub mod libraries;
pub mod probe;
pub mod ptxas;
pub mod selftest;

pub use choice::{DeviceChoice, DEVICE_SPELLINGS};
pub use probe::{select, CudaReport, DeviceError, Gpu, Selected};
