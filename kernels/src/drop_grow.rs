//! The drop-and-grow decision of SET, SNFS and RigL on any device: the tensor API.
//!
//! One call decides every layer: which active connections are kept (largest |weight|), which
//! positions are grown (by score, by magnitude or at random), the new connections, and per
//! layer what changed. On the CPU backend the fast CPU path ([`crate::cpu::drop_grow()`]) reads
//! the tensors in place and makes the whole decision and its counts in a few passes; on wgpu and
//! CUDA the selection kernels run on the device and only the per-layer counts come back. Equal
//! to [`crate::cpu_reference::drop_grow`] bit for bit on every device.

use crate::backend::{DROP_GROW_COUNTS, SelectBackend};
use crate::cpu_reference::drop_grow::{DropGrowCounts, DropGrowSegment, GrowBy, check_disjoint};
use crate::cpu_reference::top_k_mask::SelectError;
use crate::select::{check_layout, restore_autodiff};
use burn::backend::Dispatch;
use burn::tensor::{Bool, DType, Int, Tensor};

/// What grown positions are ranked by.
#[derive(Clone, Debug)]
pub enum Growth {
    /// These scores, larger first.
    Scores(Tensor<1>),
    /// The magnitude of these values, larger first, without an `abs` pass (RigL's gradient,
    /// SNFS's moving average).
    Magnitude(Tensor<1>),
    /// Philox samples at `(seed, segment stream, step, local index)` (SET).
    Random {
        /// Seed of the generator.
        seed: u64,
        /// Step of the generator's key.
        step: u32,
    },
}

/// A drop-and-grow decision on a device.
#[derive(Clone, Debug)]
pub struct DropGrow {
    /// The new mask, on the device of the weights.
    pub mask: Tensor<1, Bool>,
    /// The new connections (grown, not active before).
    pub reset: Tensor<1, Bool>,
    /// What changed, per segment.
    pub counts: Vec<DropGrowCounts>,
}

fn f32_without_autodiff(t: Tensor<1>) -> Tensor<1> {
    let t = t.without_autodiff();
    if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(DType::F32)
    }
}

