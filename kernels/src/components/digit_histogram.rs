//! Per-segment digit histograms in shared memory.

use super::keys::{classify, key_at};
use super::{BINS, BLOCK_WORDS, CUBE_SIZE, HIST_STRIDE, STATE_WORDS, TILES, state};
use cubecl::prelude::*;

/// One pass of the radix select: every cube histograms the current digit of the composite keys
/// of its block that match its segment's resolved prefix, in shared memory, and adds the
/// non-zero bins to the segment's global histogram.
///
/// `word` picks the key word (0) or the index word (1) and `shift` the digit in it;
/// `idx_max` is the all-ones value of the index word (the index word of local index `j` is
/// `idx_max - j`). On the `first` pass every eligible NaN is counted in the extra bin.
/// Segments already resolved are skipped.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn digit_histogram<E: Numeric>(
    input: &[u32],
    eligible: &[E],
    blocks: &[u32],
    seg_state: &[u32],
    hist: &[Atomic<u32>],
    word: u32,
    shift: u32,
    idx_max: u32,
    first: u32,
    #[comptime] key_kind: u32,
    #[comptime] has_eligible: bool,
    #[define(E)] _eligible_dtype: ElemType,
) {
    let local = Shared::<[Atomic<u32>]>::new_slice(HIST_STRIDE);
    let unit = UNIT_POS as usize;
    local[unit].store(0u32);
    if unit == 0 {
        local[BINS].store(0u32);
    }

    let n_blocks = blocks.len() / BLOCK_WORDS;
    let mut active = false;
    let mut seg = 0usize;
    let mut start = 0usize;
    let mut end = 0usize;
    let mut base = 0usize;
    if CUBE_POS < n_blocks {
        let b = CUBE_POS * BLOCK_WORDS;
        seg = blocks[b] as usize;
        start = blocks[b + 1] as usize;
        end = blocks[b + 2] as usize;
        base = blocks[b + 3] as usize;
        active = seg_state[seg * STATE_WORDS + state::ACTIVE] == 1u32;
    }
    let s = seg * STATE_WORDS;
    let prefix_hi = seg_state[s + state::PREFIX_HI];
    let prefix_lo = seg_state[s + state::PREFIX_LO];
    let mask_hi = seg_state[s + state::MASK_HI];
    let mask_lo = seg_state[s + state::MASK_LO];
    sync_cube();

    if active {
        for t in 0..TILES {
            let i = start + t * CUBE_SIZE as usize + unit;
            if i < end {
                let class = classify::<E>(input, eligible, i, key_kind, has_eligible);
                if class == 2u32 {
                    let key = key_at(input, i, key_kind);
                    let d = idx_max - (i - base) as u32;
                    if (key & mask_hi) == prefix_hi && (d & mask_lo) == prefix_lo {
                        let mut w = key;
                        if word == 1u32 {
                            w = d;
                        }
                        let bin = ((w >> shift) & 0xFFu32) as usize;
                        local[bin].fetch_add(1u32);
                    }
                } else if class == 1u32 && first == 1u32 {
                    local[BINS].fetch_add(1u32);
                }
            }
        }
    }
    sync_cube();

    if active {
        let h = seg * HIST_STRIDE;
        let v = local[unit].load();
        if v != 0u32 {
            hist[h + unit].fetch_add(v);
        }
        if unit == 0 {
            let nan = local[BINS].load();
            if nan != 0u32 {
                hist[h + BINS].fetch_add(nan);
            }
        }
    }
}
