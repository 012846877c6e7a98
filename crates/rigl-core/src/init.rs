//! Initial masks with exact counts: random (counter-based) or by magnitude.

use crate::error::{Result, SparsityError};
use crate::structure::Groups;
use burn::tensor::{Bool, Device, Tensor};
use rigl_kernels::{
    RandomSegment, random_top_k_mask, segmented_top_k_mask_abs, stream_id, top_k_mask_abs,
};

/// A mask of `n` entries with exactly `n_active` set, placed uniformly at random by the
/// counter-based generator keyed by `(seed, path, step)`, on `device`.
///
/// Every position gets a Philox sample and the `n_active` largest win (ties to the lower
/// index), so the result depends on nothing but the key: the same on every device, run and
/// replica. Runs as one [`random_top_k_mask`] selection (the CubeCL kernel on GPU devices).
///
/// # Errors
/// [`SparsityError::Select`] when `n_active > n`.
pub fn random_mask(
    seed: u64,
    path: &str,
    step: u32,
    n: usize,
    n_active: usize,
    device: &Device,
) -> Result<Tensor<1, Bool>> {
    let segment = RandomSegment {
        offset: 0,
        len: n,
        k: n_active,
        stream: stream_id(path),
    };
    random_top_k_mask(seed, step, n, None, &[segment], device).map_err(|source| {
        SparsityError::Select {
            path: path.to_string(),
            source,
        }
    })
}

/// A structured random mask (see [`crate::Structure`]): in the output-major view, every group
/// gets exactly `k` positions, placed uniformly at random by the counter-based generator keyed by
/// `(seed, path and group, step)`; returned in the stored layout, on `device`.
///
/// # Errors
/// [`SparsityError::Select`] when `k` exceeds the group length.
pub fn structured_random_mask(
    seed: u64,
    path: &str,
    step: u32,
    groups: &Groups,
    device: &Device,
) -> Result<Tensor<1, Bool>> {
    let layer = stream_id(path);
    let segments: Vec<RandomSegment> = groups
        .segments(0, |_| groups.k)
        .into_iter()
        .enumerate()
        .map(|(g, s)| RandomSegment {
            offset: s.offset,
            len: s.len,
            k: s.k,
            stream: Groups::stream(layer, g),
        })
        .collect();
    let n = groups.rows * groups.fan_in;
    let view = random_top_k_mask(seed, step, n, None, &segments, device).map_err(|source| {
        SparsityError::Select {
            path: path.to_string(),
            source,
        }
    })?;
    Ok(groups.from_view(view))
}

/// A structured mask keeping, in every group of the output-major view, the `k` weights of
/// largest magnitude (ties to the lower index); `weights` flat in the stored layout, the mask
/// returned in it.
///
/// # Errors
/// [`SparsityError::Select`] when a group has fewer than `k` weights that are not NaN.
pub fn structured_magnitude_mask(
    path: &str,
    weights: Tensor<1>,
    groups: &Groups,
) -> Result<Tensor<1, Bool>> {
    let segments = groups.segments(0, |_| groups.k);
    let view = segmented_top_k_mask_abs(groups.to_view(weights), None, &segments)
        .map_err(|source| SparsityError::Select {
            path: path.to_string(),
            source,
        })?
        .mask;
    Ok(groups.from_view(view))
}

/// A mask keeping the `n_active` weights of largest magnitude (ties to the lower index), on the
/// device of `weights` (flat).
///
/// # Errors
/// [`SparsityError::Select`] when fewer than `n_active` weights are not NaN.
pub fn magnitude_mask(path: &str, weights: Tensor<1>, n_active: usize) -> Result<Tensor<1, Bool>> {
    top_k_mask_abs(weights, None, n_active)
        .map(|s| s.mask)
        .map_err(|source| SparsityError::Select {
            path: path.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::bools_to_host;
    use burn::tensor::TensorData;

    fn random_mask(seed: u64, path: &str, step: u32, n: usize, k: usize) -> Result<Vec<bool>> {
        super::random_mask(seed, path, step, n, k, &Device::default()).map(bools_to_host)
    }

    fn magnitude_mask(path: &str, w: &[f32], k: usize) -> Result<Vec<bool>> {
        let w = Tensor::<1>::from_data(TensorData::new(w.to_vec(), [w.len()]), &Device::default());
        super::magnitude_mask(path, w, k).map(bools_to_host)
    }

    fn ones(m: &[bool]) -> usize {
        m.iter().filter(|&&b| b).count()
    }

    #[test]
    fn equals_the_reference_generator() {
        // One Philox sample per position, the k largest win: the kernels' reference.
        let mut keys = vec![0u32; 300];
        rigl_kernels::Philox::new(7).fill_u32(stream_id("fc1.weight"), 3, &mut keys);
        let expect = rigl_kernels::cpu_reference::top_k_mask_u32(&keys, None, 45).unwrap();
        assert_eq!(random_mask(7, "fc1.weight", 3, 300, 45).unwrap(), expect);
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
    fn structured_masks_keep_every_group() {
        use crate::Structure;
        use crate::distribution::LayerShape;
        let device = Device::default();
        // A Linear [d_in = 16, d_out = 6] at 2:4 and at constant fan-in 3 of 16.
        let shape = LayerShape::burn(&[16, 6], "Linear");
        for (structure, s) in [
            (Structure::NM { n: 2, m: 4 }, 0.5),
            (Structure::ConstantFanIn, 0.8),
        ] {
            let g = Groups::of_layer(structure, "fc", &shape, s)
                .unwrap()
                .unwrap();
            let a = structured_random_mask(3, "fc", 0, &g, &device).unwrap();
            let view = bools_to_host(g.to_view(a.clone()));
            assert_eq!(g.first_violation(&view), None, "{structure}");
            assert_eq!(ones(&bools_to_host(a.clone())), g.n_active());
            // Groups draw independently: not every group picks the same offsets.
            let first: Vec<bool> = view[..g.len].to_vec();
            assert!(
                view.chunks(g.len).any(|c| c != first.as_slice()),
                "{structure}"
            );
            assert_ne!(
                bools_to_host(a),
                bools_to_host(structured_random_mask(4, "fc", 0, &g, &device).unwrap())
            );

            // Magnitude: the k largest |w| of each output's inputs (stored w[i, o] = value).
            let w: Vec<f32> = (0..96)
                .map(|j| ((j * 37 % 96) as f32 - 48.0) * 0.1)
                .collect();
            let t = Tensor::<1>::from_data(TensorData::new(w.clone(), [96]), &device);
            let mask = bools_to_host(g.to_view(structured_magnitude_mask("fc", t, &g).unwrap()));
            assert_eq!(g.first_violation(&mask), None);
            for o in 0..6 {
                // Output o's inputs in the view row o: stored positions i * 6 + o.
                for grp in 0..16 / g.len {
                    let inputs: Vec<usize> = (grp * g.len..(grp + 1) * g.len).collect();
                    let mut by_mag = inputs.clone();
                    by_mag.sort_by(|&a, &b| {
                        w[b * 6 + o]
                            .abs()
                            .total_cmp(&w[a * 6 + o].abs())
                            .then(a.cmp(&b))
                    });
                    for (rank, &i) in by_mag.iter().enumerate() {
                        assert_eq!(mask[o * 16 + i], rank < g.k, "output {o} input {i}");
                    }
                }
            }
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
