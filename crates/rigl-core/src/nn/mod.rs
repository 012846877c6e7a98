//! Sparse-aware layers: drop-in replacements for Burn's `Linear` and `Conv2d` whose forward and
//! backward skip the inactive weights of an attached [`SparseMask`](crate::SparseMask).
//!
//! Between mask updates a sparse layer computes its forward, input gradient and weight
//! gradient on the active weights only ([`rigl_kernels::sparse_linear`],
//! [`rigl_kernels::sparse_conv2d`]); on steps that need
//! the dense gradient ([`GradientMode::Dense`](crate::GradientMode::Dense)), without a mask,
//! or where the policy ([`SparseExecution`]) or the backend says no, it runs the masked dense
//! path of a plain Burn layer. Records are those of the Burn layer (same field names), so
//! burn-nn records load.
//!
//! [`FusedBatchNorm`] and [`FusedDropout`] are Burn's `BatchNorm` and `Dropout` made fast on
//! the CPU backend (two passes each way; a counter-based mask), so that the dense layers around
//! sparse convolutions do not dominate a training step.

mod batch_norm;
mod dropout;
mod execution;
mod pattern_cache;
mod sparse_conv2d;
mod sparse_linear;

pub use batch_norm::{FusedBatchNorm, FusedBatchNormConfig};
pub use dropout::{FusedDropout, FusedDropoutConfig};
pub use execution::{Execution, SparseExecution};
pub use pattern_cache::PatternCache;
pub use sparse_conv2d::{SparseConv2d, SparseConv2dConfig};
pub use sparse_linear::{SparseLinear, SparseLinearConfig};
