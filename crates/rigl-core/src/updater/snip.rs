//! SNIP (Lee et al.): masks start all ones; at the first step the connections with the largest
//! `|g * w|` (g the dense gradient of the first batch) are kept, `N - floor(s * N)` per layer
//! with `s` from the chosen distribution. That iteration trains nothing; afterwards the mask is
//! fixed.
//!
//! With a global [`PruningScope`] the layers the distribution sets share one ranking (the
//! original SNIP ranks all connections together; jaxpruner's `GlobalSaliencyPruning` divides
//! each layer's scores by their L2 norm first): they keep the sum of their planned counts
//! between them (see [`global_top_k_mask`](super::global_top_k_mask)).

use super::{
    MaskUpdater, Method, PruningScope, UpdateContext, UpdateDecision, UpdateInput,
    scoped_top_k_mask,
};
use crate::error::Result;

/// One-shot pruning at initialisation by connection sensitivity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snip {
    scope: PruningScope,
}

impl Snip {
    /// SNIP ranking each layer on its own ([`PruningScope::Layer`], the reference) or the
    /// layers together.
    pub fn new(scope: PruningScope) -> Self {
        Self { scope }
    }
}

impl MaskUpdater for Snip {
    fn method(&self) -> Method {
        Method::Snip
    }

    fn box_clone(&self) -> Box<dyn MaskUpdater> {
        Box::new(*self)
    }

    fn starts_dense(&self) -> bool {
        true
    }

    fn active_bounds(&self, layer: &crate::plan::PlannedLayer, updates: u64) -> (usize, usize) {
        if updates > 0 {
            if self.scope.is_global() && layer.role.follows_distribution() {
                // Pooled layers share their planned total; each may hold any part of it.
                (0, layer.numel())
            } else {
                (layer.n_active, layer.n_active)
            }
        } else {
            (layer.numel(), layer.numel())
        }
    }

    fn needs_dense_gradient(&self, is_update_step: bool) -> bool {
        is_update_step
    }

    fn trains_on_update_step(&self) -> bool {
        false
    }

    fn schedule_step(&self, t: i64) -> i64 {
        t
    }

    fn one_shot(&self) -> bool {
        true
    }

    fn update(&mut self, ctx: &UpdateContext, input: &UpdateInput) -> Result<UpdateDecision> {
        // The reference differentiates its total loss, L2 included: g + lambda * w.
        let grad = input.require_dense_grad()?;
        let grad = if ctx.weight_decay == 0.0 {
            grad
        } else {
            grad + input.weights.clone().mul_scalar(ctx.weight_decay as f32)
        };
        let sensitivity = grad * input.weights.clone();
        // Structured layers keep the top `k` of every group.
        let mask = scoped_top_k_mask(
            input,
            sensitivity,
            self.scope,
            |l| l.target_active,
            |_, g| g.k,
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
    fn keeps_top_connection_sensitivity() {
        let w = [1.0, -2.0, 0.5, 3.0];
        let g = [0.1, 0.1, 10.0, -0.01];
        // |g*w| = 0.1, 0.2, 5.0, 0.03
        let ctx = UpdateContext {
            step: 0,
            drop_fraction: 0.0,
            seed: 0,
            allow_regrow: true,
            begin_step: 0,
            end_step: 0,
            threshold_decay: 0.0,
            weight_decay: 0.0,
        };
        let input = UpdateInput::from_host(
            &[HostLayer {
                path: "w",
                weights: &w,
                mask: &[true; 4],
                dense_grad: Some(&g),
                target_active: 2,
            }],
            &Device::default(),
        );
        let (mask, reset) = Snip::default().update(&ctx, &input).unwrap().to_host();
        assert_eq!(mask, [false, true, true, false]);
        assert_eq!(reset, [false; 4]);
    }
}
