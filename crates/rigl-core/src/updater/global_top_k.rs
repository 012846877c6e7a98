//! Global top-k: one ranking across layers, as jaxpruner's global pruners
//! (`GlobalPruningMixin.create_masks`) rank the scores of all layers together.
//!
//! The layers whose sparsity comes from the distribution ([`LayerSlot::global`]) share one
//! budget: the sum of what they would keep on their own, so the model's active count is the
//! per-layer plan's. Each layer's scores are first divided by their L2 norm plus `1e-8`
//! (jaxpruner's default `use_normalization = True`; [`PruningScope::GlobalUnnormalized`] ranks
//! the raw scores), so that a layer's scale does not decide its share alone. Layers with a
//! custom or first/last-layer sparsity keep their own top-k, as jaxpruner's
//! `custom_sparsity_map` does. Ranking is by magnitude with the kernels' order: ties go to the
//! layer first in the model, then to the lower index.
//!
//! A global ranking may leave a layer with few or no connections (layer collapse); jaxpruner's
//! normalisation is the usual guard against it. Structured masks keep their per-group counts
//! and are not ranked globally (jaxpruner refuses global pruning of structured masks too).

use super::{LayerSlot, UpdateInput};
use crate::error::{Result, SparsityError};
use crate::structure::Groups;
use burn::tensor::{Bool, Tensor};
use rigl_kernels::{Segment, segmented_top_k_mask_abs};
use serde::{Deserialize, Serialize};

/// Which layers a pruning method ranks together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PruningScope {
    /// Every layer keeps its own top-k at the distribution's sparsity (the reference's
    /// pruning).
    #[default]
    Layer,
    /// One ranking over the layers the distribution sets, each layer's scores divided by their
    /// L2 norm (jaxpruner's global pruners).
    Global,
    /// One ranking over the raw scores of those layers.
    GlobalUnnormalized,
}

impl PruningScope {
    /// Whether layers share one ranking.
    pub fn is_global(&self) -> bool {
        !matches!(self, PruningScope::Layer)
    }
}

impl core::fmt::Display for PruningScope {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            PruningScope::Layer => "layer",
            PruningScope::Global => "global",
            PruningScope::GlobalUnnormalized => "global-unnormalized",
        })
    }
}

impl core::str::FromStr for PruningScope {
    type Err = String;

    fn from_str(s: &str) -> core::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "layer" | "per-layer" | "local" => Ok(PruningScope::Layer),
            "global" => Ok(PruningScope::Global),
            "global-unnormalized" | "global-raw" => Ok(PruningScope::GlobalUnnormalized),
            other => Err(format!(
                "unknown pruning scope `{other}`: expected layer, global or global-unnormalized"
            )),
        }
    }
}

