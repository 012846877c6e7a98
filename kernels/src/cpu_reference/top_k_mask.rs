//! Segmented top-k selection returning masks: the CPU reference.
//!
//! Scores for many segments (layers) live in one flat buffer. For each segment the `k`
//! highest-scoring eligible positions are selected, exactly `k` of them:
//!
//! - scores compare in IEEE-754 total order (see [`f32_key`]): `-0.0 < +0.0`;
//! - ties are broken by the lower index within the segment;
//! - NaN scores are never selected; they are counted per segment and reported;
//! - positions outside every segment, and ineligible positions, are never selected.
//!
//! The work per segment is a linear-time selection (`select_nth_unstable` on packed
//! `(key, index)` words), not a sort.

use super::keys::f32_key;
use core::fmt;

/// One segment of a flat score buffer: `len` scores from `offset`, of which `k` are selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First position of the segment in the flat buffer.
    pub offset: usize,
    /// Number of positions in the segment.
    pub len: usize,
    /// How many positions to select.
    pub k: usize,
}

/// The result of a segmented selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentedSelection {
    /// One flag per position of the flat buffer: selected or not.
    pub mask: Vec<bool>,
    /// Per segment, the number of eligible positions whose score was NaN (never selected).
    pub nan_counts: Vec<usize>,
}

/// Why a selection could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectError {
    /// A segment asks for more positions than it has eligible, non-NaN scores.
    KTooLarge {
        /// Index of the segment.
        segment: usize,
        /// Requested count.
        k: usize,
        /// Eligible positions with a non-NaN score.
        available: usize,
    },
    /// A segment reaches past the end of the score buffer.
    SegmentOutOfBounds {
        /// Index of the segment.
        segment: usize,
        /// One past its last position.
        end: usize,
        /// Length of the score buffer.
        len: usize,
    },
    /// The eligibility mask does not have one entry per score.
    EligibleLength {
        /// Length of the eligibility mask.
        eligible: usize,
        /// Length of the score buffer.
        scores: usize,
    },
    /// A segment is longer than the 2^32 positions a segment may hold.
    SegmentTooLong {
        /// Index of the segment.
        segment: usize,
        /// Its length.
        len: usize,
    },
    /// The flat buffer has more positions than a device selection addresses.
    TooManyPositions {
        /// Length of the buffer.
        len: usize,
        /// The largest supported length.
        max: usize,
    },
    /// A segment starts before the end of the previous one where segments must be disjoint
    /// and in order (a drop-and-grow decision: one segment per layer).
    OverlappingSegments {
        /// Index of the segment.
        segment: usize,
    },
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectError::KTooLarge {
                segment,
                k,
                available,
            } => write!(
                f,
                "segment {segment}: asked to select {k} positions but only {available} are eligible with a finite or infinite (non-NaN) score"
            ),
            SelectError::SegmentOutOfBounds { segment, end, len } => write!(
                f,
                "segment {segment} ends at {end}, past the end of the {len} scores"
            ),
            SelectError::EligibleLength { eligible, scores } => write!(
                f,
                "eligibility mask has {eligible} entries for {scores} scores"
            ),
            SelectError::SegmentTooLong { segment, len } => write!(
                f,
                "segment {segment} has {len} positions; at most 2^32 are supported"
            ),
            SelectError::TooManyPositions { len, max } => write!(
                f,
                "the buffer has {len} positions; at most {max} are supported"
            ),
            SelectError::OverlappingSegments { segment } => write!(
                f,
                "segment {segment} starts before the end of the previous one; the segments of a \
                 drop-and-grow decision must be disjoint and in order"
            ),
        }
    }
}

impl std::error::Error for SelectError {}

/// Select, in one segment, the `k` largest keys among `candidates` (`(key, local index)`),
/// marking them in `out` (indexed by local index). Ties go to the lower index.
fn select_packed(mut packed: Vec<u64>, k: usize, out: &mut [bool]) {
    if k == 0 {
        return;
    }
    if k < packed.len() {
        // Ascending order of `(!key, index)` is descending key, then ascending index.
        packed.select_nth_unstable(k - 1);
    }
    for p in &packed[..k] {
        out[(*p & 0xFFFF_FFFF) as usize] = true;
    }
}

#[inline]
fn pack(key: u32, index: usize) -> u64 {
    ((!key as u64) << 32) | index as u64
}

