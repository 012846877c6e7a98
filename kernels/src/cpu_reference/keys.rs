//! Order-preserving `u32` keys for `f32` scores.
//!
//! Selection compares keys, never floats: `a < b` as keys iff `a < b` in IEEE-754 total order
//! (`f32::total_cmp`), so `-0.0 < +0.0`, denormals and infinities order as numbers, and every
//! comparison is exact and identical on every device. NaN has no key: it is never selected.

/// The order-preserving key of `x`, or `None` when `x` is NaN.
///
/// Positive floats get their bits with the sign bit set; negative floats get their bits
/// inverted. The result orders like [`f32::total_cmp`].
#[inline]
pub fn f32_key(x: f32) -> Option<u32> {
    if x.is_nan() {
        return None;
    }
    let bits = x.to_bits();
    Some(if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    })
}

/// The float whose key is `key` (the inverse of [`f32_key`]).
#[inline]
pub fn key_f32(key: u32) -> f32 {
    let bits = if key & 0x8000_0000 != 0 {
        key & 0x7fff_ffff
    } else {
        !key
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_total_order() {
        let values = [
            f32::NEG_INFINITY,
            -1.0e30,
            -1.0,
            -f32::MIN_POSITIVE,
            -1.0e-45, // negative denormal
            -0.0,
            0.0,
            1.0e-45, // positive denormal
            f32::MIN_POSITIVE,
            1.0,
            1.0e30,
            f32::INFINITY,
        ];
        let keys: Vec<u32> = values.iter().map(|v| f32_key(*v).unwrap()).collect();
        for w in keys.windows(2) {
            assert!(w[0] < w[1], "{keys:?}");
        }
        for v in values {
            assert_eq!(key_f32(f32_key(v).unwrap()).to_bits(), v.to_bits());
        }
    }

    #[test]
    fn nan_has_no_key() {
        assert_eq!(f32_key(f32::NAN), None);
        assert_eq!(f32_key(-f32::NAN), None);
        assert_eq!(f32_key(f32::from_bits(0x7fc0_0001)), None);
    }
}
