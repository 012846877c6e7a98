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
pub mod catalogue;
#[cfg(feature = "cube")]
pub mod components;
pub mod cpu;
pub mod cpu_reference;
pub mod drop_grow;
#[cfg(feature = "cube")]
pub mod launch;
pub mod select;

pub use cpu_reference::drop_grow::{DropGrowCounts, DropGrowDecision, DropGrowSegment, GrowBy};
pub use cpu_reference::keys::{f32_key, key_f32};
pub use cpu_reference::philox::{Philox, philox4x32_10, stream_id};
pub use cpu_reference::random_mask::RandomSegment;
pub use cpu_reference::top_k_mask::{
    Segment, SegmentedSelection, SelectError, segmented_top_k_mask as segmented_top_k_mask_cpu,
    top_k_mask_f32, top_k_mask_u32,
};
pub use drop_grow::{DropGrow, Growth, drop_grow};
pub use select::{
    MAX_POSITIONS, Selection, philox_u32, random_top_k_mask, segmented_top_k_mask,
    segmented_top_k_mask_abs, top_k_mask, top_k_mask_abs,
};
