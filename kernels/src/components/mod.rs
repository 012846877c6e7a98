//! CubeCL kernel building blocks of the segmented radix select.
//!
//! The select works on a composite key per position, `(key, !index)`: the order-preserving
//! `u32` key of the score, then the complement of the position's index in its segment over as
//! many bytes as the longest segment needs. Composite keys are distinct, so "the `k` largest
//! composite keys" is exactly "the `k` largest scores, ties to the lower index". Digits are 8
//! bits, most significant first:
//!
//! - [`digit_histogram`]: per segment, a 256-bin histogram (shared-memory `u32` atomics, flushed
//!   to global `u32` atomics) of the current digit of the keys that match the segment's resolved
//!   prefix; the first pass also counts NaN;
//! - [`digit_scan`]: per segment, a suffix scan over the bins finds the bin holding the `k`-th
//!   largest key, extends the prefix and retires the segment as soon as the bin is taken whole;
//! - [`select_mask`]: writes the mask, `key >= threshold` on the resolved bits;
//! - [`philox`]: the counter-based generator, for random keys;
//! - [`fill`]: zero-fills an output whose segments do not cover it.
//!
//! Every kernel reads the block table built by [`crate::launch`]: each cube handles one block of
//! [`BLOCK_ELEMS`] positions of one segment, so all segments share the same launches.

// The `#[cube]` macro generates launch modules and expand types without docs.
#![allow(missing_docs)]

pub mod digit_histogram;
pub mod digit_scan;
pub mod fill;
pub mod keys;
pub mod philox;
pub mod select_mask;
pub mod sparse_conv2d;
pub mod sparse_linear;

/// Units per cube in every kernel.
pub const CUBE_SIZE: u32 = 256;
/// Tiles of [`CUBE_SIZE`] positions handled by one cube.
pub const TILES: usize = 16;
/// Positions per block (one cube).
pub const BLOCK_ELEMS: usize = CUBE_SIZE as usize * TILES;
/// Bins of one digit.
pub const BINS: usize = 256;
/// Words per segment in the global histogram: the bins, then the NaN count.
pub const HIST_STRIDE: usize = BINS + 1;
/// Words per block in the block table: segment, start, end, segment offset.
pub const BLOCK_WORDS: usize = 4;
/// Words per segment in the search state.
pub const STATE_WORDS: usize = 8;

/// Indices into a segment's search state.
pub mod state {
    /// 1 while the segment's threshold is being searched, 0 once resolved.
    pub const ACTIVE: usize = 0;
    /// How many positions are still to be selected within the resolved prefix.
    pub const K: usize = 1;
    /// Resolved bits of the key word.
    pub const PREFIX_HI: usize = 2;
    /// Resolved bits of the index word.
    pub const PREFIX_LO: usize = 3;
    /// Which bits of the key word are resolved.
    pub const MASK_HI: usize = 4;
    /// Which bits of the index word are resolved.
    pub const MASK_LO: usize = 5;
    /// 0: select nothing; 1: select every key at or above the resolved prefix.
    pub const MODE: usize = 6;
    /// 1 when `k` exceeds the available positions.
    pub const ERROR: usize = 7;
}
