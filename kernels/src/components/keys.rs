//! Order-preserving keys inside kernels (see [`crate::cpu_reference::keys`]).

use cubecl::prelude::*;

/// Whether the bits of an `f32` are a NaN.
#[cube]
pub fn is_nan_bits(bits: u32) -> bool {
    (bits & 0x7FFF_FFFFu32) > 0x7F80_0000u32
}

/// The order-preserving key of the (non-NaN) `f32` with these bits.
#[cube]
pub fn f32_bits_key(bits: u32) -> u32 {
    let mut key = bits | 0x8000_0000u32;
    if (bits & 0x8000_0000u32) != 0u32 {
        key = bits ^ 0xFFFF_FFFFu32;
    }
    key
}

/// How input words become keys: `u32` keys as they are.
pub const KEYS_U32: u32 = 0;
/// `f32` scores, through their order-preserving keys.
pub const KEYS_F32: u32 = 1;
/// `f32` scores by magnitude: the key of `|x|` (the sign bit cleared).
pub const KEYS_F32_ABS: u32 = 2;

/// Classify the input word at `i`: 0 when ineligible, 1 when NaN, 2 when it has a key.
// The outer conditions are resolved when the kernel is expanded; they stay separate.
#[allow(clippy::collapsible_if)]
#[cube]
pub fn classify<E: Numeric>(
    input: &[u32],
    eligible: &[E],
    i: usize,
    #[comptime] key_kind: u32,
    #[comptime] has_eligible: bool,
) -> u32 {
    let mut class = 2u32;
    if comptime!(has_eligible) {
        if eligible[i] == E::from_int(0) {
            class = 0u32;
        }
    }
    if comptime!(key_kind != KEYS_U32) {
        if class == 2u32 && is_nan_bits(input[i]) {
            class = 1u32;
        }
    }
    class
}

/// The key of the input word at `i` (meaningful when [`classify`] returned 2).
#[cube]
pub fn key_at(input: &[u32], i: usize, #[comptime] key_kind: u32) -> u32 {
    let mut key = input[i];
    if comptime!(key_kind == KEYS_F32_ABS) {
        key &= 0x7FFF_FFFFu32;
    }
    if comptime!(key_kind != KEYS_U32) {
        key = f32_bits_key(key);
    }
    key
}
