//! Gradual magnitude pruning (Zhu & Gupta), as TF's model_pruning (`pruning.py`) computes it.
//!
//! From dense, at the update steps (every `frequency` steps between begin and end, with
//! `last_update` starting at 0: see [`MaskUpdater::initial_last_update`]), each layer is pruned
//! to the sparsity of the cubic ramp at the step the update sees,
//! `s_t = (0 - s_f) * (1 - p)^3 + s_f`, `p = clamp((t - begin) / (end - begin), 0, 1)` in `f32`
//! ([`gradual_sparsity`]), with `s_f` the layer's planned sparsity:
//!
//! ```text
//! k         = round_half_even(f32(N) * (1 - s_t))            weights to keep
//! threshold = the k-th largest |w| over ALL stored weights of the layer (pruned ones included)
//! smoothed  = threshold * (1 - threshold_decay) + previous * threshold_decay   (previous: 0 at first)
//! mask      = |w| >= smoothed                                (ties at the threshold are all kept)
//! ```
//!
//! As in the reference, the stored weights of pruned positions are not zeroed and still move
//! with the optimizer's momentum and weight decay, so a pruned weight whose magnitude reaches
//! the threshold again comes back (with its weight and optimizer state). With `k = 0` (a tiny
//! layer) nothing is kept; the reference's `gather(values, k - 1)` fails there instead.
//!
//! Per-layer targets: the reference scales the global ramp by `s_i / s_f` for the layers of its
//! `weight_sparsity_map`; this ramps each layer to its own planned sparsity in `f32`, which is
//! the reference's value for every layer at the global sparsity and may differ from it by an
//! `f32` rounding for the others.

use super::{
    MaskUpdater, Method, MethodState, PruningScope, UpdateContext, UpdateDecision, UpdateInput,
    scoped_top_k_mask,
};
use crate::error::{Result, SparsityError};
use crate::schedule::{UpdateSchedule, gradual_sparsity};
use crate::structure::Groups;
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::HashMap;

/// Prunes by magnitude on the cubic schedule; its state is each layer's smoothed threshold
/// (model_pruning's `threshold` variables, 0 before the first update).
#[derive(Clone, Debug, Default)]
pub struct GradualPruning {
    thresholds: HashMap<String, f32>,
    scope: PruningScope,
}

impl GradualPruning {
    /// Gradual pruning ranking each layer on its own ([`PruningScope::Layer`], model_pruning)
    /// or the layers the distribution sets together: at each update they keep the sum of what
    /// they would keep on their own, chosen by one ranking of `|w|` (see
    /// [`global_top_k_mask`](super::global_top_k_mask); no threshold smoothing).
    pub fn new(scope: PruningScope) -> Self {
        Self {
            thresholds: HashMap::new(),
            scope,
        }
    }

    /// Weights model_pruning keeps in a layer of `n` weights with final sparsity `s_final` at
    /// the update of `ctx`: `round_half_even(f32(n) * (1 - s_t))` (TF's `round` rounds half to
    /// even).
    pub fn kept_at(n: usize, s_final: f64, ctx: &UpdateContext) -> usize {
        let s_t = gradual_sparsity(s_final, ctx.step, ctx.begin_step, ctx.end_step);
        ((n as f32 * (1.0 - s_t)).round_ties_even() as usize).min(n)
    }
}

impl GradualPruning {
    /// The active counts a mask of `layer` may hold while it ramps on the cubic schedule (this
    /// method's and straight-through pruning's bounds): from the final
    /// `round_half_even(f32(n) * (1 - f32(s)))` (which may be one below the plan's
    /// `n - floor(s * n)`) to every weight; any count for a layer a global ranking pools.
    pub fn ramp_bounds(scope: PruningScope, layer: &crate::plan::PlannedLayer) -> (usize, usize) {
        let n = layer.numel();
        if scope.is_global() && layer.role.follows_distribution() {
            return (0, n);
        }
        let last = ((n as f32 * (1.0 - layer.sparsity as f32)).round_ties_even() as usize).min(n);
        (last.min(layer.n_active), n)
    }

    /// Connections a group of a structured layer keeps at the update of `ctx`: the group's
    /// positions at the cubic ramp towards its final `k`,
    /// `round_half_even(f32(len) * (1 - s_t))` with `s_f = 1 - k / len`, never below `k`.
    pub fn kept_in_group(groups: &Groups, ctx: &UpdateContext) -> usize {
        let s_final = 1.0 - groups.k as f64 / groups.len.max(1) as f64;
        Self::kept_at(groups.len, s_final, ctx).max(groups.k)
    }
}

impl MaskUpdater for GradualPruning {
    fn method(&self) -> Method {
        Method::Prune
    }

    fn starts_dense(&self) -> bool {
        true
    }

