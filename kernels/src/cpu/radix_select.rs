//! Segmented top-k by a one-digit radix select: the fast CPU path.
//!
//! Per segment, in two passes over the scores:
//!
//! 1. a histogram of the top 16 bits (12 bits below 2^18 positions, so that the bins stay in
//!    cache) of every eligible non-NaN key (parallel over chunks), which also counts NaN and
//!    eligible positions; a scan from the highest bin down finds the bin `b` that holds the
//!    `k`-th largest key;
//! 2. every key whose top bits exceed `b` is selected, and the keys in bin `b` are collected
//!    as packed `(!key, index)` words, of which a linear-time `select_nth_unstable` takes the
//!    ones still missing, ties to the lower index.
//!
//! Segments whose layout is disjoint are processed in parallel; large segments are also split
//! into chunks. Segments under 4,096 positions go straight to the packed selection of the
//! reference. The result equals [`crate::cpu_reference::top_k_mask`] bit for bit.

use crate::cpu_reference::keys::f32_key;
use crate::cpu_reference::philox::Philox;
use crate::cpu_reference::random_mask::RandomSegment;
use crate::cpu_reference::top_k_mask::{Segment, SegmentedSelection, SelectError};
use rayon::prelude::*;

/// Segments shorter than this use the packed selection directly.
const SMALL_SEGMENT: usize = 1 << 12;
/// Segments shorter than this histogram a 12-bit digit (4,096 bins, cache-resident); longer
/// ones a 16-bit digit.
const MEDIUM_SEGMENT: usize = 1 << 18;
/// Elements per parallel task when generating keys.
const CHUNK: usize = 1 << 17;
/// The fewest elements worth a parallel task of the radix passes.
const MIN_CHUNK: usize = 1 << 16;
/// Bits of the radix digit (the top bits of a key) for a segment of `len` positions.
fn digit_bits(len: usize) -> u32 {
    if len < MEDIUM_SEGMENT { 12 } else { 16 }
}

/// Where the keys of a segment come from.
pub(crate) trait KeySource: Sync {
    /// Whether a key costs about as much as reading it: then ineligible positions are computed
    /// and weighted by zero (branch-free, for random eligibility masks) instead of skipped.
    const CHEAP: bool;

    /// The key at flat position `i` (local index `local` in its segment), or `None` for NaN.
    fn key(&self, i: usize, local: usize) -> Option<u32>;
}

pub(crate) struct F32Keys<'a>(pub(crate) &'a [f32]);

impl KeySource for F32Keys<'_> {
    const CHEAP: bool = true;

    #[inline(always)]
    fn key(&self, i: usize, _local: usize) -> Option<u32> {
        f32_key(self.0[i])
    }
}

/// `f32` scores compared by magnitude: the key of `|x|`.
pub(crate) struct AbsF32Keys<'a>(pub(crate) &'a [f32]);

impl KeySource for AbsF32Keys<'_> {
    const CHEAP: bool = true;

    #[inline(always)]
    fn key(&self, i: usize, _local: usize) -> Option<u32> {
        f32_key(self.0[i].abs())
    }
}

struct U32Keys<'a>(&'a [u32]);

impl KeySource for U32Keys<'_> {
    const CHEAP: bool = true;

    #[inline(always)]
    fn key(&self, i: usize, _local: usize) -> Option<u32> {
        Some(self.0[i])
    }
}

pub(crate) struct PhiloxKeys {
    pub(crate) generator: Philox,
    pub(crate) stream: u32,
    pub(crate) step: u32,
}

impl KeySource for PhiloxKeys {
    const CHEAP: bool = false;

    #[inline(always)]
    fn key(&self, _i: usize, local: usize) -> Option<u32> {
        Some(self.generator.u32(self.stream, self.step, local as u64))
    }
}

/// Per-segment counts of a selection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentCounts {
    /// Eligible positions whose score is NaN.
    pub nan: usize,
    /// Eligible positions with a non-NaN score: the most that can be selected.
    pub available: usize,
}

#[inline]
fn pack(key: u32, local: usize) -> u64 {
    ((!key as u64) << 32) | local as u64
}

