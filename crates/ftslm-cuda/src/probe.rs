//! What GPUs this machine has, read from the driver: name, compute
//! capability, memory, driver version. `select` turns a [`DeviceChoice`]
//! into the device a command computes on, or a sentence saying why not.

use cudarc::driver::result as driver;
use cudarc::driver::sys::CUdevice_attribute;
use serde::Serialize;

use crate::choice::DeviceChoice;
use crate::libraries::Libraries;

/// One GPU as the driver describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gpu {
    pub index: usize,
    pub name: String,
    /// (major, minor), e.g. (8, 9) for an L4, (9, 0) for an H100.
    pub compute_capability: (u32, u32),
    pub total_memory_bytes: u64,
}

impl Gpu {
    /// "sm_89".
    pub fn arch(&self) -> String {
        format!(
            "sm_{}{}",
            self.compute_capability.0, self.compute_capability.1
        )
    }
}

/// Everything `ftslm env` shows about CUDA on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CudaReport {
    pub libraries: Libraries,
    /// The driver's CUDA version, e.g. "12.8", when the driver loaded.
    pub driver_version: Option<String>,
    pub gpus: Vec<Gpu>,
    /// Why no GPU can be used, when none can.
    pub unavailable: Option<String>,
}

impl CudaReport {
    /// Probes the libraries, then the driver if it loaded.
    pub fn probe() -> Self {
        let libraries = Libraries::probe();
        if !libraries.driver.found {
            let unavailable = Some(format!(
                "the NVIDIA driver library ({}) is not installed or not on the loader's path",
                libraries.driver.file_name()
            ));
            return CudaReport {
                libraries,
                driver_version: None,
                gpus: Vec::new(),
                unavailable,
            };
        }
        match read_driver() {
            Ok((driver_version, gpus)) => {
                let unavailable = if gpus.is_empty() {
                    Some("the driver reports no GPU".to_string())
                } else {
                    let missing = libraries.missing();
                    (!missing.is_empty()).then(|| {
                        let names: Vec<String> = missing
                            .iter()
                            .map(|l| format!("{} ({})", l.role, l.file_name()))
                            .collect();
                        format!(
                            "{} not found; install the CUDA toolkit's libraries (or the PyPI \
                             wheels nvidia-cublas-cu12 and nvidia-cuda-nvrtc-cu12) and put their \
                             folder on LD_LIBRARY_PATH",
                            names.join(", ")
                        )
                    })
                };
                CudaReport {
                    libraries,
                    driver_version: Some(driver_version),
                    gpus,
                    unavailable,
                }
            }
            Err(reason) => CudaReport {
                libraries,
                driver_version: None,
                gpus: Vec::new(),
                unavailable: Some(reason),
            },
        }
    }
}

fn read_driver() -> Result<(String, Vec<Gpu>), String> {
    driver::init().map_err(|e| format!("the NVIDIA driver did not start ({e})"))?;
    let mut version = 0;
    // SAFETY: cuDriverGetVersion writes one int through the pointer it is
    // given, which points at a live local.
    unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut version) }
        .result()
        .map_err(|e| format!("the driver did not say its version ({e})"))?;
    let driver_version = format!("{}.{}", version / 1000, (version % 1000) / 10);
    let count = driver::device::get_count().map_err(|e| format!("cannot count GPUs ({e})"))?;
    let mut gpus = Vec::new();
    for index in 0..count {
        let device = driver::device::get(index).map_err(|e| format!("GPU {index}: {e}"))?;
        let name = driver::device::get_name(device).map_err(|e| format!("GPU {index}: {e}"))?;
        // SAFETY: `device` is a handle the driver just returned for an
        // ordinal below its count; the queries only read its properties.
        let (major, minor, memory) = unsafe {
            (
                driver::device::get_attribute(
                    device,
                    CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                ),
                driver::device::get_attribute(
                    device,
                    CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                ),
                driver::device::total_mem(device),
            )
        };
        let err = |e| format!("GPU {index}: {e}");
        gpus.push(Gpu {
            index: index as usize,
            name,
            compute_capability: (major.map_err(err)? as u32, minor.map_err(err)? as u32),
            total_memory_bytes: memory.map_err(err)? as u64,
        });
    }
    Ok((driver_version, gpus))
}