fn check_segment(segment: usize, s: &Segment, total: usize) -> Result<(), SelectError> {
    let end = s.offset.saturating_add(s.len);
    if end > total {
        return Err(SelectError::SegmentOutOfBounds {
            segment,
            end,
            len: total,
        });
    }
    if s.len as u64 > 1 << 32 {
        return Err(SelectError::SegmentTooLong {
            segment,
            len: s.len,
        });
    }
    Ok(())
}

/// Segmented top-k over `f32` scores.
///
/// `eligible`, when given, has one entry per score; `false` positions are never selected.
///
/// # Errors
/// [`SelectError`] when a segment is out of bounds, the eligibility mask has the wrong length,
/// or a segment's `k` exceeds its eligible non-NaN positions.
pub fn segmented_top_k_mask(
    scores: &[f32],
    eligible: Option<&[bool]>,
    segments: &[Segment],
) -> Result<SegmentedSelection, SelectError> {
    if let Some(e) = eligible
        && e.len() != scores.len()
    {
        return Err(SelectError::EligibleLength {
            eligible: e.len(),
            scores: scores.len(),
        });
    }
    let mut mask = vec![false; scores.len()];
    let mut nan_counts = Vec::with_capacity(segments.len());
    for (si, s) in segments.iter().enumerate() {
        check_segment(si, s, scores.len())?;
        let range = s.offset..s.offset + s.len;
        let mut packed = Vec::with_capacity(s.len);
        let mut nans = 0;
        for (local, &x) in scores[range.clone()].iter().enumerate() {
            if eligible.is_some_and(|e| !e[s.offset + local]) {
                continue;
            }
            match f32_key(x) {
                Some(key) => packed.push(pack(key, local)),
                None => nans += 1,
            }
        }
        if s.k > packed.len() {
            return Err(SelectError::KTooLarge {
                segment: si,
                k: s.k,
                available: packed.len(),
            });
        }
        select_packed(packed, s.k, &mut mask[range]);
        nan_counts.push(nans);
    }
    Ok(SegmentedSelection { mask, nan_counts })
}

/// Top-k over one segment of `f32` scores (see [`segmented_top_k_mask`]).
///
/// # Errors
/// As [`segmented_top_k_mask`].
pub fn top_k_mask_f32(
    scores: &[f32],
    eligible: Option<&[bool]>,
    k: usize,
) -> Result<SegmentedSelection, SelectError> {
    segmented_top_k_mask(
        scores,
        eligible,
        &[Segment {
            offset: 0,
            len: scores.len(),
            k,
        }],
    )
}

