//! The backend extension: one trait, implemented for the CubeCL backend (wgpu, CUDA, ... from
//! the same kernels) and for the CPU backend (Flex, the fast CPU path).
//!
//! The operations return masks and per-segment counts as tensors, never index lists, so their
//! output shapes are known ahead of execution and fusion can defer them. Counts are `u32`
//! pairs `[nan, available]` per segment; a segment whose `k` exceeds its available positions
//! selects nothing, and [`crate::select`] turns that into an error.

use crate::cpu_reference::drop_grow::{DropGrowSegment, GrowBy};
use crate::cpu_reference::random_mask::RandomSegment;
use crate::cpu_reference::top_k_mask::Segment;
use burn::backend::tensor::{BoolTensor, FloatTensor, IntTensor};
use burn::backend::{BoolDType, DType};

/// Output metadata for fusion: a mask like `len` positions, and two counts per segment.
#[cfg(feature = "cube")]
fn select_specs(
    len: usize,
    n_segments: usize,
    bool_dtype: BoolDType,
) -> (
    burn::backend::fusion::custom::TensorSpec,
    burn::backend::fusion::custom::TensorSpec,
) {
    use burn::backend::fusion::custom::TensorSpec;
    (
        TensorSpec::new(burn::backend::Shape::new([len]), DType::Bool(bool_dtype)),
        TensorSpec::new(burn::backend::Shape::new([n_segments * 2]), DType::U32),
    )
}

/// Counts per segment of [`SelectBackend::drop_grow`]: `[nan, available]` of the keep
/// selection, of the grow selection, and `[0, new connections]`.
pub const DROP_GROW_COUNTS: usize = 6;

/// Output metadata for fusion: the new mask and the new connections like `len` positions, and
/// [`DROP_GROW_COUNTS`] counts per segment.
#[cfg(feature = "cube")]
fn drop_grow_specs(
    len: usize,
    n_segments: usize,
    bool_dtype: BoolDType,
) -> (
    burn::backend::fusion::custom::TensorSpec,
    burn::backend::fusion::custom::TensorSpec,
    burn::backend::fusion::custom::TensorSpec,
) {
    use burn::backend::fusion::custom::TensorSpec;
    let mask = TensorSpec::new(burn::backend::Shape::new([len]), DType::Bool(bool_dtype));
    (
        mask.clone(),
        mask,
        TensorSpec::new(
            burn::backend::Shape::new([n_segments * DROP_GROW_COUNTS]),
            DType::U32,
        ),
    )
}

/// Selection operations of dynamic sparse training.
///
/// Call them through [`crate::select`]; these are the backend primitives, with the layout
/// already validated.
#[burn::backend::backend_extension(Cube: cfg(feature = "cube"), Flex, Fusion: cfg(feature = "cube"))]
pub trait SelectBackend: burn::backend::Backend {
    /// Segmented top-k over `f32` scores (over `|score|` when `magnitude`): the mask
    /// (`bool_dtype`) and `[nan, available]` per segment (`u32`).
    #[fusion(meta = |scores, _magnitude, segments, bool_dtype| select_specs(scores.shape.num_elements(), segments.len(), *bool_dtype))]
    fn segmented_top_k(
        scores: FloatTensor<Self>,
        magnitude: bool,
        segments: Vec<Segment>,
        bool_dtype: BoolDType,
    ) -> (BoolTensor<Self>, IntTensor<Self>);

    /// [`SelectBackend::segmented_top_k`] among eligible positions only.
    #[fusion(meta = |scores, _magnitude, _eligible, segments, bool_dtype| select_specs(scores.shape.num_elements(), segments.len(), *bool_dtype))]
    fn segmented_top_k_eligible(
        scores: FloatTensor<Self>,
        magnitude: bool,
        eligible: BoolTensor<Self>,
        segments: Vec<Segment>,
        bool_dtype: BoolDType,
    ) -> (BoolTensor<Self>, IntTensor<Self>);

    /// Random segmented top-k over `len` positions (Philox keys), on the device of `anchor`
    /// (any float tensor; its values are not read).
    #[fusion(meta = |_anchor, len, _seed, _step, segments, bool_dtype| select_specs(*len, segments.len(), *bool_dtype))]
    fn random_top_k(
        anchor: FloatTensor<Self>,
        len: usize,
        seed: u64,
        step: u32,
        segments: Vec<RandomSegment>,
        bool_dtype: BoolDType,
    ) -> (BoolTensor<Self>, IntTensor<Self>);

    /// [`SelectBackend::random_top_k`] among eligible positions only (`eligible` has `len`
    /// entries).
    #[fusion(meta = |eligible, seed, step, segments, bool_dtype| { let _ = (seed, step); select_specs(eligible.shape.num_elements(), segments.len(), *bool_dtype) })]
    fn random_top_k_eligible(
        eligible: BoolTensor<Self>,
        seed: u64,
        step: u32,
        segments: Vec<RandomSegment>,
        bool_dtype: BoolDType,
    ) -> (BoolTensor<Self>, IntTensor<Self>);

    /// The drop-and-grow decision of every segment ([`crate::cpu_reference::drop_grow`]): the
    /// new mask and the new connections (`bool_dtype`), and [`DROP_GROW_COUNTS`] `u32` counts
    /// per segment. `scores` are the grow scores (for random growth any float tensor of the same
    /// length; its values are not read). Segments are disjoint and in order.
    #[fusion(meta = |weights, _mask, _scores, _grow_by, segments, _allow_regrow, bool_dtype| drop_grow_specs(weights.shape.num_elements(), segments.len(), *bool_dtype))]
    fn drop_grow(
        weights: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        scores: FloatTensor<Self>,
        grow_by: GrowBy,
        segments: Vec<DropGrowSegment>,
        allow_regrow: bool,
        bool_dtype: BoolDType,
    ) -> (BoolTensor<Self>, BoolTensor<Self>, IntTensor<Self>);

    /// The Philox samples of `len` positions (`u32`), on the device of `anchor`.
    #[fusion(meta = |_anchor, len, _seed, _step, _segments| burn::backend::fusion::custom::TensorSpec::new(burn::backend::Shape::new([*len]), DType::U32))]
    fn philox_u32(
        anchor: FloatTensor<Self>,
        len: usize,
        seed: u64,
        step: u32,
        segments: Vec<RandomSegment>,
    ) -> IntTensor<Self>;
}

pub mod batch_norm;
#[cfg(feature = "cube")]
mod cube;
pub mod dropout;
mod flex;
pub mod sparse_conv2d;
pub mod sparse_linear;
