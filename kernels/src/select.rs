//! The tensor-level API: selections on any device, through the backend extension.
//!
//! On a CPU device the fast CPU path runs on the host; on a CubeCL device (wgpu, CUDA) the
//! kernels run on the device and only the per-segment counts come back to the host (to report
//! NaN counts and to turn a too-large `k` into an error). Results equal
//! [`crate::cpu_reference`] bit for bit on every device.

use crate::backend::SelectBackend;
use crate::cpu_reference::random_mask::RandomSegment;
use crate::cpu_reference::top_k_mask::{Segment, SelectError};
use burn::backend::Dispatch;
use burn::tensor::{Bool, DType, Device, Int, Tensor};

/// A segmented selection on a device.
#[derive(Clone, Debug)]
pub struct Selection {
    /// One flag per position of the flat buffer, on the device of the scores.
    pub mask: Tensor<1, Bool>,
    /// Per segment, the number of eligible positions whose score was NaN (never selected).
    pub nan_counts: Vec<usize>,
}

/// The largest flat buffer the kernels address (positions are `u32` on the device).
pub const MAX_POSITIONS: usize = u32::MAX as usize;

pub(crate) fn check_layout(
    spans: impl Iterator<Item = (usize, usize)>,
    total: usize,
    eligible: Option<usize>,
) -> Result<(), SelectError> {
    if let Some(e) = eligible
        && e != total
    {
        return Err(SelectError::EligibleLength {
            eligible: e,
            scores: total,
        });
    }
    if total > MAX_POSITIONS {
        return Err(SelectError::TooManyPositions {
            len: total,
            max: MAX_POSITIONS,
        });
    }
    for (si, (offset, len)) in spans.enumerate() {
        let end = offset.saturating_add(len);
        if end > total {
            return Err(SelectError::SegmentOutOfBounds {
                segment: si,
                end,
                len: total,
            });
        }
    }
    Ok(())
}

/// Read the `[nan, available]` counts and check every `k`.
fn read_counts(
    counts: Tensor<1, Int>,
    ks: impl Iterator<Item = usize>,
) -> Result<Vec<usize>, SelectError> {
    let counts: Vec<u32> = counts
        .into_data()
        .convert::<u32>()
        .try_into_vec::<u32>()
        .expect("u32 counts");
    let mut nan = Vec::with_capacity(counts.len() / 2);
    for (si, (k, pair)) in ks.zip(counts.chunks_exact(2)).enumerate() {
        let available = pair[1] as usize;
        if k > available {
            return Err(SelectError::KTooLarge {
                segment: si,
                k,
                available,
            });
        }
        nan.push(pair[0] as usize);
    }
    Ok(nan)
}

pub(crate) fn restore_autodiff(mask: Tensor<1, Bool>, autodiff: bool) -> Tensor<1, Bool> {
    if autodiff { mask.autodiff() } else { mask }
}

/// Segmented top-k of `scores`: for each segment, exactly `k` of its eligible positions with the
/// largest scores are selected.
///
/// Scores compare in IEEE-754 total order (`-0.0 < +0.0`; denormals and infinities as
/// numbers); ties go to the lower index; NaN scores are never selected and are counted per
/// segment; positions outside every segment and ineligible positions are never selected;
/// overlapping segments select the union of their selections. Scores of another float type are
/// converted to `f32` first.
///
/// # Errors
/// [`SelectError`] when a segment is out of bounds or longer than 2^32, the eligibility mask
/// does not have one entry per score, the buffer exceeds [`MAX_POSITIONS`], or a segment's `k`
/// exceeds its eligible non-NaN positions.
pub fn segmented_top_k_mask(
    scores: Tensor<1>,
    eligible: Option<Tensor<1, Bool>>,
    segments: &[Segment],
) -> Result<Selection, SelectError> {
    select_f32(scores, false, eligible, segments)
}

/// [`segmented_top_k_mask`] by magnitude: selects the largest `|score|`, the same result as
/// `segmented_top_k_mask(scores.abs(), ..)` without the pass that computes `abs` (the kernels
/// clear the sign bit when they read a score). `-0.0` and `+0.0` tie; NaN is never selected.
///
/// # Errors
/// As [`segmented_top_k_mask`].
pub fn segmented_top_k_mask_abs(
    scores: Tensor<1>,
    eligible: Option<Tensor<1, Bool>>,
    segments: &[Segment],
) -> Result<Selection, SelectError> {
    select_f32(scores, true, eligible, segments)
}

