//! How a model computes, decided by its caller and passed in: the device,
//! how exactly the frozen weights' products multiply, and how many threads
//! they may use. Nothing here reads the environment or sets process-wide
//! state: the training engine and the inference model each hold a policy and
//! apply it to the work they start (the binary builds one from its flags).

use crate::kernel::{self, MatmulPrecision};

/// Where the work runs. CUDA joins this list with its backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ComputeDevice {
    #[default]
    Cpu,
}

/// The compute settings of one engine or model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ComputePolicy {
    pub device: ComputeDevice,
    pub matmul_precision: MatmulPrecision,
    /// Threads for products and for the rows computed side by side; the
    /// machine's count (candle's, `RAYON_NUM_THREADS` when set) by default.
    pub threads: usize,
}

impl Default for ComputePolicy {
    fn default() -> Self {
        ComputePolicy {
            device: ComputeDevice::Cpu,
            matmul_precision: MatmulPrecision::default(),
            threads: kernel::threads(),
        }
    }
}

impl ComputePolicy {
    pub fn with_precision(self, matmul_precision: MatmulPrecision) -> Self {
        ComputePolicy {
            matmul_precision,
            ..self
        }
    }

    /// At least one thread.
    pub fn with_threads(self, threads: usize) -> Self {
        ComputePolicy {
            threads: threads.max(1),
            ..self
        }
    }

    /// Runs `f` with the products it starts on this thread computed as the
    /// policy says (a thread `f` spawns must call `run` again).
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        kernel::with_matmul_precision(self.matmul_precision, || {
            kernel::with_thread_limit(self.threads, f)
        })
    }

    /// Like [`run`](Self::run), for one of several pieces of work already
    /// spread one per thread: its products stay on the calling thread.
    pub fn run_on_this_thread<R>(&self, f: impl FnOnce() -> R) -> R {
        kernel::with_matmul_precision(self.matmul_precision, || kernel::with_thread_limit(1, f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_applies_to_its_scope_only() {
        let policy = ComputePolicy::default()
            .with_precision(MatmulPrecision::Highest)
            .with_threads(0);
        assert_eq!(policy.threads, 1, "at least one thread");
        assert_eq!(kernel::matmul_precision(), MatmulPrecision::High);
        policy.run(|| {
            assert_eq!(kernel::matmul_precision(), MatmulPrecision::Highest);
            assert_eq!(kernel::thread_limit(), 1);
            assert!(!kernel::integer_products());
        });
        assert_eq!(kernel::matmul_precision(), MatmulPrecision::High);
        assert_eq!(kernel::thread_limit(), usize::MAX);
    }
}
