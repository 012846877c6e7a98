//! Philox-4x32-10, the counter-based random number generator of Salmon et al. (SC'11).
//!
//! Every random number is a pure function of `(seed, segment, step, index)`: no state advances,
//! so any element can be drawn on any device in any order and the result is the same. Mask
//! initialisation and SET growth draw their scores from here.
//!
//! Layout: key = `[seed low 32 bits, seed high 32 bits]`, counter =
//! `[index low, index high, step, segment]`; the first output word is the sample.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = (a as u64) * (b as u64);
    ((p >> 32) as u32, p as u32)
}

/// One Philox-4x32 block with 10 rounds.
#[inline]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = counter;
    let [mut k0, mut k1] = key;
    for round in 0..10 {
        if round > 0 {
            k0 = k0.wrapping_add(W0);
            k1 = k1.wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, c0);
        let (hi1, lo1) = mulhilo(M1, c2);
        let n0 = hi1 ^ c1 ^ k0;
        let n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
    }
    [c0, c1, c2, c3]
}

/// A 32-bit stream identifier for a name (FNV-1a), used to key a parameter path.
pub fn stream_id(name: &str) -> u32 {
    let mut h: u32 = 0x811C_9DC5;
    for b in name.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// A keyed view of the generator: `seed` fixed, samples addressed by `(segment, step, index)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Philox {
    key: [u32; 2],
}

impl Philox {
    /// The generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            key: [seed as u32, (seed >> 32) as u32],
        }
    }

    /// The uniform `u32` at `(segment, step, index)`.
    #[inline]
    pub fn u32(&self, segment: u32, step: u32, index: u64) -> u32 {
        philox4x32_10(
            [index as u32, (index >> 32) as u32, step, segment],
            self.key,
        )[0]
    }

    /// A uniform float in `[0, 1)` with 24 random bits at `(segment, step, index)`.
    #[inline]
    pub fn uniform(&self, segment: u32, step: u32, index: u64) -> f32 {
        (self.u32(segment, step, index) >> 8) as f32 * (1.0 / 16_777_216.0)
    }

    /// Fill `out` with the `u32` samples at indices `0..out.len()` of `(segment, step)`.
    pub fn fill_u32(&self, segment: u32, step: u32, out: &mut [u32]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.u32(segment, step, i as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of the Random123 distribution (`kat_vectors`, philox4x32_10).
    #[test]
    fn random123_known_answers() {
        assert_eq!(
            philox4x32_10([0, 0, 0, 0], [0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn streams_are_distinct_and_stable() {
        let g = Philox::new(42);
        assert_eq!(g.u32(1, 0, 7), Philox::new(42).u32(1, 0, 7));
        assert_ne!(g.u32(1, 0, 7), g.u32(2, 0, 7));
        assert_ne!(g.u32(1, 0, 7), g.u32(1, 1, 7));
        assert_ne!(g.u32(1, 0, 7), Philox::new(43).u32(1, 0, 7));
        assert_eq!(stream_id(""), 0x811C_9DC5);
        assert_eq!(stream_id("a"), 0xE40C_292C);
    }

    #[test]
    fn uniform_is_in_unit_interval_with_plausible_mean() {
        let g = Philox::new(7);
        let n = 100_000;
        let mut sum = 0.0f64;
        for i in 0..n {
            let u = g.uniform(3, 5, i);
            assert!((0.0..1.0).contains(&u));
            sum += u as f64;
        }
        let mean = sum / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
    }
}