/// The drop-and-grow decision of every segment of the flat `weights` and `mask` (see
/// [`crate::cpu_reference::drop_grow`]): per segment the `keep` largest |weight| among its
/// active positions stay, and `grow` positions are grown among the rest (without
/// `allow_regrow`, among the positions that were not active either).
///
/// # Errors
/// [`SelectError`] when the mask or the scores do not have one entry per weight, the segments
/// overlap, are out of order, out of bounds or too long, the buffer is too long, or a segment's
/// `keep` exceeds its active non-NaN weights (or its `grow` its candidates with a non-NaN
/// score); the segment is named.
pub fn drop_grow(
    weights: Tensor<1>,
    mask: Tensor<1, Bool>,
    growth: Growth,
    segments: &[DropGrowSegment],
    allow_regrow: bool,
) -> Result<DropGrow, SelectError> {
    let total = weights.dims()[0];
    if mask.dims()[0] != total {
        return Err(SelectError::EligibleLength {
            eligible: mask.dims()[0],
            scores: total,
        });
    }
    check_disjoint(segments)?;
    check_layout(segments.iter().map(|s| (s.offset, s.len)), total, None)?;
    if let Some((si, s)) = segments
        .iter()
        .enumerate()
        .find(|(_, s)| s.len as u64 > 1 << 32)
    {
        return Err(SelectError::SegmentTooLong {
            segment: si,
            len: s.len,
        });
    }
    let autodiff = weights.is_autodiff();
    let weights = f32_without_autodiff(weights);
    let (scores, grow_by) = match growth {
        Growth::Scores(s) => (s, GrowBy::Scores),
        Growth::Magnitude(s) => (s, GrowBy::Magnitude),
        Growth::Random { seed, step } => (weights.clone(), GrowBy::Random { seed, step }),
    };
    if scores.dims()[0] != total {
        return Err(SelectError::EligibleLength {
            eligible: scores.dims()[0],
            scores: total,
        });
    }
    let bool_dtype = weights.device().settings().bool_dtype;
    let (new_mask, reset, counts) = <Dispatch as SelectBackend>::drop_grow(
        weights.into_dispatch(),
        mask.without_autodiff().into_dispatch(),
        f32_without_autodiff(scores).into_dispatch(),
        grow_by,
        segments.to_vec(),
        allow_regrow,
        bool_dtype,
    );
    let counts: Vec<usize> = Tensor::<1, Int>::from_dispatch(counts)
        .into_data()
        .convert::<u32>()
        .try_into_vec::<u32>()
        .expect("u32 counts")
        .into_iter()
        .map(|c| c as usize)
        .collect();
    let rows: Vec<&[usize]> = counts.chunks_exact(DROP_GROW_COUNTS).collect();
    // The keep selection of every segment comes before the growth, as in the reference.
    for (si, (s, c)) in segments.iter().zip(&rows).enumerate() {
        if s.keep > c[1] {
            return Err(SelectError::KTooLarge {
                segment: si,
                k: s.keep,
                available: c[1],
            });
        }
    }
    for (si, (s, c)) in segments.iter().zip(&rows).enumerate() {
        if s.grow > c[3] {
            return Err(SelectError::KTooLarge {
                segment: si,
                k: s.grow,
                available: c[3],
            });
        }
    }
    let counts = segments
        .iter()
        .zip(&rows)
        .map(|(s, c)| {
            let (keep_nan, keep_available, grow_nan, new) = (c[0], c[1], c[2], c[5]);
            // Kept and grown positions are disjoint; the active positions before are the keep
            // selection's candidates, and a grown position that is not new was active before.
            DropGrowCounts {
                active: s.keep + s.grow,
                new,
                dropped: keep_nan + keep_available - s.keep - (s.grow - new),
                nan_weights: keep_nan,
                nan_scores: grow_nan,
            }
        })
        .collect();
    Ok(DropGrow {
        mask: restore_autodiff(Tensor::<1, Bool>::from_dispatch(new_mask), autodiff),
        reset: restore_autodiff(Tensor::<1, Bool>::from_dispatch(reset), autodiff),
        counts,
    })
}

/// Equivalence with the reference on every device is in `tests/equivalence.rs`.
#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn errors_are_typed() {
        let device = Device::flex();
        let w = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [4]), &device);
        let m = Tensor::<1, Bool>::from_data(
            TensorData::new(vec![true, true, false, false], [4]),
            &device,
        );
        let seg = |offset, len, keep, grow| DropGrowSegment {
            offset,
            len,
            keep,
            grow,
            stream: 0,
        };
        let random = || Growth::Random { seed: 1, step: 1 };
        let err = |segments: &[DropGrowSegment]| {
            drop_grow(w.clone(), m.clone(), random(), segments, true).unwrap_err()
        };
        assert_eq!(
            err(&[seg(0, 4, 3, 0)]),
            SelectError::KTooLarge {
                segment: 0,
                k: 3,
                available: 2
            }
        );
        assert_eq!(
            err(&[seg(0, 4, 1, 4)]),
            SelectError::KTooLarge {
                segment: 0,
                k: 4,
                available: 3
            }
        );
        assert_eq!(
            err(&[seg(0, 2, 1, 0), seg(1, 2, 0, 0)]),
            SelectError::OverlappingSegments { segment: 1 }
        );
        assert!(matches!(
            err(&[seg(2, 4, 0, 0)]),
            SelectError::SegmentOutOfBounds { .. }
        ));
        let short = Tensor::<1>::from_data(TensorData::new(vec![1.0f32], [1]), &device);
        assert!(matches!(
            drop_grow(
                w.clone(),
                m.clone(),
                Growth::Scores(short),
                &[seg(0, 4, 1, 1)],
                true
            ),
            Err(SelectError::EligibleLength { .. })
        ));
    }
}
