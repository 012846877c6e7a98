//! [`SelectBackend`](super::SelectBackend) for the CubeCL backends (wgpu, CUDA): the kernels of
//! [`crate::components`], launched by [`crate::launch`].

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
