//! # rigl-kernels
//!
//! The selection primitives of dynamic sparse training, shared by every mask decision:
//!
//! - [`cpu_reference::philox`]: a counter-based random number generator (Philox-4x32-10) keyed by
//!   `(seed, segment, step, index)`, so the same seed gives the same numbers on every device,
//!   after a resume and on every data-parallel replica.
//! - [`cpu_reference::top_k_mask`]: segmented top-k selection that returns masks, with exactly
//!   `k` selected per segment, ties broken by the lower index and NaN never selected.
//!
//! The CPU reference is the specification the GPU kernels are tested against, bit for bit.

pub mod cpu_reference;

pub use cpu_reference::keys::{f32_key, key_f32};
pub use cpu_reference::philox::{Philox, philox4x32_10, stream_id};
pub use cpu_reference::top_k_mask::{
    Segment, SegmentedSelection, SelectError, segmented_top_k_mask, top_k_mask_f32, top_k_mask_u32,
};