/// Top-k over one segment of `u32` keys (larger key wins, ties to the lower index).
///
/// Used for random selection: the keys are samples of the counter-based generator.
///
/// # Errors
/// As [`segmented_top_k_mask`].
pub fn top_k_mask_u32(
    keys: &[u32],
    eligible: Option<&[bool]>,
    k: usize,
) -> Result<Vec<bool>, SelectError> {
    if let Some(e) = eligible
        && e.len() != keys.len()
    {
        return Err(SelectError::EligibleLength {
            eligible: e.len(),
            scores: keys.len(),
        });
    }
    check_segment(
        0,
        &Segment {
            offset: 0,
            len: keys.len(),
            k,
        },
        keys.len(),
    )?;
    let packed: Vec<u64> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| eligible.is_none_or(|e| e[*i]))
        .map(|(i, &key)| pack(key, i))
        .collect();
    if k > packed.len() {
        return Err(SelectError::KTooLarge {
            segment: 0,
            k,
            available: packed.len(),
        });
    }
    let mut mask = vec![false; keys.len()];
    select_packed(packed, k, &mut mask);
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, by a full sort: what the selection must equal.
    fn by_sort(scores: &[f32], eligible: Option<&[bool]>, k: usize) -> Vec<bool> {
        let mut idx: Vec<usize> = (0..scores.len())
            .filter(|&i| eligible.is_none_or(|e| e[i]) && !scores[i].is_nan())
            .collect();
        idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        let mut mask = vec![false; scores.len()];
        for &i in idx.iter().take(k) {
            mask[i] = true;
        }
        mask
    }

    fn count(mask: &[bool]) -> usize {
        mask.iter().filter(|&&m| m).count()
    }

    #[test]
    fn picks_largest_with_ties_to_lower_index() {
        let scores = [1.0, 3.0, 2.0, 3.0, 3.0, -1.0];
        let sel = top_k_mask_f32(&scores, None, 2).unwrap();
        assert_eq!(sel.mask, [false, true, false, true, false, false]);
        let sel = top_k_mask_f32(&scores, None, 4).unwrap();
        assert_eq!(sel.mask, [false, true, true, true, true, false]);
    }

    #[test]
    fn k_zero_and_k_all() {
        let scores = [0.5, -0.5, 0.0];
        assert_eq!(count(&top_k_mask_f32(&scores, None, 0).unwrap().mask), 0);
        assert_eq!(count(&top_k_mask_f32(&scores, None, 3).unwrap().mask), 3);
        assert_eq!(
            top_k_mask_f32(&scores, None, 4),
            Err(SelectError::KTooLarge {
                segment: 0,
                k: 4,
                available: 3
            })
        );
    }

    #[test]
    fn negative_zero_ranks_below_positive_zero() {
        let scores = [-0.0, 0.0, -0.0];
        assert_eq!(
            top_k_mask_f32(&scores, None, 1).unwrap().mask,
            [false, true, false]
        );
    }

    #[test]
    fn nan_is_never_selected_and_is_counted() {
        let scores = [f32::NAN, 1.0, f32::NAN, f32::NEG_INFINITY];
        let sel = top_k_mask_f32(&scores, None, 2).unwrap();
        assert_eq!(sel.mask, [false, true, false, true]);
        assert_eq!(sel.nan_counts, [2]);
        assert!(top_k_mask_f32(&scores, None, 3).is_err());
    }

    #[test]
    fn ineligible_positions_are_skipped() {
        let scores = [9.0, 8.0, 7.0, 6.0];
        let eligible = [false, true, false, true];
        let sel = top_k_mask_f32(&scores, Some(&eligible), 1).unwrap();
        assert_eq!(sel.mask, [false, true, false, false]);
    }

    #[test]
    fn segments_are_independent_and_gaps_unselected() {
        let scores = [1.0, 2.0, 3.0, 100.0, 5.0, 4.0, 6.0];
        let segments = [
            Segment {
                offset: 0,
                len: 3,
                k: 1,
            },
            Segment {
                offset: 4,
                len: 3,
                k: 2,
            },
            Segment {
                offset: 7,
                len: 0,
                k: 0,
            },
        ];
        let sel = segmented_top_k_mask(&scores, None, &segments).unwrap();
        assert_eq!(sel.mask, [false, false, true, false, true, false, true]);
        assert_eq!(sel.nan_counts, [0, 0, 0]);
    }

    #[test]
    fn bad_arguments_are_typed_errors() {
        let scores = [1.0, 2.0];
        assert!(matches!(
            segmented_top_k_mask(
                &scores,
                None,
                &[Segment {
                    offset: 1,
                    len: 2,
                    k: 0
                }]
            ),
            Err(SelectError::SegmentOutOfBounds { end: 3, .. })
        ));
        assert!(matches!(
            top_k_mask_f32(&scores, Some(&[true]), 1),
            Err(SelectError::EligibleLength { .. })
        ));
    }

    #[test]
    fn u32_keys_select_largest() {
        let keys = [5, 9, 9, 1, u32::MAX, 0];
        assert_eq!(
            top_k_mask_u32(&keys, None, 3).unwrap(),
            [false, true, true, false, true, false]
        );
        assert_eq!(
            top_k_mask_u32(&keys, Some(&[true, true, false, true, false, true]), 2).unwrap(),
            [true, true, false, false, false, false]
        );
    }

    proptest! {
        #[test]
        fn equals_full_sort(
            raw in proptest::collection::vec(-4i8..4, 0..200),
            special in proptest::collection::vec(0u8..6, 0..200),
            eligible_bits in proptest::collection::vec(any::<bool>(), 200),
            k_frac in 0.0f64..=1.0,
        ) {
            // Small integer values force many ties; some entries become NaN, inf, -0, denormal.
            let scores: Vec<f32> = raw.iter().enumerate().map(|(i, &r)| {
                match special.get(i).copied().unwrap_or(0) {
                    1 => f32::NAN,
                    2 => f32::INFINITY,
                    3 => -0.0,
                    4 => f32::from_bits(1),
                    _ => r as f32,
                }
            }).collect();
            let eligible = &eligible_bits[..scores.len()];
            let available = scores.iter().zip(eligible).filter(|(s, e)| **e && !s.is_nan()).count();
            let k = ((available as f64) * k_frac).floor() as usize;
            let sel = top_k_mask_f32(&scores, Some(eligible), k).unwrap();
            prop_assert_eq!(count(&sel.mask), k);
            prop_assert_eq!(sel.mask, by_sort(&scores, Some(eligible), k));
        }
    }
}
