//! The drop-and-grow decision on the CPU: the fast path of
//! [`crate::cpu_reference::drop_grow`], equal to it bit for bit.
//!
//! The two selections are the radix selects of [`super::radix_select`], run straight on the
//! weights, the mask and the grow scores (magnitudes and Philox samples computed as they are
//! read); the eligibility for growth, the new mask, the new connections and the per-segment
//! counts each take one parallel pass over flags. Nothing else is allocated.

use super::radix_select::{
    AbsF32Keys, F32Keys, PhiloxKeys, SegmentCounts, check_bounds, check_eligible, for_each_segment,
    select_segment,
};
use crate::cpu_reference::drop_grow::{
    DropGrowCounts, DropGrowDecision, DropGrowSegment, GrowBy, check_disjoint,
};
use crate::cpu_reference::philox::Philox;
use crate::cpu_reference::top_k_mask::SelectError;
use rayon::prelude::*;

/// Flags per parallel task of the flag passes.
const FLAG_CHUNK: usize = 1 << 16;

/// What the decision did to one segment, with the counts of both selections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropGrowOutcome {
    /// The selection of kept connections: NaN weights and available (active, non-NaN) ones.
    pub keep: SegmentCounts,
    /// The selection of grown positions: NaN scores and available candidates.
    pub grow: SegmentCounts,
    /// Active positions after the decision.
    pub active: usize,
    /// New connections.
    pub new: usize,
    /// Positions active before and not after.
    pub dropped: usize,
}

impl DropGrowOutcome {
    /// The counts of the decision.
    pub fn counts(&self) -> DropGrowCounts {
        DropGrowCounts {
            active: self.active,
            new: self.new,
            dropped: self.dropped,
            nan_weights: self.keep.nan,
            nan_scores: self.grow.nan,
        }
    }
}

/// A decision on the host, with the counts of both selections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropGrowFlags {
    /// The new mask.
    pub mask: Vec<bool>,
    /// The new connections.
    pub reset: Vec<bool>,
    /// Per segment.
    pub outcomes: Vec<DropGrowOutcome>,
}

