//! [`SelectBackend`](super::SelectBackend) for the CPU backend (Flex): the fast CPU path of
//! [`crate::cpu`], reading tensors in place.

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
pub(super) fn with_f32<R>(t: FloatTensor<Flex>, f: impl FnOnce(&[f32]) -> R) -> R {
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
        let (mask, counts) = cpu::segmented_random_top_k_counts(seed, step, len, None, &segments)
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
        let keys =
            cpu::philox_u32(seed, step, len, &segments).expect("layout validated by the caller");
        Flex::int_from_data(TensorData::new(keys, [len]), &device)
    }
}
