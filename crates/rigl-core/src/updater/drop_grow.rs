//! Drop and grow: the step SET, SNFS and RigL share (reference section 4), for all layers at
//! once.
//!
//! ```text
//! n_prune = int32(f32(n_ones) * f32(drop_fraction))  truncation, per layer
//! keep the n_ones - n_prune active connections of largest |w|          -> mask1
//! grow the n_prune best-scoring positions where mask1 == 0             -> mask2
//! new mask = mask1 | mask2                         (n_ones exactly conserved)
//! new connections = mask2 & !old_mask              (dropped-and-regrown ones keep weight and state)
//! ```
//!
//! The whole decision of every layer is one call of [`rigl_kernels::drop_grow()`]: two segmented
//! radix selects (not sorts) on the device, the Bool logic, and the per-layer counts. Ties in the drop and grow scores are
//! broken deterministically by the lower index (the reference adds tiny random noise instead),
//! so an update is a pure function of its inputs, the same on every device.

use super::{LayerChange, LayerSlot, UpdateDecision, UpdateInput};
use crate::error::Result;
use crate::structure::Groups;
use burn::tensor::Tensor;
use rigl_kernels::{DropGrowSegment, Segment, segmented_top_k_mask_abs, stream_id};
use std::collections::HashMap;

pub use rigl_kernels::Growth;

/// Number of connections dropped at drop fraction `f`, in the reference's float32 arithmetic:
/// `int32(float32(n_ones) * float32(f))` (truncation; `n_ones` above 2^24 rounds to an `f32`
/// first, as TF's cast does). Never more than `n_ones`.
pub fn n_prune(n_ones: usize, drop_fraction: f64) -> usize {
    ((n_ones as f32 * drop_fraction as f32) as usize).min(n_ones)
}

/// One drop-and-grow update of every layer of `input`: one call of [`rigl_kernels::drop_grow()`],
/// which also reports what changed in each layer.
///
/// With `allow_regrow == false` (a documented variant used by other implementations), a
/// connection dropped in this update cannot be grown back in the same update, so a layer drops
/// at most as many connections as it has inactive positions to grow into (none for a layer
/// kept fully dense): the count stays exact.
///
/// Structured layers (see [`crate::Structure`]) follow SRigL: the `n_prune` smallest |w| of the
/// whole layer are dropped (one segmented selection over the structured layers), then every
/// group grows back to its `k` connections by the growth scores, among its positions that are
/// not kept: the drop-and-grow call then has one segment per group, keeping what the layer-wide
/// drop kept there. Without regrowth a group keeps at least `2k - len` connections, so that
/// enough never-active positions remain to grow into.
///
/// # Errors
/// [`crate::SparsityError::Select`], naming the layer, when NaN weights or scores leave too few
/// candidates.
pub fn drop_and_grow(
    input: &UpdateInput,
    drop_fraction: f64,
    grow: Growth,
    allow_regrow: bool,
) -> Result<UpdateDecision> {
    let prune_of = |l: &LayerSlot| {
        let prune = n_prune(l.n_active, drop_fraction);
        if allow_regrow {
            prune
        } else {
            prune.min(l.len - l.n_active)
        }
    };
    let kept_per_group = structured_drop(input, drop_fraction)?;
    let mut segments = Vec::new();
    let mut layer_of = Vec::new();
    for (i, l) in input.layers.iter().enumerate() {
        let stream = stream_id(&l.path);
        match (&l.groups, kept_per_group.get(&i)) {
            (Some(g), Some(kept)) => {
                for (gi, &c) in kept.iter().enumerate() {
                    let floor = if allow_regrow {
                        0
                    } else {
                        (2 * g.k).saturating_sub(g.len)
                    };
                    let keep = c.max(floor).min(g.k);
                    segments.push(DropGrowSegment {
                        offset: l.offset + gi * g.len,
                        len: g.len,
                        keep,
                        grow: g.k - keep,
                        stream: Groups::stream(stream, gi),
                    });
                    layer_of.push(i);
                }
            }
            _ => {
                let prune = prune_of(l);
                segments.push(DropGrowSegment {
                    offset: l.offset,
                    len: l.len,
                    keep: l.n_active - prune,
                    grow: prune,
                    stream,
                });
                layer_of.push(i);
            }
        }
    }
    let d = rigl_kernels::drop_grow(
        input.weights.clone(),
        input.mask.clone(),
        grow,
        &segments,
        allow_regrow,
    )
    .map_err(|e| input.select_error_in(e, &layer_of))?;
    let mut changes = vec![
        LayerChange {
            active: 0,
            reset: 0,
            dropped: 0,
        };
        input.layers.len()
    ];
    for (c, &i) in d.counts.iter().zip(&layer_of) {
        changes[i].active += c.active;
        changes[i].reset += c.new;
        changes[i].dropped += c.dropped;
    }
    Ok(UpdateDecision {
        mask: d.mask,
        reset: d.reset,
        changes: Some(changes),
    })
}