/// Select the `k` best of the packed words, marking them in `out` (indexed by local index).
fn mark_best(mut packed: Vec<u64>, k: usize, out: &mut [bool]) {
    if k == 0 {
        return;
    }
    if k < packed.len() {
        packed.select_nth_unstable(k - 1);
    }
    for p in &packed[..k] {
        out[(*p & 0xFFFF_FFFF) as usize] = true;
    }
}

/// Select the top `k` of one segment: `out` is the segment's slice of the mask, `offset` its
/// first flat position. Only sets flags; a `k` above the available count selects nothing.
pub(crate) fn select_segment<S: KeySource>(
    source: &S,
    eligible: Option<&[bool]>,
    offset: usize,
    k: usize,
    out: &mut [bool],
) -> SegmentCounts {
    let len = out.len();
    let valid = |local: usize| eligible.is_none_or(|e| e[offset + local]);
    if len < SMALL_SEGMENT {
        let mut packed = Vec::with_capacity(len);
        let mut nan = 0;
        for local in 0..len {
            if !valid(local) {
                continue;
            }
            match source.key(offset + local, local) {
                Some(key) => packed.push(pack(key, local)),
                None => nan += 1,
            }
        }
        let counts = SegmentCounts {
            nan,
            available: packed.len(),
        };
        if k <= packed.len() {
            mark_best(packed, k, out);
        }
        return counts;
    }

    // One task per chunk, a few per thread: each owns its histogram.
    let tasks = (rayon::current_num_threads() * 2).clamp(1, len.div_ceil(MIN_CHUNK));
    let chunk = len.div_ceil(tasks);

    let bits = digit_bits(len);
    let bins = 1usize << bits;
    let shift = 32 - bits;

    // Pass 1: histogram of the top `bits` bits, NaN count.
    let partial: Vec<(Vec<u32>, usize)> = (0..tasks)
        .into_par_iter()
        .map(|t| {
            let lo = t * chunk;
            let hi = (lo + chunk).min(len);
            let mut hist = vec![0u32; bins];
            let mut nan = 0usize;
            let mut add = |local: usize| match source.key(offset + local, local) {
                Some(key) => hist[(key >> shift) as usize] += 1,
                None => nan += 1,
            };
            match eligible {
                None => (lo..hi).for_each(&mut add),
                Some(e) if S::CHEAP => {
                    for local in lo..hi {
                        let w = e[offset + local] as u32;
                        match source.key(offset + local, local) {
                            Some(key) => hist[(key >> shift) as usize] += w,
                            None => nan += w as usize,
                        }
                    }
                }
                Some(e) => (lo..hi).filter(|&l| e[offset + l]).for_each(&mut add),
            }
            (hist, nan)
        })
        .collect();
    let mut parts = partial.into_iter();
    let (mut hist, mut nan) = parts.next().unwrap_or_else(|| (vec![0u32; bins], 0));
    for (h, n) in parts {
        for (x, y) in hist.iter_mut().zip(&h) {
            *x += *y;
        }
        nan += n;
    }
    let available: usize = hist.iter().map(|&h| h as usize).sum();
    let counts = SegmentCounts { nan, available };
    if k == 0 || k > available {
        return counts;
    }

    // The bin holding the k-th largest key, and how many keys lie above it.
    let mut above = 0usize;
    let mut bin = 0usize;
    for b in (0..bins).rev() {
        let h = hist[b] as usize;
        if above + h >= k {
            bin = b;
            break;
        }
        above += h;
    }
    let take = k - above;
    let bin = bin as u32;

    // Pass 2: select everything above the bin, collect the bin's candidates.
    let candidates: Vec<Vec<u64>> = out
        .par_chunks_mut(chunk)
        .enumerate()
        .map(|(c, part)| {
            let lo = c * chunk;
            let mut cand = Vec::new();
            let mut visit = |j: usize, o: &mut bool| {
                let local = lo + j;
                if let Some(key) = source.key(offset + local, local) {
                    let top = key >> shift;
                    // Branch-free: about a third of the flags are set, in random order.
                    *o |= top > bin;
                    if top == bin {
                        cand.push(pack(key, local));
                    }
                }
            };
            match eligible {
                None => part.iter_mut().enumerate().for_each(|(j, o)| visit(j, o)),
                Some(e) if S::CHEAP => {
                    for (j, o) in part.iter_mut().enumerate() {
                        let local = lo + j;
                        let el = e[offset + local];
                        if let Some(key) = source.key(offset + local, local) {
                            let top = key >> shift;
                            *o |= el & (top > bin);
                            if el & (top == bin) {
                                cand.push(pack(key, local));
                            }
                        }
                    }
                }
                Some(e) => part
                    .iter_mut()
                    .enumerate()
                    .filter(|(j, _)| e[offset + lo + j])
                    .for_each(|(j, o)| visit(j, o)),
            }
            cand
        })
        .collect();
    let candidates: Vec<u64> = candidates.concat();
    mark_best(candidates, take, out);
    counts
}

