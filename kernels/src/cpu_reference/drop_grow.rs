//! The drop-and-grow decision of SET, SNFS and RigL for many segments (layers): the CPU
//! reference.
//!
//! Per segment of a flat buffer (reference semantics, section 4):
//!
//! ```text
//! keep  = the `keep` largest |weights| among the active positions of `mask`   (drop the rest)
//! grow  = the `grow` best grow scores among the positions not kept
//!         (and, without `allow_regrow`, not active before either)
//! new mask = keep | grow;   reset = grow & !mask   (new connections)
//! ```
//!
//! Both selections are [`segmented_top_k_mask`] (ties to the lower index, NaN never selected);
//! random growth is [`segmented_random_top_k_mask`] with the segment's stream. Positions outside
//! every segment are not part of any layer: they end up inactive. Segments must be disjoint and
//! in order. This function composes the two selections; [`crate::cpu::drop_grow()`] computes the
//! same decision and counts in fewer passes, and [`crate::drop_grow()`] runs it on any device.

use super::random_mask::{RandomSegment, segmented_random_top_k_mask};
use super::top_k_mask::{Segment, SelectError, segmented_top_k_mask};

/// One layer of a drop-and-grow decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DropGrowSegment {
    /// First position of the layer in the flat buffers.
    pub offset: usize,
    /// Number of positions of the layer.
    pub len: usize,
    /// Active connections kept (the largest |weight| among the active ones).
    pub keep: usize,
    /// Connections grown among the positions not kept.
    pub grow: usize,
    /// The generator stream of random growth (e.g. [`super::philox::stream_id`] of the path).
    pub stream: u32,
}

/// How grown positions are ranked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrowBy {
    /// The grow scores, larger first (IEEE-754 total order).
    Scores,
    /// The magnitude of the grow scores, larger first (RigL's |gradient|, SNFS's |average|).
    Magnitude,
    /// Philox samples at `(seed, segment stream, step, local index)` (SET).
    Random {
        /// Seed of the generator.
        seed: u64,
        /// Step of the generator's key.
        step: u32,
    },
}

/// What a decision did to one segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DropGrowCounts {
    /// Active positions after the decision.
    pub active: usize,
    /// New connections: grown positions that were not active before.
    pub new: usize,
    /// Positions active before and not after.
    pub dropped: usize,
    /// Active positions whose weight is NaN (never kept).
    pub nan_weights: usize,
    /// Candidate positions for growth whose grow score is NaN (never grown).
    pub nan_scores: usize,
}

/// A drop-and-grow decision over a flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropGrowDecision {
    /// The new mask.
    pub mask: Vec<bool>,
    /// New connections (`grown & !old mask`): where weights start at their initial value and
    /// optimizer state is zeroed.
    pub reset: Vec<bool>,
    /// Per segment.
    pub counts: Vec<DropGrowCounts>,
}

/// Segments of a decision must be disjoint and in order (one per layer).
///
/// # Errors
/// [`SelectError::OverlappingSegments`] naming the first segment that starts before the end of
/// the previous one.
pub fn check_disjoint(segments: &[DropGrowSegment]) -> Result<(), SelectError> {
    let mut end = 0usize;
    for (si, s) in segments.iter().enumerate() {
        if s.offset < end {
            return Err(SelectError::OverlappingSegments { segment: si });
        }
        end = s.offset.saturating_add(s.len);
    }
    Ok(())
}

