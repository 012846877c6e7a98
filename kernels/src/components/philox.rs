//! Philox-4x32-10 inside kernels (see [`crate::cpu_reference::philox`]).

use super::{BLOCK_WORDS, CUBE_SIZE, TILES};
use cubecl::prelude::*;

/// The first output word of Philox-4x32-10 for `counter = [c0, c1, c2, c3]`,
/// `key = [k0, k1]`.
#[cube]
pub fn philox4x32_10_first(c0: u32, c1: u32, c2: u32, c3: u32, k0: u32, k1: u32) -> u32 {
    let m0 = 0xD251_1F53u32;
    let m1 = 0xCD9E_8D57u32;
    let mut x0 = c0;
    let mut x1 = c1;
    let mut x2 = c2;
    let mut x3 = c3;
    let mut y0 = k0;
    let mut y1 = k1;
    #[unroll]
    for _ in 0..10u32 {
        let hi0 = x0.mul_hi(m0);
        let lo0 = x0 * m0;
        let hi1 = x2.mul_hi(m1);
        let lo1 = x2 * m1;
        let n0 = hi1 ^ x1 ^ y0;
        let n2 = hi0 ^ x3 ^ y1;
        x0 = n0;
        x1 = lo1;
        x2 = n2;
        x3 = lo0;
        y0 += 0x9E37_79B9u32;
        y1 += 0xBB67_AE85u32;
    }
    x0
}

/// Every cube fills its block with the Philox samples of its segment: position `offset + j`
/// gets the sample at `(seed, streams[segment], step, j)`.
#[cube(launch)]
pub fn philox_keys(
    blocks: &[u32],
    streams: &[u32],
    output: &mut [u32],
    key0: u32,
    key1: u32,
    step: u32,
) {
    let n_blocks = blocks.len() / BLOCK_WORDS;
    if CUBE_POS < n_blocks {
        let b = CUBE_POS * BLOCK_WORDS;
        let seg = blocks[b] as usize;
        let start = blocks[b + 1] as usize;
        let end = blocks[b + 2] as usize;
        let base = blocks[b + 3] as usize;
        let stream = streams[seg];
        for t in 0..TILES {
            let i = start + t * CUBE_SIZE as usize + UNIT_POS as usize;
            if i < end {
                let local = (i - base) as u32;
                output[i] = philox4x32_10_first(local, 0u32, step, stream, key0, key1);
            }
        }
    }
}