    fn box_clone(&self) -> Box<dyn MaskUpdater> {
        Box::new(self.clone())
    }

    fn state(&self) -> MethodState {
        let mut state: MethodState = self
            .thresholds
            .iter()
            .map(|(p, t)| {
                let t = Tensor::<1>::from_data(TensorData::new(vec![*t], [1]), &Device::default());
                (p.clone(), t)
            })
            .collect();
        state.sort_by(|a, b| a.0.cmp(&b.0));
        state
    }

    fn state_len(&self, _numel: usize) -> usize {
        1
    }

    /// Pruning ends at `round_half_even(f32(n) * (1 - f32(s)))` ([`kept_at`](Self::kept_at) at
    /// the end step), which may be one below the plan's `n - floor(s * n)`.
    fn active_bounds(&self, layer: &crate::plan::PlannedLayer, _updates: u64) -> (usize, usize) {
        Self::ramp_bounds(self.scope, layer)
    }

    fn load_state(&mut self, state: MethodState) -> Result<()> {
        self.thresholds = state
            .into_iter()
            .map(|(p, t)| {
                let v = crate::mask::floats_to_host(t);
                match v.as_slice() {
                    [t] => Ok((p, *t)),
                    _ => Err(SparsityError::InvalidSetting(format!(
                        "the pruning threshold of `{p}` has {} values, not 1",
                        v.len()
                    ))),
                }
            })
            .collect::<Result<_>>()?;
        Ok(())
    }

    /// model_pruning's `last_mask_update_step` starts at 0: with `begin = 0` the first pruning
    /// step is `frequency`.
    fn initial_last_update(&self, _schedule: &UpdateSchedule) -> i64 {
        0
    }