/// The mask keeping the largest `|scores|`: `k(layer)` in each layer outside the global pool,
/// and `pooled` over the layers in it together (see the module docs).
///
/// `scores` is flat in the layout of `input`'s buffers. Layers in the pool must be
/// unstructured.
///
/// # Errors
/// [`SparsityError::InvalidSetting`] for a structured layer in the pool; the selection's errors
/// (a `k` above the finite scores of its layers) naming the layer, or the pool.
pub fn global_top_k_mask(
    input: &UpdateInput,
    scores: Tensor<1>,
    scope: PruningScope,
    k: impl Fn(&LayerSlot) -> usize,
    pooled: usize,
) -> Result<Tensor<1, Bool>> {
    if let Some(l) = input.layers.iter().find(|l| l.global && l.groups.is_some()) {
        return Err(SparsityError::InvalidSetting(format!(
            "`{}` is structured: global pruning ranks unstructured layers only",
            l.path
        )));
    }
    // Pooled layers first, then the others in model order, so that the pool is one segment.
    let order: Vec<usize> = (0..input.layers.len())
        .filter(|&i| input.layers[i].global)
        .chain((0..input.layers.len()).filter(|&i| !input.layers[i].global))
        .collect();
    let pool_len: usize = input
        .layers
        .iter()
        .filter(|l| l.global)
        .map(|l| l.len)
        .sum();
    // The selection's segments and the layer each names in an error (the pool: its first).
    let mut segments = Vec::with_capacity(order.len());
    let mut layer_of = Vec::with_capacity(order.len());
    if pool_len > 0 {
        segments.push(Segment {
            offset: 0,
            len: pool_len,
            k: pooled,
        });
        layer_of.push(order[0]);
    }
    let mut offset = pool_len;
    let mut parts = Vec::with_capacity(order.len());
    for &i in &order {
        let l = &input.layers[i];
        let part = scores.clone().narrow(0, l.offset, l.len);
        if l.global {
            parts.push(match scope {
                PruningScope::Global => {
                    let norm = part.clone().powi_scalar(2).sum().sqrt().add_scalar(1e-8);
                    part.abs().div(norm.expand([l.len]))
                }
                _ => part,
            });
        } else {
            segments.push(Segment {
                offset,
                len: l.len,
                k: k(l),
            });
            layer_of.push(i);
            offset += l.len;
            parts.push(part);
        }
    }
    let ranked = Tensor::cat(parts, 0);
    let selected = segmented_top_k_mask_abs(ranked, None, &segments)
        .map_err(|e| {
            let in_pool = pool_len > 0
                && matches!(e, rigl_kernels::SelectError::KTooLarge { segment: 0, .. });
            if in_pool {
                let names: Vec<&str> = order
                    .iter()
                    .map(|&i| &input.layers[i])
                    .filter(|l| l.global)
                    .map(|l| l.path.as_str())
                    .collect();
                return SparsityError::Select {
                    path: format!("the globally ranked layers ({})", names.join(", ")),
                    source: e,
                };
            }
            input.select_error_in(e, &layer_of)
        })?
        .mask;
    // Back to the model's order.
    let mut at = 0;
    let mut back: Vec<Option<Tensor<1, Bool>>> = vec![None; input.layers.len()];
    for &i in &order {
        let len = input.layers[i].len;
        back[i] = Some(selected.clone().narrow(0, at, len));
        at += len;
    }
    Ok(Tensor::cat(back.into_iter().flatten().collect(), 0))
}

