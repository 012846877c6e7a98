//! Gradual magnitude pruning (Zhu & Gupta): from dense, every `frequency` steps between begin
//! and end, prune each layer by |w| to `s_t = s_f * (1 - (1 - p)^3)`,
//! `p = clamp((t - begin) / (end - begin), 0, 1)`, with `s_f` the layer's planned sparsity.
//! Pruned connections never come back.

use super::{LayerDecision, LayerView, MaskUpdater, Method, UpdateContext};
use crate::distribution::n_ones;
use crate::error::{Result, SparsityError};
use crate::schedule::gradual_sparsity;
use rigl_kernels::top_k_mask_f32;

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

    fn update_layer(&self, ctx: &UpdateContext, layer: &LayerView<'_>) -> Result<LayerDecision> {
        let n = layer.mask.len();
        let n_active = layer.mask.iter().filter(|&&m| m).count();
        let keep = Self::active_at(n, layer.target_active, ctx).min(n_active);
        let magnitude: Vec<f32> = layer.weights.iter().map(|w| w.abs()).collect();
        let mask = top_k_mask_f32(&magnitude, Some(layer.mask), keep)
            .map_err(|source| SparsityError::Select {
                path: layer.path.to_string(),
                source,
            })?
            .mask;
        Ok(LayerDecision {
            reset: vec![false; n],
            mask,
        })
    }
}