/// The drop-and-grow decision of every segment (see the module docs). `scores` are the grow
/// scores (ignored, and may be `None`, for random growth).
///
/// # Errors
/// [`SelectError`] when the buffers differ in length, the segments overlap or are out of
/// order, a segment is out of bounds, or a segment's `keep` (or `grow`) exceeds its active non-NaN weights (or its candidates for
/// growth): the segment is named, as in the selections.
///
/// # Panics
/// If `scores` is `None` for growth by scores or magnitude.
pub fn drop_grow(
    weights: &[f32],
    mask: &[bool],
    scores: Option<&[f32]>,
    grow_by: GrowBy,
    segments: &[DropGrowSegment],
    allow_regrow: bool,
) -> Result<DropGrowDecision, SelectError> {
    let len = weights.len();
    if mask.len() != len {
        return Err(SelectError::EligibleLength {
            eligible: mask.len(),
            scores: len,
        });
    }
    check_disjoint(segments)?;
    let magnitudes: Vec<f32> = weights.iter().map(|w| w.abs()).collect();
    let keep_segments: Vec<Segment> = segments
        .iter()
        .map(|s| Segment {
            offset: s.offset,
            len: s.len,
            k: s.keep,
        })
        .collect();
    let kept = segmented_top_k_mask(&magnitudes, Some(mask), &keep_segments)?;
    let eligible: Vec<bool> = kept
        .mask
        .iter()
        .zip(mask)
        .map(|(k, m)| !k && (allow_regrow || !m))
        .collect();
    let grow_segments: Vec<Segment> = segments
        .iter()
        .map(|s| Segment {
            offset: s.offset,
            len: s.len,
            k: s.grow,
        })
        .collect();
    let (grown, nan_scores) = match grow_by {
        GrowBy::Random { seed, step } => {
            let random: Vec<RandomSegment> = segments
                .iter()
                .map(|s| RandomSegment {
                    offset: s.offset,
                    len: s.len,
                    k: s.grow,
                    stream: s.stream,
                })
                .collect();
            let grown = segmented_random_top_k_mask(seed, step, len, Some(&eligible), &random)?;
            (grown, vec![0; segments.len()])
        }
        GrowBy::Scores | GrowBy::Magnitude => {
            let scores = scores.expect("growth by scores needs scores");
            if scores.len() != len {
                return Err(SelectError::EligibleLength {
                    eligible: scores.len(),
                    scores: len,
                });
            }
            let scores: Vec<f32> = if grow_by == GrowBy::Magnitude {
                scores.iter().map(|s| s.abs()).collect()
            } else {
                scores.to_vec()
            };
            let grown = segmented_top_k_mask(&scores, Some(&eligible), &grow_segments)?;
            (grown.mask, grown.nan_counts)
        }
    };
    let new_mask: Vec<bool> = kept
        .mask
        .iter()
        .zip(&grown)
        .map(|(k, g)| *k || *g)
        .collect();
    let reset: Vec<bool> = grown.iter().zip(mask).map(|(g, m)| *g && !m).collect();
    let counts = segments
        .iter()
        .enumerate()
        .map(|(si, s)| {
            let range = s.offset..s.offset + s.len;
            let count = |f: &dyn Fn(usize) -> bool| range.clone().filter(|&i| f(i)).count();
            DropGrowCounts {
                active: count(&|i| new_mask[i]),
                new: count(&|i| reset[i]),
                dropped: count(&|i| mask[i] && !new_mask[i]),
                nan_weights: kept.nan_counts[si],
                nan_scores: nan_scores[si],
            }
        })
        .collect();
    Ok(DropGrowDecision {
        mask: new_mask,
        reset,
        counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(offset: usize, len: usize, keep: usize, grow: usize) -> DropGrowSegment {
        DropGrowSegment {
            offset,
            len,
            keep,
            grow,
            stream: 7,
        }
    }

    #[test]
    fn drops_smallest_grows_best_outside_kept() {
        // 8 positions, active 0..4 with |w| 4, 3, 2, 1: keep 2 (positions 0, 1), grow 2.
        let w = [4.0, -3.0, 2.0, 1.0, 9.0, 9.0, 9.0, 9.0];
        let m = [true, true, true, true, false, false, false, false];
        // Best grow scores at 0 (kept: excluded), then 3 (dropped: may regrow) and 6.
        let g = [100.0, 0.0, -5.0, 50.0, 0.5, 0.0, 40.0, 0.0];
        let d = drop_grow(&w, &m, Some(&g), GrowBy::Scores, &[seg(0, 8, 2, 2)], true).unwrap();
        let on: Vec<usize> = (0..8).filter(|&i| d.mask[i]).collect();
        assert_eq!(on, [0, 1, 3, 6]);
        let new: Vec<usize> = (0..8).filter(|&i| d.reset[i]).collect();
        assert_eq!(new, [6], "3 was dropped and regrown: not new");
        assert_eq!(
            d.counts,
            [DropGrowCounts {
                active: 4,
                new: 1,
                dropped: 1,
                nan_weights: 0,
                nan_scores: 0
            }]
        );
        // By magnitude, -5 at position 2 beats 0.5; without regrowth 2 and 3 are out.
        let d = drop_grow(
            &w,
            &m,
            Some(&g),
            GrowBy::Magnitude,
            &[seg(0, 8, 2, 2)],
            false,
        )
        .unwrap();
        let on: Vec<usize> = (0..8).filter(|&i| d.mask[i]).collect();
        assert_eq!(on, [0, 1, 4, 6]);
        assert_eq!(d.counts[0].new, 2);
        assert_eq!(d.counts[0].dropped, 2);
    }

    #[test]
    fn random_growth_and_errors_name_the_segment() {
        let w: Vec<f32> = (0..40).map(|i| i as f32).collect();
        let m: Vec<bool> = (0..40).map(|i| i % 4 == 0).collect();
        let segments = [seg(0, 20, 3, 2), seg(20, 20, 4, 1)];
        let a = drop_grow(
            &w,
            &m,
            None,
            GrowBy::Random { seed: 1, step: 2 },
            &segments,
            true,
        );
        let b = drop_grow(
            &w,
            &m,
            None,
            GrowBy::Random { seed: 1, step: 2 },
            &segments,
            true,
        );
        assert_eq!(a, b);
        let a = a.unwrap();
        assert_eq!(a.counts[0].active, 5);
        assert_eq!(a.counts[1].active, 5);
        // Keeping more than the layer has active is an error naming the layer.
        let bad = [seg(0, 20, 3, 2), seg(20, 20, 6, 0)];
        assert_eq!(
            drop_grow(&w, &m, Some(&w), GrowBy::Scores, &bad, true),
            Err(SelectError::KTooLarge {
                segment: 1,
                k: 6,
                available: 5
            })
        );
    }
}
