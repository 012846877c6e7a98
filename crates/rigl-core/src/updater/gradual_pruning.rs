//! Gradual magnitude pruning (Zhu & Gupta): from dense, every `frequency` steps between begin
//! and end, prune each layer by |w| to `s_t = s_f * (1 - (1 - p)^3)`,
//! `p = clamp((t - begin) / (end - begin), 0, 1)`, with `s_f` the layer's planned sparsity.
//! Pruned connections never come back.

use super::{MaskUpdater, Method, UpdateContext, UpdateDecision, UpdateInput};
use crate::distribution::n_ones;
use crate::error::Result;
use crate::schedule::gradual_sparsity;
use rigl_kernels::segmented_top_k_mask_abs;

/// Prunes by magnitude on the cubic schedule.
pub struct GradualPruning;

impl GradualPruning {
    /// Active weights of a layer of `n` weights with final active count `target` at step `t`.
    pub fn active_at(n: usize, target: usize, ctx: &UpdateContext) -> usize {
        let s_final = 1.0 - target as f64 / n.max(1) as f64;
        let s_t = gradual_sparsity(s_final, ctx.step, ctx.begin_step, ctx.end_step);
        // At the end of the ramp, hit the planned count exactly.
        if s_t >= s_final {
            target
        } else {
            n_ones(s_t, n).max(target)
        }
    }
}

impl MaskUpdater for GradualPruning {
    fn method(&self) -> Method {
        Method::Prune
    }

    fn update(&self, ctx: &UpdateContext, input: &UpdateInput) -> Result<UpdateDecision> {
        let segments =
            input.segments(|l| Self::active_at(l.len, l.target_active, ctx).min(l.n_active));
        let mask =
            segmented_top_k_mask_abs(input.weights.clone(), Some(input.mask.clone()), &segments)
                .map_err(|e| input.select_error(e))?
                .mask;
        Ok(UpdateDecision {
            reset: input.nothing(),
            mask,
            changes: None,
        })
    }
}
