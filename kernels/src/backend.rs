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

mod flex {
    use super::*;
    use crate::cpu::{self, SegmentCounts};
    use burn::backend::ops::{BoolTensorOps, IntTensorOps};
    use burn::backend::{Flex, TensorMetadata};
    use burn::tensor::TensorData;

    type Device = <Flex as burn::backend::BackendTypes>::Device;

    fn host_f32(t: FloatTensor<Flex>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 data")
    }

    fn host_bool(t: BoolTensor<Flex>) -> Vec<bool> {
        t.into_data()
            .convert::<bool>()
            .try_into_vec::<bool>()
            .expect("bool data")
    }

    /// Run `f` on the scores as a host slice: borrowed when the tensor is contiguous `f32`,
    /// shared or not (`into_data` of a shared tensor copies through bytes, about 6 ns per
    /// element), copied otherwise.
    fn with_f32<R>(t: FloatTensor<Flex>, f: impl FnOnce(&[f32]) -> R) -> R {
        match t.as_slice::<f32>() {
            Some(s) => f(s),
            None => f(&host_f32(t)),
        }
    }

    /// The flags of a Bool tensor, read from its bytes when it is contiguous.
    fn bools(t: BoolTensor<Flex>) -> Vec<bool> {
        let bytes = matches!(
            t.dtype(),
            DType::Bool(burn::tensor::BoolStore::Native | burn::tensor::BoolStore::U8)
        );
        match t.layout().contiguous_offsets() {
            Some((start, end)) if bytes => t.storage::<u8>()[start..end]
                .iter()
                .map(|&b| b != 0)
                .collect(),
            _ => host_bool(t),
        }
    }

    fn counts_f32(
        scores: &[f32],
        magnitude: bool,
        eligible: Option<&[bool]>,
        segments: &[Segment],
    ) -> (Vec<bool>, Vec<SegmentCounts>) {
        let result = if magnitude {
            cpu::segmented_top_k_counts_abs(scores, eligible, segments)
        } else {
            cpu::segmented_top_k_counts(scores, eligible, segments)
        };
        result.expect("layout validated by the caller")
    }

    fn outputs(
        mask: Vec<bool>,
        counts: &[SegmentCounts],
        bool_dtype: BoolDType,
        device: &Device,
    ) -> (BoolTensor<Flex>, IntTensor<Flex>) {
        let n = mask.len();
        let mask = TensorData::new(mask, [n]).convert_dtype(DType::Bool(bool_dtype));
        let counts: Vec<u32> = counts
            .iter()
            .flat_map(|c| [c.nan as u32, c.available as u32])
            .collect();
        let m = counts.len();
        (
            Flex::bool_from_data(mask, device),
            Flex::int_from_data(TensorData::new(counts, [m]), device),
        )
    }

    impl SelectBackend for Flex {
        fn segmented_top_k(
            scores: FloatTensor<Self>,
            magnitude: bool,
            segments: Vec<Segment>,
            bool_dtype: BoolDType,
        ) -> (BoolTensor<Self>, IntTensor<Self>) {
            let device = scores.device();
            let (mask, counts) = with_f32(scores, |s| counts_f32(s, magnitude, None, &segments));
            outputs(mask, &counts, bool_dtype, &device)
        }

        fn segmented_top_k_eligible(
            scores: FloatTensor<Self>,
            magnitude: bool,
            eligible: BoolTensor<Self>,
            segments: Vec<Segment>,
            bool_dtype: BoolDType,
        ) -> (BoolTensor<Self>, IntTensor<Self>) {
            let device = scores.device();
            let eligible = bools(eligible);
            let (mask, counts) = with_f32(scores, |s| {
                counts_f32(s, magnitude, Some(&eligible), &segments)
            });
            outputs(mask, &counts, bool_dtype, &device)
        }

        fn random_top_k(
            anchor: FloatTensor<Self>,
            len: usize,
            seed: u64,
            step: u32,
            segments: Vec<RandomSegment>,
            bool_dtype: BoolDType,
        ) -> (BoolTensor<Self>, IntTensor<Self>) {
            let device = anchor.device();
            let (mask, counts) =
                cpu::segmented_random_top_k_counts(seed, step, len, None, &segments)
                    .expect("layout validated by the caller");
            outputs(mask, &counts, bool_dtype, &device)
        }

