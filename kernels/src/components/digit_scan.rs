//! Per-segment scan over the digit bins: find the bin of the `k`-th largest key.

use super::{BINS, HIST_STRIDE, STATE_WORDS, state};
use cubecl::prelude::*;

/// One cube per segment, one unit per bin. A suffix scan over the bins gives, for each bin,
/// how many matching keys lie in it or above; the one bin where that count first reaches the
/// remaining `k` extends the segment's prefix. When the bin is taken whole the segment is
/// resolved (select everything at or above the prefix); otherwise `k` shrinks by the keys
/// above the bin and the next pass refines it. The histogram is cleared for the next pass.
///
/// On the `first` pass the segment's NaN and available counts are written to `counts`
/// (`[nan, available]` per segment), a `k` above the available count marks the segment as an
/// error, and `k = 0` resolves it to "select nothing".
// Compound assignment on buffer elements is spelled out for the kernel expansion.
#[allow(clippy::assign_op_pattern)]
#[cube(launch)]
pub fn digit_scan(
    hist: &[Atomic<u32>],
    seg_state: &mut [u32],
    counts: &mut [u32],
    word: u32,
    shift: u32,
    first: u32,
) {
    let seg = CUBE_POS;
    let unit = UNIT_POS as usize;
    let s = seg * STATE_WORDS;
    let h = seg * HIST_STRIDE;
    let active = seg_state[s + state::ACTIVE] == 1u32;
    let k = seg_state[s + state::K];

    let mut sums = Shared::<[u32]>::new_slice(BINS);
    sums[unit] = hist[h + unit].load();
    hist[h + unit].store(0u32);
    sync_cube();
    #[unroll]
    for step in 0..8u32 {
        let offset = 1usize << step as usize;
        let mut v = sums[unit];
        if unit + offset < BINS {
            v += sums[unit + offset];
        }
        sync_cube();
        sums[unit] = v;
        sync_cube();
    }
    let total = sums[0];
    let at_or_above = sums[unit];
    let mut above = 0u32;
    if unit + 1 < BINS {
        above = sums[unit + 1];
    }

    if first == 1u32 && unit == 0 {
        counts[seg * 2] = hist[h + BINS].load();
        counts[seg * 2 + 1] = total;
        hist[h + BINS].store(0u32);
    }
    if active {
        if first == 1u32 && k > total {
            if unit == 0 {
                seg_state[s + state::ACTIVE] = 0u32;
                seg_state[s + state::MODE] = 0u32;
                seg_state[s + state::ERROR] = 1u32;
            }
        } else if k == 0u32 {
            if unit == 0 {
                seg_state[s + state::ACTIVE] = 0u32;
                seg_state[s + state::MODE] = 0u32;
            }
        } else if at_or_above >= k && above < k {
            let digit = (unit as u32) << shift;
            let bits = 0xFFu32 << shift;
            if word == 0u32 {
                seg_state[s + state::PREFIX_HI] = seg_state[s + state::PREFIX_HI] | digit;
                seg_state[s + state::MASK_HI] = seg_state[s + state::MASK_HI] | bits;
            } else {
                seg_state[s + state::PREFIX_LO] = seg_state[s + state::PREFIX_LO] | digit;
                seg_state[s + state::MASK_LO] = seg_state[s + state::MASK_LO] | bits;
            }
            if at_or_above == k {
                seg_state[s + state::ACTIVE] = 0u32;
                seg_state[s + state::MODE] = 1u32;
            } else {
                seg_state[s + state::K] = k - above;
            }
        }
    }
}
