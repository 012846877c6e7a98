//! Straight-through magnitude pruning (jaxpruner's `SteMagnitudePruning`).
//!
//! The stored weights stay dense and every one of them trains: the forward pass uses
//! `w * m` with `m` the top `|w|` of each layer, and the backward pass hands the gradient
//! `dL/d(w * m)` to every stored weight, pruned ones included (the straight-through
//! estimator: [`GradientMode::Dense`](crate::GradientMode::Dense), with the optimizer stepping
//! on the unmasked gradient). After every optimizer step the mask is recomputed from the new
//! weights, so a pruned weight whose magnitude grows past the kept ones comes back with its
//! value and optimizer state; nothing is ever reset.
//!
//! The kept count follows gradual pruning's cubic ramp,
//! `round_half_even(f32(N) * (1 - s_t))` with `s_t = gradual_sparsity(s, t, begin, end)`: dense
//! before `begin`, the final sparsity from `end` on (with `end <= begin`, or no end, from
//! `begin` on: jaxpruner's one-shot STE). Unlike the other methods the mask keeps following
//! the weights after the end step. Structured layers keep the top `k_t` of every group; a
//! global [`PruningScope`] ranks the distribution's layers together as gradual pruning does.

use super::{
    GradualPruning, LayerSlot, MaskUpdater, Method, PruningScope, UpdateContext, UpdateDecision,
    UpdateInput, scoped_top_k_mask,
};
use crate::error::Result;

/// Straight-through magnitude pruning: dense weights, sparse forward pass, mask recomputed
/// at every step.
#[derive(Clone, Copy, Debug, Default)]
pub struct SteMagnitude {
    scope: PruningScope,
}

impl SteMagnitude {
    /// STE pruning ranking each layer on its own or the layers together (see
    /// [`PruningScope`]).
    pub fn new(scope: PruningScope) -> Self {
        Self { scope }
    }
}

impl MaskUpdater for SteMagnitude {
    fn method(&self) -> Method {
        Method::Ste
    }

    fn starts_dense(&self) -> bool {
        true
    }

    fn box_clone(&self) -> Box<dyn MaskUpdater> {
        Box::new(*self)
    }

    fn every_step(&self) -> bool {
        true
    }

    fn straight_through(&self) -> bool {
        true
    }

    fn needs_dense_gradient(&self, _is_update_step: bool) -> bool {
        true
    }

    fn active_bounds(&self, layer: &crate::plan::PlannedLayer, _updates: u64) -> (usize, usize) {
        GradualPruning::ramp_bounds(self.scope, layer)
    }

    fn update(&mut self, ctx: &UpdateContext, input: &UpdateInput) -> Result<UpdateDecision> {
        let mask = scoped_top_k_mask(
            input,
            input.weights.clone(),
            self.scope,
            |l: &LayerSlot| GradualPruning::kept_at(l.len, l.target_sparsity, ctx),
            |_, g| GradualPruning::kept_in_group(g, ctx),
        )?;
        Ok(UpdateDecision {
            reset: input.nothing(),
            mask,
            changes: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::updater::HostLayer;
    use burn::tensor::Device;

    #[test]
    fn keeps_the_largest_magnitudes_on_the_ramp() {
        let w = [0.5, -4.0, 1.0, 3.0, -0.1, 2.0, 0.0, -6.0];
        let input = UpdateInput::from_host(
            &[HostLayer {
                path: "w",
                weights: &w,
                // The current mask does not matter: STE ranks every stored weight.
                mask: &[true, false, true, false, true, false, true, false],
                dense_grad: None,
                target_active: 2,
            }],
            &Device::default(),
        );
        let at = |step| {
            let ctx = UpdateContext {
                step,
                begin_step: 10,
                end_step: 20,
                ..UpdateContext::default()
            };
            SteMagnitude::default()
                .update(&ctx, &input)
                .unwrap()
                .to_host()
        };
        // Before the ramp: dense.
        assert_eq!(at(5).0, [true; 8]);
        // Half-way: s_t = 0.75 * (1 - 0.5^3) = 0.65625, round(8 * 0.34375) = 3 kept.
        assert_eq!(
            at(15).0,
            [false, true, false, true, false, false, false, true]
        );
        // At and after the end: 2 kept, no reset ever.
        let (mask, reset) = at(40);
        assert_eq!(mask, [false, true, false, false, false, false, false, true]);
        assert_eq!(reset, [false; 8]);
    }
}
