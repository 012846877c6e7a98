//! Random segmented masks: the CPU reference.
//!
//! Every position of a segment gets the Philox sample at `(seed, stream, step, local index)`
//! (see [`super::philox`]) and the segment's `k` largest samples win, ties to the lower index
//! (see [`super::top_k_mask::top_k_mask_u32`]). The result depends on nothing but the key, so
//! every device, run and replica draws the same mask.

use super::philox::Philox;
use super::top_k_mask::{SelectError, top_k_mask_u32};

/// One segment of a random selection: `len` positions from `offset`, `k` of them selected,
/// drawn from the generator stream `stream` (e.g. [`super::philox::stream_id`] of a parameter
/// path).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RandomSegment {
    /// First position of the segment in the flat buffer.
    pub offset: usize,
    /// Number of positions in the segment.
    pub len: usize,
    /// How many positions to select.
    pub k: usize,
    /// The generator stream of the segment.
    pub stream: u32,
}

/// The Philox samples of one segment: `out[i]` is the sample at local index `i` of `stream`.
pub fn philox_keys(seed: u64, stream: u32, step: u32, out: &mut [u32]) {
    Philox::new(seed).fill_u32(stream, step, out);
}

/// Random segmented selection over a flat buffer of `len` positions.
///
/// Positions outside every segment, and ineligible positions, are never selected. Overlapping
/// segments select the union of their selections.
///
/// # Errors
/// [`SelectError`] when a segment is out of bounds or too long, the eligibility mask does not
/// have `len` entries, or a segment's `k` exceeds its eligible positions.
pub fn segmented_random_top_k_mask(
    seed: u64,
    step: u32,
    len: usize,
    eligible: Option<&[bool]>,
    segments: &[RandomSegment],
) -> Result<Vec<bool>, SelectError> {
    if let Some(e) = eligible
        && e.len() != len
    {
        return Err(SelectError::EligibleLength {
            eligible: e.len(),
            scores: len,
        });
    }
    let mut mask = vec![false; len];
    for (si, s) in segments.iter().enumerate() {
        let end = s.offset.saturating_add(s.len);
        if end > len {
            return Err(SelectError::SegmentOutOfBounds {
                segment: si,
                end,
                len,
            });
        }
        let mut keys = vec![0u32; s.len];
        philox_keys(seed, s.stream, step, &mut keys);
        let local = top_k_mask_u32(&keys, eligible.map(|e| &e[s.offset..end]), s.k).map_err(
            |e| match e {
                SelectError::KTooLarge { k, available, .. } => SelectError::KTooLarge {
                    segment: si,
                    k,
                    available,
                },
                SelectError::SegmentTooLong { len, .. } => {
                    SelectError::SegmentTooLong { segment: si, len }
                }
                other => other,
            },
        )?;
        for (m, l) in mask[s.offset..end].iter_mut().zip(local) {
            *m |= l;
        }
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_reference::philox::stream_id;

    #[test]
    fn single_segment_is_philox_then_top_k() {
        let stream = stream_id("fc1.weight");
        let mask = segmented_random_top_k_mask(
            7,
            3,
            100,
            None,
            &[RandomSegment {
                offset: 0,
                len: 100,
                k: 30,
                stream,
            }],
        )
        .unwrap();
        let mut keys = vec![0; 100];
        Philox::new(7).fill_u32(stream, 3, &mut keys);
        assert_eq!(mask, top_k_mask_u32(&keys, None, 30).unwrap());
        assert_eq!(mask.iter().filter(|m| **m).count(), 30);
    }

    #[test]
    fn eligibility_and_errors() {
        let eligible: Vec<bool> = (0..10).map(|i| i % 2 == 0).collect();
        let seg = RandomSegment {
            offset: 2,
            len: 8,
            k: 4,
            stream: 1,
        };
        let mask = segmented_random_top_k_mask(1, 0, 10, Some(&eligible), &[seg]).unwrap();
        assert_eq!(mask.iter().filter(|m| **m).count(), 4);
        assert!(mask.iter().zip(&eligible).all(|(m, e)| !*m || *e));
        assert!(!mask[0]);
        let too_many = RandomSegment { k: 5, ..seg };
        assert_eq!(
            segmented_random_top_k_mask(1, 0, 10, Some(&eligible), &[seg, too_many]),
            Err(SelectError::KTooLarge {
                segment: 1,
                k: 5,
                available: 4
            })
        );
    }
}