fn select_f32(
    scores: Tensor<1>,
    magnitude: bool,
    eligible: Option<Tensor<1, Bool>>,
    segments: &[Segment],
) -> Result<Selection, SelectError> {
    let total = scores.dims()[0];
    check_layout(
        segments.iter().map(|s| (s.offset, s.len)),
        total,
        eligible.as_ref().map(|e| e.dims()[0]),
    )?;
    for (si, s) in segments.iter().enumerate() {
        if s.len as u64 > 1 << 32 {
            return Err(SelectError::SegmentTooLong {
                segment: si,
                len: s.len,
            });
        }
    }
    let autodiff = scores.is_autodiff();
    let mut scores = scores.without_autodiff();
    if scores.dtype() != DType::F32 {
        scores = scores.cast(DType::F32);
    }
    let bool_dtype = scores.device().settings().bool_dtype;
    let segs = segments.to_vec();
    let (mask, counts) = match eligible {
        None => <Dispatch as SelectBackend>::segmented_top_k(
            scores.into_dispatch(),
            magnitude,
            segs,
            bool_dtype,
        ),
        Some(e) => <Dispatch as SelectBackend>::segmented_top_k_eligible(
            scores.into_dispatch(),
            magnitude,
            e.without_autodiff().into_dispatch(),
            segs,
            bool_dtype,
        ),
    };
    let mask = Tensor::<1, Bool>::from_dispatch(mask);
    let nan_counts = read_counts(
        Tensor::<1, Int>::from_dispatch(counts),
        segments.iter().map(|s| s.k),
    )?;
    Ok(Selection {
        mask: restore_autodiff(mask, autodiff),
        nan_counts,
    })
}

/// Top-k of one segment spanning all of `scores` (see [`segmented_top_k_mask`]).
///
/// # Errors
/// As [`segmented_top_k_mask`].
pub fn top_k_mask(
    scores: Tensor<1>,
    eligible: Option<Tensor<1, Bool>>,
    k: usize,
) -> Result<Selection, SelectError> {
    let len = scores.dims()[0];
    segmented_top_k_mask(scores, eligible, &[Segment { offset: 0, len, k }])
}

/// Top-k by magnitude of one segment spanning all of `scores` (see
/// [`segmented_top_k_mask_abs`]).
///
/// # Errors
/// As [`segmented_top_k_mask`].
pub fn top_k_mask_abs(
    scores: Tensor<1>,
    eligible: Option<Tensor<1, Bool>>,
    k: usize,
) -> Result<Selection, SelectError> {
    let len = scores.dims()[0];
    segmented_top_k_mask_abs(scores, eligible, &[Segment { offset: 0, len, k }])
}

fn check_random(
    len: usize,
    eligible: Option<usize>,
    segments: &[RandomSegment],
) -> Result<(), SelectError> {
    check_layout(segments.iter().map(|s| (s.offset, s.len)), len, eligible)?;
    for (si, s) in segments.iter().enumerate() {
        if s.len as u64 > 1 << 32 {
            return Err(SelectError::SegmentTooLong {
                segment: si,
                len: s.len,
            });
        }
    }
    Ok(())
}

/// A float tensor on `device` (without autodiff) that tells the backend extension where to run.
fn anchor(device: &Device) -> Tensor<1> {
    Tensor::<1>::zeros([1], device).without_autodiff()
}

/// Random segmented selection over `len` positions on `device`: every position gets the Philox
/// sample at `(seed, segment stream, step, local index)` and each segment's `k` largest
/// samples win (ties to the lower index), among eligible positions when `eligible` is given.
/// Equal to [`crate::cpu_reference::random_mask::segmented_random_top_k_mask`] on every device.
///
/// # Errors
/// [`SelectError`] when a segment is out of bounds or too long, `eligible` does not have `len`
/// entries, or a segment's `k` exceeds its eligible positions.
pub fn random_top_k_mask(
    seed: u64,
    step: u32,
    len: usize,
    eligible: Option<Tensor<1, Bool>>,
    segments: &[RandomSegment],
    device: &Device,
) -> Result<Tensor<1, Bool>, SelectError> {
    check_random(len, eligible.as_ref().map(|e| e.dims()[0]), segments)?;
    let autodiff = device.is_autodiff();
    let bool_dtype = device.settings().bool_dtype;
    let segs = segments.to_vec();
    let (mask, counts) = match eligible {
        None => <Dispatch as SelectBackend>::random_top_k(
            anchor(device).into_dispatch(),
            len,
            seed,
            step,
            segs,
            bool_dtype,
        ),
        Some(e) => <Dispatch as SelectBackend>::random_top_k_eligible(
            e.without_autodiff().into_dispatch(),
            seed,
            step,
            segs,
            bool_dtype,
        ),
    };
    let mask = Tensor::<1, Bool>::from_dispatch(mask);
    read_counts(
        Tensor::<1, Int>::from_dispatch(counts),
        segments.iter().map(|s| s.k),
    )?;
    Ok(restore_autodiff(mask, autodiff))
}