        fn random_top_k_eligible(
            eligible: BoolTensor<Self>,
            seed: u64,
            step: u32,
            segments: Vec<RandomSegment>,
            bool_dtype: BoolDType,
        ) -> (BoolTensor<Self>, IntTensor<Self>) {
            let device = eligible.device();
            let eligible = bools(eligible);
            let (mask, counts) = cpu::segmented_random_top_k_counts(
                seed,
                step,
                eligible.len(),
                Some(&eligible),
                &segments,
            )
            .expect("layout validated by the caller");
            outputs(mask, &counts, bool_dtype, &device)
        }

        fn drop_grow(
            weights: FloatTensor<Self>,
            mask: BoolTensor<Self>,
            scores: FloatTensor<Self>,
            grow_by: GrowBy,
            segments: Vec<DropGrowSegment>,
            allow_regrow: bool,
            bool_dtype: BoolDType,
        ) -> (BoolTensor<Self>, BoolTensor<Self>, IntTensor<Self>) {
            let device = weights.device();
            let mask = bools(mask);
            let random = matches!(grow_by, GrowBy::Random { .. });
            let decide = |w: &[f32], s: Option<&[f32]>| {
                cpu::drop_grow_counts(w, &mask, s, grow_by, &segments, allow_regrow)
                    .expect("layout validated by the caller")
            };
            let flags = if random {
                with_f32(weights, |w| decide(w, None))
            } else {
                with_f32(weights, |w| with_f32(scores, |s| decide(w, Some(s))))
            };
            let counts: Vec<u32> = flags
                .outcomes
                .iter()
                .flat_map(|o| {
                    [
                        o.keep.nan,
                        o.keep.available,
                        o.grow.nan,
                        o.grow.available,
                        0,
                        o.new,
                    ]
                    .map(|c| c as u32)
                })
                .collect();
            let m = counts.len();
            let to_tensor = |v: Vec<bool>| {
                let n = v.len();
                Flex::bool_from_data(
                    TensorData::new(v, [n]).convert_dtype(DType::Bool(bool_dtype)),
                    &device,
                )
            };
            (
                to_tensor(flags.mask),
                to_tensor(flags.reset),
                Flex::int_from_data(TensorData::new(counts, [m]), &device),
            )
        }

        fn philox_u32(
            anchor: FloatTensor<Self>,
            len: usize,
            seed: u64,
            step: u32,
            segments: Vec<RandomSegment>,
        ) -> IntTensor<Self> {
            let device = anchor.device();
            let keys = cpu::philox_u32(seed, step, len, &segments)
                .expect("layout validated by the caller");
            Flex::int_from_data(TensorData::new(keys, [len]), &device)
        }
    }
}

#[cfg(feature = "cube")]
mod cube {
    use super::*;
    use crate::launch::{self, Keys, Span};
    use burn::backend::ops::{BoolTensorOps, IntTensorOps};
    use burn_cubecl::{CubeBackend, tensor::CubeTensor};

    fn spans(segments: &[Segment]) -> Vec<Span> {
        segments
            .iter()
            .map(|s| Span {
                offset: s.offset,
                len: s.len,
                k: s.k,
            })
            .collect()
    }

    fn random_spans(segments: &[RandomSegment]) -> (Vec<Span>, Vec<(usize, usize, u32)>) {
        (
            segments
                .iter()
                .map(|s| Span {
                    offset: s.offset,
                    len: s.len,
                    k: s.k,
                })
                .collect(),
            segments
                .iter()
                .map(|s| (s.offset, s.len, s.stream))
                .collect(),
        )
    }

    fn float_keys(scores: CubeTensor, magnitude: bool) -> Keys {
        if magnitude {
            Keys::F32Abs(scores)
        } else {
            Keys::F32(scores)
        }
    }

    fn random(
        like: &CubeTensor,
        len: usize,
        eligible: Option<CubeTensor>,
        seed: u64,
        step: u32,
        segments: &[RandomSegment],
        bool_dtype: BoolDType,
    ) -> (CubeTensor, CubeTensor) {
        let (spans, streams) = random_spans(segments);
        let keys = launch::philox_u32(like, len, seed, step, &streams);
        launch::segmented_select(Keys::U32(keys), eligible, &spans, DType::Bool(bool_dtype))
    }

    impl SelectBackend for CubeBackend {
        fn segmented_top_k(
            scores: FloatTensor<Self>,
            magnitude: bool,
            segments: Vec<Segment>,
            bool_dtype: BoolDType,
        ) -> (BoolTensor<Self>, IntTensor<Self>) {
            launch::segmented_select(
                float_keys(scores, magnitude),
                None,
                &spans(&segments),
                DType::Bool(bool_dtype),
            )
        }

