//! The CUDA C sources of the GPU backend, kept as files in `kernels/` and
//! embedded in the binary; NVRTC compiles them for the device at first use
//! (`compile`). Each file is compiled with the prelude in front of it.

/// Shared helpers every kernel file starts with.
pub const PRELUDE: &str = include_str!("../kernels/prelude.cuh");

/// One `.cu` file and the `extern "C"` kernels it defines.
#[derive(Debug, Clone, Copy)]
pub struct KernelFile {
    pub name: &'static str,
    pub source: &'static str,
    pub functions: &'static [&'static str],
}

impl KernelFile {
    /// What NVRTC compiles: the prelude, then the file.
    pub fn program(&self) -> String {
        format!("{PRELUDE}\n#line 1 \"{}.cu\"\n{}", self.name, self.source)
    }
}

macro_rules! kernel_file {
    ($name:literal, [$($function:literal),+ $(,)?]) => {
        KernelFile {
            name: $name,
            source: include_str!(concat!("../kernels/", $name, ".cu")),
            functions: &[$($function),+],
        }
    };
}

/// Every kernel file of the backend.
pub static KERNEL_FILES: &[KernelFile] = &[
    kernel_file!(
        "nf4",
        ["nf4_dequantize_bf16", "nf4_absmax_from_double_quant"]
    ),
    kernel_file!("rms_norm", ["rms_norm_forward", "rms_norm_backward"]),
    kernel_file!("rope", ["rope_rotate"]),
    kernel_file!("swiglu", ["swiglu_forward", "swiglu_backward"]),
    kernel_file!(
        "attention_softmax",
        ["causal_softmax_forward", "causal_softmax_backward"]
    ),
    kernel_file!("cross_entropy", ["cross_entropy_rows"]),
    kernel_file!("adamw", ["adamw_step", "squared_norm", "scale_in_place"]),
    kernel_file!(
        "elementwise",
        [
            "f32_to_bf16",
            "bf16_to_f32",
            "add_bf16",
            "apply_dropout",
            "embedding_gather"
        ]
    ),
];

/// The kernel file named `name`.
pub fn kernel_file(name: &str) -> Option<&'static KernelFile> {
    KERNEL_FILES.iter().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The function lists are what the sources define, so a renamed kernel
    /// cannot go unnoticed until a GPU loads it.
    #[test]
    fn each_listed_kernel_is_defined_in_its_file_and_none_is_unlisted() {
        for file in KERNEL_FILES {
            let defined: Vec<&str> = file
                .source
                .split("extern \"C\" __global__ void ")
                .skip(1)
                .filter_map(|rest| rest.split('(').next())
                .collect();
            assert_eq!(defined, file.functions, "{}.cu", file.name);
        }
    }
}