/// The decision, its new connections and per-segment outcomes; never fails on counts (a
/// segment whose `keep` or `grow` exceeds what it has selects nothing in that selection, and
/// its outcome tells), only on a malformed layout.
///
/// # Errors
/// [`SelectError`] when the buffers differ in length, the segments overlap or are out of order,
/// or a segment is out of bounds or too long.
///
/// # Panics
/// If `scores` is `None` for growth by scores or magnitude.
pub fn drop_grow_counts(
    weights: &[f32],
    mask: &[bool],
    scores: Option<&[f32]>,
    grow_by: GrowBy,
    segments: &[DropGrowSegment],
    allow_regrow: bool,
) -> Result<DropGrowFlags, SelectError> {
    let len = weights.len();
    check_eligible(Some(mask), len)?;
    check_disjoint(segments)?;
    let spans: Vec<(usize, usize)> = segments.iter().map(|s| (s.offset, s.len)).collect();
    check_bounds(&spans, len)?;
    let scores = match grow_by {
        GrowBy::Random { .. } => None,
        _ => {
            let s = scores.expect("growth by scores needs scores");
            if s.len() != len {
                return Err(SelectError::EligibleLength {
                    eligible: s.len(),
                    scores: len,
                });
            }
            Some(s)
        }
    };

    let mut kept = vec![false; len];
    let keep_counts = for_each_segment(&spans, &mut kept, |si, out| {
        let s = &segments[si];
        select_segment(&AbsF32Keys(weights), Some(mask), s.offset, s.keep, out)
    });

    let mut eligible = vec![false; len];
    eligible
        .par_chunks_mut(FLAG_CHUNK)
        .zip(kept.par_chunks(FLAG_CHUNK))
        .zip(mask.par_chunks(FLAG_CHUNK))
        .for_each(|((e, k), m)| {
            for ((e, k), m) in e.iter_mut().zip(k).zip(m) {
                *e = !*k & (allow_regrow | !*m);
            }
        });

    let mut grown = vec![false; len];
    let grow_counts = for_each_segment(&spans, &mut grown, |si, out| {
        let s = &segments[si];
        let e = Some(&eligible[..]);
        match (grow_by, scores) {
            (GrowBy::Random { seed, step }, _) => {
                let source = PhiloxKeys {
                    generator: Philox::new(seed),
                    stream: s.stream,
                    step,
                };
                select_segment(&source, e, s.offset, s.grow, out)
            }
            (GrowBy::Magnitude, Some(sc)) => {
                select_segment(&AbsF32Keys(sc), e, s.offset, s.grow, out)
            }
            (_, sc) => select_segment(
                &F32Keys(sc.expect("checked above")),
                e,
                s.offset,
                s.grow,
                out,
            ),
        }
    });
    drop(eligible);

    // The new mask in `kept`, the new connections in `grown`.
    kept.par_chunks_mut(FLAG_CHUNK)
        .zip(grown.par_chunks_mut(FLAG_CHUNK))
        .zip(mask.par_chunks(FLAG_CHUNK))
        .for_each(|((k, g), m)| {
            for ((k, g), m) in k.iter_mut().zip(g.iter_mut()).zip(m) {
                *k |= *g;
                *g &= !*m;
            }
        });

    let outcomes = segments
        .par_iter()
        .enumerate()
        .map(|(si, s)| {
            let range = s.offset..s.offset + s.len;
            let (active, new, dropped) = kept[range.clone()]
                .par_chunks(FLAG_CHUNK)
                .zip(grown[range.clone()].par_chunks(FLAG_CHUNK))
                .zip(mask[range].par_chunks(FLAG_CHUNK))
                .map(|((k, g), m)| {
                    let mut c = (0usize, 0usize, 0usize);
                    for ((k, g), m) in k.iter().zip(g).zip(m) {
                        c.0 += *k as usize;
                        c.1 += *g as usize;
                        c.2 += (*m & !*k) as usize;
                    }
                    c
                })
                .reduce(|| (0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
            DropGrowOutcome {
                keep: keep_counts[si],
                grow: grow_counts[si],
                active,
                new,
                dropped,
            }
        })
        .collect();
    Ok(DropGrowFlags {
        mask: kept,
        reset: grown,
        outcomes,
    })
}

/// The first segment whose `keep` or `grow` exceeds what it has, as the reference reports it.
///
/// # Errors
/// [`SelectError::KTooLarge`] naming the segment.
pub fn check_outcomes(
    segments: &[DropGrowSegment],
    outcomes: &[DropGrowOutcome],
) -> Result<(), SelectError> {
    // The reference runs the keep selection over every segment before the growth.
    for (si, (s, o)) in segments.iter().zip(outcomes).enumerate() {
        if s.keep > o.keep.available {
            return Err(SelectError::KTooLarge {
                segment: si,
                k: s.keep,
                available: o.keep.available,
            });
        }
    }
    for (si, (s, o)) in segments.iter().zip(outcomes).enumerate() {
        if s.grow > o.grow.available {
            return Err(SelectError::KTooLarge {
                segment: si,
                k: s.grow,
                available: o.grow.available,
            });
        }
    }
    Ok(())
}

/// The drop-and-grow decision: the same contract and result as
/// [`crate::cpu_reference::drop_grow::drop_grow`].
///
/// # Errors
/// As the reference.
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
    let flags = drop_grow_counts(weights, mask, scores, grow_by, segments, allow_regrow)?;
    check_outcomes(segments, &flags.outcomes)?;
    Ok(DropGrowDecision {
        counts: flags.outcomes.iter().map(DropGrowOutcome::counts).collect(),
        mask: flags.mask,
        reset: flags.reset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::drop_grow_catalogue;
    use crate::cpu_reference::drop_grow as reference;

    #[test]
    fn equals_reference_over_the_catalogue() {
        let problems = drop_grow_catalogue(100_000);
        assert!(problems.len() > 100);
        let mut changed = 0;
        for p in &problems {
            let args = (&p.weights[..], &p.mask[..], Some(&p.scores[..]));
            let expect = reference::drop_grow(
                args.0,
                args.1,
                args.2,
                p.grow_by,
                &p.segments,
                p.allow_regrow,
            );
            let got = drop_grow(
                args.0,
                args.1,
                args.2,
                p.grow_by,
                &p.segments,
                p.allow_regrow,
            );
            assert_eq!(got, expect, "{}", p.name);
            let d = got.unwrap();
            changed += d.counts.iter().map(|c| c.new).sum::<usize>();
            for (s, c) in p.segments.iter().zip(&d.counts) {
                assert_eq!(c.active, s.keep + s.grow, "{}", p.name);
            }
        }
        assert!(changed > 0);
    }

    #[test]
    fn too_many_kept_or_grown_is_reported_like_the_reference() {
        let w: Vec<f32> = (0..10_000).map(|i| (i % 97) as f32).collect();
        let m: Vec<bool> = (0..10_000).map(|i| i % 10 == 0).collect();
        let seg = |keep, grow| DropGrowSegment {
            offset: 0,
            len: 10_000,
            keep,
            grow,
            stream: 1,
        };
        for segments in [[seg(1001, 0)], [seg(900, 9_101)]] {
            for regrow in [true, false] {
                assert_eq!(
                    drop_grow(&w, &m, Some(&w), GrowBy::Scores, &segments, regrow),
                    reference::drop_grow(&w, &m, Some(&w), GrowBy::Scores, &segments, regrow),
                );
            }
        }
        assert!(drop_grow(&w, &m[..10], Some(&w), GrowBy::Scores, &[], true).is_err());
        let overlapping = [
            seg(0, 0),
            DropGrowSegment {
                offset: 5_000,
                ..seg(0, 0)
            },
        ];
        assert_eq!(
            drop_grow(&w, &m, Some(&w), GrowBy::Scores, &overlapping, true),
            Err(SelectError::OverlappingSegments { segment: 1 })
        );
    }
}