/// Whether the segments are sorted by offset and do not overlap.
fn disjoint_in_order(spans: &[(usize, usize)]) -> bool {
    spans.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0)
}

pub(crate) fn check_bounds(spans: &[(usize, usize)], total: usize) -> Result<(), SelectError> {
    for (si, &(offset, len)) in spans.iter().enumerate() {
        let end = offset.saturating_add(len);
        if end > total {
            return Err(SelectError::SegmentOutOfBounds {
                segment: si,
                end,
                len: total,
            });
        }
        if len as u64 > 1 << 32 {
            return Err(SelectError::SegmentTooLong { segment: si, len });
        }
    }
    Ok(())
}

/// Run `select` on every segment, in parallel when the segments are disjoint.
pub(crate) fn for_each_segment<F>(
    spans: &[(usize, usize)],
    mask: &mut [bool],
    select: F,
) -> Vec<SegmentCounts>
where
    F: Fn(usize, &mut [bool]) -> SegmentCounts + Sync,
{
    if disjoint_in_order(spans) {
        let mut slices = Vec::with_capacity(spans.len());
        let mut rest: &mut [bool] = mask;
        let mut consumed = 0;
        for &(offset, len) in spans {
            let tail = core::mem::take(&mut rest);
            let (_, tail) = tail.split_at_mut(offset - consumed);
            let (seg, tail) = tail.split_at_mut(len);
            slices.push(seg);
            rest = tail;
            consumed = offset + len;
        }
        slices
            .into_par_iter()
            .enumerate()
            .map(|(si, out)| select(si, out))
            .collect()
    } else {
        spans
            .iter()
            .enumerate()
            .map(|(si, &(offset, len))| select(si, &mut mask[offset..offset + len]))
            .collect()
    }
}

/// Turn per-segment counts into the first `KTooLarge` error, if any.
fn check_counts(
    ks: impl Iterator<Item = usize>,
    counts: &[SegmentCounts],
) -> Result<(), SelectError> {
    for (si, (k, c)) in ks.zip(counts).enumerate() {
        if k > c.available {
            return Err(SelectError::KTooLarge {
                segment: si,
                k,
                available: c.available,
            });
        }
    }
    Ok(())
}

/// Segmented top-k over `f32` scores that never fails on counts: segments whose `k` exceeds
/// their available positions select nothing, and the counts tell which.
///
/// # Errors
/// [`SelectError`] for a malformed layout (out of bounds, too long, wrong eligibility length).
pub fn segmented_top_k_counts(
    scores: &[f32],
    eligible: Option<&[bool]>,
    segments: &[Segment],
) -> Result<(Vec<bool>, Vec<SegmentCounts>), SelectError> {
    segmented_counts(&F32Keys(scores), scores.len(), eligible, segments)
}

/// [`segmented_top_k_counts`] by magnitude: selects the largest `|score|`, as if the scores
/// were `scores.map(f32::abs)`, without that copy.
///
/// # Errors
/// [`SelectError`] for a malformed layout.
pub fn segmented_top_k_counts_abs(
    scores: &[f32],
    eligible: Option<&[bool]>,
    segments: &[Segment],
) -> Result<(Vec<bool>, Vec<SegmentCounts>), SelectError> {
    segmented_counts(&AbsF32Keys(scores), scores.len(), eligible, segments)
}

