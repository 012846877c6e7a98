//! Dropout on the CPU: `y = x / keep` where a counter-based draw keeps the position, `0`
//! elsewhere. The draw of position `i` is word `i mod 4` of Philox4x32-10 at counter
//! `[i / 4 (low, high), 0, 0]` and key `seed`: kept when that word is below `keep * 2^32`. The
//! mask is a function of the seed alone, so the backward regenerates it instead of storing it,
//! and applying the same seed to the output gradient is the backward.

use crate::cpu_reference::philox::philox4x32_10;
use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 16;

/// `x * mask / keep` for the mask of `seed` (see the module docs); `keep` in `(0, 1]`.
pub fn dropout(x: &[f32], keep: f64, seed: u64) -> Vec<f32> {
    let threshold = (keep * 4_294_967_296.0).min(u32::MAX as f64 + 1.0);
    let scale = (1.0 / keep) as f32;
    let key = [seed as u32, (seed >> 32) as u32];
    let mut y = vec![0.0f32; x.len()];
    let fill = |(t, out): (usize, &mut [f32])| {
        let start = t * CHUNK;
        let src = &x[start..start + out.len()];
        for (q, (o, s)) in out.chunks_mut(4).zip(src.chunks(4)).enumerate() {
            let block = (start / 4 + q) as u64;
            let words = philox4x32_10([block as u32, (block >> 32) as u32, 0, 0], key);
            for ((o, &v), &w) in o.iter_mut().zip(s).zip(&words) {
                if (w as f64) < threshold {
                    *o = v * scale;
                }
            }
        }
    };
    if x.len() > CHUNK {
        y.par_chunks_mut(CHUNK).enumerate().for_each(fill);
    } else {
        y.chunks_mut(CHUNK.max(1)).enumerate().for_each(fill);
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_about_the_fraction_and_scales() {
        let x = vec![2.0f32; 200_003];
        let y = dropout(&x, 0.7, 42);
        let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / x.len() as f64;
        assert!((kept - 0.7).abs() < 0.005, "{kept}");
        assert!(
            y.iter()
                .all(|&v| v == 0.0 || v == (2.0 * (1.0 / 0.7f64) as f32))
        );
        // The mask is the seed's: the same seed, the same mask; another seed, another.
        assert_eq!(dropout(&x, 0.7, 42), y);
        assert_ne!(dropout(&x, 0.7, 43), y);
        assert!(dropout(&x, 1.0, 1).iter().all(|&v| v == 2.0));
    }
}