/// The Philox samples of `len` positions on `device`, as a `u32` integer tensor: position
/// `offset + i` of a segment gets the sample at `(seed, segment stream, step, i)`, positions
/// outside every segment get 0, and later segments win where segments overlap. The `k` of the
/// segments is ignored. Equal to [`crate::cpu::philox_u32`] on every device.
///
/// # Errors
/// [`SelectError::SegmentOutOfBounds`], [`SelectError::SegmentTooLong`] or
/// [`SelectError::TooManyPositions`].
pub fn philox_u32(
    seed: u64,
    step: u32,
    len: usize,
    segments: &[RandomSegment],
    device: &Device,
) -> Result<Tensor<1, Int>, SelectError> {
    check_random(len, None, segments)?;
    let keys = <Dispatch as SelectBackend>::philox_u32(
        anchor(device).into_dispatch(),
        len,
        seed,
        step,
        segments.to_vec(),
    );
    Ok(Tensor::<1, Int>::from_dispatch(keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_reference;
    use burn::tensor::TensorData;

    fn bools(t: Tensor<1, Bool>) -> Vec<bool> {
        t.into_data()
            .convert::<bool>()
            .try_into_vec::<bool>()
            .unwrap()
    }

    #[test]
    fn flex_equals_reference() {
        let device = Device::flex();
        let scores = vec![1.0, 3.0, f32::NAN, 3.0, -0.0, 0.0, 2.0, 5.0];
        let eligible = vec![true, true, true, true, true, true, false, true];
        let segments = [
            Segment {
                offset: 0,
                len: 4,
                k: 2,
            },
            Segment {
                offset: 4,
                len: 4,
                k: 2,
            },
        ];
        let t = Tensor::<1>::from_data(TensorData::new(scores.clone(), [8]), &device);
        let e = Tensor::<1, Bool>::from_data(TensorData::new(eligible.clone(), [8]), &device);
        let sel = segmented_top_k_mask(t, Some(e), &segments).unwrap();
        let expect =
            cpu_reference::top_k_mask::segmented_top_k_mask(&scores, Some(&eligible), &segments)
                .unwrap();
        assert_eq!(bools(sel.mask), expect.mask);
        assert_eq!(sel.nan_counts, expect.nan_counts);
    }

    #[test]
    fn errors_are_typed() {
        let device = Device::flex();
        let t = Tensor::<1>::from_data(TensorData::new(vec![f32::NAN, 1.0], [2]), &device);
        assert_eq!(
            top_k_mask(t.clone(), None, 2).unwrap_err(),
            SelectError::KTooLarge {
                segment: 0,
                k: 2,
                available: 1
            }
        );
        assert!(matches!(
            segmented_top_k_mask(
                t,
                None,
                &[Segment {
                    offset: 1,
                    len: 2,
                    k: 0
                }]
            ),
            Err(SelectError::SegmentOutOfBounds { .. })
        ));
    }

    #[test]
    fn autodiff_scores_give_a_mask() {
        let device = Device::flex().autodiff();
        let t = Tensor::<1>::from_data(TensorData::new(vec![0.5f32, 2.0, 1.0], [3]), &device)
            .require_grad();
        let sel = top_k_mask(t.abs(), None, 1).unwrap();
        assert_eq!(bools(sel.mask), [false, true, false]);
    }

    #[test]
    fn random_on_flex_equals_reference() {
        let device = Device::flex();
        let segments = [RandomSegment {
            offset: 3,
            len: 40,
            k: 10,
            stream: 5,
        }];
        let mask = random_top_k_mask(1, 2, 50, None, &segments, &device).unwrap();
        let expect =
            cpu_reference::random_mask::segmented_random_top_k_mask(1, 2, 50, None, &segments)
                .unwrap();
        assert_eq!(bools(mask), expect);
        let keys = philox_u32(1, 2, 50, &segments, &device).unwrap();
        let keys: Vec<u32> = keys.into_data().convert::<u32>().try_into_vec().unwrap();
        assert_eq!(keys, crate::cpu::philox_u32(1, 2, 50, &segments).unwrap());
    }
}