/// The layer-wide drop of the structured layers: per structured layer (by index), the
/// connections each group keeps after the `n_active - n_prune` largest |w| of the layer are kept.
fn structured_drop(input: &UpdateInput, drop_fraction: f64) -> Result<HashMap<usize, Vec<usize>>> {
    let structured: Vec<usize> = (0..input.layers.len())
        .filter(|&i| input.layers[i].groups.is_some())
        .collect();
    if structured.is_empty() {
        return Ok(HashMap::new());
    }
    let segments: Vec<Segment> = structured
        .iter()
        .map(|&i| {
            let l = &input.layers[i];
            Segment {
                offset: l.offset,
                len: l.len,
                k: l.n_active - n_prune(l.n_active, drop_fraction),
            }
        })
        .collect();
    let kept = segmented_top_k_mask_abs(input.weights.clone(), Some(input.mask.clone()), &segments)
        .map_err(|e| input.select_error_in(e, &structured))?
        .mask;
    // Every structured layer's per-group counts in one transfer.
    let groups: Vec<&Groups> = structured
        .iter()
        .map(|&i| input.layers[i].groups.as_ref().expect("structured"))
        .collect();
    let counts = structured
        .iter()
        .zip(&groups)
        .map(|(&i, g)| {
            let l = &input.layers[i];
            g.group_counts(kept.clone().narrow(0, l.offset, l.len))
        })
        .collect();
    let mut counts = crate::mask::counts_to_host(Tensor::cat(counts, 0)).into_iter();
    Ok(structured
        .into_iter()
        .zip(groups)
        .map(|(i, g)| (i, counts.by_ref().take(g.count()).collect()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::updater::HostLayer;
    use burn::tensor::{Device, Tensor};

    fn input(layers: &[(&str, &[f32], &[bool])]) -> UpdateInput {
        let host: Vec<HostLayer<'_>> = layers
            .iter()
            .map(|(path, w, m)| HostLayer {
                path,
                weights: w,
                mask: m,
                dense_grad: None,
                target_active: m.iter().filter(|&&b| b).count(),
            })
            .collect();
        UpdateInput::from_host(&host, &Device::default())
    }

    fn scores(v: &[f32]) -> Growth {
        let data = burn::tensor::TensorData::new(v.to_vec(), [v.len()]);
        Growth::Scores(Tensor::from_data(data, &Device::default()))
    }

    #[test]
    fn drops_smallest_and_grows_best_outside_kept() {
        let w = [0.9, -0.1, 0.5, 0.0, 0.0, 0.2, 0.0, 0.0];
        let m = [true, true, true, false, false, true, false, false];
        let x = input(&[("w", &w, &m)]);
        // 4 active, drop 0.5 -> 2 pruned (|-0.1| and 0.2), 2 kept (0.9, 0.5).
        let g = [9.0, 8.0, 0.0, 0.1, 3.0, 7.0, 2.0, 0.0];
        let (mask, reset) = drop_and_grow(&x, 0.5, scores(&g), true).unwrap().to_host();
        // Kept positions 0 and 2 are excluded from growth even though g[0] is the largest;
        // the best two others are 1 (8.0, regrown: not new) and 5 (7.0, regrown: not new).
        assert_eq!(mask, [true, true, true, false, false, true, false, false]);
        assert_eq!(reset, [false; 8]);
        // Forbidding regrowth picks 4 and 6 instead, both new.
        let (mask, reset) = drop_and_grow(&x, 0.5, scores(&g), false).unwrap().to_host();
        assert_eq!(mask, [true, false, true, false, true, false, true, false]);
        assert_eq!(
            reset,
            [false, false, false, false, true, false, true, false]
        );
    }

    #[test]
    fn layers_are_decided_independently_in_one_pass() {
        // The same layer twice, next to a layer whose weights would win any global ranking:
        // each layer keeps its own count and grows inside itself.
        let w = [0.9, -0.1, 0.5, 0.0, 0.0, 0.2, 0.0, 0.0];
        let m = [true, true, true, false, false, true, false, false];
        let big = [100.0, 0.0, 200.0, 0.0];
        let mb = [true, false, true, false];
        let x = input(&[("a", &w, &m), ("big", &big, &mb), ("b", &w, &m)]);
        let g = [
            9.0, 8.0, 0.0, 0.1, 3.0, 7.0, 2.0, 0.0, // a
            0.0, 50.0, 0.0, 40.0, // big
            9.0, 8.0, 0.0, 0.1, 3.0, 7.0, 2.0, 0.0, // b
        ];
        let (mask, reset) = drop_and_grow(&x, 0.5, scores(&g), false).unwrap().to_host();
        let a = [true, false, true, false, true, false, true, false];
        assert_eq!(mask[..8], a);
        // big: 2 active, drops int(2 * 0.5) = 1 (the 100.0), grows at 1 (50.0 beats 40.0).
        assert_eq!(mask[8..12], [false, true, true, false]);
        assert_eq!(mask[12..], a);
        assert_eq!(reset[8..12], [false, true, false, false]);
    }

    #[test]
    fn truncates_the_number_dropped() {
        assert_eq!(n_prune(10, 0.35), 3);
        assert_eq!(n_prune(3, 0.3), 0);
        assert_eq!(n_prune(4704, 0.3), 1411);
        let w = [1.0, 2.0, 3.0];
        let m = [true, true, true];
        let x = input(&[("w", &w, &m)]);
        let d = drop_and_grow(&x, 0.3, Growth::Random { seed: 0, step: 1 }, true).unwrap();
        assert_eq!(d.to_host().0, m);
    }

    #[test]
    fn nan_weights_name_the_layer() {
        let w = [f32::NAN, f32::NAN, 1.0, 0.0];
        let m = [true, true, true, false];
        let x = input(&[("ok", &[1.0, 2.0], &[true, false]), ("bad", &w, &m)]);
        let err = drop_and_grow(&x, 0.0, scores(&[0.0; 6]), true).unwrap_err();
        assert!(
            matches!(&err, crate::SparsityError::Select { path, .. } if path == "bad"),
            "{err}"
        );
    }
}
