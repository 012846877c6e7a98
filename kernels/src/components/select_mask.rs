//! The final pass: write the mask from the resolved thresholds.

use super::keys::{classify, key_at};
use super::{BLOCK_WORDS, CUBE_SIZE, STATE_WORDS, TILES, state};
use cubecl::prelude::*;

/// Every cube writes the mask of its block: a position is selected when its segment resolved
/// to "at or above" and its composite key, on the resolved bits, is at or above the prefix.
/// With `write_zeros` every position of the block is written (the segments tile the output);
/// otherwise only selected positions are, over a zero-filled output (gaps and overlaps).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn select_mask<E: Numeric, O: Numeric>(
    input: &[u32],
    eligible: &[E],
    blocks: &[u32],
    seg_state: &[u32],
    output: &mut [O],
    idx_max: u32,
    write_zeros: u32,
    #[comptime] key_kind: u32,
    #[comptime] has_eligible: bool,
    #[define(E, O)] _dtypes: [ElemType; 2],
) {
    let n_blocks = blocks.len() / BLOCK_WORDS;
    if CUBE_POS < n_blocks {
        let b = CUBE_POS * BLOCK_WORDS;
        let seg = blocks[b] as usize;
        let start = blocks[b + 1] as usize;
        let end = blocks[b + 2] as usize;
        let base = blocks[b + 3] as usize;
        let s = seg * STATE_WORDS;
        let mode = seg_state[s + state::MODE];
        let prefix_hi = seg_state[s + state::PREFIX_HI];
        let prefix_lo = seg_state[s + state::PREFIX_LO];
        let mask_hi = seg_state[s + state::MASK_HI];
        let mask_lo = seg_state[s + state::MASK_LO];
        for t in 0..TILES {
            let i = start + t * CUBE_SIZE as usize + UNIT_POS as usize;
            if i < end {
                let mut selected = false;
                if mode == 1u32 {
                    let class = classify::<E>(input, eligible, i, key_kind, has_eligible);
                    if class == 2u32 {
                        let key = key_at(input, i, key_kind) & mask_hi;
                        if key > prefix_hi {
                            selected = true;
                        } else if key == prefix_hi {
                            let d = idx_max - (i - base) as u32;
                            selected = (d & mask_lo) >= prefix_lo;
                        }
                    }
                }
                if selected {
                    output[i] = O::from_int(1);
                } else if write_zeros == 1u32 {
                    output[i] = O::from_int(0);
                }
            }
        }
    }
}