    fn update(&mut self, ctx: &UpdateContext, input: &UpdateInput) -> Result<UpdateDecision> {
        let kept: Vec<usize> = input
            .layers
            .iter()
            .map(|l| Self::kept_at(l.len, l.target_sparsity, ctx))
            .collect();
        // Structured layers ramp every group from dense to its `k` on the same cubic schedule
        // and keep exactly the top `k_t` of each group (no threshold); a global ranking keeps
        // its top k exactly too.
        let top = scoped_top_k_mask(
            input,
            input.weights.clone(),
            self.scope,
            |l| Self::kept_at(l.len, l.target_sparsity, ctx),
            |_, g| Self::kept_in_group(g, ctx),
        )?;
        if self.scope.is_global() {
            return Ok(UpdateDecision {
                reset: input.nothing(),
                mask: top,
                changes: None,
            });
        }
        let magnitude = input.weights.clone().abs();
        let decay = ctx.threshold_decay;
        let mut thresholds = Vec::with_capacity(input.layers.len());
        let mut masks = Vec::with_capacity(input.layers.len());
        for (l, &k) in input.layers.iter().zip(&kept) {
            if l.groups.is_some() {
                masks.push(top.clone().narrow(0, l.offset, l.len));
                continue;
            }
            let w = magnitude.clone().narrow(0, l.offset, l.len);
            let current = if k == 0 {
                Tensor::<1>::full([1], f32::INFINITY, &w.device())
            } else {
                // The smallest selected magnitude: the k-th largest.
                let selected = top.clone().narrow(0, l.offset, l.len);
                w.clone()
                    .mask_fill(selected.bool_not(), f32::INFINITY)
                    .min()
            };
            let previous = self.thresholds.get(&l.path).copied().unwrap_or(0.0);
            let smoothed = if decay == 0.0 {
                current
            } else {
                current.mul_scalar((1.0 - decay) as f32) + previous * decay as f32
            };
            masks.push(w.greater_equal(smoothed.clone().expand([l.len])));
            thresholds.push(smoothed);
        }
        if thresholds.is_empty() {
            return Ok(UpdateDecision {
                reset: input.nothing(),
                mask: Tensor::cat(masks, 0),
                changes: None,
            });
        }
        let thresholds: Vec<f32> = Tensor::cat(thresholds, 0)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| SparsityError::InvalidSetting(format!("pruning thresholds: {e:?}")))?;
        let unstructured = input.layers.iter().filter(|l| l.groups.is_none());
        for (l, t) in unstructured.zip(thresholds) {
            self.thresholds.insert(l.path.clone(), t);
        }
        Ok(UpdateDecision {
            reset: input.nothing(),
            mask: Tensor::cat(masks, 0),
            changes: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::updater::HostLayer;

    fn ctx(step: i64) -> UpdateContext {
        UpdateContext {
            step,
            begin_step: 100,
            end_step: 1100,
            ..UpdateContext::default()
        }
    }

    /// Hand-computed model_pruning counts: N = 10, s_f = 0.9.
    /// t = 600: p = 0.5, s_t = -0.9 * 0.125 + 0.9 = 0.7875, k = round(10 * 0.2125) = 2.
    /// t = 350: p = 0.25, s_t = -0.9 * 0.421875 + 0.9 = 0.5203125, k = round(4.796875) = 5.
    /// t = 1100: s_t = 0.9, k = round(1.0000002) = 1 (f32: 1 - 0.9 = 0.100000024).
    /// N = 5, s_f = 0.9 at the end: round(0.5000001) = 1; N = 25, s_f = 0.9: round(2.5000005) = 3.
    #[test]
    fn counts_follow_model_pruning() {
        assert_eq!(GradualPruning::kept_at(10, 0.9, &ctx(0)), 10);
        assert_eq!(GradualPruning::kept_at(10, 0.9, &ctx(100)), 10);
        assert_eq!(GradualPruning::kept_at(10, 0.9, &ctx(350)), 5);
        assert_eq!(GradualPruning::kept_at(10, 0.9, &ctx(600)), 2);
        assert_eq!(GradualPruning::kept_at(10, 0.9, &ctx(1100)), 1);
        assert_eq!(GradualPruning::kept_at(5, 0.9, &ctx(1100)), 1);
        assert_eq!(GradualPruning::kept_at(25, 0.9, &ctx(1100)), 3);
        // Half to even (TF's round): 2.5 -> 2, 7.5 -> 8, 0.5 -> 0.
        assert_eq!(GradualPruning::kept_at(10, 0.75, &ctx(5000)), 2);
        assert_eq!(GradualPruning::kept_at(10, 0.25, &ctx(5000)), 8);
        assert_eq!(GradualPruning::kept_at(2, 0.75, &ctx(5000)), 0);
    }

    fn input(w: &[f32], mask: &[bool]) -> UpdateInput {
        let mut input = UpdateInput::from_host(
            &[HostLayer {
                path: "w",
                weights: w,
                mask,
                dense_grad: None,
                target_active: 1,
            }],
            &Device::default(),
        );
        input.layers[0].target_sparsity = 0.9;
        input
    }

    fn threshold(p: &GradualPruning) -> Vec<f32> {
        p.state()
            .into_iter()
            .flat_map(|(_, t)| crate::mask::floats_to_host(t))
            .collect()
    }

    fn scalar(v: f32) -> Tensor<1> {
        Tensor::from_data(TensorData::new(vec![v], [1]), &Device::default())
    }

    #[test]
    fn threshold_over_all_weights_ties_kept_and_pruned_weights_may_return() {
        // k = 2 at step 600. |w| sorted: 0.9 (pruned before, its stored value grew back), 0.5,
        // 0.5, 0.3, ...: the threshold is 0.5 and both 0.5s are kept (>=): 3 active.
        let w = [0.3, -0.5, 0.1, 0.9, 0.5, 0.0, -0.2, 0.05, 0.01, 0.02];
        let m = [true, true, true, false, true, true, true, true, true, true];
        let mut pruning = GradualPruning::default();
        let d = pruning.update(&ctx(600), &input(&w, &m)).unwrap();
        let (mask, reset) = d.to_host();
        assert_eq!(
            mask,
            [
                false, true, false, true, true, false, false, false, false, false
            ]
        );
        assert_eq!(reset, [false; 10]);
        assert_eq!(threshold(&pruning), [0.5]);
    }

    #[test]
    fn threshold_decay_smooths_with_the_previous_threshold() {
        // threshold 0.5 now, 0.1 before, decay 0.5: 0.5 * 0.5 + 0.1 * 0.5 = 0.3, so |w| >= 0.3.
        let w = [0.3, -0.5, 0.1, 0.9, 0.5, 0.0, -0.2, 0.05, 0.01, 0.02];
        let m = [true; 10];
        let c = UpdateContext {
            threshold_decay: 0.5,
            ..ctx(600)
        };
        let mut pruning = GradualPruning::default();
        pruning.load_state(vec![("w".into(), scalar(0.1))]).unwrap();
        let d = pruning.update(&c, &input(&w, &m)).unwrap();
        let (mask, _) = d.to_host();
        assert_eq!(
            mask,
            [
                true, true, false, true, true, false, false, false, false, false
            ]
        );
        assert_eq!(threshold(&pruning), [0.5f32 * 0.5 + 0.1 * 0.5]);
        // A checkpointed state round-trips; a malformed one is an error.
        let mut back = GradualPruning::default();
        back.load_state(pruning.state()).unwrap();
        assert_eq!(threshold(&back), threshold(&pruning));
        let two = Tensor::from_data(TensorData::new(vec![0.1f32, 0.2], [2]), &Device::default());
        assert!(back.load_state(vec![("w".into(), two)]).is_err());
    }
}