fn segmented_counts<S: KeySource>(
    source: &S,
    len: usize,
    eligible: Option<&[bool]>,
    segments: &[Segment],
) -> Result<(Vec<bool>, Vec<SegmentCounts>), SelectError> {
    check_eligible(eligible, len)?;
    let spans: Vec<(usize, usize)> = segments.iter().map(|s| (s.offset, s.len)).collect();
    check_bounds(&spans, len)?;
    let mut mask = vec![false; len];
    let counts = for_each_segment(&spans, &mut mask, |si, out| {
        let s = &segments[si];
        select_segment(source, eligible, s.offset, s.k, out)
    });
    Ok((mask, counts))
}

pub(crate) fn check_eligible(eligible: Option<&[bool]>, len: usize) -> Result<(), SelectError> {
    match eligible {
        Some(e) if e.len() != len => Err(SelectError::EligibleLength {
            eligible: e.len(),
            scores: len,
        }),
        _ => Ok(()),
    }
}

/// Segmented top-k over `f32` scores; the same contract and result as
/// [`crate::cpu_reference::top_k_mask::segmented_top_k_mask`], computed by radix select.
///
/// # Errors
/// As the reference.
pub fn segmented_top_k_mask(
    scores: &[f32],
    eligible: Option<&[bool]>,
    segments: &[Segment],
) -> Result<SegmentedSelection, SelectError> {
    let (mask, counts) = segmented_top_k_counts(scores, eligible, segments)?;
    check_counts(segments.iter().map(|s| s.k), &counts)?;
    Ok(SegmentedSelection {
        mask,
        nan_counts: counts.iter().map(|c| c.nan).collect(),
    })
}

/// Segmented top-k over `u32` keys (larger key wins, ties to the lower index).
///
/// # Errors
/// As [`segmented_top_k_mask`].
pub fn segmented_top_k_mask_u32(
    keys: &[u32],
    eligible: Option<&[bool]>,
    segments: &[Segment],
) -> Result<Vec<bool>, SelectError> {
    let (mask, counts) = segmented_top_k_counts_u32(keys, eligible, segments)?;
    check_counts(segments.iter().map(|s| s.k), &counts)?;
    Ok(mask)
}

/// [`segmented_top_k_mask_u32`] that reports counts instead of failing on them.
///
/// # Errors
/// [`SelectError`] for a malformed layout.
pub fn segmented_top_k_counts_u32(
    keys: &[u32],
    eligible: Option<&[bool]>,
    segments: &[Segment],
) -> Result<(Vec<bool>, Vec<SegmentCounts>), SelectError> {
    check_eligible(eligible, keys.len())?;
    let spans: Vec<(usize, usize)> = segments.iter().map(|s| (s.offset, s.len)).collect();
    check_bounds(&spans, keys.len())?;
    let mut mask = vec![false; keys.len()];
    let source = U32Keys(keys);
    let counts = for_each_segment(&spans, &mut mask, |si, out| {
        let s = &segments[si];
        select_segment(&source, eligible, s.offset, s.k, out)
    });
    Ok((mask, counts))
}

/// Random segmented selection, the same contract and result as
/// [`crate::cpu_reference::random_mask::segmented_random_top_k_mask`]; Philox samples are
/// generated on the fly, never stored.
///
/// # Errors
/// As the reference.
pub fn segmented_random_top_k_mask(
    seed: u64,
    step: u32,
    len: usize,
    eligible: Option<&[bool]>,
    segments: &[RandomSegment],
) -> Result<Vec<bool>, SelectError> {
    let (mask, counts) = segmented_random_top_k_counts(seed, step, len, eligible, segments)?;
    check_counts(segments.iter().map(|s| s.k), &counts)?;
    Ok(mask)
}

/// [`segmented_random_top_k_mask`] that reports counts instead of failing on them.
///
/// # Errors
/// [`SelectError`] for a malformed layout.
pub fn segmented_random_top_k_counts(
    seed: u64,
    step: u32,
    len: usize,
    eligible: Option<&[bool]>,
    segments: &[RandomSegment],
) -> Result<(Vec<bool>, Vec<SegmentCounts>), SelectError> {
    check_eligible(eligible, len)?;
    let spans: Vec<(usize, usize)> = segments.iter().map(|s| (s.offset, s.len)).collect();
    check_bounds(&spans, len)?;
    let mut mask = vec![false; len];
    let generator = Philox::new(seed);
    let counts = for_each_segment(&spans, &mut mask, |si, out| {
        let s = &segments[si];
        let source = PhiloxKeys {
            generator,
            stream: s.stream,
            step,
        };
        select_segment(&source, eligible, s.offset, s.k, out)
    });
    Ok((mask, counts))
}

