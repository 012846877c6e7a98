//! # rigl-kernels
//!
//! The selection primitives of dynamic sparse training, shared by every mask decision:
//!
//! - [`select`]: the tensor-level API. [`segmented_top_k_mask`] selects, per segment (layer) of
//!   one flat score buffer, exactly `k` eligible positions with the largest scores, ties to the
//!   lower index, NaN never selected and counted; [`random_top_k_mask`] does the same with
//!   counter-based random keys; [`philox_u32`] returns the keys. They run on any Burn device
//!   through the [`backend::SelectBackend`] extension: the CubeCL kernels on wgpu and CUDA
//!   (features `wgpu`, `cuda`), the fast CPU path on the CPU backend.
//! - [`drop_grow`](mod@drop_grow): the drop-and-grow decision of SET, SNFS and RigL for every
//!   layer in one call ([`drop_grow()`]): both selections, the new mask, the new connections and
//!   per-layer counts.
//! - [`sparse_linear()`]: the differentiable sparse product of a linear layer, `y = x W` over
//!   the active positions of a [`SparsePattern`], whose backward computes the input gradient and
//!   the weight gradient at active positions only (CPU: [`cpu::spmm()`],
//!   [`cpu::sparse_linear_backward()`]; CubeCL: `components::sparse_linear`).
//! - [`cpu_reference`]: the specification, written for clarity. Every other path equals it bit
//!   for bit: [`cpu_reference::philox`] (Philox-4x32-10 keyed by `(seed, segment, step,
//!   index)`), [`cpu_reference::top_k_mask`], [`cpu_reference::random_mask`],
//!   [`cpu_reference::drop_grow`].
//! - [`cpu`]: the fast CPU path (a radix select on order-preserving keys, parallel).
//! - `components` and `launch` (with the `wgpu` or `cuda` feature): the CubeCL kernels (digit
//!   histograms in shared memory with `u32` atomics, a scan over bins, a mask pass, Philox) and
//!   their host-side launch code.
//! - [`catalogue`]: the problems the tests and the benchmarks run.
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use rigl_kernels::{Segment, segmented_top_k_mask};
//!
//! let device = Device::default();
//! let scores = [0.1f32, 0.9, 0.5, 0.3, 0.8, 0.2];
//! let scores = Tensor::<1>::from_data(TensorData::new(scores.to_vec(), [6]), &device);
//! // Two layers of three positions: the best two of the first, the best one of the second.
//! let segments = [
//!     Segment { offset: 0, len: 3, k: 2 },
//!     Segment { offset: 3, len: 3, k: 1 },
//! ];
//! let selection = segmented_top_k_mask(scores, None, &segments)?;
//! let mask = selection.mask.into_data().convert::<bool>().try_into_vec::<bool>().unwrap();
//! assert_eq!(mask, [false, true, true, false, true, false]);
//! # Ok::<(), rigl_kernels::SelectError>(())
//! ```
//!
//! ## Adding a kernel
//!
//! A new primitive follows the selection kernels, file by file:
//!
//! 1. `cpu_reference/<name>.rs`: the specification, written for clarity, with unit tests of
//!    hand-computed cases; exported from here.
//! 2. `components/<name>.rs`: the CubeCL kernel(s) (`#[cube(launch)]`), one concept per file.
//! 3. `launch.rs`: the host side that allocates, launches and reads back, generic over the
//!    CubeCL runtime.
//! 4. `backend/`: a method on the backend extension trait ([`backend::SelectBackend`], in
//!    `mod.rs`), implemented for Flex in `flex.rs` (calling [`cpu`]) and for the CubeCL
//!    backends in `cube.rs` (calling `launch`), so one tensor-level function runs on every
//!    device.
//! 5. `cpu/<name>.rs`: the fast CPU path (parallel, in place), equal to the reference.
//! 6. A tensor-level function (`select.rs`, `drop_grow.rs`) that checks its inputs into typed
//!    errors and dispatches through the backend.
//! 7. `catalogue.rs`: problems with empty and full segments, ties, NaN, odd sizes and one large
//!    case; the same catalogue drives the tests and the benchmarks.
//! 8. `tests/equivalence.rs`: every path equals the reference over the catalogue, on the CPU
//!    and (`--features wgpu`) on wgpu; a bench in `benches/` over the same catalogue.
//!
//! ## Selection semantics
//!
//! Scores compare as order-preserving `u32` keys ([`f32_key`]): IEEE-754 total order, so
//! `-0.0 < +0.0` and denormals and infinities order as numbers. Among equal scores the lower
//! index within the segment wins. NaN is never selected; asking for more positions than a
//! segment has eligible non-NaN scores is an error ([`SelectError::KTooLarge`]).
//!
//! ## The GPU algorithm
//!
//! A most-significant-digit radix select on the composite key `(key, !local index)`, 8-bit
//! digits: per pass, one launch histograms the current digit of every segment's candidates
//! (shared-memory `u32` atomics), one launch scans each segment's 256 bins to find the bin of
//! its `k`-th largest key. Composite keys are distinct, so the threshold becomes exact and the
//! ties at it are resolved by index in the same passes; a segment retires as soon as its bin is
//! taken whole (for distinct scores, after at most four passes). A final pass writes the mask.

pub mod backend;
mod batch_norm;
#[cfg(any(test, feature = "catalogue"))]
pub mod catalogue;
#[cfg(feature = "cube")]
pub mod components;
mod condensed_linear;
pub mod cpu;
pub mod cpu_reference;
mod drop_grow;
mod dropout;
#[cfg(feature = "cube")]
pub mod launch;
mod select;
mod sparse_conv2d;
mod sparse_linear;

pub use batch_norm::{BatchNormTrainOutput, batch_norm_fused, batch_norm_train};
pub use condensed_linear::{GATHER_BLOCK, condensed_linear, condensed_linear_gather};
pub use cpu_reference::condensed_linear::Condensed;
pub use cpu_reference::drop_grow::{DropGrowCounts, DropGrowDecision, DropGrowSegment, GrowBy};
pub use cpu_reference::keys::{f32_key, key_f32};
pub use cpu_reference::philox::{Philox, philox4x32_10, stream_id};
pub use cpu_reference::random_mask::RandomSegment;
pub use cpu_reference::sparse_conv2d::Conv2dGeometry;
pub use cpu_reference::sparse_pattern::{SparseError, SparsePattern};
pub use cpu_reference::top_k_mask::{Segment, SegmentedSelection, SelectError};
pub use drop_grow::{DropGrow, Growth, drop_grow};
pub use dropout::dropout;
pub use select::{
    MAX_POSITIONS, Selection, philox_u32, random_top_k_mask, segmented_top_k_mask,
    segmented_top_k_mask_abs, top_k_mask, top_k_mask_abs,
};
pub use sparse_conv2d::{sparse_conv2d, sparse_conv2d_support};
pub use sparse_linear::{sparse_linear, sparse_linear_support};
