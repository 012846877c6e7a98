//! Initial masks with exact counts: random (counter-based) or by magnitude.

use crate::error::{Result, SparsityError};
use rigl_kernels::{Philox, stream_id, top_k_mask_f32, top_k_mask_u32};

/// A mask of `n` entries with exactly `n_active` set, placed uniformly at random by the
/// counter-based generator keyed by `(seed, path, step)`.
///
/// Every position gets a Philox sample and the `n_active` largest win (ties to the lower
/// index), so the result depends on nothing but the key: the same on every device, run and
/// replica.
///
/// # Errors
/// [`SparsityError::Select`] when `n_active > n`.
pub fn random_mask(
    seed: u64,
    path: &str,
    step: u32,
    n: usize,
    n_active: usize,
) -> Result<Vec<bool>> {
    let mut keys = vec![0u32; n];
    Philox::new(seed).fill_u32(stream_id(path), step, &mut keys);
    top_k_mask_u32(&keys, None, n_active).map_err(|source| SparsityError::Select {
        path: path.to_string(),
        source,
    })
}

/// A mask keeping the `n_active` weights of largest magnitude (ties to the lower index).
///
/// # Errors
/// [`SparsityError::Select`] when fewer than `n_active` weights are not NaN.
pub fn magnitude_mask(path: &str, weights: &[f32], n_active: usize) -> Result<Vec<bool>> {
    let scores: Vec<f32> = weights.iter().map(|w| w.abs()).collect();
    top_k_mask_f32(&scores, None, n_active)
        .map(|s| s.mask)
        .map_err(|source| SparsityError::Select {
            path: path.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ones(m: &[bool]) -> usize {
        m.iter().filter(|&&b| b).count()
    }

    #[test]
    fn exact_counts() {
        assert_eq!(ones(&random_mask(0, "a", 0, 120, 60).unwrap()), 60);
        assert_eq!(ones(&random_mask(0, "b", 0, 8, 2).unwrap()), 2);
        assert_eq!(ones(&random_mask(0, "c", 0, 30, 27).unwrap()), 27);
        assert_eq!(ones(&random_mask(0, "d", 0, 5, 0).unwrap()), 0);
        assert_eq!(ones(&random_mask(0, "d", 0, 5, 5).unwrap()), 5);
        assert!(random_mask(0, "d", 0, 5, 6).is_err());
    }

    #[test]
    fn keyed_by_seed_path_and_step() {
        let a = random_mask(1, "fc1.weight", 0, 1000, 100).unwrap();
        assert_eq!(a, random_mask(1, "fc1.weight", 0, 1000, 100).unwrap());
        assert_ne!(a, random_mask(2, "fc1.weight", 0, 1000, 100).unwrap());
        assert_ne!(a, random_mask(1, "fc2.weight", 0, 1000, 100).unwrap());
        assert_ne!(a, random_mask(1, "fc1.weight", 1, 1000, 100).unwrap());
    }

    #[test]
    fn placement_is_roughly_uniform() {
        // Over many seeds every position is chosen with frequency close to k/n.
        let (n, k, trials) = (50, 10, 2000);
        let mut hits = vec![0usize; n];
        for seed in 0..trials {
            for (i, b) in random_mask(seed, "x", 0, n, k).unwrap().iter().enumerate() {
                hits[i] += *b as usize;
            }
        }
        let expect = trials as f64 * k as f64 / n as f64; // 400
        for h in hits {
            assert!((h as f64 - expect).abs() < 80.0, "{h} vs {expect}");
        }
    }

    #[test]
    fn magnitude_keeps_largest() {
        let w = [0.1, -3.0, 2.0, -0.5, 2.0];
        assert_eq!(
            magnitude_mask("w", &w, 2).unwrap(),
            [false, true, true, false, false]
        );
        assert!(magnitude_mask("w", &[f32::NAN, 1.0], 2).is_err());
    }
}