        fn segmented_top_k_eligible(
            scores: FloatTensor<Self>,
            magnitude: bool,
            eligible: BoolTensor<Self>,
            segments: Vec<Segment>,
            bool_dtype: BoolDType,
        ) -> (BoolTensor<Self>, IntTensor<Self>) {
            launch::segmented_select(
                float_keys(scores, magnitude),
                Some(eligible),
                &spans(&segments),
                DType::Bool(bool_dtype),
            )
        }

        fn random_top_k(
            anchor: FloatTensor<Self>,
            len: usize,
            seed: u64,
            step: u32,
            segments: Vec<RandomSegment>,
            bool_dtype: BoolDType,
        ) -> (BoolTensor<Self>, IntTensor<Self>) {
            random(&anchor, len, None, seed, step, &segments, bool_dtype)
        }

        fn random_top_k_eligible(
            eligible: BoolTensor<Self>,
            seed: u64,
            step: u32,
            segments: Vec<RandomSegment>,
            bool_dtype: BoolDType,
        ) -> (BoolTensor<Self>, IntTensor<Self>) {
            let len = eligible.meta.shape().num_elements();
            let like = eligible.clone();
            random(
                &like,
                len,
                Some(eligible),
                seed,
                step,
                &segments,
                bool_dtype,
            )
        }

        /// The two selections of the kernels, joined by Bool passes; the new connections are
        /// counted by a third selection that takes nothing (`k = 0`) among them, whose
        /// per-segment `available` count is their number (every new connection has a non-NaN
        /// grow key).
        fn drop_grow(
            weights: FloatTensor<Self>,
            mask: BoolTensor<Self>,
            scores: FloatTensor<Self>,
            grow_by: GrowBy,
            segments: Vec<DropGrowSegment>,
            allow_regrow: bool,
            bool_dtype: BoolDType,
        ) -> (BoolTensor<Self>, BoolTensor<Self>, IntTensor<Self>) {
            let dtype = DType::Bool(bool_dtype);
            let spans = |k: fn(&DropGrowSegment) -> usize| -> Vec<Span> {
                segments
                    .iter()
                    .map(|s| Span {
                        offset: s.offset,
                        len: s.len,
                        k: k(s),
                    })
                    .collect()
            };
            let len = weights.meta.shape().num_elements();
            // The grow keys are read twice (growth, then the count of new connections): random
            // ones are generated once.
            let random_keys = match grow_by {
                GrowBy::Random { seed, step } => {
                    let streams: Vec<(usize, usize, u32)> = segments
                        .iter()
                        .map(|s| (s.offset, s.len, s.stream))
                        .collect();
                    Some(launch::philox_u32(&weights, len, seed, step, &streams))
                }
                _ => None,
            };
            let grow_keys = || match (grow_by, &random_keys) {
                (_, Some(keys)) => Keys::U32(keys.clone()),
                (GrowBy::Magnitude, None) => Keys::F32Abs(scores.clone()),
                (_, None) => Keys::F32(scores.clone()),
            };
            let (kept, keep_counts) = launch::segmented_select(
                Keys::F32Abs(weights.clone()),
                Some(mask.clone()),
                &spans(|s| s.keep),
                dtype,
            );
            let not_kept = Self::bool_not(kept.clone());
            let eligible = if allow_regrow {
                not_kept
            } else {
                Self::bool_and(not_kept, Self::bool_not(mask.clone()))
            };
            let (grown, grow_counts) =
                launch::segmented_select(grow_keys(), Some(eligible), &spans(|s| s.grow), dtype);
            let reset = Self::bool_and(grown.clone(), Self::bool_not(mask));
            let (_, new_counts) =
                launch::segmented_select(grow_keys(), Some(reset.clone()), &spans(|_| 0), dtype);
            let new_mask = Self::bool_or(kept, grown);
            let n = segments.len();
            let counts = Self::int_cat(
                vec![
                    Self::int_reshape(keep_counts, burn::backend::Shape::new([n, 2])),
                    Self::int_reshape(grow_counts, burn::backend::Shape::new([n, 2])),
                    Self::int_reshape(new_counts, burn::backend::Shape::new([n, 2])),
                ],
                1,
            );
            (
                new_mask,
                reset,
                Self::int_reshape(counts, burn::backend::Shape::new([n * DROP_GROW_COUNTS])),
            )
        }

        fn philox_u32(
            anchor: FloatTensor<Self>,
            len: usize,
            seed: u64,
            step: u32,
            segments: Vec<RandomSegment>,
        ) -> IntTensor<Self> {
            let (_, streams) = random_spans(&segments);
            launch::philox_u32(&anchor, len, seed, step, &streams)
        }
    }
}
