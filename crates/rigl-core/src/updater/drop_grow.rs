//! Drop and grow, one layer at a time: the step SET, SNFS and RigL share (reference section 4).
//!
//! ```text
//! n_prune = int(n_ones * drop_fraction)            truncation
//! keep the n_ones - n_prune active connections of largest |w|          -> mask1
//! grow the n_prune best-scoring positions where mask1 == 0             -> mask2
//! new mask = mask1 | mask2                         (n_ones exactly conserved)
//! new connections = mask2 & !old_mask              (dropped-and-regrown ones keep weight and state)
//! ```
//!
//! Ties in the drop and grow scores are broken deterministically by the lower index (the
//! reference adds tiny random noise instead), so an update is a pure function of its inputs.

use super::{LayerDecision, LayerView};
use crate::error::{Result, SparsityError};
use rigl_kernels::{top_k_mask_f32, top_k_mask_u32};

/// Scores by which positions are grown.
pub enum GrowScores<'a> {
    /// Larger is better (|gradient|, |momentum|).
    Float(&'a [f32]),
    /// Random keys of the counter-based generator; larger wins.
    Random(&'a [u32]),
}

/// Number of connections dropped at drop fraction `f`: `int(n_ones * f)`.
pub fn n_prune(n_ones: usize, drop_fraction: f64) -> usize {
    (n_ones as f64 * drop_fraction).floor() as usize
}

/// One drop-and-grow update of a layer.
///
/// With `allow_regrow == false` (a documented variant used by other implementations), a
/// connection dropped in this update cannot be grown back in the same update.
///
/// # Errors
/// [`SparsityError::Select`] when NaN weights or scores leave too few candidates.
pub fn drop_and_grow(
    layer: &LayerView<'_>,
    drop_fraction: f64,
    grow: GrowScores<'_>,
    allow_regrow: bool,
) -> Result<LayerDecision> {
    let err = |source| SparsityError::Select {
        path: layer.path.to_string(),
        source,
    };
    let n = layer.mask.len();
    let n_ones = layer.mask.iter().filter(|&&m| m).count();
    let prune = n_prune(n_ones, drop_fraction);
    let keep = n_ones - prune;
    let magnitude: Vec<f32> = layer.weights.iter().map(|w| w.abs()).collect();
    let mask1 = top_k_mask_f32(&magnitude, Some(layer.mask), keep)
        .map_err(err)?
        .mask;
    let eligible: Vec<bool> = (0..n)
        .map(|i| !mask1[i] && (allow_regrow || !layer.mask[i]))
        .collect();
    let mask2 = match grow {
        GrowScores::Float(s) => top_k_mask_f32(s, Some(&eligible), prune).map_err(err)?.mask,
        GrowScores::Random(k) => top_k_mask_u32(k, Some(&eligible), prune).map_err(err)?,
    };
    let mask: Vec<bool> = mask1.iter().zip(&mask2).map(|(a, b)| *a || *b).collect();
    let reset: Vec<bool> = mask2
        .iter()
        .zip(layer.mask)
        .map(|(grown, old)| *grown && !*old)
        .collect();
    Ok(LayerDecision { mask, reset })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(w: &'a [f32], m: &'a [bool]) -> LayerView<'a> {
        LayerView {
            path: "w",
            weights: w,
            mask: m,
            dense_grad: None,
            average: None,
            target_active: m.iter().filter(|&&b| b).count(),
        }
    }

    #[test]
    fn drops_smallest_and_grows_best_outside_kept() {
        let w = [0.9, -0.1, 0.5, 0.0, 0.0, 0.2, 0.0, 0.0];
        let m = [true, true, true, false, false, true, false, false];
        // 4 active, drop 0.5 -> 2 pruned (|-0.1| and 0.2), 2 kept (0.9, 0.5).
        let g = [9.0, 8.0, 0.0, 0.1, 3.0, 7.0, 2.0, 0.0];
        let d = drop_and_grow(&view(&w, &m), 0.5, GrowScores::Float(&g), true).unwrap();
        // Kept positions 0 and 2 are excluded from growth even though g[0] is the largest;
        // the best two others are 1 (8.0, regrown: not new) and 5 (7.0, regrown: not new).
        assert_eq!(d.mask, [true, true, true, false, false, true, false, false]);
        assert_eq!(d.reset, [false; 8]);
        // Forbidding regrowth picks 4 and 6 instead, both new.
        let d = drop_and_grow(&view(&w, &m), 0.5, GrowScores::Float(&g), false).unwrap();
        assert_eq!(d.mask, [true, false, true, false, true, false, true, false]);
        assert_eq!(
            d.reset,
            [false, false, false, false, true, false, true, false]
        );
    }

    #[test]
    fn truncates_the_number_dropped() {
        assert_eq!(n_prune(10, 0.35), 3);
        assert_eq!(n_prune(3, 0.3), 0);
        assert_eq!(n_prune(4704, 0.3), 1411);
        let w = [1.0, 2.0, 3.0];
        let m = [true, true, true];
        let d = drop_and_grow(&view(&w, &m), 0.3, GrowScores::Random(&[1, 2, 3]), true).unwrap();
        assert_eq!(d.mask, m);
    }
}