/// Where a command computes, once the choice met the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selected {
    /// The CPU; `note` says why when a GPU was possible (auto without one).
    Cpu {
        note: Option<String>,
    },
    Cuda(Gpu),
}

/// `--device cuda` on a machine where no GPU can be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("no CUDA device: {reason}")]
    NoCuda { reason: String },
    #[error("no CUDA device {index}: this machine has {count} GPU(s), numbered from 0")]
    NoSuchGpu { index: usize, count: usize },
}

/// Applies `choice` to what `report` found.
pub fn select(choice: DeviceChoice, report: &CudaReport) -> Result<Selected, DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok(Selected::Cpu { note: None }),
        DeviceChoice::Auto => match (&report.unavailable, report.gpus.first()) {
            (None, Some(gpu)) => Ok(Selected::Cuda(gpu.clone())),
            (reason, _) => Ok(Selected::Cpu {
                note: Some(format!(
                    "computing on the CPU: no usable CUDA GPU ({})",
                    reason.as_deref().unwrap_or("none found")
                )),
            }),
        },
        DeviceChoice::Cuda(index) => {
            if let Some(reason) = &report.unavailable {
                return Err(DeviceError::NoCuda {
                    reason: reason.clone(),
                });
            }
            report
                .gpus
                .get(index)
                .cloned()
                .map(Selected::Cuda)
                .ok_or(DeviceError::NoSuchGpu {
                    index,
                    count: report.gpus.len(),
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(gpus: usize, unavailable: Option<&str>) -> CudaReport {
        CudaReport {
            libraries: Libraries::probe(),
            driver_version: Some("12.8".into()),
            gpus: (0..gpus)
                .map(|index| Gpu {
                    index,
                    name: "NVIDIA L4".into(),
                    compute_capability: (8, 9),
                    total_memory_bytes: 24 << 30,
                })
                .collect(),
            unavailable: unavailable.map(str::to_string),
        }
    }

    #[test]
    fn auto_falls_back_to_the_cpu_naming_why_and_cuda_refuses() {
        let none = report(0, Some("the driver reports no GPU"));
        match select(DeviceChoice::Auto, &none) {
            Ok(Selected::Cpu { note: Some(note) }) => {
                assert!(note.contains("driver reports no GPU"), "{note}")
            }
            other => panic!("{other:?}"),
        }
        let err = select(DeviceChoice::Cuda(0), &none).unwrap_err();
        assert!(err.to_string().starts_with("no CUDA device: "), "{err}");
        assert_eq!(
            select(DeviceChoice::Cpu, &none),
            Ok(Selected::Cpu { note: None })
        );
    }

    #[test]
    fn a_gpu_is_chosen_by_index_and_a_missing_index_is_named() {
        let two = report(2, None);
        assert!(matches!(select(DeviceChoice::Auto, &two), Ok(Selected::Cuda(g)) if g.index == 0));
        assert!(
            matches!(select(DeviceChoice::Cuda(1), &two), Ok(Selected::Cuda(g)) if g.index == 1 && g.arch() == "sm_89")
        );
        assert_eq!(
            select(DeviceChoice::Cuda(2), &two),
            Err(DeviceError::NoSuchGpu { index: 2, count: 2 })
        );
    }

    /// This machine (CI's, ours) has no NVIDIA driver: the probe says so in
    /// words instead of panicking inside the loader.
    #[test]
    fn the_probe_names_a_missing_driver_without_panicking() {
        let report = CudaReport::probe();
        if report.libraries.driver.found {
            return; // a GPU machine: nothing to check here
        }
        let reason = report.unavailable.expect("a reason");
        assert!(reason.contains("libcuda.so"), "{reason}");
        assert!(report.gpus.is_empty());
    }
}