/// The Philox samples of a flat buffer of `len` positions: position `offset + i` of a segment
/// gets the sample at local index `i` of its stream; positions outside every segment get 0.
/// Later segments overwrite earlier ones where they overlap.
///
/// # Errors
/// [`SelectError::SegmentOutOfBounds`] or [`SelectError::SegmentTooLong`].
pub fn philox_u32(
    seed: u64,
    step: u32,
    len: usize,
    segments: &[RandomSegment],
) -> Result<Vec<u32>, SelectError> {
    let spans: Vec<(usize, usize)> = segments.iter().map(|s| (s.offset, s.len)).collect();
    check_bounds(&spans, len)?;
    let mut out = vec![0u32; len];
    let generator = Philox::new(seed);
    for s in segments {
        out[s.offset..s.offset + s.len]
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| {
                for (j, o) in chunk.iter_mut().enumerate() {
                    *o = generator.u32(s.stream, step, (c * CHUNK + j) as u64);
                }
            });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_reference::{random_mask, top_k_mask};

    fn lcg(n: usize, seed: u64, modulus: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) % modulus) as f32 - (modulus / 2) as f32
            })
            .collect()
    }

    #[test]
    fn large_segments_equal_reference() {
        // Few distinct values: the threshold bin holds many ties.
        for modulus in [3u64, 1000, 1 << 30] {
            let scores = lcg(100_000, modulus, modulus);
            let eligible: Vec<bool> = (0..scores.len()).map(|i| i % 7 != 3).collect();
            let segments = [
                Segment {
                    offset: 0,
                    len: 60_000,
                    k: 12_345,
                },
                Segment {
                    offset: 60_000,
                    len: 40_000,
                    k: 1,
                },
            ];
            for e in [None, Some(&eligible[..])] {
                assert_eq!(
                    segmented_top_k_mask(&scores, e, &segments),
                    top_k_mask::segmented_top_k_mask(&scores, e, &segments)
                );
            }
        }
    }

    #[test]
    fn overlapping_segments_select_the_union_like_the_reference() {
        let scores = lcg(30_000, 5, 100);
        let segments = [
            Segment {
                offset: 0,
                len: 20_000,
                k: 500,
            },
            Segment {
                offset: 10_000,
                len: 20_000,
                k: 7_000,
            },
        ];
        assert_eq!(
            segmented_top_k_mask(&scores, None, &segments),
            top_k_mask::segmented_top_k_mask(&scores, None, &segments)
        );
    }

    #[test]
    fn k_too_large_is_reported_per_segment() {
        let scores = vec![f32::NAN; 20_000];
        let segments = [Segment {
            offset: 0,
            len: 20_000,
            k: 1,
        }];
        assert_eq!(
            segmented_top_k_mask(&scores, None, &segments),
            Err(SelectError::KTooLarge {
                segment: 0,
                k: 1,
                available: 0
            })
        );
        let (mask, counts) = segmented_top_k_counts(&scores, None, &segments).unwrap();
        assert!(mask.iter().all(|m| !m));
        assert_eq!(
            counts,
            [SegmentCounts {
                nan: 20_000,
                available: 0
            }]
        );
    }

    #[test]
    fn random_equals_reference() {
        let segments = [
            RandomSegment {
                offset: 0,
                len: 50_000,
                k: 20_000,
                stream: 3,
            },
            RandomSegment {
                offset: 50_000,
                len: 100,
                k: 7,
                stream: 4,
            },
        ];
        let eligible: Vec<bool> = (0..50_100).map(|i| i % 3 != 0).collect();
        for e in [None, Some(&eligible[..])] {
            assert_eq!(
                segmented_random_top_k_mask(9, 2, 50_100, e, &segments),
                random_mask::segmented_random_top_k_mask(9, 2, 50_100, e, &segments)
            );
        }
        let keys = philox_u32(9, 2, 50_100, &segments).unwrap();
        let mut expect = vec![0; 100];
        Philox::new(9).fill_u32(4, 2, &mut expect);
        assert_eq!(&keys[50_000..], &expect[..]);
    }
}