/// The top `|scores|` a pruning method keeps in `scope`: per layer, `k(layer)` in each
/// unstructured layer and `per_group(layer, groups)` in every group of a structured one; with a
/// global scope, the layers of the pool share the sum of their `k` ([`global_top_k_mask`]).
///
/// # Errors
/// As [`global_top_k_mask`], and the selection's errors naming the layer.
pub fn scoped_top_k_mask(
    input: &UpdateInput,
    scores: Tensor<1>,
    scope: PruningScope,
    k: impl Fn(&LayerSlot) -> usize,
    per_group: impl Fn(&LayerSlot, &Groups) -> usize,
) -> Result<Tensor<1, Bool>> {
    if scope.is_global() {
        let pooled = input.layers.iter().filter(|l| l.global).map(&k).sum();
        return global_top_k_mask(input, scores, scope, k, pooled);
    }
    let segs = input.layer_segments(k, per_group);
    Ok(segmented_top_k_mask_abs(scores, None, &segs.segments)
        .map_err(|e| input.select_error_in(e, &segs.layer_of))?
        .mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::updater::HostLayer;
    use burn::tensor::Device;

    fn input<'a>(layers: &'a [(&'a str, &'a [f32], usize)], masks: &'a [Vec<bool>]) -> UpdateInput {
        let host: Vec<HostLayer<'_>> = layers
            .iter()
            .zip(masks)
            .map(|((path, w, k), m)| HostLayer {
                path,
                weights: w,
                mask: m,
                dense_grad: None,
                target_active: *k,
            })
            .collect();
        UpdateInput::from_host(&host, &Device::default())
    }

    fn host(t: Tensor<1, Bool>) -> Vec<bool> {
        crate::mask::bools_to_host(t)
    }

    #[test]
    fn one_ranking_across_layers() {
        // Raw: the pool keeps 3 of 6, the largest magnitudes wherever they are.
        let a: &[f32] = &[0.1, -5.0, 0.2];
        let b: &[f32] = &[4.0, 3.0, -0.3];
        let masks = [vec![true; 3], vec![true; 3]];
        let layers = [("a", a, 1), ("b", b, 2)];
        let input = input(&layers, &masks);
        let raw = global_top_k_mask(
            &input,
            input.weights.clone(),
            PruningScope::GlobalUnnormalized,
            |l| l.target_active,
            3,
        )
        .unwrap();
        assert_eq!(host(raw), [false, true, false, true, true, false]);
        // Normalised: a = [0.1, 5, 0.2] / 5.004, b = [4, 3, 0.3] / 5.009: 5/5.004 > 4/5.009 >
        // 3/5.009 > 0.3/5.009 > 0.2/5.004.
        let normalized = global_top_k_mask(
            &input,
            input.weights.clone(),
            PruningScope::Global,
            |l| l.target_active,
            4,
        )
        .unwrap();
        assert_eq!(host(normalized), [false, true, false, true, true, true]);
    }

    #[test]
    fn normalisation_changes_the_shares() {
        // Layer b's weights are 100x larger: raw ranking gives it everything, the normalised
        // one compares shapes (a: one large weight; b: flat).
        let a: &[f32] = &[0.01, 0.0, 0.0, 0.0];
        let b: &[f32] = &[1.0, 1.0, 1.0, 1.0];
        let masks = [vec![true; 4], vec![true; 4]];
        let layers = [("a", a, 2), ("b", b, 2)];
        let input = input(&layers, &masks);
        let mask = |scope| {
            host(global_top_k_mask(&input, input.weights.clone(), scope, |_| 0, 2).unwrap())
        };
        assert_eq!(
            mask(PruningScope::GlobalUnnormalized),
            [false, false, false, false, true, true, false, false]
        );
        // a normalised: [1, 0, 0, 0]; b: [0.5; 4]. The pool keeps a[0] and b[0].
        assert_eq!(
            mask(PruningScope::Global),
            [true, false, false, false, true, false, false, false]
        );
    }

    #[test]
    fn layers_outside_the_pool_keep_their_own_count() {
        let a: &[f32] = &[9.0, 8.0, 7.0];
        let b: &[f32] = &[0.1, 0.3, 0.2];
        let c: &[f32] = &[5.0, 6.0, 4.0];
        let masks = [vec![true; 3], vec![true; 3], vec![true; 3]];
        let layers = [("a", a, 0), ("b", b, 1), ("c", c, 0)];
        let mut input = input(&layers, &masks);
        input.layers[1].global = false;
        let mask = global_top_k_mask(
            &input,
            input.weights.clone(),
            PruningScope::GlobalUnnormalized,
            |l| l.target_active,
            4,
        )
        .unwrap();
        // Pool (a, c) keeps 9, 8, 7, 6; b keeps its own top 1 despite its small scale.
        assert_eq!(
            host(mask),
            [true, true, true, false, true, false, false, true, false]
        );
    }

    #[test]
    fn a_budget_above_the_pool_names_the_pool() {
        let a: &[f32] = &[1.0, 2.0];
        let masks = [vec![true; 2]];
        let layers = [("a", a, 1)];
        let input = input(&layers, &masks);
        let err = global_top_k_mask(
            &input,
            input.weights.clone(),
            PruningScope::Global,
            |_| 0,
            3,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("the globally ranked layers (a)"),
            "{err}"
        );
    }

    #[test]
    fn scopes_parse_and_print() {
        for s in [
            PruningScope::Layer,
            PruningScope::Global,
            PruningScope::GlobalUnnormalized,
        ] {
            assert_eq!(s.to_string().parse::<PruningScope>().unwrap(), s);
        }
        let err = "everywhere".parse::<PruningScope>().unwrap_err();
        assert!(err.contains("unknown pruning scope `everywhere`"), "{err}");
    }
}
